#!/usr/bin/python3
"""Upstream servers for the portcullis integration tests (stdlib only).

Run as its own process by harness.Upstreams:

    upstreams.py SPEC.json EVENTS.jsonl

SPEC is a JSON list of listeners:

    {"name": "v4-tls", "host": "198.51.100.10", "port": 443,
     "kind": "tcp" | "tls" | "tls-raw" | "greet" | "udp-silent" | "blackhole",
     "cert": "leaf.pem", "key": "leaf.key",          # kind tls / tls-raw
     "greeting": "SSH-2.0-x\\r\\n",                  # kind greet
     "role": "upstream" | "forbidden"}               # free text, copied to events

Kind "tls-raw" is "tls" with the handshake run through a MemoryBIO, so the
close event also counts every byte on the wire: raw_rx / raw_tx (the TLS
records, ClientHello included), raw_head (hex of the first 64 bytes
received), end ("eof" or "reset": how the peer ended the TCP connection, when
it did) and sni.  It emits "first_rx" (time of the first byte received) too.
Kind "greet" sends the greeting as soon as it accepts, then only reads to EOF
(close event: rx, raw_head, end); it also emits "first_rx".

Every event is one JSON line appended to EVENTS (written whole under a lock,
flushed at once): "ready" when every listener is bound, "accept" for each
accepted TCP connection, "close" with the byte counts and what the session
did, "udp" for each datagram a silent UDP socket swallowed.

A TCP/TLS session reads one line and acts on it:
  GET/HEAD/POST ...   answer a small HTTP/1.1 response and close
  SAY <text>          send "<text>\\n" and close
  SINK <n>            read n bytes, send "SINK <n> <sha256>\\n", read to EOF, close
  SOURCE <n> <seed>   send n bytes of random.Random(seed).randbytes(n), close
  HALF1               read to EOF, send "HALF1 <n> <sha256>\\n", close
  HALF2               send "HALF2 server-done\\n", shut write, read to EOF
                      (logged as "late"), close
  HOLD                send "HOLD ok\\n", then echo until EOF
  anything else       echo the line and everything after it until EOF
"""
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time

LOCK = threading.Lock()
EVENTS = None
IO_TIMEOUT = 60.0


def emit(**ev):
    ev["t"] = time.time()
    line = json.dumps(ev, sort_keys=True) + "\n"
    with LOCK:
        EVENTS.write(line)
        EVENTS.flush()


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class Session:
    def __init__(self, sock, spec, peer, tls_ctx):
        self.raw = sock
        self.sock = sock
        self.spec = spec
        self.peer = peer
        self.tls_ctx = tls_ctx
        self.rx = 0
        self.tx = 0
        self.buf = b""
        self.info = {}
        self.raw_head = b""

    def recv(self, n=65536):
        if self.buf:
            d, self.buf = self.buf[:n], self.buf[n:]
            return d
        d = self.sock.recv(n)
        self.rx += len(d)
        return d

    def send(self, data):
        self.sock.sendall(data)
        self.tx += len(data)

    def readline(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                break
            d = self.sock.recv(65536)
            if not d:
                break
            self.rx += len(d)
            self.buf += d
        i = self.buf.find(b"\n")
        if i < 0:
            line, self.buf = self.buf, b""
        else:
            line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        return line

    def read_to_eof(self, keep=0):
        h = hashlib.sha256()
        n = 0
        kept = b""
        while True:
            d = self.recv()
            if not d:
                break
            h.update(d)
            n += len(d)
            if len(kept) < keep:
                kept += d[:keep - len(kept)]
        return n, h.hexdigest(), kept

    def shut_write(self):
        if isinstance(self.sock, (ssl.SSLSocket, BioConn)):
            return
        self.sock.shutdown(socket.SHUT_WR)

    def run(self):
        s = self.raw
        s.settimeout(IO_TIMEOUT)
        try:
            kind = self.spec.get("kind")
            if kind == "tls-raw":
                self.sock = BioConn(s, self.tls_ctx, self)
                self.sock.handshake()
                self.info["sni"] = getattr(self.sock.obj, "sni", None)
            elif kind == "greet":
                self.greet()
                return
            elif self.tls_ctx is not None:
                self.sock = self.tls_ctx.wrap_socket(s, server_side=True)
                self.info["sni"] = getattr(self.sock, "sni", None)
            self.dispatch()
        except Exception as e:  # noqa: BLE001 - recorded, never fatal to the server
            self.info["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            if self.spec.get("kind") in ("tls-raw", "greet"):
                self.info["raw_head"] = self.raw_head.hex()
                if isinstance(self.sock, BioConn):
                    self.info.update(raw_rx=self.sock.raw_rx, raw_tx=self.sock.raw_tx)
                    if "sni" not in self.info:
                        self.info["sni"] = getattr(self.sock.obj, "sni", None)
                if "end" not in self.info and "ConnectionResetError" in self.info.get("error", ""):
                    self.info["end"] = "reset"
            emit(event="close", listener=self.spec["name"], role=self.spec.get("role", ""),
                 peer=self.peer, rx=self.rx, tx=self.tx, **self.info)

    def dispatch(self):
        line = self.readline()
        word = line.split(b" ", 1)[0].strip()
        self.info["cmd"] = word.decode("latin-1")[:32]
        if word in (b"GET", b"HEAD", b"POST"):
            self.http(line)
        elif word == b"SAY":
            self.send(line[4:].rstrip(b"\r\n") + b"\n")
        elif word == b"SINK":
            n = int(line.split()[1])
            h = hashlib.sha256()
            got = 0
            while got < n:
                d = self.recv(min(65536, n - got))
                if not d:
                    break
                h.update(d)
                got += len(d)
            self.info.update(n=got, sha256=h.hexdigest())
            self.send(b"SINK %d %s\n" % (got, h.hexdigest().encode()))
            self.read_to_eof()
        elif word == b"SOURCE":
            parts = line.split()
            n, seed = int(parts[1]), int(parts[2])
            data = random.Random(seed).randbytes(n)
            self.info.update(n=n, sha256=hashlib.sha256(data).hexdigest())
            mv = memoryview(data)
            for off in range(0, n, 1 << 20):
                self.send(mv[off:off + (1 << 20)])
        elif word == b"HALF1":
            n, sha, _ = self.read_to_eof()
            self.info.update(n=n, sha256=sha)
            self.send(b"HALF1 %d %s\n" % (n, sha.encode()))
        elif word == b"HALF2":
            self.send(b"HALF2 server-done\n")
            self.shut_write()
            n, sha, kept = self.read_to_eof(keep=256)
            self.info.update(n=n, late=kept.decode("latin-1"))
        elif word == b"HOLD":
            self.send(b"HOLD ok\n")
            self.echo()
        else:
            self.send(line)
            self.echo()

    def note_raw(self, d):
        """First bytes and first-byte time of the raw TCP stream (tls-raw, greet)."""
        if not d:
            self.info.setdefault("end", "eof")
            return
        if not self.raw_head:
            emit(event="first_rx", listener=self.spec["name"], role=self.spec.get("role", ""),
                 peer=self.peer)
        if len(self.raw_head) < 64:
            self.raw_head += d[:64 - len(self.raw_head)]

    def greet(self):
        self.send(self.spec.get("greeting", "").encode("latin-1"))
        while True:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                self.info["end"] = "reset"
                return
            self.note_raw(d)
            if not d:
                return
            self.rx += len(d)

    def echo(self):
        while True:
            d = self.recv()
            if not d:
                return
            self.send(d)

    def http(self, first):
        parts = first.decode("latin-1").split()
        path = parts[1] if len(parts) > 1 else ""
        host = ""
        while True:
            h = self.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            if k.strip().lower() == "host":
                host = v.strip()
        self.info.update(path=path, host=host)
        body = ("upstream %s path=%s host=%s\n" % (self.spec["name"], path, host)).encode()
        self.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                  b"Connection: close\r\n\r\n" % len(body) + body)


class BioConn:
    """Server-side TLS over a MemoryBIO: counts every raw byte (kind tls-raw)."""

    def __init__(self, raw, ctx, sess):
        self.raw = raw
        self.sess = sess
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)
        self.raw_rx = 0
        self.raw_tx = 0
        self.eof = False

    def _flush(self):
        d = self.out.read()
        if d:
            self.raw.sendall(d)
            self.raw_tx += len(d)

    def _fill(self):
        try:
            d = self.raw.recv(65536)
        except ConnectionResetError:
            self.sess.info["end"] = "reset"
            raise
        self.sess.note_raw(d)
        if not d:
            self.eof = True
            self.inc.write_eof()
            return False
        self.raw_rx += len(d)
        self.inc.write(d)
        return True

    def handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill():
                    raise ConnectionAbortedError("EOF during the TLS handshake")

    def recv(self, n=65536):
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                self._flush()
                if self.eof or not self._fill():
                    return b""
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def sendall(self, data):
        self.obj.write(data)
        self._flush()

    def close(self):
        self.raw.close()


def serve_tcp(lsock, spec, tls_ctx):
    while True:
        try:
            c, peer = lsock.accept()
        except OSError:
            return
        emit(event="accept", listener=spec["name"], role=spec.get("role", ""),
             peer="%s:%d" % (peer[0], peer[1]))
        sess = Session(c, spec, "%s:%d" % (peer[0], peer[1]), tls_ctx)
        threading.Thread(target=sess.run, daemon=True).start()


def serve_udp_silent(usock, spec):
    while True:
        try:
            d, peer = usock.recvfrom(4096)
        except OSError:
            return
        emit(event="udp", listener=spec["name"], role=spec.get("role", ""),
             peer="%s:%d" % (peer[0], peer[1]), n=len(d))


def make_tls(spec):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(spec["cert"], spec["key"])

    def on_sni(sslsock, name, _ctx):
        sslsock.sni = name
    ctx.sni_callback = on_sni
    return ctx


def main():
    global EVENTS
    spec_path, events_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        specs = json.load(f)
    EVENTS = open(events_path, "a", buffering=1)
    keep = []
    for spec in specs:
        kind = spec["kind"]
        fam = family(spec["host"])
        if kind == "udp-silent":
            u = socket.socket(fam, socket.SOCK_DGRAM)
            u.bind((spec["host"], spec["port"]))
            keep.append(u)
            threading.Thread(target=serve_udp_silent, args=(u, spec), daemon=True).start()
            continue
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((spec["host"], spec["port"]))
        keep.append(s)
        if kind == "blackhole":
            # Backlog 0: the accept queue holds one connection.  Fill it with
            # connections of our own and never accept, so further SYNs are dropped.
            s.listen(0)
            for _ in range(3):
                c = socket.socket(fam, socket.SOCK_STREAM)
                c.setblocking(False)
                try:
                    c.connect((spec["host"], spec["port"]))
                except (BlockingIOError, OSError):
                    pass
                keep.append(c)
            time.sleep(0.2)
            continue
        s.listen(128)
        tls_ctx = make_tls(spec) if kind in ("tls", "tls-raw") else None
        threading.Thread(target=serve_tcp, args=(s, spec, tls_ctx), daemon=True).start()
    emit(event="ready", pid=os.getpid(), listeners=[s["name"] for s in specs])
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
