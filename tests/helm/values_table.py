#!/usr/bin/python3
"""The values table of helm/portcullis/README.md, generated from the chart's
values.yaml (keys, defaults, the comment above each key) and
values.schema.json (types, allowed values, ranges).

    values_table.py [--chart DIR] --check   # exit 1 when the README's table is not what this prints
    values_table.py [--chart DIR] --write   # rewrite the table in the README
    values_table.py [--chart DIR]           # print the table

The table sits between the README's "<!-- values-table:start -->" and
"<!-- values-table:end -->" lines. A key gets a row of its own when its value is
a scalar, a list, a mapping the schema gives no fixed keys (labels, tiers,
...) or one of the schema's types (definitions: resources, selectors); other
mappings with fixed keys are expanded. Every row needs a comment or a
schema description: a key without one is an error, so nothing undocumented
ships.
"""
import argparse
import json
import os
import re
import sys

import yaml

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"


def key_comments(text):
    """{dotted.key: comment} from the comment lines directly above each key line
    (rules of dashes and indented examples, "#  key: value", left out)."""
    out = {}
    stack = []          # (indent, key)
    pending = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            body = stripped[1:].strip()
            if re.fullmatch(r"-+", body) or stripped.startswith("#  "):
                continue  # a banner rule, or an indented example (YAML, a command)
            pending.append(body)
            continue
        m = re.match(r"^( *)([A-Za-z0-9_]+):(\s|$)", line)
        if not m:
            pending = []
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        path = ".".join(k for _, k in stack)
        if pending:
            out[path] = " ".join(pending)
        pending = []
    return out


class Schema:
    def __init__(self, schema):
        self.root = schema

    def resolve(self, s):
        """A schema with its $ref (and a one-element allOf, a described $ref) followed."""
        s = s or {}
        while True:
            if "$ref" in s:
                s = self.root["definitions"][s["$ref"].split("/")[-1]]
            elif len(s.get("allOf") or []) == 1:
                merged = dict(self.resolve(s["allOf"][0]))
                merged.update({k: v for k, v in s.items() if k != "allOf"})
                s = merged
            else:
                return s


def schema_facts(schema, s):
    s = schema.resolve(s)
    facts = []
    if "enum" in s:
        facts.append("one of " + ", ".join("`%s`" % json.dumps(v) for v in s["enum"]))
    lo, hi = s.get("minimum", s.get("exclusiveMinimum")), s.get("maximum")
    if lo is not None and hi is not None:
        facts.append("%s to %s" % (lo, hi))
    elif lo is not None:
        facts.append("at least %s" % lo if "minimum" in s else "above %s" % lo)
    elif hi is not None:
        facts.append("at most %s" % hi)
    if s.get("maxItems") is not None:
        facts.append("at most %d entries" % s["maxItems"])
    if s.get("description"):
        facts.append(s["description"])
    return facts


def type_of(schema, s, value):
    s = schema.resolve(s)
    t = s.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t:
        return t
    if "enum" in s:
        return "string" if all(isinstance(v, str) for v in s["enum"]) else "enum"
    if "oneOf" in s or "anyOf" in s:
        kinds = {schema.resolve(x).get("type") for x in s.get("oneOf") or s.get("anyOf")}
        kinds.discard(None)
        if kinds:
            return " or ".join(sorted(kinds))
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), "any")


def cell(text):
    return text.replace("|", "\\|").replace("\n", " ")


def rows(values, schema, comments):
    out, missing = [], []

    def walk(node, s, path):
        for key, value in node.items():
            p = f"{path}.{key}" if path else key
            raw = (schema.resolve(s).get("properties") or {}).get(key) or {}
            cs = schema.resolve(raw)
            # Sections (inline schemas with fixed keys) are expanded; types ($ref: resources,
            # selectors, durations) and free-form mappings stay one row.
            fixed = isinstance(value, dict) and value and cs.get("properties") and "$ref" not in raw \
                and "allOf" not in raw
            if fixed:
                walk(value, cs, p)
                continue
            desc = comments.get(p, "")
            facts = schema_facts(schema, cs)
            if not desc and not facts:
                missing.append(p)
            text = " ".join(x for x in [desc] + [f[0].upper() + f[1:].rstrip(".") + "." for f in facts] if x).strip()
            default = json.dumps(value, separators=(", ", ": "))
            out.append(f"| `{p}` | {type_of(schema, cs, value)} | `{cell(default)}` | {cell(text)} |")
    walk(values, schema.root, "")
    return out, missing


def table(chart):
    with open(os.path.join(chart, "values.yaml")) as fh:
        text = fh.read()
    with open(os.path.join(chart, "values.schema.json")) as fh:
        schema = Schema(json.load(fh))
    body, missing = rows(yaml.safe_load(text), schema, key_comments(text))
    head = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    return "\n".join(head + body) + "\n", missing


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chart", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "..", "..", "helm", "portcullis"))
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true")
    g.add_argument("--write", action="store_true")
    args = ap.parse_args()
    t, missing = table(args.chart)
    if missing:
        print("keys without a comment in values.yaml or a description in values.schema.json: "
              + ", ".join(missing), file=sys.stderr)
        return 1
    if not (args.check or args.write):
        sys.stdout.write(t)
        return 0
    readme = os.path.join(args.chart, "README.md")
    with open(readme) as fh:
        doc = fh.read()
    m = re.search(re.escape(START) + r"\n(.*?)" + re.escape(END), doc, re.S)
    if not m:
        print(f"{readme}: no {START} ... {END} block", file=sys.stderr)
        return 1
    if args.check:
        if m.group(1) != t:
            print(f"{readme}: the values table differs from values.yaml and values.schema.json; "
                  "run tests/helm/values_table.py --write", file=sys.stderr)
            return 1
        return 0
    with open(readme, "w") as fh:
        fh.write(doc[:m.start(1)] + t + doc[m.end(1):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
