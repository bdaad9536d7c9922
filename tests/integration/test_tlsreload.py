#!/usr/bin/python3
"""The TLS listener's certificate rotates while connections are open.

The certificate and key live in a directory laid out as Kubernetes mounts a
Secret (tls.crt -> ..data/tls.crt, ..data -> a timestamped directory) and
rotate by an atomic rename of the ..data symlink.  The proxy notices the
change (inotify on the directory), builds a new context off to the side and
swaps it in: new connections get the new certificate (a client trusting only
the new CA connects, one trusting only the old one does not), while a tunnel
opened before keeps working on the context it started with.  A broken pair
(a key that does not match the certificate) keeps the serving certificate,
with an error log line and portcullis_tls_listener_reloads_total{result="failure"}.
SIGHUP reloads too.  The certificate's notAfter is a metric.
"""
import calendar
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promcheck  # noqa: E402
from harness import expect  # noqa: E402

GOOD = "198.51.100.10"
TLS_PORT = 3129
ADMIN = 9090


def metric(name, result=None):
    """One sample's value from /metrics (the exposition is checked by promcheck first)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % ADMIN, timeout=5) as r:
        body = r.read()
    _fams, probs = promcheck.check(body)
    expect(not probs, "the exposition has problems: %s" % probs[:3])
    lab = '{result="%s"}' % result if result else ""
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape(lab)), body.decode(), re.M)
    return float(m.group(1)) if m else None


def wait_metric(name, result, want, timeout=10.0):
    return harness.wait_until(lambda: metric(name, result) == want, timeout)


def held_tunnel(cafile):
    """A TLS connection to the proxy verified against cafile, a CONNECT to the echo upstream,
    HOLD answered: (socket, peer certificate DER)."""
    sock = harness.bound_socket("127.0.0.2")
    sock.settimeout(10)
    sock.connect(("127.0.0.1", TLS_PORT))
    c = ssl.create_default_context(cafile=cafile)
    s = c.wrap_socket(sock, server_hostname="127.0.0.1")
    s.sendall(b"CONNECT allowed.example:8080 HTTP/1.1\r\nHost: allowed.example:8080\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        expect(d, "the proxy closed before answering the CONNECT")
        buf += d
    expect(buf.startswith(b"HTTP/1.1 200"), "CONNECT answered %r" % buf[:40])
    s.sendall(b"HOLD\n")
    line = harness.recv_line(s, leftover=buf.partition(b"\r\n\r\n")[2])
    expect(line == b"HOLD ok\n", "HOLD answered %r" % line)
    return s, s.getpeercert(binary_form=True)


def echo(s, text):
    s.sendall(text + b"\n")
    line = harness.recv_line(s)
    expect(line == text + b"\n", "the held tunnel echoed %r, want %r" % (line, text))


def handshake_ok(cafile):
    """Does a new TLS connection to the proxy verify against cafile?  (ok, peer cert DER)"""
    sock = harness.bound_socket("127.0.0.2")
    sock.settimeout(10)
    sock.connect(("127.0.0.1", TLS_PORT))
    c = ssl.create_default_context(cafile=cafile)
    try:
        s = c.wrap_socket(sock, server_hostname="127.0.0.1")
    except ssl.SSLCertVerificationError:
        sock.close()
        return False, None
    der = s.getpeercert(binary_form=True)
    s.close()
    return True, der


def not_after(pem):
    out = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-enddate"], capture_output=True,
                         check=True, timeout=10).stdout.decode()
    return calendar.timegm(time.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))


class SecretDir:
    """A directory as the kubelet lays out a Secret volume; swap() rotates it atomically."""

    def __init__(self, path):
        self.path = path
        self.n = 0
        os.makedirs(path)

    def swap(self, crt, key):
        self.n += 1
        ts = os.path.join(self.path, "..2026_12_07_%02d" % self.n)
        os.makedirs(ts)
        for src, name in ((crt, "tls.crt"), (key, "tls.key")):
            with open(src, "rb") as f, open(os.path.join(ts, name), "wb") as g:
                g.write(f.read())
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(os.path.basename(ts), tmp)
        os.rename(tmp, os.path.join(self.path, "..data"))
        for name in ("tls.crt", "tls.key"):
            link = os.path.join(self.path, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)


ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    pki1, pki2 = ctx.path("pki-one"), ctx.path("pki-two")
    harness.mkcerts("ca", pki1, "--cn", "rotation CA one")
    harness.mkcerts("server", pki1, "proxy", "--ip", "127.0.0.1")
    harness.mkcerts("server", pki1, "other", "--ip", "127.0.0.1")
    harness.mkcerts("ca", pki2, "--cn", "rotation CA two")
    harness.mkcerts("server", pki2, "proxy", "--ip", "127.0.0.1")
    ca1, ca2 = os.path.join(pki1, "ca.pem"), os.path.join(pki2, "ca.pem")
    secret = SecretDir(ctx.path("secret"))
    secret.swap(os.path.join(pki1, "proxy.pem"), os.path.join(pki1, "proxy.key"))

    ups = harness.Upstreams(ctx, [{"name": "raw8080", "host": GOOD, "port": 8080, "kind": "tcp"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD)])
    tiers = {"t": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [8080]}]}}
    px = harness.Proxy(ctx, "proxy", tiers, admin_port=ADMIN, listen={
        "https": "127.0.0.1:%d" % TLS_PORT,
        "tls": {"cert": os.path.join(secret.path, "tls.crt"),
                "key": os.path.join(secret.path, "tls.key")}}).start()
    RELOADS = "portcullis_tls_listener_reloads_total"

    with ctx.case("start-up: served with the first certificate; its notAfter is a metric"):
        expect(px.start_error is None, px.start_error)
        ok, _ = handshake_ok(ca1)
        expect(ok, "a client trusting CA one could not connect")
        expect(metric(RELOADS, "success") == 0 and metric(RELOADS, "failure") == 0,
               "reload counters do not start at 0")
        want = not_after(os.path.join(pki1, "proxy.pem"))
        expect(metric("portcullis_tls_listener_cert_not_after_seconds") == want,
               "not_after %r, want %d" % (metric("portcullis_tls_listener_cert_not_after_seconds"), want))

    held = None
    with ctx.case("a tunnel is held open through the first certificate"):
        held, held_cert = held_tunnel(ca1)
        echo(held, b"before rotation")

    with ctx.case("..data swap to a certificate of another CA: reloaded, new connections get it"):
        secret.swap(os.path.join(pki2, "proxy.pem"), os.path.join(pki2, "proxy.key"))
        expect(wait_metric(RELOADS, "success", 1), "no successful reload counted after the swap")
        ok, der = handshake_ok(ca2)
        expect(ok, "a client trusting only CA two could not connect after the rotation")
        ok, _ = handshake_ok(ca1)
        expect(not ok, "a client trusting only CA one still verified the proxy after the rotation")
        want = not_after(os.path.join(pki2, "proxy.pem"))
        expect(metric("portcullis_tls_listener_cert_not_after_seconds") == want, "not_after not updated")

    with ctx.case("the tunnel opened before the rotation keeps working on its own context"):
        expect(held is not None, "no held tunnel")
        echo(held, b"after rotation")

    with ctx.case("a broken pair (the key of another certificate): the serving certificate stays, "
                  "a failure is counted and logged"):
        secret.swap(os.path.join(pki1, "proxy.pem"), os.path.join(pki1, "other.key"))
        expect(wait_metric(RELOADS, "failure", 1), "no failed reload counted")
        expect(metric(RELOADS, "success") == 1, "a broken pair was counted as a success")
        ok, _ = handshake_ok(ca2)
        expect(ok, "the previous certificate is no longer served after a broken pair")
        logs = [json.loads(ln) for ln in px.stderr_text().splitlines() if ln.startswith("{")]
        bad = [r for r in logs if r.get("log.level") == "error" and "TLS listener reload" in r.get("message", "")]
        expect(bad, "no error log line for the broken pair")
        echo(held, b"after a broken pair")

    with ctx.case("SIGHUP reloads the certificate (the files fixed again first)"):
        secret.swap(os.path.join(pki1, "proxy.pem"), os.path.join(pki1, "proxy.key"))
        expect(wait_metric(RELOADS, "success", 2), "the fixed pair was not reloaded")
        px.proc.send_signal(signal.SIGHUP)
        expect(wait_metric(RELOADS, "success", 3), "SIGHUP did not reload the certificate")
        ok, _ = handshake_ok(ca1)
        expect(ok, "CA one's certificate is not served after the fix and SIGHUP")
        echo(held, b"after SIGHUP")

    with ctx.case("the held tunnel ends cleanly with one record"):
        held.close()
        rec = px.audit.wait_one(lambda r: harness.get(r, "destination.port") == 8080)
        expect(rec is not None, "no record for the held tunnel")
        harness.check_tunnel_record(rec)

    ctx.final_checks([px.audit])
