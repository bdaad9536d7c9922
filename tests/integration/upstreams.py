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
  RSTSEND <n>         send n bytes, then reset the connection (SO_LINGER 0)
  RSTRECV <n>         read n bytes, then reset the connection
  MUTE                never read or send again; close after IO_TIMEOUT
  TRUNC <n>           send "TRUNC <n>\\n", then half of n bytes, then close
  anything else       echo the line and everything after it until EOF

Kind "http-origin" is a real HTTP/1.1 origin instead (plain-HTTP forwarding):
it logs every request it reads as a "request" event (headers as received, body
sha256, chunked framing, trailers) and answers by path (see OriginSession).
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
# RFC 8446 §4.1.3: the random of a HelloRetryRequest, SHA-256("HelloRetryRequest").
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
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
            elif kind == "hrr-twice":
                self.hrr_twice()
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
                    self.info.update(raw_rx=self.sock.raw_rx, raw_tx=self.sock.raw_tx,
                                     snis=getattr(self.sock.obj, "snis", []))
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
        elif word in (b"RSTSEND", b"RSTRECV"):
            n = int(line.split()[1])
            if word == b"RSTSEND":
                self.send(random.Random(n).randbytes(n))
            else:
                got = 0
                while got < n:
                    d = self.recv(min(65536, n - got))
                    if not d:
                        break
                    got += len(d)
                self.info["n"] = got
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.info["end"] = "reset-by-us"
        elif word == b"MUTE":
            time.sleep(IO_TIMEOUT)
        elif word == b"TRUNC":
            n = int(line.split()[1])
            self.send(b"TRUNC %d\n" % n + random.Random(n).randbytes(n // 2))
        else:
            self.send(line)
            self.echo()

    def read_record(self):
        """One TLS record off the raw stream: (type, body), or None at EOF."""
        while len(self.buf) < 5 or len(self.buf) < 5 + int.from_bytes(self.buf[3:5], "big"):
            d = self.sock.recv(65536)
            if not d:
                return None
            self.rx += len(d)
            self.buf += d
        n = 5 + int.from_bytes(self.buf[3:5], "big")
        rec, self.buf = self.buf[:n], self.buf[n:]
        return rec[0], rec[5:]

    def hrr_twice(self):
        """Kind "hrr-twice": answers every ClientHello with a HelloRetryRequest (RFC 8446
        §4.1.4 allows one): a server a proxy must not follow into a second retry."""
        body = (b"\x03\x03" + HRR_RANDOM + b"\x00" + b"\x13\x01" + b"\x00" +
                b"\x00\x0c" + b"\x00\x2b\x00\x02\x03\x04" + b"\x00\x33\x00\x02\x00\x17")
        msg = b"\x02" + len(body).to_bytes(3, "big") + body
        hrr = b"\x16\x03\x03" + len(msg).to_bytes(2, "big") + msg
        self.info["hrr_sent"] = 0
        while True:
            rec = self.read_record()
            if rec is None:
                break
            if rec[0] == 22 and rec[1][:1] == b"\x01":
                self.send(hrr)
                self.info["hrr_sent"] += 1

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


# --------------------------------------------------------------------------
# Kind "http-origin": an HTTP/1.1 origin server for plain-HTTP forwarding
# --------------------------------------------------------------------------
#
# Every request it reads is one "request" event: method, target, version,
# headers (as received, in order), the body (decoded length and sha256, the
# raw framing's length and sha256, chunked or not, trailers), whether it was
# complete, whether a "100 Continue" went out, and seq (1 = first request on
# that connection).  An incomplete request (EOF or a framing error in its
# head or body) is logged with complete=false and never answered.  The answer
# is chosen by the path:
#   /cl/<n>[/<seed>]       200, Content-Length, body_bytes(n, seed)
#   /chunked/<n>[/<seed>]  200, chunked (chunked_stream(): sizes from CHUNK_SIZES,
#                          trailers X-Body-Sha256 and X-Trailer-Two)
#   /close/<n>[/<seed>]    200, no Content-Length or Transfer-Encoding, close-delimited
#   /status/<code>         that status; 204/304 without a body, others a short one
#   /early/<n>[/<seed>]    103 Early Hints (a Link field), then as /cl/
#   /hop                   a 200 carrying hop-by-hop fields of its own (Connection
#                          naming X-Resp-Hop, X-Resp-Hop, Keep-Alive, Proxy-Authenticate,
#                          Upgrade, Trailer, TE) and X-Resp-E2E
#   /upgrade               101 with the request's Upgrade value, then echo to EOF
#                          (a request without Upgrade gets 426)
#   /bad/<what>            malformed answers: status, te-cl, cl-cl, cl-alpha, chunk
#                          (a valid head then an invalid chunk size; the
#                          connection is then held open until the peer closes)
#   <docprefix>...         a file under spec "docroot" (GET/HEAD; 404 if absent)
#   anything else          200 with a JSON description of the request (echo)
# A HEAD request gets the GET answer's head only.  After answering, the origin
# closes if the request said "Connection: close", was HTTP/1.0, or the answer
# is close-delimited; otherwise it reads the next request on the connection.

CHUNK_SIZES = (1, 7, 100, 4096, 65536, 12345, 300000)


def body_bytes(n, seed=1):
    return random.Random(seed).randbytes(n)


def chunked_trailers(data):
    return [("X-Body-Sha256", hashlib.sha256(data).hexdigest()), ("X-Trailer-Two", "two")]


def chunked_stream(data, trailers=None):
    """data in the chunked coding exactly as the origin sends it."""
    if trailers is None:
        trailers = chunked_trailers(data)
    out = []
    off = 0
    i = 0
    while off < len(data):
        n = min(CHUNK_SIZES[i % len(CHUNK_SIZES)], len(data) - off)
        out.append(b"%x\r\n" % n + data[off:off + n] + b"\r\n")
        off += n
        i += 1
    out.append(b"0\r\n" + b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
                                   for k, v in trailers) + b"\r\n")
    return b"".join(out)


class HttpFraming(Exception):
    pass


class OriginSession(Session):
    def fill(self):
        d = self.sock.recv(65536)
        if d:
            self.rx += len(d)
            self.buf += d
        return bool(d)

    def read_head(self, limit=65536):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise HttpFraming("request head over %d bytes" % limit)
            if not self.fill():
                if self.buf:
                    raise HttpFraming("EOF inside a request head (%d bytes)" % len(self.buf))
                return None
        i = self.buf.index(b"\r\n\r\n")
        head, self.buf = self.buf[:i + 4], self.buf[i + 4:]
        return head

    def read_exact(self, n, sink):
        """Read n body bytes into sink(bytes); False at EOF first."""
        while n > 0:
            if not self.buf and not self.fill():
                return False
            d, self.buf = self.buf[:n], self.buf[n:]
            sink(d)
            n -= len(d)
        return True

    def read_crlf_line(self, limit=8192):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise HttpFraming("chunk line over %d bytes" % limit)
            if not self.fill():
                raise HttpFraming("EOF inside a chunk line")
        i = self.buf.index(b"\n")
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        if not line.endswith(b"\r\n"):
            raise HttpFraming("bare LF in a chunk line %r" % line[:40])
        return line

    def dispatch(self):
        seq = 0
        while True:
            seq += 1
            head = self.read_head()
            if head is None:
                return
            req = self.parse(head, seq)
            if req["target"].startswith("/evil/"):
                self.evil(req)
                return
            keep = self.read_body(req)
            emit(event="request", listener=self.spec["name"], role=self.spec.get("role", ""),
                 peer=self.peer, **req)
            if not req["complete"]:
                return
            if not self.answer(req) or not keep:
                return

    def parse(self, head, seq):
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        hdrs = []
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            hdrs.append([k, v.strip(" \t")])
        req = {"seq": seq, "request_line": lines[0].decode("latin-1"),
               "method": parts[0] if parts else "", "target": parts[1] if len(parts) > 1 else "",
               "version": parts[2] if len(parts) > 2 else "", "headers": hdrs, "head_len": len(head),
               "body_len": 0, "body_sha256": hashlib.sha256(b"").hexdigest(), "raw_body_len": 0,
               "raw_body_sha256": hashlib.sha256(b"").hexdigest(), "chunked": False, "trailers": [],
               "complete": True, "sent_100": False}
        return req

    @staticmethod
    def values(req, name):
        return [v for k, v in req["headers"] if k.lower() == name.lower()]

    def read_body(self, req):
        """Read the body per the request's framing; returns whether the connection may
        carry another request."""
        te = ",".join(self.values(req, "Transfer-Encoding")).lower()
        cl = self.values(req, "Content-Length")
        conn = ",".join(self.values(req, "Connection")).lower()
        keep = req["version"] == "HTTP/1.1" and "close" not in [t.strip() for t in conn.split(",")]
        if not te and not cl:
            return keep
        if any(v.lower() == "100-continue" for v in self.values(req, "Expect")):
            self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            req["sent_100"] = True
        dec = hashlib.sha256()
        raw = hashlib.sha256()
        n = [0, 0]

        def body(d):
            dec.update(d)
            raw.update(d)
            n[0] += len(d)
            n[1] += len(d)

        def framing(d):
            raw.update(d)
            n[1] += len(d)
        try:
            if te:
                req["chunked"] = True
                if te.split(",")[-1].strip() != "chunked":
                    raise HttpFraming("Transfer-Encoding %r" % te)
                while True:
                    line = self.read_crlf_line()
                    framing(line)
                    size_s = line[:-2].split(b";", 1)[0]
                    if not size_s or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
                        raise HttpFraming("chunk size %r" % line[:40])
                    size = int(size_s, 16)
                    if size == 0:
                        break
                    if not self.read_exact(size, body):
                        raise HttpFraming("EOF inside chunk data")
                    crlf = b""

                    def take(d):
                        nonlocal crlf
                        crlf += d
                    if not self.read_exact(2, take):
                        raise HttpFraming("EOF after chunk data")
                    framing(crlf)
                    if crlf != b"\r\n":
                        raise HttpFraming("chunk data not followed by CRLF (%r)" % crlf)
                while True:
                    line = self.read_crlf_line()
                    framing(line)
                    if line == b"\r\n":
                        break
                    k, _, v = line[:-2].decode("latin-1").partition(":")
                    req["trailers"].append([k, v.strip(" \t")])
            else:
                if len(set(cl)) != 1 or not cl[0].isdigit():
                    raise HttpFraming("Content-Length %r" % cl)
                if not self.read_exact(int(cl[0]), body):
                    raise HttpFraming("EOF inside the body")
        except (HttpFraming, OSError) as e:
            req["complete"] = False
            req["error"] = "%s: %s" % (type(e).__name__, e)
            keep = False
        req.update(body_len=n[0], body_sha256=dec.hexdigest(), raw_body_len=n[1],
                   raw_body_sha256=raw.hexdigest())
        return keep

    def reply(self, req, status, reason, headers, body=b"", close=False):
        head_only = req["method"] == "HEAD"
        h = [("Server", "portcullis-it-origin"), ("X-Origin", self.spec["name"]),
             ("X-Request-Seq", str(req["seq"]))] + list(headers)
        if close:
            h.append(("Connection", "close"))
        out = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode()) + b"".join(
            b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in h) + b"\r\n"
        self.send(out)
        if not head_only and body:
            mv = memoryview(body)
            for off in range(0, len(body), 1 << 20):
                self.send(mv[off:off + (1 << 20)])
        return not close

    def answer(self, req):
        """Send the answer; False: close the connection afterwards."""
        path = req["target"].split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        what = parts[0] if parts else ""

        def num(i, default):
            try:
                return int(parts[i])
            except (IndexError, ValueError):
                return default
        docprefix = self.spec.get("docprefix")
        if docprefix and self.spec.get("docroot") and path.startswith(docprefix):
            return self.file(req, path[len(docprefix):])
        if what == "cl":
            data = body_bytes(num(1, 0), num(2, 1))
            return self.reply(req, 200, "OK", [("Content-Type", "application/octet-stream"),
                                               ("Content-Length", str(len(data)))], data)
        if what == "chunked":
            data = body_bytes(num(1, 0), num(2, 1))
            return self.reply(req, 200, "OK", [("Content-Type", "application/octet-stream"),
                                               ("Transfer-Encoding", "chunked"),
                                               ("Trailer", "X-Body-Sha256, X-Trailer-Two")],
                              chunked_stream(data))
        if what == "close":
            data = body_bytes(num(1, 0), num(2, 1))
            self.reply(req, 200, "OK", [("Content-Type", "application/octet-stream")], data, close=True)
            return False
        if what == "status":
            code = num(1, 200)
            if code in (204, 304):
                return self.reply(req, code, "No Content" if code == 204 else "Not Modified",
                                  [("ETag", '"it-etag"')])
            data = b"status %d\n" % code
            return self.reply(req, code, "Status", [("Content-Length", str(len(data)))], data)
        if what == "mute":   # read the request, never answer
            time.sleep(IO_TIMEOUT)
            return False
        if what in ("trunc", "rst"):   # announce n bytes, send half, then close (or reset)
            n = num(1, 1000)
            self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + body_bytes(n // 2, 1))
            if what == "rst":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01" + b"\x00" * 7)
            return False
        if what == "early":
            self.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
            data = body_bytes(num(1, 0), num(2, 1))
            return self.reply(req, 200, "OK", [("Content-Length", str(len(data)))], data)
        if what == "hop":
            data = b"hop\n"
            return self.reply(req, 200, "OK", [
                ("Connection", "X-Resp-Hop"), ("X-Resp-Hop", "1"), ("Keep-Alive", "timeout=5, max=3"),
                ("Proxy-Authenticate", 'Basic realm="origin-secret-realm"'), ("Upgrade", "h2c"),
                ("TE", "trailers"), ("Trailer", "X-Never"), ("Proxy-Connection", "keep-alive"),
                ("X-Resp-E2E", "yes"), ("Content-Length", str(len(data)))], data)
        if what == "upgrade":
            up = self.values(req, "Upgrade")
            if not up:
                data = b"no Upgrade received\n"
                return self.reply(req, 426, "Upgrade Required", [("Content-Length", str(len(data)))],
                                  data, close=True)
            self.send(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n" %
                      up[0].encode("latin-1"))
            self.info["upgraded"] = True
            self.echo()
            return False
        if what == "bad":
            kind = parts[1] if len(parts) > 1 else ""
            bad = {
                "status": b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
                "te-cl": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                         b"5\r\nhello\r\n0\r\n\r\n",
                "cl-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
                "cl-alpha": b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
                "chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n"
                         b"smuggled\r\n0\r\n\r\n",
            }.get(kind, b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nunknown")
            self.send(bad)
            if kind == "chunk":
                # Hold the connection: only the proxy noticing the bad chunk ends the exchange.
                self.sock.settimeout(15)
                try:
                    self.read_to_eof()
                except OSError:
                    pass
            return False
        data = json.dumps({k: req[k] for k in ("method", "target", "version", "headers", "body_len",
                                                "body_sha256", "chunked", "trailers")}).encode()
        return self.reply(req, 200, "OK", [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(data)))], data)

    def evil(self, req):
        """A malicious origin that answers a request before its body has arrived and
        times its bytes to desynchronise a proxy that shares one framing state between
        the request body and the response body.  Whatever reaches it after the exchange
        it answered is logged as an "evil" event (leaked: the bytes, as latin-1) and
        answered with a forged response, as an attacker would.
          /evil/chunked-desync  for a chunked upload "5\\r\\nhello\\r\\n0\\r\\n\\r\\n" sent once
                                the client has seen the head and a chunk-size line:
                                a 256-byte chunk whose data, read with the request's
                                15 bytes counted in, hides a 1 MiB chunk-size line
          /evil/cl-early        an early chunked 401 to a Content-Length upload; its
                                last chunk follows 0.5 s later
          /evil/interim/<pad>   interim 102 heads, each with <pad> bytes of X-Pad, for
                                up to 10 s or until the proxy stops taking them (logged:
                                sent, the heads it could send)"""
        parts = req["target"].split("?", 1)[0].split("/")
        what = parts[2]
        emit(event="request", listener=self.spec["name"], role=self.spec.get("role", ""),
             peer=self.peer, **req)
        if what == "chunked-desync":
            self.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\n")
            self.read_body(req)
            # 241 + 15 = 256 data bytes for a client; for the desynchronised proxy the 15
            # request bytes were data of this chunk, so its data ends 15 bytes earlier,
            # where "\r\nfffff\r\n" opens a 1 MiB chunk that swallows what follows.
            self.send(b"a" * 241 + b"\r\nfffff\r\n" + b"b" * 6 + b"\r\n0\r\n\r\n")
        elif what == "interim":
            pad = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
            head = b"HTTP/1.1 102 Processing\r\n" + (b"X-Pad: " + b"p" * pad + b"\r\n" if pad else b"") + b"\r\n"
            sent, ended = 0, "deadline"
            self.sock.settimeout(2.0)
            deadline = time.monotonic() + 10
            try:
                while time.monotonic() < deadline:
                    self.send(head)
                    sent += 1
            except socket.timeout:
                ended = "blocked"
            except OSError:
                ended = "closed"
            emit(event="evil", listener=self.spec["name"], role=self.spec.get("role", ""),
                 peer=self.peer, what=what, sent=sent, ended=ended, leaked="")
            return
        elif what == "cl-early":
            self.send(b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n")
            time.sleep(0.5)
            self.send(b"0\r\n\r\n")
        self.sock.settimeout(3.0)
        leaked = b""
        try:
            while len(leaked) < 65536:
                d = self.sock.recv(65536)
                if not d:
                    break
                leaked += d
                if b"\r\n\r\n" in leaked and not self.info.get("forged"):
                    self.info["forged"] = True
                    forged = b"forged by the upstream\n"
                    self.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(forged) + forged)
        except OSError:
            pass
        emit(event="evil", listener=self.spec["name"], role=self.spec.get("role", ""),
             peer=self.peer, what=what, leaked=leaked.decode("latin-1"))

    def file(self, req, rel):
        root = os.path.realpath(self.spec["docroot"])
        p = os.path.realpath(os.path.join(root, rel))
        if (p != root and not p.startswith(root + os.sep)) or not os.path.isfile(p):
            data = b"not found\n"
            return self.reply(req, 404, "Not Found", [("Content-Length", str(len(data)))], data)
        with open(p, "rb") as f:
            data = f.read()
        return self.reply(req, 200, "OK", [("Content-Type", "application/octet-stream"),
                                           ("Content-Length", str(len(data))),
                                           ("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")], data)


def serve_tcp(lsock, spec, tls_ctx):
    while True:
        try:
            c, peer = lsock.accept()
        except OSError:
            return
        emit(event="accept", listener=spec["name"], role=spec.get("role", ""),
             peer="%s:%d" % (peer[0], peer[1]))
        cls = OriginSession if spec.get("kind") == "http-origin" else Session
        sess = cls(c, spec, "%s:%d" % (peer[0], peer[1]), tls_ctx)
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
    if spec.get("group"):
        # One key-exchange group only: a client whose first key share is another one gets
        # a HelloRetryRequest (RFC 8446 §4.1.4), as from any server with other preferences.
        ctx.set_ecdh_curve(spec["group"])

    def on_sni(sslsock, name, _ctx):
        # OpenSSL calls this once per ClientHello: after a retry request, for the second too.
        sslsock.sni = name
        sslsock.snis = getattr(sslsock, "snis", []) + [name]
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
