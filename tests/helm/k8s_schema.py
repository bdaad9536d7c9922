"""Validate rendered Kubernetes objects against the Kubernetes API schema.

The schema source is Debian's python3-kubernetes: its generated model classes
carry, per kind, every field's JSON name (`attribute_map`) and type
(`openapi_types`). Each object is checked twice:

1. strictly, by walking the object against the models: an unknown field, a
   wrong type (a string where an integer belongs, a bool for a string, a list
   for a mapping) or a null is an error — the model deserializer alone would
   silently drop unknown fields and coerce types;
2. by deserializing it into its model class with the client's own
   ApiClient deserializer, which enforces required fields and enums.

On top come the checks the API server makes that the models do not: name and
label syntax, selector/template agreement, NetworkPolicy `except` inside
`cidr`, port names, and the like.

Jobs and Pods (the chart's Helm hooks) get the pod-spec checks a
Deployment's template gets.

The models of python3-kubernetes 22.6 (Kubernetes 1.22) have no autoscaling/v2;
HorizontalPodAutoscaler autoscaling/v2 is validated against the
autoscaling/v2beta2 models, whose schema v2 made GA unchanged. The
ServiceMonitor and the PrometheusRule (Prometheus Operator CRDs) have no model:
they are checked against hand-written schemas of the fields the chart uses
(SERVICEMONITOR, PROMETHEUSRULE below).

Run with Debian's interpreter (/usr/bin/python3).
"""

import ipaddress
import json
import re

import kubernetes.client as kc
from kubernetes.client import ApiClient

# (apiVersion, kind) -> model class name
MODELS = {
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("batch/v1", "Job"): "V1Job",
    ("v1", "Pod"): "V1Pod",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2beta2HorizontalPodAutoscaler",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
}

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]+)?$")
PROM_DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")

_LIST = re.compile(r"^list\[(.*)\]$")
_DICT = re.compile(r"^dict\(([^,]*), (.*)\)$")


def _typename(v):
    return type(v).__name__


def strict_walk(value, typ, path, errors):
    """Check `value` against the model type string `typ` (as in openapi_types)."""
    if value is None:
        errors.append(f"{path}: null is not a {typ}")
        return
    m = _LIST.match(typ)
    if m:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {_typename(value)}")
            return
        for i, item in enumerate(value):
            strict_walk(item, m.group(1), f"{path}[{i}]", errors)
        return
    m = _DICT.match(typ)
    if m:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {_typename(value)}")
            return
        for k, v in value.items():
            if not isinstance(k, str):
                errors.append(f"{path}: key {k!r} is not a string")
            strict_walk(v, m.group(2), f"{path}.{k}", errors)
        return
    if typ == "str":
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {_typename(value)} {value!r}")
        return
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {_typename(value)} {value!r}")
        return
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number, got {_typename(value)} {value!r}")
        return
    if typ == "bool":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {_typename(value)} {value!r}")
        return
    if typ in ("datetime", "date"):
        if not isinstance(value, str):
            errors.append(f"{path}: expected a timestamp string, got {_typename(value)}")
        return
    if typ == "object":
        # In the objects this chart renders, `object` is always IntOrString
        # (ports, targetPort, maxSurge, maxUnavailable, minAvailable).
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            errors.append(f"{path}: expected an integer or a string, got {_typename(value)} {value!r}")
        return
    cls = getattr(kc, typ, None)
    if cls is None:
        errors.append(f"{path}: no model for type {typ}")
        return
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a {typ} mapping, got {_typename(value)} {value!r}")
        return
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for key, v in value.items():
        attr = by_json.get(key)
        if attr is None:
            errors.append(f"{path}: unknown field {key!r} for {typ}")
            continue
        strict_walk(v, cls.openapi_types[attr], f"{path}.{key}", errors)


class _Response:
    def __init__(self, obj):
        self.data = json.dumps(obj)


def deserialize(obj, model):
    """The client's own deserializer: raises on a missing required field or a bad enum."""
    return ApiClient().deserialize(_Response(obj), model)


def _check_labels(labels, path, errors):
    if labels is None:
        return
    for k, v in labels.items():
        prefix, _, name = k.rpartition("/")
        if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
            errors.append(f"{path}: label key {k!r}: bad prefix")
        if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
            errors.append(f"{path}: label key {k!r}: bad name")
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            errors.append(f"{path}: label value {v!r} of {k!r} is not a valid label value")


def _check_selector(sel, path, errors):
    if not sel:
        return
    _check_labels(sel.get("matchLabels"), f"{path}.matchLabels", errors)
    for i, e in enumerate(sel.get("matchExpressions") or []):
        op = e.get("operator")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errors.append(f"{path}.matchExpressions[{i}]: bad operator {op!r}")
        if op in ("In", "NotIn") and not e.get("values"):
            errors.append(f"{path}.matchExpressions[{i}]: {op} needs values")
        if op in ("Exists", "DoesNotExist") and e.get("values"):
            errors.append(f"{path}.matchExpressions[{i}]: {op} takes no values")


def selector_matches(sel, labels):
    """Does a LabelSelector select an object with these labels?"""
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def _check_port_name(name, path, errors):
    if len(name) > 15 or not IANA_SVC_NAME.match(name) or "--" in name or not re.search("[a-z]", name):
        errors.append(f"{path}: {name!r} is not a valid port name (IANA_SVC_NAME, at most 15 characters)")


def _check_intorstr_port(port, path, errors):
    if isinstance(port, int):
        if not 1 <= port <= 65535:
            errors.append(f"{path}: port {port} out of range")
    elif isinstance(port, str):
        _check_port_name(port, path, errors)


def _check_pod_spec(spec, path, errors):
    volumes = {v["name"] for v in spec.get("volumes") or []}
    for ci, c in enumerate(spec.get("containers") or []):
        cp = f"{path}.containers[{ci}]"
        if not DNS1123_LABEL.match(c["name"]):
            errors.append(f"{cp}.name: {c['name']!r} is not a DNS label")
        names = set()
        for pi, p in enumerate(c.get("ports") or []):
            if "name" in p:
                _check_port_name(p["name"], f"{cp}.ports[{pi}].name", errors)
                if p["name"] in names:
                    errors.append(f"{cp}.ports[{pi}]: duplicate port name {p['name']!r}")
                names.add(p["name"])
            if not 1 <= p["containerPort"] <= 65535:
                errors.append(f"{cp}.ports[{pi}].containerPort out of range")
            if p.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                errors.append(f"{cp}.ports[{pi}].protocol: bad protocol")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            pr = c.get(probe)
            if pr and "httpGet" in pr:
                port = pr["httpGet"]["port"]
                if isinstance(port, str) and port not in names:
                    errors.append(f"{cp}.{probe}.httpGet.port: no container port named {port!r}")
        for kind in ("requests", "limits"):
            for res, q in ((c.get("resources") or {}).get(kind) or {}).items():
                if not QUANTITY.match(str(q)):
                    errors.append(f"{cp}.resources.{kind}.{res}: {q!r} is not a quantity")
        for mi, m in enumerate(c.get("volumeMounts") or []):
            if m["name"] not in volumes:
                errors.append(f"{cp}.volumeMounts[{mi}]: no volume named {m['name']!r}")


def _check_ipblock(b, path, errors):
    try:
        net = ipaddress.ip_network(b["cidr"], strict=True)
    except ValueError as e:
        errors.append(f"{path}.cidr: {e}")
        return
    for i, ex in enumerate(b.get("except") or []):
        try:
            exn = ipaddress.ip_network(ex, strict=True)
        except ValueError as e:
            errors.append(f"{path}.except[{i}]: {e}")
            continue
        if exn.version != net.version or not exn.subnet_of(net) or exn == net:
            errors.append(f"{path}.except[{i}]: {ex} is not a strict subset of {b['cidr']}")


def _check_netpol(spec, path, errors):
    _check_selector(spec.get("podSelector"), f"{path}.podSelector", errors)
    for pt in spec.get("policyTypes") or []:
        if pt not in ("Ingress", "Egress"):
            errors.append(f"{path}.policyTypes: bad type {pt!r}")
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for ri, rule in enumerate(spec.get(direction) or []):
            rp = f"{path}.{direction}[{ri}]"
            for pi, peer in enumerate(rule.get(peers_key) or []):
                pp = f"{rp}.{peers_key}[{pi}]"
                if "ipBlock" in peer:
                    if len(peer) != 1:
                        errors.append(f"{pp}: ipBlock cannot be combined with selectors")
                    _check_ipblock(peer["ipBlock"], f"{pp}.ipBlock", errors)
                elif not peer:
                    errors.append(f"{pp}: an empty peer")
                _check_selector(peer.get("podSelector"), f"{pp}.podSelector", errors)
                _check_selector(peer.get("namespaceSelector"), f"{pp}.namespaceSelector", errors)
            for pi, port in enumerate(rule.get("ports") or []):
                if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                    errors.append(f"{rp}.ports[{pi}].protocol: bad protocol")
                if "port" in port:
                    _check_intorstr_port(port["port"], f"{rp}.ports[{pi}].port", errors)


# The ServiceMonitor fields the chart renders, with the types of the
# monitoring.coreos.com/v1 CRD; anything else is an unknown field.
_LABEL_SELECTOR = "V1LabelSelector"
_RELABEL = {
    "action": str, "modulus": int, "regex": str, "replacement": str,
    "separator": str, "sourceLabels": [str], "targetLabel": str,
}
_ENDPOINT = {
    "port": str, "targetPort": (int, str), "path": str, "scheme": str, "interval": str,
    "scrapeTimeout": str, "honorLabels": bool, "honorTimestamps": bool,
    "relabelings": [_RELABEL], "metricRelabelings": [_RELABEL],
}
SERVICEMONITOR = {
    "apiVersion": str, "kind": str, "metadata": "V1ObjectMeta",
    "spec": {
        "jobLabel": str, "targetLabels": [str], "podTargetLabels": [str],
        "endpoints": [_ENDPOINT],
        "selector": _LABEL_SELECTOR,
        "namespaceSelector": {"any": bool, "matchNames": [str]},
    },
}


# The PrometheusRule (monitoring.coreos.com/v1) fields the chart renders.
_RULE = {"alert": str, "record": str, "expr": str, "for": str,
         "labels": "dict(str, str)", "annotations": "dict(str, str)"}
PROMETHEUSRULE = {
    "apiVersion": str, "kind": str, "metadata": "V1ObjectMeta",
    "spec": {"groups": [{"name": str, "interval": str, "rules": [_RULE]}]},
}


def _walk_shape(value, shape, path, errors):
    if isinstance(shape, str):
        strict_walk(value, shape, path, errors)
    elif isinstance(shape, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping")
            return
        for k, v in value.items():
            if k not in shape:
                errors.append(f"{path}: unknown field {k!r}")
            else:
                _walk_shape(v, shape[k], f"{path}.{k}", errors)
    elif isinstance(shape, list):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            _walk_shape(item, shape[0], f"{path}[{i}]", errors)
    else:
        types = shape if isinstance(shape, tuple) else (shape,)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            errors.append(f"{path}: expected {'/'.join(t.__name__ for t in types)}, got {_typename(value)}")


def _check_servicemonitor(obj, errors):
    _walk_shape(obj, SERVICEMONITOR, "ServiceMonitor", errors)
    spec = obj.get("spec") or {}
    if "selector" not in spec:
        errors.append("ServiceMonitor.spec.selector is required")
    if not spec.get("endpoints"):
        errors.append("ServiceMonitor.spec.endpoints is empty")
    for i, ep in enumerate(spec.get("endpoints") or []):
        for key in ("interval", "scrapeTimeout"):
            if key in ep and not PROM_DURATION.match(ep[key]):
                errors.append(f"ServiceMonitor.spec.endpoints[{i}].{key}: bad duration {ep[key]!r}")


def _check_prometheusrule(obj, errors):
    _walk_shape(obj, PROMETHEUSRULE, "PrometheusRule", errors)
    groups = (obj.get("spec") or {}).get("groups") or []
    if not groups:
        errors.append("PrometheusRule.spec.groups is empty")
    names = [g.get("name") for g in groups]
    if len(set(names)) != len(names) or not all(names):
        errors.append(f"PrometheusRule: group names must be set and unique: {names}")
    for gi, g in enumerate(groups):
        for ri, r in enumerate(g.get("rules") or []):
            where = f"PrometheusRule.spec.groups[{gi}].rules[{ri}]"
            if ("alert" in r) == ("record" in r):
                errors.append(f"{where}: exactly one of alert and record")
            if not r.get("expr"):
                errors.append(f"{where}: expr is required")
            if "for" in r and not PROM_DURATION.match(r["for"]):
                errors.append(f"{where}.for: bad duration {r['for']!r}")


def validate(obj):
    """Every error for one rendered object; [] when it is valid."""
    errors = []
    if not isinstance(obj, dict):
        return [f"not a mapping: {obj!r}"]
    api, kind = obj.get("apiVersion"), obj.get("kind")
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if (api, kind) == ("monitoring.coreos.com/v1", "ServiceMonitor"):
        _check_servicemonitor(obj, errors)
    elif (api, kind) == ("monitoring.coreos.com/v1", "PrometheusRule"):
        _check_prometheusrule(obj, errors)
    else:
        model = MODELS.get((api, kind))
        if model is None:
            return [f"{api} {kind}: no schema for this kind"]
        strict_walk(obj, model, kind, errors)
        if not errors:
            try:
                deserialize(obj, model)
            except (ValueError, TypeError) as e:
                errors.append(f"{kind}: the {model} model refuses it: {e}")

    if errors:
        # The checks below assume a well-typed object.
        return errors

    # What the API server checks beyond the schema.
    if not name:
        errors.append(f"{kind}: metadata.name is required")
    elif kind in ("Service",):
        if len(name) > 63 or not DNS1035_LABEL.match(name):
            errors.append(f"{kind}: name {name!r} is not a DNS-1035 label")
    elif kind == "Namespace":
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            errors.append(f"{kind}: name {name!r} is not a DNS label")
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        errors.append(f"{kind}: name {name!r} is not a DNS subdomain")
    ns = meta.get("namespace")
    if kind in CLUSTER_SCOPED:
        if ns:
            errors.append(f"{kind}: cluster-scoped, but has a namespace")
    elif not ns or not DNS1123_LABEL.match(ns):
        errors.append(f"{kind}: namespace {ns!r} missing or not a DNS label")
    _check_labels(meta.get("labels"), f"{kind}.metadata.labels", errors)
    for k in (meta.get("annotations") or {}):
        _, _, n = k.rpartition("/")
        if not QUALIFIED_NAME.match(n):
            errors.append(f"{kind}: bad annotation key {k!r}")

    spec = obj.get("spec") or {}
    if kind == "Deployment":
        sel = spec.get("selector") or {}
        tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        _check_selector(sel, "Deployment.spec.selector", errors)
        _check_labels(tlabels, "Deployment.spec.template.metadata.labels", errors)
        if not sel or not selector_matches(sel, tlabels):
            errors.append("Deployment: spec.selector does not match the template labels")
        _check_pod_spec((spec.get("template") or {}).get("spec") or {}, "Deployment.spec.template.spec", errors)
        ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        if ru.get("maxSurge") in (0, "0%") and ru.get("maxUnavailable") in (0, "0%"):
            errors.append("Deployment: maxSurge and maxUnavailable cannot both be 0")
    elif kind == "Job":
        if len(name) > 63:
            errors.append(f"Job: name {name!r} is longer than 63 characters (its pods' job-name label)")
        tmpl = spec.get("template") or {}
        _check_labels((tmpl.get("metadata") or {}).get("labels"), "Job.spec.template.metadata.labels", errors)
        tspec = tmpl.get("spec") or {}
        if tspec.get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append("Job: spec.template.spec.restartPolicy must be Never or OnFailure")
        _check_pod_spec(tspec, "Job.spec.template.spec", errors)
    elif kind == "Pod":
        _check_pod_spec(spec, "Pod.spec", errors)
    elif kind == "Service":
        if spec.get("sessionAffinityConfig") and spec.get("sessionAffinity") != "ClientIP":
            errors.append("Service: sessionAffinityConfig needs sessionAffinity ClientIP")
        t = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
        if t is not None and not 0 < t <= 86400:
            errors.append(f"Service: sessionAffinityConfig.clientIP.timeoutSeconds {t} outside 1..86400")
        if spec.get("sessionAffinity", "None") not in ("None", "ClientIP"):
            errors.append(f"Service: bad sessionAffinity {spec.get('sessionAffinity')!r}")
        for i, p in enumerate(spec.get("ports") or []):
            if "name" in p:
                _check_port_name(p["name"], f"Service.spec.ports[{i}].name", errors)
            _check_intorstr_port(p["port"], f"Service.spec.ports[{i}].port", errors)
            if "targetPort" in p:
                _check_intorstr_port(p["targetPort"], f"Service.spec.ports[{i}].targetPort", errors)
        cip = spec.get("clusterIP")
        if cip and cip != "None":
            try:
                ipaddress.ip_address(cip)
            except ValueError:
                errors.append(f"Service.spec.clusterIP: {cip!r} is not an IP address")
    elif kind == "NetworkPolicy":
        _check_netpol(spec, "NetworkPolicy.spec", errors)
    elif kind == "PodDisruptionBudget":
        if ("minAvailable" in spec) == ("maxUnavailable" in spec):
            errors.append("PodDisruptionBudget: exactly one of minAvailable and maxUnavailable")
        _check_selector(spec.get("selector"), "PodDisruptionBudget.spec.selector", errors)
    elif kind == "HorizontalPodAutoscaler":
        if spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
            errors.append("HorizontalPodAutoscaler: minReplicas > maxReplicas")
    return errors
