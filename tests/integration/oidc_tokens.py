"""OIDC test tokens: keys made at run time with the openssl CLI, a JWKS of their public
halves, tokens signed with `openssl dgst -sha256 -sign` (ES256's DER signature turned
into the raw r||s of RFC 7518 §3.4).  Stdlib only; nothing here is committed as a key."""
import base64
import json
import os
import re
import subprocess
import urllib.request


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _run(argv, data=None):
    return subprocess.run(argv, input=data, capture_output=True, check=True, timeout=30).stdout


def make_key(path, kind):
    if kind == "RSA":
        _run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
              "-out", path])
    else:
        _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-out", path])
    os.chmod(path, 0o600)
    return path


def _der_len(der, i):
    n = der[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(der[i + 1:i + 1 + k], "big"), i + 1 + k


def _der_ints(der):
    """The INTEGERs of a DER SEQUENCE, in order (enough for SubjectPublicKeyInfo and ECDSA-Sig)."""
    assert der[0] == 0x30
    _, i = _der_len(der, 1)
    out = []
    while i < len(der):
        tag = der[i]
        n, j = _der_len(der, i + 1)
        if tag == 0x02:
            out.append(der[j:j + n])
        i = j + n
    return out


def jwk(path, kind, kid):
    der = _run(["openssl", "pkey", "-in", path, "-pubout", "-outform", "DER"])
    if kind == "EC":
        pt = der[-65:]
        assert pt[0] == 4
        d = {"kty": "EC", "crv": "P-256", "x": b64(pt[1:33]), "y": b64(pt[33:])}
    else:
        rsa = _run(["openssl", "rsa", "-pubin", "-inform", "DER", "-RSAPublicKey_out",
                    "-outform", "DER"], der)
        n, e = _der_ints(rsa)
        d = {"kty": "RSA", "n": b64(n.lstrip(b"\0")), "e": b64(e.lstrip(b"\0"))}
    if kid is not None:
        d["kid"] = kid
    return d


def sign(path, header, claims, raw_header=None, raw_claims=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":"))
    c = raw_claims if raw_claims is not None else json.dumps(claims, separators=(",", ":"))
    inp = b64(h.encode()) + "." + b64(c.encode())
    sig = _run(["openssl", "dgst", "-sha256", "-sign", path], inp.encode())
    if header.get("alg") == "ES256":
        r, s = _der_ints(sig)
        sig = r.lstrip(b"\0").rjust(32, b"\0") + s.lstrip(b"\0").rjust(32, b"\0")
    return inp + "." + b64(sig)


def basic(user, token):
    return "Basic " + base64.b64encode(("%s:%s" % (user, token)).encode()).decode()


def metric(name, admin="127.0.0.1:9090"):
    """One sample of a daemon's /metrics, by its name with labels (None when absent)."""
    with urllib.request.urlopen("http://%s/metrics" % admin, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+(?:\.\d+)?)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None
