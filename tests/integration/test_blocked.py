#!/usr/bin/python3
"""Scenario 2: internal and metadata addresses are never reached.

Listeners of the test's own sit on every internal address (ports 80 and 443)
and record every accepted connection.  The proxy is asked to reach them by IP
literal in every notation, by allowlisted names whose A/AAAA answers point
there, and by a name with one good and one bad answer.  Every request must be
refused and, at the end, no forbidden listener may have seen a connection.
"""
import ipaddress
import os
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
FORBIDDEN_V4 = ["169.254.169.254", "10.0.0.5", "172.16.0.5", "192.168.1.5", "100.64.0.5",
                "127.0.0.9", "168.63.129.16"]
# The last two: NAT64 addresses outside the well-known /96, where the IPv4 inside cannot be
# read (169.254.169.254 in the /64 layout of the local-use /48, and past the /96): listeners
# of our own, so a test sees whether the proxy dialled them.
FORBIDDEN_V6 = ["fd00:ec2::254", "64:ff9b:1:abcd:a9:fea9:fe00:0", "64:ff9b::1:0:a9fe:a9fe"]
# 127.0.0.1 and ::1 exist on lo already; they get listeners too (connects to 0.0.0.0 and :: land there).
LISTEN = FORBIDDEN_V4 + ["127.0.0.1"] + FORBIDDEN_V6 + ["::1"]

BLOCKED = [(403, "blocked_address")]
# Non-standard IPv4 spellings: canonicalised then blocked, or refused as malformed.
CANON_OR_INVALID = [(403, "blocked_address"), (400, "invalid_host")]
MALFORMED = [(400, "invalid_host"), (400, "bad_request")]
INVALID = [(400, "invalid_host")]

LITERALS = [
    # plain forms of every internal address: exactly blocked_address
    ("169.254.169.254:443", BLOCKED), ("169.254.169.254:80", BLOCKED),
    ("10.0.0.5:443", BLOCKED), ("172.16.0.5:443", BLOCKED), ("192.168.1.5:80", BLOCKED),
    ("100.64.0.5:443", BLOCKED), ("127.0.0.9:443", BLOCKED), ("168.63.129.16:80", BLOCKED),
    ("127.0.0.1:443", BLOCKED), ("0.0.0.0:443", BLOCKED),
    ("[fd00:ec2::254]:443", BLOCKED), ("[fd00:ec2::254]:80", BLOCKED),
    ("[FD00:EC2::254]:443", BLOCKED), ("[fd00:0ec2:0000:0000:0000:0000:0000:0254]:443", BLOCKED),
    ("[::1]:443", BLOCKED), ("[0:0:0:0:0:0:0:1]:80", BLOCKED), ("[::]:443", BLOCKED),
    ("[fe80::1]:443", BLOCKED),
    # the rest of the built-in list (no listener needed: these must never be dialled)
    ("224.0.0.1:443", BLOCKED), ("239.255.255.250:443", BLOCKED), ("240.0.0.1:443", BLOCKED),
    ("255.255.255.255:443", BLOCKED), ("198.18.0.1:443", BLOCKED), ("198.19.255.254:443", BLOCKED),
    ("192.0.0.170:443", BLOCKED), ("100.127.255.254:443", BLOCKED), ("172.31.255.254:443", BLOCKED),
    ("0.1.2.3:443", BLOCKED), ("[fc00::1]:443", BLOCKED), ("[fdff:ffff::1]:443", BLOCKED),
    ("[febf::1]:443", BLOCKED), ("[ff02::1]:443", BLOCKED), ("[::169.254.169.254]:443", BLOCKED),
    # IPv4 embedded in IPv6
    ("[::ffff:169.254.169.254]:443", BLOCKED), ("[::ffff:a9fe:a9fe]:443", BLOCKED),
    ("[::ffff:127.0.0.1]:443", BLOCKED), ("[::ffff:10.0.0.5]:80", BLOCKED),
    ("[::a9fe:a9fe]:443", BLOCKED),                      # IPv4-compatible ::/96
    ("[::ffff:0:a9fe:a9fe]:443", BLOCKED),               # IPv4-translated ::ffff:0:0:0/96
    ("[64:ff9b::a9fe:a9fe]:443", BLOCKED),               # NAT64 well-known /96
    ("[64:ff9b::169.254.169.254]:443", BLOCKED),
    ("[64:ff9b:1:a9fe:a9:fe00::]:443", BLOCKED),         # NAT64 local-use /48 (RFC 6052 layout)
    ("[64:ff9b:1:abcd:a9:fea9:fe00:0]:443", BLOCKED),    # local-use, /64 layout
    ("[64:ff9b:1:abcd:a9:fea9:fe00:0]:80", BLOCKED),
    ("[64:ff9b::1:0:a9fe:a9fe]:443", BLOCKED),           # 64:ff9b::/32 outside the /96
    ("[2002:a9fe:a9fe::]:443", BLOCKED),                 # 6to4
    ("[2002:a9fe:a9fe:1::1]:443", BLOCKED),
    ("[2001:0:a9fe:a9fe:0:0:5601:5601]:443", BLOCKED),   # Teredo, server and client both 169.254.169.254
    ("[2001:0:c633:6401:0:0:5601:5601]:443", BLOCKED),   # Teredo, client (~5601:5601) 169.254.169.254
    # every inet_aton spelling
    ("2852039166:443", CANON_OR_INVALID), ("0251.0376.0251.0376:443", CANON_OR_INVALID),
    ("0xa9fea9fe:443", CANON_OR_INVALID), ("0XA9FEA9FE:443", CANON_OR_INVALID),
    ("0xA9.0xFE.0xA9.0xFE:443", CANON_OR_INVALID), ("0xa9.254.0251.0xfe:443", CANON_OR_INVALID),
    ("169.254.43518:443", CANON_OR_INVALID), ("169.16689662:443", CANON_OR_INVALID),
    ("127.1:443", CANON_OR_INVALID), ("0:443", CANON_OR_INVALID), ("0x7f.1:443", CANON_OR_INVALID),
    ("0x7f000001:443", CANON_OR_INVALID), ("017700000001:443", CANON_OR_INVALID),
    ("0177.0.0.1:443", CANON_OR_INVALID), ("012.0.0.5:443", CANON_OR_INVALID),
    ("0300.0250.01.05:443", CANON_OR_INVALID),                 # octal 192.168.1.5
    ("167772165:80", CANON_OR_INVALID), ("2130706441:443", CANON_OR_INVALID),
    ("169.254.169.254.:443", CANON_OR_INVALID), ("10.0.0.5.:80", CANON_OR_INVALID),
    ("0169.254.169.254:443", CANON_OR_INVALID),
    # leading zero: octal 0127 = 87 (not internal) per inet_aton, 127 if read as decimal
    ("0127.0.0.1:443", CANON_OR_INVALID + [(403, "host_not_allowed")]),
    # out of range: malformed, never wrapped around
    ("425.510.425.510:443", INVALID), ("7147006462:443", INVALID), ("0x1a9fea9fe:443", INVALID),
    ("169.254.169.256:443", INVALID), ("169.254.65536:443", INVALID), ("256.1:443", INVALID),
    # authority syntax an attacker could use to smuggle a different host
    ("[fe80::1%25lo]:443", MALFORMED), ("[fe80::1%lo]:443", MALFORMED),
    ("[fd00:ec2::254%251]:443", MALFORMED),
    ("a@allowed.example:443", MALFORMED), ("user:pw@169.254.169.254:443", MALFORMED),
    ("allowed%2eexample:443", MALFORMED), ("%31%36%39.254.169.254:443", MALFORMED),
    ("169.254.169.254%00:443", MALFORMED),
    ("allowed.example\\:443", MALFORMED), ("169.254.169.254\\@allowed.example:443", MALFORMED),
    ("allowed.example\\.evil:443", MALFORMED),
    ("::1:443", MALFORMED), ("[::1:443", MALFORMED), ("[::1]443", MALFORMED),
    ("169.254.169.254:443:443", MALFORMED), (":443", MALFORMED), ("allowed.example:", MALFORMED),
    ("allowed.example:0", MALFORMED), ("allowed.example:65536", MALFORMED),
    ("allowed.example:+443", MALFORMED),
]
# targets with whitespace cannot go through connect()'s request-line builder unchanged
RAW_MALFORMED = [
    ("space inside the authority", b"CONNECT allowed.example :443 HTTP/1.1\r\nHost: allowed.example\r\n\r\n"),
    ("space before the port of a metadata literal",
     b"CONNECT 169.254.169.254 :443 HTTP/1.1\r\nHost: allowed.example\r\n\r\n"),
    ("tab inside the authority", b"CONNECT allowed.example\t:443 HTTP/1.1\r\nHost: allowed.example\r\n\r\n"),
]

DNS = [  # name, records, port
    ("meta.example", ["169.254.169.254"], 443),
    ("meta80.example", ["169.254.169.254"], 80),
    ("v6meta.example", ["fd00:ec2::254"], 443),        # AAAA only
    ("mapped.example", ["::ffff:169.254.169.254"], 443),
    ("loop.example", ["127.0.0.9"], 443),
    ("loop6.example", ["::1"], 443),
    ("wire.example", ["168.63.129.16"], 80),
    ("priv10.example", ["10.0.0.5"], 443),
    ("priv172.example", ["172.16.0.5"], 443),
    ("priv192.example", ["192.168.1.5"], 443),
    ("cgnat.example", ["100.64.0.5"], 443),
    ("zero.example", ["0.0.0.0"], 443),
    ("nat64.example", ["64:ff9b::a9fe:a9fe"], 443),
    ("nat64local.example", ["64:ff9b:1:abcd:a9:fea9:fe00:0"], 443),
    ("nat64wide.example", ["64:ff9b::1:0:a9fe:a9fe"], 80),
    ("sixto4.example", ["2002:a9fe:a9fe::"], 443),
    ("teredo.example", ["2001:0:a9fe:a9fe::5601:5601"], 443),
    ("bench.example", ["198.18.0.5"], 443),
    ("mcast.example", ["224.0.0.5"], 443),
    ("ula.example", ["fc00::5"], 443),
    ("ll6.example", ["fe80::5"], 443),
    ("mixed.example", [GOOD, "169.254.169.254"], 443),  # one good and one bad A
    ("mixed6.example", [GOOD, "fd00:ec2::254"], 443),   # good A, bad AAAA
    ("mixedv6.example", [GOOD, "::ffff:10.0.0.5"], 443),
]

def canonical(target):
    """The address a literal target names (inet_aton rules for IPv4, one trailing
    dot ignored), or None when it is not a valid address."""
    host = target.rsplit(":", 1)[0]
    if host.startswith("[") and host.endswith("]"):
        try:
            return ipaddress.ip_address(host[1:-1])
        except ValueError:
            return None
    if host.endswith("."):
        host = host[:-1]
    if not host or any(c not in "0123456789abcdefxABCDEFX." for c in host):
        return None
    try:
        return ipaddress.ip_address(socket.inet_ntoa(socket.inet_aton(host)))
    except OSError:
        return None


ctx = harness.start(__file__, v4=[GOOD] + FORBIDDEN_V4, v6=FORBIDDEN_V6)
with ctx:
    specs = [{"name": "good", "host": GOOD, "port": 443, "role": "good"}]
    for a in LISTEN:
        for port in (80, 443):
            specs.append({"name": "%s:%d" % (a, port), "host": a, "port": port, "role": "forbidden"})
    ups = harness.Upstreams(ctx, specs)
    records = [("good.example", GOOD)] + [(n, a) for n, addrs, _ in DNS for a in addrs]
    dns = harness.Dnsmasq(ctx, "127.0.0.53", records)
    allow = [{"host": "good.example"}, {"host": "allowed.example", "ports": [443, 80]}]
    allow += [{"host": n, "ports": [443, 80]} for n, _, _ in DNS]
    # The upstreams here speak a plain line protocol on 443: this scenario is about addresses, so
    # the tier does not require TLS on 443 (test_tls.py covers the ClientHello checks).
    px = harness.Proxy(ctx, "proxy", {"a": {"sources": ["127.0.0.2/32"], "allow": allow,
                                            "tls": {"require_tls_ports": []}}}).start()
    audit = px.audit

    with ctx.case("control: allowlisted good.example -> %s:443 is served" % GOOD):
        harness.expect_served("good.example:443")
        expect(len(ups.accepts("good")) == 1, "good upstream saw %d connections" % len(ups.accepts("good")))

    for target, allowed in LITERALS:
        exp = " / ".join("%d %s" % p for p in allowed)
        with ctx.case("CONNECT %s -> %s" % (target, exp)):
            r = harness.connect(target)
            rec = harness.any_refusal(r, allowed, audit=audit)
            want = canonical(target)
            if r.reason == "blocked_address" and want is not None:
                got = get(rec, "destination.ip")
                expect(got is not None and ipaddress.ip_address(got) == want,
                       "audit destination.ip %r, want %s (the address as inet_aton reads it)" % (got, want))
            expect(not ups.accepts(role="forbidden"), "a forbidden listener was reached: %s" %
                   ups.accepts(role="forbidden"))

    for name, raw in RAW_MALFORMED:
        with ctx.case("%s -> 400" % name):
            r = harness.send_raw(raw)
            harness.any_refusal(r, MALFORMED, audit=audit)

    for name, addrs, port in DNS:
        with ctx.case("CONNECT %s:%d (answers %s) -> 403 resolved_to_blocked_range" %
                      (name, port, ", ".join(addrs))):
            r = harness.connect("%s:%d" % (name, port))
            rec = harness.expect_refusal(r, 403, "resolved_to_blocked_range", audit=audit, ruleset="a")
            expect(get(rec, "destination.domain") == name and get(rec, "destination.port") == port,
                   "audit destination %r:%r, want %s:%d" % (get(rec, "destination.domain"),
                                                           get(rec, "destination.port"), name, port))
            expect(not ups.accepts(role="forbidden"), "a forbidden listener was reached: %s" %
                   ups.accepts(role="forbidden"))

    with ctx.case("the proxy asked the pinned resolver for the blocked names"):
        asked = {n for _, n, _ in dns.queries()}
        missing = [n for n, _, _ in DNS if n not in asked]
        expect(not missing, "never queried: %s" % missing)

    with ctx.case("good upstream reached only by the control (not via mixed answers)"):
        expect(len(ups.accepts("good")) == 1, "good upstream saw %d connections, want 1: %s" %
               (len(ups.accepts("good")), ups.accepts("good")))

    with ctx.case("no forbidden listener ever accepted a connection (%d listeners)" % (len(specs) - 1)):
        expect(ups.accepts("good"), "the control never reached the good upstream: this check would be vacuous")
        hits = ups.accepts(role="forbidden")
        expect(not hits, "reached: %s" % ", ".join(sorted({e["listener"] for e in hits})))

    with ctx.case("the proxy still serves after all refusals"):
        harness.expect_served("good.example:443")

    ctx.final_checks([audit])
