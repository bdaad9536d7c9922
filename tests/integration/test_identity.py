#!/usr/bin/python3
"""Scenario 4: identity by source address, tier allowlists, host and port matching.

Tier a = 127.0.0.2, tier b = 127.0.0.3, 127.0.0.4 belongs to no tier.  Proxy
"deny" refuses unknown sources; proxy "fallback" (unknown_source: b) maps them
to tier b.  Real curl is the client for the identity cases.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"

ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "tls", "host": GOOD, "port": 443, "kind": "tls"},
        {"name": "raw80", "host": GOOD, "port": 80},
        {"name": "raw8443", "host": GOOD, "port": 8443},
    ])
    names = ["allowed.example", "other.example", "x.wild.example", "deep.x.wild.example", "wild.example",
             "evilwild.example", "allowed.example.evil.test", "notallowed.example"]
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [(n, GOOD) for n in names])
    tiers = {
        "a": {"sources": ["127.0.0.2/32"],
              "allow": [{"host": "allowed.example", "ports": [443]}, {"host": "*.wild.example"}]},
        "b": {"sources": ["127.0.0.3/32"], "allow": [{"host": "other.example"}]},
    }
    deny = harness.Proxy(ctx, "deny", tiers).start()
    fallback = harness.Proxy(ctx, "fallback", tiers, proxy_port=3129, admin_port=9091,
                             identity={"unknown_source": "b"}).start()

    def via_curl(name, proxy, src, host, ok, reason=None, ruleset=None):
        with ctx.case(name):
            n0 = len(ups.accepts("tls"))
            res = harness.curl(["-x", "http://127.0.0.1:%d" % proxy.port, "--interface", src,
                                "--cacert", certs["ca"], "https://%s/" % host])
            rec = proxy.audit.by_port(res["local_port"], timeout=5) if res["local_port"] else None
            if ok:
                expect(res["rc"] == 0 and res["connect"] == "200" and res["body"].startswith("upstream tls "),
                       "curl exit %s, CONNECT %s, body %r, stderr %r" %
                       (res["rc"], res["connect"], res["body"][:80], res["stderr"][:200]))
                expect(len(ups.accepts("tls")) == n0 + 1, "upstream not reached")
                expect(rec is not None, "no audit record for source port %s" % res["local_port"])
                harness.check_tunnel_record(rec)
            else:
                status = harness.REASON_STATUS[reason]
                expect(res["rc"] != 0 and res["connect"] == str(status),
                       "curl exit %s, CONNECT answered %r, want %d %s (stderr %r)" %
                       (res["rc"], res["connect"], status, reason, res["stderr"][:200]))
                expect(len(ups.accepts("tls")) == n0, "upstream reached despite the refusal")
                expect(rec is not None, "no audit record for source port %s" % res["local_port"])
                harness.check_denied_record(rec, reason, status)
            if ruleset is not None:
                expect(get(rec, "rule.ruleset") == ruleset, "audit rule.ruleset %r, want %r" %
                       (get(rec, "rule.ruleset"), ruleset))
            expect(get(rec, "source.ip") == src, "audit source.ip %r, want %s" % (get(rec, "source.ip"), src))

    via_curl("tier a (127.0.0.2) reaches allowed.example", deny, "127.0.0.2", "allowed.example", True,
             ruleset="a")
    via_curl("tier a (127.0.0.2) is refused other.example -> 403 host_not_allowed", deny, "127.0.0.2",
             "other.example", False, "host_not_allowed", ruleset="a")
    via_curl("tier b (127.0.0.3) reaches other.example", deny, "127.0.0.3", "other.example", True,
             ruleset="b")
    via_curl("tier b (127.0.0.3) is refused allowed.example -> 403 host_not_allowed", deny, "127.0.0.3",
             "allowed.example", False, "host_not_allowed", ruleset="b")
    via_curl("unknown source 127.0.0.4 -> 403 unknown_source (allowed.example)", deny, "127.0.0.4",
             "allowed.example", False, "unknown_source")
    via_curl("unknown source 127.0.0.4 -> 403 unknown_source (other.example)", deny, "127.0.0.4",
             "other.example", False, "unknown_source")
    via_curl("unknown_source: b -> 127.0.0.4 reaches other.example as tier b", fallback, "127.0.0.4",
             "other.example", True, ruleset="b")
    via_curl("unknown_source: b -> 127.0.0.4 is refused allowed.example as tier b", fallback, "127.0.0.4",
             "allowed.example", False, "host_not_allowed", ruleset="b")
    via_curl("unknown_source: b does not change known sources (127.0.0.2 is still tier a)", fallback,
             "127.0.0.2", "allowed.example", True, ruleset="a")
    via_curl("unknown_source: b does not change known sources (127.0.0.3 refused allowed.example)",
             fallback, "127.0.0.3", "allowed.example", False, "host_not_allowed", ruleset="b")

    with ctx.case("unknown-source audit record carries no tier"):
        recs = deny.audit.find(lambda r: get(r, "event.reason") == "unknown_source")
        expect(len(recs) == 2, "%d unknown_source records, want 2" % len(recs))
        for r in recs:
            expect(get(r, "rule.ruleset") in (None, ""), "unknown_source record names ruleset %r" %
                   get(r, "rule.ruleset"))

    MATCH = [  # name, proxy, src, target, expected reason or None for served, listener
        ("rule ports [443]: allowed.example:8443 -> 403 port_not_allowed", "127.0.0.2",
         "allowed.example:8443", "port_not_allowed", None),
        ("rule ports [443]: allowed.example:80 -> 403 port_not_allowed", "127.0.0.2",
         "allowed.example:80", "port_not_allowed", None),
        ("default port list is [443]: other.example:80 -> 403 port_not_allowed", "127.0.0.3",
         "other.example:80", "port_not_allowed", None),
        ("*.wild.example matches x.wild.example", "127.0.0.2", "x.wild.example:443", None, "tls"),
        ("*.wild.example matches deep.x.wild.example", "127.0.0.2", "deep.x.wild.example:443", None, "tls"),
        ("*.wild.example does not match the apex wild.example", "127.0.0.2", "wild.example:443",
         "host_not_allowed", None),
        ("*.wild.example does not match evilwild.example", "127.0.0.2", "evilwild.example:443",
         "host_not_allowed", None),
        ("allowed.example rule does not match allowed.example.evil.test", "127.0.0.2",
         "allowed.example.evil.test:443", "host_not_allowed", None),
        ("host match is case-insensitive and ignores one trailing dot (ALLOWED.Example.)", "127.0.0.2",
         "ALLOWED.Example.:443", None, "tls"),
        ("unlisted name notallowed.example -> 403 host_not_allowed", "127.0.0.2",
         "notallowed.example:443", "host_not_allowed", None),
        ("IP literal of an allowed name's address is not allowed by the name rule", "127.0.0.2",
         GOOD + ":443", "host_not_allowed", None),
    ]
    for name, src, target, reason, listener in MATCH:
        with ctx.case(name):
            before = len(ups.accepts())
            r = harness.connect(target, src=src)
            if reason is None:
                expect(r.status == 200, r.describe())
                r.close()
                expect(harness.wait_until(lambda: len(ups.accepts(listener)) > before, 3),
                       "upstream %s not reached" % listener)
            else:
                rec = harness.expect_refusal(r, 403, reason, audit=deny.audit)
                expect(len(ups.accepts()) == before, "an upstream was reached despite the refusal")
                expect(get(rec, "rule.ruleset") == ("a" if src == "127.0.0.2" else "b"),
                       "audit rule.ruleset %r" % get(rec, "rule.ruleset"))

    with ctx.case("no DNS query is made for names the tier does not allow"):
        asked = {n for _, n, _ in dns.queries()}
        expect("allowed.example" in asked, "the resolver was never asked for allowed.example either: "
               "this check would be vacuous")
        leaked = asked & {"wild.example", "evilwild.example", "allowed.example.evil.test", "notallowed.example"}
        expect(not leaked, "resolver asked for refused names: %s" % sorted(leaked))

    ctx.final_checks([deny.audit, fallback.audit])
