#!/usr/bin/python3
"""npm fetching a package tarball from a local registry stand-in through portcullis."""
import base64
import hashlib
import io
import json
import os
import tarfile

import clientlib

NAME, VER = "portcullis-hello", "1.0.0"
TGZ = "%s-%s.tgz" % (NAME, VER)


def make_tarball():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for n, d in (("package/package.json", json.dumps({"name": NAME, "version": VER,
                                                           "main": "index.js"}).encode()),
                     ("package/index.js", b"module.exports = 'fetched through portcullis';\n")):
            ti = tarfile.TarInfo(n)
            ti.size, ti.mode, ti.mtime = len(d), 0o644, 0
            t.addfile(ti, io.BytesIO(d))
    return buf.getvalue()


s = clientlib.Suite(__file__, "npm", version_argv=["npm", "--version"])
with s.ctx:
    s.setup()
    tgz = make_tarball()
    pkgdir = os.path.join(s.docroot, NAME)
    os.makedirs(os.path.join(pkgdir, "-"))
    with open(os.path.join(pkgdir, "-", TGZ), "wb") as f:
        f.write(tgz)
    doc = {"name": NAME, "dist-tags": {"latest": VER}, "versions": {VER: {
        "name": NAME, "version": VER, "dist": {
            "tarball": "https://registry.npmjs.org/%s/-/%s" % (NAME, TGZ),
            "shasum": hashlib.sha1(tgz).hexdigest(),
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()}}}}
    with open(os.path.join(pkgdir, "index.json"), "w") as f:
        json.dump(doc, f)

    def fetch(base, env, work):
        env = dict(env, npm_config_cache=os.path.join(work, "cache"), npm_config_userconfig="/dev/null",
                   npm_config_update_notifier="false", npm_config_fetch_retries="0",
                   npm_config_fetch_timeout="20000", npm_config_audit="false", npm_config_fund="false")
        return clientlib.run(["npm", "pack", "--registry", base + "/", "--cafile", s.ca,
                              "--pack-destination", work, "%s@%s" % (NAME, VER)], env, cwd=work, timeout=90)

    def verify(work):
        try:
            got = open(os.path.join(work, TGZ), "rb").read()
        except OSError:
            return "no %s" % TGZ
        return None if got == tgz else "the tarball differs"

    s.matrix("registry.npmjs.org", fetch, verify,
             settings="`cafile` (or `NODE_EXTRA_CA_CERTS`) for a private CA; `npm config` `proxy`/"
                      "`https-proxy`/`noproxy` override the variables")
    s.finish()
