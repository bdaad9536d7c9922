#!/usr/bin/python3
"""git clone and fetch over smart HTTP (git http-backend behind a TLS origin) through portcullis."""
import os
import subprocess

import clientlib

s = clientlib.Suite(__file__, "git", version_argv=["git", "--version"])
with s.ctx:
    s.setup()
    bare = os.path.join(s.git_root, "proj.git")
    seed = s.ctx.path("seed")
    genv = dict(clientlib.clean_env(), HOME=s.ctx.path("seed-home"), GIT_CONFIG_NOSYSTEM="1",
                GIT_AUTHOR_NAME="ci", GIT_AUTHOR_EMAIL="ci@example.org",
                GIT_COMMITTER_NAME="ci", GIT_COMMITTER_EMAIL="ci@example.org")
    os.makedirs(genv["HOME"])

    def g(*args, cwd=None):
        subprocess.run(["git"] + list(args), cwd=cwd, env=genv, check=True, timeout=30,
                       capture_output=True)

    g("init", "-q", "--bare", "-b", "main", bare)
    g("init", "-q", "-b", "main", seed)
    n = [0]

    def commit():
        n[0] += 1
        with open(os.path.join(seed, "file.txt"), "a") as f:
            f.write("change %d\n" % n[0])
        g("add", "file.txt", cwd=seed)
        g("commit", "-q", "-m", "change %d" % n[0], cwd=seed)
        g("push", "-q", bare, "main", cwd=seed)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=seed, env=genv, capture_output=True,
                              text=True, check=True).stdout.strip()

    commit()
    want = {}

    def fetch(base, env, work):
        env = dict(env, GIT_SSL_CAINFO=s.ca, GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1")
        clone = os.path.join(work, "clone")
        p = clientlib.run(["git", "clone", "-q", base + "/git/proj.git", clone], env)
        if p.returncode != 0:
            return p
        want["head"] = commit()      # a new commit upstream, then `git fetch` gets it
        return clientlib.run(["git", "-C", clone, "fetch", "-q", "origin"], env)

    def verify(work):
        p = subprocess.run(["git", "-C", os.path.join(work, "clone"), "rev-parse", "origin/main"],
                           capture_output=True, text=True, env=genv)
        if p.returncode != 0:
            return "no clone: %s" % p.stderr.strip()
        return None if p.stdout.strip() == want.get("head") else \
            "origin/main %s after fetch, want %s" % (p.stdout.strip(), want.get("head"))

    s.matrix("github.com", fetch, verify,
             reason_shown=("`GIT_CURL_VERBOSE=1` (the CONNECT answer's Proxy-Status)",
                           {"GIT_CURL_VERBOSE": "1"}),
             settings="`GIT_SSL_CAINFO` (or `http.sslCAInfo`) for a private CA")
    s.finish()
