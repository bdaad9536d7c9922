#!/usr/bin/python3
"""bench/drip.py: what a client that drips its first bytes costs the proxy.

A hostile client can send its request head, or its TLS ClientHello, a few
bytes at a time.  A proxy that re-parses what it holds from the start on
every read spends time quadratic in the head's size; one that parses only
when it is worth it spends roughly one read per piece.  This sends
--clients connections at once, each dripping a --bytes head (kind "head": a
CONNECT whose head is padded to that size; kind "hello": a TLS record of a
ClientHello padded to that size) in --piece byte writes with TCP_NODELAY and
a pause between rounds so each piece is a read of its own, and prints one
JSON line: the heads completed and the seconds it took.  bench/run adds the
proxy's CPU time around it.  Nothing is judged here.
"""
import argparse
import json
import os
import selectors
import socket
import struct
import sys
import time


def connect_head(target, size):
    first = "CONNECT %s HTTP/1.1\r\nHost: %s\r\nX-Pad: " % (target, target)
    pad = max(0, size - len(first) - 4)
    return (first + "a" * pad + "\r\n\r\n").encode()


def hello_record(sni, size):
    """A ClientHello (TLS 1.3 shape, SNI, padding extension) in one record of about size bytes."""
    def v8(b):
        return bytes([len(b)]) + b

    def v16(b):
        return struct.pack(">H", len(b)) + b

    def ext(t, body):
        return struct.pack(">H", t) + v16(body)
    name = sni.encode()
    exts = [ext(0, v16(b"\x00" + v16(name))),
            ext(10, v16(struct.pack(">HH", 0x001d, 0x0017))),
            ext(13, v16(struct.pack(">HH", 0x0403, 0x0804))),
            ext(43, v8(struct.pack(">HH", 0x0304, 0x0303))),
            ext(51, v16(struct.pack(">H", 0x001d) + v16(os.urandom(32))))]
    body = b"\x03\x03" + os.urandom(32) + v8(os.urandom(32)) + v16(b"\x13\x01\x13\x02") + v8(b"\x00")
    fixed = len(body) + 2 + sum(len(e) for e in exts) + 4 + 4 + 5
    pad = max(0, size - fixed)
    exts.append(ext(21, b"\x00" * pad))
    body += v16(b"".join(exts))
    msg = b"\x01" + struct.pack(">I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack(">H", len(msg)) + msg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--target", default="bench.example:7000")
    ap.add_argument("--kind", choices=("head", "hello"), default="head")
    ap.add_argument("--bytes", type=int, default=65536)
    ap.add_argument("--piece", type=int, default=16)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--pause-us", type=int, default=200)
    ap.add_argument("--tag", action="append", default=[])
    a = ap.parse_args()
    host, port = a.proxy.rsplit(":", 1)
    if a.kind == "head":
        data = connect_head(a.target, a.bytes)
        prefix = b""
    else:
        data = hello_record(a.target.rsplit(":", 1)[0], a.bytes)
        prefix = connect_head(a.target, 0)
    sel = selectors.DefaultSelector()
    socks = []
    t0 = time.monotonic()
    for _ in range(a.clients):
        s = socket.create_connection((host, int(port)), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if prefix:
            s.sendall(prefix)
            reply = b""
            while b"\r\n\r\n" not in reply:
                d = s.recv(4096)
                if not d:
                    break
                reply += d
            if b" 200 " not in reply.split(b"\r\n")[0]:
                print(json.dumps({"error": "CONNECT refused: %r" % reply[:80]}))
                return 1
        socks.append(s)
    t1 = time.monotonic()
    off = 0
    while off < len(data):
        piece = data[off:off + a.piece]
        for s in socks:
            s.sendall(piece)
        off += len(piece)
        if a.pause_us:
            time.sleep(a.pause_us / 1e6)
    # The proxy answers a complete head (200) or decides on the hello: wait for a reply or EOF.
    done = 0
    for s in socks:
        s.settimeout(30)
        try:
            s.recv(4096)  # the proxy's answer, or its close: either way it decided
            done += 1
        except socket.timeout:
            pass
        except OSError:
            done += 1  # reset: decided too
        s.close()
    t2 = time.monotonic()
    out = {"scenario": "drip", "kind": a.kind, "bytes": len(data), "piece": a.piece,
           "completed_total": done, "drip_s": round(t2 - t1, 3), "setup_s": round(t1 - t0, 3)}
    for t in a.tag:
        k, _, v = t.partition("=")
        out[k] = v
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
