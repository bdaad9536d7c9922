#!/usr/bin/python3
"""A stand-in HTTPS origin for test_intercept.py (stdlib only): git smart HTTP
through the real `git http-backend` (CGI), plus a few plain answers.

    https_origin.py SPEC.json EVENTS.jsonl

SPEC is a JSON object:

    {"git_root": "/tmp/.../repos",          # GIT_PROJECT_ROOT (optional)
     "listeners": [{"name": "gh", "host": "198.51.100.10", "port": 443,
                    "cert": "gh.pem", "key": "gh.key",    # leaf then its CA
                    "alpn": ["h2", "http/1.1"]}]}        # optional: what it offers
                                         # "plain": true: http://, no certificate

Every event is one JSON line appended to EVENTS, written whole under a lock:

    ready     every listener bound
    accept    a TCP connection (listener, peer)
    tls       its handshake: ok, sni, alpn (the protocol selected), version,
              error (a failed handshake: nothing reached the HTTP handler)
    head      a request head read (listener, peer, seq, method, target, headers)
    request   the request as a whole once its body is read (or the connection
              ended inside it): body_len, body_sha256, complete, status answered
    close     the connection ended (requests served on it)

Answers, by the request-target's path:

    .../info/refs, .../git-upload-pack, .../git-receive-pack, and other paths
    under a repository (a segment ending in ".git")
                     git http-backend with GIT_PROJECT_ROOT, GIT_HTTP_EXPORT_ALL
                     (the repositories set http.receivepack themselves); its CGI
                     output is answered with a Content-Length
    /cl/<n>/<seed>   n bytes of random.Random(seed).randbytes(n), Content-Length
    anything else    200 with a JSON description of the request (method, target,
                     Host, body length and sha256)

Request bodies: Content-Length or chunked (Expect: 100-continue answered).  The
connection is kept alive for HTTP/1.1 unless the request said close.
"""
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
EVENTS = None
IO_TIMEOUT = 30.0
GIT_ROOT = None


def emit(**ev):
    ev["t"] = time.time()
    line = json.dumps(ev, sort_keys=True) + "\n"
    with LOCK:
        EVENTS.write(line)
        EVENTS.flush()


class Framing(Exception):
    pass


class Conn:
    def __init__(self, sock, spec, peer):
        self.sock = sock
        self.spec = spec
        self.peer = peer
        self.buf = b""
        self.served = 0

    def ev(self, event, **kw):
        emit(event=event, listener=self.spec["name"], peer=self.peer, **kw)

    def fill(self):
        d = self.sock.recv(65536)
        if d:
            self.buf += d
        return bool(d)

    def read_head(self, limit=65536):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise Framing("request head over %d bytes" % limit)
            if not self.fill():
                if self.buf:
                    raise Framing("EOF inside a request head (%d bytes)" % len(self.buf))
                return None
        i = self.buf.index(b"\r\n\r\n")
        head, self.buf = self.buf[:i + 4], self.buf[i + 4:]
        return head

    def take(self, n):
        out = b""
        while len(out) < n:
            if not self.buf and not self.fill():
                raise Framing("EOF inside the body after %d of %d bytes" % (len(out), n))
            d, self.buf = self.buf[:n - len(out)], self.buf[n - len(out):]
            out += d
        return out

    def line(self, limit=8192):
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise Framing("chunk line over %d bytes" % limit)
            if not self.fill():
                raise Framing("EOF inside a chunk line")
        i = self.buf.index(b"\r\n")
        ln, self.buf = self.buf[:i], self.buf[i + 2:]
        return ln

    def send(self, data):
        self.sock.sendall(data)

    def run(self):
        self.sock.settimeout(IO_TIMEOUT)
        err = None
        try:
            seq = 0
            while True:
                head = self.read_head()
                if head is None:
                    break
                seq += 1
                if not self.exchange(head, seq):
                    break
        except (Framing, OSError, ssl.SSLError) as e:
            err = "%s: %s" % (type(e).__name__, e)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass
            self.ev("close", served=self.served, error=err)

    def exchange(self, head, seq):
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        method = parts[0]
        target = parts[1] if len(parts) > 1 else ""
        version = parts[2] if len(parts) > 2 else ""
        hdrs = []
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            hdrs.append([k.strip(), v.strip(" \t")])
        req = {"seq": seq, "method": method, "target": target, "version": version, "headers": hdrs}
        self.ev("head", **req)

        def values(name):
            return [v for k, v in hdrs if k.lower() == name.lower()]
        te = ",".join(values("Transfer-Encoding")).lower()
        cl = values("Content-Length")
        conn = ",".join(values("Connection")).lower()
        keep = version == "HTTP/1.1" and "close" not in [t.strip() for t in conn.split(",")]
        body = b""
        complete = True
        error = None
        try:
            if te or cl:
                if any(v.lower() == "100-continue" for v in values("Expect")):
                    self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            if te:
                if te.split(",")[-1].strip() != "chunked":
                    raise Framing("Transfer-Encoding %r" % te)
                chunks = []
                while True:
                    size_s = self.line().split(b";", 1)[0].strip()
                    if not size_s or any(c not in b"0123456789abcdefABCDEF" for c in size_s):
                        raise Framing("chunk size %r" % size_s[:40])
                    size = int(size_s, 16)
                    if size == 0:
                        break
                    chunks.append(self.take(size))
                    body = b"".join(chunks)
                    if self.take(2) != b"\r\n":
                        raise Framing("chunk data not followed by CRLF")
                body = b"".join(chunks)
                while self.line() != b"":
                    pass
            elif cl:
                if len(set(cl)) != 1 or not cl[0].isdigit():
                    raise Framing("Content-Length %r" % cl)
                n = int(cl[0])
                got = []
                left = n
                try:
                    while left:
                        d = self.take(min(left, 65536))
                        got.append(d)
                        left -= len(d)
                finally:
                    body = b"".join(got)
        except (Framing, OSError, ssl.SSLError) as e:
            complete = False
            error = "%s: %s" % (type(e).__name__, e)
        rec = dict(req, body_len=len(body), body_sha256=hashlib.sha256(body).hexdigest(),
                   complete=complete, error=error)
        if not complete:
            self.ev("request", status=None, **rec)
            return False
        status, rhdrs, rbody = self.answer(req, values, body)
        self.ev("request", status=status, **rec)
        out = b"HTTP/1.1 %d %s\r\n" % (status, b"OK" if status < 300 else b"Status")
        rhdrs = [(k, v) for k, v in rhdrs if k.lower() not in ("content-length", "transfer-encoding",
                                                                 "connection")]
        rhdrs += [("Server", "portcullis-it-https-origin"), ("X-Origin", self.spec["name"]),
                  ("Content-Length", str(len(rbody)))]
        if not keep:
            rhdrs.append(("Connection", "close"))
        out += b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in rhdrs)
        out += b"\r\n"
        self.send(out)
        if method != "HEAD":
            mv = memoryview(rbody)
            for off in range(0, len(rbody), 1 << 20):
                self.send(mv[off:off + (1 << 20)])
        self.served += 1
        return keep

    def answer(self, req, values, body):
        path, _, query = req["target"].partition("?")
        segs = path.split("/")
        if GIT_ROOT and any(s.endswith(".git") for s in segs):
            return self.git(req, values, path, query, body)
        parts = [p for p in segs if p]
        if len(parts) >= 2 and parts[0] == "cl":
            try:
                n = int(parts[1])
                seed = int(parts[2]) if len(parts) > 2 else 1
            except ValueError:
                return 400, [], b"bad /cl/ path\n"
            return 200, [("Content-Type", "application/octet-stream")], random.Random(seed).randbytes(n)
        desc = {"method": req["method"], "target": req["target"], "host": values("Host"),
                "body_len": len(body), "body_sha256": hashlib.sha256(body).hexdigest()}
        return 200, [("Content-Type", "application/json")], json.dumps(desc).encode()

    def git(self, req, values, path, query, body):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": GIT_ROOT,
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": req["method"],
               "PATH_INFO": urllib.parse.unquote(path), "QUERY_STRING": query,
               "REMOTE_ADDR": self.peer.rsplit(":", 1)[0], "SERVER_PROTOCOL": "HTTP/1.1",
               "GATEWAY_INTERFACE": "CGI/1.1", "CONTENT_LENGTH": str(len(body)),
               "HOME": os.environ.get("HOME", "/nonexistent")}
        for k, v in req["headers"]:
            key = k.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                env["CONTENT_TYPE"] = v
            elif key not in ("CONTENT_LENGTH", "PROXY", "AUTHORIZATION"):
                env["HTTP_" + key] = v
        try:
            p = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                               timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return 500, [], ("git http-backend: %s\n" % e).encode()
        out = p.stdout
        i = out.find(b"\r\n\r\n")
        sep = 4
        j = out.find(b"\n\n")
        if i < 0 or (0 <= j < i):
            i, sep = j, 2
        if i < 0:
            return 500, [], b"git http-backend: no CGI header: " + p.stderr[-400:]
        status = 200
        hdrs = []
        for ln in out[:i].decode("latin-1").splitlines():
            k, _, v = ln.partition(":")
            k, v = k.strip(), v.strip()
            if k.lower() == "status":
                try:
                    status = int(v.split()[0])
                except (ValueError, IndexError):
                    status = 500
            elif k:
                hdrs.append((k, v))
        return status, hdrs, out[i + sep:]


def serve(lsock, spec, tctx):
    while True:
        try:
            c, peer = lsock.accept()
        except OSError:
            return
        p = "%s:%d" % (peer[0], peer[1])
        emit(event="accept", listener=spec["name"], peer=p)
        threading.Thread(target=handshake_then_serve, args=(c, spec, tctx, p), daemon=True).start()


def handshake_then_serve(c, spec, tctx, peer):
    c.settimeout(IO_TIMEOUT)
    if tctx is None:  # a plain http:// listener ("plain": true): the same answers, no TLS
        Conn(c, spec, peer).run()
        return
    s = None
    try:
        s = tctx.wrap_socket(c, server_side=True, do_handshake_on_connect=False)
        s.do_handshake()
    except (OSError, ssl.SSLError) as e:
        emit(event="tls", listener=spec["name"], peer=peer, ok=False,
             sni=getattr(s, "sni_seen", None), error="%s: %s" % (type(e).__name__, e))
        try:
            (s or c).close()
        except OSError:
            pass
        emit(event="close", listener=spec["name"], peer=peer, served=0, error="handshake")
        return
    emit(event="tls", listener=spec["name"], peer=peer, ok=True, sni=getattr(s, "sni_seen", None),
         alpn=s.selected_alpn_protocol(), version=s.version())
    Conn(s, spec, peer).run()


def make_ctx(spec):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(spec["cert"], spec["key"])
    if spec.get("alpn"):
        ctx.set_alpn_protocols(spec["alpn"])

    def on_sni(sslsock, name, _ctx):
        sslsock.sni_seen = name
    ctx.sni_callback = on_sni
    return ctx


def main():
    global EVENTS, GIT_ROOT
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    EVENTS = open(sys.argv[2], "a", buffering=1)
    GIT_ROOT = spec.get("git_root")
    keep = []
    for ls in spec["listeners"]:
        fam = socket.AF_INET6 if ":" in ls["host"] else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ls["host"], ls["port"]))
        s.listen(128)
        keep.append(s)
        tctx = None if ls.get("plain") else make_ctx(ls)
        threading.Thread(target=serve, args=(s, ls, tctx), daemon=True).start()
    emit(event="ready", pid=os.getpid(), listeners=[ls["name"] for ls in spec["listeners"]])
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
