#!/usr/bin/python3
"""Scenario: a HelloRetryRequest, and the second ClientHello it asks for.

A TLS 1.3 server that does not like the client's key share answers the
first ClientHello with a HelloRetryRequest (RFC 8446 §4.1.4), and the
client sends a second ClientHello.  OpenSSL servers (and nginx, HAProxy and
Apache on top of them) act on the second hello's SNI, so a proxy that
checks only the first one lets a client reach any name an SNI-routing
server behind an allowed address serves.

The upstream here is a real OpenSSL server (python's ssl) that only takes
P-256: a client whose first key share is X25519, as OpenSSL's and python's
are by default, gets a retry request.  Its listener counts every byte on the
wire and logs the SNI of each hello it acted on.  Checked:

- real clients (openssl s_client, python ssl) complete the handshake through
  a retry, with the second hello written whole or one byte at a time;
- a second hello naming another server (or offering ECH, or malformed) is
  cut before the server sees a byte of it: the server received exactly the
  first hello, and the record names the reason and the second hello's SNI;
- a server that asks for a second retry, or answers with something that is
  not TLS, ends the tunnel (tls_server_malformed);
- an audit-mode tier lets the changed SNI through and records would-deny.
"""
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

SNI_SERVER = "198.51.100.12"   # allowed.example and evil.example: one server, routing by SNI
TWICE = "198.51.100.13"        # twice.example: asks for a retry every time
CCS = b"\x14\x03\x03\x00\x01\x01"   # RFC 8446 Appendix D.4 compatibility record

ctx = harness.start(__file__, v4=[SNI_SERVER, TWICE])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "p256", "host": SNI_SERVER, "port": 443, "kind": "tls-raw", "group": "prime256v1"},
        {"name": "twice", "host": TWICE, "port": 443, "kind": "hrr-twice"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", SNI_SERVER), ("evil.example", SNI_SERVER), ("twice.example", TWICE),
    ])
    px = harness.Proxy(ctx, "proxy", {
        "t": {"sources": ["127.0.0.1/32", "127.0.0.2/32"],
              "allow": [{"host": "allowed.example", "ports": [443]},
                        {"host": "twice.example", "ports": [443]}]},
        "watch": {"sources": ["127.0.0.3/32"], "mode": "audit",
                  "allow": [{"host": "allowed.example", "ports": [443]}]},
    }).start()
    audit = px.audit
    P256 = harness.p256_share()

    def second_hello(sni, **kw):
        """A second hello the server takes: its key share is in the group the retry asked for."""
        return harness.tls_records(harness.client_hello(sni, share=P256, **kw))

    def tunnel(target="allowed.example:443", src="127.0.0.2"):
        r = harness.connect(target, src=src)
        expect(r.status == 200, "CONNECT %s: %s" % (target, r.describe()))
        return r

    def session(listener, mark):
        sess = ups.sessions_since(listener, mark, 8)
        expect(len(sess) == 1 and sess[0][1] is not None,
               "%s: %d sessions, closed: %s" % (listener, len(sess), [c is not None for _, c in sess]))
        return sess[0][1]

    def read_server_flight(sock, timeout=5.0):
        """What the proxy passed of the server's answer to the first hello (a retry request)."""
        sock.settimeout(timeout)
        d = sock.recv(65536)
        expect(d[:1] == b"\x16" and len(d) >= 43, "no server handshake record through the tunnel: %r" % d[:40])
        return d

    def is_retry(flight):
        return flight[11:43] == bytes.fromhex(
            "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

    def cut(r, reason, sni, mark, first_len, listener="p256"):
        res = harness.await_close(r.sock, 5)
        r.close()
        expect(res["end"] is not None, "the tunnel was not cut")
        ev = session(listener, mark)
        rx = ev.get("raw_rx", ev.get("rx"))
        expect(rx == first_len, "the server received %d bytes, want exactly the first hello's %d" %
               (rx, first_len))
        if "snis" in ev:
            expect(ev["snis"] in ([], ["allowed.example"]), "the server acted on SNIs %r" % ev["snis"])
        rec = audit.by_port(r.src_port, timeout=5)
        expect(rec is not None, "no audit record")
        harness.check_cut_record(rec, reason, sni)
        return rec

    # ------------------------------------------------------------ real clients
    with ctx.case("openssl s_client (X25519 first, then P-256) through a retry request: handshake completes, "
                  "the server saw the same SNI twice, one allowed record"):
        openssl = harness.need(shutil.which("openssl") or "/usr/bin/openssl")
        mark = ups.mark("p256")
        amark = audit.mark()
        p = subprocess.run([openssl, "s_client", "-proxy", "127.0.0.1:3128", "-connect", "allowed.example:443",
                            "-servername", "allowed.example", "-groups", "X25519:P-256", "-CAfile", certs["ca"],
                            "-verify_return_error", "-msg", "-quiet"],
                           input=b"SAY through-a-retry\n", capture_output=True, timeout=20,
                           preexec_fn=harness.die_with_me(), env=harness.daemon_env())
        out = (p.stdout + p.stderr).decode("latin-1")
        expect(out.count("ClientHello") >= 2, "no retry happened (one ClientHello): %s" % out[-400:])
        expect("through-a-retry" in out, "no answer through the tunnel: %s" % out[-600:])
        ev = session("p256", mark)
        expect(ev["snis"] == ["allowed.example", "allowed.example"], "server SNIs %r" % ev["snis"])
        rec = audit.wait_new(amark, lambda r: get(r, "tls.client.server_name") == "allowed.example")
        expect(rec is not None, "no record")
        harness.check_tunnel_record(rec)

    def python_retry(write_second, src="127.0.0.2"):
        """A python ssl client: first hello whole, the retry request read, then the second flight
        written by write_second(sock, data); returns (tunnel, client) with the handshake done."""
        r = tunnel(src=src)
        cl = harness.TlsClient("allowed.example", cafile=certs["ca"])
        r.sock.sendall(cl.hello())
        flight = read_server_flight(r.sock)
        expect(is_retry(flight), "the server did not ask for a retry: %r" % flight[:48])
        cl.inc.write(flight)
        try:
            cl.obj.do_handshake()
        except cl.ssl.SSLWantReadError:
            pass
        second = cl.out.read()
        expect(second[:1] in (b"\x14", b"\x16"), "no second hello from the client: %r" % second[:20])
        write_second(r.sock, second)
        cl.finish(r.sock)
        cl.send(r.sock, b"SAY retried\n")
        expect(cl.recv_line(r.sock) == b"retried\n", "no answer through the tunnel")
        return r, cl

    with ctx.case("python ssl client through a retry, second flight (compatibility record + hello) written "
                  "whole: handshake completes"):
        mark = ups.mark("p256")
        r, _ = python_retry(lambda s, d: s.sendall(d))
        r.close()
        ev = session("p256", mark)
        expect(ev["snis"] == ["allowed.example", "allowed.example"], "server SNIs %r" % ev["snis"])

    with ctx.case("the same, second flight written one byte per write: handshake completes"):
        mark = ups.mark("p256")
        r, _ = python_retry(lambda s, d: harness.send_paced(s, d, piece=1, delay=0.001))
        r.close()
        ev = session("p256", mark)
        expect(ev["snis"] == ["allowed.example", "allowed.example"], "server SNIs %r" % ev["snis"])

    # ------------------------------------------------------------ crafted second hellos
    def crafted_retry(second, src="127.0.0.2"):
        """A crafted first hello (SNI allowed.example, X25519 share); after the retry request,
        `second` (bytes) as the client's second flight.  Returns (tunnel, first hello length)."""
        first = harness.tls_records(harness.client_hello("allowed.example"))
        r = tunnel(src=src)
        r.sock.sendall(first)
        expect(is_retry(read_server_flight(r.sock)), "the server did not ask for a retry")
        try:
            r.sock.sendall(second)
        except OSError:
            pass
        return r, len(first)

    with ctx.case("second hello names evil.example: cut before the server sees it (tls_sni_mismatch), the "
                  "record names evil.example"):
        mark = ups.mark("p256")
        r, n = crafted_retry(CCS + second_hello("evil.example"))
        cut(r, "tls_sni_mismatch", "evil.example", mark, n)

    with ctx.case("second hello names evil.example, split at every 7 bytes: still cut before the server "
                  "sees it"):
        mark = ups.mark("p256")
        second = harness.reframe(second_hello("evil.example"), [3, 9, 40, 41, 200])
        first = harness.tls_records(harness.client_hello("allowed.example"))
        r = tunnel()
        r.sock.sendall(first)
        expect(is_retry(read_server_flight(r.sock)), "the server did not ask for a retry")
        harness.send_paced(r.sock, second, piece=7, delay=0.001)
        cut(r, "tls_sni_mismatch", "evil.example", mark, len(first))

    with ctx.case("second hello without SNI after a first one with: cut (tls_sni_mismatch)"):
        mark = ups.mark("p256")
        r, n = crafted_retry(harness.tls_records(harness.client_hello(None)))
        cut(r, "tls_sni_mismatch", None, mark, n)

    with ctx.case("second hello offering ECH: cut (tls_ech)"):
        mark = ups.mark("p256")
        r, n = crafted_retry(harness.tls_records(harness.client_hello("allowed.example", ech=True)))
        cut(r, "tls_ech", "allowed.example", mark, n)

    with ctx.case("two compatibility records before the second hello: cut (tls_malformed)"):
        mark = ups.mark("p256")
        r, n = crafted_retry(CCS + CCS + harness.tls_records(harness.client_hello("allowed.example")))
        cut(r, "tls_malformed", None, mark, n)

    with ctx.case("application data before the second hello without early data offered: cut (tls_malformed)"):
        mark = ups.mark("p256")
        r, n = crafted_retry(b"\x17\x03\x03\x00\x05hello" + harness.tls_records(
            harness.client_hello("allowed.example")))
        cut(r, "tls_malformed", None, mark, n)

    with ctx.case("second hello that is not a ClientHello: cut (tls_malformed)"):
        mark = ups.mark("p256")
        r, n = crafted_retry(harness.tls_records(harness.client_hello("allowed.example", hs_type=2)))
        cut(r, "tls_malformed", None, mark, n)

    with ctx.case("second hello with the same SNI goes to the server whole, and the server acts on it"):
        mark = ups.mark("p256")
        second = CCS + second_hello("allowed.example")
        r, n = crafted_retry(second)
        r.sock.settimeout(5)
        expect(r.sock.recv(65536)[:1] == b"\x16", "no ServerHello after the second hello")
        r.close()
        ev = session("p256", mark)
        expect(ev.get("raw_rx") == n + len(second), "the server received %s bytes, want %d" %
               (ev.get("raw_rx"), n + len(second)))
        expect(ev["snis"] == ["allowed.example", "allowed.example"], "server SNIs %r" % ev["snis"])

    # ------------------------------------------------------------ the server's side
    with ctx.case("a server asking for a second retry: the tunnel ends (tls_server_malformed), the client "
                  "never sees the second request"):
        mark = ups.mark("twice")
        first = harness.tls_records(harness.client_hello("twice.example"))
        r = tunnel("twice.example:443")
        r.sock.sendall(first)
        expect(is_retry(read_server_flight(r.sock)), "no first retry request")
        second = CCS + harness.tls_records(harness.client_hello("twice.example"))
        r.sock.sendall(second)
        res = harness.await_close(r.sock, 5)
        r.close()
        expect(res["end"] is not None and res["got"] == b"", "after the second hello the client got %r" %
               res["got"][:40])
        ev = session("twice", mark)
        expect(ev.get("hrr_sent") == 2, "the server sent %s retry requests" % ev.get("hrr_sent"))
        rec = audit.by_port(r.src_port, timeout=5)
        harness.check_cut_record(rec, "tls_server_malformed", "twice.example")

    # ------------------------------------------------------------ audit mode
    with ctx.case("audit mode: a second hello naming evil.example goes through, recorded would_deny "
                  "tls_sni_mismatch with tls.client.server_name evil.example"):
        mark = ups.mark("p256")
        r, n = crafted_retry(CCS + second_hello("evil.example"), src="127.0.0.3")
        r.sock.settimeout(5)
        expect(r.sock.recv(65536)[:1] == b"\x16", "no ServerHello after the second hello")
        r.close()
        ev = session("p256", mark)
        expect(ev["snis"] == ["allowed.example", "evil.example"], "server SNIs %r" % ev["snis"])
        rec = audit.by_port(r.src_port, timeout=5)
        expect(rec is not None and get(rec, "labels.would_deny") == "tls_sni_mismatch" and
               get(rec, "tls.client.server_name") == "evil.example",
               "record: would_deny %r, sni %r" % (get(rec, "labels.would_deny") if rec else None,
                                                 get(rec, "tls.client.server_name") if rec else None))

    ctx.final_checks([audit])
