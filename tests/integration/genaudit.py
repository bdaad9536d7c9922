#!/usr/bin/python3
"""Generate audit logs as the daemon writes them, for `portcullis learn` tests.

Two tiers: "build" (audit mode, pods of namespace ci) and "deploy" (enforce,
static sources).  Deterministic for a seed.  Destinations appear early and
then repeat, so the tail of the log brings nothing new (a stable baseline).

    genaudit.py OUT.jsonl[.gz] N [SEED]

The destinations and what learn must make of them are in DESTS below.
"""
import gzip
import json
import random
import sys
import time

START = 1796515200  # 2026-12-06T00:00:00Z

# (tier, host, port, kind, weight): kind is what the daemon does with it under the
# test policy: allowed, would_deny (audit tier, not in the allowlist), blocked
# (resolved_to_blocked_range), refused (enforce, host_not_allowed).
DESTS = [
    ("build", "github.com", 443, "allowed", 40),
    ("build", "pypi.org", 443, "would_deny", 30),
    ("build", "files.pythonhosted.org", 443, "would_deny", 30),
    ("build", "registry.npmjs.org", 443, "would_deny", 20),
    ("build", "raw.githubusercontent.com", 443, "would_deny", 5),
    ("build", "objects.githubusercontent.com", 443, "would_deny", 5),
    ("build", "release-assets.githubusercontent.com", 443, "would_deny", 5),
    ("build", "git.example.com", 22, "would_deny", 3),        # not a TLS port: never
    ("build", "203.0.113.9", 443, "would_deny", 2),           # an IP literal: never
    ("build", "metadata.example.com", 443, "blocked", 2),     # blocked range: never
    ("build", "deb.debian.org", 80, "would_deny", 4),         # plain HTTP port: never
    ("deploy", "registry.example.com", 443, "allowed", 20),
    ("deploy", "evil.example.org", 443, "refused", 1),        # enforce refusals: not learned
] + [("build", "a%d.cdn.example.net" % i, 443, "would_deny", 1) for i in range(8)] \
  + [("build", "user%d.github.io" % i, 443, "would_deny", 1) for i in range(6)]


def record(i, ts, tier, host, port, kind, rng):
    if tier == "build":
        pod = "runner-%d" % (i // 400)           # one pod runs 400 requests
        src = "10.42.%d.%d" % ((i // 400) % 200, (i // 400) % 250 + 1)
        orch = {"namespace": "ci", "resource": {"name": pod, "type": "pod"}}
    else:
        src = "10.43.0.%d" % (i % 5 + 1)
        orch = None
    ev = {"kind": "event", "category": ["network"], "action": "tunnel"}
    rec = {"@timestamp": ts, "ecs": {"version": "9.4.0"}, "event": ev,
           "source": {"ip": src, "port": 20000 + i % 40000},
           "destination": {"domain": host, "port": port},
           "network": {"transport": "tcp", "direction": "outbound"},
           "rule": {"ruleset": tier},
           "observer": {"hostname": "gw", "product": "portcullis"}}
    if orch:
        rec["orchestrator"] = orch
    if kind in ("allowed", "would_deny"):
        ev.update(type=["connection", "allowed", "end"], outcome="success", reason="client_closed")
        rec["destination"]["ip"] = "198.51.100.%d" % (hash(host) % 200 + 1)
        rec["destination"]["bytes"] = rng.randrange(100, 100000)
        rec["source"]["bytes"] = rng.randrange(100, 10000)
        if kind == "would_deny":
            rec["labels"] = {"would_deny": "host_not_allowed"}
        else:
            rec["rule"]["name"] = host
    else:
        ev.update(type=["connection", "denied"], outcome="failure", action="connect",
                  reason="resolved_to_blocked_range" if kind == "blocked" else "host_not_allowed")
        rec["http"] = {"response": {"status_code": 403}}
    return json.dumps(rec, separators=(",", ":"))


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    weights = [d[4] for d in DESTS]
    f = gzip.open(out, "wt", compresslevel=1) if out.endswith(".gz") else open(out, "w")
    with f:
        for i in range(n):
            # Every destination once in the first records, then drawn by weight.
            d = DESTS[i] if i < len(DESTS) else rng.choices(DESTS, weights)[0]
            s = START + i // 20                          # 20 records a second
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + ".%06dZ" % ((i % 20) * 50000)
            f.write(record(i, ts, d[0], d[1], d[2], d[3], rng) + "\n")


if __name__ == "__main__":
    main()
