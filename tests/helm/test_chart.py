#!/usr/bin/python3
"""Tests of the Helm chart (helm/portcullis) and the Containerfile.

For every values case — the chart's defaults (plus the one required value),
every file in helm/portcullis/examples/ and every file in tests/helm/values/ —
the chart is rendered with tests/helm/render (Go text/template + Sprig, Helm's
semantics), and then:
  - the merged values validate against values.schema.json (python3-jsonschema);
  - every rendered object validates against the Kubernetes API schema
    (k8s_schema.py: python3-kubernetes models, unknown fields and wrong types
    refused);
  - the security properties hold (pod security, token, RBAC, NetworkPolicies,
    availability, probes, the policy in the ConfigMap);
  - the rendered policy passes `portcullis --check`, and the policy check
    hook's Job command (run exactly, against the built binary) passes;
  - the helm test pod runs files/helm-test.sh; the PrometheusRule and the
    Grafana dashboard follow the values and promtool parses every expression.
Then: the checksum/kube-watch pod annotation follows exactly the
identity.kubernetes settings the daemon reads only at start-up.
Negative cases: tests/helm/bad-values/ must be refused by the schema (both by
the renderer's gojsonschema, as `helm install` would, and by python3-jsonschema),
tests/helm/bad-render/ by the chart's own checks; single changes to
kubernetesIdentity (KUBE_AGREEMENT) must be accepted or refused alike by the
schema and by `portcullis --check`; tests/helm/check-fails/ render but the
policy check hook's command must fail on them; the validator itself must refuse
known-bad objects. The monitoring group runs `promtool test rules`
(tests/helm/prometheus/rules_test.yaml) on the rendered alerts. The Containerfile group checks the image recipe
against ./dev, meson.build and the binary's libraries.

Output: one "ok N - ..." / "not ok N - ..." line per case, then
"N passed, N failed"; exit status 1 on any failure.

usage: test_chart.py --renderer BIN --srcdir REPO [--portcullis BIN] [--workdir DIR]
                     [--only GROUP[,GROUP]]
       groups: render, negative, selftest, monitoring, containerfile
"""

import argparse
import copy
import hashlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

import jsonschema
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_schema  # noqa: E402
import containerfile  # noqa: E402
import monitoring  # noqa: E402
import values_table  # noqa: E402

RELEASE = "portcullis"
NAMESPACE = "egress"
PROMTOOL = "/usr/bin/promtool"


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Runner:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def case(self, name, fn, *args):
        self.n += 1
        try:
            fn(*args)
        except Failure as e:
            self.failed += 1
            print(f"not ok {self.n} - {name}")
            for line in str(e).splitlines():
                print(f"#   {line}")
        except Exception:  # a crash in a check is a failure too, with its trace
            self.failed += 1
            print(f"not ok {self.n} - {name}")
            for line in traceback.format_exc().splitlines():
                print(f"#   {line}")
        else:
            print(f"ok {self.n} - {name}")
        sys.stdout.flush()


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (the API server's decoder is strict too)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_all(text):
    return [d for d in yaml.load_all(text, Loader=UniqueKeyLoader) if d is not None]


# ---------------------------------------------------------------------------
# Rendering


class Rendered:
    def __init__(self, name, files, objects, values, notes):
        self.name = name
        self.files = files
        self.objects = objects
        self.values = values
        self.notes = notes

    def of_kind(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind, name=None):
        objs = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        check(len(objs) == 1, f"expected exactly one {kind}{' ' + name if name else ''}, found {len(objs)}")
        return objs[0]


def render(args, value_files, tag):
    out = os.path.join(args.workdir, tag)
    os.makedirs(out, exist_ok=True)
    cmd = [args.renderer, "--chart", args.chart, "--name", RELEASE, "--namespace", NAMESPACE,
           "--notes", os.path.join(out, "NOTES.txt"), "--dump-values", os.path.join(out, "values.json")]
    for f in value_files:
        cmd += ["-f", f]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(os.path.join(out, "manifests.yaml"), "w") as fh:
        fh.write(p.stdout)
    values = None
    if os.path.exists(os.path.join(out, "values.json")):
        with open(os.path.join(out, "values.json")) as fh:
            values = json.load(fh)
    return p, out, values


def load_schema(args):
    with open(os.path.join(args.chart, "values.schema.json")) as fh:
        return json.load(fh)


def schema_errors(schema, values):
    v = jsonschema.Draft7Validator(schema)
    return [f"{'.'.join(str(x) for x in e.absolute_path) or '(root)'}: {e.message}"
            for e in sorted(v.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))]


# ---------------------------------------------------------------------------
# Helpers for the assertions


def parse_duration(s):
    if s in (0, "0"):
        return 0
    m = re.fullmatch(r"([0-9]+)(ms|s|m|h)", str(s))
    check(m, f"bad duration {s!r}")
    n, unit = int(m.group(1)), m.group(2)
    return {"ms": n / 1000, "s": n, "m": n * 60, "h": n * 3600}[unit]


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def plain_proxy(policy):
    """listen.proxy's plain entry: the string, or the first entry of the list form."""
    lp = policy["listen"]["proxy"]
    return lp if isinstance(lp, str) else lp[0]


def pp_listeners(policy):
    """listen.proxy's PROXY protocol entries (mapping form)."""
    lp = policy["listen"]["proxy"]
    return [] if isinstance(lp, str) else [e for e in lp if isinstance(e, dict)]


def https_port(policy):
    return port_of(policy["listen"]["https"]) if "https" in policy["listen"] else None


def client_ports(policy):
    """The ports runner and client pods may reach: the plain proxy port and the TLS listener's."""
    ports = [port_of(plain_proxy(policy))]
    if https_port(policy) is not None:
        ports.append(https_port(policy))
    return ports


def selector_labels():
    return {"app.kubernetes.io/name": "portcullis", "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": "gateway"}


def gateway_pod(r):
    dep = r.one("Deployment")
    return dep, dep["spec"]["template"]["metadata"], dep["spec"]["template"]["spec"]


def is_hook(o):
    return "helm.sh/hook" in (o["metadata"].get("annotations") or {})


def hook_events(o):
    return set((o["metadata"].get("annotations") or {}).get("helm.sh/hook", "").split(","))


def policy_of(r):
    """The release's policy ConfigMap (not the policy check hook's copy)."""
    cms = [o for o in r.of_kind("ConfigMap") if "policy.yaml" in (o.get("data") or {}) and not is_hook(o)]
    check(len(cms) == 1, f"expected one ConfigMap with policy.yaml, found {len(cms)}")
    text = cms[0]["data"]["policy.yaml"]
    return cms[0], text, yaml.load(text, Loader=UniqueKeyLoader)


def resolver_cidrs(values):
    out = []
    for s in values["resolver"]["servers"]:
        if s.startswith("["):
            ip, _, rest = s[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") else 53
        elif s.count(":") == 1:
            ip, port = s.split(":")[0], int(s.split(":")[1])
        else:
            ip, port = s, 53
        a = ipaddress.ip_address(ip)
        out.append((str(ipaddress.ip_network(f"{a}/{a.max_prefixlen}")), port))
    return out


# Addresses no gateway egress rule may reach unless the values name them (a
# resolver on its DNS port, an allow_ranges entry, the API server): these
# always, and any address inside the configured egressExcept ranges.
ALWAYS_FORBIDDEN = [
    "169.254.169.254",    # AWS/GCP/Azure/OpenStack metadata
    "169.254.170.2",      # ECS task metadata
    "fd00:ec2::254",      # AWS IPv6 metadata
    "fe80::1",
]
TYPICAL_INTERNAL = [
    "168.63.129.16",      # Azure wireserver
    "100.100.100.200",    # Alibaba metadata (100.64/10)
    "10.0.0.1", "10.96.0.1", "172.17.0.1", "192.168.1.1", "fd00::1",
]


def forbidden_addresses(except_cidrs):
    nets = [ipaddress.ip_network(c) for c in except_cidrs]
    out = list(ALWAYS_FORBIDDEN)
    for a in TYPICAL_INTERNAL:
        ip = ipaddress.ip_address(a)
        if any(ip.version == n.version and ip in n for n in nets):
            out.append(a)
    for n in nets:
        out += [str(n.network_address), str(n.broadcast_address)]
    return out


def peers_admitting(rule, addr):
    """The ipBlock peers of an egress rule that admit addr."""
    a = ipaddress.ip_address(addr)
    hits = []
    for peer in rule.get("to") or []:
        b = peer.get("ipBlock")
        if not b:
            continue
        net = ipaddress.ip_network(b["cidr"])
        if a.version != net.version or a not in net:
            continue
        if any(a in ipaddress.ip_network(x) for x in b.get("except") or []):
            continue
        hits.append(b["cidr"])
    return hits


# ---------------------------------------------------------------------------
# Per-case assertions


def pod_specs(r):
    """Every pod the chart runs: the gateway's template, hook Jobs' templates, hook Pods."""
    out = [("Deployment/" + d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in r.of_kind("Deployment")]
    out += [("Job/" + j["metadata"]["name"], j["spec"]["template"]["spec"]) for j in r.of_kind("Job")]
    out += [("Pod/" + p["metadata"]["name"], p["spec"]) for p in r.of_kind("Pod")]
    return out


def assert_pod_security(r):
    check(r.of_kind("Deployment"), "no Deployment")
    for where, pod in pod_specs(r):
        try:
            assert_one_pod_security(pod)
        except Failure as e:
            raise Failure(f"{where}: {e}")
    if r.values.get("namespace", {}).get("create"):
        ns = r.one("Namespace", NAMESPACE)
        labels = ns["metadata"]["labels"]
        check(labels.get("pod-security.kubernetes.io/enforce") == "restricted",
              f"Namespace enforce label is {labels.get('pod-security.kubernetes.io/enforce')}")
    else:
        check(not r.of_kind("Namespace"), "a Namespace object although namespace.create is false")


def assert_one_pod_security(pod):
    psc = pod.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot is not true")
    check(psc.get("runAsUser") == 65532, f"pod runAsUser is {psc.get('runAsUser')}, not 65532")
    check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "pod seccompProfile is not RuntimeDefault")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        check(not pod.get(key), f"pod sets {key}")
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}
    for v in pod.get("volumes") or []:
        kinds = set(v) - {"name"}
        check(kinds <= allowed_volumes, f"volume {v['name']} is of a type PSA restricted forbids: {kinds}")
    containers = (pod.get("containers") or []) + (pod.get("initContainers") or [])
    check(containers, "no containers")
    for c in containers:
        sc = c.get("securityContext") or {}
        n = c["name"]
        check(sc.get("allowPrivilegeEscalation") is False, f"{n}: allowPrivilegeEscalation is not false")
        check(sc.get("readOnlyRootFilesystem") is True, f"{n}: readOnlyRootFilesystem is not true")
        check(not sc.get("privileged"), f"{n}: privileged")
        caps = sc.get("capabilities") or {}
        check(caps.get("drop") == ["ALL"], f"{n}: capabilities.drop is {caps.get('drop')}, not [ALL]")
        check(not caps.get("add"), f"{n}: adds capabilities {caps.get('add')}")
        check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{n}: may run as root")
        check(sc.get("runAsUser", psc.get("runAsUser")) not in (None, 0), f"{n}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        check(seccomp in ("RuntimeDefault", "Localhost"), f"{n}: seccompProfile {seccomp}")
        for p in c.get("ports") or []:
            check("hostPort" not in p, f"{n}: hostPort {p.get('hostPort')}")
        res = c.get("resources") or {}
        for kind, keys in (("requests", ("cpu", "memory")), ("limits", ("memory",))):
            for k in keys:
                check(k in (res.get(kind) or {}), f"{n}: resources.{kind}.{k} missing")


def assert_token_and_rbac(r):
    _, _, pod = gateway_pod(r)
    identity = r.values["kubernetesIdentity"]["enabled"]
    sa_name = pod.get("serviceAccountName")
    check(sa_name, "pod has no serviceAccountName")
    check(pod.get("automountServiceAccountToken") is identity,
          f"pod automountServiceAccountToken is {pod.get('automountServiceAccountToken')}, identity is {identity}")
    sas = r.of_kind("ServiceAccount")
    if r.values["serviceAccount"]["create"]:
        sa = r.one("ServiceAccount", sa_name)
        check(sa.get("automountServiceAccountToken") is identity,
              f"ServiceAccount automountServiceAccountToken is {sa.get('automountServiceAccountToken')}")
    else:
        check(not sas, "a ServiceAccount although serviceAccount.create is false")
    rbac = [o for o in r.objects if o["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    if not identity:
        check(not rbac, f"RBAC objects although kubernetesIdentity is off: {[o['kind'] for o in rbac]}")
        return
    check(rbac, "kubernetesIdentity is on, but no RBAC objects")
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in rbac if o["kind"] in ("Role", "ClusterRole")}
    for role in roles.values():
        check(role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
              f"{role['kind']} {role['metadata']['name']} grants more than pods get/list/watch: {role['rules']}")
    bindings = [o for o in rbac if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    check(len(bindings) == len(roles), "every Role needs exactly one binding")
    for b in bindings:
        ref = b["roleRef"]
        key = (ref["kind"], b["metadata"].get("namespace") if ref["kind"] == "Role" else None, ref["name"])
        check(key in roles, f"{b['kind']} {b['metadata']['name']} refers to a missing {ref['kind']} {ref['name']}")
        check(b["subjects"] == [{"kind": "ServiceAccount", "name": sa_name, "namespace": NAMESPACE}],
              f"{b['kind']} {b['metadata']['name']} binds {b['subjects']}")
    # Access exactly where the daemon watches: what the rendered policy says, not the values.
    _, _, policy = policy_of(r)
    kube = (policy.get("identity") or {}).get("kubernetes") or {}
    pinned = r.values["kubernetesIdentity"].get("clusterWide")
    if "namespaces" in kube:
        got = sorted(k[1] for k in roles if k[0] == "Role")
        check({k[0] for k in roles} == {"Role"}, f"namespaces mode: expected Roles only, got {sorted(roles)}")
        check(got == sorted(kube["namespaces"]), f"Roles in {got}, but the policy watches {sorted(kube['namespaces'])}")
        check(pinned is not True, "namespaces mode rendered although clusterWide is true")
    else:
        check("tier_label" in kube, f"identity.kubernetes has neither namespaces nor tier_label: {kube}")
        check([k[0] for k in roles] == ["ClusterRole"], f"tier label mode: expected one ClusterRole, got {sorted(roles)}")
        check(pinned is not False, "a ClusterRole rendered although clusterWide is false")


def assert_availability(r):
    dep, meta, pod = gateway_pod(r)
    spec = dep["spec"]
    if r.values["autoscaling"]["enabled"]:
        check("replicas" not in spec, "Deployment sets replicas although an HPA manages them")
        hpa = r.one("HorizontalPodAutoscaler")
        check(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": dep["metadata"]["name"]}, "HPA targets another object")
        check(hpa["spec"]["minReplicas"] >= 2, "HPA minReplicas < 2")
    else:
        check(not r.of_kind("HorizontalPodAutoscaler"), "an HPA although autoscaling is off")
        check(spec.get("replicas") == r.values["replicaCount"], "replicas differ from replicaCount")
    if r.name == "defaults":
        check(spec.get("replicas", 0) >= 2, "default replicas < 2")
    st = spec["strategy"]
    check(st["type"] == "RollingUpdate" and st["rollingUpdate"]["maxUnavailable"] == 0,
          f"strategy is not RollingUpdate with maxUnavailable 0: {st}")
    aff = pod.get("affinity") or {}
    if not r.values.get("affinity"):
        paa = aff.get("podAntiAffinity") or {}
        terms = [t["podAffinityTerm"] for t in paa.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        terms += paa.get("requiredDuringSchedulingIgnoredDuringExecution") or []
        check(terms, "no podAntiAffinity")
        for t in terms:
            check(t["topologyKey"] == "kubernetes.io/hostname", "anti-affinity is not per node")
            check(k8s_schema.selector_matches(t["labelSelector"], meta["labels"]),
                  "anti-affinity selector does not select the gateway pods")
        if r.values["podAntiAffinity"] == "hard":
            check(paa.get("requiredDuringSchedulingIgnoredDuringExecution"), "hard anti-affinity not required")
    _, _, policy = policy_of(r)
    drain = parse_duration(policy["timeouts"]["drain"])
    grace = pod["terminationGracePeriodSeconds"]
    sleep = 0
    lc = pod["containers"][0].get("lifecycle") or {}
    if lc.get("preStop"):
        cmd = lc["preStop"]["exec"]["command"]
        check(cmd[0] == "/bin/sleep", f"preStop is {cmd}")
        sleep = int(cmd[1])
    check(grace > drain + sleep, f"terminationGracePeriodSeconds {grace} <= preStop {sleep}s + drain {drain}s")
    if r.values["podDisruptionBudget"]["enabled"]:
        pdb = r.one("PodDisruptionBudget")
        check(k8s_schema.selector_matches(pdb["spec"]["selector"], meta["labels"]), "PDB does not select the gateway")
        check(pdb["spec"].get("maxUnavailable") != 0 and pdb["spec"].get("minAvailable") not in ("100%",),
              "PDB blocks every eviction")


def assert_ports_probes_service(r):
    dep, meta, pod = gateway_pod(r)
    _, _, policy = policy_of(r)
    c = pod["containers"][0]
    ports = {p["name"]: p for p in c["ports"]}
    want_names = {"proxy", "metrics"}
    if https_port(policy) is not None:
        want_names.add("https")
        check(ports.get("https", {}).get("containerPort") == https_port(policy),
              "container port 'https' differs from the policy's listen.https")
    pps = pp_listeners(policy)
    check(len(pps) == (1 if r.values["proxyProtocol"]["enabled"] else 0),
          f"{len(pps)} PROXY protocol listeners, proxyProtocol.enabled is {r.values['proxyProtocol']['enabled']}")
    if pps:
        want_names.add("proxy-protocol")
        check(ports.get("proxy-protocol", {}).get("containerPort") == port_of(pps[0]["address"]),
              "container port 'proxy-protocol' differs from the policy's PROXY protocol listener")
    check(set(ports) == want_names, f"container ports are {sorted(ports)}, expected {sorted(want_names)}")
    check(ports["proxy"]["containerPort"] == port_of(plain_proxy(policy)),
          "container port 'proxy' differs from the policy's listen.proxy")
    check(ports["metrics"]["containerPort"] == port_of(policy["listen"]["admin"]),
          "container port 'metrics' differs from the policy's listen.admin")
    check(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, "liveness probe not /healthz on metrics")
    check(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, "readiness probe not /readyz on metrics")
    check(c["args"] == ["-c", "/etc/portcullis/policy.yaml"], f"args are {c['args']}")
    mounts = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/portcullis"]
    check(len(mounts) == 1 and "subPath" not in mounts[0] and mounts[0].get("readOnly"),
          "the policy must be mounted read-only as a directory (no subPath) for the ..data reload")
    vol = [v for v in pod["volumes"] if v["name"] == mounts[0]["name"]][0]
    cm, text, _ = policy_of(r)
    check(vol["configMap"]["name"] == cm["metadata"]["name"], "the policy volume is not the policy ConfigMap")
    svc = r.one("Service", dep["metadata"]["name"])
    check(svc["spec"].get("type", "ClusterIP") == "ClusterIP", "proxy Service is not ClusterIP")
    pp_svc_values = r.values["proxyProtocol"]["service"]
    separate = r.values["proxyProtocol"]["enabled"] and pp_svc_values["enabled"]
    want_svc = [{"name": n, "protocol": "TCP", "port": ports[n]["containerPort"], "targetPort": n}
                for n in ("proxy", "https", "proxy-protocol") if n in ports and not (separate and n == "proxy-protocol")]
    check(svc["spec"]["ports"] == want_svc, f"proxy Service ports: {svc['spec']['ports']}, expected {want_svc}")
    pp_svcs = [s for s in r.of_kind("Service") if s["metadata"]["name"] == dep["metadata"]["name"] + "-proxy-protocol"]
    check(len(pp_svcs) == (1 if separate else 0), f"{len(pp_svcs)} PROXY protocol Services, separate={separate}")
    if separate:
        ps = pp_svcs[0]["spec"]
        check(ps["ports"] == [{"name": "proxy-protocol", "protocol": "TCP", "port": ports["proxy-protocol"]["containerPort"],
                               "targetPort": "proxy-protocol"}], f"PROXY protocol Service ports: {ps['ports']}")
        check(ps["selector"] == selector_labels(), "the PROXY protocol Service does not select the gateway pods only")
        check(ps.get("type") == pp_svc_values["type"], f"PROXY protocol Service type {ps.get('type')}")
        check((pp_svcs[0]["metadata"].get("annotations") or {}) == (pp_svc_values.get("annotations") or {}),
              "PROXY protocol Service annotations differ from the values")
        check(ps.get("loadBalancerSourceRanges") == (pp_svc_values.get("loadBalancerSourceRanges") or None),
              "loadBalancerSourceRanges differ from the values")
    check(svc["spec"]["selector"] == selector_labels(), "proxy Service does not select the gateway pods only")
    aff = r.values["service"]["sessionAffinity"]
    if aff["enabled"]:
        check(svc["spec"].get("sessionAffinity") == "ClientIP" and svc["spec"].get("sessionAffinityConfig") ==
              {"clientIP": {"timeoutSeconds": aff["timeoutSeconds"]}},
              "no ClientIP session affinity with the configured timeout: a source's limits would split over replicas")
    else:
        check(svc["spec"].get("sessionAffinity") == "None" and "sessionAffinityConfig" not in svc["spec"],
              "session affinity although service.sessionAffinity.enabled is false")
    if r.name == "defaults":
        check(aff["enabled"], "ClientIP session affinity is not on by default")
    check(k8s_schema.selector_matches({"matchLabels": svc["spec"]["selector"]}, meta["labels"]),
          "proxy Service does not select the gateway pods")
    if r.values["serviceMonitor"]["enabled"]:
        sm = r.one("ServiceMonitor")
        msvc = [s for s in r.of_kind("Service") if k8s_schema.selector_matches(sm["spec"]["selector"], s["metadata"]["labels"])]
        check(len(msvc) == 1 and msvc[0]["metadata"]["name"] != svc["metadata"]["name"],
              "the ServiceMonitor must select exactly the metrics Service")
        check([p["name"] for p in msvc[0]["spec"]["ports"]] == ["metrics"], "metrics Service exposes more than metrics")
        check([e["port"] for e in sm["spec"]["endpoints"]] == ["metrics"], "ServiceMonitor does not scrape 'metrics'")
        check(sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}, "ServiceMonitor namespaceSelector")
    else:
        check(not r.of_kind("ServiceMonitor") and len(r.of_kind("Service")) == 1 + len(pp_svcs),
              "ServiceMonitor or metrics Service although serviceMonitor is off")
    ann = meta.get("annotations") or {}
    if r.values["restartOnPolicyChange"]:
        check(ann.get("checksum/policy") == hashlib.sha256(text.rstrip("\n").encode()).hexdigest(),
              "checksum/policy is not the sha256 of the rendered policy")
    else:
        check("checksum/policy" not in ann, "checksum annotation although restartOnPolicyChange is off")


def assert_policy(r):
    _, text, policy = policy_of(r)
    v = r.values
    host = "[::]" if v["listenAddress"] == "::" else "0.0.0.0"
    check(policy["version"] == 1, "policy version is not 1")
    want_proxy = f"{host}:{v['ports']['proxy']}"
    pp = v["proxyProtocol"]
    if pp["enabled"]:
        want_proxy = [want_proxy, {"address": f"{host}:{pp['port']}", "proxy_protocol": {
            "mode": pp["mode"], "trusted": pp["trusted"], "timeout": pp["timeout"]}}]
    check(policy["listen"]["proxy"] == want_proxy, f"listen.proxy is {policy['listen']['proxy']}, expected {want_proxy}")
    if v["tls"]["enabled"]:
        check(policy["listen"].get("https") == f"{host}:{v['tls']['port']}", f"listen.https is {policy['listen'].get('https')}")
        check(policy["listen"]["tls"].get("client_certs", "off") == v["tls"]["clientCerts"],
              "listen.tls.client_certs differs from tls.clientCerts")
        want_rules = v["tls"]["clientCertRules"] if v["tls"]["clientCerts"] != "off" else None
        check((policy.get("identity") or {}).get("client_certs") == want_rules,
              f"identity.client_certs is {(policy.get('identity') or {}).get('client_certs')}, expected {want_rules}")
    else:
        check("https" not in policy["listen"] and "tls" not in policy["listen"], "a TLS listener although tls is off")
        check("client_certs" not in (policy.get("identity") or {}), "identity.client_certs although tls is off")
    check(policy["listen"]["admin"] == f"{host}:{v['ports']['admin']}", f"listen.admin is {policy['listen']['admin']}")
    check(policy["resolver"]["servers"] == v["resolver"]["servers"], "resolver.servers differ from the values")
    a = v["audit"]
    want_output = "-" if a["destination"] == "stdout" else a["file"]["directory"].rstrip("/") + "/" + a["file"]["name"]
    check(policy["audit"]["output"] == want_output, f"audit.output is {policy['audit']['output']!r}, expected {want_output!r}")
    check(parse_duration(policy["timeouts"]["drain"]) == v["drainSeconds"], "timeouts.drain differs from drainSeconds")
    if v.get("tiers"):
        check(policy["tiers"] == v["tiers"], "tiers differ from the values")
    else:
        check(list(policy["tiers"]) == ["standard"] and policy["tiers"]["standard"]["sources"] == [],
              "the default tier is not a source-less 'standard'")
    for key in ("&", "*", "!!"):
        check(not re.search(r"(^|\s)" + re.escape(key) + r"\w", text), f"policy text uses YAML {key!r} syntax")


def assert_tls_files(r):
    """Every file the TLS listener reads is in a directory mounted read-only from the
    volume the values name (a Secret, a ConfigMap or the SPIFFE CSI driver), without
    subPath, so that the daemon's directory watch sees rotations."""
    _, _, policy = policy_of(r)
    _, _, pod = gateway_pod(r)
    t = r.values["tls"]
    c = pod["containers"][0]
    tls_mounts = [m for m in c["volumeMounts"] if m["name"].startswith("tls-")]
    if not t["enabled"]:
        check(not tls_mounts and not [vol for vol in pod["volumes"] if vol["name"].startswith("tls-")],
              "TLS volumes although tls is off")
        return
    lt = policy["listen"]["tls"]
    want_files = {"cert": None, "key": None}
    if t["clientCerts"] != "off":
        want_files["client_ca"] = None
        if t["crl"]["secretName"] or t["crl"]["configMapName"]:
            want_files["crl"] = None
    check(set(lt) - {"client_certs"} == set(want_files), f"listen.tls has {sorted(lt)}")
    used = set()
    for key in want_files:
        path = lt[key]
        d, name = os.path.dirname(path), os.path.basename(path)
        mounts = [m for m in c["volumeMounts"] if m["mountPath"] == d]
        check(len(mounts) == 1, f"listen.tls.{key} {path}: its directory is not mounted (exactly once)")
        m = mounts[0]
        check(m.get("readOnly") is True and "subPath" not in m and "subPathExpr" not in m,
              f"listen.tls.{key}: {d} must be mounted read-only as a directory (no subPath) for rotation")
        vol = [v for v in pod["volumes"] if v["name"] == m["name"]][0]
        used.add(m["name"])
        ca_src = t["clientCA"]["secretName"] or t["clientCA"]["configMapName"]
        from_csi = (key in ("cert", "key") and not t["secretName"]) or (key == "client_ca" and not ca_src)
        if from_csi:
            check(t["spiffeCSI"]["enabled"], f"listen.tls.{key}: neither a Secret/ConfigMap nor the SPIFFE CSI volume")
            check(vol.get("csi", {}).get("driver") == t["spiffeCSI"]["driver"] and vol["csi"].get("readOnly") is True,
                  f"listen.tls.{key}: not the read-only {t['spiffeCSI']['driver']} CSI volume: {vol}")
            check(name == {"cert": "tls.crt", "key": "tls.key", "client_ca": "ca.crt"}[key],
                  f"listen.tls.{key}: {name} is not the CSI driver's file")
            if t["spiffeCSI"]["driver"] == "spiffe.csi.cert-manager.io":
                gid = str((pod.get("securityContext") or {}).get("runAsGroup"))
                check((vol["csi"].get("volumeAttributes") or {}).get("spiffe.csi.cert-manager.io/fs-group") == gid,
                      f"the SVID files are not given the gateway's group {gid} (fs-group): it could not read them")
            continue
        if key in ("cert", "key"):
            src = {"secretName": t["secretName"], "configMapName": "", "key": {"cert": "tls.crt", "key": "tls.key"}[key]}
            check(name == src["key"], f"listen.tls.{key}: file {name}, not the Secret's {src['key']}")
        else:
            src = t["clientCA"] if key == "client_ca" else t["crl"]
            check(name == src["key"], f"listen.tls.{key}: file {name}, the values name key {src['key']}")
        if src["secretName"]:
            check(vol.get("secret", {}).get("secretName") == src["secretName"],
                  f"listen.tls.{key}: volume is not Secret {src['secretName']}: {vol}")
            items = vol["secret"].get("items")
        else:
            check(vol.get("configMap", {}).get("name") == src["configMapName"],
                  f"listen.tls.{key}: volume is not ConfigMap {src['configMapName']}: {vol}")
            items = vol["configMap"].get("items")
        check(items is None or {"key": src["key"], "path": name} in items,
              f"listen.tls.{key}: the volume does not project {src['key']} as {name}")
    check(used == {m["name"] for m in tls_mounts}, f"TLS mounts {sorted(m['name'] for m in tls_mounts)} not all used")


def intercept_rules(values, policy):
    """[(tier, host)] of the policy's allow rules that have intercept:."""
    return [(name, rule.get("host")) for name, tier in (policy.get("tiers") or {}).items()
            for rule in ((tier or {}).get("allow") or []) if isinstance(rule, dict) and "intercept" in rule]


def assert_interception(r):
    """interception.caSecretName: the policy's interception section names the Secret's tls.crt and
    tls.key (and the upstream CA bundle's key) in directories mounted read-only from the Secret or
    ConfigMap the values name, without subPath, so that the daemon's directory watch sees a renewed
    CA; leaf_lifetime and cache_size follow the values; the pods carry checksum/interception.
    Without it: no section, no volumes, no annotation, and no tier intercepts."""
    _, _, policy = policy_of(r)
    _, meta, pod = gateway_pod(r)
    i = r.values["interception"]
    c = pod["containers"][0]
    mounts = [m for m in c["volumeMounts"] if m["name"].startswith("intercept-")]
    volumes = [v for v in pod["volumes"] if v["name"].startswith("intercept-")]
    annotations = meta.get("annotations") or {}
    if not i["caSecretName"]:
        check("interception" not in policy, "an interception section although interception.caSecretName is empty")
        check(not mounts and not volumes, "interception volumes although interception.caSecretName is empty")
        check("checksum/interception" not in annotations, "checksum/interception although interception is off")
        check(not intercept_rules(r.values, policy), "a tier intercepts, but the chart rendered no interception CA")
        return
    ic = policy.get("interception")
    check(isinstance(ic, dict), "no interception section although interception.caSecretName is set")
    upstream = i["upstreamCA"]
    want = {"ca_cert": ("tls.crt", {"secretName": i["caSecretName"], "configMapName": "", "key": "tls.crt"}),
            "ca_key": ("tls.key", {"secretName": i["caSecretName"], "configMapName": "", "key": "tls.key"})}
    if upstream["secretName"] or upstream["configMapName"]:
        want["upstream_ca"] = (upstream["key"], upstream)
    check(set(ic) == set(want) | {"leaf_lifetime", "cache_size"}, f"interception has {sorted(ic)}")
    check(ic["leaf_lifetime"] == i["leafLifetime"], f"interception.leaf_lifetime is {ic['leaf_lifetime']}")
    check(ic["cache_size"] == i["cacheSize"], f"interception.cache_size is {ic['cache_size']}")
    used = set()
    for key, (fname, src) in want.items():
        path = ic[key]
        d, name = os.path.dirname(path), os.path.basename(path)
        check(name == fname, f"interception.{key}: file {name}, the values name key {fname}")
        ms = [m for m in c["volumeMounts"] if m["mountPath"] == d]
        check(len(ms) == 1, f"interception.{key} {path}: its directory is not mounted (exactly once)")
        m = ms[0]
        check(m.get("readOnly") is True and "subPath" not in m and "subPathExpr" not in m,
              f"interception.{key}: {d} must be mounted read-only as a directory (no subPath) for rotation")
        vol = [v for v in pod["volumes"] if v["name"] == m["name"]][0]
        used.add(m["name"])
        if src["secretName"]:
            check(vol.get("secret", {}).get("secretName") == src["secretName"],
                  f"interception.{key}: volume is not Secret {src['secretName']}: {vol}")
            items = vol["secret"].get("items")
        else:
            check(vol.get("configMap", {}).get("name") == src["configMapName"],
                  f"interception.{key}: volume is not ConfigMap {src['configMapName']}: {vol}")
            items = vol["configMap"].get("items")
        check(items is None or {"key": src["key"], "path": name} in items,
              f"interception.{key}: the volume does not project {src['key']} as {name}")
        if key == "ca_cert":
            check(items is not None and {it["key"] for it in items} == {"tls.crt", "tls.key"},
                  f"the CA volume projects {items}: only tls.crt and tls.key belong in the pod")
    check(used == {m["name"] for m in mounts}, f"interception mounts {sorted(m['name'] for m in mounts)} not all used")
    check({v["name"] for v in volumes} == used, f"interception volumes {sorted(v['name'] for v in volumes)} not all mounted")
    check(re.fullmatch(r"[0-9a-f]{64}", annotations.get("checksum/interception", "")),
          "no checksum/interception annotation: a changed section would not roll the pods")


def expected_kube_identity(k):
    """identity.kubernetes as the chart must write it from the kubernetesIdentity values."""
    out = {}
    if k.get("apiServer"):
        out["api_server"] = k["apiServer"]
    if k.get("namespaces"):
        out["namespaces"] = k["namespaces"]
    else:
        out["tier_label"] = k["tierLabel"]
        if k.get("labelSelector"):
            out["label_selector"] = k["labelSelector"]
    if k.get("auditLabels"):
        out["audit_labels"] = k["auditLabels"]
    for key, pkey in (("watchTimeout", "watch_timeout"), ("backoffMax", "backoff_max"), ("maxPods", "max_pods")):
        if k.get(key) is not None:
            out[pkey] = k[key]
    return out


def assert_kube_identity(r):
    _, _, policy = policy_of(r)
    _, meta, _ = gateway_pod(r)
    v = r.values
    k = v["kubernetesIdentity"]
    identity = policy.get("identity") or {}
    want_unknown = ((v.get("policy") or {}).get("identity") or {}).get("unknown_source")
    check(identity.get("unknown_source") == want_unknown,
          f"identity.unknown_source is {identity.get('unknown_source')!r}, the values say {want_unknown!r}")
    ann = meta.get("annotations") or {}
    if not k["enabled"]:
        check("kubernetes" not in identity, "identity.kubernetes although kubernetesIdentity is off")
        check("checksum/kube-watch" not in ann, "checksum/kube-watch although kubernetesIdentity is off")
        return
    kube = identity.get("kubernetes")
    want = expected_kube_identity(k)
    check(kube == want, f"identity.kubernetes is {kube}, expected {want}")
    check(("namespaces" in kube) != ("tier_label" in kube), "identity.kubernetes needs exactly one of namespaces and tier_label")
    for ns, tier in (kube.get("namespaces") or {}).items():
        check(tier in policy["tiers"], f"namespace {ns} maps to {tier!r}, which is not a tier")
    check(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/kube-watch", "")),
          "no checksum/kube-watch pod annotation: a change to what is watched would not restart the pods")


def assert_gateway_netpol(r):
    v = r.values
    nps = [o for o in r.of_kind("NetworkPolicy") if o["metadata"].get("namespace") == NAMESPACE]
    if not v["networkPolicy"]["gateway"]["enabled"]:
        check(not nps, "a gateway NetworkPolicy although it is disabled")
        return
    check(len(nps) == 1, f"expected one NetworkPolicy in {NAMESPACE}, found {len(nps)}")
    np = nps[0]["spec"]
    _, meta, _ = gateway_pod(r)
    _, _, policy = policy_of(r)
    proxy, admin = port_of(plain_proxy(policy)), port_of(policy["listen"]["admin"])
    client_port_list = [{"protocol": "TCP", "port": p} for p in client_ports(policy)]
    pps = pp_listeners(policy)
    check(np["podSelector"] == {"matchLabels": selector_labels()}, f"gateway podSelector is {np['podSelector']}")
    check(k8s_schema.selector_matches(np["podSelector"], meta["labels"]), "gateway policy does not select the pods")
    check(sorted(np["policyTypes"]) == ["Egress", "Ingress"], f"policyTypes {np['policyTypes']}")

    extra_in = v["networkPolicy"]["gateway"]["extraIngress"] or []
    ingress = np.get("ingress") or []
    chart_in = ingress[:len(ingress) - len(extra_in)] if extra_in else ingress
    check(ingress[len(chart_in):] == extra_in, "extraIngress not rendered verbatim at the end")
    clients = (v.get("runnerNamespaces") or []) + (v.get("clientNamespaces") or [])
    proxy_rules = [rule for rule in chart_in if rule.get("ports") == client_port_list]
    admin_rules = [rule for rule in chart_in if rule.get("ports") == [{"protocol": "TCP", "port": admin}]]
    pp_rules = [rule for rule in chart_in
                if pps and rule.get("ports") == [{"protocol": "TCP", "port": port_of(pps[0]["address"])}]]
    check(len(proxy_rules) + len(admin_rules) + len(pp_rules) == len(chart_in),
          "an ingress rule on other ports than the proxy (and TLS) ports, the admin port and the PROXY protocol port")
    if pps:
        # The PROXY protocol port: exactly the trusted balancers, by ipBlock, nothing else.
        check(len(pp_rules) == 1, "expected one ingress rule on the PROXY protocol port")
        got = [peer for peer in pp_rules[0].get("from") or []]
        want_pp = [{"ipBlock": {"cidr": c if "/" in c else f"{c}/{ipaddress.ip_address(c).max_prefixlen}"}}
                   for c in pps[0]["proxy_protocol"]["trusted"]]
        check(got == want_pp, f"PROXY protocol port peers {got}, expected the trusted ranges {want_pp}")
        for peer in got:
            check(ipaddress.ip_network(peer["ipBlock"]["cidr"], strict=False).prefixlen > 0,
                  "the PROXY protocol port is open to everyone")
    for rule in chart_in:
        check(rule.get("from"), "an ingress rule without `from` admits every source")
        if rule in pp_rules:
            continue
        for peer in rule["from"]:
            check("ipBlock" not in peer, "ingress by ipBlock")
            check("namespaceSelector" in peer, "ingress peer without namespaceSelector (same-namespace only)")
    want = [({"matchLabels": {"kubernetes.io/metadata.name": c["name"]}}, c.get("podSelector") or None)
            for c in clients]
    if v["helmTest"]["enabled"]:
        test_pod = r.one("Pod")
        want.append(({"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                     {"matchLabels": {k: val for k, val in test_pod["metadata"]["labels"].items()
                                      if k in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                                               "app.kubernetes.io/component")}}))
        check(k8s_schema.selector_matches(want[-1][1], test_pod["metadata"]["labels"]), "the test pod is not admitted")
        check(not k8s_schema.selector_matches(want[-1][1], meta["labels"]), "the test peer selects the gateway pods")
    if want:
        check(len(proxy_rules) == 1, "expected one proxy-port ingress rule")
        got = [(p["namespaceSelector"], p.get("podSelector")) for p in proxy_rules[0]["from"]]
        check(got == want, f"proxy-port ingress peers {got}, expected {want}")
    else:
        check(not proxy_rules, "proxy-port ingress although no runner or client namespaces are listed")
    check(len(admin_rules) == 1, "expected one admin-port ingress rule")
    mon = v["networkPolicy"]["gateway"]["monitoring"]
    check(admin_rules[0]["from"][0]["namespaceSelector"] == mon["namespaceSelector"],
          "admin port not restricted to the monitoring namespace")

    extra_out = v["networkPolicy"]["gateway"]["extraEgress"] or []
    egress = np["egress"]
    chart_out = egress[:len(egress) - len(extra_out)] if extra_out else egress
    check(egress[len(chart_out):] == extra_out, "extraEgress not rendered verbatim at the end")
    resolvers = resolver_cidrs(v)
    for rule in chart_out:
        check(rule.get("to"), f"an egress rule without `to` allows every destination: {rule}")
    dns_rules = [rule for rule in chart_out if any(p.get("protocol") == "UDP" for p in rule.get("ports") or [])]
    for rule in dns_rules:
        check(all(p["port"] in {port for _, port in resolvers} for p in rule["ports"]), "UDP egress beyond DNS")
    ip_dns = [(rule["to"][0]["ipBlock"]["cidr"], rule["ports"]) for rule in dns_rules if "ipBlock" in rule["to"][0]]
    want_dns = [(cidr, [{"protocol": "UDP", "port": port}, {"protocol": "TCP", "port": port}]) for cidr, port in resolvers]
    check(ip_dns == want_dns, f"resolver egress {ip_dns}, expected {want_dns}")
    # Upstream rule: 0.0.0.0/0 and ::/0 minus the configured ranges.
    upstream = [rule for rule in chart_out
                if any((p.get("ipBlock") or {}).get("cidr") in ("0.0.0.0/0", "::/0") for p in rule["to"])]
    check(len(upstream) <= 1, "more than one 0.0.0.0/0 rule")
    excepts = set()
    for rule in upstream:
        for p in rule["to"]:
            excepts |= set(p["ipBlock"].get("except") or [])
    for cidr in (v["networkPolicy"]["gateway"]["egressExcept"] or []) + ["169.254.0.0/16", "fe80::/10"]:
        check(cidr in excepts, f"{cidr} is not excepted from the upstream egress")
    # Ports: the allow rules' ports, or every port when a tier audits.
    tiers = v.get("tiers") or {"standard": {"allow": [{"host": "x", "ports": [80, 443]}, {"host": "y"}]}}
    audit = any((t or {}).get("mode") == "audit" for t in tiers.values())
    want_ports = set(v["networkPolicy"]["gateway"]["egressPorts"] or [])
    if not want_ports:
        for t in tiers.values():
            for rule in (t or {}).get("allow") or []:
                want_ports |= set(rule.get("ports") or [443])
    for rule in upstream:
        if audit and not v["networkPolicy"]["gateway"]["egressPorts"]:
            check("ports" not in rule, "audit tier: the upstream rule should allow every port")
        else:
            got = {p["port"] for p in rule["ports"]}
            check(all(p["protocol"] == "TCP" for p in rule["ports"]), "upstream egress beyond TCP")
            check(got == want_ports, f"upstream ports {sorted(got)}, expected {sorted(want_ports)}")
    # No chart rule reaches a metadata, node or cluster address unless the
    # values name it (a resolver on its DNS port, an allow_ranges entry, the API server).
    named = {cidr for cidr, _ in resolvers}
    for t in tiers.values():
        for c in (t or {}).get("allow_ranges") or []:
            named.add(str(ipaddress.ip_network(c)))
    for ep in v["kubernetesIdentity"]["apiServerEndpoints"] or []:
        if v["kubernetesIdentity"]["enabled"]:
            named.add(ep["cidr"])
    resolver_set = {cidr for cidr, _ in resolvers}
    dns_ports = {port for _, port in resolvers}
    for addr in forbidden_addresses(v["networkPolicy"]["gateway"]["egressExcept"] or []):
        for rule in chart_out:
            for cidr in peers_admitting(rule, addr):
                check(cidr in named, f"egress rule {cidr} reaches {addr}")
                if cidr in resolver_set and cidr not in named - resolver_set:
                    check(all(p["port"] in dns_ports for p in rule["ports"]),
                          f"{addr} (a resolver) reachable beyond the DNS port")
    if v["kubernetesIdentity"]["enabled"]:
        check(v["kubernetesIdentity"]["apiServerEndpoints"], "kubernetesIdentity without apiServerEndpoints rendered")
        for ep in v["kubernetesIdentity"]["apiServerEndpoints"]:
            check({"to": [{"ipBlock": {"cidr": ep["cidr"]}}], "ports": [{"protocol": "TCP", "port": ep["port"]}]}
                  in chart_out, f"no egress to the API server {ep}")


def assert_runner_netpols(r):
    v = r.values
    nps = [o for o in r.of_kind("NetworkPolicy") if o["metadata"].get("namespace") != NAMESPACE]
    runners = v.get("runnerNamespaces") or []
    if not v["networkPolicy"]["runners"]["enabled"]:
        check(not nps, "runner NetworkPolicies although disabled")
        return
    check(sorted(o["metadata"]["namespace"] for o in nps) == sorted(rn["name"] for rn in runners),
          "one runner NetworkPolicy per runner namespace")
    _, meta, _ = gateway_pod(r)
    _, _, policy = policy_of(r)
    want_ports = [{"protocol": "TCP", "port": p} for p in client_ports(policy)]
    for rn in runners:
        np = [o for o in nps if o["metadata"]["namespace"] == rn["name"]][0]["spec"]
        where = f"runner NetworkPolicy in {rn['name']}"
        check(np["podSelector"] == (rn.get("podSelector") or {}), f"{where}: podSelector {np['podSelector']}")
        check("Egress" in np["policyTypes"], f"{where}: does not restrict egress")
        if v["networkPolicy"]["runners"]["denyIngress"]:
            check("Ingress" in np["policyTypes"] and not np.get("ingress"), f"{where}: ingress not denied")
        extra = rn.get("extraEgress") or []
        egress = np.get("egress") or []
        check(egress[1:] == extra, f"{where}: extraEgress not rendered verbatim after the gateway rule")
        gw = egress[0]
        check(gw["ports"] == want_ports, f"{where}: ports {gw['ports']}, expected {want_ports}")
        check(len(gw["to"]) == 1, f"{where}: more than one peer")
        peer = gw["to"][0]
        check("ipBlock" not in peer, f"{where}: the gateway is selected by IP")
        check(peer.get("namespaceSelector") == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
              f"{where}: namespaceSelector {peer.get('namespaceSelector')}")
        check(peer.get("podSelector") == {"matchLabels": selector_labels()}, f"{where}: podSelector {peer.get('podSelector')}")
        check(k8s_schema.selector_matches(peer["podSelector"], meta["labels"]), f"{where}: does not select the gateway pods")
        for rule in egress[:1]:
            for p in rule.get("ports") or []:
                check(p["port"] != 53 and p.get("protocol") != "UDP", f"{where}: DNS allowed")


def assert_notes(r):
    notes = r.notes
    port = r.values["ports"]["proxy"]
    for var in ("HTTPS_PROXY=", "HTTP_PROXY=", "NO_PROXY=", "https_proxy=", "http_proxy=", "no_proxy="):
        check(var in notes, f"NOTES.txt does not give {var}")
    cip = r.values["service"]["clusterIP"]
    if cip:
        host = f"[{cip}]" if ":" in cip else cip
        check(f"HTTPS_PROXY=http://{host}:{port}" in notes, "NOTES.txt does not use the pinned Service IP")
    else:
        check(f"HTTPS_PROXY=http://$PROXY_IP:{port}" in notes and "jsonpath='{.spec.clusterIP}'" in notes,
              "NOTES.txt does not show how to read the Service IP")
    check("<no value>" not in notes and "%!" not in notes, "NOTES.txt has template residue")
    check("not implemented" not in notes.lower(), "NOTES.txt still says something is not implemented")
    v = r.values
    check(("helm test portcullis -n egress" in notes) == v["helmTest"]["enabled"],
          "NOTES.txt and helmTest.enabled disagree on `helm test`")
    for warned, text in ((not v["service"]["sessionAffinity"]["enabled"], "service.sessionAffinity is off"),
                         (not v["policyCheck"]["enabled"], "policyCheck is off"),
                         (v["audit"]["destination"] == "file" and not v["audit"]["shipper"]["enabled"],
                          "no shipper reads it")):
        check((text in notes) == warned, f"NOTES.txt {'lacks' if warned else 'has'} the warning {text!r}")
    if v["audit"]["destination"] == "file":
        check(policy_of(r)[2]["audit"]["output"] in notes, "NOTES.txt does not say where the audit file is")
    if v["tls"]["enabled"]:
        check(f"HTTPS_PROXY=https://<Service IP>:{v['tls']['port']}" in notes, "NOTES.txt does not give the https:// proxy URL")
    else:
        check("https://<Service IP>" not in notes, "NOTES.txt talks about the TLS listener although it is off")
    if v["proxyProtocol"]["enabled"]:
        check(f"port {v['proxyProtocol']['port']}" in notes and all(c in notes for c in v["proxyProtocol"]["trusted"]),
              "NOTES.txt does not give the PROXY protocol port and its trusted peers")
    else:
        check("PROXY protocol" not in notes, "NOTES.txt talks about PROXY protocol although it is off")
    ic = r.values["interception"]
    if ic["caSecretName"]:
        check(f"TLS interception: the CA in Secret {ic['caSecretName']}" in notes and "interception.md" in notes,
              "NOTES.txt does not say that interception is on, with which CA, and that runners must trust it")
        rules = intercept_rules(r.values, policy_of(r)[2])
        for tier in {t for t, _ in rules}:
            hosts = ", ".join(h for t, h in rules if t == tier)
            check(f"tier {tier}: {hosts}" in notes, f"NOTES.txt does not list what tier {tier} intercepts ({hosts})")
        check(("nothing is intercepted" in notes) == (not rules),
              "NOTES.txt and the tiers disagree on whether anything is intercepted")
    else:
        check("TLS interception" not in notes, "NOTES.txt talks about interception although it is off")
    kube = r.values["kubernetesIdentity"]
    sync = ("kubernetes pod map not synced", "/readyz", "portcullis_kube_synced")
    if kube["enabled"]:
        for text in sync:
            check(text in notes, f"NOTES.txt does not say how to check the pod map's sync ({text!r})")
        for ns in kube.get("namespaces") or {}:
            check(f"can-i watch pods -n {ns} " in notes, f"NOTES.txt does not show how to check access to {ns}")
    else:
        check("portcullis_kube_synced" not in notes, "NOTES.txt talks about pod identity although it is off")


def assert_portcullis_check(args, r, out):
    check(args.portcullis, "no portcullis binary given (--portcullis)")
    _, text, _ = policy_of(r)
    path = os.path.join(out, "policy.yaml")
    with open(path, "w") as fh:
        fh.write(text)
    p = subprocess.run([args.portcullis, "--check", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(p.returncode == 0, f"portcullis --check exit {p.returncode}:\n{p.stdout}")


def policy_check_hook(r):
    """The policy check hook: (ConfigMap, Job), or None when policyCheck is off."""
    jobs = [j for j in r.of_kind("Job") if j["metadata"]["labels"].get("app.kubernetes.io/component") == "policy-check"]
    cms = [c for c in r.of_kind("ConfigMap") if c["metadata"]["labels"].get("app.kubernetes.io/component") == "policy-check"]
    if not r.values["policyCheck"]["enabled"]:
        check(not jobs and not cms, "a policy check hook although policyCheck is off")
        return None
    check(len(jobs) == 1 and len(cms) == 1, f"expected one policy check Job and ConfigMap, found {len(jobs)}, {len(cms)}")
    return cms[0], jobs[0]


def run_hook_command(args, r, out):
    """Runs the policy check Job's container exactly as the kubelet would start it
    (the image's ENTRYPOINT, the portcullis binary, with the Job's args), against
    the built binary, with each mounted ConfigMap's files in a local directory in
    place of its mountPath. Returns the CompletedProcess."""
    check(args.portcullis, "no portcullis binary given (--portcullis)")
    _, job = policy_check_hook(r)
    pod = job["spec"]["template"]["spec"]
    check(len(pod["containers"]) == 1, "the policy check Job has more than one container")
    c = pod["containers"][0]
    check("command" not in c, f"the Job overrides the image's ENTRYPOINT (portcullis): {c.get('command')}")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    argv = list(c["args"])
    for m in c.get("volumeMounts") or []:
        vol = volumes[m["name"]]
        check("configMap" in vol, f"the Job mounts {m['name']}, which is no ConfigMap")
        cm = r.one("ConfigMap", vol["configMap"]["name"])
        check(hook_events(cm) >= hook_events(job),
              f"ConfigMap {cm['metadata']['name']} does not exist when the Job runs: it is no hook of the same events")
        local = os.path.join(out, "hook" + m["mountPath"])
        os.makedirs(local, exist_ok=True)
        for key, text in (cm.get("data") or {}).items():
            with open(os.path.join(local, key), "w") as fh:
                fh.write(text)
        mp = m["mountPath"].rstrip("/") + "/"
        argv = [local + "/" + a[len(mp):] if a.startswith(mp) else a for a in argv]
    check(not any(a.startswith("/etc/") for a in argv), f"the Job reads a path nothing mounts: {argv}")
    return subprocess.run([args.portcullis] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=60)


def assert_audit_stream(r):
    """stdout: no audit volume, no shipper. file: the audit file on an emptyDir both
    containers mount at the same path, the shipper told where it is."""
    _, _, policy = policy_of(r)
    _, _, pod = gateway_pod(r)
    a = r.values["audit"]
    output = policy["audit"]["output"]
    containers = {c["name"]: c for c in pod["containers"]}
    volumes = {vol["name"]: vol for vol in pod.get("volumes") or []}
    check(pod["containers"][0]["name"] == "portcullis", "portcullis is not the first container")
    if a["destination"] == "stdout":
        check(output == "-", f"audit.output is {output!r} with destination stdout")
        check(set(containers) == {"portcullis"}, f"containers {sorted(containers)} with audit on stdout")
        check("audit" not in volumes, "an audit volume with audit on stdout")
        check(not pod.get("shareProcessNamespace"), "shareProcessNamespace with audit on stdout")
        return
    directory = a["file"]["directory"].rstrip("/")
    check(os.path.dirname(output) == directory, f"audit.output {output} is not in {directory}")
    vol = volumes.get("audit")
    check(vol and set(vol) == {"name", "emptyDir"}, f"the audit volume is not an emptyDir: {vol}")
    check(vol["emptyDir"].get("sizeLimit") == str(a["file"]["sizeLimit"]), "the audit emptyDir has no sizeLimit")
    check(vol["emptyDir"].get("medium", "") == a["file"].get("medium", ""), "the audit emptyDir's medium")

    def mount(c):
        ms = [m for m in c.get("volumeMounts") or [] if m["name"] == "audit"]
        check(len(ms) == 1, f"{c['name']} does not mount the audit volume once")
        check(ms[0]["mountPath"] == directory and not ms[0].get("readOnly") and "subPath" not in ms[0],
              f"{c['name']} mounts the audit volume as {ms[0]}, expected {directory}, writable, whole")
    mount(containers["portcullis"])
    sh = a["shipper"]
    if not sh["enabled"]:
        check(set(containers) == {"portcullis"}, f"containers {sorted(containers)} without a shipper")
        check(not pod.get("shareProcessNamespace"), "shareProcessNamespace without a shipper")
        return
    check(set(containers) == {"portcullis", "shipper"}, f"containers {sorted(containers)}")
    c = containers["shipper"]
    mount(c)
    env = {e["name"]: e.get("value") for e in c.get("env") or []}
    check(env.get("AUDIT_FILE") == output, f"the shipper's AUDIT_FILE is {env.get('AUDIT_FILE')}, the file is {output}")
    for e in sh.get("env") or []:
        check(e in c["env"], f"the shipper lacks env {e}")
    check(c.get("command", []) == sh["command"] and c.get("args", []) == sh["args"], "the shipper's command or args")
    check(bool(pod.get("shareProcessNamespace")) == sh["shareProcessNamespace"],
          "shareProcessNamespace does not follow audit.shipper.shareProcessNamespace")


def assert_policy_check(args, r, out):
    hook = policy_check_hook(r)
    if hook is None:
        return
    cm, job = hook
    events = hook_events(job)
    want = {"pre-upgrade"} if r.values["namespace"]["create"] else {"pre-install", "pre-upgrade"}
    check(events == want, f"the Job runs on {sorted(events)}, expected {sorted(want)}")
    check(hook_events(cm) == events, f"the hook ConfigMap is created on {sorted(hook_events(cm))}, the Job on {sorted(events)}")
    weight = {o["kind"]: int(o["metadata"]["annotations"].get("helm.sh/hook-weight", "0")) for o in (cm, job)}
    check(weight["ConfigMap"] < weight["Job"], f"hook weights {weight}: the ConfigMap must be created before the Job")
    for o in (cm, job):
        policy = set(o["metadata"]["annotations"].get("helm.sh/hook-delete-policy", "").split(","))
        check(policy == {"before-hook-creation", "hook-succeeded"},
              f"{o['kind']} hook-delete-policy {sorted(policy)}: a rerun must replace it, a success remove it, "
              "a failure keep it for its logs")
    _, text, _ = policy_of(r)
    check(cm["data"] == {"policy.yaml": text}, "the hook ConfigMap's policy differs from the release's")
    spec = job["spec"]
    check(spec.get("backoffLimit") == 0, f"backoffLimit {spec.get('backoffLimit')}: a rejected policy stays rejected")
    check(spec.get("activeDeadlineSeconds") == r.values["policyCheck"]["activeDeadlineSeconds"],
          "activeDeadlineSeconds differs from policyCheck.activeDeadlineSeconds")
    pod = spec["template"]["spec"]
    check(pod["restartPolicy"] == "Never", "restartPolicy is not Never")
    check(pod.get("automountServiceAccountToken") is False, "the check pod gets an API token")
    _, _, gw = gateway_pod(r)
    c = pod["containers"][0]
    check(c["image"] == gw["containers"][0]["image"], f"the check runs {c['image']}, the gateway {gw['containers'][0]['image']}")
    strict = r.values["policyCheck"].get("strict", True)
    want_args = ["--check", "/etc/portcullis/policy.yaml"] + (["--strict"] if strict else [])
    check(c["args"] == want_args, f"the Job's args are {c['args']}, want {want_args} "
          f"(policyCheck.strict {strict})")
    check(not k8s_schema.selector_matches({"matchLabels": selector_labels()}, spec["template"]["metadata"]["labels"]),
          "the check pod carries the gateway's selector labels (the Service would route to it)")
    p = run_hook_command(args, r, out)
    check(p.returncode == 0, f"the hook's command fails on this policy (exit {p.returncode}):\n{p.stdout}")


def assert_helm_test(args, r):
    pods = r.of_kind("Pod")
    if not r.values["helmTest"]["enabled"]:
        check(not pods, "a helm test pod although helmTest is off")
        return
    pod = r.one("Pod")
    check(hook_events(pod) == {"test"}, f"the test pod's hook is {sorted(hook_events(pod))}, not test")
    check(pod["spec"]["restartPolicy"] == "Never", "the test pod restarts")
    check(pod["spec"].get("automountServiceAccountToken") is False, "the test pod gets an API token")
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in c.get("env") or []}
    svc = r.one("Service", gateway_pod(r)[0]["metadata"]["name"])
    want = f"http://{svc['metadata']['name']}.{NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}"
    check(env.get("PROXY") == want, f"the test pod's PROXY is {env.get('PROXY')}, expected the Service {want}")
    check(env.get("TARGET") == r.values["helmTest"]["target"], "TARGET differs from helmTest.target")
    with open(os.path.join(args.chart, "files", "helm-test.sh")) as fh:
        script = fh.read()
    check(c["command"] == ["/bin/sh", "-c"] and c["args"] == [script],
          "the test pod does not run files/helm-test.sh (tests/helm/test_live.py runs that script)")


def promtool(*argv):
    check(os.access(PROMTOOL, os.X_OK), f"{PROMTOOL} not found (Debian package prometheus)")
    return subprocess.run([PROMTOOL] + list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120)


def assert_monitoring(args, r, out):
    v = r.values
    rule = monitoring.prometheus_rule(r.objects)
    if not v["prometheusRule"]["enabled"]:
        check(rule is None, "a PrometheusRule although prometheusRule is off")
    else:
        check(rule is not None, "no PrometheusRule although prometheusRule is on")
        for k, val in (v["prometheusRule"].get("labels") or {}).items():
            check(rule["metadata"]["labels"].get(k) == val, f"the PrometheusRule lacks the label {k}: {val}")
        alerts = [a for a, _ in monitoring.rule_exprs(rule)]
        kube = "portcullis/PortcullisPodMapNotSynced" in alerts
        check(kube == v["kubernetesIdentity"]["enabled"],
              f"the pod map alert is {'present' if kube else 'missing'}, kubernetesIdentity.enabled is "
              f"{v['kubernetesIdentity']['enabled']}")
        for g in rule["spec"]["groups"]:
            for ru in g["rules"]:
                for k, val in (v["prometheusRule"].get("additionalLabels") or {}).items():
                    check(ru["labels"].get(k) == val, f"{ru['alert']} lacks the label {k}: {val}")
                check(ru["labels"].get("severity") in ("info", "warning", "critical"), f"{ru['alert']}: no severity")
                check({"summary", "description"} <= set(ru["annotations"]), f"{ru['alert']}: no summary or description")
                check(("runbook_url" in ru["annotations"]) == bool(v["prometheusRule"].get("runbookURL")),
                      f"{ru['alert']}: runbook_url does not follow prometheusRule.runbookURL")
        path = os.path.join(out, "rules.yaml")
        monitoring.write_rules(rule, path)
        p = promtool("check", "rules", path)
        check(p.returncode == 0, f"promtool check rules:\n{p.stdout}")
    cms = [o for o in r.of_kind("ConfigMap") if o["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboard"]
    g = v["grafanaDashboard"]
    if not g["enabled"]:
        check(not cms, "a dashboard ConfigMap although grafanaDashboard is off")
        return
    check(len(cms) == 1, f"expected one dashboard ConfigMap, found {len(cms)}")
    cm = cms[0]
    check(cm["metadata"]["namespace"] == (g.get("namespace") or NAMESPACE), "the dashboard is in the wrong namespace")
    for k, val in (g.get("labels") or {}).items():
        check(cm["metadata"]["labels"].get(k) == val, f"the dashboard ConfigMap lacks the sidecar label {k}: {val}")
    with open(os.path.join(args.chart, "files", "grafana-dashboard.json")) as fh:
        check(cm["data"] == {"portcullis.json": fh.read()}, "the ConfigMap does not carry files/grafana-dashboard.json")
    dash = monitoring.dashboard(r.objects)
    ids = [p["id"] for p in dash["panels"]]
    check(len(ids) == len(set(ids)), f"panel ids repeat: {ids}")
    for p in dash["panels"]:
        gp = p["gridPos"]
        check(0 <= gp["x"] and gp["x"] + gp["w"] <= 24, f"panel {p['id']} is wider than the grid")
        if p["type"] != "row":
            check(p.get("targets") and all(t.get("expr") for t in p["targets"]), f"panel {p['id']} has no query")
            check(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"},
                  f"panel {p['id']} does not use the dashboard's data source variable")
    queries = monitoring.dashboard_queries(dash)
    check(not [q for _, q in queries if "$" in q], f"unknown Grafana variables: {[q for _, q in queries if '$' in q]}")
    path = os.path.join(out, "dashboard-queries.yaml")
    monitoring.write_query_rules(queries, path)
    p = promtool("check", "rules", path)
    check(p.returncode == 0, f"promtool cannot parse a dashboard query:\n{p.stdout}")


# ---------------------------------------------------------------------------


def values_cases(args):
    cases = [("defaults", [os.path.join(args.here, "values", "defaults.yaml")])]
    for d, prefix in ((os.path.join(args.chart, "examples"), "example-"), (os.path.join(args.here, "values"), "")):
        for f in sorted(os.listdir(d)):
            if f.endswith(".yaml") and not (prefix == "" and f == "defaults.yaml"):
                cases.append((prefix + f[:-5], [os.path.join(d, f)]))
    return cases


def readme_values_table(chart):
    with open(os.path.join(chart, "README.md")) as fh:
        doc = fh.read()
    m = re.search(re.escape(values_table.START) + r"\n(.*?)" + re.escape(values_table.END), doc, re.S)
    check(m, "helm/portcullis/README.md has no values table block")
    return m.group(1)


def assert_values_table(args):
    want, missing = values_table.table(args.chart)
    check(not missing, f"keys without a comment or a schema description: {missing}")
    check(readme_values_table(args.chart) == want,
          "helm/portcullis/README.md's values table differs from values.yaml and values.schema.json: "
          "run tests/helm/values_table.py --write")


def assert_values_table_sensitive(args):
    # A changed default must change the table (else the comparison above proves nothing).
    d = os.path.join(args.workdir, "values-table-chart")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(args.chart, d)
    path = os.path.join(d, "values.yaml")
    with open(path) as fh:
        text = fh.read()
    check("drainSeconds: 30\n" in text, "values.yaml has no 'drainSeconds: 30' line to change")
    with open(path, "w") as fh:
        fh.write(text.replace("drainSeconds: 30\n", "drainSeconds: 31\n"))
    want, _ = values_table.table(d)
    check(want != readme_values_table(args.chart), "the table did not change with a default")


def run_render_group(args, t):
    schema = load_schema(args)
    t.case("values.schema.json is a valid draft-07 schema", jsonschema.Draft7Validator.check_schema, schema)
    t.case("the chart README's values table is the one values.yaml and values.schema.json give",
           assert_values_table, args)
    t.case("the values table follows a changed default", assert_values_table_sensitive, args)
    for name, files in values_cases(args):
        p, out, values = render(args, files, name)
        state = {}

        def rendered():
            check(p.returncode == 0, f"renderer failed:\n{p.stderr}")
            objs = load_all(p.stdout)
            check(objs, "nothing rendered")
            with open(os.path.join(out, "NOTES.txt")) as fh:
                notes = fh.read()
            state["r"] = Rendered(name, files, objs, values, notes)
        t.case(f"{name}: renders", rendered)
        r = state.get("r")
        if r is None:
            continue
        t.case(f"{name}: values validate against values.schema.json (python3-jsonschema)",
               lambda: check(not schema_errors(schema, values), "\n".join(schema_errors(schema, values))))
        for obj in r.objects:
            ident = f"{obj.get('kind')}/{obj.get('metadata', {}).get('namespace', '-')}/{obj.get('metadata', {}).get('name')}"
            t.case(f"{name}: {ident} validates against the Kubernetes API schema",
                   lambda o=obj: check(not k8s_schema.validate(o), "\n".join(k8s_schema.validate(o))))
        keys = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in r.objects]
        t.case(f"{name}: object names are unique", lambda: check(len(keys) == len(set(keys)), f"duplicates in {keys}"))
        t.case(f"{name}: pod security (PSA restricted, non-root, read-only root, no capabilities, seccomp)",
               assert_pod_security, r)
        t.case(f"{name}: service account token and RBAC (pods get/list/watch, exactly where the policy watches) "
               "only with kubernetesIdentity", assert_token_and_rbac, r)
        t.case(f"{name}: availability (replicas, anti-affinity, maxUnavailable 0, grace > drain, PDB, HPA)",
               assert_availability, r)
        t.case(f"{name}: ports, probes, Services, ServiceMonitor, policy mount, checksum", assert_ports_probes_service, r)
        t.case(f"{name}: policy in the ConfigMap follows the values", assert_policy, r)
        t.case(f"{name}: audit records on stdout, or in a file on an emptyDir shared with the shipper",
               assert_audit_stream, r)
        t.case(f"{name}: the TLS listener's certificate, key, client CA and CRL are directories mounted read-only "
               "from the Secret, ConfigMap or SPIFFE CSI volume the values name", assert_tls_files, r)
        t.case(f"{name}: the interception CA's certificate and key (and the upstream CA bundle) are directories "
               "mounted read-only from the Secret or ConfigMap the values name", assert_interception, r)
        t.case(f"{name}: identity.kubernetes in the policy follows kubernetesIdentity", assert_kube_identity, r)
        t.case(f"{name}: gateway NetworkPolicy (ingress by namespace, egress to resolvers and upstreams only)",
               assert_gateway_netpol, r)
        t.case(f"{name}: runner NetworkPolicies (gateway pods by labels, proxy port only, no DNS)",
               assert_runner_netpols, r)
        t.case(f"{name}: NOTES.txt gives HTTPS_PROXY, HTTP_PROXY and NO_PROXY", assert_notes, r)
        t.case(f"{name}: portcullis --check accepts the rendered policy", assert_portcullis_check, args, r, out)
        t.case(f"{name}: the policy check hook (pre-install/pre-upgrade Job) runs portcullis --check "
               "(--strict unless policyCheck.strict is false) on this policy and passes",
               assert_policy_check, args, r, out)
        t.case(f"{name}: the helm test pod runs files/helm-test.sh against the proxy Service", assert_helm_test, args, r)
        t.case(f"{name}: PrometheusRule and Grafana dashboard follow the values; promtool parses every rule and query",
               assert_monitoring, args, r, out)
    run_kube_watch_group(args, t)
    run_tls_listener_restart_group(args, t)
    run_interception_restart_group(args, t)


def render_objects(args, value_files, tag):
    p, _, values = render(args, value_files, tag)
    check(p.returncode == 0, f"renderer failed:\n{p.stderr}")
    return Rendered(tag, value_files, load_all(p.stdout), values, "")


def run_kube_watch_group(args, t):
    """checksum/kube-watch changes exactly when something the daemon reads only at start-up changes."""
    examples = os.path.join(args.chart, "examples")
    cases = [
        ("kube-namespaces.yaml", "a namespace's tier and auditLabels (they reload)",
         {"namespaces": {"gitlab-jobs-release": "standard"}, "auditLabels": ["app"]}, False),
        ("kube-namespaces.yaml", "an added namespace", {"namespaces": {"gitlab-jobs-extra": "standard"}}, True),
        ("kube-namespaces.yaml", "apiServer", {"apiServer": "https://10.96.0.1:443"}, True),
        ("kube-namespaces.yaml", "watchTimeout", {"watchTimeout": "10m"}, True),
        ("kube-namespaces.yaml", "backoffMax", {"backoffMax": "1m"}, True),
        ("kube-namespaces.yaml", "maxPods", {"maxPods": 1000}, True),
        ("kube-tier-label.yaml", "labelSelector", {"labelSelector": "ci.example.com/tier in (standard,release)"}, True),
        ("kube-tier-label.yaml", "tierLabel", {"tierLabel": "ci.example.com/trust"}, True),
    ]
    for example, what, override, restarts in cases:
        def compare(example=example, override=override, restarts=restarts, what=what):
            base = os.path.join(examples, example)
            tag = "kube-watch-" + re.sub(r"[^a-z0-9]+", "-", f"{example[:-5]} {what}".lower()).strip("-")
            extra = os.path.join(args.workdir, tag + ".yaml")
            with open(extra, "w") as fh:
                yaml.safe_dump({"kubernetesIdentity": override}, fh)
            a = render_objects(args, [base], tag + "-a")
            b = render_objects(args, [base, extra], tag + "-b")
            ann = [gateway_pod(x)[1]["annotations"]["checksum/kube-watch"] for x in (a, b)]
            pol = [policy_of(x)[2]["identity"]["kubernetes"] for x in (a, b)]
            check(pol[0] != pol[1], f"the override did not change identity.kubernetes: {pol[1]}")
            if restarts:
                check(ann[0] != ann[1], "checksum/kube-watch unchanged: the pods would keep watching the old scope")
            else:
                check(ann[0] == ann[1], "checksum/kube-watch changed, although the daemon reloads this")
        t.case(f"checksum/kube-watch {'changes' if restarts else 'stays'} with {what} ({example})", compare)


def run_tls_listener_restart_group(args, t):
    """checksum/tls-listener changes exactly when something the daemon reads of the TLS listener
    only at start-up changes (listen.https, listen.tls: mode and paths), and stays when only what
    it reloads changes (identity.client_certs)."""
    base = os.path.join(args.chart, "examples", "tls-cert-manager.yaml")
    cases = [
        ("clientCertRules (they reload)", {"clientCertRules": [{"cn": "runner-9", "tier": "standard"}]}, False),
        ("clientCerts request -> require", {"clientCerts": "require"}, True),
        ("the client CA's key (its path)", {"clientCA": {"configMapName": "ci-client-ca", "key": "bundle.pem"}}, True),
        ("a CRL added", {"crl": {"secretName": "ci-client-crl", "configMapName": "", "key": "crl.pem"}}, True),
        ("the TLS port", {"port": 8443}, True),
    ]
    for what, override, restarts in cases:
        def compare(override=override, restarts=restarts):
            tag = "tls-listener-" + re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
            extra = os.path.join(args.workdir, tag + ".yaml")
            with open(extra, "w") as fh:
                yaml.safe_dump({"tls": override}, fh)
            a = render_objects(args, [base], tag + "-a")
            b = render_objects(args, [base, extra], tag + "-b")
            ann = [gateway_pod(x)[1]["annotations"].get("checksum/tls-listener") for x in (a, b)]
            pol = [policy_of(x)[2] for x in (a, b)]
            check(pol[0] != pol[1], "the override did not change the policy")
            check(all(re.fullmatch(r"[0-9a-f]{64}", x or "") for x in ann), f"no checksum/tls-listener: {ann}")
            if restarts:
                check(ann[0] != ann[1], "checksum/tls-listener unchanged: the pods would keep the old TLS listener")
            else:
                check(ann[0] == ann[1], "checksum/tls-listener changed, although the daemon reloads this")
        t.case(f"checksum/tls-listener {'changes' if restarts else 'stays'} with {what}", compare)

    def absent():
        r = render_objects(args, [os.path.join(args.here, "values", "defaults.yaml")], "tls-listener-off")
        check("checksum/tls-listener" not in (gateway_pod(r)[1].get("annotations") or {}),
              "checksum/tls-listener although tls is off")
    t.case("no checksum/tls-listener without the TLS listener", absent)


def run_interception_restart_group(args, t):
    """checksum/interception changes exactly when the policy's interception section changes (read
    at start-up: paths, leaf_lifetime, cache_size), and stays when only the tiers' intercept:
    rules (reloaded) change."""
    base = os.path.join(args.here, "values", "interception.yaml")
    cases = [
        ("a tier's intercept: rules (they reload)",
         {"tiers": {"standard": {"sources": ["10.244.0.0/16"], "allow": [
             {"host": "github.com", "intercept": {"default": "allow"}}]}}}, False),
        ("leafLifetime", {"interception": {"leafLifetime": "48h"}}, True),
        ("cacheSize", {"interception": {"cacheSize": 100}}, True),
        ("the upstream CA's key (its path)", {"interception": {"upstreamCA": {"key": "roots.pem"}}}, True),
        ("no upstream CA (the system trust store)",
         {"interception": {"upstreamCA": {"configMapName": ""}}}, True),
    ]
    for what, override, restarts in cases:
        def compare(override=override, restarts=restarts):
            tag = "interception-" + re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
            extra = os.path.join(args.workdir, tag + ".yaml")
            with open(extra, "w") as fh:
                yaml.safe_dump(override, fh)
            a = render_objects(args, [base], tag + "-a")
            b = render_objects(args, [base, extra], tag + "-b")
            ann = [(gateway_pod(x)[1].get("annotations") or {}).get("checksum/interception") for x in (a, b)]
            pol = [policy_of(x)[2] for x in (a, b)]
            check(pol[0] != pol[1], "the override did not change the policy")
            check(all(re.fullmatch(r"[0-9a-f]{64}", x or "") for x in ann), f"no checksum/interception: {ann}")
            if restarts:
                check(ann[0] != ann[1], "checksum/interception unchanged: the pods would keep the old section")
            else:
                check(ann[0] == ann[1], "checksum/interception changed, although the daemon reloads this")
        t.case(f"checksum/interception {'changes' if restarts else 'stays'} with {what}", compare)


# Single changes to a valid kubernetesIdentity: values.schema.json must accept
# exactly what `portcullis --check` accepts (the chart copies these values into
# identity.kubernetes), except where the schema is stricter on purpose ("strict").
KUBE_NS_BASE = {"namespaces": {"ci": "standard"}}
KUBE_LABEL_BASE = {"tierLabel": "ci.example.com/tier"}
LONG_PREFIX = ".".join(["a" * 63] * 3 + ["b" * 61])   # 253 characters
KUBE_AGREEMENT = [
    # (what, base, changes, accepted)
    ("namespaces mode", KUBE_NS_BASE, {}, True),
    ("tier label mode", KUBE_LABEL_BASE, {}, True),
    ("both modes", KUBE_NS_BASE, {"tierLabel": "tier"}, False),
    ("neither mode", {}, {}, False),
    ("64 namespaces", {}, {"namespaces": {f"ns{i}": "standard" for i in range(64)}}, True),
    ("65 namespaces", {}, {"namespaces": {f"ns{i}": "standard" for i in range(65)}}, False),
    ("a namespace of 63 characters", {}, {"namespaces": {"n" * 63: "standard"}}, True),
    ("a namespace of 64 characters", {}, {"namespaces": {"n" * 64: "standard"}}, False),
    ("a namespace ending in -", {}, {"namespaces": {"ci-": "standard"}}, False),
    ("a namespace with a dot", {}, {"namespaces": {"ci.jobs": "standard"}}, False),
    ("a namespace in upper case", {}, {"namespaces": {"CI": "standard"}}, False),
    ("a namespace mapped to deny", {}, {"namespaces": {"ci": "deny"}}, False),
    ("tierLabel without prefix", {}, {"tierLabel": "tier"}, True),
    ("tierLabel name in upper case", {}, {"tierLabel": "example.com/Tier_1.x"}, True),
    ("tierLabel prefix in upper case", {}, {"tierLabel": "Example.com/tier"}, False),
    ("tierLabel starting with -", {}, {"tierLabel": "-tier"}, False),
    ("tierLabel ending with .", {}, {"tierLabel": "tier."}, False),
    ("tierLabel with two slashes", {}, {"tierLabel": "a/b/c"}, False),
    ("tierLabel with an empty prefix", {}, {"tierLabel": "/tier"}, False),
    ("tierLabel with an empty name", {}, {"tierLabel": "example.com/"}, False),
    ("tierLabel with an empty prefix label", {}, {"tierLabel": "example..com/tier"}, False),
    ("tierLabel name of 63 characters", {}, {"tierLabel": "t" * 63}, True),
    ("tierLabel name of 64 characters", {}, {"tierLabel": "t" * 64}, False),
    ("tierLabel prefix of 253 characters", {}, {"tierLabel": LONG_PREFIX + "/tier"}, True),
    ("tierLabel prefix of 254 characters", {}, {"tierLabel": LONG_PREFIX + "b/tier"}, False),
    ("tierLabel prefix label of 64 characters", {}, {"tierLabel": "a" * 64 + ".com/tier"}, False),
    ("labelSelector of 1024 characters", KUBE_LABEL_BASE, {"labelSelector": "a" * 1024}, True),
    ("labelSelector of 1025 characters", KUBE_LABEL_BASE, {"labelSelector": "a" * 1025}, False),
    ("labelSelector in namespaces mode", KUBE_NS_BASE, {"labelSelector": "tier"}, False),
    ("8 auditLabels", KUBE_NS_BASE, {"auditLabels": [f"l{i}" for i in range(8)]}, True),
    ("9 auditLabels", KUBE_NS_BASE, {"auditLabels": [f"l{i}" for i in range(9)]}, False),
    ("an auditLabel twice", KUBE_NS_BASE, {"auditLabels": ["app", "app"]}, False),
    ("an auditLabel that is no label key", KUBE_NS_BASE, {"auditLabels": ["job id"]}, False),
    ("apiServer IPv4 with port", KUBE_NS_BASE, {"apiServer": "https://10.96.0.1:443"}, True),
    ("apiServer IPv4 without port", KUBE_NS_BASE, {"apiServer": "https://10.96.0.1"}, True),
    ("apiServer IPv6 with port", KUBE_NS_BASE, {"apiServer": "https://[fd00:10:96::1]:6443"}, True),
    ("apiServer IPv6 without port", KUBE_NS_BASE, {"apiServer": "https://[fd00:10:96::1]"}, True),
    ("apiServer IPv6 without brackets", KUBE_NS_BASE, {"apiServer": "https://fd00:10:96::1"}, False),
    ("apiServer host name", KUBE_NS_BASE, {"apiServer": "https://kubernetes.default.svc"}, False),
    ("apiServer over http", KUBE_NS_BASE, {"apiServer": "http://10.96.0.1:443"}, False),
    ("apiServer with a path", KUBE_NS_BASE, {"apiServer": "https://10.96.0.1:443/"}, False),
    ("apiServer port 0", KUBE_NS_BASE, {"apiServer": "https://10.96.0.1:0"}, False),
    ("apiServer port 65536", KUBE_NS_BASE, {"apiServer": "https://10.96.0.1:65536"}, False),
    ("apiServer octet 256", KUBE_NS_BASE, {"apiServer": "https://10.96.0.256"}, False),
    ("apiServer scheme in upper case", KUBE_NS_BASE, {"apiServer": "HTTPS://10.96.0.1"}, "strict"),
    ("watchTimeout 10s", KUBE_NS_BASE, {"watchTimeout": "10s"}, True),
    ("watchTimeout 10000ms", KUBE_NS_BASE, {"watchTimeout": "10000ms"}, True),
    ("watchTimeout 9999ms", KUBE_NS_BASE, {"watchTimeout": "9999ms"}, False),
    ("watchTimeout 9s", KUBE_NS_BASE, {"watchTimeout": "9s"}, False),
    ("watchTimeout 1h", KUBE_NS_BASE, {"watchTimeout": "1h"}, True),
    ("watchTimeout 60m", KUBE_NS_BASE, {"watchTimeout": "60m"}, True),
    ("watchTimeout 3600s", KUBE_NS_BASE, {"watchTimeout": "3600s"}, True),
    ("watchTimeout 3601s", KUBE_NS_BASE, {"watchTimeout": "3601s"}, False),
    ("watchTimeout 61m", KUBE_NS_BASE, {"watchTimeout": "61m"}, False),
    ("watchTimeout 2h", KUBE_NS_BASE, {"watchTimeout": "2h"}, False),
    ("watchTimeout without unit", KUBE_NS_BASE, {"watchTimeout": "300"}, False),
    ("watchTimeout with a leading zero", KUBE_NS_BASE, {"watchTimeout": "030s"}, False),
    ("backoffMax 1s", KUBE_NS_BASE, {"backoffMax": "1s"}, True),
    ("backoffMax 1000ms", KUBE_NS_BASE, {"backoffMax": "1000ms"}, True),
    ("backoffMax 999ms", KUBE_NS_BASE, {"backoffMax": "999ms"}, False),
    ("backoffMax 10m", KUBE_NS_BASE, {"backoffMax": "10m"}, True),
    ("backoffMax 600s", KUBE_NS_BASE, {"backoffMax": "600s"}, True),
    ("backoffMax 601s", KUBE_NS_BASE, {"backoffMax": "601s"}, False),
    ("backoffMax 11m", KUBE_NS_BASE, {"backoffMax": "11m"}, False),
    ("backoffMax 1h", KUBE_NS_BASE, {"backoffMax": "1h"}, False),
    ("maxPods 1", KUBE_NS_BASE, {"maxPods": 1}, True),
    ("maxPods 0", KUBE_NS_BASE, {"maxPods": 0}, False),
    ("maxPods 1000000", KUBE_NS_BASE, {"maxPods": 1000000}, True),
    ("maxPods 1000001", KUBE_NS_BASE, {"maxPods": 1000001}, False),
]


def run_agreement(args, t, tag, section, cases, build):
    """values.schema.json and portcullis --check judge single changes alike.  Each case is
    (what, *params, accepted): build(values, policy, *params) applies it to copies of the chart's
    defaults and of the policy the chart writes from them, and returns what --check's message
    must name when it refuses.  accepted: True, False, or "strict" (the schema alone refuses)."""
    schema = load_schema(args)
    p, out, defaults = render(args, [os.path.join(args.here, "values", "defaults.yaml")], tag)
    policy = yaml.safe_load(policy_of(Rendered("defaults", [], load_all(p.stdout), defaults, ""))[1]) \
        if p.returncode == 0 else None
    for i, (what, *params, accepted) in enumerate(cases):
        def agree(i=i, params=params, accepted=accepted):
            check(policy is not None, f"the defaults do not render:\n{p.stderr}")
            check(args.portcullis, "no portcullis binary given (--portcullis)")
            values, pol = copy.deepcopy(defaults), copy.deepcopy(policy)
            where = build(values, pol, *params)
            errs = schema_errors(schema, values)
            path = os.path.join(out, f"policy-{i}.yaml")
            with open(path, "w") as fh:
                yaml.safe_dump(pol, fh)
            d = subprocess.run([args.portcullis, "--check", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
            daemon_ok = d.returncode == 0
            schema_ok = not errs
            if accepted == "strict":
                check(not schema_ok and daemon_ok,
                      f"expected the schema to refuse what the daemon accepts; schema: {errs}, daemon: {d.stdout}")
                return
            check(schema_ok == accepted, f"values.schema.json {'refuses' if errs else 'accepts'} it: {errs}")
            check(daemon_ok == accepted, f"portcullis --check {'accepts' if daemon_ok else 'refuses'} it: {d.stdout}")
            check(daemon_ok or where in d.stdout, f"portcullis --check refuses something else:\n{d.stdout}")
        t.case(f"{section}: {what} is {'accepted' if accepted is True else 'refused'} by the schema "
               f"{'only' if accepted == 'strict' else 'and by portcullis --check'}", agree)


def kube_change(values, pol, base, changes):
    kube = values["kubernetesIdentity"]
    kube.update({"enabled": True, "apiServerEndpoints": [{"cidr": "10.0.0.2/32", "port": 6443}]})
    kube.update(copy.deepcopy(base))
    kube.update(copy.deepcopy(changes))
    k = {key: val for key, val in kube.items() if val not in ("", {}, [], None)}
    pol["identity"]["kubernetes"] = {
        {"apiServer": "api_server", "namespaces": "namespaces", "tierLabel": "tier_label",
         "labelSelector": "label_selector", "auditLabels": "audit_labels", "watchTimeout": "watch_timeout",
         "backoffMax": "backoff_max", "maxPods": "max_pods"}[key]: val
        for key, val in k.items() if key not in ("enabled", "apiServerEndpoints", "clusterWide")}
    return "identity.kubernetes"


def run_kube_agreement_group(args, t):
    run_agreement(args, t, "kube-agreement", "kubernetesIdentity", KUBE_AGREEMENT, kube_change)


def _rule(kind, val):
    return {"tls": {"clientCertRules": [{kind: val, "tier": "standard"}]}}


def _pp(**kw):
    pp = {"trusted": ["10.0.16.10/32"]}
    pp.update(kw)
    return {"proxyProtocol": pp}


TLS_PP_AGREEMENT = [
    # (what, changes to tls / proxyProtocol, accepted: True, False or "strict" = the schema only)
    ("a DNS SAN rule", _rule("dns", "runner.example.com"), True),
    ("a DNS wildcard rule", _rule("dns", "*.runners.example.com"), True),
    ("a DNS rule with a trailing dot", _rule("dns", "runner.example.com."), True),
    ("a wildcard over a TLD (*.com)", _rule("dns", "*.com"), False),
    ("a doubled wildcard", _rule("dns", "*.*.example.com"), False),
    ("an IP address as a DNS rule", _rule("dns", "1.2.3.4"), False),
    ("a DNS label starting with -", _rule("dns", "-a.example.com"), False),
    ("a 64-character DNS label", _rule("dns", "a" * 64 + ".example.com"), False),
    ("an exact SPIFFE ID", _rule("spiffe", "spiffe://ci.example.org/ns/ci/sa/builder"), True),
    ("a SPIFFE prefix pattern", _rule("spiffe", "spiffe://ci.example.org/ns/*"), True),
    ("a SPIFFE pattern below the trust domain", _rule("spiffe", "spiffe://ci.example.org/*"), True),
    ("a SPIFFE ID with a trailing /", _rule("spiffe", "spiffe://ci.example.org/"), False),
    ("a SPIFFE trust domain with a port", _rule("spiffe", "spiffe://ci.example.org:8443/a"), False),
    ("an uppercase SPIFFE trust domain", _rule("spiffe", "spiffe://CI.example.org/a"), False),
    ("a SPIFFE .. segment", _rule("spiffe", "spiffe://ci.example.org/a/../b"), False),
    ("an empty SPIFFE segment", _rule("spiffe", "spiffe://ci.example.org/a//b"), False),
    ("a * inside a SPIFFE segment", _rule("spiffe", "spiffe://ci.example.org/a/b*"), False),
    ("a SPIFFE ID over 2048 bytes", _rule("spiffe", "spiffe://ci.example.org/" + "a" * 2030), False),
    ("a 64-byte CN", _rule("cn", "x" * 64), True),
    ("a 65-byte CN", _rule("cn", "x" * 65), False),
    ("an empty CN", _rule("cn", ""), False),
    ("256 rules", {"tls": {"clientCertRules": [{"cn": f"r{i}", "tier": "standard"} for i in range(256)]}}, True),
    ("257 rules", {"tls": {"clientCertRules": [{"cn": f"r{i}", "tier": "standard"} for i in range(257)]}}, False),
    ("a trusted bare address", _pp(trusted=["10.0.16.10"]), True),
    ("a trusted IPv6 range", _pp(trusted=["fd00:16::a/128"]), True),
    ("a trusted /33", _pp(trusted=["10.0.16.0/33"]), False),
    ("a trusted address out of range", _pp(trusted=["256.1.1.1/32"]), False),
    ("a trusted range listed twice", _pp(trusted=["10.0.16.10/32", "10.0.16.10/32"]), False),
    ("trusted 0.0.0.0/0", _pp(trusted=["0.0.0.0/0"]), "strict"),
    ("trusted ::/0", _pp(trusted=["::/0"]), "strict"),
    ("mode v1", _pp(mode="v1"), True),
    ("mode either", _pp(mode="either"), True),
    ("a 100ms timeout", _pp(timeout="100ms"), True),
    ("a 99ms timeout", _pp(timeout="99ms"), False),
    ("a 1m timeout", _pp(timeout="1m"), True),
    ("a 60s timeout", _pp(timeout="60s"), True),
    ("a 61s timeout", _pp(timeout="61s"), False),
    ("a 0 timeout", _pp(timeout="0"), False),
]


def tls_pp_change(values, pol, changes):
    if "tls" in changes:
        values["tls"].update({"enabled": True, "secretName": "portcullis-tls", "clientCerts": "require",
                              "clientCA": {"secretName": "ci-client-ca", "configMapName": "", "key": "ca.crt"}})
        values["tls"].update(copy.deepcopy(changes["tls"]))
        pol["listen"]["https"] = "0.0.0.0:3129"
        pol["listen"]["tls"] = {"cert": "/etc/portcullis-tls/server/tls.crt",
                                "key": "/etc/portcullis-tls/server/tls.key", "client_certs": "require",
                                "client_ca": "/etc/portcullis-tls/client-ca/ca.crt"}
        pol["identity"]["client_certs"] = values["tls"]["clientCertRules"]
        where = "identity.client_certs"
    else:
        values["proxyProtocol"].update({"enabled": True})
        values["proxyProtocol"].update(copy.deepcopy(changes["proxyProtocol"]))
        pp = values["proxyProtocol"]
        pol["listen"]["proxy"] = [pol["listen"]["proxy"], {"address": "0.0.0.0:3130", "proxy_protocol": {
            "mode": pp["mode"], "trusted": pp["trusted"], "timeout": pp["timeout"]}}]
        where = "proxy_protocol"
    return where


def run_tls_pp_agreement_group(args, t):
    """Single changes to tls.clientCertRules and proxyProtocol: values.schema.json and
    portcullis --check (on the policy keys the chart writes from them) accept or refuse alike."""
    run_agreement(args, t, "tls-pp-agreement", "tls/proxyProtocol", TLS_PP_AGREEMENT, tls_pp_change)


def _ic(**kw):
    return {"interception": kw}


def _icpt(**kw):
    return {"intercept": kw}


def _req(**kw):
    req = {"path": "/our-org/**", "action": "allow"}
    req.update(kw)
    return _icpt(default="deny", requests=[req])


INTERCEPT_AGREEMENT = [
    # (what, changes to interception (values) or to one rule's intercept: block, accepted:
    #  True, False or "strict" = the schema only)
    ("leafLifetime 1h", _ic(leafLifetime="1h"), True),
    ("leafLifetime 720h", _ic(leafLifetime="720h"), True),
    ("leafLifetime 721h", _ic(leafLifetime="721h"), False),
    ("leafLifetime 60m", _ic(leafLifetime="60m"), True),
    ("leafLifetime 59m", _ic(leafLifetime="59m"), False),
    ("leafLifetime 43200m", _ic(leafLifetime="43200m"), True),
    ("leafLifetime 43201m", _ic(leafLifetime="43201m"), False),
    ("leafLifetime 0", _ic(leafLifetime="0"), False),
    ("leafLifetime 3600s (hours or minutes only)", _ic(leafLifetime="3600s"), "strict"),
    ("cacheSize 1", _ic(cacheSize=1), True),
    ("cacheSize 100000", _ic(cacheSize=100000), True),
    ("cacheSize 100001", _ic(cacheSize=100001), False),
    ("cacheSize 0", _ic(cacheSize=0), False),
    ("an empty intercept: block", _icpt(), True),
    ("default allow", _icpt(default="allow"), True),
    ("default maybe", _icpt(default="maybe"), False),
    ("encoded_slash decode", _icpt(encoded_slash="decode"), True),
    ("encoded_slash keep", _icpt(encoded_slash="keep"), False),
    ("max_request_body 1MiB", _icpt(max_request_body="1MiB"), True),
    ("max_request_body 1", _icpt(max_request_body=1), True),
    ("max_request_body 0", _icpt(max_request_body=0), False),
    ("an unknown key", _icpt(defualt="deny"), False),
    ("a request entry", _req(), True),
    ("methods any", _req(methods="any"), True),
    ("methods [GET, POST]", _req(methods=["GET", "POST"]), True),
    ("a lowercase method", _req(methods=["get"]), False),
    ("methods CONNECT", _req(methods=["CONNECT"]), False),
    ("a method listed twice", _req(methods=["GET", "GET"]), False),
    ("an empty methods list", _req(methods=[]), False),
    ("action deny", _req(action="deny"), True),
    ("action maybe", _req(action="maybe"), False),
    ("a path without a leading /", _req(path="our-org/**"), False),
    ("a path with a query", _req(path="/a?b"), False),
    ("a path with a #", _req(path="/a#b"), False),
    ("a path with a backslash", _req(path="/a\\b"), False),
    ("a path of 1024 bytes", _req(path="/" + "a" * 1023), True),
    ("a path of 1025 bytes", _req(path="/" + "a" * 1024), False),
    ("a request without a path", {"intercept": {"requests": [{"action": "allow"}]}}, False),
    ("a request without an action", {"intercept": {"requests": [{"path": "/a"}]}}, False),
    ("a 128-character name", _req(name="n" * 128), True),
    ("a 129-character name", _req(name="n" * 129), False),
    ("256 request entries", _icpt(requests=[{"path": f"/p{i}", "action": "allow"} for i in range(256)]), True),
    ("257 request entries", _icpt(requests=[{"path": f"/p{i}", "action": "allow"} for i in range(257)]), False),
]


def intercept_change(values, pol, changes):
    values["interception"]["caSecretName"] = "portcullis-intercept-ca"
    values["interception"].update(copy.deepcopy(changes.get("interception", {})))
    rule = {"host": "github.com", "intercept": copy.deepcopy(changes.get("intercept", {"default": "deny"}))}
    values["tiers"] = {"standard": {"sources": ["10.244.0.0/16"], "allow": [rule]}}
    ic = values["interception"]
    pol["interception"] = {"ca_cert": "/etc/portcullis-intercept/ca/tls.crt",
                           "ca_key": "/etc/portcullis-intercept/ca/tls.key",
                           "leaf_lifetime": ic["leafLifetime"], "cache_size": ic["cacheSize"]}
    pol["tiers"] = copy.deepcopy(values["tiers"])
    return "intercept"  # names interception: and a rule's intercept: alike


def run_intercept_agreement_group(args, t):
    """Single changes to interception and to a rule's intercept: block: values.schema.json and
    portcullis --check (on the policy the chart writes from them) accept or refuse alike."""
    run_agreement(args, t, "intercept-agreement", "interception", INTERCEPT_AGREEMENT, intercept_change)


def expectation(path):
    with open(path) as fh:
        first = fh.readline()
    m = re.match(r"#\s*expect:\s*(.+?)\s*$", first)
    check(m, f"{path}: first line must be '# expect: <text of the error>'")
    return m.group(1)


def run_negative_group(args, t):
    schema = load_schema(args)

    def no_values():
        p, _, values = render(args, [], "bad-no-values")
        check(p.returncode != 0, "rendered without resolver.servers")
        check("resolver.servers" in p.stderr, f"error does not name resolver.servers:\n{p.stderr}")
    t.case("the chart's bare defaults are refused: resolver.servers is required", no_values)

    bad_values = os.path.join(args.here, "bad-values")
    for f in sorted(os.listdir(bad_values)):
        path = os.path.join(bad_values, f)

        def refused(path=path, f=f):
            want = expectation(path)
            p, _, values = render(args, [path], "bad-values-" + f[:-5])
            check(p.returncode != 0, "the renderer accepted it")
            check("values don't meet the specifications of the schema" in p.stderr,
                  f"refused, but not by the schema:\n{p.stderr}")
            check(want in p.stderr, f"the error does not mention {want!r}:\n{p.stderr}")
            errs = schema_errors(schema, values)
            check(errs, "python3-jsonschema accepts it")
        t.case(f"bad values {f} are refused by values.schema.json", refused)

    bad_render = os.path.join(args.here, "bad-render")
    for f in sorted(os.listdir(bad_render)):
        path = os.path.join(bad_render, f)

        def failed(path=path, f=f):
            want = expectation(path)
            p, _, values = render(args, [path], "bad-render-" + f[:-5])
            check(p.returncode != 0, "the renderer accepted it")
            check(want in p.stderr, f"the error does not mention {want!r}:\n{p.stderr}")
            check(not schema_errors(schema, values), "the schema refuses it already (belongs in bad-values/)")
        t.case(f"bad values {f} are refused by the chart's templates", failed)

    check_fails = os.path.join(args.here, "check-fails")
    for f in sorted(os.listdir(check_fails)):
        path = os.path.join(check_fails, f)

        def hook_fails(path=path, f=f):
            want = expectation(path)
            tag = "check-fails-" + f[:-5]
            p, out, values = render(args, [path], tag)
            check(p.returncode == 0, f"the chart refuses it already (belongs in bad-render/):\n{p.stderr}")
            check(not schema_errors(schema, values), "the schema refuses it already (belongs in bad-values/)")
            r = Rendered(tag, [path], load_all(p.stdout), values, "")
            h = run_hook_command(args, r, out)
            check(h.returncode == 1, f"the hook's command exits {h.returncode}, not 1 (invalid policy):\n{h.stdout}")
            check(want in h.stdout, f"the hook's output does not mention {want!r}:\n{h.stdout}")
        t.case(f"values {f} render, but the policy check hook's command fails on them", hook_fails)

    run_kube_agreement_group(args, t)
    run_tls_pp_agreement_group(args, t)
    run_intercept_agreement_group(args, t)


def run_monitoring_group(args, t):
    """promtool test rules on tests/helm/prometheus/rules_test.yaml against the rules the chart renders."""
    t.case("monitoring: the PromQL metric-name scanner gives the known answers",
           lambda: check(not monitoring.check_self(), "\n".join(monitoring.check_self())))
    out = os.path.join(args.workdir, "monitoring")
    os.makedirs(out, exist_ok=True)
    state = {}

    def rendered():
        r = render_objects(args, [os.path.join(args.here, "values", "monitoring.yaml")], "monitoring-rules")
        rule = monitoring.prometheus_rule(r.objects)
        check(rule is not None, "values/monitoring.yaml renders no PrometheusRule")
        monitoring.write_rules(rule, os.path.join(out, "rules.yaml"))
        state["rule"] = rule
    t.case("monitoring: values/monitoring.yaml renders the PrometheusRule", rendered)

    test_file = os.path.join(args.here, "prometheus", "rules_test.yaml")

    def unit_tests():
        check("rule" in state, "nothing rendered")
        shutil.copy(test_file, os.path.join(out, "rules_test.yaml"))
        p = promtool("test", "rules", os.path.join(out, "rules_test.yaml"))
        check(p.returncode == 0, f"promtool test rules:\n{p.stdout}")
    t.case("monitoring: promtool test rules: every alert fires on its synthetic series and stays silent "
           "where it must", unit_tests)

    def coverage():
        check("rule" in state, "nothing rendered")
        with open(test_file) as fh:
            tests = yaml.safe_load(fh)["tests"]
        fired, silent = set(), set()
        for tc in tests:
            for a in tc.get("alert_rule_test") or []:
                (fired if a.get("exp_alerts") else silent).add(a["alertname"])
        alerts = {a.split("/", 1)[1] for a, _ in monitoring.rule_exprs(state["rule"])}
        check(alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}; "
              f"tests of alerts the chart lacks: {sorted(fired - alerts)}")
        check(alerts <= silent, f"alerts without a test that they stay silent: {sorted(alerts - silent)}")
    t.case("monitoring: rules_test.yaml makes every alert fire and keeps every alert silent at least once", coverage)

    def sensitive():
        # The unit tests must notice a broken rule: point one alert at a metric that does not exist.
        check("rule" in state, "nothing rendered")
        broken = copy.deepcopy(state["rule"])
        r0 = broken["spec"]["groups"][0]["rules"][0]
        r0["expr"] = r0["expr"].replace("portcullis_", "portcullis_missing_")
        d = os.path.join(out, "broken")
        os.makedirs(d, exist_ok=True)
        monitoring.write_rules(broken, os.path.join(d, "rules.yaml"))
        shutil.copy(test_file, os.path.join(d, "rules_test.yaml"))
        p = promtool("test", "rules", os.path.join(d, "rules_test.yaml"))
        check(p.returncode != 0, f"promtool test rules passes with {r0['alert']} reading no metric")
    t.case("monitoring: the unit tests fail when an alert reads a metric that does not exist", sensitive)


def run_selftest_group(args, t):
    """The validator must refuse what the API server refuses; else a green run means nothing."""
    p, _, _ = render(args, [os.path.join(args.here, "values", "defaults.yaml")], "selftest")
    objs = load_all(p.stdout) if p.returncode == 0 else []

    def get(kind):
        return copy.deepcopy([o for o in objs if o["kind"] == kind][0])

    def container(d):
        return d["spec"]["template"]["spec"]["containers"][0]

    mutations = [
        ("an unknown field in a container", "Deployment", lambda d: container(d).__setitem__("securtyContext", {})),
        ("an unknown top-level spec field", "Deployment", lambda d: d["spec"].__setitem__("replica", 2)),
        ("a string where an integer belongs", "Deployment", lambda d: d["spec"].__setitem__("replicas", "2")),
        ("a bool where a string belongs", "Service", lambda d: d["spec"].__setitem__("type", True)),
        ("a mapping where a list belongs", "Deployment", lambda d: container(d).__setitem__("args", {"c": 1})),
        ("a container without a name", "Deployment", lambda d: container(d).pop("name")),
        ("a selector that misses the template", "Deployment",
         lambda d: d["spec"]["selector"]["matchLabels"].__setitem__("app.kubernetes.io/name", "other")),
        ("a probe on an unknown port name", "Deployment",
         lambda d: container(d)["livenessProbe"]["httpGet"].__setitem__("port", "admin")),
        ("an except outside its cidr", "NetworkPolicy",
         lambda d: [r for r in d["spec"]["egress"] if "except" in r["to"][0].get("ipBlock", {})][0]["to"][0]
         ["ipBlock"]["except"].append("fd00::/8")),
        ("a bad label value", "ConfigMap", lambda d: d["metadata"]["labels"].__setitem__("a", "not valid!")),
        ("a port name over 15 characters", "Service",
         lambda d: d["spec"]["ports"][0].__setitem__("name", "a-very-long-port-name")),
        ("a null field", "Deployment", lambda d: d["spec"].__setitem__("strategy", None)),
    ]
    t.case("self-test: the defaults render", lambda: check(objs, p.stderr))
    for what, kind, mutate in mutations:
        def refuses(kind=kind, mutate=mutate):
            check(objs, "nothing rendered")
            o = get(kind)
            check(not k8s_schema.validate(o), "the unmodified object is already invalid")
            mutate(o)
            check(k8s_schema.validate(o), "the validator accepted it")
        t.case(f"self-test: the validator refuses {what}", refuses)

    def sm_unknown():
        sm = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
              "metadata": {"name": "x", "namespace": "egress"},
              "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "metrics", "intervall": "30s"}]}}
        check(k8s_schema.validate(sm), "the validator accepted a ServiceMonitor endpoint with an unknown field")
    t.case("self-test: the validator refuses an unknown ServiceMonitor field", sm_unknown)

    def dup():
        try:
            load_all("a: 1\na: 2\n")
        except yaml.YAMLError:
            return
        raise Failure("duplicate keys were accepted")
    t.case("self-test: duplicate YAML keys are refused", dup)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--renderer", required=True)
    ap.add_argument("--srcdir", required=True)
    ap.add_argument("--portcullis")
    ap.add_argument("--workdir")
    ap.add_argument("--only", default="render,negative,selftest,monitoring,containerfile")
    args = ap.parse_args()
    args.srcdir = os.path.abspath(args.srcdir)
    args.chart = os.path.join(args.srcdir, "helm", "portcullis")
    args.here = os.path.join(args.srcdir, "tests", "helm")
    tmp = None
    if not args.workdir:
        tmp = args.workdir = tempfile.mkdtemp(prefix="portcullis-helm-")
    os.makedirs(args.workdir, exist_ok=True)
    if args.portcullis:
        args.portcullis = os.path.abspath(args.portcullis)
    t = Runner()
    groups = args.only.split(",")
    try:
        if "render" in groups:
            run_render_group(args, t)
        if "negative" in groups:
            run_negative_group(args, t)
        if "selftest" in groups:
            run_selftest_group(args, t)
        if "monitoring" in groups:
            run_monitoring_group(args, t)
        if "containerfile" in groups:
            containerfile.run(args, t, check, Failure)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{t.n - t.failed} passed, {t.failed} failed")
    return 1 if t.failed or t.n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
