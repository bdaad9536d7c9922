#!/usr/bin/env python3
"""Regenerate event_categorization.csv from ECS's ecs_flat.yml (generated/ecs/ecs_flat.yml
of the elastic/ecs repository at the version tag): one row per event.category allowed
value and each event.type ECS expects with it.  Usage: gen_categorization.py ecs_flat.yml [version]"""
import sys

import yaml


def main():
    flat = yaml.safe_load(open(sys.argv[1]))
    version = sys.argv[2] if len(sys.argv) > 2 else "9.4.0"
    print("ECS_Version,Category,Expected_Event_Type")
    for a in flat["event.category"]["allowed_values"]:
        for t in a.get("expected_event_types") or []:
            print("%s,%s,%s" % (version, a["name"], t))


if __name__ == "__main__":
    main()
