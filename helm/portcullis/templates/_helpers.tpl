{{/*
Names and labels.
*/}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, at most 52 characters so that suffixed names stay DNS labels. */}}
{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "portcullis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portcullis.baseLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector labels: the gateway pods. The runner NetworkPolicies select the gateway by these. */}}
{{- define "portcullis.selectorLabels" -}}
{{ include "portcullis.baseLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{/* Labels of every object, without a component. */}}
{{- define "portcullis.commonLabels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
{{ include "portcullis.baseLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: portcullis
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "portcullis.labels" -}}
{{ include "portcullis.commonLabels" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "portcullis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "portcullis.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds: longer than the preStop sleep plus the drain. */}}
{{- define "portcullis.gracePeriod" -}}
{{- $floor := add (int .Values.preStopSleepSeconds) (int .Values.drainSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $floor 10 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $floor) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + drainSeconds (%d): the kubelet would kill portcullis mid-drain" (int .Values.terminationGracePeriodSeconds) (int $floor)) }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* A listen address: ip:port, with brackets for IPv6. */}}
{{- define "portcullis.listen" -}}
{{- $host := index . 0 }}{{ $port := index . 1 }}
{{- if contains ":" $host }}{{ printf "[%s]:%d" $host (int $port) }}{{ else }}{{ printf "%s:%d" $host (int $port) }}{{ end }}
{{- end }}

{{/*
The policy file (docs/policy.md), as YAML. The chart owns
version, listen (with tls and proxyProtocol), resolver, timeouts.drain,
audit.output (from audit), tiers, identity.kubernetes (from kubernetesIdentity),
identity.client_certs (from tls.clientCertRules) and interception (from
interception); `policy:` supplies the rest.
*/}}
{{- define "portcullis.policy" -}}
{{- $v := .Values }}
{{- if eq (int $v.ports.proxy) (int $v.ports.admin) }}
{{- fail "ports.proxy and ports.admin must differ" }}
{{- end }}
{{- if empty $v.resolver.servers }}
{{- fail "resolver.servers is required: the cluster DNS Service IP, e.g. --set resolver.servers={10.96.0.10} (kubectl -n kube-system get service kube-dns)" }}
{{- end }}
{{- $policy := deepCopy (default (dict) $v.policy) }}
{{- $_ := set $policy "version" 1 }}
{{- $_ := include "portcullis.portsDiffer" . }}
{{- $listen := dict "proxy" (include "portcullis.listen" (list $v.listenAddress $v.ports.proxy)) "admin" (include "portcullis.listen" (list $v.listenAddress $v.ports.admin)) "workers" $v.workers }}
{{- if $v.proxyProtocol.enabled }}
{{- $pp := dict "mode" $v.proxyProtocol.mode "trusted" $v.proxyProtocol.trusted "timeout" $v.proxyProtocol.timeout }}
{{- $_ := set $listen "proxy" (list $listen.proxy (dict "address" (include "portcullis.listen" (list $v.listenAddress $v.proxyProtocol.port)) "proxy_protocol" $pp)) }}
{{- end }}
{{- if $v.tls.enabled }}
{{- $_ := set $listen "https" (include "portcullis.listen" (list $v.listenAddress $v.tls.port)) }}
{{- $_ := set $listen "tls" (include "portcullis.listenTLS" . | fromYaml) }}
{{- end }}
{{- $_ := set $policy "listen" $listen }}
{{- $_ := set $policy "resolver" (deepCopy $v.resolver) }}
{{- $timeouts := deepCopy (default (dict) $policy.timeouts) }}
{{- $_ := set $timeouts "drain" (printf "%ds" (int $v.drainSeconds)) }}
{{- $_ := set $policy "timeouts" $timeouts }}
{{- $audit := deepCopy (default (dict) $policy.audit) }}
{{- $_ := set $audit "output" (include "portcullis.auditOutput" .) }}
{{- $_ := set $policy "audit" $audit }}
{{- $_ := set $policy "tiers" (include "portcullis.tiers" . | fromYaml) }}
{{- if $v.kubernetesIdentity.enabled }}
{{- $identity := deepCopy (default (dict) $policy.identity) }}
{{- $_ := set $identity "kubernetes" (include "portcullis.kubeIdentity" . | fromYaml) }}
{{- $_ := set $policy "identity" $identity }}
{{- end }}
{{- if and $v.tls.enabled (ne (toString $v.tls.clientCerts) "off") }}
{{- $identity := deepCopy (default (dict) $policy.identity) }}
{{- $_ := set $identity "client_certs" $v.tls.clientCertRules }}
{{- $_ := set $policy "identity" $identity }}
{{- end }}
{{- with include "portcullis.interception" . | fromYaml }}
{{- $_ := set $policy "interception" . }}
{{- end }}
{{- toYaml $policy }}
{{- end }}

{{/*
Where the gateway watches pods (kubernetesIdentity.enabled): "namespaces" (a
Role in each of kubernetesIdentity.namespaces) or "cluster" (tierLabel: a
ClusterRole). Fails on values that contradict each other.
*/}}
{{- define "portcullis.kubeScope" -}}
{{- $k := .Values.kubernetesIdentity }}
{{- $pinned := kindIs "bool" $k.clusterWide }}
{{- if and $k.namespaces $k.tierLabel }}
{{- fail "kubernetesIdentity: set namespaces or tierLabel, not both: a pod's tier comes from its namespace or from its label" }}
{{- else if $k.namespaces }}
{{- if $k.labelSelector }}
{{- fail "kubernetesIdentity.labelSelector goes with tierLabel: namespaces mode watches every pod of the listed namespaces" }}
{{- end }}
{{- if and $pinned $k.clusterWide }}
{{- fail "kubernetesIdentity.clusterWide is true, but kubernetesIdentity.namespaces watches only the listed namespaces, with a Role in each: leave clusterWide unset (a ClusterRole would let the gateway read every pod in the cluster), or use tierLabel" }}
{{- end }}
{{- print "namespaces" }}
{{- else if $k.tierLabel }}
{{- if and $pinned (not $k.clusterWide) }}
{{- fail "kubernetesIdentity.clusterWide is false, but kubernetesIdentity.tierLabel watches pods in every namespace and needs a ClusterRole: set clusterWide to true (or leave it unset), or map namespaces to tiers with kubernetesIdentity.namespaces instead" }}
{{- end }}
{{- print "cluster" }}
{{- else }}
{{- fail "kubernetesIdentity.enabled: set kubernetesIdentity.namespaces (namespace: tier; a Role in each) or kubernetesIdentity.tierLabel (a pod label whose value names the tier; a ClusterRole)" }}
{{- end }}
{{- end }}

{{/*
The policy's identity.kubernetes, as YAML, from kubernetesIdentity. Every
namespace must map to one of the policy's tiers.
*/}}
{{- define "portcullis.kubeIdentity" -}}
{{- $k := .Values.kubernetesIdentity }}
{{- $out := dict }}
{{- with $k.apiServer }}{{ $_ := set $out "api_server" . }}{{ end }}
{{- if eq (include "portcullis.kubeScope" .) "namespaces" }}
{{- $tiers := include "portcullis.tiers" . | fromYaml }}
{{- range $ns := keys $k.namespaces | sortAlpha }}
{{- $tier := toString (index $k.namespaces $ns) }}
{{- if not (hasKey $tiers $tier) }}
{{- fail (printf "kubernetesIdentity.namespaces: %s maps to %q, which is not a tier (tiers: %s)" $ns $tier (keys $tiers | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- $_ := set $out "namespaces" $k.namespaces }}
{{- else }}
{{- $_ := set $out "tier_label" $k.tierLabel }}
{{- with $k.labelSelector }}{{ $_ := set $out "label_selector" . }}{{ end }}
{{- end }}
{{- with $k.auditLabels }}{{ $_ := set $out "audit_labels" . }}{{ end }}
{{- with $k.watchTimeout }}{{ $_ := set $out "watch_timeout" . }}{{ end }}
{{- with $k.backoffMax }}{{ $_ := set $out "backoff_max" . }}{{ end }}
{{- with $k.maxPods }}{{ $_ := set $out "max_pods" (int .) }}{{ end }}
{{- toYaml $out }}
{{- end }}

{{/*
The part of identity.kubernetes portcullis reads only at start-up (what is
watched, and how), for the pods' checksum/kube-watch annotation: the namespaces'
names without their tiers, and no audit_labels, which both reload.
*/}}
{{- define "portcullis.kubeWatch" -}}
{{- $kube := include "portcullis.kubeIdentity" . | fromYaml }}
{{- if $kube.namespaces }}
{{- $_ := set $kube "namespaces" (keys $kube.namespaces | sortAlpha) }}
{{- end }}
{{- $_ := unset $kube "audit_labels" }}
{{- toYaml $kube }}
{{- end }}

{{/*
A resolver entry ("ip", "ip:port", "v6", "[v6]:port") as "cidr port": the
address as a /32 or /128, and the port (53 when none is given).
*/}}
{{- define "portcullis.resolverPeer" -}}
{{- $s := toString . }}
{{- $ip := $s }}
{{- $port := 53 }}
{{- if hasPrefix "[" $s }}
{{- $ip = regexReplaceAll "^\\[([^\\]]*)\\].*$" $s "${1}" }}
{{- if regexMatch "\\]:[0-9]+$" $s }}
{{- $port = regexReplaceAll "^.*\\]:([0-9]+)$" $s "${1}" | int }}
{{- end }}
{{- else if eq (len (splitList ":" $s)) 2 }}
{{- $ip = index (splitList ":" $s) 0 }}
{{- $port = index (splitList ":" $s) 1 | int }}
{{- end }}
{{- if contains ":" $ip }}{{ printf "%s/128 %d" $ip (int $port) }}{{ else }}{{ printf "%s/32 %d" $ip (int $port) }}{{ end }}
{{- end }}

{{/*
The upstream ports the gateway may open, as "p1 p2 ...": egressPorts when set;
"all" when a tier is in audit mode; otherwise every port of every allow rule
(443 for a rule without ports).
*/}}
{{- define "portcullis.egressPorts" -}}
{{- $np := .Values.networkPolicy.gateway }}
{{- if $np.egressPorts }}
{{- $out := list }}
{{- range $p := $np.egressPorts }}{{ $out = append $out (toString (int $p)) }}{{ end }}
{{- join " " $out }}
{{- else }}
{{- $ports := dict }}
{{- $audit := false }}
{{- range $name, $tier := include "portcullis.tiers" . | fromYaml }}
{{- $t := default (dict) $tier }}
{{- if eq (toString (default "enforce" $t.mode)) "audit" }}{{ $audit = true }}{{ end }}
{{- range $rule := (default (list) $t.allow) }}
{{- range $p := (default (list 443) $rule.ports) }}
{{- $_ := set $ports (printf "%05d" (int $p)) true }}
{{- end }}
{{- end }}
{{- end }}
{{- if $audit }}all{{ else }}{{ regexReplaceAll "(^| )0+" (keys $ports | sortAlpha | join " ") "${1}" }}{{ end }}
{{- end }}
{{- end }}

{{/* Every tier's allow_ranges, as "cidr cidr ...". */}}
{{- define "portcullis.allowRanges" -}}
{{- $ranges := dict }}
{{- range $name, $tier := include "portcullis.tiers" . | fromYaml }}
{{- range $r := (default (list) (default (dict) $tier).allow_ranges) }}
{{- $c := toString $r }}
{{- if not (contains "/" $c) }}{{ $c = ternary (printf "%s/128" $c) (printf "%s/32" $c) (contains ":" $c) }}{{ end }}
{{- $_ := set $ranges $c true }}
{{- end }}
{{- end }}
{{- keys $ranges | sortAlpha | join " " }}
{{- end }}

{{/* The runner namespaces' names, in order, as "a b c". */}}
{{- define "portcullis.runnerNamespaceNames" -}}
{{- $names := list }}
{{- range $rn := .Values.runnerNamespaces }}
{{- if has $rn.name $names }}
{{- fail (printf "runnerNamespaces: %s is listed twice" $rn.name) }}
{{- end }}
{{- $names = append $names $rn.name }}
{{- end }}
{{- join " " $names }}
{{- end }}

{{/* The tiers as YAML: .Values.tiers, or the default tier when none are given. */}}
{{- define "portcullis.tiers" -}}
{{- if .Values.tiers }}
{{- toYaml .Values.tiers }}
{{- else }}
standard:
  mode: enforce
  sources: []
  allow:
    - host: github.com
    - host: raw.githubusercontent.com
    - host: objects.githubusercontent.com
    - host: registry.npmjs.org
    - host: pypi.org
    - host: files.pythonhosted.org
    - host: proxy.golang.org
    - host: deb.debian.org
      ports: [80, 443]
{{- end }}
{{- end }}

{{/*
The gateway's egress exceptions, split by family as "v4 v4 ...|v6 v6 ...":
networkPolicy.gateway.egressExcept plus the link-local ranges and AWS's IPv6
metadata address, which are always excepted.
*/}}
{{- define "portcullis.egressExcept" -}}
{{- $all := concat (list "169.254.0.0/16") (default (list) .Values.networkPolicy.gateway.egressExcept) (list "fe80::/10") }}
{{- if not (or (has "fc00::/7" $all) (has "fd00::/8" $all)) }}
{{- $all = append $all "fd00:ec2::254/128" }}
{{- end }}
{{- $v4 := list }}
{{- $v6 := list }}
{{- range $c := $all | uniq }}
{{- if contains ":" $c }}{{ $v6 = append $v6 $c }}{{ else }}{{ $v4 = append $v4 $c }}{{ end }}
{{- end }}
{{- printf "%s|%s" (join " " $v4) (join " " $v6) }}
{{- end }}

{{/* The pod securityContext of every pod the chart runs (PSA restricted). */}}
{{- define "portcullis.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The securityContext of every container the chart runs (PSA restricted). */}}
{{- define "portcullis.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The policy check's arguments, as a JSON list: exactly what the pre-install /
pre-upgrade hook runs (tests/helm runs the same list against the built binary).
*/}}
{{- define "portcullis.policyCheckArgs" -}}
{{- if .Values.policyCheck.strict -}}
["--check", "/etc/portcullis/policy.yaml", "--strict"]
{{- else -}}
["--check", "/etc/portcullis/policy.yaml"]
{{- end }}
{{- end }}

{{/*
The policy's audit.output: "-" (stdout), or the audit file on the shared
volume. Fails on a shipper without a file to ship.
*/}}
{{- define "portcullis.auditOutput" -}}
{{- $a := .Values.audit }}
{{- if eq $a.destination "file" }}
{{- $dir := trimSuffix "/" $a.file.directory }}
{{- $mounted := list "/etc/portcullis" }}
{{- if $a.shipper.enabled }}{{ $mounted = append $mounted "/tmp" }}{{ end }}
{{- range $taken := $mounted }}
{{- if or (eq $dir $taken) (hasPrefix (printf "%s/" $taken) $dir) (hasPrefix (printf "%s/" $dir) $taken) }}
{{- fail (printf "audit.file.directory %s overlaps %s, which the chart mounts already (the policy; the shipper's /tmp)" $dir $taken) }}
{{- end }}
{{- end }}
{{- printf "%s/%s" $dir $a.file.name }}
{{- else }}
{{- if $a.shipper.enabled }}
{{- fail "audit.shipper.enabled needs audit.destination: file (with stdout there is no file to ship; your log collector reads stdout)" }}
{{- end }}
{{- print "-" }}
{{- end }}
{{- end }}

{{/* Fails unless the proxy, admin, TLS and PROXY protocol ports all differ. */}}
{{- define "portcullis.portsDiffer" -}}
{{- $v := .Values }}
{{- $seen := dict (toString (int $v.ports.proxy)) "ports.proxy" }}
{{- $all := list (list "ports.admin" $v.ports.admin) }}
{{- if $v.tls.enabled }}{{ $all = append $all (list "tls.port" $v.tls.port) }}{{ end }}
{{- if $v.proxyProtocol.enabled }}{{ $all = append $all (list "proxyProtocol.port" $v.proxyProtocol.port) }}{{ end }}
{{- range $e := $all }}
{{- $k := toString (int (index $e 1)) }}
{{- if hasKey $seen $k }}
{{- fail (printf "%s and %s must differ (both %s)" (index $seen $k) (index $e 0) $k) }}
{{- end }}
{{- $_ := set $seen $k (index $e 0) }}
{{- end }}
{{- end }}

{{/*
Where the TLS listener's files are mounted: "server" (the Secret's tls.crt,
tls.key), "spiffe" (the SPIFFE CSI volume: tls.crt, tls.key, ca.crt),
"clientCA" and "crl" directories. The daemon watches each directory, so a
Secret's ..data swap and the CSI driver's rewrites reload.
*/}}
{{- define "portcullis.tlsDirs" -}}
server: /etc/portcullis-tls/server
spiffe: /var/run/secrets/spiffe.io
clientCA: /etc/portcullis-tls/client-ca
crl: /etc/portcullis-tls/crl
{{- end }}

{{/* The policy's listen.tls, from tls. */}}
{{- define "portcullis.listenTLS" -}}
{{- $t := .Values.tls }}
{{- $d := include "portcullis.tlsDirs" . | fromYaml }}
{{- if not (or $t.secretName $t.spiffeCSI.enabled) }}
{{- fail "tls.enabled: set tls.secretName (a kubernetes.io/tls Secret) or tls.spiffeCSI.enabled" }}
{{- end }}
{{- if and $t.spiffeCSI.enabled $t.secretName (or (eq (toString $t.clientCerts) "off") $t.clientCA.secretName $t.clientCA.configMapName) }}
{{- fail "tls.spiffeCSI.enabled: nothing would use the CSI volume (tls.secretName serves the certificate, and the client CA comes from tls.clientCA or client certificates are off)" }}
{{- end }}
{{- $serverDir := ternary $d.server $d.spiffe (ne (toString $t.secretName) "") }}
{{- $out := dict "cert" (printf "%s/tls.crt" $serverDir) "key" (printf "%s/tls.key" $serverDir) }}
{{- if ne (toString $t.clientCerts) "off" }}
{{- $_ := set $out "client_certs" (toString $t.clientCerts) }}
{{- if or $t.clientCA.secretName $t.clientCA.configMapName }}
{{- $_ := set $out "client_ca" (printf "%s/%s" $d.clientCA $t.clientCA.key) }}
{{- else if $t.spiffeCSI.enabled }}
{{- $_ := set $out "client_ca" (printf "%s/ca.crt" $d.spiffe) }}
{{- else }}
{{- fail "tls.clientCerts: set tls.clientCA.secretName or tls.clientCA.configMapName (the CA bundle client certificates chain to)" }}
{{- end }}
{{- if or $t.crl.secretName $t.crl.configMapName }}
{{- $_ := set $out "crl" (printf "%s/%s" $d.crl $t.crl.key) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* A CIDR as NetworkPolicy wants it: a bare address becomes a /32 or /128. */}}
{{- define "portcullis.cidr" -}}
{{- $c := toString . }}
{{- if contains "/" $c }}{{ $c }}{{ else if contains ":" $c }}{{ printf "%s/128" $c }}{{ else }}{{ printf "%s/32" $c }}{{ end }}
{{- end }}

{{/*
What portcullis reads of the TLS listener only at start-up (listen.https and
listen.tls: the client_certs mode and the file paths; the files' contents and
identity.client_certs reload), for the pods' checksum/tls-listener annotation.
*/}}
{{- define "portcullis.tlsListenerStartup" -}}
{{- $v := .Values }}
{{- toYaml (dict "https" (include "portcullis.listen" (list $v.listenAddress $v.tls.port)) "tls" (include "portcullis.listenTLS" . | fromYaml)) }}
{{- end }}

{{/*
Where the interception CA's files are mounted: "ca" (the Secret's tls.crt,
tls.key) and "upstreamCA" (one key of a Secret or ConfigMap). Directories: the
daemon watches them, so a Secret's ..data swap reloads the CA.
*/}}
{{- define "portcullis.interceptDirs" -}}
ca: /etc/portcullis-intercept/ca
upstreamCA: /etc/portcullis-intercept/upstream-ca
{{- end }}

{{/*
The tiers' allow rules that have intercept:, as "tier host, tier host, ..."
(empty when none has).
*/}}
{{- define "portcullis.interceptRules" -}}
{{- $out := list }}
{{- $tiers := include "portcullis.tiers" . | fromYaml }}
{{- range $name := keys $tiers | sortAlpha }}
{{- range $i, $rule := (default (list) (default (dict) (index $tiers $name)).allow) }}
{{- if and (kindIs "map" $rule) (hasKey $rule "intercept") }}
{{- $out = append $out (printf "tiers.%s.allow[%d] (%s)" $name $i (toString $rule.host)) }}
{{- end }}
{{- end }}
{{- end }}
{{- join ", " $out }}
{{- end }}

{{/*
The policy's interception section, as YAML (empty when interception.caSecretName
is): the CA from the Secret's tls.crt and tls.key, the optional upstream CA
bundle, leaf_lifetime and cache_size. Fails when a tier intercepts without a CA,
or when an upstream CA is given without one.
*/}}
{{- define "portcullis.interception" -}}
{{- $i := .Values.interception }}
{{- $d := include "portcullis.interceptDirs" . | fromYaml }}
{{- $upstream := or $i.upstreamCA.secretName $i.upstreamCA.configMapName }}
{{- if $i.caSecretName }}
{{- $out := dict "ca_cert" (printf "%s/tls.crt" $d.ca) "ca_key" (printf "%s/tls.key" $d.ca) "leaf_lifetime" $i.leafLifetime "cache_size" (int $i.cacheSize) }}
{{- if $upstream }}
{{- $_ := set $out "upstream_ca" (printf "%s/%s" $d.upstreamCA $i.upstreamCA.key) }}
{{- end }}
{{- toYaml $out }}
{{- else }}
{{- with include "portcullis.interceptRules" . }}
{{- fail (printf "%s: intercept: needs interception.caSecretName, a kubernetes.io/tls Secret (tls.crt, tls.key) with the CA that signs the certificates portcullis presents for intercepted hosts (chart README: TLS interception); or remove the intercept: blocks" .) }}
{{- end }}
{{- if $upstream }}
{{- fail "interception.upstreamCA is set, but interception.caSecretName is empty: nothing would use it (set caSecretName to turn interception on, or clear upstreamCA)" }}
{{- end }}
{{- end }}
{{- end }}
