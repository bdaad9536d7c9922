#!/usr/bin/python3
"""apt-get update and download over HTTPS through portcullis, from a local flat repository
(the integration suite's test_http.py covers apt over plain HTTP with Acquire::http::Proxy)."""
import gzip
import hashlib
import os
import subprocess
import time

import clientlib

PKG = "portcullis-clients-hello"
s = clientlib.Suite(__file__, "apt", version_argv=["apt-get", "--version"])
with s.ctx:
    s.setup()
    pkgdir = s.ctx.path("pkg")
    os.makedirs(os.path.join(pkgdir, "DEBIAN"))
    os.makedirs(os.path.join(pkgdir, "usr", "share", "doc", PKG))
    control = ("Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: portcullis tests "
               "<ci@portcullis.invalid>\nDescription: fetched through the proxy by apt\n" % PKG)
    with open(os.path.join(pkgdir, "DEBIAN", "control"), "w") as f:
        f.write(control + " Made at run time by the clients suite.\n")
    with open(os.path.join(pkgdir, "usr", "share", "doc", PKG, "hello.txt"), "w") as f:
        f.write("hello\n")
    flat = os.path.join(s.docroot, "debian", "flat")
    os.makedirs(flat)
    deb_name = "%s_1.0_all.deb" % PKG
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", pkgdir,
                    os.path.join(flat, deb_name)], check=True, capture_output=True, timeout=30)
    deb = open(os.path.join(flat, deb_name), "rb").read()
    sha = lambda d: hashlib.sha256(d).hexdigest()  # noqa: E731
    packages = (control + "Filename: %s\nSize: %d\nSHA256: %s\n\n" % (deb_name, len(deb), sha(deb))).encode()
    files = {"Packages": packages, "Packages.gz": gzip.compress(packages, mtime=0)}
    for n, d in files.items():
        open(os.path.join(flat, n), "wb").write(d)
    with open(os.path.join(flat, "Release"), "w") as f:
        f.write("Origin: portcullis-clients\nDate: %s\nArchitectures: all amd64 arm64\nSHA256:\n%s" % (
            time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime()),
            "".join(" %s %d %s\n" % (sha(d), len(d), n) for n, d in files.items())))

    def fetch(base, env, work):
        for d in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial",
                  "cache/archives/partial", "download"):
            os.makedirs(os.path.join(work, d))
        with open(os.path.join(work, "etc", "sources.list"), "w") as f:
            f.write("deb [trusted=yes] %s/debian/flat/ /\n" % base)
        open(os.path.join(work, "state", "status"), "w").close()
        opts = ["-q", "-o", "Acquire::https::CaInfo=" + s.ca,
                "-o", "Dir::Etc::sourcelist=" + os.path.join(work, "etc", "sources.list"),
                "-o", "Dir::Etc::sourceparts=" + os.path.join(work, "etc", "sources.list.d"),
                "-o", "Dir::Etc::preferencesparts=" + os.path.join(work, "etc", "preferences.d"),
                "-o", "Dir::Etc::parts=" + os.path.join(work, "etc", "apt.conf.d"),
                "-o", "Dir::State=" + os.path.join(work, "state"),
                "-o", "Dir::State::status=" + os.path.join(work, "state", "status"),
                "-o", "Dir::Cache=" + os.path.join(work, "cache"),
                "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
                "-o", "Acquire::Retries=0", "-o", "Acquire::https::Timeout=10",
                "-o", "Acquire::http::Timeout=10", "-o", "Acquire::Languages=none"]
        up = clientlib.run(["apt-get"] + opts + ["update"], env, timeout=60)
        if up.returncode != 0:
            return up
        # A source that failed is only a warning to `apt-get update` (exit 0): the job fails at
        # the next step, so that is the exit status it sees; the warning names the 403.
        dl = clientlib.run(["apt-get"] + opts + ["download", PKG], env, cwd=os.path.join(work, "download"),
                           timeout=60)
        return subprocess.CompletedProcess(dl.args, dl.returncode, up.stdout + dl.stdout, up.stderr + dl.stderr)

    def verify(work):
        try:
            got = open(os.path.join(work, "download", deb_name), "rb").read()
        except OSError:
            return "no %s downloaded" % deb_name
        return None if got == deb else "the .deb differs"

    s.matrix("deb.debian.org", fetch, verify,
             reason_shown=("apt's own warning (it prints the Proxy-Status)", {}),
             refusal_where="`apt-get update` exits 0 with a `W: Failed to fetch` warning naming the 403; "
                           "the install step then fails",
             settings="`Acquire::https::CaInfo` for a private CA; `Acquire::http(s)::Proxy` "
                      "in apt.conf when the job's environment does not reach apt (sudo drops it)")
    s.finish()
