#!/usr/bin/python3
"""Scenario 7: the first flight inside a tunnel (TLS ClientHello inspection).

After "200 Connection established" on a port in tls.require_tls_ports (and on
any port when the client's first byte is 0x16) the proxy holds the client's
bytes until one complete ClientHello arrived, then decides.  A refusal closes
the client, resets the upstream, which must have received ZERO bytes (its
listener counts every byte on the wire), and writes a denied record with the
reason and status 200.  Refused: SNI mismatch (openssl s_client -servername),
no SNI (-noservername), an SSH banner on 443, ECH / draft ESNI, truncated
hellos (closed -> tls_malformed, waiting -> tls_hello_timeout), not a
ClientHello, oversized hellos (crafted padding, real ALPN-stuffed).  Accepted
and completed end to end: a real hello written one byte per write(), re-framed
into several TLS records, near the size cap, with a case/trailing-dot SNI, to an
IP literal; tls.* audit fields.  Non-TLS ports pass plain and server-first
protocols untouched, but a 0x16 first byte there is inspected too.

Hellos come from python's ssl (OpenSSL) over MemoryBIOs, so a real handshake
can be fed through the tunnel with segmentation of the test's choosing;
crafted hellos are self-checked against an in-process OpenSSL server first.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

V4 = "198.51.100.10"
V4B = "198.51.100.11"
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"
EARLY = "EARLY-BANNER from upstream\r\n"
QUICK_TIMEOUT = 1.5     # tier quick: tls.hello_timeout 1500ms
DEFAULTS_TIMEOUT = 1.0  # proxy "defaults": top-level tls.hello_timeout 1s
ALPN_NEAR = ["p%03d" % i + "x" * 246 for i in range(60)]   # real hello ~15.4 KB: under 16KiB
ALPN_OVER = ["p%03d" % i + "x" * 246 for i in range(70)]   # real hello ~17.9 KB: over 16KiB

ctx = harness.start(__file__, v4=[V4, V4B])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "tls443", "host": V4, "port": 443, "kind": "tls-raw"},
        {"name": "tls8443", "host": V4, "port": 8443, "kind": "tls-raw"},
        {"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"},
        {"name": "greet8022", "host": V4, "port": 8022, "kind": "greet", "greeting": "SSH-2.0-upstream_1.0\r\n"},
        {"name": "banner443", "host": V4B, "port": 443, "kind": "greet", "greeting": EARLY},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", V4), ("other.example", V4), ("evil.example", V4), ("port8443.example", V4),
        ("banner.example", V4B),
    ])
    tiers = {
        # every key spelled out, with the contract's default values
        "t": {"sources": ["127.0.0.1/32", "127.0.0.2/32"],
              "allow": [{"host": "allowed.example", "ports": [443, 8080, 8443, 8022]},
                        {"host": "other.example", "ports": [443]},
                        {"host": V4, "ports": [443]},
                        {"host": "banner.example", "ports": [443]}],
              "tls": {"require_sni": True, "sni_must_match": True, "require_tls_ports": [443],
                      "allow_ech": False, "hello_timeout": "5s", "max_hello_bytes": "16KiB"}},
        "loose": {"sources": ["127.0.0.3/32"],
                  "allow": [{"host": "allowed.example", "ports": [443]},
                            {"host": "other.example", "ports": [443]},
                            {"host": "port8443.example", "ports": [8443]}],
                  "tls": {"require_sni": False, "sni_must_match": False}},
        "quick": {"sources": ["127.0.0.4/32"],
                  "allow": [{"host": "allowed.example", "ports": [443]},
                            {"host": "banner.example", "ports": [443]}],
                  "tls": {"hello_timeout": "1500ms"}},
        "ech": {"sources": ["127.0.0.5/32"], "allow": [{"host": "allowed.example", "ports": [443]}],
                "tls": {"allow_ech": True}},
    }
    px = harness.Proxy(ctx, "proxy", tiers).start()
    # Top-level tls defaults, inherited by a tier without a tls key.
    dpx = harness.Proxy(ctx, "defaults", {
        "d": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [443, 8443]}]},
    }, proxy_port=3129, admin_port=9091,
        tls={"require_tls_ports": [443, 8443], "hello_timeout": "1s"}).start()
    audit = px.audit
    RESETS = []   # (case, listener, how the upstream connection ended) for every cut

    def upstream_end(ev):
        if ev.get("end"):
            return ev["end"]
        return "reset" if "ConnectionResetError" in ev.get("error", "") else "eof"

    def rx_of(ev):
        return ev["raw_rx"] if "raw_rx" in ev else ev["rx"]

    def tunnel(target, src="127.0.0.2", proxy=None, server_first=False):
        p = proxy or px
        r = harness.connect(target, src=src, proxy_port=p.port)
        expect(r.status == 200, "CONNECT %s from %s: %s" % (target, src, r.describe()))
        if not server_first:
            # (a server-first upstream's banner may arrive in the same read as the 200)
            expect(r.leftover == b"", "bytes after the 200 head before anything was sent: %r" %
                   r.leftover[:80])
        return r

    def expect_cut(label, r, listener, mark, reason, sni=None, within=5.0, proxy=None):
        """The tunnel r must be cut: client gets EOF/RST and no byte, the upstream listener
        received zero bytes and its connection is closed, one denied record (status 200)."""
        p = proxy or px
        res = harness.await_close(r.sock, within)
        r.close()
        rec = p.audit.by_port(r.src_port, timeout=5)
        seen = "audit: %s" % ("reason %r, type %r" % (get(rec, "event.reason"), get(rec, "event.type"))
                              if rec else "no record")
        expect(res["end"] is not None, "tunnel still open %.1fs later, want cut with %s (%s)" %
               (within, reason, seen))
        expect(res["got"] == b"", "client received %d bytes inside the tunnel before the cut: %r" %
               (len(res["got"]), res["got"][:60]))
        sess = ups.sessions_since(listener, mark, 5)
        expect(len(sess) <= 1, "upstream %s accepted %d connections, want at most 1" % (listener, len(sess)))
        for _a, c in sess:
            expect(c is not None, "upstream %s connection still open 5s after the cut (%s)" % (listener, seen))
            expect(rx_of(c) == 0, "upstream %s RECEIVED %d bytes (first: %s), want 0 (%s)" %
                   (listener, rx_of(c), c.get("raw_head", "")[:40], seen))
            RESETS.append((label, listener, upstream_end(c)))
        expect(rec is not None, "no audit record for source port %s" % r.src_port)
        harness.check_cut_record(rec, reason, sni)
        return res, rec

    def raw_cut(label, target, data, listener, reason, sni=None, src="127.0.0.2", shut=False, within=5.0,
                proxy=None):
        """CONNECT, write data (a write refused by the cut is fine), expect the cut."""
        mark = ups.mark(listener)
        r = tunnel(target, src, proxy)
        try:
            r.sock.sendall(data)
            if shut:
                r.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return expect_cut(label, r, listener, mark, reason, sni, within, proxy)

    def check_tls_fields(rec, sni, version="1.3", alpn=None):
        want = {"tls.client.server_name": sni, "tls.version": version, "tls.version_protocol": "tls",
                "tls.next_protocol": alpn}
        for k, v in want.items():
            expect(get(rec, k) == v, "audit %s = %r, want %r" % (k, get(rec, k), v))

    def e2e(target, sni, src="127.0.0.2", alpn=None, feed=None, listener="tls443", verify_name=True):
        """A real handshake through the tunnel: the hello written by feed(sock, hello) (or in
        one write), the rest by the MemoryBIO client, then a SAY round trip.  Returns
        (record, time the last hello byte was written, upstream close event)."""
        mark = ups.mark(listener)
        r = tunnel(target, src)
        c = harness.TlsClient(sni, cafile=certs["ca"], alpn=alpn, verify_name=verify_name)
        hello = c.hello()
        if feed:
            feed(r.sock, hello)
        else:
            r.sock.sendall(hello)
        t_sent = time.time()
        token = b"e2e-%d" % r.src_port
        try:
            c.finish(r.sock, timeout=10)
            c.send(r.sock, b"SAY " + token + b"\n")
            line = c.recv_line(r.sock, timeout=10)
        except (harness.CaseFailed, OSError, c.ssl.SSLError) as e:
            rec = audit.by_port(r.src_port, timeout=3)
            r.close()
            raise harness.CaseFailed("handshake/exchange through the tunnel failed: %s; audit: %s" %
                                     (e, "reason %r type %r" % (get(rec, "event.reason"), get(rec, "event.type"))
                                      if rec else "no record"))
        r.close()
        expect(line == token + b"\n", "TLS answer %r, want %r" % (line, token))
        sess = ups.sessions_since(listener, mark, 5)
        expect(len(sess) == 1, "upstream %s saw %d connections, want 1" % (listener, len(sess)))
        rec = audit.by_port(r.src_port, timeout=5)
        expect(rec is not None, "no audit record for source port %s" % r.src_port)
        harness.check_tunnel_record(rec)
        return rec, t_sent, sess[0]

    def s_client(args, stdin=b"SAY s_client-in-tunnel\n"):
        exe = harness.need(shutil.which("openssl") or "/usr/bin/openssl")
        p = subprocess.run([exe, "s_client", "-proxy", "127.0.0.1:3128", "-CAfile", certs["ca"], "-quiet"]
                           + list(args), input=stdin, capture_output=True, timeout=20,
                           preexec_fn=harness.die_with_me())
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def s_client_cut(args, reason, sni):
        mark, amark = ups.mark("tls443"), audit.mark()
        rc, out, err = s_client(args)
        expect("s_client-in-tunnel" not in out, "s_client completed a round trip: %r" % out[-200:])
        expect(rc != 0, "s_client exit 0 (stderr %r)" % err[-200:])
        sess = ups.sessions_since("tls443", mark, 5)
        expect(len(sess) <= 1, "upstream accepted %d connections" % len(sess))
        for _a, c in sess:
            expect(c is not None, "upstream connection still open 5s after s_client ended")
            expect(rx_of(c) == 0, "upstream RECEIVED %d bytes (first: %s), want 0" %
                   (rx_of(c), c.get("raw_head", "")[:40]))
            RESETS.append(("s_client " + " ".join(args), "tls443", upstream_end(c)))
        rec = audit.wait_new(amark, lambda r: get(r, "source.ip") == "127.0.0.1", timeout=5)
        expect(rec is not None, "no audit record for the s_client connection (source 127.0.0.1)")
        harness.check_cut_record(rec, reason, sni)
        return rec

    # ---------------------------------------------------------------- self-checks
    crafted = {
        "ECH": harness.tls_records(harness.client_hello("allowed.example", ech=True)),
        "ESNI": harness.tls_records(harness.client_hello("allowed.example", esni=True)),
        "padding 20000": harness.tls_records(harness.client_hello("allowed.example", padding=20000)),
        "padding 20000, first record 1000": harness.tls_records(
            harness.client_hello("allowed.example", padding=20000), cuts=[1000]),
        "TLS 1.2 only": harness.tls_records(harness.client_hello("allowed.example", versions=None)),
        "GREASE": harness.tls_records(harness.client_hello(
            "allowed.example", versions=(0x0a0a, 0x0304, 0x0303), extra=[harness.tls_ext(0x2a2a, b"")])),
        "SNI evil.example on 8080": harness.tls_records(harness.client_hello("evil.example")),
    }
    with ctx.case("self-check: crafted hellos parse, record lengths valid, OpenSSL answers each with a ServerHello"):
        bad = []
        for name, h in crafted.items():
            try:
                p = harness.parse_client_hello(h)
                if p["consumed"] != len(h) or any(n > harness.TLS_MAX_FRAGMENT for _, n in p["records"]):
                    bad.append("%s: records %r" % (name, p["records"]))
            except ValueError as e:
                bad.append("%s: %s" % (name, e))
                continue
            ok, why = harness.openssl_answers(h, certs)
            if not ok:
                bad.append("%s: %s" % (name, why))
        for name, alpn in (("near cap", ALPN_NEAR), ("over cap", ALPN_OVER)):
            h = harness.real_hello("allowed.example", alpn=alpn)
            size = len(h)
            if (name == "near cap") != (size <= 16384):
                bad.append("real hello %s is %d bytes" % (name, size))
        expect(len(crafted["padding 20000"]) > 16384 and harness.parse_client_hello(
            crafted["padding 20000"])["exts"].get(harness.EXT_PADDING), "oversized hello is not oversized")
        expect(not bad, "; ".join(bad))

    # ---------------------------------------------------------------- refusals after 200
    with ctx.case("s_client -connect allowed.example:443 -servername evil.example (not allowed) "
                  "-> cut, upstream 0 bytes, tls_sni_mismatch"):
        s_client_cut(["-connect", "allowed.example:443", "-servername", "evil.example"],
                     "tls_sni_mismatch", "evil.example")

    with ctx.case("s_client -servername other.example (allowed, but not the CONNECT host) -> tls_sni_mismatch"):
        s_client_cut(["-connect", "allowed.example:443", "-servername", "other.example"],
                     "tls_sni_mismatch", "other.example")

    with ctx.case("s_client -noservername -> cut, upstream 0 bytes, tls_no_sni"):
        rec = s_client_cut(["-connect", "allowed.example:443", "-noservername"], "tls_no_sni", None)
        expect(get(rec, "tls.client.server_name") is None,
               "tls.client.server_name %r without an SNI" % get(rec, "tls.client.server_name"))

    with ctx.case("s_client -servername allowed.example completes; record has tls.client.server_name, "
                  "tls.version 1.3, tls.version_protocol tls"):
        mark, amark = ups.mark("tls443"), audit.mark()
        rc, out, err = s_client(["-connect", "allowed.example:443", "-servername", "allowed.example",
                                 "-verify_return_error", "-verify_hostname", "allowed.example"])
        expect("s_client-in-tunnel" in out, "s_client exit %d, stdout %r, stderr %r" % (rc, out[-200:], err[-300:]))
        rec = audit.wait_new(amark, lambda r: get(r, "source.ip") == "127.0.0.1", timeout=5)
        expect(rec is not None, "no audit record for the s_client tunnel")
        harness.check_tunnel_record(rec)
        check_tls_fields(rec, "allowed.example")

    with ctx.case("SSH banner on allowed.example:443 -> cut, upstream 0 bytes, not_tls"):
        raw_cut("ssh on 443", "allowed.example:443", SSH_BANNER, "tls443", "not_tls")

    with ctx.case("HTTP request on allowed.example:443 -> not_tls"):
        raw_cut("http on 443", "allowed.example:443", b"GET / HTTP/1.1\r\nHost: allowed.example\r\n\r\n",
                "tls443", "not_tls")

    with ctx.case("crafted ClientHello with ECH (0xfe0d), SNI = CONNECT host -> cut, upstream 0 bytes, tls_ech"):
        raw_cut("ech", "allowed.example:443", crafted["ECH"], "tls443", "tls_ech", sni="allowed.example")

    with ctx.case("crafted ClientHello with draft ESNI (0xffce) -> tls_ech"):
        raw_cut("esni", "allowed.example:443", crafted["ESNI"], "tls443", "tls_ech", sni="allowed.example")

    hello_real = harness.real_hello("allowed.example")
    with ctx.case("truncated hello, then the client closes (SHUT_WR) -> tls_malformed at once, not a timeout"):
        res, _ = raw_cut("truncated+closed", "allowed.example:443", hello_real[:100], "tls443", "tls_malformed",
                         shut=True, within=4.0)
        expect(res["elapsed"] < 3.0, "cut %.1fs after EOF (hello_timeout is 5s): the EOF was not acted on" %
               res["elapsed"])

    with ctx.case("truncated hello, client waits (tier hello_timeout 1500ms) -> tls_hello_timeout at ~1.5s"):
        mark = ups.mark("tls443")
        r = tunnel("allowed.example:443", src="127.0.0.4")
        r.sock.sendall(hello_real[:100])
        res, _ = expect_cut("truncated+waiting", r, "tls443", mark, "tls_hello_timeout", within=QUICK_TIMEOUT + 4)
        expect(QUICK_TIMEOUT - 0.3 <= res["elapsed"] <= QUICK_TIMEOUT + 2.5,
               "cut %.2fs after the partial hello, want ~%.1fs" % (res["elapsed"], QUICK_TIMEOUT))

    with ctx.case("TLS port, server speaks first, client silent: the upstream's early bytes are NOT relayed; "
                  "tls_hello_timeout"):
        mark = ups.mark("banner443")
        r = tunnel("banner.example:443", src="127.0.0.4")
        res, _ = expect_cut("silent on banner443", r, "banner443", mark, "tls_hello_timeout",
                            within=QUICK_TIMEOUT + 4)
        expect(QUICK_TIMEOUT - 0.3 <= res["elapsed"] <= QUICK_TIMEOUT + 2.5,
               "cut %.2fs after the 200, want ~%.1fs" % (res["elapsed"], QUICK_TIMEOUT))

    with ctx.case("handshake message that is not a ClientHello (type 2) -> tls_malformed"):
        raw_cut("not a hello", "allowed.example:443",
                harness.tls_records(harness.client_hello("allowed.example", hs_type=2)), "tls443", "tls_malformed")

    with ctx.case("ClientHello whose extensions length overruns the message -> tls_malformed"):
        m = bytearray(harness.client_hello("allowed.example"))
        p = harness.parse_client_hello(harness.tls_records(bytes(m)))
        first_ext = p["exts"][p["ext_types"][0]][0] - 4          # offset of the first extension
        struct.pack_into(">H", m, first_ext - 2, struct.unpack(">H", m[first_ext - 2:first_ext])[0] + 7)
        bad = harness.tls_records(bytes(m))
        try:
            harness.parse_client_hello(bad)
            raise harness.CaseFailed("self-check: the corrupted hello still parses")
        except ValueError:
            pass
        raw_cut("malformed ext length", "allowed.example:443", bad, "tls443", "tls_malformed")

    with ctx.case("crafted hello over max_hello_bytes (20 KB padding, two valid records) -> tls_hello_too_large"):
        raw_cut("oversized padding", "allowed.example:443", crafted["padding 20000"], "tls443",
                "tls_hello_too_large")

    with ctx.case("same, first record only 1000 bytes (the cap is crossed by the second record) "
                  "-> tls_hello_too_large"):
        raw_cut("oversized padding 2", "allowed.example:443", crafted["padding 20000, first record 1000"],
                "tls443", "tls_hello_too_large")

    with ctx.case("real OpenSSL hello stuffed with 70 ALPN names (~17.9 KB, two records) -> tls_hello_too_large"):
        raw_cut("oversized alpn", "allowed.example:443", harness.real_hello("allowed.example", alpn=ALPN_OVER),
                "tls443", "tls_hello_too_large")

    with ctx.case("IP-literal CONNECT 198.51.100.10:443, SNI evil.example (not allowed) -> tls_sni_not_allowed"):
        raw_cut("literal evil", "%s:443" % V4, harness.real_hello("evil.example"), "tls443",
                "tls_sni_not_allowed", sni="evil.example")

    with ctx.case("IP-literal CONNECT 198.51.100.10:443 without SNI (require_sni) -> tls_no_sni"):
        raw_cut("literal nosni", "%s:443" % V4, harness.real_hello(None), "tls443", "tls_no_sni")

    with ctx.case("tier loose (sni_must_match false): SNI evil.example not allowed -> tls_sni_not_allowed"):
        raw_cut("loose evil", "allowed.example:443", harness.real_hello("evil.example"), "tls443",
                "tls_sni_not_allowed", sni="evil.example", src="127.0.0.3")

    with ctx.case("tier loose: SNI port8443.example, allowed only on 8443, on 443 -> tls_sni_not_allowed"):
        raw_cut("loose port", "allowed.example:443", harness.real_hello("port8443.example"), "tls443",
                "tls_sni_not_allowed", sni="port8443.example", src="127.0.0.3")

    with ctx.case("first byte 0x16 on non-TLS port 8080 is inspected: SNI evil.example -> cut, "
                  "upstream 0 bytes, tls_sni_mismatch"):
        raw_cut("0x16 on 8080", "allowed.example:8080", crafted["SNI evil.example on 8080"], "raw8080",
                "tls_sni_mismatch", sni="evil.example")

    with ctx.case("top-level tls defaults: require_tls_ports [443, 8443] inherited, SSH banner on 8443 -> not_tls"):
        raw_cut("defaults ssh 8443", "allowed.example:8443", SSH_BANNER, "tls8443", "not_tls", proxy=dpx)

    with ctx.case("top-level tls defaults: hello_timeout 1s inherited -> tls_hello_timeout at ~1s"):
        res, _ = raw_cut("defaults timeout", "allowed.example:443", hello_real[:60], "tls443",
                         "tls_hello_timeout", within=DEFAULTS_TIMEOUT + 4, proxy=dpx)
        expect(DEFAULTS_TIMEOUT - 0.3 <= res["elapsed"] <= DEFAULTS_TIMEOUT + 2.5,
               "cut %.2fs after the partial hello, want ~%.1fs" % (res["elapsed"], DEFAULTS_TIMEOUT))

    # ---------------------------------------------------------------- accepted, end to end
    def one_byte_per_write(sock, hello):
        harness.send_paced(sock, hello, piece=1, delay=0.004, limit=10)

    with ctx.case("real hello written ONE BYTE per write() (4 ms apart) is accepted, held until complete, "
                  "handshake completes; tls.* audit fields incl. tls.next_protocol h2"):
        rec, t_sent, (acc, close) = e2e("allowed.example:443", "allowed.example", alpn=["h2"],
                                        feed=one_byte_per_write)
        check_tls_fields(rec, "allowed.example", alpn="h2")
        first = ups.first_rx("tls443", acc["peer"])
        expect(first is not None, "upstream never logged its first byte")
        expect(first >= t_sent - 0.05, "upstream got its first byte %.2fs BEFORE the last hello byte was "
               "written: bytes were forwarded before the verdict" % (t_sent - first))

    with ctx.case("real hello re-framed into two TLS records (split inside the SNI), one write: accepted, "
                  "handshake completes"):
        def two_records(sock, hello):
            p = harness.parse_client_hello(hello)
            cut = p["exts"][harness.EXT_SNI][0] + 8
            sock.sendall(harness.reframe(hello, [cut]))
        rec, _, _ = e2e("allowed.example:443", "allowed.example", feed=two_records)
        check_tls_fields(rec, "allowed.example")

    with ctx.case("real hello in three records (1-byte fragments of the handshake header), record header "
                  "split across writes: accepted, handshake completes"):
        def three_records(sock, hello):
            data = harness.reframe(hello, [1, 2])
            harness.send_paced(sock, data[:3], piece=3, delay=0.05)
            harness.send_paced(sock, data[3:9], piece=6, delay=0.05)
            sock.sendall(data[9:])
        rec, _, _ = e2e("allowed.example:443", "allowed.example", feed=three_records)
        check_tls_fields(rec, "allowed.example")

    with ctx.case("real hello near the cap (60 ALPN names, ~15.4 KB) is accepted and completes; "
                  "no tls.next_protocol (many offered)"):
        rec, _, _ = e2e("allowed.example:443", "allowed.example", alpn=ALPN_NEAR)
        check_tls_fields(rec, "allowed.example", alpn=None)

    with ctx.case("SNI 'ALLOWED.Example.' (case, trailing dot) matches CONNECT allowed.example"):
        rec, _, _ = e2e("allowed.example:443", "ALLOWED.Example.", verify_name=False)
        got = get(rec, "tls.client.server_name")
        expect(isinstance(got, str) and got.lower().rstrip(".") == "allowed.example",
               "tls.client.server_name %r" % got)

    with ctx.case("IP-literal CONNECT 198.51.100.10:443 with an allowed SNI (allowed.example) completes"):
        rec, _, _ = e2e("%s:443" % V4, "allowed.example")
        check_tls_fields(rec, "allowed.example")

    with ctx.case("tier loose: SNI other.example (allowed, not the CONNECT host) completes"):
        rec, _, _ = e2e("allowed.example:443", "other.example", src="127.0.0.3")
        check_tls_fields(rec, "other.example")

    with ctx.case("tier loose (require_sni false): no SNI completes; no tls.client.server_name"):
        rec, _, _ = e2e("allowed.example:443", None, src="127.0.0.3")
        check_tls_fields(rec, None)

    def crafted_accepted(hello, src="127.0.0.2", target="allowed.example:443", listener="tls443"):
        """A crafted hello that must be forwarded whole (the upstream answers; the client
        cannot finish a crafted handshake and closes)."""
        mark = ups.mark(listener)
        r = tunnel(target, src)
        r.sock.sendall(hello)
        ans = harness.recv_exact(r.sock, 6, timeout=5)
        r.close()
        rec = audit.by_port(r.src_port, timeout=5)
        expect(len(ans) == 6 and ans[0] == 0x16 and ans[5] == 2,
               "no ServerHello came back through the tunnel (got %r); audit %s" %
               (ans, "reason %r" % get(rec, "event.reason") if rec else "none"))
        sess = ups.sessions_since(listener, mark, 5)
        expect(len(sess) == 1 and sess[0][1] is not None and rx_of(sess[0][1]) == len(hello),
               "upstream received %r bytes, want the %d-byte hello" %
               ([rx_of(c) if c else "open" for _, c in sess], len(hello)))
        expect(rec is not None, "no audit record")
        harness.check_tunnel_record(rec)
        return rec

    with ctx.case("tier with allow_ech true: the ECH hello is forwarded whole"):
        crafted_accepted(crafted["ECH"], src="127.0.0.5")

    with ctx.case("TLS 1.2-only hello -> tls.version 1.2"):
        rec = crafted_accepted(crafted["TLS 1.2 only"])
        check_tls_fields(rec, "allowed.example", version="1.2")

    with ctx.case("GREASE in supported_versions and extensions -> accepted, tls.version 1.3"):
        rec = crafted_accepted(crafted["GREASE"])
        check_tls_fields(rec, "allowed.example", version="1.3")

    with ctx.case("TLS port, server speaks first: nothing relayed while the hello is pending; its non-TLS "
                  "bytes after the hello end the tunnel (tls_server_malformed), the client gets none of them"):
        mark = ups.mark("banner443")
        r = tunnel("banner.example:443")
        r.sock.settimeout(0.8)
        try:
            early = r.sock.recv(4096)
        except socket.timeout:
            early = None
        expect(early is None, "client received %r before sending any hello" % early)
        hello = harness.real_hello("banner.example")
        r.sock.sendall(hello)
        res = harness.await_close(r.sock, 5)
        r.close()
        expect(res["end"] is not None and res["got"] == b"",
               "after the hello the client got %r (end %s), want nothing and a close" % (res["got"][:60], res["end"]))
        sess = ups.sessions_since("banner443", mark, 5)
        # The banner was there before the hello: the hello may be cut before it left, never
        # anything more than the hello.
        expect(len(sess) == 1 and sess[0][1] is not None and rx_of(sess[0][1]) in (0, len(hello)),
               "upstream received %r bytes, want 0 or the %d-byte hello" %
               ([rx_of(c) if c else "open" for _, c in sess], len(hello)))
        rec = audit.by_port(r.src_port, timeout=5)
        expect(rec is not None, "no audit record")
        harness.check_cut_record(rec, "tls_server_malformed", "banner.example")

    # ---------------------------------------------------------------- non-TLS ports
    with ctx.case("plain protocol on non-TLS port 8080 passes untouched; no tls.* in the record"):
        r = tunnel("allowed.example:8080")
        blob = b"PLAIN\n" + bytes(range(256)) * 8
        r.sock.sendall(blob)
        got = harness.recv_exact(r.sock, len(blob), timeout=5)
        r.close()
        expect(got == blob, "echo of %d bytes came back as %d bytes%s" %
               (len(blob), len(got), " (differs)" if len(got) == len(blob) else ""))
        rec = audit.by_port(r.src_port, timeout=5)
        expect(rec is not None, "no audit record")
        harness.check_tunnel_record(rec)
        tls_keys = sorted(k for k in harness.flatten(rec) if k.startswith("tls."))
        expect(not tls_keys, "plain tunnel record carries %s" % tls_keys)

    with ctx.case("server-first protocol on non-TLS port 8022: the banner arrives before the client sends"):
        mark = ups.mark("greet8022")
        r = tunnel("allowed.example:8022", server_first=True)
        got = harness.recv_line(r.sock, r.leftover, timeout=3)
        expect(got == b"SSH-2.0-upstream_1.0\r\n", "client got %r before sending anything" % got)
        r.sock.sendall(SSH_BANNER)
        r.sock.shutdown(socket.SHUT_WR)
        harness.await_close(r.sock, 5)
        r.close()
        sess = ups.sessions_since("greet8022", mark, 5)
        expect(len(sess) == 1 and sess[0][1] is not None and sess[0][1]["rx"] == len(SSH_BANNER),
               "upstream received %r, want the %d-byte client banner" %
               ([(c or {}).get("rx") for _, c in sess], len(SSH_BANNER)))

    with ctx.case("first byte 0x16 on non-TLS port 8443 with a matching SNI: inspected, accepted, completes"):
        rec, _, _ = e2e("allowed.example:8443", "allowed.example", listener="tls8443")
        check_tls_fields(rec, "allowed.example")

    # ---------------------------------------------------------------- aggregate
    with ctx.case("every cut tunnel's upstream connection was RESET, not closed gracefully"):
        expect(RESETS, "no cut reached an upstream")
        graceful = [(c, l, e) for c, l, e in RESETS if e != "reset"]
        expect(not graceful, "%d of %d ended otherwise: %s" % (len(graceful), len(RESETS), graceful[:6]))

    ctx.final_checks([audit, dpx.audit])
