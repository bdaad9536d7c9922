#!/usr/bin/python3
"""Headless Chromium (Debian's) through portcullis, as Playwright, Puppeteer and Lighthouse CI run it.

With default settings Chromium sends a GREASE Encrypted Client Hello on every connection, and the
default `tls.allow_ech: false` cuts the tunnel (tls_ech); the audit record says why.  With the
managed policy {"EncryptedClientHelloEnabled": false} the page loads.  The policy is written to
/etc/chromium/policies/managed on a tmpfs mounted in this scenario's private mount namespace,
so nothing on the machine changes."""
import json
import os
import re
import shutil
import subprocess

import clientlib
from clientlib import expect, get

CHROMIUM = "/usr/bin/chromium"
MARK = "portcullis-clients-page-loaded"

s = clientlib.Suite(__file__, "chromium", version_argv=[CHROMIUM, "--version"])
with s.ctx:
    s.setup()
    with open(os.path.join(s.docroot, "index.html"), "w") as f:
        f.write("<!DOCTYPE html><html><head><title>t</title></head><body><p id=m>%s</p></body></html>\n" % MARK)
    spki = subprocess.run("openssl x509 -in '%s' -pubkey -noout | openssl pkey -pubin -outform der | "
                          "openssl dgst -sha256 -binary | base64" % s.certs["cert"], shell=True,
                          capture_output=True, text=True, check=True).stdout.strip()

    # /etc/chromium on a tmpfs of this mount namespace: first with no policy at all.
    etc = s.ctx.path("etc-chromium")
    os.makedirs(etc)
    if os.path.isdir("/etc/chromium"):
        for n in os.listdir("/etc/chromium"):
            if os.path.isfile(os.path.join("/etc/chromium", n)):
                shutil.copy(os.path.join("/etc/chromium", n), etc)
    else:
        os.makedirs("/etc/chromium")    # only when the package left none; the test then fails on its own
    clientlib.harness.bind_mount(etc, "/etc/chromium")

    def fetch(base, env, work, bypass="<-loopback>"):
        proxy = env.get("HTTPS_PROXY") or env.get("https_proxy")
        argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--user-data-dir=" + os.path.join(work, "profile"),
                "--ignore-certificate-errors-spki-list=" + spki, "--dump-dom", base + "/"]
        if bypass is not None:
            argv.insert(1, "--proxy-bypass-list=" + bypass)
        if proxy:
            argv.insert(1, "--proxy-server=" + proxy)
        p = clientlib.run(argv, dict(env, HOME=os.path.join(work, "home")), timeout=120)
        dom = p.stdout.decode("utf-8", "replace")
        with open(os.path.join(work, "dom.html"), "w") as f:
            f.write(dom)
        err = re.search(r"(net::)?ERR_[A-Z_]+", dom)
        refused = re.search(r"portcullis refused the request: [a-z_]+", dom)
        summary = ("page loaded" if MARK in dom else refused.group(0) if refused else
                   "error page net::%s" % err.group(0).replace("net::", "") if err else
                   "an empty page (no error shown)")
        return subprocess.CompletedProcess(argv, p.returncode, summary.encode(), b"")

    def verify(work):
        try:
            dom = open(os.path.join(work, "dom.html")).read()
        except OSError:
            return "no DOM"
        return None if MARK in dom else "page not loaded (%s)" % (re.findall(r"ERR_[A-Z_]+", dom)[:1] or "?")

    audit = s.px.audit
    with s.ctx.case("chromium, default settings: the tunnel is allowed, then cut tls_ech (GREASE ECH); "
                    "the page does not load; the audit record names the cause and the fix"):
        m = audit.mark()
        w = s.work("default")
        p = fetch("https://example.org", s.env(), w)
        expect(verify(w) is not None, "the page loaded although the hello carried ECH")
        recs = s.wait_records(m, lambda r: get(r, "destination.domain") == "example.org")
        ech = [r for r in recs if get(r, "event.reason") == "tls_ech"]
        expect(ech and len(ech) == len(recs), "records for example.org: %s" % [
            get(r, "event.reason") for r in recs])
        hint = get(ech[0], "labels.hint") or ""
        for word in ("GREASE", "EncryptedClientHelloEnabled=false", "allow_ech"):
            expect(word in hint, "labels.hint lacks %r: %r" % (word, hint))
        expect(get(ech[0], "tls.client.server_name") == "example.org", "SNI %r" %
               get(ech[0], "tls.client.server_name"))
        s.note("default settings: every tunnel cut `tls_ech` (GREASE ECH), the job sees %s; "
               "set the managed policy `EncryptedClientHelloEnabled: false`" % s.text(p)[0])
        print("# default: exit %d, %s, %d tls_ech record(s)" % (p.returncode, s.text(p)[0], len(ech)))

    with s.ctx.case("chromium: --disable-features=EncryptedClientHello measured (issue report: no help)"):
        m = audit.mark()
        w = s.work("feature-off")
        env = s.env()
        argv_fetch = fetch

        def fetch_flag(base, env, work):
            proxy = env.get("HTTPS_PROXY")
            argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-features=EncryptedClientHello", "--proxy-server=" + proxy,
                    "--disable-background-networking", "--user-data-dir=" + os.path.join(work, "profile"),
                    "--ignore-certificate-errors-spki-list=" + spki, "--dump-dom", base + "/"]
            p = clientlib.run(argv, dict(env, HOME=os.path.join(work, "home")), timeout=120)
            with open(os.path.join(work, "dom.html"), "w") as f:
                f.write(p.stdout.decode("utf-8", "replace"))
            return p
        fetch_flag("https://example.org", env, w)
        recs = s.wait_records(m, lambda r: get(r, "destination.domain") == "example.org")
        loaded = verify(w) is None
        reasons = sorted({get(r, "event.reason") for r in recs})
        expect(recs, "no audit record for example.org")
        s.row["flag"] = "loaded" if loaded else "not loaded (%s)" % ", ".join(reasons)
        s.note("`--disable-features=EncryptedClientHello` instead of the policy: page %s" % s.row["flag"])
        print("# --disable-features=EncryptedClientHello: %s" % s.row["flag"])

    with s.ctx.case("chromium: without --proxy-bypass-list=<-loopback> it goes straight to 169.254.169.254, "
                    "past the proxy (implicit link-local bypass; measured against the metadata listener)"):
        m, before = audit.mark(), len(s.meta.accepts())
        w = s.work("implicit-bypass")
        p = fetch("http://" + clientlib.META, s.env(), w, bypass=None)
        direct = clientlib.harness.wait_until(lambda: len(s.meta.accepts()) > before, 10)
        recs = s.wait_records(m, lambda r: get(r, "destination.ip") == clientlib.META or
                              get(r, "url.domain") == clientlib.META) if not direct else []
        expect(direct and not recs, "metadata listener accepts %d, proxy records %d" % (
            len(s.meta.accepts()) - before, len(recs)))
        s.note("by default it bypasses the proxy for link-local and loopback addresses "
               "(169.254.169.254 included): add `--proxy-bypass-list=<-loopback>`, and keep the "
               "NetworkPolicy that denies direct egress")

    os.makedirs(os.path.join(etc, "policies", "managed"))
    with open(os.path.join(etc, "policies", "managed", "ech.json"), "w") as f:
        json.dump({"EncryptedClientHelloEnabled": False}, f)

    s.matrix("example.org", fetch, verify, env_proxy=False, exit0_known=True,
             refusal_where="a refused CONNECT leaves an empty page and exit 0; the reason is in the audit record",
             side_hosts={"googleapis.com": "Chromium's component updater", "google.com": "Chromium's "
                         "background requests", "gvt1.com": "Chromium's component downloads",
                         "gstatic.com": "Chromium's background requests"},
             creds_unsupported="not sent: with user:pass in `--proxy-server` the stand-in proxy got no request "
                               "and the page did not load (Playwright's `proxy.username`/`password` answer "
                               "the 407 instead; not tested)",
             settings="`--proxy-server=` (Playwright `proxy`, Puppeteer `args`) and "
                      "`--proxy-bypass-list=<-loopback>`; the managed policy "
                      "`{\"EncryptedClientHelloEnabled\": false}` in `/etc/chromium/policies/managed/`")
    s.finish()
