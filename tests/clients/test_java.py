#!/usr/bin/python3
"""Java 17's java.net.http.HttpClient (the machine's OpenJDK) through portcullis.  It reads no
proxy variable: the proxy comes from -Dhttps.proxyHost/-Dhttps.proxyPort (the default
ProxySelector), which this script derives from HTTPS_PROXY the way a CI wrapper would."""
import os
import subprocess
from urllib.parse import urlsplit

import clientlib

SRC = r'''
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

public class Fetch {
    public static void main(String[] a) throws Exception {
        HttpClient c = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(20)).build();
        HttpRequest q = HttpRequest.newBuilder(URI.create(a[0] + "/hello.txt"))
            .timeout(Duration.ofSeconds(20)).build();
        HttpResponse<byte[]> r = c.send(q, HttpResponse.BodyHandlers.ofByteArray());
        if (r.statusCode() != 200) {
            System.err.println("HTTP " + r.statusCode());
            System.exit(1);
        }
        Files.write(Path.of(a[1]), r.body());
    }
}
'''
s = clientlib.Suite(__file__, "java", version_argv=["/usr/bin/java", "-version"])
with s.ctx:
    s.setup()
    body = b"hello from the stand-in origin\n"
    with open(os.path.join(s.docroot, "hello.txt"), "wb") as f:
        f.write(body)
    jdir = s.ctx.path("java")
    os.makedirs(jdir)
    with open(os.path.join(jdir, "Fetch.java"), "w") as f:
        f.write(SRC)
    subprocess.run(["/usr/bin/javac", "-d", jdir, os.path.join(jdir, "Fetch.java")], check=True,
                   capture_output=True, timeout=120, env=dict(clientlib.clean_env(), HOME=jdir))
    store = os.path.join(jdir, "ca.p12")
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "ci", "-file", s.ca, "-keystore", store,
                    "-storetype", "PKCS12", "-storepass", "changeit"], check=True, capture_output=True,
                   timeout=60, env=dict(clientlib.clean_env(), HOME=jdir))

    def verify(work):
        try:
            got = open(os.path.join(work, "out"), "rb").read()
        except OSError:
            return "no file"
        return None if got == body else "content %r" % got[:60]

    def fetch(base, env, work, props=True):
        argv = ["/usr/bin/java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
                "-Djavax.net.ssl.trustStore=" + store, "-Djavax.net.ssl.trustStorePassword=changeit"]
        for scheme in ("https", "http"):
            u = env.get(scheme.upper() + "_PROXY") or env.get(scheme + "_proxy")
            if u and props:
                p = urlsplit(u)
                argv += ["-D%s.proxyHost=%s" % (scheme, p.hostname), "-D%s.proxyPort=%d" % (scheme, p.port)]
        return clientlib.run(argv + ["-cp", jdir, "Fetch", base, os.path.join(work, "out")],
                             dict(env, HOME=work), timeout=90)

    with s.ctx.case("java: HttpClient with HTTPS_PROXY set and no -Dhttps.proxyHost goes straight to the "
                    "host, past the proxy (measured: the proxy named gets no request, the origin serves it)"):
        standin = "http://127.0.0.1:%d" % clientlib.STANDIN_PORT
        sm, om = s.standin.mark(), len(s.origin_log())
        w = s.work("noprops")
        p = fetch("https://example.org", s.env({"HTTPS_PROXY": standin, "https_proxy": standin}), w,
                  props=False)
        clientlib.expect(p.returncode == 0 and verify(w) is None and s.origin_requests(om)
                         and not s.standin.since(sm),
                         "exit %s, origin requests %d, proxy requests %d: %s" % (
                             p.returncode, len(s.origin_requests(om)), len(s.standin.since(sm)),
                             s.text(p)[1][-300:]))
        s.note("ignores the proxy variables (goes direct): set `-Dhttps.proxyHost`/`-Dhttps.proxyPort` "
               "(and `http.*`, `-Dhttp.nonProxyHosts`)")

    s.matrix("example.org", fetch, verify, env_proxy=False,
             settings="`-Dhttps.proxyHost=` `-Dhttps.proxyPort=` (also `http.*`; `http.nonProxyHosts` for "
                      "exceptions); a trust store for a private CA; Basic proxy auth for tunnels is off "
                      "by default (`jdk.http.auth.tunneling.disabledSchemes`)")
    s.finish()
