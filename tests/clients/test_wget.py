#!/usr/bin/python3
"""GNU wget through portcullis: allowed, denied, metadata; proxy variables; credentials."""
import os

import clientlib

s = clientlib.Suite(__file__, "wget", version_argv=["wget", "--version"])
with s.ctx:
    s.setup()
    body = b"hello from the stand-in origin\n"
    with open(os.path.join(s.docroot, "hello.txt"), "wb") as f:
        f.write(body)

    def fetch(base, env, work):
        debug = ["-d"] if env.pop("CLIENTS_VERBOSE", None) else []
        return clientlib.run(["wget", "-nv"] + debug + ["--tries=1", "--timeout=20", "--ca-certificate=" + s.ca,
                              "-O", os.path.join(work, "out"), base + "/hello.txt"], env)

    def verify(work):
        try:
            got = open(os.path.join(work, "out"), "rb").read()
        except OSError:
            return "no file"
        return None if got == body else "content %r" % got[:60]

    s.matrix("example.org", fetch, verify,
             reason_shown=("`wget -d` (the CONNECT answer's Proxy-Status)", {"CLIENTS_VERBOSE": "1"}),
             settings="`--ca-certificate` for a private CA")
    s.finish()
