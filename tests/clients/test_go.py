#!/usr/bin/python3
"""Go modules: `go mod download` from a local module-proxy stand-in (GOPROXY) through portcullis."""
import io
import json
import os
import zipfile

import clientlib

MOD, VER = "example.org/portcullis/hello", "v1.0.0"
GOMOD = b"module example.org/portcullis/hello\n\ngo 1.19\n"


def make_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        prefix = "%s@%s/" % (MOD, VER)
        z.writestr(prefix + "go.mod", GOMOD)
        z.writestr(prefix + "hello.go", b"package hello\n\nconst Greeting = \"fetched through portcullis\"\n")
    return buf.getvalue()


s = clientlib.Suite(__file__, "go", version_argv=["/usr/bin/go", "version"])
with s.ctx:
    s.setup()
    zdata = make_zip()
    vdir = os.path.join(s.docroot, MOD, "@v")
    os.makedirs(vdir)
    for name, data in (("list", (VER + "\n").encode()), (VER + ".mod", GOMOD), (VER + ".zip", zdata),
                       (VER + ".info", json.dumps({"Version": VER, "Time": "2026-01-01T00:00:00Z"}).encode())):
        with open(os.path.join(vdir, name), "wb") as f:
            f.write(data)

    def fetch(base, env, work):
        env = dict(env, GOPROXY=base, GOSUMDB="off", GOFLAGS="-mod=mod", GOTOOLCHAIN="local",
                   GOENV="off", GOPATH=os.path.join(work, "gopath"), GOCACHE=os.path.join(work, "gocache"),
                   GOMODCACHE=os.path.join(work, "modcache"), SSL_CERT_FILE=s.ca)
        return clientlib.run(["/usr/bin/go", "mod", "download", "-json", "%s@%s" % (MOD, VER)], env,
                             cwd=work, timeout=90)

    def verify(work):
        z = os.path.join(work, "modcache", "cache", "download", MOD, "@v", VER + ".zip")
        try:
            got = open(z, "rb").read()
        except OSError:
            return "no %s in the module cache" % z
        return None if got == zdata else "the module zip differs"

    s.matrix("proxy.golang.org", fetch, verify,
             refusal_where="the error ends in the reason phrase `Forbidden`; the reason code is in the audit record",
             settings="`SSL_CERT_FILE` for a private CA; a checksum database (`sum.golang.org`) must be "
                      "allowed too, or `GOSUMDB`/`GONOSUMDB` set (this suite uses `GOSUMDB=off`)")
    s.finish()
