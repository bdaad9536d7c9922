#!/usr/bin/python3
"""A stand-in OIDC issuer's JWKS endpoint over HTTPS (stdlib only), for test_oidc_jwks.py.

    jwks_server.py ADDR PORT CERT KEY DIR

Every request reads DIR/control.json anew, so a test changes the answer by
rewriting that file (atomically):

    {"status": 200,                    # any status; 3xx comes with a Location
     "body": "jwks.json",              # file in DIR sent as the body (status 200)
     "cache_control": "max-age=60",    # header sent when present
     "etag": "\"v1\"",                 # header sent when present; an If-None-Match
                                       # equal to it gets 304
     "chunked": false,                 # Transfer-Encoding: chunked instead of Content-Length
     "close_delimited": false,         # neither: the body ends when the connection closes
                                       # (a TCP FIN, no TLS close_notify)
     "force_304": false}               # 304 Not Modified whatever the request says

Each request is one JSON line appended to DIR/requests.jsonl: the time, the
path, the Host and If-None-Match headers and the status answered.  DIR/ready
is written once the socket listens.
"""
import json
import os
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDR, PORT, CERT, KEY, DIR = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
LOCK = threading.Lock()


def control():
    try:
        with open(os.path.join(DIR, "control.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"status": 500}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        c = control()
        status = int(c.get("status", 200))
        inm = self.headers.get("If-None-Match")
        etag = c.get("etag")
        body = b""
        if c.get("force_304") or (status == 200 and etag is not None and inm == etag):
            status = 304
        elif status == 200:
            with open(os.path.join(DIR, c.get("body", "jwks.json")), "rb") as f:
                body = f.read()
        with LOCK, open(os.path.join(DIR, "requests.jsonl"), "a") as f:
            f.write(json.dumps({"t": time.time(), "path": self.path,
                                "host": self.headers.get("Host"), "inm": inm,
                                "ua": self.headers.get("User-Agent"), "status": status}) + "\n")
        self.send_response(status)
        if status in (301, 302, 307, 308):
            self.send_header("Location", "https://elsewhere.example/jwks")
        if c.get("cache_control") is not None:
            self.send_header("Cache-Control", c["cache_control"])
        if etag is not None:
            self.send_header("ETag", etag)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        if status == 304:
            self.end_headers()
            return
        if c.get("close_delimited"):
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        if c.get("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 1000):
                piece = body[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6 if ":" in ADDR else socket.AF_INET


def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    srv = Server((ADDR, PORT), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    with open(os.path.join(DIR, "ready"), "w") as f:
        f.write("ready\n")
    srv.serve_forever()


if __name__ == "__main__":
    main()
