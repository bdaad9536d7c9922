#!/usr/bin/python3
"""Per-job identity from the CI system's OIDC ID token (docs/oidc.md).

A GitLab-style provider with a JWKS file (an RSA and an EC P-256 key, made at
run time with the openssl CLI; tokens signed with `openssl dgst`).  A listener
with auth: required.  Real curl with HTTPS_PROXY-style credentials
(http://oidc:TOKEN@proxy) for CONNECT and plain HTTP; the upstream proves
Proxy-Authorization never reaches it.  No credentials: 407 with a Basic
challenge, and curl --proxy-anyauth answers it.  Every refusal is a 403 with
its own reason and a record.  A job's token from a second source address is
refused (replay); after exp the same token from its bound source passes for
the lease.  A JWKS file rotated on disk is picked up (a broken one keeps the
old keys and counts a failure).  No token ever reaches the audit log or
stderr.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import oidc_tokens as ot  # noqa: E402
import promcheck  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
ISS = "https://gitlab.example.com"
AUD = "https://portcullis.example"
LEASE_S = 3600


metric = ot.metric


ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    kd = ctx.path("oidc-keys")
    os.makedirs(kd)
    rsa1 = ot.make_key(os.path.join(kd, "r1.pem"), "RSA")
    rsa2 = ot.make_key(os.path.join(kd, "r2.pem"), "RSA")
    ec1 = ot.make_key(os.path.join(kd, "e1.pem"), "EC")
    jwks_dir = ctx.path("jwks")
    os.makedirs(jwks_dir)
    jwks_path = os.path.join(jwks_dir, "gitlab.json")
    harness.write_atomic(jwks_path, json.dumps({"keys": [ot.jwk(rsa1, "RSA", "r1"),
                                                         ot.jwk(ec1, "EC", "e1")]}))
    issued = []   # every token made, for the "never logged" checks

    def claims(**over):
        now = int(time.time())
        c = {"iss": ISS, "aud": AUD, "iat": now - 5, "nbf": now - 5, "exp": now + 600,
             "sub": "project_path:group/app:ref_type:branch:ref:main", "namespace_path": "group",
             "project_path": "group/app", "ref": "main", "ref_type": "branch",
             "ref_protected": "true", "pipeline_source": "push", "pipeline_id": "9001",
             "job_id": str(700000 + len(issued)), "runner_id": 17}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def token(key=None, kid="r1", alg="RS256", raw_claims=None, raw_header=None, **over):
        key = key or rsa1
        h = {"alg": alg, "typ": "JWT"}
        if kid is not None:
            h["kid"] = kid
        t = ot.sign(key, h, claims(**over), raw_header=raw_header, raw_claims=raw_claims)
        issued.append(t)
        return t

    ups = harness.Upstreams(ctx, [{"name": "origin8080", "host": GOOD, "port": 8080,
                                   "kind": "http-origin"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD), ("other.example", GOOD)])
    allowed = [{"host": "allowed.example", "ports": [8080]}]
    tiers = {
        "ci-protected": {"allow": allowed},
        "ci-any": {"allow": [{"host": "other.example", "ports": [8080]}]},
    }
    provider = {
        "name": "gitlab", "kind": "gitlab", "issuer": ISS, "audiences": [AUD],
        "algorithms": ["RS256", "ES256"], "jwks_file": jwks_path, "leeway": "0s",
        "lease": "%ds" % LEASE_S, "username": "oidc", "no_match": "deny",
        "rules": [
            {"name": "protected", "match": {"project_path": "group/*", "ref_protected": "true"},
             "tier": "ci-protected"},
            {"name": "feature", "match": {"namespace_path": "group", "ref": "feature/*"},
             "tier": "ci-any"},
        ],
    }
    px = harness.Proxy(ctx, "oidc", tiers,
                       listen={"proxy": [{"address": "127.0.0.1:3128", "auth": "required"}]},
                       identity={"oidc": {"providers": [provider]}}).start()

    # auth: optional with no_match: source: no token, or a token no rule matches, falls back
    # to the source address's tier; a matching token decides; a bad token is still refused.
    opt_tiers = dict(tiers, **{"by-address": {"sources": ["127.0.0.2/32"],
                                              "allow": [{"host": "other.example", "ports": [8080]}]}})
    po = harness.Proxy(ctx, "optional", opt_tiers, proxy_port=3130, admin_port=9091,
                       listen={"proxy": [{"address": "127.0.0.1:3130", "auth": "optional"}]},
                       identity={"oidc": {"providers": [dict(provider, no_match="source")]}}).start()

    with ctx.case("start-up: the policy with identity.oidc and a JWKS file loads"):
        expect(px.start_error is None, px.start_error)
        expect(po.start_error is None, po.start_error)

    def raw_connect(auth, src="127.0.0.2", target="allowed.example:8080"):
        hdrs = ["Proxy-Authorization: %s" % auth] if auth is not None else []
        return harness.connect(target, src=src, headers=hdrs)

    def served(auth, src="127.0.0.2", tier="ci-protected", target="allowed.example:8080"):
        r = raw_connect(auth, src, target)
        expect(r.status == 200, "CONNECT answered %s" % r.describe())
        r.sock.sendall(("GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % target).encode())
        body = harness.recv_to_eof(r.sock)[2]
        r.sock.close()
        expect(b"200 OK" in body[:64], "the tunnel's origin answered %r" % body[:80])
        rec = px.audit.by_port(r.src_port)
        expect(rec is not None, "no record")
        expect(get(rec, "rule.ruleset") == tier, "rule.ruleset %r, want %s" % (get(rec, "rule.ruleset"), tier))
        return rec

    def refused(auth, reason, status=403, src="127.0.0.2"):
        r = raw_connect(auth, src)
        return harness.expect_refusal(r, status, reason, audit=px.audit)

    with ctx.case("CONNECT with curl and http://oidc:TOKEN@proxy: the token's rule picks the tier, "
                  "the record names the job"):
        tok = token()
        res = harness.curl(["-p", "-x", "http://oidc:%s@127.0.0.1:3128" % tok,
                            "http://allowed.example:8080/hello"])
        expect(res["code"] == "200" and res["connect"] == "200", "curl: %r" % res)
        rec = px.audit.wait_one(lambda r: get(r, "source.port") == res["local_port"]
                                and get(r, "http.request.method") == "CONNECT", timeout=10)
        expect(rec is not None, "no CONNECT record for curl's port %s" % res["local_port"])
        expect(get(rec, "rule.ruleset") == "ci-protected", "ruleset %r" % get(rec, "rule.ruleset"))
        labels = get(rec, "labels") or {}
        expect(labels.get("oidc_issuer") == ISS, "labels %r" % labels)
        expect(labels.get("oidc_project") == "group/app" and labels.get("oidc_ref") == "main",
               "labels %r" % labels)
        expect(labels.get("oidc_pipeline_id") == "9001" and labels.get("oidc_job_id"), "labels %r" % labels)
        expect(labels.get("oidc_rule") == "protected", "labels %r" % labels)
        expect(re.fullmatch(r"[0-9a-f]{16}", labels.get("oidc_token_sha256") or ""), "labels %r" % labels)
        expect(get(rec, "user.id") == "project_path:group/app:ref_type:branch:ref:main",
               "user.id %r" % get(rec, "user.id"))

    with ctx.case("plain HTTP with curl and http://oidc:TOKEN@proxy: forwarded, and the upstream "
                  "never sees Proxy-Authorization"):
        tok = token()
        n0 = len(ups.requests("origin8080"))
        res = harness.curl(["-x", "http://oidc:%s@127.0.0.1:3128" % tok,
                            "http://allowed.example:8080/plain"])
        expect(res["code"] == "200", "curl: %r" % res)
        expect(harness.wait_until(lambda: len(ups.requests("origin8080")) > n0, 10), "no request upstream")
        req = [q for q in ups.requests("origin8080") if q.get("target") == "/plain"][-1]
        names = [k.lower() for k, v in req["headers"]]
        expect("proxy-authorization" not in names, "forwarded headers %r" % names)
        expect(not any(tok[-20:] in v for k, v in req["headers"]), "the token reached the upstream")

    with ctx.case("Bearer and an ES256 token (kid e1) work too"):
        served("Bearer " + token(key=ec1, kid="e1", alg="ES256"))

    with ctx.case("a second rule: a feature-branch job gets its tier; first match wins"):
        served(ot.basic("oidc", token(ref="feature/x", ref_protected="false")), tier="ci-any",
               target="other.example:8080")

    with ctx.case("no credentials on auth: required: 407 with a Basic challenge, a reason and a record"):
        r = raw_connect(None)
        harness.expect_refusal(r, 407, "oidc_token_missing", audit=px.audit)
        expect(r.header("Proxy-Authenticate") == 'Basic realm="portcullis"',
               "Proxy-Authenticate %r" % r.header("Proxy-Authenticate"))

    with ctx.case("curl --proxy-anyauth: the 407 challenge, then the credentials, then 200"):
        tok = token()
        res = harness.curl(["-p", "--proxy-anyauth", "-x", "http://127.0.0.1:3128", "-U",
                            "oidc:%s" % tok, "-v", "http://allowed.example:8080/anyauth"])
        expect(res["code"] == "200", "curl: %r" % {k: res[k] for k in ("rc", "code", "connect")})
        expect("407" in res["stderr"], "curl never saw the challenge")

    with ctx.case("auth: optional: no token -> the source address's tier (by-address)"):
        r = harness.connect("other.example:8080", src="127.0.0.2", proxy_port=3130)
        expect(r.status == 200, "CONNECT answered %s" % r.describe())
        r.sock.close()
        rec = po.audit.by_port(r.src_port)
        expect(get(rec, "rule.ruleset") == "by-address", "ruleset %r" % get(rec, "rule.ruleset"))
        expect(get(rec, "labels.oidc_token_sha256") is None, "a token recorded where none came")

    with ctx.case("auth: optional: a matching token decides over the source address"):
        r = harness.connect("allowed.example:8080", src="127.0.0.2", proxy_port=3130,
                            headers=["Proxy-Authorization: " + ot.basic("oidc", token())])
        expect(r.status == 200, "CONNECT answered %s" % r.describe())
        r.sock.close()
        rec = po.audit.by_port(r.src_port)
        expect(get(rec, "rule.ruleset") == "ci-protected", "ruleset %r" % get(rec, "rule.ruleset"))

    with ctx.case("no_match: source: a verified token no rule matches -> the source's tier"):
        t = token(project_path="other/app", namespace_path="other")
        r = harness.connect("other.example:8080", src="127.0.0.2", proxy_port=3130,
                            headers=["Proxy-Authorization: " + ot.basic("oidc", t)])
        expect(r.status == 200, "CONNECT answered %s" % r.describe())
        r.sock.close()
        rec = po.audit.by_port(r.src_port)
        expect(get(rec, "rule.ruleset") == "by-address", "ruleset %r" % get(rec, "rule.ruleset"))
        expect(get(rec, "labels.oidc_project") == "other/app", "the token's job is not recorded")

    with ctx.case("auth: optional: a token that fails is refused, not passed over"):
        r = harness.connect("other.example:8080", src="127.0.0.2", proxy_port=3130,
                            headers=["Proxy-Authorization: " + ot.basic("oidc", token(kid="nope"))])
        harness.expect_refusal(r, 403, "oidc_kid_unknown", audit=po.audit)

    now = int(time.time())
    cases = [
        ("alg none", ot.b64(b'{"alg":"none"}') + "." + ot.b64(json.dumps(claims()).encode()) + ".",
         "oidc_alg_none"),
        ("HS256 (not configured)", lambda: token(alg="HS256"), "oidc_alg_not_allowed"),
        ("an unknown kid", lambda: token(kid="nope"), "oidc_kid_unknown"),
        ("no kid with two keys of the type... one RSA key: a different key signed it",
         lambda: token(key=rsa2, kid="r1"), "oidc_signature_invalid"),
        ("the issuer with a trailing slash", lambda: token(iss=ISS + "/"), "oidc_issuer_unknown"),
        ("another audience", lambda: token(aud="https://elsewhere"), "oidc_audience_mismatch"),
        ("no audience", lambda: token(aud=None), "oidc_audience_mismatch"),
        ("expired, never bound", lambda: token(exp=now - 30, iat=now - 600, nbf=now - 600),
         "oidc_token_expired"),
        ("not yet valid", lambda: token(nbf=now + 600), "oidc_token_not_yet_valid"),
        ("a duplicate claim", lambda: token(raw_claims=json.dumps(claims())[:-1] +
                                            ',"project_path":"admin/x"}'), "oidc_duplicate_claim"),
        ("a login token without the CI claims", lambda: token(job_id=None, pipeline_source=None),
         "oidc_not_ci_token"),
        ("a job matching no rule", lambda: token(project_path="other/app", namespace_path="other"),
         "oidc_no_match"),
    ]
    for name, tok, reason in cases:
        with ctx.case("refused: %s -> 403 %s with a record" % (name, reason)):
            t = tok() if callable(tok) else tok
            issued.append(t)
            refused(ot.basic("oidc", t), reason)

    with ctx.case("refused: padding on the token -> 403 oidc_token_malformed"):
        refused(ot.basic("oidc", token() + "=="), "oidc_token_malformed")
    with ctx.case("refused: a proxy password that is not a JWT -> 403 oidc_token_malformed, "
                  "and the record keeps no hash of it (a short hash of a password can be guessed)"):
        rec = refused(ot.basic("alice", "hunter2-correct-horse-battery"), "oidc_token_malformed")
        expect(get(rec, "labels.oidc_token_sha256") is None,
               "a password's hash was recorded: %r" % get(rec, "labels"))
        issued.append("hunter2-correct-horse-battery")
    with ctx.case("refused: a wrong username -> 403 oidc_bad_credentials"):
        refused(ot.basic("root", token()), "oidc_bad_credentials")
    with ctx.case("refused: another scheme -> 403 oidc_bad_credentials"):
        refused("Digest username=x", "oidc_bad_credentials")
    with ctx.case("refused: a token over 8 KiB (the header limit has room for it) -> "
                  "403 oidc_token_too_large"):
        refused("Bearer " + token(pad="x" * 9000), "oidc_token_too_large")

    with ctx.case("replay: a job's token bound to its first source is refused from another "
                  "(oidc_token_replayed)"):
        tok = token()
        served(ot.basic("oidc", tok), src="127.0.0.2")
        served(ot.basic("oidc", tok), src="127.0.0.2")
        refused(ot.basic("oidc", tok), "oidc_token_replayed", src="127.0.0.3")

    with ctx.case("lease: after exp the same token from its bound source still passes; from "
                  "another source it is a replay; an unbound expired token is refused"):
        # exp well ahead (a loaded machine may take seconds for the first use), then wait
        # for the clock to pass it: an event with a deadline, not a sleep before asserting.
        exp = int(time.time()) + 8
        tok = token(exp=exp)
        other = token(exp=exp)
        served(ot.basic("oidc", tok), src="127.0.0.2")
        expect(harness.wait_until(lambda: time.time() > exp + 1.5, 20), "the clock did not pass exp")
        served(ot.basic("oidc", tok), src="127.0.0.2")
        refused(ot.basic("oidc", tok), "oidc_token_replayed", src="127.0.0.3")
        refused(ot.basic("oidc", other), "oidc_token_expired", src="127.0.0.2")

    with ctx.case("metrics: the OIDC families are well-formed exposition with HELP and TYPE"):
        with urllib.request.urlopen("http://127.0.0.1:9090/metrics", timeout=5) as r:
            text = r.read().decode()
        fams, problems = promcheck.check(text)
        problems += promcheck.conventions(fams)
        expect(not problems, "; ".join(problems[:5]))
        for f in ("portcullis_oidc_tokens_total", "portcullis_oidc_bindings",
                  "portcullis_oidc_binding_evictions_total", "portcullis_oidc_replays_total",
                  "portcullis_oidc_jwks_load_timestamp_seconds"):
            expect(f in text, "no %s" % f)

    with ctx.case("metrics: tokens by result, bindings and replays"):
        expect((metric("portcullis_oidc_tokens_total{result=\"verified\"}") or 0) >= 5, "verified")
        expect((metric("portcullis_oidc_tokens_total{result=\"leased\"}") or 0) >= 1, "leased")
        expect((metric("portcullis_oidc_tokens_total{result=\"refused\"}") or 0) >= 10, "refused")
        expect((metric("portcullis_oidc_bindings") or 0) >= 1, "bindings")
        expect((metric("portcullis_oidc_replays_total") or 0) >= 2, "replays")

    with ctx.case("JWKS rotation on disk: the new key's tokens pass, the removed key's are "
                  "refused (oidc_kid_unknown)"):
        harness.write_atomic(jwks_path, json.dumps({"keys": [ot.jwk(rsa2, "RSA", "r2"),
                                                             ot.jwk(ec1, "EC", "e1")]}))
        new = token(key=rsa2, kid="r2")

        def accepted():
            r = raw_connect(ot.basic("oidc", new))
            if r.sock is not None:
                r.sock.close()
            return r.status == 200
        expect(harness.wait_until(accepted, 15, interval=0.2), "the rotated JWKS was not picked up")
        refused(ot.basic("oidc", token(key=rsa1, kid="r1")), "oidc_kid_unknown")

    with ctx.case("a broken JWKS file keeps the previous keys and counts a reload failure"):
        f0 = metric("portcullis_policy_reloads_total{result=\"failure\"}") or 0
        harness.write_atomic(jwks_path, '{"keys": [{"kty": "RSA", "n": "AQAB=", "e": "AQAB"}]}')
        expect(harness.wait_until(
            lambda: (metric("portcullis_policy_reloads_total{result=\"failure\"}") or 0) > f0, 15),
            "no reload failure counted")
        served(ot.basic("oidc", token(key=rsa2, kid="r2")))

    with ctx.case("--check refuses an unreadable JWKS file, an unknown algorithm, an empty issuer"):
        bad = dict(provider, jwks_file=os.path.join(jwks_dir, "missing.json"))
        pol = dict(px.policy, identity={"oidc": {"providers": [bad]}})
        path = ctx.path("bad-jwks.yaml")
        with open(path, "w") as f:
            f.write(harness.to_yaml(pol) + "\n")
        p = subprocess.run([ctx.binary, "--check", path], capture_output=True, timeout=30)
        expect(p.returncode != 0 and b"missing.json" in p.stderr, "rc %d: %r" % (p.returncode, p.stderr[-300:]))
        bad = dict(provider, algorithms=["HS256"], issuer="")
        pol = dict(px.policy, identity={"oidc": {"providers": [bad]}})
        with open(path, "w") as f:
            f.write(harness.to_yaml(pol) + "\n")
        p = subprocess.run([ctx.binary, "--check", path], capture_output=True, timeout=30)
        expect(p.returncode != 0 and b"HS256" in p.stderr and b"issuer" in p.stderr,
               "rc %d: %r" % (p.returncode, p.stderr[-400:]))

    with ctx.case("no token, whole or in part, in the audit log or on stderr"):
        audit_text = open(px.audit_path).read() + open(po.audit_path).read()
        err_text = px.stderr_text() + po.stderr_text()
        for t in issued:
            for part in [p for p in t.split(".") if len(p) >= 16]:
                expect(part not in audit_text, "a token part is in the audit log")
                expect(part not in err_text, "a token part is on stderr")

    ctx.final_checks([px.audit, po.audit])
