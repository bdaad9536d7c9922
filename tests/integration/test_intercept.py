#!/usr/bin/python3
"""Opt-in TLS interception with per-request rules (the `intercept:` key of an allow rule).

Two CAs made at run time with certs/mkcerts: the proxy's interception CA
(interception.ca_cert / ca_key; the clients trust it) and a separate "public"
CA that signs the stand-in origins' certificates (the proxy trusts it through
interception.upstream_ca).  The origin, https_origin.py, is a real HTTPS server
in the namespace that runs the real `git http-backend` (CGI) for bare
repositories whose config enables http.receivepack, so a push would succeed
without the proxy's rules (checked directly, without the proxy, first).  Every
name resolves through the pinned dnsmasq only.

Checked with real git, curl and openssl s_client, and a raw TLS client
(python's ssl) for the requests no well-behaved client sends:

- git clone through HTTPS_PROXY of an allowed repository (content checked);
  git clone of a denied one and git push to a denied path fail with 403, the
  origin gets no git-receive-pack POST and the repository is unchanged, the
  record says intercept_denied with url.path and http.request.method; a push
  to the org the rules allow lands;
- an npm-style PUT (and DELETE) refused 403 with Proxy-Status naming
  intercept_denied, GET on the same host served;
- Host other than the CONNECT host (other host, other port, two Host headers,
  absolute-form naming another host, none, userinfo): refused, never forwarded;
- path tricks against a deny rule (dot segments plain and encoded, encoded
  slash and backslash, case, encoded unreserved letters, '//', '#', NUL, bad
  escapes): intercept_bad_path or intercept_denied, never forwarded;
- upstream certificate from an untrusted CA, for another name, and an
  upstream that does not speak TLS: the CONNECT gets 502 upstream_cert_invalid
  / upstream_tls_failed and nothing reaches the origin's HTTP handler;
- a client that does not trust the interception CA (curl, s_client) fails
  its handshake and the record says intercept_client_rejected;
- a client offering h2 gets http/1.1 (curl --http2, s_client -alpn);
- caps.download_bytes cuts a response inside interception (download_cap,
  prefix-exact); intercept.max_request_body refuses a larger upload (413
  intercept_body_too_large: Content-Length and chunked) and the origin never
  gets the whole body; a smaller one is forwarded byte-exact;
- a host not marked for interception is a plain tunnel: the origin's own
  certificate (the proxy's CA nowhere in the chain), bytes unchanged, one
  tunnel record without url.*;
- several requests on one keep-alive connection: one record each with its
  url.path; SNI other than the CONNECT host: tls_sni_mismatch; no SNI: tls_no_sni;
- an audit-mode tier lets a would-be intercept_denied request through, labelled;
- --check names the hosts each tier intercepts.
"""
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GH = "198.51.100.10"        # github.test, registry.test, api.test, wrongname.test
ROGUE = "198.51.100.11"     # rogue.test: a certificate from a CA the proxy does not trust
PLAIN = "198.51.100.12"     # plain.test: allowed, not intercepted
NOTLS = "198.51.100.13"     # notls.test: port 443 speaks SSH, not TLS
EXPIRED = "198.51.100.14"   # expired.test: the public CA's certificate, expired in 2020
HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = "http://127.0.0.1:3128"
CAP = 64 * 1024
MAXBODY = 64 * 1024

# The reasons of the interception feature (docs/reasons.md) with the status the client sees;
# the audit validator at the end knows them from here.
NEW_REASONS = {"intercept_denied": 403, "intercept_bad_path": 400, "intercept_host_mismatch": 403,
               "intercept_body_too_large": 413, "upstream_cert_invalid": 502,
               "upstream_tls_failed": 502, "intercept_client_rejected": 200,
               "intercept_handshake_failed": 200, "intercept_unavailable": 503}
harness.REASON_STATUS.update(NEW_REASONS)
harness.WOULD_DENY_REASONS.update({"intercept_denied"})
# The client's own handshake inside an intercepted tunnel: how the tunnel ended (docs/reasons.md).
harness.CLOSE_REASONS.update({"intercept_client_rejected", "intercept_handshake_failed"})
harness.HTTP_END_REASONS.update({"intercept_client_rejected", "intercept_handshake_failed"})

SECRET_RULES = {
    "default": "deny",
    "requests": [
        {"name": "secret", "path": "/secret/**", "action": "deny"},
        {"name": "refs", "methods": ["GET"], "path": "/**/info/refs", "action": "allow"},
        {"name": "fetch", "methods": ["POST"], "path": "/**/git-upload-pack", "action": "allow"},
        {"name": "push-org", "methods": ["POST"], "path": "/org/*.git/git-receive-pack",
         "action": "allow"},
        {"name": "read", "methods": ["GET", "HEAD"], "path": "/**", "action": "allow"},
    ]}
NPM_RULES = {"default": "allow", "encoded_slash": "decode",
             "requests": [{"methods": ["PUT", "DELETE"], "path": "/**", "action": "deny"},
                          {"path": "/@evil/*", "action": "deny"}]}
API_RULES = {"default": "allow", "max_request_body": "64KiB"}


def sha(b):
    return hashlib.sha256(b).hexdigest()


def rule(host, intercept=None):
    r = {"host": host, "ports": [443]}
    if intercept is not None:
        r["intercept"] = intercept
    return r


ctx = harness.start(__file__, v4=[GH, ROGUE, PLAIN, NOTLS, EXPIRED])
with ctx:
    # ------------------------------------------------------------ certificates
    ica = ctx.path("intercept-ca")
    pub = ctx.path("public-ca")
    rogue = ctx.path("rogue-ca")
    harness.mkcerts("ca", ica, "--cn", "portcullis-it interception CA")
    harness.mkcerts("ca", pub, "--cn", "portcullis-it public CA")
    harness.mkcerts("ca", rogue, "--cn", "portcullis-it rogue CA")
    harness.mkcerts("server", pub, "gh", "--cn", "github.test", "--dns", "github.test",
                    "--dns", "registry.test", "--dns", "api.test")
    harness.mkcerts("server", pub, "plain", "--cn", "plain.test", "--dns", "plain.test")
    harness.mkcerts("server", rogue, "rogue", "--cn", "rogue.test", "--dns", "rogue.test")
    harness.mkcerts("server", pub, "expired", "--cn", "expired.test", "--dns", "expired.test",
                    "--start", "20200101000000Z", "--end", "20200102000000Z")
    ICA = os.path.join(ica, "ca.pem")
    PUB = os.path.join(pub, "ca.pem")

    # ------------------------------------------------------------ git repositories
    home = ctx.path("home")
    os.makedirs(home)
    with open(os.path.join(home, ".gitconfig"), "w") as f:
        f.write("[user]\n\tname = it\n\temail = it@example.invalid\n[init]\n\tdefaultBranch = main\n"
                "[advice]\n\tdetachedHead = false\n")
    GITENV = {k: v for k, v in os.environ.items()
              if not k.lower().endswith("_proxy") and not k.startswith("GIT_")}
    GITENV.update(HOME=home, GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    root = ctx.path("repos")
    GIT = harness.need(shutil.which("git") or "/usr/bin/git")

    def git(*args, cwd=None, env=None, timeout=60):
        e = dict(GITENV)
        e.update(env or {})
        p = subprocess.run([GIT] + list(args), cwd=cwd, env=e, capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, preexec_fn=harness.die_with_me())
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    def must_git(*args, **kw):
        rc, out, err = git(*args, **kw)
        if rc != 0:
            raise RuntimeError("git %s: exit %d: %s" % (" ".join(args), rc, err[-400:]))
        return out

    def bare(rel, content):
        d = os.path.join(root, rel)
        must_git("init", "-q", "--bare", "-b", "main", d)
        must_git("-C", d, "config", "http.receivepack", "true")
        w = ctx.path("seed-" + rel.replace("/", "-"))
        must_git("init", "-q", "-b", "main", w)
        with open(os.path.join(w, "README"), "w") as f:
            f.write(content)
        must_git("-C", w, "add", "README")
        must_git("-C", w, "commit", "-q", "-m", "seed " + rel)
        must_git("-C", w, "push", "-q", d, "main")
        return d

    APP = "hello from org/app %s\n" % uuid.uuid4().hex
    app_git = bare("org/app.git", APP)
    evil_git = bare("evil/exfil.git", "exfil target\n")
    secret_git = bare("secret/vault.git", "secret vault\n")
    BIGDATA = random.Random(21).randbytes(6 * 1024 * 1024)   # incompressible: the pack is as large
    big_git = bare("org/big.git", "big\n")
    _w = ctx.path("seed-big-data")
    must_git("clone", "-q", big_git, _w)
    with open(os.path.join(_w, "blob.bin"), "wb") as f:
        f.write(BIGDATA)
    must_git("-C", _w, "add", "blob.bin")
    must_git("-C", _w, "commit", "-q", "-m", "6 MiB of random bytes")
    must_git("-C", _w, "push", "-q", "origin", "main")

    def head_of(d):
        return must_git("-C", d, "rev-parse", "refs/heads/main").strip()

    # ------------------------------------------------------------ origins, resolver, proxy
    spec = {"git_root": root, "listeners": [
        {"name": "gh", "host": GH, "port": 443, "cert": os.path.join(pub, "gh.pem"),
         "key": os.path.join(pub, "gh.key"), "alpn": ["h2", "http/1.1"]},
        {"name": "plain", "host": PLAIN, "port": 443, "cert": os.path.join(pub, "plain.pem"),
         "key": os.path.join(pub, "plain.key"), "alpn": ["http/1.1"]},
        {"name": "rogue", "host": ROGUE, "port": 443, "cert": os.path.join(rogue, "rogue.pem"),
         "key": os.path.join(rogue, "rogue.key")},
        {"name": "expired", "host": EXPIRED, "port": 443, "cert": os.path.join(pub, "expired.pem"),
         "key": os.path.join(pub, "expired.key")},
        {"name": "http80", "host": GH, "port": 80, "plain": True}]}
    spec_path = ctx.path("origin.json")
    ev_path = ctx.path("origin-events.jsonl")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    oerr = open(ctx.path("origin-stderr.log"), "ab")
    oproc = ctx.spawn("https-origin", [harness.PY, os.path.join(HERE, "https_origin.py"), spec_path,
                                       ev_path], stderr=oerr, env=dict(GITENV))
    oerr.close()
    if not harness.wait_until(lambda: oproc.poll() is not None or any(
            e["event"] == "ready" for e in harness.read_jsonl(ev_path)), 15) or oproc.poll() is not None:
        with open(ctx.path("origin-stderr.log"), "rb") as f:
            raise RuntimeError("https_origin.py did not start: %r" % f.read()[-600:])

    def oevents(event=None, listener=None):
        return [e for e in harness.read_jsonl(ev_path)
                if (event is None or e["event"] == event) and (listener is None or e["listener"] == listener)]

    def heads(listener=None):
        return oevents("head", listener)

    def reached(marker):
        """Origin request heads that carry marker in the target or any header value."""
        return [h for h in heads() if marker in h["target"] or any(marker in v for _, v in h["headers"])]

    ups = harness.Upstreams(ctx, [{"name": "notls", "host": NOTLS, "port": 443, "kind": "greet",
                                   "greeting": "SSH-2.0-OpenSSH_9.2p1 portcullis-it\r\n"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("github.test", GH), ("registry.test", GH), ("api.test", GH), ("wrongname.test", GH),
        ("rogue.test", ROGUE), ("plain.test", PLAIN), ("notls.test", NOTLS), ("expired.test", EXPIRED)])

    TIERS = {
        "builders": {"sources": ["127.0.0.1/32", "127.0.0.2/32"], "allow": [
            rule("github.test", SECRET_RULES), rule("registry.test", NPM_RULES),
            rule("api.test", API_RULES), rule("wrongname.test", {"default": "allow"}),
            rule("rogue.test", {"default": "allow"}), rule("notls.test", {"default": "allow"}),
            rule("expired.test", {"default": "allow"}),
            rule("plain.test")]},
        "capped": {"sources": ["127.0.0.5/32"], "caps": {"download_bytes": "64KiB"},
                   "allow": [rule("api.test", {"default": "allow"})]},
        "watchers": {"mode": "audit", "sources": ["127.0.0.6/32"],
                     "allow": [rule("github.test", SECRET_RULES)]},
        "plainonly": {"sources": ["127.0.0.7/32"], "allow": [rule("plain.test")]},
        # plain http:// to a host whose rule intercepts (its ports include 80)
        "http80": {"sources": ["127.0.0.8/32"], "http": {"allow_upgrade": True}, "allow": [
            {"host": "registry.test", "ports": [80, 443], "intercept": NPM_RULES}]},
        # a tunnel to another host whose TLS names an intercepted one
        "nosnimatch": {"sources": ["127.0.0.9/32"], "tls": {"sni_must_match": False}, "allow": [
            rule("github.test", SECRET_RULES), rule("plain.test")]},
    }
    px = harness.Proxy(ctx, "proxy", TIERS, interception={
        "ca_cert": ICA, "ca_key": os.path.join(ica, "ca.key"), "upstream_ca": PUB}).start()
    audit = px.audit

    # ------------------------------------------------------------ clients
    CURL = harness.need(shutil.which("curl") or "/usr/bin/curl")
    OPENSSL = harness.need(shutil.which("openssl") or "/usr/bin/openssl")
    WFMT = "=W= %{http_code} %{http_connect} %{local_port} %{http_version} %{num_connects} %{size_download}\n"

    def icurl(urls, src="127.0.0.2", cacert=ICA, args=(), outs=None, proxy=True, timeout=30):
        """curl through the proxy from src.  Returns rc, stderr, [one dict per transfer:
        code, connect, port, version, connects, size], headers (the last response's
        [(name, value)], CONNECT's own head excluded) and the output paths."""
        if isinstance(urls, str):
            urls = [urls]
        port = harness.next_src_port()
        harness._NEXT_PORT[0] += 20
        hdr = ctx.path("curl-%d.headers" % port)
        outs = outs or [os.devnull] * len(urls)
        argv = [CURL, "-q", "-sS", "--max-time", str(timeout - 5), "--interface", src,
                "--local-port", "%d-%d" % (port, port + 20), "-D", hdr, "-w", WFMT]
        if cacert:
            argv += ["--cacert", cacert]
        if proxy:
            argv += ["-x", PROXY]
        argv += list(args)
        for u, o in zip(urls, outs):
            argv += [u, "-o", o]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        p = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
                           preexec_fn=harness.die_with_me())
        res = []
        for ln in p.stdout.decode("utf-8", "replace").splitlines():
            if ln.startswith("=W= "):
                f = ln.split()
                res.append({"code": f[1], "connect": f[2], "port": int(f[3]) if f[3].isdigit() else None,
                            "version": f[4], "connects": f[5], "size": f[6]})
        headers = []
        try:
            with open(hdr, "rb") as f:
                blocks = [b for b in f.read().decode("latin-1").split("\r\n\r\n") if b.strip()]
            last = blocks[-1].split("\r\n") if blocks else []
            headers = [tuple(x.strip() for x in ln.split(":", 1)) for ln in last[1:] if ":" in ln]
            if last:
                headers.insert(0, ("_status", last[0]))
        except OSError:
            pass
        return p.returncode, p.stderr.decode("utf-8", "replace").strip(), res, headers

    def readf(path):
        """A file curl wrote, or b"" when it wrote none (it failed before the body)."""
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def cert_dates(pem):
        """(notBefore, notAfter) of a PEM certificate, as unix seconds."""
        p = subprocess.run([OPENSSL, "x509", "-noout", "-startdate", "-enddate"], input=pem,
                           capture_output=True, timeout=20)
        d = dict(ln.split("=", 1) for ln in p.stdout.decode().splitlines() if "=" in ln)
        return tuple(ssl.cert_time_to_seconds(d[k]) for k in ("notBefore", "notAfter"))

    def metric(name, **labels):
        """One sample from the admin listener's /metrics, or None."""
        import urllib.request
        op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with op.open("http://127.0.0.1:9090/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        want = ",".join('%s="%s"' % kv for kv in labels.items())
        m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape("{%s}" % want) if want else ""), text, re.M)
        return float(m.group(1)) if m else None

    def hval(headers, name):
        return next((v for k, v in headers if k.lower() == name.lower()), None)

    def ps_details(v):
        m = re.search(r'details="([^"]*)"', v or "")
        return m.group(1) if m else None

    def s_client(host, args=(), data=b"", cafile=ICA, port=443):
        argv = [OPENSSL, "s_client", "-proxy", "127.0.0.1:3128", "-connect", "%s:%d" % (host, port)]
        if cafile:
            argv += ["-CAfile", cafile]
        argv += list(args)
        p = subprocess.run(argv, input=data, capture_output=True, timeout=20,
                           preexec_fn=harness.die_with_me())
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    class TlsHttp(harness.HttpClient):
        """harness.HttpClient's response reader over a TLS session inside a CONNECT."""

        def __init__(self, sock, src_port):  # noqa: super().__init__ connects; not here
            self.sock = sock
            self.src_port = src_port
            self.buf = b""
            self.rx = 0
            self.eof_seen = False
            self.error = None

    def tunnel(host, src="127.0.0.2", sni=None, cafile=ICA, alpn=("http/1.1",), port=443):
        """CONNECT host:port, then a TLS client (verifying against cafile, for host).
        Returns (CONNECT reply, TlsHttp or None, handshake error or None)."""
        r = harness.connect("%s:%d" % (host, port), src=src)
        if r.status != 200:
            return r, None, "CONNECT %s: %s" % (host, r.describe())
        c = ssl.create_default_context(cafile=cafile)
        if alpn:
            c.set_alpn_protocols(list(alpn))
        try:
            s = c.wrap_socket(r.sock, server_hostname=sni or host)
        except (OSError, ssl.SSLError) as e:
            r.close()
            return r, None, "TLS handshake: %s" % e
        r.sock = None
        return r, TlsHttp(s, r.src_port), None

    def request(target, method="GET", host="github.test", headers=None, body=b"", marker=None,
                src="127.0.0.2", extra=b""):
        """One request on its own intercepted session.  headers: None = Host: host.
        Returns (reply, marker)."""
        marker = marker or "it-%s" % uuid.uuid4().hex[:16]
        r, cl, err = tunnel(host, src=src)
        expect(cl is not None, err)
        hs = ["Host: %s" % host] if headers is None else list(headers)
        hs.append("X-It-Id: %s" % marker)
        if body:
            hs.append("Content-Length: %d" % len(body))
        raw = (b"%s %s HTTP/1.1\r\n" % (method.encode(), target if isinstance(target, bytes) else target.encode())
               + b"".join(h.encode("latin-1") + b"\r\n" for h in hs) + extra + b"\r\n" + body)
        e = cl.send(raw)
        expect(e is None, "sending the request: %s" % e)
        rep = cl.response(method=method, timeout=10)
        cl.close()
        return rep, marker

    def records_for(port, pred=lambda r: True, n=1, timeout=5.0):
        f = lambda: [r for r in audit.records() if get(r, "source.port") == port and pred(r)]  # noqa: E731
        harness.wait_until(lambda: len(f()) >= n, timeout)
        got = f()
        expect(len(got) == n, "%d audit records for source port %s match, want %d: %s" %
               (len(got), port, n, [json.dumps(r)[:300] for r in
                                    [x for x in audit.records() if get(x, "source.port") == port]]))
        return got

    def refused_inside(rep, status, reasons, marker, method=None, path=None):
        """A refusal answered inside the TLS session: status, Proxy-Status naming the reason,
        a denied record of its own with that reason and status (and method, url.path), and
        the origin never got the request."""
        if isinstance(reasons, str):
            reasons = (reasons,)
        expect(rep.status is not None, rep.describe())
        expect(rep.status == status and rep.reason in reasons,
               "want %d %s, got %s" % (status, "/".join(reasons), rep.describe()))
        ps = rep.proxy_status
        expect(ps["raw"].startswith("portcullis") and ps["error"],
               "Proxy-Status %r lacks 'portcullis; error=...'" % ps["raw"])
        recs = records_for(rep.src_port, lambda r: get(r, "event.reason") == rep.reason)
        harness.check_denied_record(recs[0], rep.reason, status)
        if method is not None:
            expect(get(recs[0], "http.request.method") == method, "http.request.method %r, want %s" %
                   (get(recs[0], "http.request.method"), method))
        if path is not None:
            expect(get(recs[0], "url.path") == path, "url.path %r, want %r" % (get(recs[0], "url.path"), path))
        expect(not reached(marker), "the origin RECEIVED the refused request: %s" % reached(marker)[:1])
        VERIFIED.append(marker)
        return recs[0]

    def intercept_labels(r, rule_name=None):
        """What docs/interception.md promises on every request record."""
        expect(get(r, "labels.intercepted") == "true", "labels.intercepted %r, want \"true\"" %
               get(r, "labels.intercepted"))
        expect(get(r, "url.scheme") == "https", "url.scheme %r, want https" % get(r, "url.scheme"))
        if rule_name is not None:
            expect(get(r, "labels.intercept_rule") == rule_name, "labels.intercept_rule %r, want %r" %
                   (get(r, "labels.intercept_rule"), rule_name))

    def allowed_record(port, path, method="GET", status=200, domain=None, rule_name=None):
        recs = records_for(port, lambda r: get(r, "url.path") == path)
        r = recs[0]
        intercept_labels(r, rule_name)
        expect(get(r, "event.outcome") == "success" and "denied" not in harness.as_list(get(r, "event.type")),
               "record for %s %s: outcome %r type %r reason %r" % (method, path, get(r, "event.outcome"),
                                                                  get(r, "event.type"), get(r, "event.reason")))
        expect(get(r, "http.request.method") == method, "http.request.method %r, want %s" %
               (get(r, "http.request.method"), method))
        expect(get(r, "http.response.status_code") == status, "http.response.status_code %r, want %d" %
               (get(r, "http.response.status_code"), status))
        if domain:
            expect(get(r, "url.domain") == domain, "url.domain %r, want %r" % (get(r, "url.domain"), domain))
        return r

    REFUSED = []   # markers of every request that must never reach the origin
    VERIFIED = []  # ... of those whose refusal inside TLS was checked in full

    # ================================================================== the stand-ins alone
    with ctx.case("stand-in origin without the proxy: git clone (content), git push to evil/exfil.git "
                  "lands (http.receivepack on), /cl/ and echo answer, ALPN h2 offered"):
        # The origin offers h2 (so that an upstream session the proxy opens with h2 would show);
        # git and curl speak HTTP/1.1 to it here.
        direct = ["-c", "http.curloptResolve=github.test:443:%s" % GH, "-c", "http.sslCAInfo=%s" % PUB,
                  "-c", "http.version=HTTP/1.1"]
        d = ctx.path("direct-app")
        rc, out, err = git(*direct, "clone", "-q", "https://github.test/org/app.git", d)
        expect(rc == 0, "direct clone: exit %d: %s" % (rc, err[-300:]))
        with open(os.path.join(d, "README")) as f:
            expect(f.read() == APP, "cloned README differs")
        d2 = ctx.path("direct-evil")
        rc, out, err = git(*direct, "clone", "-q", "https://github.test/evil/exfil.git", d2)
        expect(rc == 0, "direct clone evil: exit %d: %s" % (rc, err[-300:]))
        with open(os.path.join(d2, "direct.txt"), "w") as f:
            f.write("pushed directly\n")
        must_git("-C", d2, "add", "direct.txt")
        must_git("-C", d2, "commit", "-q", "-m", "direct push")
        rc, out, err = git("-C", d2, *direct, "push", "-q", "origin", "main")
        expect(rc == 0, "direct push to evil/exfil.git: exit %d: %s" % (rc, err[-300:]))
        expect(head_of(evil_git) == must_git("-C", d2, "rev-parse", "HEAD").strip(),
               "the direct push did not move evil/exfil.git's main")
        rc, err, res, hdrs = icurl("https://github.test/cl/1000/9", cacert=PUB, proxy=False,
                                   args=["--resolve", "github.test:443:%s" % GH, "--http1.1"])
        expect(rc == 0 and res and res[0]["code"] == "200" and res[0]["size"] == "1000",
               "direct curl /cl/: rc %d %s %s" % (rc, res, err))
        tls = oevents("tls", "gh")
        expect(tls and tls[-1]["ok"] and tls[-1]["sni"] == "github.test" and tls[-1]["alpn"] == "http/1.1",
               "origin tls event %s" % tls[-1:])
        c = ssl.create_default_context(cafile=PUB)
        c.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection((GH, 443), timeout=10) as raw:
            with c.wrap_socket(raw, server_hostname="github.test") as s:
                expect(s.selected_alpn_protocol() == "h2", "the origin does not pick h2 when offered: %r" %
                       s.selected_alpn_protocol())

    # ================================================================== 11. --check
    with ctx.case("--check: exit 0 and names the hosts each tier intercepts (plain.test nowhere)"):
        p = subprocess.run([ctx.binary, "--check", px.policy_path], capture_output=True, timeout=30,
                           env=harness.daemon_env())
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        expect(p.returncode == 0, "exit %d: %s" % (p.returncode, out[-500:]))
        lines = out.splitlines()
        first = next((i for i, ln in enumerate(lines) if "intercept" in ln.lower()), None)
        expect(first is not None, "--check output never mentions interception: %r" % out[-600:])
        sect = lines[first:]
        tiers = list(TIERS)

        def word(name, ln):
            return re.search(r"(?<![\w.-])%s(?![\w-])" % re.escape(name), ln) is not None

        def hosts_of(tier):
            """Hosts on lines naming the tier, or on the lines after it until another tier."""
            got = set()
            cur = None
            for ln in sect:
                named = [t for t in tiers if word(t, ln)]
                if named:
                    cur = named
                for h in ("github.test", "registry.test", "api.test", "wrongname.test", "rogue.test",
                          "notls.test", "expired.test", "plain.test"):
                    if word(h, ln) and cur and tier in cur:
                        got.add(h)
            return got
        want = {"builders": {"github.test", "registry.test", "api.test", "wrongname.test", "rogue.test",
                             "notls.test", "expired.test"},
                "capped": {"api.test"}, "watchers": {"github.test"}, "plainonly": set()}
        for t, hs in want.items():
            got = hosts_of(t)
            expect(got == hs, "tier %s: --check lists %s as intercepted, want %s; output %r" %
                   (t, sorted(got), sorted(hs), "\n".join(sect)[:800]))
        expect(not any(word("plain.test", ln) for ln in sect),
               "plain.test (not intercepted) named in the interception listing: %r" % "\n".join(sect)[:800])

    with ctx.case("daemon starts with an interception policy"):
        expect(px.start_error is None, px.start_error)

    # ================================================================== 1. git
    GIT_PROXY = {"HTTPS_PROXY": PROXY, "GIT_SSL_CAINFO": ICA}
    clone_dir = ctx.path("proxied-app")

    with ctx.case("git clone https://github.test/org/app.git through HTTPS_PROXY: content as pushed; "
                  "records for info/refs (GET) and git-upload-pack (POST); the origin saw SNI github.test "
                  "and ALPN http/1.1"):
        m = audit.mark()
        om = len(oevents("tls", "gh"))
        rc, out, err = git("clone", "-q", "https://github.test/org/app.git", clone_dir, env=GIT_PROXY)
        expect(rc == 0, "git clone: exit %d: %s" % (rc, err[-400:]))
        with open(os.path.join(clone_dir, "README")) as f:
            expect(f.read() == APP, "cloned README differs from the repository's")
        new = audit.records()[m:]
        paths = {(get(r, "http.request.method"), get(r, "url.path")) for r in new}
        for want in (("GET", "/org/app.git/info/refs"), ("POST", "/org/app.git/git-upload-pack")):
            expect(want in paths, "no record for %s %s among %s" % (want + (sorted(map(str, paths)),)))
        for r in new:
            if get(r, "url.path"):
                expect(get(r, "event.outcome") == "success", "clone request record %s" % json.dumps(r)[:300])
                expect("?" not in get(r, "url.path"), "url.path carries the query: %r" % get(r, "url.path"))
                expect(get(r, "url.domain") == "github.test", "url.domain %r" % get(r, "url.domain"))
                intercept_labels(r, "refs" if get(r, "url.path").endswith("/info/refs") else "fetch")
        tls = oevents("tls", "gh")[om:]
        expect(tls, "the origin saw no TLS session")
        for t in tls:
            expect(t["ok"] and t["sni"] == "github.test" and t["alpn"] in ("http/1.1", None),
                   "upstream session %s: want SNI github.test, ALPN http/1.1 (the origin offers h2)" % t)

    with ctx.case("git clone of /secret/vault.git (deny rule) fails with 403; the origin got nothing for it"):
        n0 = len([h for h in heads() if h["target"].startswith("/secret/")])
        rc, out, err = git("clone", "-q", "https://github.test/secret/vault.git", ctx.path("vault"),
                           env=GIT_PROXY)
        expect(rc != 0, "git clone of a denied repository succeeded")
        expect("403" in err, "git's error does not mention 403: %r" % err[-400:])
        expect(len([h for h in heads() if h["target"].startswith("/secret/")]) == n0,
               "the origin received a /secret/ request")
        rec = audit.wait_new(0, lambda r: get(r, "url.path") == "/secret/vault.git/info/refs")
        expect(rec is not None, "no record for /secret/vault.git/info/refs")
        harness.check_denied_record(rec, "intercept_denied", 403)
        expect(get(rec, "http.request.method") == "GET", "method %r" % get(rec, "http.request.method"))
        intercept_labels(rec, "secret")

    with ctx.case("git push to https://github.test/evil/exfil.git through the proxy: refused with 403, "
                  "no git-receive-pack POST at the origin, ref unchanged, record intercept_denied "
                  "with url.path and http.request.method POST"):
        d = ctx.path("proxied-evil")
        rc, out, err = git("clone", "-q", "https://github.test/evil/exfil.git", d, env=GIT_PROXY)
        expect(rc == 0, "clone of evil/exfil.git (fetch is allowed everywhere): exit %d: %s" % (rc, err[-300:]))
        with open(os.path.join(d, "loot.txt"), "w") as f:
            f.write("exfiltrated %s\n" % uuid.uuid4().hex)
        must_git("-C", d, "add", "loot.txt")
        must_git("-C", d, "commit", "-q", "-m", "exfil")
        before = head_of(evil_git)
        posts0 = [h for h in heads("gh") if h["method"] == "POST" and "git-receive-pack" in h["target"]]
        m = audit.mark()
        rc, out, err = git("-C", d, "-c", "http.proxy=%s" % PROXY, "-c", "http.sslCAInfo=%s" % ICA,
                           "push", "origin", "main")
        expect(rc != 0, "git push to a denied path succeeded: %r" % err[-300:])
        expect("403" in err, "git's error does not mention 403: %r" % err[-400:])
        posts = [h for h in heads("gh") if h["method"] == "POST" and "git-receive-pack" in h["target"]]
        expect(posts == posts0, "the origin RECEIVED a git-receive-pack POST: %s" % posts[len(posts0):][:1])
        expect(head_of(evil_git) == before, "evil/exfil.git's main moved")
        rec = audit.wait_new(m, lambda r: get(r, "event.reason") == "intercept_denied")
        expect(rec is not None, "no intercept_denied record for the push")
        harness.check_denied_record(rec, "intercept_denied", 403)
        expect(get(rec, "url.path") == "/evil/exfil.git/git-receive-pack" and
               get(rec, "http.request.method") == "POST",
               "record url.path %r method %r" % (get(rec, "url.path"), get(rec, "http.request.method")))
        expect(get(rec, "url.domain") == "github.test", "url.domain %r" % get(rec, "url.domain"))
        intercept_labels(rec, "default")

    with ctx.case("git push to https://github.test/org/app.git (push-org rule) lands through the proxy"):
        expect(os.path.isdir(clone_dir), "no clone from the first git case")
        with open(os.path.join(clone_dir, "CHANGE"), "w") as f:
            f.write("allowed push\n")
        must_git("-C", clone_dir, "add", "CHANGE")
        must_git("-C", clone_dir, "commit", "-q", "-m", "allowed push")
        m = audit.mark()
        rc, out, err = git("-C", clone_dir, "push", "origin", "main", env=GIT_PROXY)
        expect(rc == 0, "git push to org/app.git: exit %d: %s" % (rc, err[-400:]))
        expect(head_of(app_git) == must_git("-C", clone_dir, "rev-parse", "HEAD").strip(),
               "org/app.git's main is not the pushed commit")
        rec = audit.wait_new(m, lambda r: get(r, "url.path") == "/org/app.git/git-receive-pack")
        expect(rec is not None, "no record for the receive-pack POST")
        expect(get(rec, "event.outcome") == "success" and get(rec, "http.request.method") == "POST",
               "record %s" % json.dumps(rec)[:300])
        intercept_labels(rec, "push-org")

    with ctx.case("git clone of a 6 MiB repository through interception: byte-exact; then a 3 MiB push "
                  "(chunked POST) to org/big.git lands"):
        d = ctx.path("proxied-big")
        rc, out, err = git("clone", "-q", "https://github.test/org/big.git", d, env=GIT_PROXY, timeout=120)
        expect(rc == 0, "git clone: exit %d: %s" % (rc, err[-400:]))
        with open(os.path.join(d, "blob.bin"), "rb") as f:
            expect(sha(f.read()) == sha(BIGDATA), "blob.bin differs after the clone")
        with open(os.path.join(d, "blob2.bin"), "wb") as f:
            f.write(random.Random(22).randbytes(3 * 1024 * 1024))
        must_git("-C", d, "add", "blob2.bin")
        must_git("-C", d, "commit", "-q", "-m", "3 MiB more")
        rc, out, err = git("-C", d, "push", "origin", "main", env=GIT_PROXY, timeout=120)
        expect(rc == 0, "git push: exit %d: %s" % (rc, err[-400:]))
        expect(head_of(big_git) == must_git("-C", d, "rev-parse", "HEAD").strip(), "org/big.git's main did not move")
        posts = [e for e in oevents("request", "gh") if e["method"] == "POST" and
                 e["target"] == "/org/big.git/git-receive-pack"]
        expect(posts and posts[-1]["complete"] and posts[-1]["body_len"] > 3 * 1024 * 1024,
               "the origin's receive-pack POST: %s" % [(p["body_len"], p["complete"]) for p in posts])

    # ================================================================== 2. npm-style PUT
    with ctx.case("registry.test: PUT /pkg refused 403 inside TLS with Proxy-Status intercept_denied; "
                  "the origin never saw it; record with url.path and method"):
        mk = "it-%s" % uuid.uuid4().hex[:16]
        REFUSED.append(mk)
        body = ctx.path("pkg.json")
        with open(body, "w") as f:
            json.dump({"name": "left-pad", "versions": {"9.9.9": {}}, "_attachments": {}}, f)
        rc, err, res, hdrs = icurl("https://registry.test/left-pad", args=[
            "-X", "PUT", "-H", "Content-Type: application/json", "-H", "X-It-Id: %s" % mk,
            "--data-binary", "@" + body])
        expect(res and res[0]["code"] == "403", "curl PUT: rc %d %s %s" % (rc, res, err))
        expect(res[0]["connect"] == "200", "CONNECT answered %s" % res[0]["connect"])
        ps = hval(hdrs, "Proxy-Status")
        expect(ps and ps.startswith("portcullis") and ps_details(ps) == "intercept_denied",
               "Proxy-Status %r (headers %s)" % (ps, hdrs))
        expect(not reached(mk), "the origin received the PUT")
        recs = records_for(res[0]["port"], lambda r: get(r, "event.reason") == "intercept_denied")
        harness.check_denied_record(recs[0], "intercept_denied", 403)
        expect(get(recs[0], "http.request.method") == "PUT" and get(recs[0], "url.path") == "/left-pad",
               "record method %r path %r" % (get(recs[0], "http.request.method"), get(recs[0], "url.path")))

    with ctx.case("registry.test with encoded_slash: decode: a scoped package's GET /@types%2fnode is "
                  "served as sent; /@evil%2fpkg meets the /@evil/* deny; %2f..%2f is a bad path"):
        mk = "it-%s" % uuid.uuid4().hex[:16]
        rc, err, res, hdrs = icurl("https://registry.test/@types%2fnode", args=["-H", "X-It-Id: %s" % mk])
        expect(res and res[0]["code"] == "200", "GET scoped: rc %d %s %s" % (rc, res, err))
        got = reached(mk)
        expect(got and got[0]["target"] == "/@types%2fnode", "the origin saw %r" % [h["target"] for h in got])
        for target, reason, status in (("/@evil%2fpkg", "intercept_denied", "403"),
                                       ("/@EVIL%2Fpkg", "intercept_denied", "403"),
                                       ("/@types%2f..%2f@evil%2fpkg", "intercept_bad_path", "400")):
            mk = "it-%s" % uuid.uuid4().hex[:16]
            REFUSED.append(mk)
            rc, err, res, hdrs = icurl("https://registry.test" + target,
                                       args=["--path-as-is", "-H", "X-It-Id: %s" % mk])
            expect(res and res[0]["code"] == status, "GET %s: rc %d %s %s" % (target, rc, res, err))
            expect(ps_details(hval(hdrs, "Proxy-Status") or "") == reason,
                   "GET %s: Proxy-Status %r" % (target, hval(hdrs, "Proxy-Status")))
            expect(not reached(mk), "the origin received %s" % target)

    with ctx.case("real npm publish through the proxy (https-proxy, cafile = interception CA): fails "
                  "with 403, the origin got no PUT, record intercept_denied PUT /portcullis-it-pkg"):
        npm = harness.need(shutil.which("npm") or "/usr/bin/npm")
        pkg = ctx.path("npm-pkg")
        os.makedirs(pkg)
        with open(os.path.join(pkg, "package.json"), "w") as f:
            json.dump({"name": "portcullis-it-pkg", "version": "1.0.%d" % random.randrange(1 << 20),
                       "description": "exfiltration attempt", "license": "MIT"}, f)
        with open(os.path.join(pkg, "index.js"), "w") as f:
            f.write("module.exports = 'stolen';\n")
        npmrc = ctx.path("npmrc")
        with open(npmrc, "w") as f:
            f.write("registry=https://registry.test/\nhttps-proxy=%s\nproxy=%s\ncafile=%s\n"
                    "//registry.test/:_authToken=it-token\nupdate-notifier=false\nfund=false\naudit=false\n"
                    % (PROXY, PROXY, ICA))
        puts0 = [h for h in heads("gh") if h["method"] == "PUT"]
        m = audit.mark()
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(HOME=home, npm_config_userconfig=npmrc, npm_config_cache=ctx.path("npm-cache"))
        p = subprocess.run([npm, "publish", "--userconfig", npmrc], cwd=pkg, env=env, capture_output=True,
                           timeout=120, stdin=subprocess.DEVNULL, preexec_fn=harness.die_with_me())
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        expect(p.returncode != 0, "npm publish succeeded: %r" % out[-400:])
        expect("403" in out, "npm's error does not mention 403: %r" % out[-600:])
        puts = [h for h in heads("gh") if h["method"] == "PUT"]
        expect(puts == puts0, "the origin RECEIVED a PUT: %s" % puts[len(puts0):][:1])
        rec = audit.wait_new(m, lambda r: get(r, "event.reason") == "intercept_denied")
        expect(rec is not None, "no intercept_denied record; new: %s" %
               [json.dumps(r)[:200] for r in audit.records()[m:]])
        harness.check_denied_record(rec, "intercept_denied", 403)
        expect(get(rec, "http.request.method") == "PUT" and get(rec, "url.path") == "/portcullis-it-pkg",
               "record method %r path %r" % (get(rec, "http.request.method"), get(rec, "url.path")))

    with ctx.case("registry.test: DELETE refused 403 intercept_denied, never forwarded"):
        rep, mk = request("/left-pad/-rev/1", method="DELETE", host="registry.test")
        REFUSED.append(mk)
        refused_inside(rep, 403, "intercept_denied", mk, method="DELETE", path="/left-pad/-rev/1")

    with ctx.case("registry.test: GET /left-pad on the same host is served (200, origin saw it, record)"):
        mk = "it-%s" % uuid.uuid4().hex[:16]
        out = ctx.path("npm-get.json")
        rc, err, res, hdrs = icurl("https://registry.test/left-pad", args=["-H", "X-It-Id: %s" % mk],
                                   outs=[out])
        expect(rc == 0 and res and res[0]["code"] == "200", "curl GET: rc %d %s %s" % (rc, res, err))
        with open(out) as f:
            seen = json.load(f)
        expect(seen["target"] == "/left-pad" and seen["host"] == ["registry.test"],
               "origin saw %s" % seen)
        expect(len(reached(mk)) == 1, "origin saw the GET %d times" % len(reached(mk)))
        allowed_record(res[0]["port"], "/left-pad", "GET", 200, domain="registry.test")

    # ================================================================== 3. Host mismatch
    with ctx.case("Host: github.test:443 (the CONNECT host, default port) is served"):
        rep, mk = request("/pub/hostport", headers=["Host: github.test:443"])
        expect(rep.status == 200, rep.describe())
        expect(len(reached(mk)) == 1, "the origin did not get it")

    host_variants = [
        ("another host", ["Host: evil.test"], "/pub/x"),
        ("another allowed, intercepted host", ["Host: registry.test"], "/pub/x"),
        ("the same host, another port", ["Host: github.test:8443"], "/pub/x"),
        ("two Host headers, the second another host", ["Host: github.test", "Host: evil.test"], "/pub/x"),
        ("two Host headers, both the CONNECT host", ["Host: github.test", "Host: github.test"], "/pub/x"),
        ("userinfo in Host", ["Host: evil.test@github.test"], "/pub/x"),
        ("no Host header", [], "/pub/x"),
        ("absolute-form naming another host", ["Host: github.test"], "https://evil.test/pub/x"),
        ("absolute-form naming another host, Host of it", ["Host: evil.test"], "https://evil.test/pub/x"),
        ("absolute-form http:// naming the CONNECT host (origin-form only)", ["Host: github.test"],
         "http://github.test/secret/x"),
        ("authority-form", ["Host: github.test"], "evil.test:443"),
    ]
    for what, hs, target in host_variants:
        with ctx.case("Host mismatch: %s -> refused 4xx inside TLS, never forwarded" % what):
            rep, mk = request(target, headers=hs)
            REFUSED.append(mk)
            expect(rep.status is not None, rep.describe())
            expect(rep.status in (400, 403) and rep.reason in ("intercept_host_mismatch", "bad_request",
                                                                "intercept_bad_path"),
                   "want 400/403 intercept_host_mismatch (or bad_request), got %s" % rep.describe())
            if what in ("another host", "the same host, another port", "another allowed, intercepted host"):
                expect(rep.status == 403 and rep.reason == "intercept_host_mismatch",
                       "want 403 intercept_host_mismatch, got %s" % rep.describe())
            refused_inside(rep, rep.status, rep.reason, mk)

    # ================================================================== 4. paths
    with ctx.case("control: GET /pub/readme allowed (200, forwarded as sent); GET /secret/x denied 403"):
        rep, mk = request("/pub/readme")
        expect(rep.status == 200, rep.describe())
        got = reached(mk)
        expect(len(got) == 1 and got[0]["target"] == "/pub/readme", "origin saw %s" % got)
        allowed_record(rep.src_port, "/pub/readme", "GET", 200, domain="github.test", rule_name="read")
        rep, mk = request("/secret/x")
        REFUSED.append(mk)
        refused_inside(rep, 403, "intercept_denied", mk, method="GET", path="/secret/x")

    denied_paths = ["/SECRET/x", "/Secret/x", "/sEcReT/X", "/%73ecret/x", "/%53ECRET/x", "/secre%74/x",
                    "/secret/", "/secret/x?y=1", "/secret/a/b/c.git/info/refs", "/%73%65%63%72%65%74/x"]
    bad_paths = ["/pub/../secret/x", "/pub/%2e%2e/secret/x", "/pub/%2E%2E/secret/x", "/pub/.%2e/secret/x",
                 "/pub/%2e./secret/x", "/./secret/x", "/pub/%2e/secret/x", "/secret%2Fx", "/secret%2fx",
                 "/pub%2F..%2Fsecret/x", "//secret/x", "/pub//secret/x", "/secret/x#frag",
                 "/secret%5Cx", "/pub/%00/x", "/pub/%zz/secret", "/pub/%", "/pub/%2", "/pub/..",
                 "/pub/%2e%2e", "/secret/x/%2e%2e/%2e%2e/pub"]
    raw_bad_paths = [b"/pub\\..\\secret\\x", b"/secret\\x", b"/pub/\xff/secret", b"/secret/\x7f", b"/pub/\tx"]
    for t in denied_paths:
        with ctx.case("path %s against deny /secret/** -> 403 intercept_denied (or 400 intercept_bad_path), "
                      "never forwarded" % t):
            rep, mk = request(t)
            REFUSED.append(mk)
            expect(rep.status is not None, rep.describe())
            if rep.status == 400:
                refused_inside(rep, 400, "intercept_bad_path", mk)
            else:
                refused_inside(rep, 403, "intercept_denied", mk, method="GET")
    for t in bad_paths:
        with ctx.case("path %s -> 400 intercept_bad_path, never forwarded" % t):
            rep, mk = request(t)
            REFUSED.append(mk)
            refused_inside(rep, 400, "intercept_bad_path", mk)
    for t in raw_bad_paths:
        with ctx.case("path %r (raw byte) -> refused 400 (intercept_bad_path or bad_request), never forwarded" % t):
            rep, mk = request(t)
            REFUSED.append(mk)
            expect(rep.status == 400, rep.describe())
            refused_inside(rep, 400, ("intercept_bad_path", "bad_request"), mk)
    with ctx.case("an escape of a reserved byte stays an escape: /secret%23/x is not under /secret/ (its first "
                  "segment is 'secret#'), allowed and forwarded exactly as sent"):
        rep, mk = request("/secret%23/x")
        expect(rep.status == 200, rep.describe())
        got = reached(mk)
        expect(len(got) == 1 and got[0]["target"] == "/secret%23/x", "origin saw %s" % got)

    with ctx.case("a query is not a path: /pub?x=/../secret and /pub/;/../ style query are allowed, "
                  "forwarded with the query, record url.path without it"):
        rep, mk = request("/pub/q?next=/../secret/x")
        expect(rep.status == 200, rep.describe())
        got = reached(mk)
        expect(len(got) == 1 and got[0]["target"] == "/pub/q?next=/../secret/x", "origin saw %s" % got)
        allowed_record(rep.src_port, "/pub/q", "GET", 200)

    def req_bytes(method, target, marker, host="github.test", extra=(), body=b""):
        hs = ["Host: %s" % host, "X-It-Id: %s" % marker] + list(extra)
        if body:
            hs.append("Content-Length: %d" % len(body))
        return ("%s %s HTTP/1.1\r\n" % (method, target) + "".join(h + "\r\n" for h in hs) + "\r\n").encode() + body

    with ctx.case("pipelined in one write, allowed then denied: 200 then 403 intercept_denied; the origin got "
                  "only the first"):
        a, b = ("it-%s" % uuid.uuid4().hex[:16] for _ in range(2))
        REFUSED.append(b)
        r, cl, err = tunnel("github.test")
        expect(cl is not None, err)
        cl.send(req_bytes("GET", "/pub/first", a) +
                req_bytes("POST", "/evil/exfil.git/git-receive-pack", b, body=b"0000"))
        r1 = cl.response(timeout=10)
        r2 = cl.response(method="POST", timeout=10)
        cl.close()
        expect(r1.status == 200, "first: %s" % r1.describe())
        expect(r2.status == 403 and r2.reason == "intercept_denied", "second: %s" % r2.describe())
        expect(len(reached(a)) == 1 and not reached(b), "origin saw first %d, second %d times" %
               (len(reached(a)), len(reached(b))))
        allowed_record(r1.src_port, "/pub/first", "GET", 200, rule_name="read")
        rec = records_for(r2.src_port, lambda x: get(x, "event.reason") == "intercept_denied")[0]
        expect(get(rec, "url.path") == "/evil/exfil.git/git-receive-pack", "url.path %r" % get(rec, "url.path"))

    with ctx.case("pipelined in one write, denied then allowed: 403, the session ends, the origin got neither"):
        a, b = ("it-%s" % uuid.uuid4().hex[:16] for _ in range(2))
        REFUSED.extend([a, b])
        r, cl, err = tunnel("github.test")
        expect(cl is not None, err)
        cl.send(req_bytes("GET", "/secret/first", a) + req_bytes("GET", "/pub/second", b))
        r1 = cl.response(timeout=10)
        expect(r1.status == 403 and r1.reason == "intercept_denied", "first: %s" % r1.describe())
        r2 = cl.response(timeout=5)
        cl.close()
        expect(r2.status is None, "a second response after the refusal: %s" % r2.describe())
        expect(not reached(a) and not reached(b), "the origin got %s" % (reached(a) + reached(b))[:1])

    with ctx.case("keep-alive framing: HEAD, 304, 204 and GET pipelined on one session, each answered in "
                  "order, one record each"):
        r, cl, err = tunnel("api.test")
        expect(cl is not None, err)
        mk = "it-%s" % uuid.uuid4().hex[:16]
        cl.send(req_bytes("HEAD", "/cl/5000/1", mk, host="api.test") +
                req_bytes("GET", "/cl/70/2", mk, host="api.test") +
                req_bytes("HEAD", "/pub/head2", mk, host="api.test") +
                req_bytes("GET", "/cl/3/3", mk, host="api.test"))
        reps_ = [cl.response(method="HEAD"), cl.response(), cl.response(method="HEAD"), cl.response()]
        cl.close()
        expect([x.status for x in reps_] == [200] * 4, "statuses %s" % [x.describe() for x in reps_])
        expect(reps_[0].header("Content-Length") == "5000" and reps_[0].body == b"",
               "HEAD: Content-Length %r, %d body bytes" % (reps_[0].header("Content-Length"), len(reps_[0].body)))
        expect(reps_[1].body == random.Random(2).randbytes(70) and reps_[3].body == random.Random(3).randbytes(3),
               "GET bodies differ")
        recs = records_for(r.src_port, lambda x: get(x, "url.path") is not None, n=4)
        expect([get(x, "http.request.method") for x in recs] == ["HEAD", "GET", "HEAD", "GET"],
               "records %s" % [(get(x, "http.request.method"), get(x, "url.path")) for x in recs])

    smuggles = [
        ("Content-Length and Transfer-Encoding", ["Content-Length: 4", "Transfer-Encoding: chunked"],
         b"0\r\n\r\nGET /secret/smuggled HTTP/1.1\r\nHost: github.test\r\n\r\n"),
        ("two Content-Lengths", ["Content-Length: 0", "Content-Length: 60"],
         b"GET /secret/smuggled HTTP/1.1\r\nHost: github.test\r\n\r\n"),
        ("Transfer-Encoding: chunked, identity", ["Transfer-Encoding: chunked, identity"],
         b"0\r\n\r\n"),
        ("obs-fold header", ["X-Fold: a", " folded"], b""),
    ]
    for what, hs, tail in smuggles:
        with ctx.case("smuggling inside TLS (%s): 400, the origin gets nothing" % what):
            mk = "it-%s" % uuid.uuid4().hex[:16]
            REFUSED.append(mk)
            r, cl, err = tunnel("github.test")
            expect(cl is not None, err)
            n0 = len([h for h in heads() if h["target"] == "/secret/smuggled"])
            cl.send(req_bytes("POST", "/pub/smuggle", mk, extra=hs) + tail)
            rep = cl.response(method="POST", timeout=10)
            cl.close()
            expect(rep.status == 400, rep.describe())
            refused_inside(rep, 400, ("bad_request", "intercept_bad_path"), mk)
            expect(len([h for h in heads() if h["target"] == "/secret/smuggled"]) == n0,
                   "the smuggled request reached the origin")

    with ctx.case("Upgrade: websocket inside an intercepted tunnel -> 403 upgrade_not_allowed, never forwarded"):
        rep, mk = request("/pub/ws", headers=["Host: github.test", "Connection: Upgrade", "Upgrade: websocket",
                                              "Sec-WebSocket-Version: 13",
                                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
        REFUSED.append(mk)
        refused_inside(rep, 403, "upgrade_not_allowed", mk, method="GET")

    # ================================================================== 5. upstream certificates
    def connect_502(host, reason, listener):
        h0 = len(heads(listener)) if listener else 0
        t0 = len(oevents("tls", listener)) if listener else 0
        rc, err, res, hdrs = icurl("https://%s/pub/x" % host)
        expect(res, "curl printed no result: rc %d %s" % (rc, err))
        expect(rc != 0 and res[0]["connect"] == "502", "want CONNECT 502, curl rc %d connect %s code %s: %s" %
               (rc, res[0]["connect"], res[0]["code"], err))
        recs = records_for(res[0]["port"])
        harness.check_denied_record(recs[0], reason, 502)
        expect(get(recs[0], "http.request.method") == "CONNECT", "method %r" % get(recs[0], "http.request.method"))
        if listener:
            expect(len(heads(listener)) == h0, "the origin's HTTP handler got a request")
            tl = oevents("tls", listener)[t0:]
            expect(all(not t["ok"] for t in tl), "a TLS session with the origin completed: %s" % tl)
        return recs[0]

    with ctx.case("upstream certificate from an untrusted CA (rogue.test) -> CONNECT 502 upstream_cert_invalid; "
                  "no request reached the origin"):
        connect_502("rogue.test", "upstream_cert_invalid", "rogue")
    with ctx.case("upstream certificate for another name (wrongname.test) -> CONNECT 502 "
                  "upstream_cert_invalid; no request reached the origin"):
        connect_502("wrongname.test", "upstream_cert_invalid", "gh")
    with ctx.case("an expired upstream certificate (expired.test, the trusted CA, 2020) -> CONNECT 502 "
                  "upstream_cert_invalid; no request reached the origin"):
        connect_502("expired.test", "upstream_cert_invalid", "expired")
    with ctx.case("an upstream that does not speak TLS (SSH banner on 443) -> CONNECT 502 upstream_tls_failed"):
        connect_502("notls.test", "upstream_tls_failed", None)

    # ================================================================== 6. client does not trust the CA
    with ctx.case("curl trusting only the public CA: handshake fails (exit 60), record "
                  "intercept_client_rejected, no request at the origin"):
        mk = "it-%s" % uuid.uuid4().hex[:16]
        REFUSED.append(mk)
        rc, err, res, hdrs = icurl("https://github.test/pub/untrusting", cacert=PUB,
                                   args=["-H", "X-It-Id: %s" % mk])
        expect(rc == 60, "curl exit %d (want 60, certificate problem): %s" % (rc, err))
        expect(res and res[0]["connect"] == "200", "CONNECT %s" % res)
        recs = records_for(res[0]["port"], lambda r: get(r, "event.reason") == "intercept_client_rejected")
        expect(get(recs[0], "http.request.method") == "CONNECT", "method %r" % get(recs[0], "http.request.method"))
        expect(not reached(mk), "the origin got the request")
    with ctx.case("openssl s_client -verify_return_error trusting only the public CA: fails, "
                  "record intercept_client_rejected"):
        m = audit.mark()
        rc, out, err = s_client("github.test", ["-servername", "github.test", "-verify_return_error"],
                                data=b"GET /pub/x HTTP/1.1\r\nHost: github.test\r\n\r\n", cafile=PUB)
        expect(rc != 0, "s_client exit 0: %r" % out[-300:])
        rec = audit.wait_new(m, lambda r: get(r, "event.reason") == "intercept_client_rejected")
        expect(rec is not None, "no intercept_client_rejected record; new: %s" %
               [json.dumps(r)[:200] for r in audit.records()[m:]])
    with ctx.case("s_client trusting the interception CA: verify 0, the leaf is for github.test and issued "
                  "by the interception CA"):
        rc, out, err = s_client("github.test", ["-servername", "github.test", "-verify_return_error",
                                                "-verify_hostname", "github.test", "-showcerts", "-ign_eof"],
                                data=b"GET /pub/x HTTP/1.1\r\nHost: github.test\r\nConnection: close\r\n\r\n")
        expect(rc == 0 and "Verify return code: 0 (ok)" in out, "s_client rc %d: %r %r" % (rc, out[-400:], err[-300:]))
        expect(re.search(r"i:\s*CN\s*=\s*portcullis-it interception CA", out), "issuer not the interception CA: %r" %
               out[:600])
        expect("HTTP/1.1 200" in out, "no 200 inside the session: %r" % out[-300:])
        leaf = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
        expect(leaf, "no certificate in the -showcerts output")
        p = subprocess.run([OPENSSL, "x509", "-noout", "-ext", "subjectAltName"], input=leaf.group(0).encode(),
                           capture_output=True, timeout=20)
        sans = re.findall(r"(DNS|IP Address|URI|email):([^,\s]+)", p.stdout.decode())
        expect(sans == [("DNS", "github.test")], "the minted leaf's subjectAltName is %s, want DNS:github.test "
               "only" % sans)
        nb, na = cert_dates(leaf.group(0).encode())
        _, ca_na = cert_dates(open(ICA, "rb").read())
        expect(0 < na - nb <= 24 * 3600 + 600, "the minted leaf is valid for %.0f s, want at most 24h "
               "(leaf_lifetime default)" % (na - nb))
        expect(na <= ca_na, "the minted leaf outlives the CA (%s > %s)" % (na, ca_na))

    # ================================================================== 7. ALPN
    with ctx.case("curl --http2 through interception: ALPN http/1.1, request served (http_version 1.1)"):
        rc, err, res, hdrs = icurl("https://api.test/pub/h2", args=["--http2"])
        expect(rc == 0 and res and res[0]["code"] == "200", "rc %d %s %s" % (rc, res, err))
        expect(res[0]["version"] == "1.1", "http_version %s, want 1.1" % res[0]["version"])
    with ctx.case("s_client -alpn h2,http/1.1: ALPN protocol http/1.1, request served; -alpn h2 alone never "
                  "gets h2"):
        rc, out, err = s_client("api.test", ["-servername", "api.test", "-alpn", "h2,http/1.1", "-ign_eof"],
                                data=b"GET /pub/alpn HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        expect("ALPN protocol: http/1.1" in out, "s_client: %r" % out[-600:])
        expect("HTTP/1.1 200" in out, "no 200 inside the session: %r" % out[-300:])
        m = audit.mark()
        rc, out, err = s_client("api.test", ["-servername", "api.test", "-alpn", "h2"])
        expect("ALPN protocol: h2" not in out, "negotiated h2: %r" % out[-400:])
        rec = audit.wait_new(m, lambda r: get(r, "event.reason") == "intercept_handshake_failed")
        expect(rec is not None, "-alpn h2 alone: no intercept_handshake_failed record; new: %s" %
               [json.dumps(r)[:200] for r in audit.records()[m:]])

    # ================================================================== 8. caps and body limits
    with ctx.case("caps.download_bytes 64KiB inside interception: a 1 MB response is cut, prefix-exact, "
                  "record download_cap"):
        out = ctx.path("capped.bin")
        rc, err, res, hdrs = icurl("https://api.test/cl/1000000/3", src="127.0.0.5", outs=[out])
        expect(res and res[0]["connect"] == "200", "CONNECT %s rc %d %s" % (res, rc, err))
        expect(rc != 0, "curl completed a 1 MB download under a 64 KiB cap")
        got = readf(out)
        want = random.Random(3).randbytes(1000000)
        expect(len(got) < 1000000 and got == want[:len(got)], "got %d bytes, prefix %s" %
               (len(got), got == want[:len(got)]))
        expect(len(got) <= CAP, "curl got %d body bytes, over the 64 KiB cap" % len(got))
        cut = harness.wait_until(lambda: [r for r in audit.records() if get(r, "source.port") == res[0]["port"]
                                          and get(r, "event.reason") == "download_cap"], 5)
        expect(cut, "no download_cap record for source port %s: %s" % (res[0]["port"], [
            json.dumps(r)[:300] for r in audit.records() if get(r, "source.port") == res[0]["port"]]))
        expect(any(get(r, "url.path") == "/cl/1000000/3" for r in cut),
               "the download_cap record is not the request's (url.path): %s" % [json.dumps(r)[:300] for r in cut])

    def upload(target, data, chunked=False, marker=None):
        """Send head then body in 16 KiB pieces, stopping as soon as the proxy answers."""
        marker = marker or "it-%s" % uuid.uuid4().hex[:16]
        r, cl, err = tunnel("api.test")
        expect(cl is not None, err)
        hs = ["Host: api.test", "X-It-Id: %s" % marker, "Content-Type: application/octet-stream"]
        hs.append("Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % len(data))
        wire = b"".join(b"%x\r\n" % len(data[i:i + 16384]) + data[i:i + 16384] + b"\r\n"
                        for i in range(0, len(data), 16384)) + b"0\r\n\r\n" if chunked else data
        cl.send(("PUT %s HTTP/1.1\r\n" % target).encode() + "".join(h + "\r\n" for h in hs).encode() + b"\r\n")
        sent = 0
        for off in range(0, len(wire), 16384):
            if cl.sock.pending() or select.select([cl.sock], [], [], 0)[0]:
                break
            if cl.send(wire[off:off + 16384]) is not None:
                break
            sent = off + 16384
        rep = cl.response(method="PUT", timeout=10)
        cl.close()
        return rep, marker, sent

    body = random.Random(11).randbytes(200000)
    for chunked in (False, True):
        with ctx.case("max_request_body 64KiB: a 200000-byte PUT (%s) -> 413 intercept_body_too_large; "
                      "the origin never got the whole body" % ("chunked" if chunked else "Content-Length")):
            rep, mk, sent = upload("/upload/big", body, chunked=chunked)
            expect(rep.status == 413 and rep.reason == "intercept_body_too_large",
                   "want 413 intercept_body_too_large, got %s" % rep.describe())
            recs = records_for(rep.src_port, lambda r: get(r, "event.reason") == "intercept_body_too_large")
            harness.check_denied_record(recs[0], "intercept_body_too_large", 413)
            if not chunked:
                expect(not reached(mk), "a Content-Length over the cap reached the origin (docs: refused "
                       "before anything is sent): %s" % reached(mk)[:1])
            for h in reached(mk):
                reqs = [e for e in oevents("request") if e["peer"] == h["peer"] and e["seq"] == h["seq"]]
                expect(reqs and all(not q["complete"] for q in reqs) and
                       all(q["body_len"] < len(body) for q in reqs),
                       "the origin got the whole body: %s" % reqs)
    with ctx.case("max_request_body 64KiB: a 60000-byte PUT is forwarded byte-exact (curl)"):
        small = random.Random(12).randbytes(60000)
        fn = ctx.path("small.bin")
        with open(fn, "wb") as f:
            f.write(small)
        out = ctx.path("small.json")
        rc, err, res, hdrs = icurl("https://api.test/upload/small", outs=[out],
                                   args=["-X", "PUT", "--data-binary", "@" + fn])
        expect(rc == 0 and res and res[0]["code"] == "200", "rc %d %s %s" % (rc, res, err))
        with open(out) as f:
            seen = json.load(f)
        expect(seen["body_len"] == len(small) and seen["body_sha256"] == sha(small), "origin saw %s" % seen)
        allowed_record(res[0]["port"], "/upload/small", "PUT", 200)

    with ctx.case("a 2 MiB PUT with Expect: 100-continue (curl) where no body cap applies: forwarded byte-exact"):
        blob = random.Random(13).randbytes(2 * 1024 * 1024)
        fn = ctx.path("expect.bin")
        with open(fn, "wb") as f:
            f.write(blob)
        out = ctx.path("expect.json")
        rc, err, res, hdrs = icurl("https://api.test/upload/expect", src="127.0.0.5", outs=[out],
                                   args=["-X", "PUT", "-H", "Expect: 100-continue", "--data-binary", "@" + fn])
        expect(rc == 0 and res and res[0]["code"] == "200", "rc %d %s %s" % (rc, res, err))
        with open(out) as f:
            seen = json.load(f)
        expect(seen["body_len"] == len(blob) and seen["body_sha256"] == sha(blob), "origin saw %s" % seen)

    # ================================================================== 9. not intercepted
    with ctx.case("plain.test (no intercept:) is a plain tunnel: body sha256 unchanged, one tunnel record "
                  "without url.*"):
        out = ctx.path("plain.bin")
        rc, err, res, hdrs = icurl("https://plain.test/cl/300000/5", cacert=PUB, outs=[out], args=["--http1.1"])
        expect(rc == 0 and res and res[0]["code"] == "200", "rc %d %s %s" % (rc, res, err))
        with open(out, "rb") as f:
            expect(sha(f.read()) == sha(random.Random(5).randbytes(300000)), "body differs")
        recs = records_for(res[0]["port"])
        harness.check_tunnel_record(recs[0])
        expect(get(recs[0], "event.action") == "tunnel", "event.action %r" % get(recs[0], "event.action"))
        expect(get(recs[0], "url") is None, "tunnel record carries url.*: %s" % get(recs[0], "url"))
    with ctx.case("plain.test: the certificate is the origin's own (verifies with the public CA, leaf equals "
                  "the origin's, the interception CA nowhere in the chain); curl trusting only the "
                  "interception CA fails"):
        rc, out, err = s_client("plain.test", ["-servername", "plain.test", "-verify_return_error", "-showcerts"],
                                cafile=PUB)
        expect(rc == 0 and "Verify return code: 0 (ok)" in out, "s_client rc %d: %r" % (rc, out[-400:]))
        pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
        with open(os.path.join(pub, "plain.pem")) as f:
            mine = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", f.read(), re.S)
        expect(pems and pems[0].split() == mine[0].split(), "the leaf is not the origin's certificate")
        expect("interception CA" not in out, "the interception CA appears in the chain: %r" % out[:600])
        rc, err, res, hdrs = icurl("https://plain.test/cl/10/5", cacert=ICA, args=["--http1.1"])
        expect(rc == 60, "curl trusting only the interception CA: exit %d, want 60: %s" % (rc, err))
    with ctx.case("plainonly tier (no intercept anywhere): plain.test tunnel works, body unchanged"):
        out = ctx.path("plain2.bin")
        rc, err, res, hdrs = icurl("https://plain.test/cl/5000/6", src="127.0.0.7", cacert=PUB, outs=[out],
                                   args=["--http1.1"])
        expect(rc == 0 and res and res[0]["code"] == "200", "rc %d %s %s" % (rc, res, err))
        with open(out, "rb") as f:
            expect(f.read() == random.Random(6).randbytes(5000), "body differs")

    # ================================================================== 10. per-request records, SNI
    with ctx.case("three requests on one keep-alive connection: one CONNECT, three records with their "
                  "url.path, one upstream connection"):
        urls = ["https://api.test/ka/%d" % i for i in (1, 2, 3)]
        rc, err, res, hdrs = icurl(urls)
        expect(rc == 0 and len(res) == 3 and all(x["code"] == "200" for x in res), "rc %d %s %s" % (rc, res, err))
        expect([x["connects"] for x in res] == ["1", "0", "0"] and len({x["port"] for x in res}) == 1,
               "curl did not reuse one connection: %s" % res)
        port = res[0]["port"]
        recs = records_for(port, lambda r: get(r, "url.path") is not None, n=3)
        expect([get(r, "url.path") for r in recs] == ["/ka/1", "/ka/2", "/ka/3"],
               "url.path of the records: %s" % [get(r, "url.path") for r in recs])
        for r in recs:
            expect(get(r, "http.request.method") == "GET" and get(r, "event.outcome") == "success",
                   "record %s" % json.dumps(r)[:300])
        expect(len({get(r, "trace.id") for r in recs}) == 1, "the records do not share one trace.id")
        hs = [h for h in heads("gh") if h["target"] in ("/ka/1", "/ka/2", "/ka/3")]
        expect(len(hs) == 3 and len({h["peer"] for h in hs}) == 1,
               "origin saw the three on %d connections" % len({h["peer"] for h in hs}))
    with ctx.case("SNI other than the CONNECT host (s_client -connect github.test -servername registry.test) "
                  "-> refused tls_sni_mismatch, nothing at the origin"):
        m = audit.mark()
        h0 = len(heads())
        rc, out, err = s_client("github.test", ["-servername", "registry.test", "-ign_eof"],
                                data=b"GET /pub/sni HTTP/1.1\r\nHost: registry.test\r\n\r\n")
        expect("HTTP/1.1 200" not in out, "a request was answered: %r" % out[-300:])
        rec = audit.wait_new(m, lambda r: get(r, "event.reason") == "tls_sni_mismatch")
        expect(rec is not None, "no tls_sni_mismatch record; new: %s" %
               [json.dumps(r)[:200] for r in audit.records()[m:]])
        expect(len(heads()) == h0, "the origin got a request")
    with ctx.case("no SNI to a DNS host (s_client -noservername) -> refused tls_no_sni"):
        m = audit.mark()
        rc, out, err = s_client("github.test", ["-noservername", "-ign_eof"],
                                data=b"GET /pub/nosni HTTP/1.1\r\nHost: github.test\r\n\r\n")
        expect("HTTP/1.1 200" not in out, "a request was answered: %r" % out[-300:])
        rec = audit.wait_new(m, lambda r: get(r, "event.reason") == "tls_no_sni")
        expect(rec is not None, "no tls_no_sni record; new: %s" % [json.dumps(r)[:200] for r in audit.records()[m:]])

    # ================================================================== audit mode
    with ctx.case("audit-mode tier: GET /secret/x passes (200, forwarded), record labels.would_deny "
                  "intercept_denied"):
        rep, mk = request("/secret/audit", src="127.0.0.6")
        expect(rep.status == 200, rep.describe())
        expect(len(reached(mk)) == 1, "the origin did not get it")
        recs = records_for(rep.src_port, lambda r: get(r, "url.path") == "/secret/audit")
        expect(get(recs[0], "labels.would_deny") == "intercept_denied",
               "labels.would_deny %r" % get(recs[0], "labels.would_deny"))

    # ================================================================== metrics, reloads
    with ctx.case("metrics: certificates minted and served from the cache, the CA's notAfter"):
        minted = metric("portcullis_intercept_certs_minted_total")
        hits = metric("portcullis_intercept_cert_cache_hits_total")
        expect(minted is not None and 3 <= minted <= 12, "certs_minted_total %r, want one per intercepted host "
               "with a completed handshake (3..12)" % minted)
        expect(hits is not None and hits >= 20, "cert_cache_hits_total %r, want >= 20 (dozens of sessions to "
               "github.test)" % hits)
        _, ca_na = cert_dates(open(ICA, "rb").read())
        na = metric("portcullis_intercept_ca_not_after_seconds")
        expect(na is not None and abs(na - ca_na) <= 1, "ca_not_after_seconds %r, the CA says %r" % (na, ca_na))

    with ctx.case("the rules current when a request's head arrives decide it: a session open across a "
                  "policy reload (api.test default: deny) gets 403 intercept_denied for its next request"):
        r, cl, err = tunnel("api.test")
        expect(cl is not None, err)
        a, b = ("it-%s" % uuid.uuid4().hex[:16] for _ in range(2))
        REFUSED.append(b)
        cl.send(req_bytes("GET", "/pub/before-reload", a, host="api.test"))
        r1 = cl.response(timeout=10)
        expect(r1.status == 200, "before the reload: %s" % r1.describe())
        r0 = metric("portcullis_policy_reloads_total", result="success") or 0
        tiers2 = json.loads(json.dumps(TIERS))
        for ru in tiers2["builders"]["allow"]:
            if ru["host"] == "api.test":
                ru["intercept"] = {"default": "deny"}
        pol2 = harness.base_policy(px.audit_path, tiers2, interception=px.policy["interception"])
        harness.write_atomic(px.policy_path, harness.to_yaml(pol2) + "\n")
        expect(harness.wait_until(lambda: (metric("portcullis_policy_reloads_total", result="success") or 0) > r0,
                                  10), "the policy was not reloaded within 10 s")
        cl.send(req_bytes("GET", "/pub/after-reload", b, host="api.test"))
        r2 = cl.response(timeout=10)
        cl.close()
        expect(r2.status == 403 and r2.reason == "intercept_denied",
               "after the reload, same session: %s" % r2.describe())
        expect(len(reached(a)) == 1 and not reached(b), "origin saw before %d, after %d" %
               (len(reached(a)), len(reached(b))))

    with ctx.case("interception CA files replaced in place (new CA): reloaded, new sessions (a host already "
                  "in the leaf cache) get leaves of the new CA; the old CA no longer verifies"):
        old_ca = ctx.path("intercept-ca-old.pem")
        shutil.copyfile(ICA, old_ca)
        ica2 = ctx.path("intercept-ca-2")
        harness.mkcerts("ca", ica2, "--cn", "portcullis-it interception CA two")
        c0 = metric("portcullis_intercept_ca_reloads_total", result="success") or 0
        with open(os.path.join(ica2, "ca.key")) as f:
            harness.write_atomic(os.path.join(ica, "ca.key"), f.read())
        with open(os.path.join(ica2, "ca.pem")) as f:
            harness.write_atomic(ICA, f.read())
        os.kill(px.proc.pid, signal.SIGHUP)
        expect(harness.wait_until(lambda: (metric("portcullis_intercept_ca_reloads_total", result="success")
                                           or 0) > c0, 10), "no successful CA reload within 10 s")
        rc, err, res, hdrs = icurl("https://github.test/pub/newca")
        expect(rc == 0 and res and res[0]["code"] == "200", "trusting the new CA: rc %d %s %s" % (rc, res, err))
        rc, err, res, hdrs = icurl("https://github.test/pub/oldca", cacert=old_ca)
        expect(rc == 60, "trusting only the old CA: curl exit %d, want 60: %s" % (rc, err))

    # ================================================================== other readings of a request
    with ctx.case("plain http:// PUT to registry.test:80, whose rule (ports 80, 443) intercepts: the "
                  "request rules decide it too (403 intercept_denied); a GET passes"):
        mk = "it-%s" % uuid.uuid4().hex[:16]
        REFUSED.append(mk)
        r = harness.send_raw(("PUT http://registry.test/pkg HTTP/1.1\r\nHost: registry.test\r\n"
                              "X-It-Id: %s\r\nContent-Length: 4\r\n\r\nDATA" % mk).encode(),
                             src="127.0.0.8")
        expect(r.status == 403 and r.reason == "intercept_denied", "plain PUT: %s" % r.describe())
        recs = records_for(r.src_port, lambda x: get(x, "event.reason") == "intercept_denied")
        expect(get(recs[0], "http.request.method") == "PUT" and get(recs[0], "url.path") == "/pkg",
               "plain PUT record: %s" % json.dumps(recs[0])[:300])
        mk = "it-%s" % uuid.uuid4().hex[:16]
        r = harness.send_raw(("GET http://registry.test/pkg HTTP/1.1\r\nHost: registry.test\r\n"
                              "X-It-Id: %s\r\nConnection: close\r\n\r\n" % mk).encode(), src="127.0.0.8")
        expect(r.status == 200 and reached(mk), "plain GET: %s, origin saw %s" % (r.status, reached(mk)))
        # The tier allows Upgrade, but after a 101 nothing would be decided any more (h2c).
        mk = "it-%s" % uuid.uuid4().hex[:16]
        REFUSED.append(mk)
        r = harness.send_raw(("GET http://registry.test/pkg HTTP/1.1\r\nHost: registry.test\r\n"
                              "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                              "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nX-It-Id: %s\r\n\r\n" % mk).encode(),
                             src="127.0.0.8")
        expect(r.status == 403 and r.reason == "upgrade_not_allowed", "plain h2c upgrade: %s" % r.describe())

    for label, target, method, host, extra, reason in (
            ("a lowercase 'put' meets the PUT deny", "/pkg", "put", "registry.test", [], "intercept_denied"),
            ("POST with X-HTTP-Method-Override: PUT meets the PUT deny", "/pkg", "POST", "registry.test",
             ["X-HTTP-Method-Override: PUT"], "intercept_denied"),
            ("an override naming two methods is refused", "/pkg", "POST", "registry.test",
             ["X-HTTP-Method-Override: GET, PUT"], "intercept_denied"),
            ("an allowed GET with X-Original-URL naming a denied path", "/org/app.git/info/refs", "GET",
             "github.test", ["X-Original-URL: /secret/vault.git/info/refs"], "intercept_denied"),
            ("/secret;x/... is /secret/... to a servlet container: the deny meets it",
             "/secret;x/vault.git/info/refs", "GET", "github.test", [], "intercept_denied"),
            ("/org/..;/secret/... is a dot segment to a servlet container", "/org/..;/secret/vault.git/info/refs",
             "GET", "github.test", [], "intercept_bad_path"),
            ("/org/evil;.git/git-receive-pack matches the org push glob as sent, but a servlet "
             "container reads /org/evil/git-receive-pack, which no entry allows", "/org/evil;.git/git-receive-pack",
             "POST", "github.test", [], "intercept_denied"),
            ("X_HTTP_Method_Override (underscores: CGI and WSGI read it as the same variable)", "/pkg", "POST",
             "registry.test", ["X_HTTP_Method_Override: PUT"], "intercept_denied"),
            ("POST /pkg?_method=PUT (Symfony, Laravel read _method from the query)", "/pkg?a=1&_method=PUT",
             "POST", "registry.test", [], "intercept_denied"),
            ("POST /pkg?%5Fmethod=put", "/pkg?%5Fmethod=put", "POST", "registry.test", [], "intercept_denied"),
            ("a double escape (%252e%252e: '..' to a server that decodes twice)", "/pub/%252e%252e/secret/x",
             "GET", "github.test", [], "intercept_bad_path")):
        with ctx.case("inside interception: %s (%s)" % (label, reason)):
            body = b"DATA" if method in ("put", "POST") else b""
            rep, mk = request(target, method=method, host=host, body=body,
                              headers=["Host: %s" % host] + extra)
            REFUSED.append(mk)
            refused_inside(rep, 403 if reason == "intercept_denied" else 400, reason, mk, method=method)

    with ctx.case("a tunnel to plain.test (not intercepted) whose TLS names github.test (intercepted) is "
                  "cut before anything reaches github.test's origin: tls_sni_not_allowed"):
        mk = "it-%s" % uuid.uuid4().hex[:16]
        REFUSED.append(mk)
        r = harness.connect("plain.test:443", src="127.0.0.9")
        expect(r.status == 200, "CONNECT: %s" % r.status)
        c = ssl.create_default_context(cafile=PUB)
        c.check_hostname = False
        c.set_alpn_protocols(["http/1.1"])
        got = None
        try:
            s = c.wrap_socket(r.sock, server_hostname="github.test")
            s.sendall(("POST /secret/vault.git/git-receive-pack HTTP/1.1\r\nHost: github.test\r\n"
                       "X-It-Id: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % mk).encode())
            got = s.recv(65536)
        except (OSError, ssl.SSLError):
            pass
        expect(not got, "the tunnel answered %r" % got[:80] if got else "")
        recs = records_for(r.src_port, lambda x: get(x, "event.reason") == "tls_sni_not_allowed")
        expect(recs, "no tls_sni_not_allowed record")

    # ================================================================== sweep
    with ctx.case("none of the %d refused requests ever reached the origin (at least 40 refusals "
                  "checked in full)" % len(REFUSED)):
        expect(len(VERIFIED) >= 40, "only %d refusals inside TLS were checked in full" % len(VERIFIED))
        leaked = [m for m in REFUSED if reached(m)]
        expect(not leaked, "%d reached it, e.g. %s" % (len(leaked), reached(leaked[0])[:1] if leaked else ""))

    ctx.final_checks([audit])
