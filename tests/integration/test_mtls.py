#!/usr/bin/python3
"""Client certificates on the TLS listener: workload identity (mTLS).

Two proxies: one with listen.tls.client_certs: require and a CRL, one with
client_certs: request and no CRL.  Client certificates come from
certs/mkcerts.  A certificate with a SPIFFE ID, one with a DNS SAN and one
with only a subject CN each get the tier of their identity.client_certs
rule (rule.ruleset), and the record carries the certificate (ECS
tls.client.x509.*, tls.client.hash.sha256, the SPIFFE ID in source.user.id
and related.user).  Fail closed, each a 403 with its reason and a record:
no certificate where one is required, a certificate of another CA, an
expired one, a revoked one (the same certificate passes the proxy without
the CRL, so the CRL is what refuses it), two URI SANs (X.509-SVID), a valid
certificate that matches no rule.  Precedence: with client_certs: request a
client without a certificate is identified by its source address, and the
same source with a certificate by the certificate.
"""
import hashlib
import os
import re
import signal
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
REQ_PORT, OPT_PORT = 3129, 3131
RUNNER_ID = "spiffe://ci.example.org/runner/build"


def mtls_connect(port, cafile, cert=None, key=None, target="allowed.example:8080", src="127.0.0.2"):
    """TLS to the proxy (with a client certificate when given), then a CONNECT.
    Returns (status, source port, socket)."""
    sock = harness.bound_socket(src)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sport = sock.getsockname()[1]
    c = ssl.create_default_context(cafile=cafile)
    if cert:
        c.load_cert_chain(cert, key)
    s = c.wrap_socket(sock, server_hostname="127.0.0.1")
    s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, target)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            d = s.recv(4096)
        except (ssl.SSLError, OSError):
            break
        if not d:
            break
        buf += d
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    parts = head.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    return status, sport, s, head


def check_refused(px, port, cafile, cert, key, reason, src="127.0.0.2"):
    st, sport, s, head = mtls_connect(port, cafile, cert, key, src=src)
    s.close()
    expect(st == 403, "CONNECT answered %r, want 403 (%s)" % (st, head[:200]))
    expect(reason in head, "Proxy-Status does not name %s: %r" % (reason, head[:300]))
    rec = px.audit.by_port(sport)
    harness.check_denied_record(rec, reason, 403)
    return rec


def served(px, port, cafile, cert, key, tier, src="127.0.0.2"):
    st, sport, s, head = mtls_connect(port, cafile, cert, key, src=src)
    expect(st == 200, "CONNECT answered %r (%s)" % (st, head[:200]))
    s.sendall(b"SAY served\n")
    line = harness.recv_line(s)
    s.close()
    expect(line == b"served\n", "the tunnel said %r" % line)
    rec = px.audit.by_port(sport)
    expect(rec is not None, "no record")
    expect(get(rec, "rule.ruleset") == tier, "rule.ruleset %r, want %s" % (get(rec, "rule.ruleset"), tier))
    return rec


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def openssl_field(path, flag):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", flag], capture_output=True,
                         check=True, timeout=10).stdout.decode().strip()
    return out.split("=", 1)[1]


ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    spki, cpki, rpki = ctx.path("server-pki"), ctx.path("client-pki"), ctx.path("rogue-pki")
    mk = harness.mkcerts
    mk("ca", spki, "--cn", "proxy CA")
    mk("server", spki, "proxy", "--ip", "127.0.0.1")
    mk("ca", cpki, "--cn", "workload CA")
    mk("client", cpki, "runner", "--spiffe", RUNNER_ID)
    mk("client", cpki, "dnsbot", "--cn", "dnsbot", "--dns", "bot7.runners.example.com")
    mk("client", cpki, "cnbot", "--cn", "release-bot")
    mk("client", cpki, "stranger", "--spiffe", "spiffe://elsewhere.example/x")
    mk("client", cpki, "twouris", "--spiffe", "spiffe://ci.example.org/runner/a",
       "--spiffe", "spiffe://ci.example.org/runner/b")
    mk("client", cpki, "expired", "--spiffe", RUNNER_ID, "--start", "20200101000000Z",
       "--end", "20200102000000Z")
    mk("client", cpki, "revoked", "--spiffe", RUNNER_ID)
    mk("client", cpki, "later", "--spiffe", RUNNER_ID + "-2")
    mk("revoke", cpki, "revoked")
    mk("ca", rpki, "--cn", "rogue CA")
    mk("client", rpki, "rogue", "--spiffe", RUNNER_ID)
    pca = os.path.join(spki, "ca.pem")

    def cert(pki, name):
        return os.path.join(pki, name + ".pem"), os.path.join(pki, name + ".key")

    ups = harness.Upstreams(ctx, [{"name": "raw8080", "host": GOOD, "port": 8080, "kind": "tcp"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD), ("other.example", GOOD)])
    tiers = {
        "by-address": {"sources": ["127.0.0.2/32"], "allow": [{"host": "other.example", "ports": [8080]}]},
        "runners": {"allow": [{"host": "allowed.example", "ports": [8080]}]},
        "bots": {"allow": [{"host": "allowed.example", "ports": [8080]}]},
        "release": {"allow": [{"host": "allowed.example", "ports": [8080]}]},
    }
    rules = [{"spiffe": "spiffe://ci.example.org/runner/*", "tier": "runners"},
             {"dns": "*.runners.example.com", "tier": "bots"},
             {"cn": "release-bot", "tier": "release"}]

    def listen(port, mode, crl):
        t = {"cert": os.path.join(spki, "proxy.pem"), "key": os.path.join(spki, "proxy.key"),
             "client_certs": mode, "client_ca": os.path.join(cpki, "ca.pem")}
        if crl:
            t["crl"] = os.path.join(cpki, "crl.pem")
        return {"https": "127.0.0.1:%d" % port, "tls": t}

    px = harness.Proxy(ctx, "require", tiers, listen=listen(REQ_PORT, "require", True),
                       identity={"client_certs": rules}).start()
    po = harness.Proxy(ctx, "request", tiers, proxy_port=3130, admin_port=9091,
                       listen=listen(OPT_PORT, "request", False), identity={"client_certs": rules}).start()

    with ctx.case("start-up: both proxies serve their TLS listener"):
        expect(px.start_error is None, px.start_error)
        expect(po.start_error is None, po.start_error)

    with ctx.case("a SPIFFE ID maps to its tier; the record carries the certificate and the ID"):
        c, k = cert(cpki, "runner")
        rec = served(px, REQ_PORT, pca, c, k, "runners")
        expect(get(rec, "source.user.id") == RUNNER_ID, "source.user.id %r" % get(rec, "source.user.id"))
        expect(get(rec, "related.user") == [RUNNER_ID], "related.user %r" % get(rec, "related.user"))
        x = get(rec, "tls.client.x509") or {}
        expect(get(x, "subject.distinguished_name") == "CN=runner", "subject %r" % get(x, "subject.distinguished_name"))
        expect(get(x, "issuer.distinguished_name") == "CN=workload CA", "issuer %r" % get(x, "issuer.distinguished_name"))
        expect(RUNNER_ID in (x.get("alternative_names") or []), "alternative_names %r" % x.get("alternative_names"))
        expect(get(x, "serial_number") == openssl_field(c, "-serial"), "serial %r" % get(x, "serial_number"))
        expect(get(rec, "tls.client.hash.sha256") == hashlib.sha256(pem_der(c)).hexdigest(),
               "tls.client.hash.sha256 %r" % get(rec, "tls.client.hash.sha256"))
        want = time.strftime("%Y-%m-%dT%H:%M:%S", time.strptime(openssl_field(c, "-enddate"),
                                                                  "%b %d %H:%M:%S %Y %Z"))
        expect(str(get(x, "not_after") or "").startswith(want), "not_after %r, want %s" % (get(x, "not_after"), want))

    with ctx.case("a DNS SAN maps to its tier (a *.name rule)"):
        served(px, REQ_PORT, pca, *cert(cpki, "dnsbot"), "bots")

    with ctx.case("a subject CN maps to its tier"):
        rec = served(px, REQ_PORT, pca, *cert(cpki, "cnbot"), "release")
        expect(get(rec, "tls.client.x509.subject.common_name") == ["release-bot"],
               "common_name %r" % get(rec, "tls.client.x509.subject.common_name"))

    with ctx.case("client_certs: require, no certificate: 403 client_cert_required"):
        check_refused(px, REQ_PORT, pca, None, None, "client_cert_required")

    with ctx.case("a certificate of another CA: 403 client_cert_untrusted, recorded with its subject"):
        rec = check_refused(px, REQ_PORT, pca, *cert(rpki, "rogue"), "client_cert_untrusted")
        expect(get(rec, "tls.client.x509.issuer.distinguished_name") == "CN=rogue CA",
               "the refused certificate's issuer is not recorded: %r" % get(rec, "tls.client.x509"))
        expect(get(rec, "source.user.id") is None and get(rec, "related.user") is None,
               "an untrusted certificate's SPIFFE ID was recorded as the identity")
        expect(RUNNER_ID in (get(rec, "tls.client.x509.alternative_names") or []),
               "the ID the refused certificate claimed is not among its alternative names")

    with ctx.case("an expired certificate: 403 client_cert_expired"):
        check_refused(px, REQ_PORT, pca, *cert(cpki, "expired"), "client_cert_expired")

    with ctx.case("a revoked certificate: 403 client_cert_revoked with the CRL"):
        check_refused(px, REQ_PORT, pca, *cert(cpki, "revoked"), "client_cert_revoked")

    with ctx.case("the same revoked certificate passes a listener without the CRL (the CRL refuses it)"):
        served(po, OPT_PORT, pca, *cert(cpki, "revoked"), "runners")

    with ctx.case("a CRL updated in place (a new revocation) is reloaded: the certificate is refused "
                  "from then on"):
        served(px, REQ_PORT, pca, *cert(cpki, "later"), "runners")
        mk("revoke", cpki, "later")   # rewrites crl.pem in the watched directory

        def reloaded():
            with urllib.request.urlopen("http://127.0.0.1:9090/metrics", timeout=2) as r:
                m = re.search(rb'^portcullis_tls_listener_reloads_total\{result="success"\} (\d+)',
                              r.read(), re.M)
            return m is not None and int(m.group(1)) >= 1
        expect(harness.wait_until(reloaded, 10), "the CRL change was not reloaded")
        check_refused(px, REQ_PORT, pca, *cert(cpki, "later"), "client_cert_revoked")

    with ctx.case("two URI SANs break the X.509-SVID rules: 403 client_cert_invalid"):
        check_refused(px, REQ_PORT, pca, *cert(cpki, "twouris"), "client_cert_invalid")

    with ctx.case("a valid certificate that matches no rule: 403 client_cert_no_match"):
        check_refused(px, REQ_PORT, pca, *cert(cpki, "stranger"), "client_cert_no_match")

    with ctx.case("a connection refused for its certificate is closed after the 403"):
        st, sport, s, head = mtls_connect(REQ_PORT, pca, *cert(cpki, "stranger"))
        expect(st == 403, "first CONNECT answered %r" % st)
        expect(harness.await_close(s, timeout=10)["end"] is not None, "the refused connection stayed open")

    with ctx.case("precedence, client_certs: request: no certificate -> the source address's tier"):
        st, sport, s, head = mtls_connect(OPT_PORT, pca, target="allowed.example:8080")
        s.close()
        expect(st == 403, "without a certificate CONNECT allowed.example answered %r" % st)
        rec = po.audit.by_port(sport)
        harness.check_denied_record(rec, "host_not_allowed", 403)
        expect(get(rec, "rule.ruleset") == "by-address", "rule.ruleset %r" % get(rec, "rule.ruleset"))
        st, sport, s, head = mtls_connect(OPT_PORT, pca, target="other.example:8080")
        s.close()
        expect(st == 200, "the address's own tier was not applied: %r" % st)

    with ctx.case("precedence, client_certs: request: the same source with a certificate -> its tier"):
        served(po, OPT_PORT, pca, *cert(cpki, "runner"), "runners")

    with ctx.case("client_certs: request still refuses a certificate that fails"):
        check_refused(po, OPT_PORT, pca, *cert(rpki, "rogue"), "client_cert_untrusted")

    with ctx.case("a reload that turns client_certs from require to off is refused whole (the "
                  "listener keeps asking): a failure is counted and logged, and a connection "
                  "without a certificate is still 403 client_cert_required"):
        def failures():
            admin = px.policy["listen"]["admin"]
            with urllib.request.urlopen("http://%s/metrics" % admin, timeout=5) as r:
                m = re.search(rb'^portcullis_policy_reloads_total\{result="failure"\} (\d+)$',
                              r.read(), re.M)
            return int(m.group(1)) if m else 0
        f0 = failures()
        mark = harness.log_mark(px)
        pol = px.policy
        pol["listen"]["tls"] = {"cert": os.path.join(spki, "proxy.pem"),
                                "key": os.path.join(spki, "proxy.key")}
        pol["identity"].pop("client_certs", None)
        pol["tiers"]["runners"]["sources"] = ["127.0.0.0/8"]
        pol["tiers"]["by-address"]["sources"] = []
        harness.write_atomic(px.policy_path, harness.to_yaml(pol) + "\n")
        os.kill(px.proc.pid, signal.SIGHUP)
        expect(harness.wait_until(lambda: failures() > f0, 10), "no reload failure counted")
        logged = [str(x.get("message")) for x in harness.log_since(px, mark)
                  if x.get("log.level") == "error"]
        expect(any("listen.tls.client_certs" in m for m in logged), "error lines: %s" % logged[:3])
        check_refused(px, REQ_PORT, pca, None, None, "client_cert_required")

    ctx.final_checks([px.audit, po.audit])
