#!/usr/bin/python3
"""cargo (Debian's, 1.65) fetching a crate through portcullis: the registry index cloned over
git's smart HTTP from a stand-in, the crate from a download stand-in.  Debian 12's cargo has no
sparse-index protocol (stable from 1.68), so it is the git index CI jobs on Debian 12 use."""
import hashlib
import io
import json
import os
import subprocess
import tarfile

import clientlib

NAME, VER = "portcullis-hello", "1.0.0"
CRATE = "%s-%s.crate" % (NAME, VER)


def make_crate():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for n, d in (("Cargo.toml", ('[package]\nname = "%s"\nversion = "%s"\nedition = "2021"\n'
                                     % (NAME, VER)).encode()),
                     ("src/lib.rs", b"pub const GREETING: &str = \"fetched through portcullis\";\n")):
            ti = tarfile.TarInfo("%s-%s/%s" % (NAME, VER, n))
            ti.size, ti.mode, ti.mtime = len(d), 0o644, 0
            t.addfile(ti, io.BytesIO(d))
    return buf.getvalue()


s = clientlib.Suite(__file__, "cargo", version_argv=["/usr/bin/cargo", "--version"])
with s.ctx:
    s.setup()
    crate = make_crate()
    cdir = os.path.join(s.docroot, "crates", NAME)
    os.makedirs(cdir)
    with open(os.path.join(cdir, CRATE), "wb") as f:
        f.write(crate)
    genv = dict(clientlib.clean_env(), HOME=s.ctx.path("seed-home"), GIT_CONFIG_NOSYSTEM="1",
                GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.org",
                GIT_COMMITTER_NAME="ci", GIT_COMMITTER_EMAIL="ci@example.org")
    os.makedirs(genv["HOME"])
    seed = s.ctx.path("index-seed")
    os.makedirs(os.path.join(seed, "po", "rt"))
    with open(os.path.join(seed, "config.json"), "w") as f:
        json.dump({"dl": "https://static.crates.io/crates/{crate}/{crate}-{version}.crate"}, f)
    with open(os.path.join(seed, "po", "rt", NAME), "w") as f:
        f.write(json.dumps({"name": NAME, "vers": VER, "deps": [], "features": {}, "yanked": False,
                            "cksum": hashlib.sha256(crate).hexdigest()}) + "\n")
    for args in (["init", "-q", "-b", "master"], ["add", "-A"], ["commit", "-q", "-m", "index"],
                 ["clone", "-q", "--bare", seed, os.path.join(s.git_root, "crates-index.git")]):
        subprocess.run(["git"] + args, cwd=seed, env=genv, check=True, capture_output=True, timeout=30)

    def fetch(base, env, work):
        home = os.path.join(work, "cargo-home")
        proj = os.path.join(work, "proj")
        os.makedirs(home)
        os.makedirs(os.path.join(proj, "src"))
        with open(os.path.join(home, "config.toml"), "w") as f:
            f.write('[source.crates-io]\nreplace-with = "mirror"\n[source.mirror]\nregistry = "%s/git/crates-index.git"\n'
                    '[net]\nretry = 0\n[http]\ntimeout = 20\ncainfo = "%s"\n' % (base, s.ca))
        with open(os.path.join(proj, "Cargo.toml"), "w") as f:
            f.write('[package]\nname = "job"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\n'
                    '%s = "=%s"\n' % (NAME, VER))
        open(os.path.join(proj, "src", "lib.rs"), "w").close()
        env = dict(env, CARGO_HOME=home, CARGO_TERM_COLOR="never")
        return clientlib.run(["/usr/bin/cargo", "fetch"], env, cwd=proj, timeout=120)

    def verify(work):
        cache = os.path.join(work, "cargo-home", "registry", "cache")
        for root, _, files in os.walk(cache):
            if CRATE in files:
                return None if open(os.path.join(root, CRATE), "rb").read() == crate else "the crate differs"
        return "no %s under %s" % (CRATE, cache)

    s.matrix("github.com", fetch, verify,
             side_hosts={"api.github.com": "cargo's GitHub fast path to skip an unchanged index; "
                                           "it falls back to a git fetch"},
             settings="`http.cainfo` (or `CARGO_HTTP_CAINFO`) for a private CA; Debian 12's cargo clones "
                      "the index from `github.com` and downloads from `static.crates.io`: allow both")
    s.finish()
