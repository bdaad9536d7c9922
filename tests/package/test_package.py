#!/usr/bin/python3
"""Tests of what portcullis ships outside Kubernetes: man pages, the Debian package,
the systemd unit and the logrotate snippet.

Groups:
  legal  LICENSE is the full Apache-2.0 text, NOTICE exists, and every copy of Elastic
         Common Schema data in the tree has the licence beside it and is named in NOTICE.
  man  the man pages in man/: groff and man report no warning, and they stay
       faithful to the code: portcullis(8) names every option main.c parses and
       every exit code; portcullis-policy(5) names every key the policy loader
       accepts.
  deb  builds the package from a scratch copy of the tree with
       `dpkg-buildpackage -us -uc -b` (never in the source folder), then:
       lintian reports no error; the package holds the binary, both man pages,
       the unit, the logrotate snippet and the default policy, /etc files as
       conffiles; installed into a scratch root with `dpkg -x`, its binary runs
       `--check` on its /etc/portcullis/policy.yaml, and that policy is
       policy/examples/default.yaml with only the audit output moved to the
       unit's log directory; `systemd-analyze verify` accepts the unit against
       that root without a word, and `systemd-analyze security` rates it;
       the packaged daemon does its job under the unit's confinement as far as
       it can be reproduced without systemd (sandbox.py); the logrotate snippet rotates the audit file of the packaged daemon
       (running in a private network namespace) and its SIGUSR1 makes the
       daemon start a new file, with every record in exactly one file.

Output: one "ok N - ..." / "not ok N - ..." line per case, then
"N passed, N failed"; exit status 1 on any failure.

usage: test_package.py --srcdir REPO --group legal|man|deb [--workdir DIR] [--keep]
"""

import argparse
import glob
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DEADLINE_S = 60  # for anything the test waits on; the machine may be loaded

# What the package must hold (dpkg -c paths).
PACKAGE_FILES = [
    "./usr/sbin/portcullis",
    "./usr/share/man/man8/portcullis.8.gz",
    "./usr/share/man/man5/portcullis-policy.5.gz",
    "./lib/systemd/system/portcullis.service",
    "./etc/logrotate.d/portcullis",
    "./etc/portcullis/policy.yaml",
]
CONFFILES = ["/etc/portcullis/policy.yaml", "/etc/logrotate.d/portcullis"]
AUDIT_FILE = "/var/log/portcullis/audit.json"

# The unit's sandbox, as issue and house rules ask; each must be in the shipped unit.
UNIT_SETTINGS = {
    "DynamicUser": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
    "MemoryDenyWriteExecute": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "LogsDirectory": "portcullis",
    "ExecReload": "kill -HUP $MAINPID",
}
# systemd-analyze security's exposure, 0 (locked down) to 100 (nothing): "OK" is below 4.
EXPOSURE_THRESHOLD = 20


class Failure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


class Runner:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def case(self, name, fn, *args):
        self.n += 1
        try:
            fn(*args)
        except Failure as e:
            self.failed += 1
            print(f"not ok {self.n} - {name}")
            for line in str(e).splitlines():
                print(f"#   {line}")
        except Exception:  # a crash in a check is a failure too, with its trace
            self.failed += 1
            print(f"not ok {self.n} - {name}")
            for line in traceback.format_exc().splitlines():
                print(f"#   {line}")
        else:
            print(f"ok {self.n} - {name}")
        sys.stdout.flush()


def run(cmd, timeout=600, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, **kw)


def wait_for(what, pred, deadline_s=DEADLINE_S):
    """Poll pred() until it returns a true value or the deadline passes."""
    end = time.monotonic() + deadline_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.05)


# ---- man pages -------------------------------------------------------------------------

def man_warnings(path):
    """Every complaint groff or man makes about the page at path (plain or .gz)."""
    problems = []
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        text = f.read()
    r = run(["groff", "-man", "-ww", "-z"], input=text)
    if r.returncode != 0 or r.stderr.strip():
        problems.append(f"groff -man -ww -z: rc {r.returncode}: {r.stderr.strip()}")
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0")
    r = run(["man", "--warnings", "-l", path], env=env)
    if r.returncode != 0 or r.stderr.strip():
        problems.append(f"man --warnings -l: rc {r.returncode}: {r.stderr.strip()}")
    return problems, re.sub(r".\x08", "", r.stdout)  # the text, overstrike bold removed


def man_text(path):
    """The page as man renders it, plain text."""
    return man_warnings(path)[1]


def code_options(src):
    """Long options from main.c's getopt_long table and short ones from its optstring."""
    main = open(os.path.join(src, "proxy", "main.c")).read()
    longs = re.findall(r'\{"([a-z-]+)",\s*(?:no|required|optional)_argument', main)
    m = re.search(r'getopt_long\(argc, argv, "([^"]*)"', main)
    check(longs and m, "cannot find the option table in proxy/main.c")
    shorts = [c for c in m.group(1) if c != ":"]
    exits = [int(x) for x in re.findall(r"EXIT_[A-Z]+ = (\d+),", main)]
    check(exits, "cannot find the exit codes in proxy/main.c")
    return longs, shorts, exits


def code_policy_keys(src):
    """Every key the loader accepts: the *_keys[] tables of policy.c, identity.c, oidc.c and intercept.c."""
    keys = set()
    for f in ("policy.c", "identity.c", "oidc.c", "intercept.c"):
        text = open(os.path.join(src, "policy", f)).read()
        for body in re.findall(r"static const char \*const \w+_keys\[\] = \{(.*?)\};", text, re.S):
            keys.update(re.findall(r'"([a-z_]+)"', body))
    check(len(keys) > 40, f"found only {len(keys)} keys in policy/*.c: did the tables move?")
    return keys


def group_man(t, src):
    pages = {p: os.path.join(src, "man", p) for p in ("portcullis.8", "portcullis-policy.5")}

    def no_warnings(path):
        problems, out = man_warnings(path)
        check(not problems, "\n".join(problems))
        check("NAME" in out and "SEE ALSO" in out, "the page renders without NAME or SEE ALSO")

    for name, path in pages.items():
        t.case(f"man/{name}: groff -man -ww and man --warnings report nothing", no_warnings, path)

    def daemon_page():
        text = man_text(pages["portcullis.8"])
        longs, shorts, exits = code_options(src)
        missing = [f"--{o}" for o in longs if f"--{o}" not in text]
        missing += [f"-{c}" for c in shorts if not re.search(rf"(^|[\s,])-{c}\b", text, re.M)]
        check(not missing, f"portcullis(8) does not document {missing}")
        sect = text.split("EXIT STATUS", 1)[-1].split("SIGNALS", 1)[0]
        undocumented = [c for c in exits if not re.search(rf"^\s+{c}\s*$|^\s+{c}\s{{2,}}", sect, re.M)]
        check(not undocumented, f"EXIT STATUS does not list exit codes {undocumented}")
        for sig in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"):
            check(sig in text.split("SIGNALS", 1)[-1], f"SIGNALS does not name {sig}")
        for sec in ("FILES", "ENVIRONMENT", "SEE ALSO"):
            check(re.search(rf"^{sec}$", text, re.M), f"no {sec} section")
        check("KUBERNETES_SERVICE_HOST" in text, "ENVIRONMENT misses KUBERNETES_SERVICE_HOST")

    t.case("portcullis(8) documents every option of main.c, every exit code and signal",
           daemon_page)

    def policy_page():
        text = man_text(pages["portcullis-policy.5"])
        keys = code_policy_keys(src)
        missing = sorted(k for k in keys if not re.search(rf"(^|[\s.({{]){re.escape(k)}\b", text, re.M))
        check(not missing, f"portcullis-policy(5) does not document the keys {missing}")

    t.case("portcullis-policy(5) documents every key policy.c, identity.c, oidc.c and intercept.c accept", policy_page)

    def detects_broken_page():
        # The check above must be able to fail: a page with a stray request warns.
        with tempfile.NamedTemporaryFile("w", suffix=".8") as f:
            f.write(open(pages["portcullis.8"]).read() + ".BOGUS request\n\\fBunclosed\n")
            f.flush()
            problems, _ = man_warnings(f.name)
            check(problems, "groff and man accepted a page with an unknown request")

    t.case("the warning check catches a page with an unknown request", detects_broken_page)


# ---- licence ------------------------------------------------------------------------

APACHE = "/usr/share/common-licenses/Apache-2.0"  # base-files: on every Debian system


def is_ecs_data(src, rel):
    """A copy of ECS data: its generated field lists, by name or by the CSV's header."""
    base = os.path.basename(rel)
    if base in ("ecs_flat.yml", "ecs_nested.yml", "ecs.yml"):
        return True
    if base.endswith(".csv"):
        with open(os.path.join(src, rel), errors="replace") as f:
            return f.readline().startswith("ECS_Version,")
    return False


def group_legal(t, src):
    def license_text():
        check(os.path.exists(APACHE), f"{APACHE} is missing (base-files)")
        check(open(os.path.join(src, "LICENSE")).read() == open(APACHE).read(),
              "LICENSE is not the Apache License 2.0 text")
        notice = open(os.path.join(src, "NOTICE")).read()
        check("Apache License, Version 2.0" in notice, "NOTICE does not name the licence")

    t.case("LICENSE is the full Apache-2.0 text and NOTICE names it", license_text)

    def ecs_copies():
        files = tree_files(src)
        copies = sorted({os.path.dirname(f) for f in files if is_ecs_data(src, f)})
        check(copies, "found no ECS data (tests/integration/ecs/fields.csv): did it move?")
        notice = open(os.path.join(src, "NOTICE")).read()
        for d in copies:
            lic = [n for n in ("LICENSE.txt", "LICENSE") if os.path.exists(os.path.join(src, d, n))]
            check(lic, f"{d}/ holds ECS data without its licence beside it")
            check(open(os.path.join(src, d, lic[0])).read() == open(APACHE).read(),
                  f"{d}/{lic[0]} is not the Apache License 2.0 text")
            check(d + "/" in notice, f"NOTICE does not name {d}/")

    t.case("every copy of ECS data has its licence beside it and is named in NOTICE", ecs_copies)


# ---- the Debian package ----------------------------------------------------------------

def tree_files(src):
    """The files of the source tree: git's view when it has one, else a walk without builds."""
    r = run(["git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard"])
    if r.returncode == 0 and r.stdout:
        return [p for p in r.stdout.split("\0") if p and os.path.lexists(os.path.join(src, p))]
    out = []
    for root, dirs, files in os.walk(src):
        rel = os.path.relpath(root, src)
        dirs[:] = [d for d in dirs if not (rel == "." and (d.startswith("build") or d == ".git"))]
        out += [os.path.normpath(os.path.join(rel, f)) for f in files]
    return out


def scratch_copy(src, dest):
    for rel in tree_files(src):
        s, d = os.path.join(src, rel), os.path.join(dest, rel)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        if os.path.islink(s):
            os.symlink(os.readlink(s), d)
        else:
            shutil.copy2(s, d)


def project_version(src):
    m = re.search(r"version\s*:\s*'([^']+)'", open(os.path.join(src, "meson.build")).read())
    check(m, "no version in meson.build")
    return m.group(1)


def unit_settings(path):
    """[Service]/[Unit]/[Install] key → list of values, in file order."""
    out = {}
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def group_deb(t, src, work):
    state = {}
    version = project_version(src)

    def build():
        tree = os.path.join(work, "portcullis")
        scratch_copy(src, tree)
        check(os.path.exists(os.path.join(tree, "debian", "rules")), "no debian/rules in the tree")
        # Both cores: debhelper builds with one job unless DEB_BUILD_OPTIONS says otherwise.
        opts = (os.environ.get("DEB_BUILD_OPTIONS", "") + " parallel=2").strip()
        r = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=tree, timeout=1500,
                env=dict(os.environ, DEB_BUILD_OPTIONS=opts))
        log = (r.stdout + r.stderr)[-6000:]
        check(r.returncode == 0, f"dpkg-buildpackage failed (rc {r.returncode}):\n{log}")
        debs = glob.glob(os.path.join(work, f"portcullis_{version}_*.deb"))
        check(len(debs) == 1, f"expected one portcullis_{version}_*.deb, found {debs}")
        changes = glob.glob(os.path.join(work, f"portcullis_{version}_*.changes"))
        check(len(changes) == 1, f"expected one .changes, found {changes}")
        state["deb"], state["changes"] = debs[0], changes[0]

    t.case("dpkg-buildpackage -us -uc -b builds the package from a scratch copy of the tree", build)

    def lintian():
        check("changes" in state, "no package (the build failed)")
        r = run(["lintian", "--fail-on", "error", "--display-info", state["changes"]], timeout=600)
        tags = [l for l in r.stdout.splitlines() if re.match(r"^[EWIPNX]: ", l)]
        for tag in tags:  # shown, so a warning is seen even though it does not fail the case
            print(f"#   lintian: {tag}")
        errors = [l for l in tags if l.startswith("E: ")]
        check(not errors, "lintian errors:\n" + "\n".join(errors))
        check(r.returncode == 0, f"lintian exited {r.returncode}:\n{r.stdout}{r.stderr}")

    t.case("lintian reports no error", lintian)

    def contents():
        check("deb" in state, "no package (the build failed)")
        r = run(["dpkg-deb", "-c", state["deb"]])
        check(r.returncode == 0, r.stderr)
        paths = [line.split()[5] for line in r.stdout.splitlines() if len(line.split()) >= 6]
        missing = [p for p in PACKAGE_FILES if p not in paths]
        check(not missing, f"the package lacks {missing}; it has:\n" + "\n".join(paths))
        ctrl = os.path.join(work, "control")
        r = run(["dpkg-deb", "-e", state["deb"], ctrl])
        check(r.returncode == 0, r.stderr)
        conf = open(os.path.join(ctrl, "conffiles")).read().split()
        check(sorted(conf) == sorted(CONFFILES), f"conffiles are {conf}, want {CONFFILES}")
        postinst = open(os.path.join(ctrl, "postinst")).read()
        check("deb-systemd-helper" in postinst and "portcullis.service" in postinst,
              "postinst does not enable portcullis.service")
        fields = run(["dpkg-deb", "-f", state["deb"], "Version", "Depends"]).stdout
        check(f"Version: {version}" in fields, fields)
        for lib in ("libevent", "libssl", "libc-ares", "libyaml"):
            check(lib in fields, f"Depends lacks {lib}: {fields}")

    t.case("the package holds the binary, man pages, unit, logrotate snippet and policy "
           "(conffiles), and enables the unit", contents)

    def install():
        check("deb" in state, "no package (the build failed)")
        root = os.path.join(work, "root")
        r = run(["dpkg", "-x", state["deb"], root])
        check(r.returncode == 0, r.stderr)
        state["root"] = root
        exe = os.path.join(root, "usr/sbin/portcullis")
        r = run([exe, "--version"])
        check(r.returncode == 0 and r.stdout.strip() == f"portcullis {version}",
              f"--version: rc {r.returncode}: {r.stdout}{r.stderr}")
        policy = os.path.join(root, "etc/portcullis/policy.yaml")
        for extra in ([], ["--strict"]):
            r = run([exe, "--check", policy] + extra)
            check(r.returncode == 0 and ": OK:" in r.stdout,
                  f"--check {' '.join(extra)}: rc {r.returncode}: {r.stdout}{r.stderr}")
        broken = os.path.join(src, "policy/examples/broken.yaml")
        r = run([exe, "--check", broken])
        check(r.returncode == 1 and "broken.yaml" in r.stderr,
              f"--check of broken.yaml: rc {r.returncode}: {r.stderr[:2000]}")

    t.case("installed in a scratch root (dpkg -x), portcullis --check accepts "
           "/etc/portcullis/policy.yaml (and still refuses a broken one)", install)

    def policy_is_the_example():
        check("root" in state, "not installed")
        shipped = yaml.safe_load(open(os.path.join(state["root"], "etc/portcullis/policy.yaml")))
        example = yaml.safe_load(open(os.path.join(src, "policy/examples/default.yaml")))
        check(shipped["audit"]["output"] == AUDIT_FILE, f"audit.output is {shipped['audit']}")
        shipped["audit"]["output"] = example["audit"]["output"]
        check(shipped == example, "the packaged policy differs from policy/examples/default.yaml "
              "in more than audit.output")

    t.case(f"the packaged policy is the example with audit records in {AUDIT_FILE}",
           policy_is_the_example)

    def man_pages():
        check("root" in state, "not installed")
        for page in ("man8/portcullis.8.gz", "man5/portcullis-policy.5.gz"):
            problems, out = man_warnings(os.path.join(state["root"], "usr/share/man", page))
            check(not problems, f"{page}: " + "\n".join(problems))
            check("SEE ALSO" in out, f"{page} renders without SEE ALSO")

    t.case("the installed man pages render without a warning", man_pages)

    def unit_root():
        # `systemd-analyze verify` checks a unit against a file system: every Exec binary must
        # exist and be executable, every dependency (sysinit.target, ...) must load.  On the
        # build machine the package is not installed, so verify against the scratch root
        # (--root), completed with what a real system beside the package has: systemd's own
        # units and procps's kill (ExecReload).  Documentation=man: pages are looked up with
        # the host's man, where they are not installed, so --man=no; the man cases above
        # check both pages are in the package and render.
        root = state["root"]
        units = os.path.join(root, "lib/systemd/system")
        for f in os.listdir("/lib/systemd/system"):
            s, d = os.path.join("/lib/systemd/system", f), os.path.join(units, f)
            if not os.path.lexists(d) and os.path.isfile(s) and not os.path.islink(s):
                shutil.copy2(s, d)
        kill = shutil.which("kill")
        check(kill, "no kill(1) on this machine")
        os.makedirs(os.path.join(root, "usr/bin"), exist_ok=True)
        shutil.copy2(kill, os.path.join(root, "usr/bin/kill"))
        return root

    def unit_verify():
        check("root" in state, "not installed")
        root = unit_root()
        unit = os.path.join(root, "lib/systemd/system/portcullis.service")
        st = unit_settings(unit)
        for k, want in UNIT_SETTINGS.items():
            check(want in st.get(k, []), f"{k}={want} is not in the unit (it has {st.get(k)})")
        check("@system-service" in st.get("SystemCallFilter", []), "no SystemCallFilter=@system-service")
        pre, start = st.get("ExecStartPre", [""])[0].split(), st.get("ExecStart", [""])[0].split()
        check(pre[:3] == ["/usr/sbin/portcullis", "--check", "/etc/portcullis/policy.yaml"],
              f"ExecStartPre={pre}")
        check(start == ["/usr/sbin/portcullis", "-c", "/etc/portcullis/policy.yaml"],
              f"ExecStart={start}")
        r = run(["systemd-analyze", "--root=" + root, "--man=no", "verify",
                 "/lib/systemd/system/portcullis.service"], timeout=120)
        check(r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(),
              f"systemd-analyze verify: rc {r.returncode}:\n{r.stdout}{r.stderr}")
        # And it can fail: the same unit with a misspelt key and a binary that is not there.
        bad = os.path.join(root, "lib/systemd/system/portcullis-bad.service")
        text = open(unit).read().replace("ProtectSystem=", "ProtectSytem=")
        open(bad, "w").write(text.replace("/usr/sbin/portcullis -c", "/usr/sbin/portculis -c"))
        r = run(["systemd-analyze", "--root=" + root, "--man=no", "verify",
                 "/lib/systemd/system/portcullis-bad.service"], timeout=120)
        os.unlink(bad)
        check("ProtectSytem" in r.stderr and "portculis" in r.stderr,
              f"systemd-analyze verify did not object to a broken unit:\n{r.stdout}{r.stderr}")

    t.case("systemd-analyze verify accepts the installed unit without a warning "
           "(and objects to a broken copy); the unit has the sandbox settings", unit_verify)

    def unit_security():
        check("root" in state, "not installed")
        r = run(["systemd-analyze", "security", "--offline=yes", "--root=" + state["root"],
                 f"--threshold={EXPOSURE_THRESHOLD}", "--no-pager", "portcullis.service"],
                timeout=120)
        m = re.search(r"Overall exposure level for portcullis.service: ([0-9.]+)", r.stdout)
        check(m, f"no exposure level in:\n{r.stdout[-2000:]}{r.stderr}")
        print(f"#   systemd-analyze security: exposure {m.group(1)} of 10")
        check(r.returncode == 0, f"exposure {m.group(1)} is above {EXPOSURE_THRESHOLD / 10}")

    t.case(f"systemd-analyze security rates the unit at most {EXPOSURE_THRESHOLD / 10} exposure",
           unit_security)

    def sandbox():
        check("root" in state, "not installed")
        root = state["root"]
        os.chmod(work, 0o755)  # the confined daemon runs as an unprivileged user
        d = os.path.join(work, "sandbox")
        os.makedirs(d)
        r = run(["unshare", "-n", "/usr/bin/python3", os.path.join(HERE, "sandbox.py"), "--run",
                 "--unit", os.path.join(root, "lib/systemd/system/portcullis.service"),
                 "--exe", os.path.join(root, "usr/sbin/portcullis"),
                 "--policy", os.path.join(root, "etc/portcullis/policy.yaml"), "--work", d],
                timeout=300)
        for line in r.stdout.splitlines():
            print(f"#   {line}")
        check(r.returncode == 0, f"rc {r.returncode}:\n{r.stdout}{r.stderr[-4000:]}")

    t.case("under the unit's confinement (user 65534 with only CAP_NET_BIND_SERVICE, read-only /, "
           "its syscall filter and address families, MDWE) the packaged daemon binds port 80, "
           "forwards, refuses, reloads, rotates its audit file and drains", sandbox)

    t.case("logrotate's snippet rotates the packaged daemon's audit file and SIGUSR1 makes it "
           "start a new one, every record in exactly one file", logrotate_case, state, work)


# ---- logrotate against the packaged daemon ---------------------------------------------

FAKE_SYSTEMCTL = """#!/bin/sh
# Stands in for systemctl where no systemd runs: logs its arguments and forwards
# `kill --signal=SIG portcullis.service` to the daemon the test started.
echo "$*" >> "{log}"
case "$*" in
  "--quiet is-active portcullis.service") exit 0 ;;
  "kill --signal=SIGUSR1 portcullis.service") exec kill -USR1 {pid} ;;
esac
exit 3
"""


def logrotate_case(state, work):
    check("root" in state, "not installed")
    check(shutil.which("logrotate"), "logrotate is not installed (./dev deps)")
    root = state["root"]
    d = os.path.join(work, "rotate")
    logdir = os.path.join(d, "log")
    os.makedirs(logdir)
    audit = os.path.join(logdir, "audit.json")

    # The packaged policy, kept inside a private network namespace of its own: loopback
    # listeners, and a pinned resolver on loopback where nothing answers (a denied host is
    # refused before any lookup, so no query is needed).
    policy = yaml.safe_load(open(os.path.join(root, "etc/portcullis/policy.yaml")))
    policy["resolver"]["servers"] = ["127.0.0.1:53"]
    policy["audit"]["output"] = audit
    pfile = os.path.join(d, "policy.yaml")
    with open(pfile, "w") as f:
        yaml.safe_dump(policy, f, default_flow_style=False, sort_keys=False)
    exe = os.path.join(root, "usr/sbin/portcullis")
    r = run([exe, "--check", pfile])
    check(r.returncode == 0, f"the test's policy does not check: {r.stdout}{r.stderr}")

    errlog = open(os.path.join(d, "stderr.log"), "w")
    daemon = subprocess.Popen(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"',
                               exe, pfile], stdout=subprocess.DEVNULL, stderr=errlog,
                              start_new_session=True)
    try:
        def request(n):
            r = run(["nsenter", "-t", str(daemon.pid), "-n", "curl", "-sS", "-o", "/dev/null",
                     "-w", "%{http_connect}", "--max-time", "20", "-x", "http://127.0.0.1:3128",
                     f"https://denied-{n}.example/"], timeout=60)
            return r.stdout.strip()

        def records(path):
            try:
                return [l for l in open(path).read().splitlines() if l.strip()]
            except FileNotFoundError:
                return []

        # CONNECT refused: curl reports 403; the proxy answers once its listener is up.
        wait_for("the packaged daemon to answer", lambda: daemon.poll() is None and request(1) == "403")
        wait_for("the first audit record", lambda: len(records(audit)) >= 1)
        before = records(audit)

        conf = open(os.path.join(root, "etc/logrotate.d/portcullis")).read()
        check(conf.count("/var/log/portcullis/") == 1, "the snippet should name /var/log/portcullis once")
        bindir = os.path.join(d, "bin")
        os.makedirs(bindir)
        slog = os.path.join(d, "systemctl.log")
        with open(os.path.join(bindir, "systemctl"), "w") as f:
            f.write(FAKE_SYSTEMCTL.format(log=slog, pid=daemon.pid))
        os.chmod(os.path.join(bindir, "systemctl"), 0o755)
        cfile = os.path.join(d, "logrotate.conf")
        with open(cfile, "w") as f:
            f.write(conf.replace("/var/log/portcullis/", logdir + "/"))
        env = dict(os.environ, PATH=bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
        r = run(["logrotate", "--force", "--state", os.path.join(d, "state"), cfile], env=env)
        check(r.returncode == 0, f"logrotate: rc {r.returncode}: {r.stdout}{r.stderr}")
        check(os.path.exists(audit + ".1"), f"no {audit}.1 after logrotate: {os.listdir(logdir)}")
        calls = open(slog).read().splitlines() if os.path.exists(slog) else []
        check("kill --signal=SIGUSR1 portcullis.service" in calls,
              f"postrotate did not signal the service: systemctl calls {calls}")

        # After SIGUSR1 the daemon reopens: the next record starts a new audit.json.  The
        # signal is handled on the daemon's main loop; wait until it says so.
        wait_for("the daemon to take SIGUSR1", lambda: "SIGUSR1" in open(errlog.name).read())
        check(request(2) == "403", "second request not refused")
        wait_for("a new audit.json after SIGUSR1", lambda: len(records(audit)) >= 1)
        rotated, fresh = records(audit + ".1"), records(audit)
        check(rotated == before, f"the rotated file changed: {len(rotated)} records, was {len(before)}")
        check(len(fresh) == 1 and "denied-2.example" in fresh[0] and "denied-2" not in "".join(rotated),
              f"the new file holds {fresh}")
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                os.kill(daemon.pid, signal.SIGKILL)
                daemon.wait()
        errlog.close()
    check(daemon.returncode == 0, f"the daemon exited {daemon.returncode}:\n"
          + open(os.path.join(d, "stderr.log")).read()[-3000:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--srcdir", required=True)
    ap.add_argument("--group", choices=["legal", "man", "deb"], required=True)
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    src = os.path.abspath(args.srcdir)
    t = Runner()
    if args.group == "legal":
        group_legal(t, src)
    elif args.group == "man":
        group_man(t, src)
    else:
        work = tempfile.mkdtemp(prefix="portcullis-pkg-", dir=args.workdir)
        try:
            group_deb(t, src, work)
        finally:
            if args.keep:
                print(f"# scratch folder kept: {work}")
            else:
                shutil.rmtree(work, ignore_errors=True)
    print(f"{t.n - t.failed} passed, {t.failed} failed")
    sys.exit(1 if t.failed or t.n == 0 else 0)


if __name__ == "__main__":
    main()
