#!/usr/bin/python3
"""The audit stream a SIEM reads: timing on a long tunnel, correlation ids, Community ID,
JA4 (logged, and allowed/denied per tier), user_agent.original.

Real processes: the daemon, python's ssl (OpenSSL) as the TLS client, the harness's upstream
servers.  The JA4 and Community ID the records carry are compared with independent
computations here, from the bytes the client really sent and the addresses it really used
(the algorithms as published: FoxIO-LLC/ja4 technical_details/JA4.md,
corelight/community-id-spec).  Every wait has a deadline; nothing sleeps then asserts.
"""
import base64
import hashlib
import os
import socket
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get, as_list  # noqa: E402

V4 = "198.51.100.20"
INTERIM_S = 10           # audit.interim (its minimum)
GREASE = {0x0a0a + 0x1010 * i for i in range(16)}


def ja4_of(hello_stream):
    """JA4 of the ClientHello at the start of a TLS byte stream (JA4.md, TLS over TCP)."""
    h = harness.parse_client_hello(hello_stream)
    msg = h["msg"]
    p = 4 + 2 + 32
    p += 1 + msg[p]
    n = struct.unpack(">H", msg[p:p + 2])[0]
    ciphers = [c for c in struct.unpack(">%dH" % (n // 2), msg[p + 2:p + 2 + n]) if c not in GREASE]
    exts = [e for e in h["ext_types"] if e not in GREASE]
    vers = [v for v in h["versions"] if v not in GREASE]
    ver = max(vers) if vers else h["version"]
    vtext = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3"}.get(ver, "00")
    alpn = "00"
    if h["alpn"]:
        a = h["alpn"][0].encode("latin-1")
        if chr(a[0]).isalnum() and chr(a[-1]).isalnum() and a[0] < 128 and a[-1] < 128:
            alpn = chr(a[0]) + chr(a[-1])
        else:
            alpn = "%02x" % a[0]
            alpn = alpn[0] + ("%02x" % a[-1])[1]
    sigalgs = []
    if 0x000d in h["exts"]:
        d = h["exts"][0x000d][1]
        m = struct.unpack(">H", d[:2])[0]
        sigalgs = [s for s in struct.unpack(">%dH" % (m // 2), d[2:2 + m]) if s not in GREASE]

    def hx(vals):
        return ",".join("%04x" % v for v in vals)

    def h12(text):
        return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"

    b = h12(hx(sorted(ciphers)))
    ext_list = hx(sorted(e for e in exts if e not in (0x0000, 0x0010)))
    c = h12(ext_list + ("_" + hx(sigalgs) if sigalgs and ext_list else "")) if ext_list else "000000000000"
    a = "t%s%s%02d%02d%s" % (vtext, "d" if h["sni"] is not None else "i", min(len(ciphers), 99),
                             min(len(exts), 99), alpn)
    return "%s_%s_%s" % (a, b, c)


def community_id(src, sport, dst, dport, proto=6, seed=0):
    """Community ID v1 (community-id-spec): SHA-1 over the ordered flow tuple, base64."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    a, b = socket.inet_pton(fam, src), socket.inet_pton(fam, dst)
    if (a, sport) > (b, dport):
        a, b, sport, dport = b, a, dport, sport
    data = struct.pack(">H", seed) + a + b + struct.pack(">BBHH", proto, 0, sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


ctx = harness.start(__file__, v4=[V4])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "tls443", "host": V4, "port": 443, "kind": "tls-raw"},
        {"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"},
        {"name": "origin80", "host": V4, "port": 80, "kind": "http-origin"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])

    # The JA4 python's ssl sends for allowed.example: the allow list of the locked tier and
    # the deny list of the other (computed here, from a hello of the same client).
    PY_JA4 = ja4_of(harness.TlsClient("allowed.example", cafile=certs["ca"]).hello())
    allow = [{"host": "allowed.example", "ports": [443, 80, 8080]}]
    px = harness.Proxy(ctx, "proxy", {
        "a": {"sources": ["127.0.0.2/32"], "allow": allow},
        "locked": {"sources": ["127.0.0.3/32"], "allow": allow, "tls": {"ja4_allow": [PY_JA4]}},
        "blocklist": {"sources": ["127.0.0.4/32"], "allow": allow, "tls": {"ja4_deny": [PY_JA4]}},
    }, audit={"tunnel_start": True, "interim": "%ds" % INTERIM_S}).start()
    audit = px.audit

    def records_of(trace):
        return [r for r in audit.records() if get(r, "trace.id") == trace]

    def tls_tunnel(src, sni="allowed.example"):
        """A real TLS handshake and one exchange through a tunnel; (hello bytes, record)."""
        r = harness.connect("allowed.example:443", src=src)
        expect(r.status == 200, "CONNECT from %s: %s" % (src, r.describe()))
        c = harness.TlsClient(sni, cafile=certs["ca"])
        hello = c.hello()
        r.sock.sendall(hello)
        c.finish(r.sock, timeout=10)
        c.send(r.sock, b"SAY siem\n")
        line = c.recv_line(r.sock, timeout=10)
        r.close()
        expect(line == b"siem\n", "TLS answer %r" % line)
        rec = audit.wait_one(lambda x: get(x, "source.port") == r.src_port and
                             "end" in as_list(get(x, "event.type")), timeout=8)
        expect(rec is not None, "no close record for source port %d" % r.src_port)
        return hello, rec

    with ctx.case("JA4 of a real OpenSSL ClientHello is logged as tls.client.ja4, equal to an "
                  "independent computation from the bytes sent"):
        hello, rec = tls_tunnel("127.0.0.2")
        want = ja4_of(hello)
        expect(get(rec, "tls.client.ja4") == want, "tls.client.ja4 %r, computed %r" %
               (get(rec, "tls.client.ja4"), want))
        expect(want == PY_JA4, "the client's JA4 changed between two hellos: %s vs %s" % (want, PY_JA4))

    with ctx.case("tls.ja4_allow: a listed client passes, another ClientHello is cut with "
                  "tls_ja4_not_allowed and the upstream receives nothing"):
        _hello, rec = tls_tunnel("127.0.0.3")
        expect(get(rec, "rule.ruleset") == "locked", "ruleset %r" % get(rec, "rule.ruleset"))
        mark = ups.mark("tls443")
        r = harness.connect("allowed.example:443", src="127.0.0.3")
        expect(r.status == 200, "CONNECT: %s" % r.describe())
        other = harness.tls_records(harness.client_hello(sni="allowed.example", alpn=["h2"]))
        expect(ja4_of(other) != PY_JA4, "the hand-made hello has the listed JA4")
        r.sock.sendall(other)
        res = harness.await_close(r.sock, timeout=8)
        r.close()
        expect(res["end"] is not None and res["got"] == b"", "not cut: %r" % res)
        rec = audit.by_port(r.src_port, timeout=8)
        harness.check_cut_record(rec, "tls_ja4_not_allowed", sni="allowed.example")
        expect(get(rec, "tls.client.ja4") == ja4_of(other), "record JA4 %r" % get(rec, "tls.client.ja4"))
        sess = ups.sessions_since("tls443", mark, 2)
        expect(sess and all(cl is not None and cl.get("raw_rx", cl.get("rx", 0)) == 0 for _, cl in sess),
               "the upstream received bytes of a refused hello (or stayed open): %r" % sess)

    with ctx.case("tls.ja4_deny: the listed client is cut with tls_ja4_not_allowed"):
        r = harness.connect("allowed.example:443", src="127.0.0.4")
        expect(r.status == 200, "CONNECT: %s" % r.describe())
        r.sock.sendall(harness.TlsClient("allowed.example", cafile=certs["ca"]).hello())
        res = harness.await_close(r.sock, timeout=8)
        r.close()
        expect(res["end"] is not None, "not cut: %r" % res)
        rec = audit.by_port(r.src_port, timeout=8)
        harness.check_cut_record(rec, "tls_ja4_not_allowed", sni="allowed.example")
        expect(get(rec, "rule.ruleset") == "blocklist", "ruleset %r" % get(rec, "rule.ruleset"))

    with ctx.case("--check refuses a JA4 value that is not a fingerprint, naming its line"):
        bad = ctx.path("bad-ja4.yaml")
        pol = harness.base_policy(ctx.path("x.log"), {
            "t": {"sources": ["10.0.0.0/8"], "allow": allow,
                  "tls": {"ja4_deny": ["t13d1516h2_8DAAF6152771_e5627efa2ab1"]}}})
        with open(bad, "w") as f:
            f.write(harness.to_yaml(pol) + "\n")
        res = subprocess.run([ctx.binary, "--check", bad], capture_output=True, text=True, timeout=20)
        expect(res.returncode != 0, "--check accepted an uppercase JA4 hash")
        expect("not a JA4 fingerprint" in res.stderr and "bad-ja4.yaml:" in res.stderr,
               "--check said %r" % res.stderr[:300])

    with ctx.case("a long tunnel: start record, an interim record every audit.interim, one close "
                  "record; all share trace.id and event.start; @timestamp is when each happened"):
        t_open = time.time()
        r = harness.connect("allowed.example:8080", src="127.0.0.2")
        expect(r.status == 200, "CONNECT: %s" % r.describe())
        r.sock.sendall(b"HOLD\n")
        expect(harness.recv_line(r.sock, r.leftover) == b"HOLD ok\n", "no HOLD answer")
        start = audit.wait_one(lambda x: get(x, "source.port") == r.src_port and
                               "start" in as_list(get(x, "event.type")), timeout=8)
        expect(start is not None, "no start record for the open tunnel")
        trace = get(start, "trace.id")
        expect(isinstance(trace, str) and len(trace) == 32, "trace.id %r" % trace)

        def interims():
            return [x for x in records_of(trace) if "info" in as_list(get(x, "event.type"))]
        got = harness.wait_until(lambda: len(interims()) >= 2 and interims(), 4 * INTERIM_S + 30)
        expect(got, "%d interim records after %.0fs of an open tunnel (audit.interim %ds)" %
               (len(interims()), time.time() - t_open, INTERIM_S))
        r.sock.sendall(b"bytes after the interims\n")
        harness.recv_line(r.sock, timeout=5)
        r.close()
        close = audit.wait_one(lambda x: get(x, "trace.id") == trace and
                               "end" in as_list(get(x, "event.type")), timeout=8)
        expect(close is not None, "no close record")
        harness.check_tunnel_record(close)
        recs = records_of(trace)
        ends = [x for x in recs if "end" in as_list(get(x, "event.type"))]
        starts = [x for x in recs if "start" in as_list(get(x, "event.type"))]
        expect(len(ends) == 1 and len(starts) == 1, "%d close and %d start records" % (len(ends), len(starts)))
        expect(len({get(x, "event.id") for x in recs}) == len(recs), "event.id repeats")
        expect(len({get(x, "event.start") for x in recs}) == 1, "event.start differs: %r" %
               [get(x, "event.start") for x in recs])
        seq = [start] + sorted(interims(), key=lambda x: harness.ecs_time_ns(get(x, "@timestamp"))) + [close]
        stamps = [harness.ecs_time_ns(get(x, "@timestamp")) for x in seq]
        expect(stamps == sorted(stamps) and stamps[-1] - stamps[0] >= 2 * INTERIM_S * 10**9,
               "@timestamps not in order or not spread over the tunnel's life: %r" %
               [get(x, "@timestamp") for x in seq])
        ups_ = [get(x, "source.bytes") for x in seq]
        expect(ups_ == sorted(ups_) and ups_[-1] > ups_[0], "source.bytes not growing: %r" % ups_)
        for x in interims():
            expect(get(x, "event.category") == ["network"] and get(x, "event.outcome") == "success",
                   "interim record %r" % x)
        expect(abs(harness.ecs_time_ns(get(close, "event.end")) / 1e9 - time.time()) < 30,
               "close record's event.end %s is not the close" % get(close, "event.end"))

    with ctx.case("network.community_id is the client's flow to the listener (Community ID v1)"):
        r = harness.connect("allowed.example:8080", src="127.0.0.2")
        expect(r.status == 200, "CONNECT: %s" % r.describe())
        r.close()
        rec = audit.wait_one(lambda x: get(x, "source.port") == r.src_port and
                             "end" in as_list(get(x, "event.type")), timeout=8)
        want = community_id("127.0.0.2", r.src_port, "127.0.0.1", 3128)
        expect(get(rec, "network.community_id") == want, "community_id %r, want %r" %
               (get(rec, "network.community_id"), want))

    with ctx.case("keep-alive plain HTTP: one trace.id for every request of the connection, "
                  "one event.id each, user_agent.original, [network, web] [access]"):
        c = harness.HttpClient("127.0.0.2")
        for i in (1, 2):
            c.send(b"GET http://allowed.example/ka/%d HTTP/1.1\r\nHost: allowed.example\r\n"
                   b"User-Agent: siem-test/%d\r\n\r\n" % (i, i))
            resp = c.response()
            expect(resp.status == 200, "request %d: %s" % (i, resp.describe()))
        port = c.src_port
        c.close()
        recs = harness.wait_until(lambda: (lambda v: v if len(v) >= 2 else None)(
            [x for x in audit.records() if get(x, "source.port") == port and
             get(x, "event.action") == "http-request"]), 8)
        expect(recs and len(recs) == 2, "records of the keep-alive connection: %r" % recs)
        for i, rec in enumerate(sorted(recs, key=lambda x: get(x, "url.path")), 1):
            harness.check_http_record(rec, "GET", 200, "allowed", "allowed.example", "/ka/%d" % i, 80)
            expect(get(rec, "user_agent.original") == "siem-test/%d" % i, "user_agent.original %r" %
                   get(rec, "user_agent.original"))
        expect(get(recs[0], "trace.id") == get(recs[1], "trace.id"), "trace.id differs: %r %r" %
               (get(recs[0], "trace.id"), get(recs[1], "trace.id")))
        expect(get(recs[0], "event.id") != get(recs[1], "event.id"), "event.id repeats")

    ctx.final_checks([audit])
