#!/usr/bin/python3
"""Validate OCSF records against the vendored class definitions (ocsf/ocsf-1.1.0-subset.json,
compiled from the OCSF schema by ocsf/gen_subset.py).

check(record, schema) returns a list of problems: a class portcullis does not write, a
required attribute missing (in the event and in every object), an attribute the class or
object does not define, a value of the wrong JSON type for its OCSF type, an enum value
the schema does not list, type_uid != class_uid * 100 + activity_id, the category, and
metadata.version.  Usage as a program: ocsfcheck.py FILE... (one JSON record per line), or
ocsfcheck.py --run PROGRAM ARG... to check what a program prints (tests/unit/audit_samples)."""
import ipaddress
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SUBSET = os.path.join(HERE, "ocsf", "ocsf-1.1.0-subset.json")
INT_TYPES = {"integer_t", "long_t", "timestamp_t", "port_t"}
STR_TYPES = {"string_t", "hostname_t", "ip_t", "mac_t", "url_t", "email_t", "uuid_t", "subnet_t",
             "file_name_t", "file_hash_t", "process_name_t", "resource_uid_t", "username_t",
             "datetime_t", "bytestring_t"}


def load(path=SUBSET):
    with open(path) as f:
        return json.load(f)


def _value(schema, path, spec, v, probs):
    t = spec["type"]
    base = schema["types"].get(t, t)
    if t in schema["objects"]:
        if not isinstance(v, dict):
            probs.append("%s: object %s holds %r" % (path, t, v))
            return
        _object(schema, path, schema["objects"][t]["attributes"], v, probs)
        return
    if t == "object" or t == "json_t":
        return
    if t in INT_TYPES or base in INT_TYPES:
        if not isinstance(v, int) or isinstance(v, bool):
            probs.append("%s: %s holds %r" % (path, t, v))
            return
        if t == "port_t" and not 0 <= v <= 65535:
            probs.append("%s: port %d" % (path, v))
    elif t == "boolean_t":
        if not isinstance(v, bool):
            probs.append("%s: boolean holds %r" % (path, v))
            return
    elif t == "float_t":
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            probs.append("%s: float holds %r" % (path, v))
            return
    elif t in STR_TYPES or base == "string_t":
        if not isinstance(v, str):
            probs.append("%s: %s holds %r" % (path, t, v))
            return
        if t == "ip_t":
            try:
                ipaddress.ip_address(v)
            except ValueError:
                probs.append("%s: %r is not an IP address" % (path, v))
    else:
        probs.append("%s: type %s not handled by the checker" % (path, t))
        return
    if "enum" in spec and str(v) not in spec["enum"]:
        probs.append("%s: %r is not one of %s" % (path, v, spec["enum"]))


def _object(schema, path, attrs, obj, probs):
    for k, spec in attrs.items():
        if spec.get("requirement") == "required" and k not in obj:
            probs.append("%s%s: required attribute missing" % (path + "." if path else "", k))
    for k, v in obj.items():
        p = (path + "." if path else "") + k
        spec = attrs.get(k)
        if spec is None:
            probs.append("%s: not an attribute of %s" % (p, path or "the class"))
            continue
        if spec.get("is_array"):
            if not isinstance(v, list) or not v:
                probs.append("%s: expected a non-empty array, got %r" % (p, v))
                continue
            for i, x in enumerate(v):
                _value(schema, "%s[%d]" % (p, i), spec, x, probs)
        else:
            _value(schema, p, spec, v, probs)


def check(rec, schema):
    if not isinstance(rec, dict):
        return ["not a JSON object"]
    cls = schema["classes"].get(str(rec.get("class_uid")))
    if cls is None:
        return ["class_uid %r is not a class portcullis writes" % rec.get("class_uid")]
    probs = []
    _object(schema, "", cls["attributes"], rec, probs)
    if rec.get("category_uid") != 4:
        probs.append("category_uid %r, want 4 (Network Activity)" % rec.get("category_uid"))
    if isinstance(rec.get("activity_id"), int) and rec.get("type_uid") != rec["class_uid"] * 100 + rec["activity_id"]:
        probs.append("type_uid %r != class_uid * 100 + activity_id" % rec.get("type_uid"))
    if (rec.get("metadata") or {}).get("version") != schema["ocsf_version"]:
        probs.append("metadata.version %r, want %s" % ((rec.get("metadata") or {}).get("version"),
                                                        schema["ocsf_version"]))
    return probs


def main():
    schema = load()
    bad = n = 0
    if sys.argv[1:2] == ["--run"]:
        out = subprocess.run(sys.argv[2:], check=True, capture_output=True, text=True).stdout
        sources = [("%s" % sys.argv[2], out.splitlines())]
    else:
        sources = [(p, open(p).read().splitlines()) for p in sys.argv[1:]]
    for path, lines in sources:
        for i, ln in enumerate(lines, 1):
            n += 1
            for p in check(json.loads(ln), schema):
                print("%s:%d: %s" % (path, i, p))
                bad += 1
    if n == 0:
        print("no record to check")
        return 1
    print("%d records, %d problems" % (n, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
