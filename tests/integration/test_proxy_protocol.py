#!/usr/bin/python3
"""PROXY protocol v1 and v2: listeners behind a load balancer.

The "load balancer" is 127.0.0.9 (the only trusted peer); 127.0.0.2 is anyone
else.  The clients the headers name never exist: 10.1.0.0/24 is tier a,
10.2.0.0/24 tier b, 2001:db8:1::/64 tier c, 127.0.0.9 itself tier lb (what a
LOCAL header or curl's own v1 header maps to).  Listeners: 3128 plain, 3129
either, 3130 v1 only, 3131 v2 only (a 5s header timeout: headers dripped a byte
at a time fit in it on a loaded machine), 3132 either with a 1s timeout for the
timeout cases, [::]:3133 dual-stack, trusting 127.0.0.9 and ::1.  Raw sockets write the
headers (split, doubled, truncated, with TLVs and CRC32C), real curl writes
its own v1 header (--haproxy-protocol).  A second daemon watches a stand-in
Kubernetes API: the pod a header names (10.7.0.5) is the source.
"""
import os
import re
import signal
import socket
import struct
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import kubeapi  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
API = ("10.96.0.8", 6443)     # the stand-in Kubernetes API server
POD = "10.7.0.5"              # a runner pod's address, only ever named in headers
LB = "127.0.0.9"
OTHER = "127.0.0.2"
PLAIN, EITHER, V1, V2, SHORT, DUAL = 3128, 3129, 3130, 3131, 3132, 3133

SIG = b"\r\n\r\n\x00\r\nQUIT\n"

harness.REASON_STATUS.update({
    "proxy_untrusted_peer": 403, "proxy_header_missing": 400, "proxy_header_invalid": 400,
    "proxy_header_timeout": 408, "proxy_header_unexpected": 403,
})

_HDR_PORT = [40000]


def hdr_port():
    """A fresh client port for a header, so the record it leads to is found by it."""
    _HDR_PORT[0] += 1
    return _HDR_PORT[0]


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF


def v1(src, sport, dst="127.0.0.1", dport=3129):
    fam = "TCP6" if ":" in src else "TCP4"
    if ":" in src and ":" not in dst:
        dst = "::1"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


def tlv(t, value):
    return struct.pack(">BH", t, len(value)) + value


def v2(src, sport, dst="127.0.0.1", dport=3131, cmd=0x21, tlvs=b"", crc=False, fam=None, body=None):
    """A v2 header (PROXY by default) for TCP over IPv4 or IPv6, TLVs appended; with crc a
    CRC32C TLV goes first and is filled in over the whole header."""
    six = ":" in src
    if body is None:
        a = socket.inet_pton(socket.AF_INET6 if six else socket.AF_INET, src)
        b = socket.inet_pton(socket.AF_INET6 if six else socket.AF_INET,
                             dst if not six or ":" in dst else "::1")
        body = a + b + struct.pack(">HH", sport, dport)
    if fam is None:
        fam = 0x21 if six else 0x11
    crc_at = None
    if crc:
        crc_at = 16 + len(body) + 3
        body += tlv(0x03, b"\x00" * 4)
    body += tlvs
    h = bytearray(SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body)
    if crc_at is not None:
        h[crc_at:crc_at + 4] = struct.pack(">I", crc32c(bytes(h)))
    return bytes(h)


# Upstream connections the cases have made so far: every 200 to a CONNECT (or a plain
# request served) is one.  The upstreams log their accepts on a thread of their own.
EXPECTED = [0]


def upstreams_settled():
    """Wait until the upstreams logged every connection the cases made; their count now."""
    harness.wait_until(lambda: len(ups.accepts()) >= EXPECTED[0], 5)
    return len(ups.accepts())


def status_of(port, header, target="allowed.example:8080", src=LB):
    """The status a header and a CONNECT get; the tunnel, if any, is closed at once."""
    r = via(port, header + connect_head(target), src=src)
    r.close()
    if r.status == 200:
        EXPECTED[0] += 1
    return r.status


def connect_head(target):
    return ("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode()


def via(port, data, src=LB, chunks=None, chunk_delay=0.0, timeout=8.0):
    return harness.send_raw(data, src=src, proxy=("127.0.0.1", port), chunks=chunks,
                            chunk_delay=chunk_delay, timeout=timeout)


ctx = harness.start(__file__, v4=[GOOD, API[0]])
with ctx:
    ups = harness.Upstreams(ctx, [
        {"name": "echo", "host": GOOD, "port": 8080},
        {"name": "origin80", "host": GOOD, "port": 80, "kind": "http-origin"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD), ("other.example", GOOD)])
    tiers = {
        "a": {"sources": ["10.1.0.0/24"], "allow": [{"host": "allowed.example", "ports": [8080]}],
              "caps": {"connections_per_source": 2}},
        "b": {"sources": ["10.2.0.0/24"], "allow": [{"host": "other.example", "ports": [8080]}]},
        "c": {"sources": ["2001:db8:1::/64"], "allow": [{"host": "allowed.example", "ports": [8080]}]},
        "lb": {"sources": [LB + "/32"], "allow": [{"host": "other.example", "ports": [80, 8080]}]},
    }

    def pp(mode, timeout="5s"):
        return {"mode": mode, "trusted": [LB + "/32"], "timeout": timeout}

    listen = {"proxy": [{"address": "127.0.0.1:%d" % PLAIN},
                        {"address": "127.0.0.1:%d" % EITHER, "proxy_protocol": pp("either")},
                        {"address": "127.0.0.1:%d" % V1, "proxy_protocol": pp("v1")},
                        {"address": "127.0.0.1:%d" % V2, "proxy_protocol": pp("v2")},
                        {"address": "127.0.0.1:%d" % SHORT, "proxy_protocol": pp("either", "1s")},
                        {"address": "[::]:%d" % DUAL,
                         "proxy_protocol": {"mode": "either", "trusted": [LB + "/32", "::1/128"]}}]}
    px = harness.Proxy(ctx, "pp", tiers, listen=listen).start()
    audit = px.audit

    def served(name, port, header, src_ip, sport, ruleset, target="allowed.example:8080", chunks=None,
               chunk_delay=0.0, vpce=None, peer=LB):
        """The header's client is the source: its tier, its record; the balancer is source.nat."""
        with ctx.case(name):
            n0 = upstreams_settled()
            data = header + connect_head(target)
            r = via(port, data, src=peer, chunks=chunks, chunk_delay=chunk_delay)
            expect(r.status == 200, r.describe())
            token = "pp-%d" % sport
            r.sock.sendall(b"SAY %s\n" % token.encode())
            ans = harness.recv_line(r.sock, r.leftover)
            r.close()
            expect(ans == (token + "\n").encode(), "tunnel answer %r" % ans)
            EXPECTED[0] += 1
            harness.wait_until(lambda: len(ups.accepts()) >= n0 + 1, 5)
            expect(len(ups.accepts()) == n0 + 1, "upstream not reached once")
            rec = audit.by_port(sport)
            expect(rec is not None, "no audit record with source.port %d (the header's)" % sport)
            harness.check_tunnel_record(rec)
            expect(get(rec, "source.ip") == src_ip, "source.ip %r, want %s" % (get(rec, "source.ip"), src_ip))
            expect(get(rec, "source.nat.ip") == peer, "source.nat.ip %r, want the balancer %s" %
                   (get(rec, "source.nat.ip"), peer))
            expect(get(rec, "source.nat.port") == r.src_port, "source.nat.port %r, want %d" %
                   (get(rec, "source.nat.port"), r.src_port))
            expect(get(rec, "rule.ruleset") == ruleset, "rule.ruleset %r, want %s" %
                   (get(rec, "rule.ruleset"), ruleset))
            expect(get(rec, "labels.aws_vpce_id") == vpce, "labels.aws_vpce_id %r, want %r" %
                   (get(rec, "labels.aws_vpce_id"), vpce))
            return rec

    def refused(name, port, data, status, reason, src=LB, chunks=None, chunk_delay=0.0, timeout=8.0,
                upstream_untouched=True):
        """Refused with status and reason; the record is the peer's (source.port is the real one)."""
        with ctx.case(name):
            n0 = upstreams_settled()
            r = via(port, data, src=src, chunks=chunks, chunk_delay=chunk_delay, timeout=timeout)
            rec = harness.expect_refusal(r, status, reason, audit=audit)
            expect(get(rec, "source.ip") == src, "source.ip %r, want the peer %s" % (get(rec, "source.ip"), src))
            if upstream_untouched:
                # The accept it must not cause would be logged by now, or very soon after.
                harness.wait_until(lambda: len(ups.accepts()) > n0, 0.3)
                expect(len(ups.accepts()) == n0, "an upstream was reached despite the refusal")
            return r, rec

    # ---- accepted headers: the client they name is the source ----
    p = hdr_port()
    served("v1 TCP4 from the balancer: the named client's tier (a), record shows both addresses",
           EITHER, v1("10.1.0.5", p), "10.1.0.5", p, "a")
    p = hdr_port()
    served("v1 on a v1-only listener", V1, v1("10.2.0.7", p), "10.2.0.7", p, "b",
           target="other.example:8080")
    p = hdr_port()
    served("v1 TCP6: an IPv6 client maps to its tier (c)", V1, v1("2001:db8:1::5", p),
           "2001:db8:1::5", p, "c")
    p = hdr_port()
    served("v2 TCP4 on a v2-only listener", V2, v2("10.2.0.8", p), "10.2.0.8", p, "b",
           target="other.example:8080")
    p = hdr_port()
    served("v2 TCP6 on an either listener", EITHER, v2("2001:db8:1::6", p), "2001:db8:1::6", p, "c")
    p = hdr_port()
    served("v2 IPv4-mapped IPv6 client is that IPv4 client (tier a)", V2, v2("::ffff:10.1.0.9", p),
           "10.1.0.9", p, "a")
    p = hdr_port()
    aws = tlv(0x04, b"pad") + tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9") + tlv(0x01, b"http/1.1")
    served("v2 with TLVs and a good CRC32C: AWS VPC endpoint ID in labels.aws_vpce_id", V2,
           v2("10.1.0.10", p, tlvs=aws, crc=True), "10.1.0.10", p, "a", vpce="vpce-08d2bf15fac5001c9")
    p = hdr_port()
    h = v2("10.1.0.11", p, crc=True)
    served("v2 header and request written one byte at a time", V2, h, "10.1.0.11", p, "a",
           chunks=[bytes([x]) for x in h + connect_head("allowed.example:8080")], chunk_delay=0.002)
    p = hdr_port()
    h = v1("10.1.0.12", p)
    served("v1 line written one byte at a time", V1, h, "10.1.0.12", p, "a",
           chunks=[bytes([x]) for x in h + connect_head("allowed.example:8080")], chunk_delay=0.002)

    p = hdr_port()
    served("dual-stack listener: an IPv4 balancer (seen as ::ffff:127.0.0.9) is trusted as 127.0.0.9",
           DUAL, v1("10.1.0.13", p), "10.1.0.13", p, "a")
    p = hdr_port()
    served("dual-stack listener: an IPv6 balancer (::1)", DUAL, v2("10.2.0.14", p), "10.2.0.14", p, "b",
           target="other.example:8080", peer="::1")
    refused("dual-stack listener: an IPv4 peer outside trusted (127.0.0.2) -> 403 proxy_untrusted_peer",
            DUAL, v1("10.1.0.5", hdr_port()) + connect_head("allowed.example:8080"), 403,
            "proxy_untrusted_peer", src=OTHER)

    with ctx.case("curl --haproxy-protocol (its own v1 header) through a v1 listener: plain HTTP served "
                  "as the client curl named (itself, tier lb)"):
        res = harness.curl(["--haproxy-protocol", "--interface", LB, "-x", "http://127.0.0.1:%d" % V1,
                            "http://other.example/cl/12"])
        expect(res["rc"] == 0 and res["code"] == "200", "curl exit %s, code %s, stderr %r" %
               (res["rc"], res["code"], res["stderr"][:200]))
        EXPECTED[0] += 1
        rec = audit.by_port(res["local_port"])
        expect(rec is not None, "no record with source.port %s" % res["local_port"])
        expect(get(rec, "source.ip") == LB and get(rec, "source.nat.ip") == LB,
               "source.ip %r, source.nat.ip %r" % (get(rec, "source.ip"), get(rec, "source.nat.ip")))
        expect(get(rec, "rule.ruleset") == "lb", "rule.ruleset %r" % get(rec, "rule.ruleset"))

    with ctx.case("v2 LOCAL: the balancer itself is the source (its block, with fake addresses, "
                  "is skipped)"):
        fake = socket.inet_aton("10.1.0.5") * 2 + struct.pack(">HH", 1, 2)
        r = via(V2, v2("10.1.0.5", 1, cmd=0x20, fam=0x11, body=fake) + connect_head("allowed.example:8080"))
        rec = harness.expect_refusal(r, 403, "host_not_allowed", audit=audit, ruleset="lb")
        expect(get(rec, "source.ip") == LB, "source.ip %r, want %s" % (get(rec, "source.ip"), LB))
        expect(get(rec, "source.nat") is None, "a LOCAL connection has no source.nat: %r" %
               get(rec, "source.nat"))
        st = status_of(V2, v2("", 0, cmd=0x20, fam=0, body=b""), target="other.example:8080")
        expect(st == 200, "LOCAL then a CONNECT the balancer's tier allows: %s" % st)

    # ---- who may send one ----
    p = hdr_port()
    refused("untrusted peer sending a valid header to a PROXY listener -> 403 proxy_untrusted_peer",
            EITHER, v1("10.1.0.5", p) + connect_head("allowed.example:8080"), 403, "proxy_untrusted_peer",
            src=OTHER)
    refused("untrusted peer without a header on a PROXY listener -> 403 proxy_untrusted_peer",
            V2, connect_head("allowed.example:8080"), 403, "proxy_untrusted_peer", src=OTHER)
    p = hdr_port()
    refused("a v1 header on a listener without PROXY protocol -> 403 proxy_header_unexpected",
            PLAIN, v1("10.1.0.5", p) + connect_head("allowed.example:8080"), 403,
            "proxy_header_unexpected", src=OTHER)
    refused("a v2 header on a listener without PROXY protocol -> 403 proxy_header_unexpected",
            PLAIN, v2("10.1.0.5", hdr_port()) + connect_head("allowed.example:8080"), 403,
            "proxy_header_unexpected", src=OTHER)
    refused("the trusted balancer without a header -> 400 proxy_header_missing",
            EITHER, connect_head("other.example:8080"), 400, "proxy_header_missing")
    refused("a TLS ClientHello where the header should be -> 400 proxy_header_missing",
            V2, harness.tls_records(harness.client_hello()), 400, "proxy_header_missing")

    # ---- doubled, truncated, malformed ----
    p = hdr_port()
    with ctx.case("v1 header twice -> 403 proxy_header_unexpected for the first header's client"):
        n0 = upstreams_settled()
        r = via(V1, v1("10.1.0.5", p) + v1("10.2.0.7", hdr_port()) + connect_head("allowed.example:8080"))
        expect(r.status == 403 and r.reason == "proxy_header_unexpected", r.describe())
        rec = audit.by_port(p)
        expect(rec is not None and get(rec, "event.reason") == "proxy_header_unexpected",
               "record for the first header's port: %r" % rec)
        expect(get(rec, "source.ip") == "10.1.0.5", "source.ip %r" % get(rec, "source.ip"))
        expect(len(ups.accepts()) == n0, "upstream reached")
    p = hdr_port()
    with ctx.case("v2 header twice -> 403 proxy_header_unexpected"):
        r = via(V2, v2("10.1.0.5", p) + v2("10.2.0.7", hdr_port()) + connect_head("allowed.example:8080"))
        expect(r.status == 403 and r.reason == "proxy_header_unexpected", r.describe())
        expect(audit.by_port(p) is not None, "no record for the first header's client")

    with ctx.case("partial v2 header (11 of 28 bytes), then nothing -> 408 proxy_header_timeout"):
        r = via(SHORT, v2("10.1.0.5", hdr_port())[:11], timeout=10)
        harness.expect_refusal(r, 408, "proxy_header_timeout", audit=audit)
    with ctx.case("partial v2 header (all but its last byte) -> 408 proxy_header_timeout"):
        r = via(SHORT, v2("10.1.0.5", hdr_port(), crc=True)[:-1], timeout=10)
        harness.expect_refusal(r, 408, "proxy_header_timeout", audit=audit)
    with ctx.case("partial v1 line (no CRLF), then nothing -> 408 proxy_header_timeout"):
        r = via(SHORT, v1("10.1.0.5", hdr_port())[:-2], timeout=10)
        harness.expect_refusal(r, 408, "proxy_header_timeout", audit=audit)
    with ctx.case("a header dripped slower than its timeout -> 408 (the timeout is for the whole header)"):
        h = v2("10.1.0.5", hdr_port())
        r = via(SHORT, h, chunks=[h[i:i + 4] for i in range(0, len(h), 4)], chunk_delay=0.2, timeout=10)
        harness.expect_refusal(r, 408, "proxy_header_timeout", audit=audit)

    h = bytearray(v2("10.1.0.5", hdr_port(), tlvs=tlv(0xEA, b"\x01vpce-1"), crc=True))
    h[-1] ^= 0x01
    BAD = [
        ("v2 with a bad CRC32C", V2, bytes(h)),
        ("v2 version 1", V2, SIG + b"\x11" + v2("10.1.0.5", 1)[13:]),
        ("v2 command 2", V2, SIG + b"\x22" + v2("10.1.0.5", 1)[13:]),
        ("v2 PROXY over UNIX sockets", V2, v2("10.1.0.5", 1, fam=0x31, body=b"\x00" * 216)),
        ("v2 PROXY over UDP", V2, v2("10.1.0.5", 1, fam=0x12)),
        ("v2 PROXY with family UNSPEC", V2, v2("10.1.0.5", 1, fam=0x00)),
        ("v2 TCP6 family with a TCP4-sized block", V2, v2("10.1.0.5", 1, fam=0x21)),
        ("v2 length 65535", V2, SIG + b"\x21\x11\xff\xff" + b"\x00" * 64),
        ("v2 TLV running past the header", V2, v2("10.1.0.5", 1, tlvs=b"\x04\x00\x10abc")),
        ("v2 AWS TLV with a quote in the endpoint ID", V2, v2("10.1.0.5", 1, tlvs=tlv(0xEA, b'\x01vpce"x'))),
        ("v2 on a v1-only listener", V1, v2("10.1.0.5", 1)),
        ("v1 on a v2-only listener", V2, v1("10.1.0.5", 1)),
        ("v1 with an octal-looking address (010.1.0.5)", V1, b"PROXY TCP4 010.1.0.5 127.0.0.1 1 2\r\n"),
        ("v1 with port 65536", V1, b"PROXY TCP4 10.1.0.5 127.0.0.1 65536 2\r\n"),
        ("v1 with a leading-zero port", V1, b"PROXY TCP4 10.1.0.5 127.0.0.1 01 2\r\n"),
        ("v1 TCP4 carrying an IPv6 address", V1, b"PROXY TCP4 2001:db8:1::5 ::1 1 2\r\n"),
        ("v1 with a bare LF", V1, b"PROXY TCP4 10.1.0.5 127.0.0.1 1 2\n"),
        ("v1 with two spaces", V1, b"PROXY TCP4  10.1.0.5 127.0.0.1 1 2\r\n"),
        ("v1 line longer than 107 bytes", V1, b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n"),
        ("v1 garbage after PROXY", EITHER, b"PROXY \x00\x01\x02\r\n"),
    ]
    for name, port, data in BAD:
        refused("%s -> 400 proxy_header_invalid" % name, port, data + connect_head("allowed.example:8080"),
                400, "proxy_header_invalid")

    # ---- per-source limits are the named client's ----
    with ctx.case("connections_per_source (2) is charged to the header's client, not the balancer"):
        held = []
        try:
            for i in range(2):
                r = via(EITHER, v1("10.1.0.50", hdr_port()) + connect_head("allowed.example:8080"))
                expect(r.status == 200, "tunnel %d: %s" % (i, r.describe()))
                EXPECTED[0] += 1
                held.append(r)
            p = hdr_port()
            r = via(EITHER, v1("10.1.0.50", p) + connect_head("allowed.example:8080"))
            expect(r.status == 429 and r.reason == "source_connection_limit",
                   "third connection of 10.1.0.50: %s" % r.describe())
            rec = audit.by_port(p)
            expect(rec is not None and get(rec, "source.ip") == "10.1.0.50" and
                   get(rec, "source.nat.ip") == LB, "429 record: %r" % rec)
            # The same balancer, another client of the same tier: its own count.
            expect(status_of(EITHER, v2("10.1.0.51", hdr_port())) == 200,
                   "another client behind the same balancer refused")
        finally:
            for r in held:
                r.close()
        expect(harness.wait_until(lambda: status_of(EITHER, v1("10.1.0.50", hdr_port())) == 200, 5),
               "10.1.0.50 not served again after its tunnels closed")

    with ctx.case("a balancer's health checks (connect, close) leave no record and no trouble"):
        ports = []
        for _ in range(5):
            s = harness.bound_socket(LB)
            ports.append(s.getsockname()[1])
            s.connect(("127.0.0.1", V2))
            s.close()
        p = hdr_port()
        served("after health checks, a header is still served", V2, v2("10.1.0.60", p), "10.1.0.60", p, "a")
        # Their records, had any been written, would be queued before this tunnel's.
        stray = audit.find(lambda r: get(r, "source.port") in ports or get(r, "source.nat.port") in ports)
        expect(not stray, "records for health checks: %r" % stray)

    with ctx.case("reload: a balancer added to trusted is taken on the next connections"):
        pol = px.policy
        pol["listen"]["proxy"][1]["proxy_protocol"]["trusted"] = [LB + "/32", OTHER + "/32"]
        tmp = px.policy_path + ".new"
        with open(tmp, "w") as f:
            f.write(harness.to_yaml(pol) + "\n")
        os.rename(tmp, px.policy_path)
        os.kill(px.proc.pid, signal.SIGHUP)
        expect(harness.wait_until(lambda: status_of(EITHER, v1("10.2.0.20", hdr_port()), src=OTHER,
                                                    target="other.example:8080") == 200, 5),
               "%s still refused on the either listener 5s after the reload" % OTHER)
    p = hdr_port()
    served("after the reload, %s is a balancer: its header's client is the source" % OTHER, EITHER,
           v2("10.2.0.21", p), "10.2.0.21", p, "b", target="other.example:8080", peer=OTHER)
    refused("after the reload, the v2-only listener (not changed) still refuses %s" % OTHER, V2,
            v2("10.2.0.22", hdr_port()) + connect_head("other.example:8080"), 403, "proxy_untrusted_peer",
            src=OTHER)

    # ---- trust is checked again when the header is whole, under the policy current then ----
    RL = 3141
    rpx = harness.Proxy(ctx, "reload", tiers, proxy_port=RL, admin_port=9095,
                        listen={"proxy": [{"address": "127.0.0.1:%d" % RL,
                                           "proxy_protocol": {"mode": "either",
                                                              "trusted": [LB + "/32", OTHER + "/32"],
                                                              "timeout": "60s"}}]}).start()

    def pending_then_removed():
        """Half a header from OTHER; then a reload drops OTHER from trusted; then the rest."""
        p = hdr_port()
        h = v1("10.1.0.70", p) + connect_head("allowed.example:8080")
        yield h[:10]
        pol = rpx.policy
        pol["listen"]["proxy"][0]["proxy_protocol"]["trusted"] = [LB + "/32"]
        harness.write_atomic(rpx.policy_path, harness.to_yaml(pol) + "\n")
        os.kill(rpx.proc.pid, signal.SIGHUP)
        took = harness.wait_until(lambda: status_of(RL, v1("10.1.0.71", hdr_port()), src=OTHER) == 403, 20)
        expect(took, "a new connection from %s still served 20 s after the reload" % OTHER)
        yield h[10:]

    with ctx.case("reload: a balancer removed from trusted while its header was pending -> 403 "
                  "proxy_untrusted_peer when the header completes, recorded with the peer's address"):
        r = via(RL, None, src=OTHER, chunks=pending_then_removed(), timeout=30)
        harness.expect_refusal(r, 403, "proxy_untrusted_peer")
        rec = rpx.audit.by_port(r.src_port)
        expect(rec is not None and get(rec, "source.ip") == OTHER and get(rec, "source.nat") is None,
               "record %r" % rec)

    # ---- pod identity: the pod map is asked for the header's client ----
    pki = kubeapi.make_pki(ctx.path("kube"), API[0], "kube")
    api = kubeapi.KubeAPI(API[0], API[1], pki["cert"], pki["key"], token="pp-token")
    ctx.cleanups.append(api.stop)
    with open(ctx.path("kube.token"), "w") as f:
        f.write("pp-token")
    api.add_pod("ci", "runner-1", POD, labels={"portcullis.dev/tier": "b"})
    api.add_pod("ci", "runner-2", OTHER, labels={"portcullis.dev/tier": "b"})  # inside a trusted range
    KUBE, KUBE_POD = 3140, 3142
    kpx = harness.Proxy(ctx, "kube", tiers, proxy_port=KUBE, admin_port=9094,
                        listen={"proxy": [{"address": "127.0.0.1:%d" % KUBE,
                                           "proxy_protocol": pp("either")},
                                          {"address": "127.0.0.1:%d" % KUBE_POD,
                                           "proxy_protocol": {"mode": "either",
                                                              "trusted": [OTHER + "/32"]}}]},
                        identity={"kubernetes": {"api_server": "https://%s:%d" % API,
                                                 "token_file": ctx.path("kube.token"),
                                                 "ca_file": pki["ca"],
                                                 "tier_label": "portcullis.dev/tier"}}).start()

    def kube_synced():
        try:
            with urllib.request.urlopen("http://127.0.0.1:9094/metrics", timeout=5) as r:
                return re.search(r"^portcullis_kube_synced 1$", r.read().decode(), re.M) is not None
        except OSError:
            return False

    with ctx.case("identity.kubernetes: the pod a header names is the source (its tier label, "
                  "orchestrator.* in the record)"):
        expect(harness.wait_until(kube_synced, 15), "the pod map did not sync in 15 s")
        n0 = upstreams_settled()
        p = hdr_port()
        r = via(KUBE, v2(POD, p) + connect_head("other.example:8080"))
        expect(r.status == 200, "the pod's tier (b) allows other.example: %s" % r.describe())
        r.close()
        EXPECTED[0] += 1
        rec = kpx.audit.by_port(p)
        expect(rec is not None, "no record with source.port %d" % p)
        expect(get(rec, "source.ip") == POD and get(rec, "source.nat.ip") == LB,
               "source.ip %r, source.nat.ip %r" % (get(rec, "source.ip"), get(rec, "source.nat.ip")))
        expect(get(rec, "orchestrator.resource.name") == "runner-1" and
               get(rec, "orchestrator.namespace") == "ci" and get(rec, "rule.ruleset") == "b",
               "orchestrator %r, ruleset %r" % (get(rec, "orchestrator"), get(rec, "rule.ruleset")))
        expect(harness.wait_until(lambda: len(ups.accepts()) > n0, 5), "upstream not reached")
    with ctx.case("identity.kubernetes: an address the pod map does not hold falls back to sources "
                  "(10.1.0.5: tier a, no orchestrator fields)"):
        p = hdr_port()
        r = via(KUBE, v1("10.1.0.5", p) + connect_head("other.example:8080"))
        harness.expect_refusal(r, 403, "host_not_allowed")
        rec = kpx.audit.by_port(p)
        expect(rec is not None and get(rec, "orchestrator") is None and get(rec, "rule.ruleset") == "a",
               "record %r" % rec)

    with ctx.case("identity.kubernetes: a pod is never a balancer, even inside trusted -> 403 "
                  "proxy_untrusted_peer, recorded with the pod's own address"):
        p = hdr_port()
        r = via(KUBE_POD, v2("10.1.0.80", p) + connect_head("allowed.example:8080"), src=OTHER)
        harness.expect_refusal(r, 403, "proxy_untrusted_peer")
        rec = kpx.audit.by_port(r.src_port)
        expect(rec is not None and get(rec, "source.ip") == OTHER and get(rec, "source.nat") is None,
               "record %r" % rec)
        expect(kpx.audit.by_port(p) is None, "a record names the header's client")

    ctx.final_checks([audit, kpx.audit, rpx.audit])
