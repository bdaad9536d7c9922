"""The chart's monitoring objects as data, for tests/helm: the PrometheusRule's
groups, the Grafana dashboard's queries, and the metric names a PromQL
expression reads.

metric_names() is a small PromQL scanner, not a parser: after promtool has
accepted an expression (test_chart.py's monitoring group), it drops string
literals, label matchers {...}, ranges [...], grouping clauses (by, without,
on, ignoring, group_left, group_right), offsets and numbers, and returns the remaining
identifiers that are not functions, aggregations or keywords. check_self()
pins it on known expressions.
"""
import json
import re

import yaml

KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan", "atan2", "topk", "bottomk", "quantile", "count_values"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:])[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

# Grafana's variables, replaced by values that keep each query valid PromQL.
GRAFANA_VARS = [("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h"),
                ("${datasource}", "prometheus"), ("$namespace", "egress"), ("$tier", ".*")]


def metric_names(expr):
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING.sub(" ", s)
    s = re.sub(r"\boffset\s+-?[0-9][0-9a-z]*", " ", s)
    s = _NUMBER.sub(" ", s)
    names = set()
    for m in _IDENT.finditer(s):
        word = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def check_self():
    """The scanner on expressions whose answer is known; [] when it is right."""
    cases = [
        ('sum by (le) (rate(foo_bucket{a="b",c=~"x|y"}[5m]))', {"foo_bucket"}),
        ("a_total / on (pod) group_left (sha256) b_info > 0.5", {"a_total", "b_info"}),
        ('increase(x{reason=~"by|rate(y)"}[1h] offset 5m) > 1e3', {"x"}),
        ("count by (namespace) (count by (namespace, sha256) (p{n=\"e\"})) > 1 and q == bool 0", {"p", "q"}),
        ("histogram_quantile(0.99, sum without (pod) (rate(h_bucket[5m])))", {"h_bucket"}),
        ("label_values(portcullis_build_info, namespace)", {"portcullis_build_info", "namespace"}),
    ]
    return [f"metric_names({e!r}) = {sorted(metric_names(e))}, expected {sorted(w)}"
            for e, w in cases if metric_names(e) != w]


def grafana_substitute(expr):
    for var, value in GRAFANA_VARS:
        expr = expr.replace(var, value)
    return expr


def prometheus_rule(objects):
    rules = [o for o in objects if o.get("kind") == "PrometheusRule"]
    return rules[0] if len(rules) == 1 else None


def dashboard(objects):
    """The dashboard JSON of the rendered dashboard ConfigMap, or None."""
    for o in objects:
        if o.get("kind") == "ConfigMap" and "portcullis.json" in (o.get("data") or {}):
            return json.loads(o["data"]["portcullis.json"])
    return None


def dashboard_queries(dash):
    """(where, PromQL) of every panel target and every query variable, Grafana variables substituted.
    label_values(METRIC_SELECTOR, label) contributes its selector."""
    out = []
    for p in dash.get("panels") or []:
        for t in p.get("targets") or []:
            out.append((f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}",
                        grafana_substitute(t.get("expr", ""))))
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\)\s*", q)
        out.append((f"variable {v['name']}", grafana_substitute(m.group(1)) if m else q))
    return out


def rule_exprs(rule):
    return [(f"{g['name']}/{r.get('alert') or r.get('record')}", r["expr"])
            for g in rule["spec"]["groups"] for r in g["rules"]]


def write_rules(rule, path):
    with open(path, "w") as fh:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, fh, sort_keys=False)


def write_query_rules(queries, path):
    """Each query as a recording rule, so that promtool parses it."""
    groups = [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": q}
                                              for i, (_, q) in enumerate(queries)]}]
    with open(path, "w") as fh:
        yaml.safe_dump({"groups": groups}, fh, sort_keys=False)


def exported(families):
    """Sample names a scrape can carry, from its families {name: type}."""
    names = set()
    for name, typ in families.items():
        names.add(name)
        if typ == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif typ == "summary":
            names |= {name + "_sum", name + "_count"}
    return names
