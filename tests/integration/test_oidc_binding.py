#!/usr/bin/python3
"""OIDC job bindings at the edges of a token's life (docs/oidc.md, "Binding: replay and lease").

test_oidc.py runs with leeway 0s; here the provider keeps its defaults, leeway 60s and
lease 0s, as most policies will.  A token past exp but within the leeway still verifies:
its binding must still hold then, or a copy from another address is taken for a fresh
job.  A second proxy has a long lease that a reload shortens: the lease of the policy in
force decides, not the one the token was first bound under.
"""
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import oidc_tokens as ot  # noqa: E402
from harness import expect  # noqa: E402

GOOD = "198.51.100.10"
ISS = "https://gitlab.example.com"
AUD = "https://portcullis.example"


metric = ot.metric


ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    kd = ctx.path("oidc-keys")
    os.makedirs(kd)
    rsa1 = ot.make_key(os.path.join(kd, "r1.pem"), "RSA")
    jwks_dir = ctx.path("jwks")
    os.makedirs(jwks_dir)
    jwks_path = os.path.join(jwks_dir, "gitlab.json")
    harness.write_atomic(jwks_path, json.dumps({"keys": [ot.jwk(rsa1, "RSA", "r1")]}))
    n_issued = [0]

    def token(exp, user="oidc", raw=False):
        now = int(time.time())
        n_issued[0] += 1
        c = {"iss": ISS, "aud": AUD, "iat": now - 5, "exp": exp,
             "sub": "project_path:group/app:ref_type:branch:ref:main",
             "project_path": "group/app", "ref_protected": "true", "pipeline_source": "push",
             "job_id": str(800000 + n_issued[0]), "jti": "jti-%d-%d" % (now, n_issued[0])}
        t = ot.sign(rsa1, {"alg": "RS256", "kid": "r1"}, c)
        return t if raw else ot.basic(user, t)

    ups = harness.Upstreams(ctx, [{"name": "origin8080", "host": GOOD, "port": 8080,
                                   "kind": "http-origin"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD)])
    tiers = {"ci": {"allow": [{"host": "allowed.example", "ports": [8080]}]}}
    provider = {
        "name": "gitlab", "kind": "gitlab", "issuer": ISS, "audiences": [AUD],
        "jwks_file": jwks_path, "username": "oidc",
        "rules": [{"name": "protected", "match": {"project_path": "group/*"}, "tier": "ci"}],
    }
    # Defaults: leeway 60s, lease 0s.
    pd = harness.Proxy(ctx, "defaults", tiers,
                       listen={"proxy": [{"address": "127.0.0.1:3128", "auth": "required"}]},
                       identity={"oidc": {"providers": [provider]}}).start()
    # No leeway, a long lease: a reload will shorten it.
    long_lease = dict(provider, leeway="0s", lease="1h")
    pl = harness.Proxy(ctx, "lease", tiers, proxy_port=3130, admin_port=9091,
                       listen={"proxy": [{"address": "127.0.0.1:3130", "auth": "required"}]},
                       identity={"oidc": {"providers": [long_lease]}}).start()

    with ctx.case("start-up: both policies load"):
        expect(pd.start_error is None, pd.start_error)
        expect(pl.start_error is None, pl.start_error)

    def connect(auth, src, port):
        return harness.connect("allowed.example:8080", src=src, proxy_port=port,
                               headers=["Proxy-Authorization: " + auth])

    def served(auth, src, port):
        r = connect(auth, src, port)
        expect(r.status == 200, "CONNECT from %s answered %s" % (src, r.describe()))
        r.close()

    with ctx.case("leeway 60s, lease 0s: past exp but within the leeway the token still "
                  "verifies, and its binding still holds: from another address it is a replay"):
        exp = int(time.time()) + 3
        tok = token(exp)
        served(tok, "127.0.0.2", 3128)
        expect(harness.wait_until(lambda: time.time() > exp + 1.5, 20), "the clock did not pass exp")
        r = connect(tok, "127.0.0.3", 3128)
        harness.expect_refusal(r, 403, "oidc_token_replayed", audit=pd.audit)
        served(tok, "127.0.0.2", 3128)  # its own source: within the leeway, as before

    with ctx.case("a reload that shortens the lease ends the lease of tokens bound before it"):
        exp = int(time.time()) + 3
        tok = token(exp)
        served(tok, "127.0.0.2", 3130)
        ok0 = metric("portcullis_policy_reloads_total{result=\"success\"}", "127.0.0.1:9091") or 0
        pol = dict(pl.policy, identity={"oidc": {"providers": [dict(long_lease, lease="1s")]}})
        harness.write_atomic(pl.policy_path, harness.to_yaml(pol) + "\n")
        expect(harness.wait_until(
            lambda: (metric("portcullis_policy_reloads_total{result=\"success\"}",
                            "127.0.0.1:9091") or 0) > ok0, 15), "the reload did not happen")
        expect(harness.wait_until(lambda: time.time() > exp + 2.5, 20), "the clock did not pass exp")
        r = connect(tok, "127.0.0.2", 3130)
        harness.expect_refusal(r, 403, "oidc_token_expired", audit=pl.audit)

    with ctx.case("a refused request binds nothing: the token with a wrong username from "
                  "another address first, then from its job's address with the right one"):
        raw = token(int(time.time()) + 600, raw=True)
        r = connect(ot.basic("root", raw), "127.0.0.3", 3128)
        harness.expect_refusal(r, 403, "oidc_bad_credentials", audit=pd.audit)
        served(ot.basic("oidc", raw), "127.0.0.2", 3128)
        r = connect(ot.basic("oidc", raw), "127.0.0.3", 3128)
        harness.expect_refusal(r, 403, "oidc_token_replayed", audit=pd.audit)

    ctx.final_checks([pd.audit, pl.audit])
