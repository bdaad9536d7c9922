#!/usr/bin/python3
"""curl through portcullis: allowed, denied, metadata; proxy variables; credentials."""
import os

import clientlib

s = clientlib.Suite(__file__, "curl", version_argv=["curl", "--version"])
with s.ctx:
    s.setup()
    body = b"hello from the stand-in origin\n"
    with open(os.path.join(s.docroot, "hello.txt"), "wb") as f:
        f.write(body)

    def fetch(base, env, work):
        return clientlib.run(["curl", "-fsS", "--max-time", "20", "--cacert", s.ca,
                              "-o", os.path.join(work, "out"), base + "/hello.txt"], env)

    def verify(work):
        try:
            got = open(os.path.join(work, "out"), "rb").read()
        except OSError:
            return "no file"
        return None if got == body else "content %r" % got[:60]

    s.matrix("example.org", fetch, verify,
             refusal_where="`curl -v` shows the CONNECT answer",
             settings="`--cacert` (or `CURL_CA_BUNDLE`) for a private CA")
    s.finish()
