#!/usr/bin/python3
"""Regressions in the raw relay (proxy/tunnel.c).

An upgraded exchange whose heads already passed the upload cap:
The forwarded request's head and body count towards source.bytes, so after a
101 the relay can start with more bytes counted than the tier's upload cap.
The relay once computed the bytes still allowed as cap - done, which wrapped
around, and sent a whole worker buffer (other tunnels' data) upstream.  The
next client byte must instead be cut at the cap: nothing more reaches the
upstream, and no other tenant's bytes ever do.

A receiver that stalls in the middle of a bulk transfer: the relay sizes its
reads by the receiver's free send buffer and waits for it to drain; every
byte must still arrive, once and in order, in both directions.
"""
import hashlib
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import expect
V4 = "198.51.100.10"
ctx = harness.start(__file__, v4=[V4])
got = {"ws": b"", "plain": b""}
def serve(port, key, upgrade):
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((V4, port)); ls.listen(16)
    def one(s):
        buf = b""
        if upgrade:
            while b"\r\n\r\n" not in buf:
                d = s.recv(4096)
                if not d: return
                buf += d
            buf = buf.split(b"\r\n\r\n", 1)[1]
            while len(buf) < 65536:
                d = s.recv(65536)
                if not d: return
                buf += d
            buf = buf[65536:]
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        s.settimeout(3)
        try:
            while True:
                d = s.recv(1 << 20)
                if not d: break
                buf += d
        except OSError:
            pass
        got[key] += buf
        s.close()
    def loop():
        while True:
            s, _ = ls.accept()
            threading.Thread(target=one, args=(s,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
eof = {"seen": None}
BULK = 24 << 20  # bytes per bulk direction


def pattern(i):
    """The i-th 64 KiB block of the bulk stream: position-dependent, so a lost,
    repeated or reordered block changes the digest."""
    return hashlib.sha256(b"%d" % i).digest() * 2048


def bulk_digest():
    h = hashlib.sha256()
    for i in range(BULK // 65536):
        h.update(pattern(i))
    return h.hexdigest()


sink = {"len": 0, "sha": None}


def read_stalling(s):
    """Read s to EOF (20 s per read at most), pausing 1.5 s once 2 MiB are in:
    (bytes read, their sha256)."""
    s.settimeout(20)
    h, n, stalled = hashlib.sha256(), 0, False
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            h.update(d); n += len(d)
            if n >= (2 << 20) and not stalled:
                stalled = True
                time.sleep(1.5)
    except OSError as e:
        print("read ended:", e)
    return n, h.hexdigest()


def read_head(c):
    """The proxy's response head, byte by byte, so no tunnel byte is taken with it."""
    c.settimeout(10)
    head = b""
    while not head.endswith(b"\r\n\r\n") and len(head) < 4096:
        d = c.recv(1)
        if not d:
            break
        head += d
    return head


def serve_bulk(src_port, sink_port):
    """src_port: sends BULK bytes, then closes.  sink_port: stalls 1.5 s after
    the first 2 MiB, then reads everything, recording length and digest."""
    def src():
        ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((V4, src_port)); ls.listen(4)
        s, _ = ls.accept()
        s.settimeout(20)
        try:
            for i in range(BULK // 65536):
                s.sendall(pattern(i))
        except OSError:
            pass
        s.close()

    def snk():
        ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((V4, sink_port)); ls.listen(4)
        s, _ = ls.accept()
        sink["len"], sink["sha"] = read_stalling(s)
        s.close()
    threading.Thread(target=src, daemon=True).start()
    threading.Thread(target=snk, daemon=True).start()


def serve_eof(port):
    """Answers 101 to a GET, then records whether the client's FIN arrives within 4 s."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((V4, port))
    ls.listen(4)

    def one():
        s, _ = ls.accept()
        buf = b""
        s.settimeout(4)
        try:
            while b"\r\n\r\n" not in buf:
                d = s.recv(4096)
                if not d:
                    return
                buf += d
            s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            eof["seen"] = s.recv(4096) == b""
        except OSError:
            eof["seen"] = False
        s.close()
    threading.Thread(target=one, daemon=True).start()


with ctx:
    serve(80, "ws", True)
    serve_eof(81)
    serve(8080, "plain", False)
    serve_bulk(8082, 8083)
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])
    px = harness.Proxy(ctx, "proxy", {
        "ws": {"sources": ["127.0.0.2/32"],
               "allow": [{"host": "allowed.example", "ports": [80, 81, 8080]}],
                              "caps": {"upload_bytes": "64KiB"}, "http": {"allow_upgrade": True, "methods": ["GET","POST"]}},
        "other": {"sources": ["127.0.0.3/32"],
               "allow": [{"host": "allowed.example", "ports": [80, 8080, 8082, 8083]}]},
    }, listen={"workers": 1}).start()
    with ctx.case("another tenant's tunnel leaves data in relay_buf"):
        c = harness.bound_socket("127.0.0.3"); c.connect(("127.0.0.1", 3128))
        c.sendall(b"CONNECT allowed.example:8080 HTTP/1.1\r\nHost: allowed.example:8080\r\n\r\n")
        expect(b" 200 " in harness.recv_line(c), "the other tenant's CONNECT is allowed")
        time.sleep(0.2)
        c.sendall(b"OTHER-TENANT-SECRET-" * 10000)
        time.sleep(0.5); c.close()
    with ctx.case("upgrade with head > upload cap, then one byte"):
        c = harness.bound_socket("127.0.0.2"); c.connect(("127.0.0.1", 3128))
        c.sendall(b"POST http://allowed.example/ws HTTP/1.1\r\nHost: allowed.example\r\nContent-Length: 65536\r\n"
                  b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Pad: " + b"a" * 10 + b"\r\n\r\n" + b"B" * 65536)
        c.settimeout(3)
        expect(b" 101 " in c.recv(4096), "the upgrade is forwarded")
        time.sleep(0.2)
        c.sendall(b"x")
        time.sleep(3.5)
        ws = got["ws"]
        print("upstream got %d bytes after 101; leak marker present: %s" % (len(ws), b"OTHER-TENANT-SECRET" in ws))
        print("px alive:", px.alive())
        expect(px.alive(), "the proxy survived")
        expect(b"OTHER-TENANT-SECRET" not in ws, "another tunnel's bytes reached this upstream")
        expect(len(ws) == 0, "upstream got %d bytes after the 101; the cap was already reached" % len(ws))

    with ctx.case("upgrade: a FIN the client sent while the exchange was forwarded reaches the upstream"):
        c = harness.bound_socket("127.0.0.2")
        c.connect(("127.0.0.1", 3128))
        c.sendall(b"GET http://allowed.example:81/ws HTTP/1.1\r\nHost: allowed.example:81\r\n"
                  b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        c.shutdown(socket.SHUT_WR)
        c.settimeout(5)
        expect(b" 101 " in c.recv(4096), "the upgrade is forwarded")
        deadline = time.monotonic() + 6
        while eof["seen"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        expect(eof["seen"] is True, "upstream saw the client's FIN after the 101: %s" % eof["seen"])
        c.close()

    want = bulk_digest()
    with ctx.case("bulk download to a client that stalls for 1.5 s after 2 MiB: every byte, in order"):
        c = harness.bound_socket("127.0.0.3"); c.connect(("127.0.0.1", 3128))
        c.sendall(b"CONNECT allowed.example:8082 HTTP/1.1\r\nHost: allowed.example:8082\r\n\r\n")
        expect(b" 200 " in read_head(c), "the CONNECT is allowed")
        n, sha = read_stalling(c)
        c.close()
        expect(n == BULK, "the client got %d of %d bytes" % (n, BULK))
        expect(sha == want, "the downloaded bytes are the upstream's, in order")

    with ctx.case("bulk upload to an upstream that stalls for 1.5 s after 2 MiB: every byte, in order"):
        c = harness.bound_socket("127.0.0.3"); c.connect(("127.0.0.1", 3128))
        c.sendall(b"CONNECT allowed.example:8083 HTTP/1.1\r\nHost: allowed.example:8083\r\n\r\n")
        expect(b" 200 " in read_head(c), "the CONNECT is allowed")
        c.settimeout(20)
        for i in range(BULK // 65536):
            c.sendall(pattern(i))
        c.shutdown(socket.SHUT_WR)
        c.recv(1)  # the proxy closes once the upstream has closed
        c.close()
        deadline = time.monotonic() + 10
        while sink["sha"] is None and time.monotonic() < deadline:
            time.sleep(0.05)
        expect(sink["len"] == BULK, "the upstream got %d of %d bytes" % (sink["len"], BULK))
        expect(sink["sha"] == want, "the uploaded bytes are the client's, in order")
        expect(px.alive(), "the proxy survived")
