#!/usr/bin/python3
"""pip (Debian's python3-pip) downloading a wheel from a local simple index through portcullis."""
import base64
import hashlib
import io
import os
import zipfile

import clientlib

NAME, VER = "portcullis-hello", "1.0"
WHEEL = "portcullis_hello-%s-py3-none-any.whl" % VER


def make_wheel():
    files = {
        "portcullis_hello/__init__.py": b"GREETING = 'fetched through portcullis'\n",
        "portcullis_hello-%s.dist-info/METADATA" % VER:
            ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: clients suite test wheel\n" % (NAME, VER)).encode(),
        "portcullis_hello-%s.dist-info/WHEEL" % VER:
            b"Wheel-Version: 1.0\nGenerator: portcullis-clients\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    rec = "".join("%s,sha256=%s,%d\n" % (n, base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b"=").decode(),
                                          len(d)) for n, d in files.items())
    rec += "portcullis_hello-%s.dist-info/RECORD,,\n" % VER
    files["portcullis_hello-%s.dist-info/RECORD" % VER] = rec.encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    return buf.getvalue()


s = clientlib.Suite(__file__, "pip", version_argv=["/usr/bin/python3", "-m", "pip", "--version"])
with s.ctx:
    s.setup()
    whl = make_wheel()
    os.makedirs(os.path.join(s.docroot, "packages"))
    with open(os.path.join(s.docroot, "packages", WHEEL), "wb") as f:
        f.write(whl)
    idx = os.path.join(s.docroot, "simple", NAME)
    os.makedirs(idx)
    with open(os.path.join(idx, "index.html"), "w") as f:
        f.write('<!DOCTYPE html><html><body><a href="../../packages/%s#sha256=%s">%s</a></body></html>\n'
                % (WHEEL, hashlib.sha256(whl).hexdigest(), WHEEL))

    def fetch(base, env, work):
        env = dict(env, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_CONFIG_FILE="/dev/null")
        trusted = ["--trusted-host", base.split("//")[1]] if base.startswith("http:") else []
        return clientlib.run(["/usr/bin/python3", "-m", "pip", "download", "--no-deps", "--retries", "1",
                              "--timeout", "15", "--cert", s.ca, "--index-url", base + "/simple/"] + trusted +
                             ["-d", work, NAME], env, timeout=90)

    def verify(work):
        try:
            got = open(os.path.join(work, WHEEL), "rb").read()
        except OSError:
            return "no %s downloaded" % WHEEL
        return None if got == whl else "the wheel differs"

    s.matrix("pypi.org", fetch, verify,
             refusal_where="only the `WARNING: Retrying` lines name the 403 (none with `--retries 0`); "
                           "the final error is `No matching distribution found`",
             settings="`--cert` / `PIP_CERT` for a private CA; allow `pypi.org` and "
                      "`files.pythonhosted.org` (the index links to the files there)")
    s.finish()
