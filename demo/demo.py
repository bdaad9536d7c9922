#!/usr/bin/python3
"""portcullis offline demo: see the proxy decide, with no network at all.

    ./dev demo                                   (builds, then runs this)
    demo/demo.py --portcullis build-release/proxy/portcullis [--keep]

Inside a private network namespace with no route out (the integration
harness's: unshare -n -m, or unshare -r -n -m when not root), it starts a
local resolver (dnsmasq), a local origin server and a listener on the cloud
metadata address 169.254.169.254, runs portcullis on a small policy, and
makes three requests through it with curl:

  1. allowed:   https://allowed.example/ (a CONNECT tunnel, TLS checked)
  2. denied:    https://other.example/   (resolves, but no rule allows it)
  3. metadata:  http://169.254.169.254/latest/meta-data/ (a blocked address)

For each it prints what the client saw and the audit record portcullis
wrote. Every process it starts dies with it (the harness's watchdog), and
every wait has a deadline, so it ends within a minute even when something
is wrong; its exit status is 0 only when all three came out as described.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402

ORIGIN = "198.51.100.10"        # TEST-NET-2: a documentation address, on lo only
METADATA = "169.254.169.254"    # the cloud metadata endpoint, on lo only
RESOLVER = "127.0.0.53"

TIERS = {
    "demo": {
        "sources": ["127.0.0.0/8"],
        "allow": [{"host": "allowed.example", "name": "demo-origin"}],
    },
}


def show(title, lines):
    print("", flush=True)
    print("== %s" % title)
    for ln in lines:
        print("   %s" % ln)
    sys.stdout.flush()


def record_lines(rec):
    if rec is None:
        return ["(no audit record)"]
    g = harness.get
    summary = "audit: action=%s outcome=%s reason=%s tier=%s rule=%s destination=%s" % (
        g(rec, "event.action"), g(rec, "event.outcome"), g(rec, "event.reason"), g(rec, "rule.ruleset"),
        g(rec, "rule.name") or "-", g(rec, "destination.domain") or g(rec, "destination.ip"))
    # Then the record as it appears on the audit stream: one JSON object per line.
    return [summary, json.dumps(rec, separators=(",", ":"))]


def request(ctx, px, what, url, extra=()):
    """curl through the proxy; returns (curl result, the audit record of that connection)."""
    args = ["-x", "http://127.0.0.1:3128", "-D", "-", "-o", "/dev/null",
            "--cacert", ctx.certs()["ca"]] + list(extra) + [url]
    r = harness.curl(args)
    rec = px.audit.by_port(r["local_port"], timeout=10.0) if r["local_port"] else None
    status = r["connect"] if r["connect"] not in ("", "000") else r["code"]
    proxy_status = [ln.strip() for ln in r["body"].splitlines() if ln.lower().startswith("proxy-status:")]
    lines = ["$ curl -x http://127.0.0.1:3128 %s%s" % ("--cacert ca.pem " if url.startswith("https:") else "", url),
             "proxy answered: %s" % status]
    if r["code"] not in ("", "000") and r["connect"] not in ("", "000"):
        lines.append("origin answered through the tunnel: %s" % r["code"])
    lines += proxy_status
    if r["stderr"]:
        lines.append(r["stderr"].splitlines()[-1])
    lines += record_lines(rec)
    show(what, lines)
    return r, rec


def main():
    ctx = harness.start(__file__, v4=[ORIGIN, METADATA])
    with ctx:
        with ctx.case("demo: start resolver, origin, metadata listener and proxy"):
            ups = harness.Upstreams(ctx, [
                {"name": "origin-https", "host": ORIGIN, "port": 443, "kind": "tls"},
                {"name": "metadata", "host": METADATA, "port": 80, "kind": "tcp", "role": "forbidden"},
            ])
            # --group= keeps dnsmasq from changing its group, which a user namespace
            # (the demo run by a normal user) does not allow.
            harness.Dnsmasq(ctx, RESOLVER, [("allowed.example", ORIGIN), ("other.example", ORIGIN)],
                            extra=["--group="])
            px = harness.Proxy(ctx, "demo", TIERS)
            with open(px.policy_path) as f:
                policy = f.read().rstrip("\n").splitlines()
            show("setup: a private network namespace with no route out", [
                "resolver  dnsmasq on %s: allowed.example and other.example -> %s" % (RESOLVER, ORIGIN),
                "origin    an HTTPS server on %s:443 (certificate from a CA made for this run)" % ORIGIN,
                "metadata  a listener on %s:80 that must never be reached" % METADATA,
                "proxy     portcullis on 127.0.0.1:3128 with this policy:",
            ] + ["  " + ln for ln in policy])
            px.start()
            harness.expect(px.start_error is None, "proxy did not start: %s" % px.start_error)

        with ctx.case("demo: allowed.example is allowed and served"):
            r, rec = request(ctx, px, "1. allowed: a rule allows allowed.example on 443",
                             "https://allowed.example/")
            harness.expect(r["connect"] == "200" and r["code"] == "200",
                           "expected 200 from the proxy and the origin, got %s/%s: %s" %
                           (r["connect"], r["code"], r["stderr"]))
            harness.expect(rec is not None and harness.get(rec, "event.action") == "tunnel" and
                           harness.get(rec, "event.outcome") == "success" and
                           harness.get(rec, "rule.name") == "demo-origin",
                           "expected a tunnel record for rule demo-origin, got %s" % json.dumps(rec))

        with ctx.case("demo: other.example is refused with host_not_allowed"):
            r, rec = request(ctx, px, "2. denied: no rule allows other.example", "https://other.example/")
            harness.expect(r["connect"] == "403", "expected 403 from the proxy, got %r" % r["connect"])
            harness.expect(rec is not None and harness.get(rec, "event.reason") == "host_not_allowed",
                           "expected a host_not_allowed record, got %s" % json.dumps(rec))

        with ctx.case("demo: the metadata address is refused with blocked_address and never reached"):
            r, rec = request(ctx, px, "3. metadata: %s is in a built-in blocked range" % METADATA,
                             "http://%s/latest/meta-data/" % METADATA)
            harness.expect(r["code"] == "403", "expected 403 from the proxy, got %r" % r["code"])
            harness.expect(rec is not None and harness.get(rec, "event.reason") == "blocked_address" and
                           harness.get(rec, "destination.ip") in (METADATA, None),
                           "expected a blocked_address record, got %s" % json.dumps(rec))
            reached = ups.accepts("metadata")
            harness.expect(not reached, "the metadata listener was reached %d times" % len(reached))
            show("the metadata listener on %s:80" % METADATA,
                 ["connections it received: %d" % len(reached)])

        with ctx.case("demo: proxy stops cleanly"):
            rc = px.stop()
            harness.expect(rc == 0, "proxy exited %s on SIGTERM: %s" % (rc, px.stderr_text()[-400:]))
        print("", flush=True)
        print("# done: every process the demo started is stopped, its files removed", flush=True)


if __name__ == "__main__":
    main()
