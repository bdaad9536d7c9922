#!/usr/bin/python3
"""The TLS listener: portcullis as an https:// proxy (listen.https).

Real clients speak TLS to the proxy: curl --proxy https://... --proxy-cacert,
Python requests (urllib3's HTTPS-proxy support), git, Go's net/http.  Inside the TLS
connection everything is as on the plain listener: CONNECT with the tunnel's
own ClientHello inspected (TLS inside TLS: curl to an https:// origin, and an
SNI mismatch cut), plain HTTP forwarding, refusals with a status and
Proxy-Status, caps charged exactly (the relay reads and writes through the TLS
transport: a download and an upload cap land on the byte), bulk both ways
byte-exact.  The handshake is bounded by limits.header_timeout; a failed or
late handshake is a refusal record with its reason and no status (plain HTTP
to the TLS port, an ALPN other than http/1.1, TLS 1.1 only, nothing sent, half
a ClientHello).  The plain listener keeps working beside it.
"""
import hashlib
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
DENIED = "198.51.100.20"
TLS_PORT = 3129
DOWN_CAP = 100000
UP_CAP = 50000
MIB = 1 << 20


def proxy_tls(cafile, src="127.0.0.2", port=TLS_PORT, alpn=("http/1.1",), timeout=10.0,
              cert=None, key=None):
    """A TLS connection to the proxy's TLS listener (verified against cafile), from src."""
    sock = harness.bound_socket(src)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if cert:
        ctx.load_cert_chain(cert, key)
    s = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    return s


def read_head(s, timeout=10.0):
    """Read an HTTP response head; (status, head text, bytes after it)."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return status, head.decode("latin-1"), rest


def connect_over(s, target):
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    return read_head(s)


def recv_n(s, n, timeout=20.0):
    """Read up to n bytes (stops at EOF); returns (count, sha256)."""
    s.settimeout(timeout)
    h = hashlib.sha256()
    got = 0
    while got < n:
        try:
            d = s.recv(min(1 << 20, n - got))
        except (ssl.SSLEOFError, ConnectionResetError):
            break
        if not d:
            break
        h.update(d)
        got += len(d)
    return got, h.hexdigest()


def at_eof(s, timeout=10.0):
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
        return True


def handshake_record(px, port, reason, timeout=8.0):
    rec = px.audit.by_port(port, timeout=timeout)
    expect(rec is not None, "no audit record for source port %d" % port)
    expect(get(rec, "event.reason") == reason, "event.reason %r, want %s" % (get(rec, "event.reason"), reason))
    expect(get(rec, "event.outcome") == "failure", "event.outcome %r" % get(rec, "event.outcome"))
    expect("denied" in harness.as_list(get(rec, "event.type")), "event.type %r" % get(rec, "event.type"))
    expect(get(rec, "http.response.status_code") is None, "a status %r: the client saw no HTTP" %
           get(rec, "http.response.status_code"))
    return rec


ctx = harness.start(__file__, v4=[GOOD, DENIED])
with ctx:
    ucerts = ctx.certs()
    pki = ctx.path("proxy-pki")
    harness.mkcerts("ca", pki, "--cn", "portcullis proxy test CA")
    harness.mkcerts("server", pki, "proxy", "--dns", "proxy.test", "--ip", "127.0.0.1")
    pca = os.path.join(pki, "ca.pem")
    bundle = ctx.path("both-cas.pem")
    with open(bundle, "w") as f:
        f.write(open(pca).read() + open(ucerts["ca"]).read())

    ups = harness.Upstreams(ctx, [
        {"name": "tls443", "host": GOOD, "port": 443, "kind": "tls"},
        {"name": "raw8080", "host": GOOD, "port": 8080, "kind": "tcp"},
        {"name": "tls8443", "host": GOOD, "port": 8443, "kind": "tls"},
        {"name": "origin80", "host": GOOD, "port": 80, "kind": "http-origin"},
        {"name": "denied443", "host": DENIED, "port": 443, "kind": "tls", "role": "forbidden"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", GOOD), ("other.example", GOOD), ("denied.example", DENIED)])
    tiers = {
        "t": {"sources": ["127.0.0.1/32", "127.0.0.2/32"],
              "allow": [{"host": "allowed.example", "ports": [443, 8080, 80, 8443]},
                        {"host": "other.example", "ports": [443]}]},
        "capped": {"sources": ["127.0.0.3/32"],
                   "allow": [{"host": "allowed.example", "ports": [8080]}],
                   "caps": {"download_bytes": DOWN_CAP, "upload_bytes": UP_CAP}},
    }
    px = harness.Proxy(ctx, "proxy", tiers, listen={
        "https": "127.0.0.1:%d" % TLS_PORT,
        "tls": {"cert": os.path.join(pki, "proxy.pem"), "key": os.path.join(pki, "proxy.key")}}).start()
    proxy_url = "https://127.0.0.1:%d" % TLS_PORT

    with ctx.case("start-up: the TLS listener accepts beside the plain one"):
        expect(px.start_error is None, px.start_error)
        expect(harness.port_open("127.0.0.1", TLS_PORT), "nothing listens on %d" % TLS_PORT)

    with ctx.case("curl --proxy https:// CONNECT: TLS inside TLS to an https origin, SNI recorded"):
        res = harness.curl(["--proxy", proxy_url, "--proxy-cacert", pca, "--interface", "127.0.0.2",
                            "--cacert", ucerts["ca"], "https://allowed.example/tls-in-tls"])
        expect(res["rc"] == 0 and res["code"] == "200", "curl rc %s code %s: %s" % (res["rc"], res["code"], res["stderr"]))
        expect(res["connect"] == "200", "CONNECT answered %r" % res["connect"])
        rec = px.audit.by_port(res["local_port"])
        expect(rec is not None, "no record for the curl connection")
        harness.check_tunnel_record(rec)
        expect(get(rec, "tls.client.server_name") == "allowed.example",
               "tls.client.server_name %r" % get(rec, "tls.client.server_name"))
        expect(get(rec, "rule.ruleset") == "t", "rule.ruleset %r" % get(rec, "rule.ruleset"))

    with ctx.case("curl --proxy https:// plain HTTP: forwarded, url.path recorded"):
        res = harness.curl(["--proxy", proxy_url, "--proxy-cacert", pca, "--interface", "127.0.0.2",
                            "http://allowed.example/plain/path?secret=1"])
        expect(res["rc"] == 0 and res["code"] == "200", "curl rc %s code %s: %s" % (res["rc"], res["code"], res["stderr"]))
        rec = px.audit.by_port(res["local_port"])
        expect(rec is not None, "no record")
        expect(get(rec, "url.path") == "/plain/path", "url.path %r" % get(rec, "url.path"))
        expect(get(rec, "http.request.method") == "GET", "method %r" % get(rec, "http.request.method"))

    with ctx.case("curl --proxy https:// to a denied host: 403 host_not_allowed, the host never reached"):
        res = harness.curl(["--proxy", proxy_url, "--proxy-cacert", pca, "--interface", "127.0.0.2",
                            "--cacert", ucerts["ca"], "https://denied.example/"])
        expect(res["connect"] == "403", "CONNECT answered %r (%s)" % (res["connect"], res["stderr"]))
        rec = px.audit.by_port(res["local_port"])
        harness.check_denied_record(rec, "host_not_allowed", 403)
        expect(not ups.accepts("denied443"), "the denied host was reached")

    with ctx.case("curl with a proxy CA that did not sign the proxy's certificate: refused, recorded"):
        res = harness.curl(["--proxy", proxy_url, "--proxy-cacert", ucerts["ca"], "--interface", "127.0.0.2",
                            "--cacert", ucerts["ca"], "https://allowed.example/"])
        expect(res["rc"] != 0, "curl trusted a proxy certificate from another CA")
        rec = px.audit.by_port(res["local_port"])
        expect(rec is not None and get(rec, "event.reason") == "tls_handshake_failed",
               "the refused handshake's record: %s" % rec)

    with ctx.case("Python requests through the https proxy: https and http targets"):
        try:
            import requests
        except ImportError:
            raise harness.Prerequisite("python3-requests is not installed")
        sess = requests.Session()
        sess.trust_env = False
        proxies = {"https": proxy_url, "http": proxy_url}
        r = sess.get("https://allowed.example/via-requests", proxies=proxies, verify=bundle, timeout=15)
        expect(r.status_code == 200, "https target: status %s" % r.status_code)
        r = sess.get("http://allowed.example/via-requests-plain", proxies=proxies, verify=bundle, timeout=15)
        expect(r.status_code == 200, "http target: status %s" % r.status_code)
        sess.close()
        rec = px.audit.wait_one(lambda r: get(r, "url.path") == "/via-requests-plain")
        expect(rec is not None, "no record of the plain request")

    with ctx.case("git through the https proxy: its CONNECT is decided and inspected"):
        git = harness.need(shutil.which("git") or "/usr/bin/git")
        mark = px.audit.mark()
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(GIT_TERMINAL_PROMPT="0", HOME=ctx.path("."))
        env.update(GIT_SSL_CAINFO=ucerts["ca"])
        p = subprocess.run([git, "-c", "http.proxy=" + proxy_url, "-c", "http.proxySSLCAInfo=" + pca,
                            "-c", "http.sslCAInfo=" + ucerts["ca"], "ls-remote",
                            "https://allowed.example/repo.git"],
                           capture_output=True, timeout=30, env=env, stdin=subprocess.DEVNULL)
        err = p.stderr.decode("utf-8", "replace")
        # The stand-in origin is no git server: git's complaint about its answer shows that
        # the request crossed both TLS layers and the answer came back.
        expect("is this a git repository" in err, "git did not get the origin's answer: %s" % err.strip()[-300:])
        rec = px.audit.wait_new(mark, lambda r: get(r, "http.request.method") == "CONNECT")
        expect(rec is not None, "no CONNECT record from git")
        expect(get(rec, "tls.client.server_name") == "allowed.example", "SNI %r" % get(rec, "tls.client.server_name"))
        expect(get(rec, "event.outcome") == "success", "git's tunnel was %r" % get(rec, "event.reason"))

    with ctx.case("Go net/http through the https proxy: https and http targets"):
        go = harness.need(shutil.which("go") or "/usr/bin/go")
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "goclient", "main.go")
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(HOME=ctx.path("."), GOCACHE=ctx.path("gocache"), GOPATH=ctx.path("gopath"),
                   GOFLAGS="-mod=mod", GOTOOLCHAIN="local", GOPROXY="off", CGO_ENABLED="0")
        exe = ctx.path("goclient")
        b = subprocess.run([go, "build", "-o", exe, src], capture_output=True, timeout=120, env=env,
                           stdin=subprocess.DEVNULL)
        expect(b.returncode == 0, "go build: %s" % b.stderr.decode("utf-8", "replace")[-300:])
        for url, path in (("https://allowed.example/via-go", None),
                          ("http://allowed.example/via-go-plain", "/via-go-plain")):
            p = subprocess.run([exe, proxy_url, bundle, url], capture_output=True, timeout=30, env=env,
                               stdin=subprocess.DEVNULL)
            out = p.stdout.decode().split()
            expect(p.returncode == 0 and out and out[0] == "200", "%s: rc %d %r %s" % (
                url, p.returncode, out, p.stderr.decode("utf-8", "replace")[-200:]))
        rec = px.audit.wait_one(lambda r: get(r, "url.path") == "/via-go-plain")
        expect(rec is not None, "no record of Go's plain request")

    with ctx.case("TLS inside TLS: an inner ClientHello whose SNI differs from the CONNECT host is cut"):
        s = proxy_tls(pca)
        port = s.getsockname()[1]
        st, head, rest = connect_over(s, "allowed.example:443")
        expect(st == 200, "CONNECT answered %s" % st)
        inner = harness.TlsClient("other.example", cafile=ucerts["ca"])
        s.sendall(inner.hello())
        expect(at_eof(s), "the tunnel was not closed after a mismatching SNI")
        rec = px.audit.by_port(port)
        harness.check_cut_record(rec, "tls_sni_mismatch", sni="other.example")
        s.close()

    with ctx.case("TLS inside TLS by hand: a real inner handshake and a line echoed"):
        s = proxy_tls(pca)
        st, head, rest = connect_over(s, "allowed.example:443")
        expect(st == 200 and rest == b"", "CONNECT answered %s, %d extra bytes" % (st, len(rest)))
        inner = harness.TlsClient("allowed.example", cafile=ucerts["ca"])
        s.sendall(inner.hello())
        inner.finish(s)
        inner.send(s, b"SAY hello inside two TLS layers\n")
        line = inner.recv_line(s)
        expect(line == b"hello inside two TLS layers\n", "got %r" % line)
        s.close()

    with ctx.case("TLS inside TLS on a port that is not a TLS port: the relay hands the hello back "
                  "in order, split over two records of the proxy session"):
        s = proxy_tls(pca)
        port = s.getsockname()[1]
        st, head, rest = connect_over(s, "allowed.example:8443")
        expect(st == 200 and rest == b"", "CONNECT answered %s" % st)
        inner = harness.TlsClient("allowed.example", cafile=ucerts["ca"])
        hello = inner.hello()
        # Both records in one segment: the proxy's session reads the second ahead while the
        # relay looks at the first (0x16: back to inspection).
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        s.sendall(hello[:40])
        s.sendall(hello[40:])
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
        inner.finish(s)
        inner.send(s, b"SAY split hello\n")
        line = inner.recv_line(s)
        expect(line == b"split hello\n", "got %r" % line)
        s.close()
        rec = px.audit.by_port(port)
        expect(get(rec, "tls.client.server_name") == "allowed.example",
               "the hello was not inspected: %s" % get(rec, "tls.client"))

    with ctx.case("bulk through the TLS listener: 16 MiB down and 16 MiB up, byte-exact"):
        s = proxy_tls(pca)
        st, _, rest = connect_over(s, "allowed.example:8080")
        expect(st == 200, "CONNECT answered %s" % st)
        s.sendall(b"SOURCE %d 7\n" % (16 * MIB))
        n, sha = recv_n(s, 16 * MIB)
        want = hashlib.sha256(random.Random(7).randbytes(16 * MIB)).hexdigest()
        expect(n == 16 * MIB and sha == want, "got %d bytes (sha %s)" % (n, sha[:12]))
        s.close()
        s = proxy_tls(pca)
        st, _, rest = connect_over(s, "allowed.example:8080")
        data = random.Random(8).randbytes(16 * MIB)
        s.sendall(b"SINK %d\n" % len(data))
        s.sendall(data)
        line = harness.recv_line(s, timeout=20)
        expect(line.strip() == b"SINK %d %s" % (len(data), hashlib.sha256(data).hexdigest().encode()),
               "upstream said %r" % line[:120])
        s.close()

    with ctx.case("caps through the TLS transport: the download stops exactly at caps.download_bytes"):
        s = proxy_tls(pca, src="127.0.0.3")
        port = s.getsockname()[1]
        st, _, rest = connect_over(s, "allowed.example:8080")
        expect(st == 200, "CONNECT answered %s" % st)
        s.sendall(b"SOURCE 400000 9\n")
        n, sha = recv_n(s, 400000)
        expect(n == DOWN_CAP, "the client got %d bytes, want exactly %d" % (n, DOWN_CAP))
        want = hashlib.sha256(random.Random(9).randbytes(400000)[:DOWN_CAP]).hexdigest()
        expect(sha == want, "the bytes up to the cap are not the upstream's")
        rec = px.audit.by_port(port)
        expect(get(rec, "event.reason") == "download_cap", "reason %r" % get(rec, "event.reason"))
        expect(get(rec, "destination.bytes") == DOWN_CAP, "destination.bytes %r" % get(rec, "destination.bytes"))
        s.close()

    with ctx.case("caps through the TLS transport: the upstream gets exactly caps.upload_bytes"):
        s = proxy_tls(pca, src="127.0.0.3")
        port = s.getsockname()[1]
        st, _, rest = connect_over(s, "allowed.example:8080")
        expect(st == 200, "CONNECT answered %s" % st)
        line = b"SINK 300000\n"
        try:
            s.sendall(line + random.Random(3).randbytes(300000 - len(line)))
        except (OSError, ssl.SSLError):
            pass  # the proxy closed at the cap
        ev = ups.wait_close(lambda e: e["listener"] == "raw8080" and e.get("cmd") == "SINK" and
                            e.get("n") is not None and e["n"] < 300000)
        expect(ev is not None, "no upstream session ended short of the SINK")
        expect(ev["rx"] == UP_CAP, "the upstream received %d bytes, want exactly %d" % (ev["rx"], UP_CAP))
        rec = px.audit.by_port(port)
        expect(get(rec, "event.reason") == "upload_cap", "reason %r" % get(rec, "event.reason"))
        expect(get(rec, "source.bytes") == UP_CAP, "source.bytes %r" % get(rec, "source.bytes"))
        s.close()

    with ctx.case("plain HTTP to the TLS port: tls_handshake_failed, no status, nothing decided"):
        reply = harness.send_raw(b"CONNECT allowed.example:443 HTTP/1.1\r\nHost: allowed.example:443\r\n\r\n",
                                 proxy=("127.0.0.1", TLS_PORT))
        expect(reply.status is None or reply.status >= 400, "status %r" % reply.status)
        handshake_record(px, reply.src_port, "tls_handshake_failed")

    with ctx.case("ALPN h2 only: the handshake fails (http/1.1 is the only protocol), recorded"):
        sock = harness.bound_socket("127.0.0.2")
        sock.settimeout(10)
        sock.connect(("127.0.0.1", TLS_PORT))
        port = sock.getsockname()[1]
        c = ssl.create_default_context(cafile=pca)
        c.set_alpn_protocols(["h2"])
        try:
            c.wrap_socket(sock, server_hostname="127.0.0.1").close()
            ok = True
        except (ssl.SSLError, OSError):
            ok = False
        expect(not ok, "a handshake offering only h2 completed")
        handshake_record(px, port, "tls_handshake_failed")

    with ctx.case("TLS 1.1 only: refused at the handshake, recorded"):
        sock = harness.bound_socket("127.0.0.2")
        sock.settimeout(10)
        sock.connect(("127.0.0.1", TLS_PORT))
        port = sock.getsockname()[1]
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(pca)
        c.set_ciphers("DEFAULT:@SECLEVEL=0")
        c.minimum_version = ssl.TLSVersion.TLSv1_1
        c.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            c.wrap_socket(sock, server_hostname="127.0.0.1").close()
            ok = True
        except (ssl.SSLError, OSError):
            ok = False
        expect(not ok, "a TLS 1.1 handshake completed")
        handshake_record(px, port, "tls_handshake_failed")

    with ctx.case("nothing sent after connecting: tls_handshake_timeout at limits.header_timeout"):
        sock = harness.bound_socket("127.0.0.2")
        sock.connect(("127.0.0.1", TLS_PORT))
        port = sock.getsockname()[1]
        expect(harness.await_close(sock, timeout=10)["end"] is not None, "the proxy did not close the connection")
        handshake_record(px, port, "tls_handshake_timeout")

    with ctx.case("half a ClientHello: tls_handshake_timeout, no record before the deadline"):
        sock = harness.bound_socket("127.0.0.2")
        sock.connect(("127.0.0.1", TLS_PORT))
        port = sock.getsockname()[1]
        hello = harness.TlsClient("127.0.0.1", cafile=pca).hello()
        sock.sendall(hello[:len(hello) // 2])
        expect(harness.await_close(sock, timeout=10)["end"] is not None, "the proxy did not close the connection")
        handshake_record(px, port, "tls_handshake_timeout")

    with ctx.case("limits.max_connections on a TLS listener: closed without plain-text bytes, recorded"):
        tiny = harness.Proxy(ctx, "tiny", tiers, proxy_port=3140, admin_port=9093,
                             limits={"max_connections": 1}, listen={
                                 "https": "127.0.0.1:3141",
                                 "tls": {"cert": os.path.join(pki, "proxy.pem"),
                                         "key": os.path.join(pki, "proxy.key")}}).start()
        expect(tiny.start_error is None, tiny.start_error)

        def idle_proxy():
            """No connection open (the start-up probe's is gone): the one slot is free."""
            try:
                with urllib.request.urlopen("http://127.0.0.1:9093/metrics", timeout=2) as r:
                    return re.search(rb"^portcullis_connections_active 0$", r.read(), re.M) is not None
            except OSError:
                return False
        expect(harness.wait_until(idle_proxy, 10), "the proxy still counts an open connection")
        first = proxy_tls(pca, port=3141)
        sock = harness.bound_socket("127.0.0.2")
        sock.connect(("127.0.0.1", 3141))
        port = sock.getsockname()[1]
        sock.sendall(harness.TlsClient("127.0.0.1", cafile=pca).hello())
        end = harness.await_close(sock, timeout=10)
        expect(end["end"] is not None, "the connection over the limit stayed open")
        expect(b"HTTP/" not in end["got"], "plain text went to a TLS client: %r" % end["got"][:60])
        rec = tiny.audit.by_port(port)
        expect(rec is not None and get(rec, "event.reason") == "connection_limit",
               "the refusal's record: %s" % rec)
        first.close()
        sock.close()

    def cpu_seconds(pid):
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    with ctx.case("a TLS record that comes in pieces: the relay waits for the rest instead of "
                  "spinning (the proxy uses well under a CPU-second while it waits), then relays it"):
        sock = harness.bound_socket("127.0.0.2")
        sock.settimeout(10)
        sock.connect(("127.0.0.1", TLS_PORT))
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        so = ssl.create_default_context(cafile=pca).wrap_bio(inc, out, server_hostname="127.0.0.1")

        def flush():
            d = out.read()
            if d:
                sock.sendall(d)

        def read_some():
            while True:
                try:
                    return so.read(65536)
                except ssl.SSLWantReadError:
                    flush()
                    d = sock.recv(65536)
                    if not d:
                        return b""
                    inc.write(d)
        while True:
            try:
                so.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                inc.write(sock.recv(65536))
        flush()
        so.write(b"CONNECT allowed.example:8080 HTTP/1.1\r\nHost: allowed.example:8080\r\n\r\n")
        flush()
        head = read_some()
        expect(head.startswith(b"HTTP/1.1 200"), "CONNECT: %r" % head[:60])
        so.write(b"SINK 20\n")
        flush()
        so.write(b"0123456789")
        record = out.read()
        before = cpu_seconds(px.proc.pid)
        sock.sendall(record[:-5])            # all of the record but its last 5 bytes
        time.sleep(2.0)                      # a window to measure, not a wait for an event
        used = cpu_seconds(px.proc.pid) - before
        print("# proxy CPU over 2 s with a partial record pending: %.2f s" % used)
        sock.sendall(record[-5:])
        so.write(b"abcdefghij")
        flush()
        line = read_some()
        expect(line.startswith(b"SINK 20 "), "the sink answered %r" % line[:60])
        expect(used < 0.5, "the proxy used %.2f CPU-seconds in 2 s: it spun on the partial record"
               % used)
        sock.close()

    with ctx.case("a refusal at accept on the TLS listener (connections_per_source) reaches the "
                  "client after the handshake: 429 with its reason, not a bare close"):
        lim = harness.Proxy(ctx, "limited", {
            "t": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [8080]}],
                  "caps": {"connections_per_source": 1}}}, proxy_port=3142, admin_port=9094,
            listen={"proxy": "127.0.0.1:3142", "admin": "127.0.0.1:9094", "https": "127.0.0.1:3143",
                    "tls": {"cert": os.path.join(pki, "proxy.pem"),
                            "key": os.path.join(pki, "proxy.key")}}).start()
        first = proxy_tls(pca, port=3143)
        st, _, _ = connect_over(first, "allowed.example:8080")
        expect(st == 200, "first CONNECT: %s" % st)
        second = proxy_tls(pca, port=3143)
        st, head, _ = connect_over(second, "allowed.example:8080")
        expect(st == 429 and "source_connection_limit" in head, "second: %s %r" % (st, head[:200]))
        second.close()
        first.close()

    with ctx.case("the plain listener still serves beside the TLS one"):
        res = harness.curl(["-x", "http://127.0.0.1:3128", "--interface", "127.0.0.2",
                            "--cacert", ucerts["ca"], "https://allowed.example/plain-listener"])
        expect(res["rc"] == 0 and res["code"] == "200", "curl rc %s code %s: %s" % (res["rc"], res["code"], res["stderr"]))

    ctx.final_checks([px.audit, tiny.audit, lim.audit])
