#!/usr/bin/python3
"""Python requests (Debian's python3-requests under /usr/bin/python3) through portcullis."""
import os

import clientlib

SCRIPT = r'''
import sys, requests
r = requests.get(sys.argv[1] + "/hello.txt", timeout=20)
r.raise_for_status()
open(sys.argv[2], "wb").write(r.content)
'''
s = clientlib.Suite(__file__, "requests",
                    version_argv=["/usr/bin/python3", "-c", "import requests; print('requests', requests.__version__)"])
with s.ctx:
    s.setup()
    body = b"hello from the stand-in origin\n"
    with open(os.path.join(s.docroot, "hello.txt"), "wb") as f:
        f.write(body)

    def fetch(base, env, work):
        env = dict(env, REQUESTS_CA_BUNDLE=s.ca)
        return clientlib.run(["/usr/bin/python3", "-c", SCRIPT, base, os.path.join(work, "out")], env)

    def verify(work):
        try:
            got = open(os.path.join(work, "out"), "rb").read()
        except OSError:
            return "no file"
        return None if got == body else "content %r" % got[:60]

    s.matrix("example.org", fetch, verify,
             refusal_where="the exception text carries the proxy's status line",
             settings="`REQUESTS_CA_BUNDLE` for a private CA")
    s.finish()
