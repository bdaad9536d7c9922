#!/usr/bin/env python3
"""Compile the OCSF classes portcullis writes, from a checkout of ocsf/ocsf-schema at the
version's tag, into one self-contained JSON file the tests validate records against.

    gen_subset.py SCHEMA_DIR > ocsf-1.1.0-subset.json

For each class (Network Activity 4001, HTTP Activity 4002): every attribute after resolving
"extends" (base_event -> network -> the class) and "$include" files, with its type, whether
it is an array, its requirement and its enum.  Attributes that come from a profile are
optional (they apply only with the profile listed in metadata.profiles).  Every object type
those attributes reach is compiled the same way (its own extends and includes), and the
dictionary's scalar types with their base type.  class_uid, category_uid and type_uid get the
values the schema server computes for the class (base_event only lists 0 for them)."""
import json
import os
import sys

CLASSES = {"4001": "events/network/network_activity.json", "4002": "events/network/http.json"}


def load(root, rel):
    with open(os.path.join(root, rel)) as f:
        return json.load(f)


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v


def attrs_of(root, doc, kind):
    """Attributes of an event class or object document, includes resolved, parent first."""
    out = {}
    parent = doc.get("extends")
    if parent:
        pdoc = load(root, ("events/%s.json" % parent) if kind == "event" and parent == "base_event"
                    else find(root, parent, kind))
        out = attrs_of(root, pdoc, kind)
    a = dict(doc.get("attributes", {}))
    for inc in a.pop("$include", []):
        idoc = load(root, inc)
        ia = json.loads(json.dumps(idoc.get("attributes", {})))
        if inc.startswith("profiles/"):
            for v in ia.values():
                v["requirement"] = "optional"
        for k, v in ia.items():
            merge(out.setdefault(k, {}), v)
    for k, v in a.items():
        merge(out.setdefault(k, {}), v)
    return out


def find(root, name, kind):
    if kind == "object":
        return "objects/%s.json" % name
    for dirpath, _dirs, files in os.walk(os.path.join(root, "events")):
        for f in files:
            if f.endswith(".json"):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                if load(root, rel).get("name") == name:
                    return rel
    raise SystemExit("no event class named %s" % name)


def compile_attrs(attrs, dictionary):
    out = {}
    for k, v in sorted(attrs.items()):
        d = dict(dictionary.get(k, {}))
        merge(d, v)
        e = {"type": d.get("type"), "requirement": d.get("requirement", "optional")}
        if d.get("is_array"):
            e["is_array"] = True
        if "enum" in d:
            e["enum"] = sorted(d["enum"].keys(), key=lambda x: (not x.lstrip("-").isdigit(), int(x) if x.lstrip("-").isdigit() else 0, x))
        out[k] = e
    return out


def main():
    root = sys.argv[1]
    dictionary = load(root, "dictionary.json")
    dattrs = dictionary["attributes"]
    version = load(root, "version.json")["version"]
    classes, objects, todo = {}, {}, []
    for uid, rel in CLASSES.items():
        doc = load(root, rel)
        ca = compile_attrs(attrs_of(root, doc, "event"), dattrs)
        # As the schema server compiles a class: its own class_uid (category uid * 1000 +
        # class uid), its category_uid, and type_uid = class_uid * 100 + activity_id.
        cat = load(root, "categories.json")["attributes"][doc["category"]]["uid"]
        assert str(cat * 1000 + doc["uid"]) == uid, (uid, cat, doc["uid"])
        ca["class_uid"]["enum"] = [uid]
        ca["category_uid"]["enum"] = [str(cat)]
        ca["type_uid"]["enum"] = [str(int(uid) * 100 + int(a)) for a in ca["activity_id"]["enum"]]
        classes[uid] = {"name": doc["name"], "caption": doc["caption"], "attributes": ca}
        todo += [a["type"] for a in ca.values()]
    scalar = set(dictionary["types"]["attributes"]) | {"object"}
    while todo:
        t = todo.pop()
        if t in scalar or t in objects or t is None:
            continue
        odoc = load(root, "objects/%s.json" % t)
        oa = compile_attrs(attrs_of(root, odoc, "object"), dattrs)
        objects[t] = {"attributes": oa}
        todo += [a["type"] for a in oa.values()]
    types = {k: v.get("type", k) for k, v in dictionary["types"]["attributes"].items()}
    json.dump({"ocsf_version": version, "generated_by": "tests/integration/ocsf/gen_subset.py",
               "classes": classes, "objects": objects, "types": types},
              sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
