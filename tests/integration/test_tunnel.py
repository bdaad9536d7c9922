#!/usr/bin/python3
"""Scenario 1: tunnels that should work do, byte-exact, with the right audit record.

Real curl (HTTPS and plain HTTP through CONNECT), real openssl s_client, IPv4 and
IPv6 upstreams (by AAAA and by literal), 50 MiB each way with sha256 on both
ends, half-close in both directions, exact byte counts in the audit record.
"""
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

V4 = "198.51.100.10"
V6 = "2001:db8::10"
BIG = 50 * 1024 * 1024

ctx = harness.start(__file__, v4=[V4], v6=[V6])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "v4-tls", "host": V4, "port": 443, "kind": "tls"},
        {"name": "v4-http", "host": V4, "port": 80, "kind": "tcp"},
        {"name": "v4-raw", "host": V4, "port": 8080, "kind": "tcp"},
        {"name": "v6-tls", "host": V6, "port": 443, "kind": "tls"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", V4), ("x.wild.example", V4), ("v6only.example", V6),
    ])
    px = harness.Proxy(ctx, "proxy", {
        "a": {"sources": ["127.0.0.1/32", "127.0.0.2/32"],
              "allow": [{"host": "allowed.example", "ports": [443, 80, 8080]},
                        {"host": "*.wild.example"},
                        {"host": "v6only.example"},
                        {"host": V6}],
              # curl sends no SNI for an IP-literal URL (RFC 6066 forbids literal addresses in
              # SNI), so the literal-rule case needs a tier that does not require one.
              "tls": {"require_sni": False}},
    }).start()
    audit = px.audit
    proxy_url = "http://127.0.0.1:3128"

    def tunnel_record(port, reasons=None):
        rec = audit.by_port(port, timeout=8)
        expect(rec is not None, "no audit record for the tunnel from source port %s" % port)
        harness.check_tunnel_record(rec)
        if reasons:
            expect(get(rec, "event.reason") in reasons, "audit event.reason %r, want %s" %
                   (get(rec, "event.reason"), "/".join(reasons)))
        return rec

    def curl_case(name, url, listener, dest_ip, dest_port, extra=(), domain=None):
        with ctx.case(name):
            n0 = len(ups.accepts(listener))
            res = harness.curl(["-x", proxy_url, "--interface", "127.0.0.2", "--cacert", certs["ca"]]
                               + list(extra) + [url])
            expect(res["rc"] == 0, "curl %s exit %s, CONNECT code %s: %s" %
                   (url, res["rc"], res["connect"], res["stderr"][:300]))
            expect(res["connect"] == "200", "CONNECT answered %r" % res["connect"])
            expect(res["code"] == "200", "upstream HTTP code %r" % res["code"])
            expect(res["body"].startswith("upstream %s path=/ " % listener),
                   "body %r does not come from upstream %s" % (res["body"][:200], listener))
            expect(len(ups.accepts(listener)) == n0 + 1, "upstream %s saw %d new connections, want 1" %
                   (listener, len(ups.accepts(listener)) - n0))
            rec = tunnel_record(res["local_port"])
            want = {"source.ip": "127.0.0.2", "destination.ip": dest_ip,
                    "destination.port": dest_port, "rule.ruleset": "a"}
            if domain:
                want["destination.domain"] = domain
            for k, v in want.items():
                expect(get(rec, k) == v, "audit %s = %r, want %r" % (k, get(rec, k), v))
            expect(get(rec, "source.bytes") > 0 and get(rec, "destination.bytes") > 0,
                   "audit byte counts %r/%r" % (get(rec, "source.bytes"), get(rec, "destination.bytes")))

    curl_case("curl https://allowed.example/ through CONNECT reaches the IPv4 TLS upstream",
              "https://allowed.example/", "v4-tls", V4, 443, domain="allowed.example")
    curl_case("curl https://x.wild.example/ (wildcard rule) reaches the upstream",
              "https://x.wild.example/", "v4-tls", V4, 443, domain="x.wild.example")
    curl_case("curl -p http://allowed.example/ (plain HTTP in a CONNECT tunnel to :80)",
              "http://allowed.example/", "v4-http", V4, 80, extra=["-p"], domain="allowed.example")
    curl_case("curl https://v6only.example/ (AAAA only) reaches [2001:db8::10]:443",
              "https://v6only.example/", "v6-tls", V6, 443, domain="v6only.example")
    curl_case("curl https://[2001:db8::10]/ (CONNECT [v6]:443, literal rule)",
              "https://[2001:db8::10]/", "v6-tls", V6, 443)

    with ctx.case("openssl s_client -proxy completes a verified handshake and exchanges data"):
        exe = harness.need(shutil.which("openssl") or "/usr/bin/openssl")
        n0 = len(ups.accepts("v4-tls"))
        p = subprocess.run([exe, "s_client", "-proxy", "127.0.0.1:3128", "-connect", "allowed.example:443",
                            "-servername", "allowed.example", "-CAfile", certs["ca"],
                            "-verify_return_error", "-verify_hostname", "allowed.example", "-quiet"],
                           input=b"SAY s_client-roundtrip\n", capture_output=True, timeout=20)
        out = p.stdout.decode("utf-8", "replace")
        expect("s_client-roundtrip" in out, "s_client exit %d, stdout %r, stderr %r" %
               (p.returncode, out[-200:], p.stderr.decode("utf-8", "replace")[-300:]))
        expect(len(ups.accepts("v4-tls")) == n0 + 1, "TLS upstream saw no new connection")
        close = ups.wait_close(lambda e: e["listener"] == "v4-tls" and e.get("cmd") == "SAY", 5)
        expect(close and close.get("sni") == "allowed.example",
               "upstream saw SNI %r, want allowed.example" % (close or {}).get("sni"))
        rec = audit.wait_one(lambda r: get(r, "source.ip") == "127.0.0.1"
                             and get(r, "destination.port") == 443, timeout=5)
        expect(rec is not None, "no audit record for the s_client tunnel (source 127.0.0.1)")
        harness.check_tunnel_record(rec)

    with ctx.case("50 MiB client->upstream arrives intact (sha256 both ends), exact audit bytes"):
        data = random.Random(7).randbytes(BIG)
        want_sha = hashlib.sha256(data).hexdigest()
        r = harness.connect("allowed.example:8080", timeout=60)
        expect(r.status == 200, r.describe())
        head = b"SINK %d\n" % BIG
        t0 = time.monotonic()
        r.sock.sendall(head)
        r.sock.sendall(data)
        line = harness.recv_line(r.sock, r.leftover, timeout=60)
        dt = time.monotonic() - t0
        r.close()
        expect(line == b"SINK %d %s\n" % (BIG, want_sha.encode()),
               "upstream got %r, want %d bytes sha %s" % (line[:120], BIG, want_sha[:16]))
        srv = ups.wait_close(lambda e: e.get("cmd") == "SINK", 10)
        expect(srv and srv["n"] == BIG and srv["sha256"] == want_sha, "upstream log %r" % srv)
        rec = tunnel_record(r.src_port, reasons=("client_closed",))
        expect(get(rec, "source.bytes") == len(head) + BIG,
               "audit source.bytes %r, want %d" % (get(rec, "source.bytes"), len(head) + BIG))
        expect(get(rec, "destination.bytes") == len(line),
               "audit destination.bytes %r, want %d" % (get(rec, "destination.bytes"), len(line)))
        print("# 50 MiB upload in %.2fs" % dt)

    with ctx.case("50 MiB upstream->client arrives intact (sha256 both ends), exact audit bytes"):
        want_sha = hashlib.sha256(random.Random(11).randbytes(BIG)).hexdigest()
        r = harness.connect("allowed.example:8080", timeout=60)
        expect(r.status == 200, r.describe())
        cmd = b"SOURCE %d 11\n" % BIG
        t0 = time.monotonic()
        r.sock.sendall(cmd)
        h = hashlib.sha256(r.leftover)
        r.sock.settimeout(60)
        n = len(r.leftover)
        while True:
            d = r.sock.recv(1 << 20)
            if not d:
                break
            h.update(d)
            n += len(d)
        dt = time.monotonic() - t0
        r.close()
        expect(n == BIG and h.hexdigest() == want_sha,
               "client got %d bytes sha %s, want %d sha %s" % (n, h.hexdigest()[:16], BIG, want_sha[:16]))
        srv = ups.wait_close(lambda e: e.get("cmd") == "SOURCE", 10)
        expect(srv and srv["sha256"] == want_sha, "upstream log %r" % srv)
        rec = tunnel_record(r.src_port, reasons=("upstream_closed",))
        expect(get(rec, "destination.bytes") == BIG,
               "audit destination.bytes %r, want %d" % (get(rec, "destination.bytes"), BIG))
        expect(get(rec, "source.bytes") == len(cmd),
               "audit source.bytes %r, want %d" % (get(rec, "source.bytes"), len(cmd)))
        print("# 50 MiB download in %.2fs" % dt)

    with ctx.case("half-close: client shuts write, upstream sees EOF and still answers"):
        payload = b"half-close-payload " * 1000
        r = harness.connect("allowed.example:8080")
        expect(r.status == 200, r.describe())
        r.sock.sendall(b"HALF1\n" + payload)
        r.sock.shutdown(socket.SHUT_WR)
        n, _sha, got = harness.recv_to_eof(r.sock, timeout=10)
        got = r.leftover + got
        r.close()
        want = b"HALF1 %d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest().encode())
        expect(got == want, "after shutting write the client got %r, want %r" % (got[:120], want))
        rec = tunnel_record(r.src_port)
        expect(get(rec, "source.bytes") == 6 + len(payload) and get(rec, "destination.bytes") == len(want),
               "audit bytes %r/%r, want %d/%d" % (get(rec, "source.bytes"), get(rec, "destination.bytes"),
                                                  6 + len(payload), len(want)))

    with ctx.case("half-close: upstream shuts write, client sees EOF and can still send"):
        r = harness.connect("allowed.example:8080")
        expect(r.status == 200, r.describe())
        r.sock.sendall(b"HALF2\n")
        n, _sha, got = harness.recv_to_eof(r.sock, timeout=10)
        got = r.leftover + got
        expect(got == b"HALF2 server-done\n", "client got %r before EOF" % got)
        late = b"client-late-data-after-upstream-eof\n"
        try:
            r.sock.sendall(late)
            r.sock.shutdown(socket.SHUT_WR)
            rest = harness.recv_to_eof(r.sock, timeout=10)[0]
        except OSError as e:
            raise harness.CaseFailed("client could not send after upstream EOF: %s" % e)
        r.close()
        expect(rest == 0, "client got %d more bytes after EOF" % rest)
        srv = ups.wait_close(lambda e: e.get("cmd") == "HALF2", 10)
        expect(srv is not None, "upstream HALF2 session never closed")
        expect(srv.get("late") == late.decode(), "upstream received %r after its shutdown, want %r" %
               (srv.get("late"), late.decode()))
        rec = tunnel_record(r.src_port)
        expect(get(rec, "source.bytes") == 6 + len(late) and get(rec, "destination.bytes") == len(got),
               "audit bytes %r/%r, want %d/%d" % (get(rec, "source.bytes"), get(rec, "destination.bytes"),
                                                  6 + len(late), len(got)))

    with ctx.case("tunnel is byte-exact: 200 head then exactly the upstream's bytes"):
        r = harness.connect("allowed.example:8080")
        expect(r.status == 200, r.describe())
        expect(r.raw.startswith(b"HTTP/1.1 200 Connection established\r\n\r\n"),
               "200 head %r" % r.raw[:80])
        blob = bytes(range(256)) * 64 + b"\r\n\r\n\x00\xff"
        r.sock.sendall(b"ECHO\n" + blob)
        got = harness.recv_exact(r.sock, 5 + len(blob))
        r.close()
        expect(r.leftover == b"" and got == b"ECHO\n" + blob, "echo of %d bytes came back as %d bytes%s" %
               (5 + len(blob), len(got), " (differs)" if len(got) == 5 + len(blob) else ""))

    ctx.final_checks([audit])
