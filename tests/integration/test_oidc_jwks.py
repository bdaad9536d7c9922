#!/usr/bin/python3
"""OIDC keys from a JWKS URL (docs/oidc.md, "Keys from a URL").

A stand-in issuer (jwks_server.py) serves its JWKS over HTTPS inside the
namespace, with a certificate from the test CA the policy names in
jwks_ca_file; its answers (status, Cache-Control, ETag, body, chunking) are
changed by rewriting its control file.  The proxy resolves the issuer's name
through the pinned dnsmasq only.  Checked with real curl-free raw CONNECTs
carrying tokens:

- before the first fetch /readyz is 503 and names the URL, and tokens are
  refused oidc_jwks_unavailable; once fetched, ready, and tokens verify;
- a token with a kid the cached set lacks is refused and asks for one
  refresh, after which the rotated key verifies; a storm of unknown kids
  makes at most one fetch per cool-down;
- an ETag is revalidated (If-None-Match, 304 keeps the keys); max-age 0
  never fetches more often than jwks_refresh_min; jwks_refresh_max bounds a
  long max-age;
- a 500, a body that is not a JWK Set, an oversized body and a redirect keep
  the last keys, and are counted; a key dropped from the set stops verifying;
- a certificate from an untrusted CA, one for another name, and a name the
  pinned resolver does not know: never fetched, nothing sent, tokens refused.
"""
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import oidc_tokens as ot  # noqa: E402
import promcheck  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
IDP = "203.0.113.20"
ROGUE = "203.0.113.21"
CNONLY = "203.0.113.22"
ISS = "https://gitlab.example.com"
AUD = "https://portcullis.example"
URL = "https://idp.example/jwks"
HERE = os.path.dirname(os.path.abspath(__file__))
NOPROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def admin_get(path, port=9090):
    try:
        with NOPROXY.open("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def jmetric(name, url, port=9090, **labels):
    """One sample of a labelled JWKS family, or None."""
    text = admin_get("/metrics", port)[1]
    want = 'url="%s"' % url + "".join(',%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return float(m.group(1)) if m else None


def fetches(result, url=URL, port=9090):
    return jmetric("portcullis_oidc_jwks_fetches_total", url, port, result=result) or 0


ctx = harness.start(__file__, v4=[GOOD, IDP, ROGUE, CNONLY])
with ctx:
    kd = ctx.path("oidc-keys")
    os.makedirs(kd)
    rsa1 = ot.make_key(os.path.join(kd, "r1.pem"), "RSA")
    rsa2 = ot.make_key(os.path.join(kd, "r2.pem"), "RSA")
    ec1 = ot.make_key(os.path.join(kd, "e1.pem"), "EC")
    issued = []

    def token(key=None, kid="r1", alg="RS256", iss=ISS):
        now = int(time.time())
        c = {"iss": iss, "aud": AUD, "iat": now - 5, "nbf": now - 5, "exp": now + 600,
             "sub": "project_path:group/app:ref_type:branch:ref:main", "namespace_path": "group",
             "project_path": "group/app", "ref": "main", "ref_type": "branch",
             "ref_protected": "true", "pipeline_source": "push", "pipeline_id": "9001",
             "job_id": str(800000 + len(issued))}
        t = ot.sign(key or rsa1, {"alg": alg, "typ": "JWT", "kid": kid}, c)
        issued.append(t)
        return ot.basic("oidc", t)

    # The issuer: its certificate from the test CA, for idp.example only.
    certs = ctx.certs()
    harness.mkcerts("server", certs["dir"], "idp", "--cn", "idp.example", "--dns", "idp.example")
    # The same CA, the right name, but only as the subject's CN (no subjectAltName).
    harness.mkcerts("server", certs["dir"], "cnonly", "--cn", "cnonly.example")
    rogue_dir = ctx.path("rogue-ca")
    harness.mkcerts("ca", rogue_dir, "--cn", "not the CA the proxy trusts")
    harness.mkcerts("server", rogue_dir, "rogue", "--cn", "rogue.example", "--dns", "rogue.example")

    srv_dir = ctx.path("idp")
    os.makedirs(srv_dir)

    def serve(keys=None, **control):
        if keys is not None:
            harness.write_atomic(os.path.join(srv_dir, "jwks.json"), json.dumps(
                {"keys": [ot.jwk(k, kind, kid) for k, kind, kid in keys]}))
        harness.write_atomic(os.path.join(srv_dir, "control.json"),
                             json.dumps(dict({"status": 200}, **control)))

    def requests_seen(d=srv_dir):
        return harness.read_jsonl(os.path.join(d, "requests.jsonl"))

    def start_server(d, addr, cert, key):
        os.makedirs(d, exist_ok=True)
        ctx.spawn("jwks-%s" % addr, [harness.PY, os.path.join(HERE, "jwks_server.py"), addr, "443",
                                     cert, key, d])
        expect(harness.wait_until(lambda: os.path.exists(os.path.join(d, "ready")), 15),
               "the JWKS server on %s did not start" % addr)

    serve([(rsa1, "RSA", "r1")], cache_control="max-age=3600", etag='"v1"')

    ups = harness.Upstreams(ctx, [{"name": "origin8080", "host": GOOD, "port": 8080,
                                   "kind": "http-origin"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD), ("idp.example", IDP),
                                              ("wrongname.example", IDP),
                                              ("rogue.example", ROGUE),
                                              ("cnonly.example", CNONLY)],
                          local=("example", "test", "invalid"))
    tiers = {"ci": {"allow": [{"host": "allowed.example", "ports": [8080]}]}}
    rules = [{"name": "group", "match": {"project_path": "group/*"}, "tier": "ci"}]

    def provider(url, iss=ISS, **over):
        return dict({"name": iss.split("//")[1], "kind": "gitlab", "issuer": iss,
                     "audiences": [AUD], "algorithms": ["RS256", "ES256"], "jwks_url": url,
                     "jwks_ca_file": certs["ca"], "jwks_refresh_min": "2s",
                     "jwks_refresh_max": "1h", "leeway": "0s", "rules": rules}, **over)

    def daemon(name, port, admin, providers):
        return harness.Proxy(ctx, name, tiers, proxy_port=port, admin_port=admin,
                             listen={"proxy": [{"address": "127.0.0.1:%d" % port,
                                                "auth": "required"}]},
                             identity={"oidc": {"providers": providers}}).start()

    px = daemon("jwks", 3128, 9090, [provider(URL)])

    def connect(auth, port=3128):
        return harness.connect("allowed.example:8080", headers=["Proxy-Authorization: %s" % auth],
                               proxy_port=port)

    def served(auth, port=3128, audit=None):
        r = connect(auth, port)
        expect(r.status == 200, "CONNECT answered %s" % r.describe())
        r.sock.sendall(b"GET /x HTTP/1.1\r\nHost: allowed.example:8080\r\nConnection: close\r\n\r\n")
        body = harness.recv_to_eof(r.sock)[2]
        r.sock.close()
        expect(b"200 OK" in body[:64], "the tunnel's origin answered %r" % body[:80])
        rec = (audit or px.audit).by_port(r.src_port)
        expect(rec is not None and get(rec, "rule.ruleset") == "ci", "record %r" % rec)

    def refused(auth, reason, status=403, port=3128, audit=None):
        return harness.expect_refusal(connect(auth, port), status, reason,
                                      audit=audit or px.audit)

    with ctx.case("no JWKS fetched yet (the issuer is down): the daemon runs, /readyz is 503 "
                  "and names the URL, tokens are refused oidc_jwks_unavailable"):
        expect(px.start_error is None, px.start_error)
        expect(harness.wait_until(lambda: URL in admin_get("/readyz")[1]
                                  and fetches("failed") >= 1, 15),
               "readyz: %r" % (admin_get("/readyz"),))
        st, body = admin_get("/readyz")
        expect(st == 503 and "not fetched yet" in body, "readyz %d %r" % (st, body))
        refused(token(), "oidc_jwks_unavailable", status=503)
        expect(jmetric("portcullis_oidc_jwks_keys", URL) == 0, "keys metric")

    with ctx.case("the issuer comes up: the URL is fetched through the pinned resolver over "
                  "verified TLS, /readyz turns 200, a token verifies"):
        start_server(srv_dir, IDP, os.path.join(certs["dir"], "idp.pem"),
                     os.path.join(certs["dir"], "idp.key"))
        expect(harness.wait_until(lambda: admin_get("/readyz")[0] == 200, 20),
               "readyz: %r" % (admin_get("/readyz"),))
        served(token())
        seen = requests_seen()
        expect(seen and seen[0]["path"] == "/jwks" and seen[0]["host"] == "idp.example"
               and (seen[0]["ua"] or "").startswith("portcullis/") and seen[0]["inm"] is None,
               "requests %r" % seen)
        expect(any(q[1] == "idp.example" for q in dns.queries()),
               "no pinned lookup of idp.example: %r" % dns.queries())
        expect(fetches("fetched") == 1, "fetched %r" % fetches("fetched"))
        expect(jmetric("portcullis_oidc_jwks_keys", URL) == 1, "keys")
        age = jmetric("portcullis_oidc_jwks_age_seconds", URL)
        expect(age is not None and 0 <= age < 60, "age %r" % age)

    with ctx.case("rotation: a kid the cached keys lack is refused oidc_kid_unknown and asks "
                  "for one refresh; then the new key verifies (the cache said max-age=3600)"):
        serve([(rsa1, "RSA", "r1"), (rsa2, "RSA", "r2")], cache_control="max-age=3600",
              etag='"v2"')
        f0 = fetches("fetched")
        refused(token(rsa2, kid="r2"), "oidc_kid_unknown")
        expect(harness.wait_until(lambda: fetches("fetched") > f0, 15),
               "no refresh after an unknown kid (kid_refreshes %r)" %
               jmetric("portcullis_oidc_jwks_kid_refreshes_total", URL))
        expect(jmetric("portcullis_oidc_jwks_kid_refreshes_total", URL) >= 1, "kid refreshes")
        served(token(rsa2, kid="r2"))
        served(token())

    with ctx.case("a storm of unknown kids fetches at most once per cool-down "
                  "(min(30 s, jwks_refresh_min = 2 s))"):
        n0 = len(requests_seen())
        t0 = time.time()
        for i in range(40):
            refused(token(kid="unknown-%d" % i), "oidc_kid_unknown", audit=None)
        elapsed = time.time() - t0
        made = len(requests_seen()) - n0
        bound = 2 + int(elapsed / 2)
        expect(made <= bound, "%d fetches in %.1f s of unknown kids (bound %d)" %
               (made, elapsed, bound))

    with ctx.case("revalidation: a response with an ETag is asked again with If-None-Match; "
                  "304 keeps the keys; max-age=0 never fetches faster than jwks_refresh_min"):
        serve(None, cache_control="max-age=0", etag='"v3"')
        nm0 = fetches("not_modified")
        refused(token(kid="another-unknown"), "oidc_kid_unknown")   # fetches the max-age=0 answer
        expect(harness.wait_until(lambda: fetches("not_modified") >= nm0 + 2, 20),
               "no 304s: %r" % requests_seen()[-4:])
        revalidated = [r for r in requests_seen() if r["inm"] == '"v3"']
        expect(revalidated and all(r["status"] == 304 for r in revalidated),
               "If-None-Match requests %r" % revalidated)
        times = [r["t"] for r in requests_seen()[-3:]]
        gaps = [b - a for a, b in zip(times, times[1:])]
        expect(all(g >= 1.9 for g in gaps), "fetches %r s apart with a 2 s floor" % gaps)
        served(token(rsa2, kid="r2"))

    with ctx.case("a 500, a body that is not a JWK Set, a body over 64 KiB and a redirect "
                  "keep the last keys (counted, logged); tokens still verify, still ready"):
        for control, body, text in [
                ({"status": 500}, None, "HTTP 500"),
                ({}, "not json at all", "not a usable JWK Set"),
                ({}, json.dumps({"keys": [], "pad": "x" * 70000}), "over 65536 bytes"),
                ({"chunked": True}, json.dumps({"keys": [], "pad": "y" * 70000}),
                 "body over 65536 bytes"),
                ({"status": 302}, None, "a redirect")]:
            if body is not None:
                with open(os.path.join(srv_dir, "bad.json"), "w") as f:
                    f.write(body)
                control = dict(control, body="bad.json")
            f0 = fetches("failed")
            serve(None, cache_control="max-age=0", **control)
            expect(harness.wait_until(lambda: fetches("failed") > f0, 15),
                   "%s: no failure counted" % text)
            n_logged = px.stderr_text().count(text)
            expect(harness.wait_until(lambda: px.stderr_text().count(text) >= max(n_logged, 1),
                                      5), "%s: not logged: %r" % (text, px.stderr_text()[-600:]))
            served(token(rsa2, kid="r2"))
            expect(admin_get("/readyz")[0] == 200, "unready after a failed refresh")

    with ctx.case("a new set (chunked, no ETag) replaces the old: an EC key verifies, a key "
                  "dropped from the set stops verifying"):
        f0 = fetches("fetched")
        serve([(rsa1, "RSA", "r1"), (ec1, "EC", "e1")], cache_control="max-age=0", chunked=True)
        expect(harness.wait_until(lambda: fetches("fetched") > f0, 15), "no fetch")
        served(token(ec1, kid="e1", alg="ES256"))
        refused(token(rsa2, kid="r2"), "oidc_kid_unknown")
        expect(jmetric("portcullis_oidc_jwks_keys", URL) == 2, "keys")

    with ctx.case("a 304 to a request that named no ETag is a failure (the keys stay); a body "
                  "that ends with the connection (no length, no close_notify) is fetched"):
        f0 = fetches("failed")
        serve(None, cache_control="max-age=0", force_304=True)
        expect(harness.wait_until(lambda: fetches("failed") > f0, 15), "no failure counted")
        expect(harness.wait_until(lambda: "304 to a request without If-None-Match"
                                  in px.stderr_text(), 5), "not logged")
        served(token(ec1, kid="e1", alg="ES256"))
        f0 = fetches("fetched")
        serve([(rsa1, "RSA", "r1"), (ec1, "EC", "e1"), (rsa2, "RSA", "r2")],
              cache_control="max-age=0", close_delimited=True)
        expect(harness.wait_until(lambda: fetches("fetched") > f0, 15),
               "no fetch of a close-delimited body: %r" % px.stderr_text()[-400:])
        served(token(rsa2, kid="r2"))

    with ctx.case("jwks_refresh_max bounds a long max-age: max-age=3600 with a 3 s ceiling "
                  "is fetched again within seconds"):
        serve(None, cache_control="max-age=3600")
        url_b = "https://idp.example/jwks-b"
        pb = daemon("jwks-b", 3130, 9091, [provider(url_b, jwks_refresh_min="1s",
                                                    jwks_refresh_max="3s",
                                                    jwks_max_stale="5s")])
        expect(pb.start_error is None, pb.start_error)
        expect(harness.wait_until(
            lambda: len([r for r in requests_seen() if r["path"] == "/jwks-b"]) >= 3, 25),
            "fetches of /jwks-b: %r" % [r for r in requests_seen() if r["path"] == "/jwks-b"])
        times = [r["t"] for r in requests_seen() if r["path"] == "/jwks-b"]
        gaps = [b - a for a, b in zip(times, times[1:])]
        expect(all(g >= 2.9 for g in gaps), "gaps %r with a 3 s ceiling and max-age=3600" % gaps)
        served(token(), port=3130, audit=pb.audit)

    with ctx.case("jwks_max_stale: keys the issuer cannot be asked about for that long are "
                  "dropped (its tokens get oidc_jwks_unavailable) and come back with a fetch"):
        serve(None, status=500)
        expect(harness.wait_until(lambda: "keys dropped" in pb.stderr_text(), 20),
               "keys not dropped: %r" % pb.stderr_text()[-400:])
        refused(token(), "oidc_jwks_unavailable", status=503, port=3130, audit=pb.audit)
        expect(admin_get("/readyz", 9091)[0] == 200, "unready: the URL had keys once")
        served(token())   # the first daemon's max_stale (a day) keeps its keys meanwhile
        serve(None, status=200, cache_control="max-age=3600")
        expect(harness.wait_until(
            lambda: jmetric("portcullis_oidc_jwks_keys", url_b, 9091) == 3, 15), "no keys again")
        served(token(), port=3130, audit=pb.audit)

    with ctx.case("an untrusted CA, a certificate for another name, a name the pinned resolver "
                  "does not know: never fetched, no request sent, tokens refused, not ready"):
        rogue_srv = ctx.path("rogue-srv")
        start_server(rogue_srv, ROGUE, os.path.join(rogue_dir, "rogue.pem"),
                     os.path.join(rogue_dir, "rogue.key"))
        cn_srv = ctx.path("cnonly-srv")
        start_server(cn_srv, CNONLY, os.path.join(certs["dir"], "cnonly.pem"),
                     os.path.join(certs["dir"], "cnonly.key"))
        for d in (rogue_srv, cn_srv):
            with open(os.path.join(d, "jwks.json"), "w") as f:
                f.write(json.dumps({"keys": [ot.jwk(rsa1, "RSA", "r1")]}))
            with open(os.path.join(d, "control.json"), "w") as f:
                f.write(json.dumps({"status": 200}))
        bad = {"https://rogue.example/jwks": "certificate refused",
               "https://wrongname.example/jwks": "certificate refused",
               "https://cnonly.example/jwks": "certificate refused: hostname mismatch",
               "https://missing.example/jwks": "NXDOMAIN"}
        iss = ["https://rogue.example", "https://wrong.example", "https://cnonly.example",
               "https://missing.example"]
        pr = daemon("jwks-bad", 3132, 9092, [provider(u, iss=i) for u, i in zip(bad, iss)])
        expect(pr.start_error is None, pr.start_error)
        for u, text in bad.items():
            expect(harness.wait_until(lambda: fetches("failed", u, 9092) >= 2, 20),
                   "%s: failures %r" % (u, fetches("failed", u, 9092)))
            expect(fetches("fetched", u, 9092) == 0, "%s fetched" % u)
            log = [ln for ln in pr.stderr_text().splitlines() if u in ln]
            expect(any(text in ln for ln in log), "%s: want %r in %r" % (u, text, log[-2:]))
        expect(not requests_seen(rogue_srv), "a request reached the untrusted server: %r" %
               requests_seen(rogue_srv))
        expect(not requests_seen(cn_srv), "a request reached the server named only by its CN")
        expect(not [r for r in requests_seen() if r["host"] == "wrongname.example"],
               "a request was sent to the server whose certificate names another host")
        st, body = admin_get("/readyz", 9092)
        expect(st == 503 and "rogue.example/jwks" in body and "certificate" in body,
               "readyz %d %r" % (st, body))
        for i in iss:
            refused(token(iss=i), "oidc_jwks_unavailable", status=503, port=3132,
                    audit=pr.audit)

    with ctx.case("metrics: the JWKS families are well-formed exposition, one series per URL"):
        text = admin_get("/metrics", 9092)[1] + "\n"
        fams, problems = promcheck.check(admin_get("/metrics", 9090)[1])
        problems += promcheck.conventions(fams)
        fams_b, problems_b = promcheck.check(text)
        expect(not problems and not problems_b, "; ".join((problems + problems_b)[:5]))
        for u in bad:
            expect('portcullis_oidc_jwks_keys{url="%s"} 0' % u in text, "no keys series for %s" % u)
            expect('portcullis_oidc_jwks_age_seconds{url="%s"}' % u not in text,
                   "an age for %s, never fetched" % u)

    def reload(d, providers, port):
        ok0 = ot.metric("portcullis_policy_reloads_total{result=\"success\"}", "127.0.0.1:%d" % port)
        pol = dict(d.policy, identity={"oidc": {"providers": providers}})
        with open(d.policy_path, "w") as f:
            f.write(harness.to_yaml(pol) + "\n")
        d.proc.send_signal(1)
        expect(harness.wait_until(lambda: ot.metric(
            "portcullis_policy_reloads_total{result=\"success\"}", "127.0.0.1:%d" % port) > ok0,
            15), "no reload")

    with ctx.case("a reload that keeps the URL keeps its keys: no fetch, tokens verify at once"):
        serve(None, status=200, cache_control="max-age=3600")
        n0 = len([r for r in requests_seen() if r["path"] == "/jwks"])
        reload(px, [provider(URL, leeway="1s")], 9090)
        served(token(ec1, kid="e1", alg="ES256"))
        n1 = len([r for r in requests_seen() if r["path"] == "/jwks"])
        expect(n1 == n0, "the reload fetched the URL again (%d -> %d requests)" % (n0, n1))

    with ctx.case("a reload that adds a URL the proxy cannot fetch leaves /readyz alone (its "
                  "tokens are refused); one that changes jwks_ca_file drops the URL's keys"):
        reload(px, [provider(URL, leeway="1s"),
                    provider("https://missing.example/jwks2", iss="https://added.example")], 9090)
        expect(harness.wait_until(lambda: fetches("failed", "https://missing.example/jwks2")
                                  >= 1, 15), "the added URL was not tried")
        expect(admin_get("/readyz")[0] == 200, "unready after a reload: %r" % (admin_get("/readyz"),))
        refused(token(iss="https://added.example"), "oidc_jwks_unavailable", status=503)
        served(token(ec1, kid="e1", alg="ES256"))
        # The issuer's certificate is from the test CA: trusting only the other CA now, the
        # keys fetched under the old one go, and the refetch is refused.
        f0 = fetches("failed")
        reload(px, [provider(URL, leeway="1s", jwks_ca_file=os.path.join(rogue_dir, "ca.pem"))],
               9090)
        expect(harness.wait_until(lambda: fetches("failed") > f0, 15), "no refetch")
        refused(token(ec1, kid="e1", alg="ES256"), "oidc_jwks_unavailable", status=503)
        expect(jmetric("portcullis_oidc_jwks_keys", URL) == 0, "keys kept under the old CA")
        reload(px, [provider(URL, leeway="1s")], 9090)
        expect(harness.wait_until(lambda: jmetric("portcullis_oidc_jwks_keys", URL) == 3, 15),
               "no keys after the CA came back")
        served(token(ec1, kid="e1", alg="ES256"))

    with ctx.case("a reload that drops a URL drops its series and its readiness gate"):
        reload(pr, [provider(URL, iss=iss[0])], 9092)
        expect(harness.wait_until(lambda: fetches("fetched", URL, 9092) >= 1, 15),
               "the new URL was not fetched")
        text = admin_get("/metrics", 9092)[1]
        expect(all(u not in text for u in bad), "series of dropped URLs remain")
        expect(harness.wait_until(lambda: admin_get("/readyz", 9092)[0] == 200, 10),
               "readyz %r" % (admin_get("/readyz", 9092),))
        served(token(iss=iss[0]), port=3132, audit=pr.audit)

    with ctx.case("no token, whole or in part, in the audit log or on stderr"):
        audit_text = "".join(open(p.audit_path).read() for p in (px, pb, pr))
        err_text = "".join(p.stderr_text() for p in (px, pb, pr))
        for t in issued:
            for part in [p for p in t.split(" ")[-1].split(".") if len(p) >= 16]:
                expect(part not in audit_text, "a token part is in the audit log")
                expect(part not in err_text, "a token part is on stderr")

    ctx.final_checks([px.audit, pb.audit, pr.audit])
