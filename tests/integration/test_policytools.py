#!/usr/bin/python3
"""Policy tools: `portcullis explain` agrees with the daemon; --check warnings.

explain: for every identity x destination of a table, the real daemon gets the
request (raw CONNECT or absolute-form GET from that source) and
`portcullis explain --resolve --json` is asked the same question; the decision,
the reason code and the audit-mode would-deny must be the same.  Tier a =
127.0.0.2 (enforce), tier b = 127.0.0.3 (audit), 127.0.0.4 belongs to no tier.
dnsmasq is the pinned resolver of both.

--check: warnings are printed with FILE:LINE:COL and a code, exit 0; --strict
exits 1; the daemon logs the same warnings at start and at a reload.
"""
import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
META = "169.254.169.254"

ctx = harness.start(__file__, v4=[GOOD, META], v6=["fd00:ec2::254"])
with ctx:
    ups = harness.Upstreams(ctx, [
        {"name": "tls", "host": GOOD, "port": 443, "kind": "tls"},
        {"name": "raw8080", "host": GOOD, "port": 8080},
        {"name": "http80", "host": GOOD, "port": 80, "kind": "http-origin"},
        {"name": "meta443", "host": META, "port": 443},
        {"name": "meta80", "host": META, "port": 80},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", GOOD), ("x.wild.example", GOOD), ("other.example", GOOD),
        ("plain.example", GOOD), ("meta.example", META),
        ("mixed.example", GOOD + ",fd00:ec2::254"),
    ])
    tiers = {
        "a": {"sources": ["127.0.0.2/32"],
              "allow": [{"host": "allowed.example"},
                        {"host": "*.wild.example", "ports": [443, 8080]},
                        {"host": "other.example", "ports": [8080]},
                        {"host": "meta.example"},
                        {"host": "mixed.example"},
                        {"host": "plain.example", "ports": [80, 443]},
                        {"host": GOOD, "ports": [8080]}],
              "http": {"methods": ["GET", "HEAD"]}},
        "b": {"mode": "audit", "sources": ["127.0.0.3/32"],
              "allow": [{"host": "other.example", "ports": [8080]}]},
    }
    px = harness.Proxy(ctx, "px", tiers).start()

    def explain(*args):
        p = subprocess.run([ctx.binary, "explain", "-c", px.policy_path] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30,
                           env=harness.daemon_env())
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def daemon(src, method, target):
        """(decision, reason, would_deny) of the daemon, from the reply and its audit record."""
        if method == "CONNECT":
            reply = harness.connect(target, src=src)
        else:
            host = target.split("//", 1)[1].split("/", 1)[0]
            head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (method, target, host)
            reply = harness.send_raw(head.encode(), src=src)
        refused = reply.reason is not None and reply.proxy_status["raw"].startswith("portcullis")
        reply.close()
        rec = px.audit.wait_one(lambda r: get(r, "source.port") == reply.src_port, timeout=10)
        expect(rec is not None, "no audit record for source port %s (%s)" % (reply.src_port,
                                                                          reply.describe()))
        if refused:
            harness.check_denied_record(rec, reply.reason, reply.status)
            return "denied", reply.reason, None
        # Let through (an audit tier may forward plain HTTP to a TLS upstream that never
        # answers it): the record says so.
        # (a tunnel's record is typed allowed, a completed plain-HTTP exchange access)
        types = harness.as_list(get(rec, "event.type"))
        expect(("allowed" in types or "access" in types) and "denied" not in types and
               get(rec, "event.outcome") == "success",
               "no refusal, but the record is %s" % json.dumps(rec)[:300])
        return "allowed", "allowed", get(rec, "labels.would_deny")

    requests = [
        ("CONNECT", "allowed.example:443"),
        ("CONNECT", "allowed.example:8080"),        # port_not_allowed
        ("CONNECT", "x.wild.example:8080"),
        ("CONNECT", "wild.example:443"),            # the apex of a wildcard
        ("CONNECT", "other.example:8080"),
        ("CONNECT", "meta.example:443"),            # resolved_to_blocked
        ("CONNECT", "mixed.example:443"),           # one good, one blocked answer
        ("CONNECT", "nx.wild.example:443"),         # dns_nxdomain
        ("CONNECT", "169.254.169.254:443"),         # blocked_address
        ("CONNECT", "0xa9fea9fe:80"),               # blocked_address, hex notation
        ("CONNECT", "%s:8080" % GOOD),              # an IP-literal rule
        ("CONNECT", "bad..host:443"),               # invalid_host
        ("GET", "http://plain.example/status/204"),
        ("POST", "http://plain.example/status/204"),  # method_not_allowed in tier a
        ("GET", "http://plain.example:443/"),       # tls_required
        ("GET", "http://allowed.example/status/204"),  # port_not_allowed (80)
        ("GET", "https://allowed.example/"),        # https_target
        ("GE@T", "http://plain.example/status/204"),  # not a method token: bad_request
    ]
    identities = [("127.0.0.2", "a"), ("127.0.0.3", "b"), ("127.0.0.4", None)]
    seen = set()
    for src, tier in identities:
        for method, target in requests:
            with ctx.case("explain = daemon: %s (tier %s) %s %s" % (src, tier, method, target)):
                want = daemon(src, method, target)
                rc, out, err = explain("--source", src, "--resolve", "--json", method, target)
                expect(rc in (0, 1), "explain exit %d: %s" % (rc, err[:300]))
                j = json.loads(out)
                got = (j["decision"], j["reason"], j["would_deny"])
                expect(got == want, "explain says %s, the daemon %s" % (got, want))
                expect(rc == (0 if want[0] == "allowed" else 1), "exit %d for %s" % (rc, want[0]))
                expect(j["identity"]["tier"] == tier, "tier %r, want %r" % (j["identity"]["tier"], tier))
                seen.add(want[1] if want[2] is None else "would:" + want[2])
    with ctx.case("the table covers allowed, audit would-deny and every kind of refusal"):
        need = {"allowed", "port_not_allowed", "host_not_allowed", "resolved_to_blocked_range",
                "dns_nxdomain", "blocked_address", "invalid_host", "method_not_allowed",
                "tls_required", "https_target", "unknown_source", "would:host_not_allowed",
                "bad_request"}
        expect(need <= seen, "not covered: %s (seen %s)" % (sorted(need - seen), sorted(seen)))
    with ctx.case("no forbidden listener was reached"):
        expect(not ups.accepts("meta443") and not ups.accepts("meta80"),
               "metadata listener reached: %s" % (ups.accepts("meta443") + ups.accepts("meta80")))

    with ctx.case("explain text: the deciding rule with file:line, the TLS checks, exit 0"):
        rc, out, err = explain("--source", "127.0.0.2", "CONNECT", "allowed.example:443")
        expect(rc == 0, "exit %d %s" % (rc, err))
        lines = open(px.policy_path).read().splitlines()
        n = next(i + 1 for i, ln in enumerate(lines) if "allowed.example" in ln)
        expect("rule:      allowed.example (%s:%d)" % (px.policy_path, n) in out, out)
        expect("SNI required" in out and "decision:  allowed" in out, out)
    with ctx.case("explain --resolve names the range that blocks an answer"):
        rc, out, err = explain("--source", "127.0.0.2", "--resolve", "CONNECT", "mixed.example:443")
        expect(rc == 1, "exit %d %s" % (rc, err))
        expect("198.51.100.10 ok" in out and "fd00:ec2::254 blocked: in fc00::/7 (built-in)" in out,
               out)
    with ctx.case("explain: usage errors exit 2"):
        for args in (["CONNECT", "a.example:443"],                       # no identity
                     ["--source", "127.0.0.2", "CONNECT"],                # no target
                     ["--source", "not-an-ip", "CONNECT", "a.example:443"],
                     ["--pod", "ns/p", "CONNECT", "a.example:443"]):     # no kubernetes identity
            rc, out, err = explain(*args)
            expect(rc == 2, "%s: exit %d" % (args, rc))

    with ctx.case("explain --pod: tier by label (tier_label) or by namespace (namespaces)"):
        kpol = ctx.path("kube-policy.yaml")
        for ident, args, want in (
                ({"tier_label": "portcullis.io/tier"},
                 ["--pod", "ci/runner-1", "--label", "app=x", "--label", "portcullis.io/tier=a"], "a"),
                ({"tier_label": "portcullis.io/tier"}, ["--pod", "ci/runner-1"], None),
                ({"namespaces": {"ci": "b"}}, ["--pod", "ci/runner-1"], "b"),
                ({"namespaces": {"ci": "b"}}, ["--pod", "other/runner-1"], None)):
            pol = harness.base_policy(px.audit_path, tiers)
            pol["identity"]["kubernetes"] = dict(ident, api_server="https://127.0.0.1:6443")
            with open(kpol, "w") as f:
                f.write(harness.to_yaml(pol) + "\n")
            p = subprocess.run([ctx.binary, "explain", "-c", kpol, "--json"] + args +
                               ["CONNECT", "allowed.example:443"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30, env=harness.daemon_env())
            j = json.loads(p.stdout.decode() or "{}")
            expect(j.get("identity", {}).get("tier") == want, "%s %s: %s %s" % (
                ident, args, p.stdout.decode()[:300], p.stderr.decode()[:300]))
            expect(p.returncode == (1 if want is None else 0), "%s: exit %d" % (args, p.returncode))

    # ------------------------------------------------------------ --check warnings
    def check(path, *more):
        p = subprocess.run([ctx.binary, "--check", path] + list(more), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30, env=harness.daemon_env())
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    with ctx.case("--check: a warning with FILE:LINE:COL and its code, exit 0; --strict exit 1"):
        rc, out, err = check(px.policy_path)
        expect(rc == 0, "exit %d: %s" % (rc, err))
        lines = open(px.policy_path).read().splitlines()
        n = next(i + 1 for i, ln in enumerate(lines) if "mode:" in ln and "audit" in ln)
        col = lines[n - 1].index("mode:") + 7
        expect("%s:%d:%d: warning[tier_audit_mode]: tiers.b.mode" % (px.policy_path, n, col) in out,
               "stdout %r" % out)
        rc, out, err = check(px.policy_path, "--strict")
        expect(rc == 1 and "warning" in err, "--strict exit %d, stderr %r" % (rc, err))
    with ctx.case("the daemon logged the same warning at start"):
        logged = [json.loads(ln) for ln in px.stderr_text().splitlines() if ln.startswith("{")]
        expect(any(r.get("log.level") == "warn" and "warning[tier_audit_mode]" in r.get("message", "")
                   for r in logged), "no warn line in %r" % px.stderr_text()[-600:])
    with ctx.case("a reload logs the new policy's warnings"):
        tiers["a"]["allow"].append({"host": "deep.x.wild.example"})   # under *.wild.example
        tmp = px.policy_path + ".new"
        with open(tmp, "w") as f:
            f.write(harness.to_yaml(harness.base_policy(px.audit_path, tiers)) + "\n")
        os.rename(tmp, px.policy_path)
        ok = harness.wait_until(lambda: "warning[rule_shadowed]" in px.stderr_text(), 15)
        expect(ok, "no rule_shadowed warning after the reload: %r" % px.stderr_text()[-600:])
        rc, out, err = check(px.policy_path)
        expect(rc == 0 and "warning[rule_shadowed]" in out, "exit %d %r" % (rc, out))

    ctx.final_checks([px.audit])
