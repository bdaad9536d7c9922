#!/usr/bin/python3
"""Local stand-ins for the hosts CI clients fetch from (stdlib only).

    origin.py SPEC.json EVENTS.jsonl

SPEC: {"listen": [["198.51.100.10", 443, true], ["198.51.100.10", 80, false]],
       "cert": "leaf.pem", "key": "leaf.key", "docroot": DIR, "git_root": DIR}

One HTTP/1.1 server per listener (TLS when the third item is true), every host
name served from the same tree:
  /git/<repo>/...   git's smart HTTP: the request is handed to `git http-backend` (CGI)
                    with GIT_PROJECT_ROOT=git_root
  anything else     a file under docroot (GET/HEAD; a directory's index.json or index.html;
                    404 if absent)
Every request is one JSON line in EVENTS: listener, peer, method, path, Host, and the
names of the headers received.  The clients suite reads it to tell a fetch that went
through the proxy from one that went straight to the origin.
"""
import json
import mimetypes
import os
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
EVENTS = None
SPEC = None
TYPES = {".json": "application/json", ".tgz": "application/octet-stream", ".gz": "application/octet-stream",
         ".zip": "application/zip", ".mod": "text/plain; charset=utf-8", ".info": "application/json",
         ".crate": "application/octet-stream", ".gem": "application/octet-stream", ".html": "text/html"}


def event(**kw):
    line = json.dumps(kw) + "\n"
    with LOCK:
        with open(EVENTS, "a") as f:
            f.write(line)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "origin"

    def log_message(self, *a):
        pass

    def _log(self):
        event(event="request", listener="%s:%d" % self.server.server_address[:2],
              tls=self.server.tls, peer=self.client_address[0], method=self.command, path=self.path,
              host=self.headers.get("Host", ""), headers=[k for k in self.headers.keys()],
              user_agent=self.headers.get("User-Agent", ""))

    def _send(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def _git(self):
        path, _, query = self.path.partition("?")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": SPEC["git_root"],
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "QUERY_STRING": query,
               "PATH_INFO": path[len("/git"):], "REMOTE_ADDR": self.client_address[0],
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "GATEWAY_INTERFACE": "CGI/1.1"}
        for k, v in self.headers.items():
            env["HTTP_" + k.upper().replace("-", "_")] = v
        body = self._body()
        env["CONTENT_LENGTH"] = str(len(body))
        p = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        head, _, out = p.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, out = p.stdout.partition(b"\n\n")
        status, extra, ctype = 200, [], "text/plain"
        for ln in head.decode("latin-1").splitlines():
            k, _, v = ln.partition(":")
            k, v = k.strip().lower(), v.strip()
            if k == "status":
                status = int(v.split()[0])
            elif k == "content-type":
                ctype = v
            elif k and k != "content-length":
                extra.append((k, v))
        self._send(status, out, ctype, extra)

    def _file(self):
        path = self.path.partition("?")[0]
        root = os.path.realpath(SPEC["docroot"])
        full = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if full != root and not full.startswith(root + os.sep):
            return self._send(404, b"not found\n")
        if os.path.isdir(full):   # a registry's document at a path that also has children
            full = next((os.path.join(full, n) for n in ("index.json", "index.html")
                         if os.path.isfile(os.path.join(full, n))), full)
        if not os.path.isfile(full):
            return self._send(404, b"not found\n")
        with open(full, "rb") as f:
            data = f.read()
        ext = os.path.splitext(full)[1]
        self._send(200, data, TYPES.get(ext) or mimetypes.guess_type(full)[0] or "application/octet-stream")

    def _any(self):
        self._log()
        if self.path.startswith("/git/"):
            return self._git()
        if self.command in ("GET", "HEAD"):
            return self._file()
        self._body()
        return self._send(405, b"method not allowed\n")

    do_GET = do_HEAD = do_POST = do_PUT = _any


def main():
    global EVENTS, SPEC
    with open(sys.argv[1]) as f:
        SPEC = json.load(f)
    EVENTS = sys.argv[2]
    for host, port, tls in SPEC["listen"]:
        srv = ThreadingHTTPServer((host, port), Handler)
        srv.daemon_threads = True
        srv.tls = tls
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(SPEC["cert"], SPEC["key"])
            ctx.set_alpn_protocols(["http/1.1"])
            # the handshake runs in the request's thread: a client cut before its hello
            # (a refused tunnel) must not hold up the accept loop
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    event(event="ready")
    threading.Event().wait()


if __name__ == "__main__":
    main()
