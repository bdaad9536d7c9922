#!/usr/bin/python3
"""Scenario 3: the pinned resolver and every DNS / upstream failure class.

dnsmasq on 127.0.0.53 is the policy's resolver.  A second dnsmasq on 127.0.0.54
with poisoned answers is what this namespace's /etc/resolv.conf names, and
/etc/hosts maps allowed.example to 10.0.0.5: the proxy must use neither.
"""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect  # noqa: E402

GOOD = "198.51.100.10"
NOLISTEN = "198.51.100.11"     # on lo, nothing listens: connection refused
BLACKHOLE = "198.51.100.12"    # listen(0) with a full accept queue: SYNs dropped
UNROUTED = "203.0.113.9"       # not on lo, no route in the namespace
TRAP = "10.0.0.5"              # what the poisoned resolver and /etc/hosts answer

ctx = harness.start(__file__, v4=[GOOD, NOLISTEN, BLACKHOLE, TRAP])
with ctx:
    ups = harness.Upstreams(ctx, [
        {"name": "good", "host": GOOD, "port": 443},
        {"name": "blackhole", "host": BLACKHOLE, "port": 443, "kind": "blackhole"},
        {"name": "trap", "host": TRAP, "port": 443, "role": "forbidden"},
        {"name": "silent-dns", "host": "127.0.0.55", "port": 53, "kind": "udp-silent"},
    ])
    pinned = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", GOOD), ("refused.example", NOLISTEN), ("blackhole.example", BLACKHOLE),
        ("unrouted.example", UNROUTED), ("fallback.example", NOLISTEN), ("fallback.example", GOOD),
    ], name="pinned", extra=["--txt-record=nodata.example,nothing-here"])
    poisoned = harness.Dnsmasq(ctx, "127.0.0.54", [
        ("allowed.example", TRAP), ("hosts-only.example", TRAP), ("nx.example", TRAP),
        ("poison-only.example", TRAP),
    ], name="poisoned")

    # The namespace's own resolver configuration points at the poisoned one.
    with open(ctx.path("resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.54\noptions timeout:1 attempts:1\n")
    with open(ctx.path("hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n%s allowed.example hosts-only.example\n" % TRAP)
    harness.bind_mount(ctx.path("resolv.conf"), "/etc/resolv.conf")
    harness.bind_mount(ctx.path("hosts"), "/etc/hosts")

    names = ["allowed.example", "hosts-only.example", "poison-only.example", "nx.example", "nodata.example",
             "refused.example", "blackhole.example", "unrouted.example", "fallback.example", "other.org"]
    # Plain line-protocol upstreams on 443: this scenario is about resolution, not TLS inspection.
    tier = {"a": {"sources": ["127.0.0.2/32"], "allow": [{"host": n} for n in names],
                  "tls": {"require_tls_ports": []}}}
    px = harness.Proxy(ctx, "proxy", tier).start()
    px_silent = harness.Proxy(ctx, "proxy-silent-dns", tier, proxy_port=3129, admin_port=9091,
                              resolver={"servers": ["127.0.0.55:53"]}).start()

    with ctx.case("trap is armed: libc resolves allowed.example to %s here" % TRAP):
        got = {ai[4][0] for ai in socket.getaddrinfo("allowed.example", 443, socket.AF_INET)}
        expect(got == {TRAP}, "getaddrinfo gave %s; the /etc/hosts bind mount did not take" % got)
        got = {ai[4][0] for ai in socket.getaddrinfo("poison-only.example", 443, socket.AF_INET)}
        expect(got == {TRAP}, "getaddrinfo gave %s; the resolv.conf bind mount did not take" % got)
        poisoned_before = len(poisoned.queries())

    with ctx.case("allowed.example is resolved by the pinned resolver and reaches %s" % GOOD):
        harness.expect_served("allowed.example:443")
        expect(len(ups.accepts("good")) == 1, "good upstream saw %d connections" % len(ups.accepts("good")))
        qs = [q for q in pinned.queries() if q[1] == "allowed.example"]
        expect(qs, "pinned resolver was never asked for allowed.example")

    with ctx.case("name only in /etc/hosts -> 502 dns_nxdomain (hosts file not read)"):
        r = harness.connect("hosts-only.example:443")
        harness.expect_refusal(r, 502, "dns_nxdomain", audit=px.audit)

    with ctx.case("name only on the resolv.conf resolver -> 502 dns_nxdomain (resolv.conf not read)"):
        r = harness.connect("poison-only.example:443")
        harness.expect_refusal(r, 502, "dns_nxdomain", audit=px.audit)

    with ctx.case("nxdomain -> 502 dns_nxdomain"):
        r = harness.connect("nx.example:443")
        harness.expect_refusal(r, 502, "dns_nxdomain", audit=px.audit)
        expect(ups.accepts("trap") == [], "trap listener reached")

    with ctx.case("name with neither A nor AAAA (NODATA) -> 502 dns_error"):
        r = harness.connect("nodata.example:443")
        harness.expect_refusal(r, 502, "dns_error", audit=px.audit)

    with ctx.case("resolver answers REFUSED -> 502 dns_error"):
        r = harness.connect("other.org:443")
        harness.expect_refusal(r, 502, "dns_error", audit=px.audit)

    with ctx.case("resolver never answers -> 504 dns_timeout within the timeout (1s x 1)"):
        t0 = time.monotonic()
        r = harness.connect("allowed.example:443", proxy_port=3129, timeout=10)
        dt = time.monotonic() - t0
        harness.expect_refusal(r, 504, "dns_timeout", audit=px_silent.audit)
        expect(dt <= 3.5, "answered after %.2fs; resolver timeout is 1s with 1 attempt" % dt)
        expect(dt >= 0.8, "answered after %.2fs, before the resolver timeout could expire" % dt)
        expect(ups.udp("silent-dns"), "the silent resolver never received a query")

    with ctx.case("upstream refuses (no listener on %s) -> 502 upstream_refused" % NOLISTEN):
        r = harness.connect("refused.example:443")
        harness.expect_refusal(r, 502, "upstream_refused", audit=px.audit)

    with ctx.case("upstream drops SYNs (full accept queue) -> 504 upstream_timeout after ~1s"):
        t0 = time.monotonic()
        r = harness.connect("blackhole.example:443", timeout=10)
        dt = time.monotonic() - t0
        harness.expect_refusal(r, 504, "upstream_timeout", audit=px.audit)
        expect(0.8 <= dt <= 3.5, "answered after %.2fs; connect timeout is 1s" % dt)

    with ctx.case("upstream address not routable (%s) -> 502 upstream_unreachable / 504 upstream_timeout"
                  % UNROUTED):
        t0 = time.monotonic()
        r = harness.connect("unrouted.example:443", timeout=10)
        harness.any_refusal(r, [(502, "upstream_unreachable"), (504, "upstream_timeout")], audit=px.audit)
        expect(time.monotonic() - t0 <= 3.5, "took %.2fs" % (time.monotonic() - t0))

    with ctx.case("two A answers, one refusing: the proxy falls back to the one that works"):
        n0 = len(ups.accepts("good"))
        harness.expect_served("fallback.example:443")
        expect(len(ups.accepts("good")) == n0 + 1, "good upstream not reached")

    with ctx.case("the poisoned resolver named by /etc/resolv.conf was never asked"):
        expect(pinned.queries(), "the pinned resolver was never asked either: this check would be vacuous")
        qs = poisoned.queries()[poisoned_before:]
        expect(not qs, "poisoned resolver got %d queries: %s" % (len(qs), qs[:5]))

    with ctx.case("the trap address from /etc/hosts and the poisoned resolver was never reached"):
        expect(ups.accepts("good"), "no upstream was ever reached: this check would be vacuous")
        expect(not ups.accepts("trap"), "trap reached %d times" % len(ups.accepts("trap")))

    with ctx.case("the pinned resolver saw A and AAAA queries for the names asked"):
        qs = pinned.queries()
        for n in ("nx.example", "refused.example"):
            types = {t for t, name, _ in qs if name == n}
            expect(types, "no query for %s" % n)
        expect(any(t == "AAAA" for t, _, _ in qs), "no AAAA query at all (only %s)" %
               sorted({t for t, _, _ in qs}))

    ctx.final_checks([px.audit, px_silent.audit])
