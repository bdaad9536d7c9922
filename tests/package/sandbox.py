#!/usr/bin/python3
"""Runs the packaged daemon under the confinement its systemd unit asks for, as closely
as it can be reproduced without systemd as PID 1 (the test machine has none), and checks
that it still does its job there.

What is reproduced, each taken from the shipped unit file rather than restated here:
  - DynamicUser / capabilities: an unprivileged user (65534) with no groups, and only
    CapabilityBoundingSet= / AmbientCapabilities= (setpriv); NoNewPrivileges;
  - ProtectSystem=strict: a mount namespace of its own where / is read-only and only
    the LogsDirectory= stand-in is writable;
  - SystemCallFilter= (every line, groups expanded with `systemd-analyze syscall-filter`)
    with SystemCallErrorNumber=, and RestrictAddressFamilies= on socket(2): a seccomp
    filter (python3-seccomp) installed just before exec;
  - MemoryDenyWriteExecute=: the kernel's PR_SET_MDWE.
Then, inside a private network namespace with dnsmasq as the pinned resolver and an
origin on 198.51.100.10:80, the confined daemon must: listen on port 80 (below 1024: the
one capability), forward an allowed plain-HTTP request (resolver and upstream sockets),
refuse a denied host, reload an edited policy (inotify or SIGHUP), reopen its audit file
on SIGUSR1, and drain and exit 0 on SIGTERM, logging no warning or error.

usage (as root, by test_package.py):
  sandbox.py --run --unit UNIT --exe PORTCULLIS --policy POLICY --work DIR
  sandbox.py --exec-filtered UNIT -- PROGRAM ARGS...   (internal: filter, then exec)
"""

import argparse
import ctypes
import errno
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import yaml

DEADLINE_S = 60
ORIGIN = "198.51.100.10"
UID = 65534
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
PR_SET_NO_NEW_PRIVS = 38


def unit_values(path, key):
    """Every value of key in the unit, in order (a key may repeat: SystemCallFilter)."""
    out = []
    for line in open(path):
        k, sep, v = line.strip().partition("=")
        if sep and k.strip() == key:
            out.append(v.strip())
    return out


def expand(group, seen=None):
    """The syscalls of a systemd syscall group, nested groups included."""
    seen = set() if seen is None else seen
    if group in seen:
        return set()
    seen.add(group)
    r = subprocess.run(["systemd-analyze", "syscall-filter", group], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, check=True)
    names = set()
    for line in r.stdout.splitlines()[1:]:
        w = line.strip()
        if not w or w.startswith("#"):
            continue
        names |= expand(w, seen) if w.startswith("@") else {w}
    return names


def allowed_syscalls(unit):
    """SystemCallFilter= lines as systemd combines them: the first allow list, minus every ~list."""
    allow = None
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names = set()
        for w in value.lstrip("~").split():
            names |= expand(w) if w.startswith("@") else {w}
        if deny:
            if allow is not None:
                allow -= names
        else:
            allow = names if allow is None else allow | names
    if allow is None:
        sys.exit(f"{unit}: no SystemCallFilter= allow list")
    return allow


def exec_filtered(unit, argv):
    """Install MDWE and the unit's seccomp filter, then exec argv (never returns)."""
    import seccomp  # python3-seccomp

    libc = ctypes.CDLL(None, use_errno=True)
    if unit_values(unit, "NoNewPrivileges") == ["yes"]:
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed")
    if unit_values(unit, "MemoryDenyWriteExecute") == ["yes"]:
        if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            sys.exit(f"prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())}")
    errname = (unit_values(unit, "SystemCallErrorNumber") or ["EPERM"])[0]
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(getattr(errno, errname)))
    families = unit_values(unit, "RestrictAddressFamilies")
    for name in sorted(allowed_syscalls(unit)):
        if name == "socket" and families:
            continue
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # a name this architecture does not have (e.g. the 32-bit variants)
    for fam in " ".join(families).split():
        f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, getattr(socket, fam)))
    f.load()
    os.execv(argv[0], argv)


# ---- the scenario (root, in `unshare -n -m`) --------------------------------------------

class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"origin says hello\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def wait_for(what, pred):
    end = time.monotonic() + DEADLINE_S
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise SystemExit(f"timed out after {DEADLINE_S} s waiting for {what}")
        time.sleep(0.05)


def curl(url):
    r = subprocess.run(["curl", "-sS", "--max-time", "20", "-x", "http://127.0.0.1:80",
                        "-w", "\n%{http_code}", url], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    body, _, code = r.stdout.rpartition("\n")
    return code, body


def run_scenario(args):
    links = subprocess.run(["ip", "-o", "link", "show"], stdout=subprocess.PIPE, text=True,
                           check=True).stdout
    ifaces = [l.split(":")[1].strip().split("@")[0] for l in links.splitlines()]
    if ifaces != ["lo"]:
        sys.exit(f"not in a private network namespace (interfaces {ifaces})")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", ORIGIN + "/32", "dev", "lo"], check=True)

    work = args.work
    os.chmod(work, 0o755)
    logdir = os.path.join(work, "log")
    etc = os.path.join(work, "etc")
    os.makedirs(logdir)
    os.makedirs(etc)
    os.chown(logdir, UID, UID)
    audit = os.path.join(logdir, "audit.json")
    policy = yaml.safe_load(open(args.policy))
    policy["listen"]["proxy"] = "127.0.0.1:80"
    policy["resolver"]["servers"] = ["127.0.0.1:53"]
    policy["audit"]["output"] = audit
    pfile = os.path.join(etc, "policy.yaml")
    with open(pfile, "w") as f:
        yaml.safe_dump(policy, f, sort_keys=False)
    me = os.path.join(work, "sandbox.py")
    shutil.copy2(os.path.abspath(__file__), me)
    os.chmod(me, 0o755)

    dns = subprocess.Popen(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                            "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
                            "--pid-file=", "--user=root", f"--address=/deb.debian.org/{ORIGIN}",
                            "--address=/#/"], stderr=subprocess.DEVNULL)
    origin = http.server.ThreadingHTTPServer((ORIGIN, 80), Origin)
    threading.Thread(target=origin.serve_forever, daemon=True).start()

    caps = " ".join(unit_values(args.unit, "AmbientCapabilities")).lower().replace("cap_", "")
    bound = " ".join(unit_values(args.unit, "CapabilityBoundingSet")).lower().replace("cap_", "")
    setpriv = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups",
               "--inh-caps=-all" + "".join(f",+{c}" for c in caps.split()),
               "--ambient-caps=-all" + "".join(f",+{c}" for c in caps.split()),
               "--bounding-set=-all" + "".join(f",+{c}" for c in bound.split())]
    inner = " ".join(setpriv) + f" /usr/bin/python3 {me} --exec-filtered {args.unit} -- " \
        f"{args.exe} -c {pfile}"
    # ProtectSystem=strict: / read-only in the daemon's own mount namespace, the log
    # directory (LogsDirectory=) the only writable place.
    shell = (f"mount --make-rprivate / && mount --bind {logdir} {logdir} && "
             f"mount -o remount,bind,ro / && exec {inner}")
    errpath = os.path.join(work, "stderr.log")
    err = open(errpath, "w")
    daemon = subprocess.Popen(["unshare", "-m", "sh", "-c", shell], stdout=subprocess.DEVNULL,
                              stderr=err)

    def log():
        return open(errpath).read()

    try:
        # Port 80 as user 65534: only CAP_NET_BIND_SERVICE makes that possible.
        def answered():
            if daemon.poll() is not None:
                raise SystemExit(f"FAILED: the confined daemon exited {daemon.returncode}:\n{log()}")
            code, body = curl("http://deb.debian.org/pkg")
            return (code, body) if code != "000" else None

        code, body = wait_for("the confined daemon to answer", answered)
        assert code == "200" and body.strip() == "origin says hello", (code, body, log())
        assert curl("http://denied.example/")[0] == "403", log()
        st = os.stat(audit)
        assert st.st_uid == UID, f"audit file owned by uid {st.st_uid}, not {UID}"

        # A policy edit takes effect (the file is watched; SIGHUP as well).
        policy["tiers"]["default"]["allow"] = []
        tmp = pfile + ".new"
        with open(tmp, "w") as f:
            yaml.safe_dump(policy, f, sort_keys=False)
        os.rename(tmp, pfile)
        child = wait_for("the daemon's pid", lambda: daemon_pid(daemon.pid))
        os.kill(child, signal.SIGHUP)
        wait_for("the reload", lambda: "policy reloaded" in log())
        # Workers adopt the new snapshot as they notice it: ask until the answer changes.
        wait_for("the reloaded policy to refuse deb.debian.org",
                 lambda: curl("http://deb.debian.org/pkg")[0] == "403")

        # SIGUSR1: the moved audit file is left alone, the next record starts a new one.
        os.rename(audit, audit + ".1")
        os.kill(child, signal.SIGUSR1)
        wait_for("SIGUSR1 to be handled", lambda: "SIGUSR1" in log())
        assert curl("http://denied-after-rotate.example/")[0] == "403"
        # (records still queued when the file moved may land in either file, never twice)
        wait_for("the record in a new audit file",
                 lambda: os.path.exists(audit) and "denied-after-rotate.example" in open(audit).read())
        assert "denied-after-rotate.example" not in open(audit + ".1").read()

        os.kill(child, signal.SIGTERM)
        rc = daemon.wait(timeout=DEADLINE_S)
        assert rc == 0, f"exit {rc}\n{log()}"
        bad = [l for l in log().splitlines()
               if json.loads(l).get("log.level") in ("warn", "error")]
        assert not bad, "warnings under the sandbox:\n" + "\n".join(bad)
        print(f"confined daemon: forwarded, refused, reloaded, rotated and drained; "
              f"{len(allowed_syscalls(args.unit))} syscalls allowed")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        dns.terminate()
        dns.wait()
        origin.shutdown()
        err.close()


def daemon_pid(unshare_pid):
    """The daemon: unshare exec's sh, which exec's setpriv, python, then portcullis."""
    try:
        exe = os.readlink(f"/proc/{unshare_pid}/exe")
    except OSError:
        return None
    return unshare_pid if exe.endswith("/portcullis") else None


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--exec-filtered":
        unit, sep, argv = sys.argv[2], sys.argv[3], sys.argv[4:]
        if sep != "--" or not argv:
            sys.exit(__doc__)
        exec_filtered(unit, argv)
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", required=True)
    ap.add_argument("--unit", required=True)
    ap.add_argument("--exe", required=True)
    ap.add_argument("--policy", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    try:
        run_scenario(args)
    except AssertionError as e:
        sys.exit(f"FAILED: {e}")


if __name__ == "__main__":
    main()
