#!/usr/bin/python3
"""Node.js (the machine's Node 20) through portcullis: its built-in https and fetch, which ignore
the proxy variables, and Debian's https-proxy-agent / http-proxy-agent wired from HTTPS_PROXY."""
import os

import clientlib

AGENT = r'''
const [base, out] = process.argv.slice(1);
const url = new URL(base + "/hello.txt");
const tls = url.protocol === "https:";
const proxy = tls ? (process.env.HTTPS_PROXY || process.env.https_proxy)
                  : (process.env.HTTP_PROXY || process.env.http_proxy);
const Agent = require(tls ? "https-proxy-agent" : "http-proxy-agent");
const mod = require(tls ? "https" : "http");
const opts = {agent: proxy ? new Agent(proxy) : undefined, timeout: 20000,
              ca: require("fs").readFileSync(process.env.CA)};
mod.get(url, opts, (res) => {
  if (res.statusCode !== 200) { console.error("HTTP " + res.statusCode); process.exit(1); }
  const parts = [];
  res.on("data", (d) => parts.push(d));
  res.on("end", () => require("fs").writeFileSync(out, Buffer.concat(parts)));
}).on("error", (e) => { console.error(e.message); process.exit(1); });
'''
BUILTIN = r'''
const [base, out] = process.argv.slice(1);
fetch(base + "/hello.txt").then(async (r) => {
  require("fs").writeFileSync(out, Buffer.from(await r.arrayBuffer()));
}).catch((e) => { console.error(String(e.cause || e)); process.exit(1); });
'''

s = clientlib.Suite(__file__, "node", version_argv=["node", "--version"])
with s.ctx:
    s.setup()
    body = b"hello from the stand-in origin\n"
    with open(os.path.join(s.docroot, "hello.txt"), "wb") as f:
        f.write(body)

    def verify(work):
        try:
            got = open(os.path.join(work, "out"), "rb").read()
        except OSError:
            return "no file"
        return None if got == body else "content %r" % got[:60]

    with s.ctx.case("node: Node 20's own fetch() with HTTPS_PROXY set goes straight to the host, "
                    "past the proxy (measured: the proxy named gets no request, the origin serves it)"):
        standin = "http://127.0.0.1:%d" % clientlib.STANDIN_PORT
        env = dict(s.env({"HTTPS_PROXY": standin, "https_proxy": standin}), NODE_EXTRA_CA_CERTS=s.ca)
        sm, om = s.standin.mark(), len(s.origin_log())
        w = s.work("builtin")
        p = clientlib.run(["node", "-e", BUILTIN, "https://example.org", os.path.join(w, "out")], env)
        clientlib.expect(p.returncode == 0 and verify(w) is None and s.origin_requests(om)
                         and not s.standin.since(sm),
                         "exit %s, origin requests %d, proxy requests %d: %s" % (
                             p.returncode, len(s.origin_requests(om)), len(s.standin.since(sm)),
                             s.text(p)[1][-300:]))
        s.note("Node 20's built-in `fetch()`/`https` ignore the proxy variables and go direct "
               "(the NetworkPolicy must stop that); use an agent")

    def fetch(base, env, work):
        env = dict(env, NODE_PATH="/usr/share/nodejs", CA=s.ca)
        return clientlib.run(["node", "-e", AGENT, base, os.path.join(work, "out")], env)

    s.matrix("example.org", fetch, verify, env_proxy=False,
             settings="an agent in code: `new HttpsProxyAgent(process.env.HTTPS_PROXY)` (Debian "
                      "`node-https-proxy-agent`); `NO_PROXY` is the code's to apply; `ca` for a private CA")
    s.finish()
