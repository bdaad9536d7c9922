#!/usr/bin/python3
"""RubyGems (Debian's ruby): `gem fetch` from a local stand-in index through portcullis."""
import os
import subprocess

import clientlib

NAME, VER = "portcullis-hello", "1.0.0"
GEM = "%s-%s.gem" % (NAME, VER)
SPEC = ('Gem::Specification.new do |s|\n  s.name = "%s"\n  s.version = "%s"\n  s.summary = "clients suite"\n'
        '  s.authors = ["ci"]\n  s.license = "MIT"\n  s.files = ["lib/portcullis_hello.rb"]\nend\n' % (NAME, VER))

s = clientlib.Suite(__file__, "gem", version_argv=["/usr/bin/gem", "--version"])
with s.ctx:
    s.setup()
    src = s.ctx.path("gem-src")
    os.makedirs(os.path.join(src, "lib"))
    with open(os.path.join(src, "p.gemspec"), "w") as f:
        f.write(SPEC)
    with open(os.path.join(src, "lib", "portcullis_hello.rb"), "w") as f:
        f.write("GREETING = 'fetched through portcullis'\n")
    genv = dict(clientlib.clean_env(), HOME=src)
    os.makedirs(os.path.join(s.docroot, "gems"))
    subprocess.run(["/usr/bin/gem", "build", "p.gemspec", "--output", os.path.join(s.docroot, "gems", GEM)],
                   cwd=src, env=genv, check=True, capture_output=True, timeout=60)
    gem = open(os.path.join(s.docroot, "gems", GEM), "rb").read()
    subprocess.run(["/usr/bin/gem", "generate_index", "--directory", s.docroot], cwd=src, env=genv,
                   check=True, capture_output=True, timeout=60)

    gemrc = s.ctx.path("gemrc")
    with open(gemrc, "w") as f:
        f.write("{}\n")

    def fetch(base, env, work):
        env = dict(env, SSL_CERT_FILE=s.ca, GEM_HOME=os.path.join(work, "gems"),
                   GEM_SPEC_CACHE=os.path.join(work, "specs"), GEMRC=gemrc)
        return clientlib.run(["/usr/bin/gem", "fetch", NAME, "-v", VER, "--clear-sources",
                              "--source", base + "/"], env, cwd=work, timeout=90)

    def verify(work):
        try:
            got = open(os.path.join(work, GEM), "rb").read()
        except OSError:
            return "no %s" % GEM
        return None if got == gem else "the gem differs"

    s.matrix("rubygems.org", fetch, verify, settings="`SSL_CERT_FILE` for a private CA")
    s.finish()
