"""Shared harness for the portcullis integration tests.

A scenario script does:

    import harness
    ctx = harness.start(__file__, v4=["198.51.100.10"], v6=["2001:db8::10"])
    with ctx:
        ... ctx.case("name") blocks ...
    # ctx.__exit__ prints the summary, cleans up and exits non-zero on failure

start() re-executes the script inside a private network and mount namespace
(unshare -n -m; unshare -r -n -m when not root), brings up lo, adds the
requested addresses to lo and refuses to run if any interface other than lo
exists.  No packet can leave the machine: the namespace has no route out.

Every process the harness starts gets PR_SET_PDEATHSIG=SIGKILL and is stopped
by PID on exit.  Every wait has a timeout.
"""
import argparse
import csv
import ctypes
import datetime
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
NETNS_MARK = "PORTCULLIS_IT_NETNS"

# Reason code -> HTTP status (the daemon's contract).
REASON_STATUS = {
    "unknown_source": 403, "host_not_allowed": 403, "port_not_allowed": 403,
    "blocked_address": 403, "resolved_to_blocked_range": 403, "invalid_host": 400,
    "dns_error": 502, "dns_nxdomain": 502, "dns_timeout": 504,
    "upstream_refused": 502, "upstream_unreachable": 502, "upstream_timeout": 504,
    "bad_request": 400, "headers_too_large": 431, "request_timeout": 408,
    "method_not_supported": 501, "version_not_supported": 505,
    "connection_limit": 503, "shutting_down": 503, "internal_error": 500,
    # refusals inside the tunnel's first flight: the client had already seen 200
    "tls_no_sni": 200, "tls_sni_mismatch": 200, "tls_sni_not_allowed": 200, "not_tls": 200,
    "tls_ech": 200, "tls_malformed": 200, "tls_hello_too_large": 200, "tls_hello_timeout": 200,
    "tls_server_malformed": 200, "tls_ja4_not_allowed": 200,
    # caps
    "source_connection_limit": 429, "source_upload_budget": 429, "audit_unavailable": 503,
    "source_table_full": 503, "response_timeout": 504,
    # client certificates on a TLS listener (identity)
    "client_cert_required": 403, "client_cert_untrusted": 403, "client_cert_expired": 403,
    "client_cert_revoked": 403, "client_cert_invalid": 403, "client_cert_no_match": 403,
}
CLOSE_REASONS = {"client_closed", "upstream_closed", "idle_timeout", "max_lifetime",
                 "drain_timeout", "client_error", "upstream_error",
                 "upload_cap", "download_cap", "source_upload_budget"}
# Reasons an audit-mode tier records in labels.would_deny instead of refusing.
WOULD_DENY_REASONS = {"host_not_allowed", "port_not_allowed", "tls_required", "tls_no_sni", "tls_sni_mismatch",
                      "tls_sni_not_allowed", "not_tls", "tls_ech", "tls_malformed", "tls_server_malformed",
                      "tls_ja4_not_allowed", "tls_hello_too_large", "tls_hello_timeout", "upload_cap", "download_cap",
                      "source_connection_limit", "source_upload_budget"}
# Plain-HTTP forwarding (issue 5): its refusal reasons, and how a forwarded request's record ends
# (allowed: the exchange completed; otherwise why it was cut).
REASON_STATUS.update({
    "not_absolute_form": 400, "https_target": 400, "host_mismatch": 400,
    "method_not_allowed": 403, "upgrade_not_allowed": 403, "bad_response": 502,
    "tls_required": 403,
})
# OIDC ID tokens in Proxy-Authorization (listen.proxy[i].auth, docs/oidc.md).
REASON_STATUS.update({
    "oidc_token_missing": 407, "oidc_bad_credentials": 403, "oidc_token_too_large": 403,
    "oidc_token_malformed": 403, "oidc_duplicate_claim": 403, "oidc_alg_none": 403,
    "oidc_alg_not_allowed": 403, "oidc_kid_unknown": 403, "oidc_kid_missing": 403,
    "oidc_signature_invalid": 403, "oidc_issuer_unknown": 403, "oidc_audience_mismatch": 403,
    "oidc_token_expired": 403, "oidc_token_not_yet_valid": 403, "oidc_not_ci_token": 403,
    "oidc_no_match": 403, "oidc_token_replayed": 403, "oidc_jwks_unavailable": 503,
})
HTTP_END_REASONS = CLOSE_REASONS | {"allowed", "bad_response"}
# Refusals before any HTTP could be spoken (a TLS listener's handshake): no status at all.
NO_STATUS_REFUSALS = {"tls_handshake_failed", "tls_handshake_timeout"}

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: UndefinedBehaviorSanitizer", "WARNING: ThreadSanitizer")


class CaseFailed(Exception):
    pass


class Prerequisite(Exception):
    """A tool the suite needs is missing: the case fails, never skips."""


def expect(cond, msg):
    if not cond:
        raise CaseFailed(msg)


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP reached the scenario (a runner's timeout, ^C): not an
    Exception, so no `except Exception` in a case swallows it; the context's exit stops
    every process the scenario started and prints the honest total."""


def _on_signal(signum, frame):
    raise Interrupted("stopped by signal %d" % signum)


# The watchdog: one small process per scenario that holds the PIDs of everything the
# scenario spawned and SIGKILLs them when the scenario's end of its pipe closes, which
# happens however the scenario ends. PR_SET_PDEATHSIG alone is not enough: the kernel
# clears it when a child changes its credentials or capabilities, as dnsmasq does.
WATCHDOG = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "pids = set()\n"
    "for line in sys.stdin:\n"
    "    op, pid = line[0], int(line[1:])\n"
    "    (pids.add if op == '+' else pids.discard)(pid)\n"
    "for pid in pids:\n"
    "    try:\n"
    "        os.kill(pid, signal.SIGKILL)\n"
    "    except OSError:\n"
    "        pass\n")


# A process that copies a FIFO to a file until EOF (an audit pipe's reader).
FIFO_READER = ("import os,sys\n"
               "fd=os.open(sys.argv[1],os.O_RDONLY)\n"
               "out=os.open(sys.argv[2],os.O_WRONLY|os.O_CREAT|os.O_APPEND,0o644)\n"
               "while True:\n"
               "    d=os.read(fd,65536)\n"
               "    if not d: break\n"
               "    while d:\n"
               "        d=d[os.write(out,d):]\n")


def die_with_me():
    """preexec_fn for every child: it dies with this process, however that ends."""
    parent = os.getpid()
    return lambda: _pdeathsig(parent)


def _pdeathsig(parent):
    """In a spawned child: die with the scenario, however it ends (SIGKILL included)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:             # the scenario died before prctl took effect
        os._exit(1)
    os.setpgrp()


def need(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise Prerequisite("prerequisite missing: %s (CI installs it; install it to run this test)" % path)
    return path


# --------------------------------------------------------------------------
# Namespace
# --------------------------------------------------------------------------

def _enter_netns():
    if os.environ.get(NETNS_MARK) == "1":
        return
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    if not os.path.exists(unshare):
        print("not ok - setup: unshare(1) not found; the suite must run in a private network namespace")
        print("0 passed, 1 failed")
        sys.exit(1)
    env = dict(os.environ)
    env[NETNS_MARK] = "1"
    flags = ["-n", "-m"] if os.geteuid() == 0 else ["-r", "-n", "-m"]
    argv = [unshare] + flags + ["--", PY, os.path.abspath(sys.argv[0])] + sys.argv[1:]
    sys.stdout.flush()
    os.execve(unshare, argv, env)


def _ip(*args):
    subprocess.run(["ip"] + list(args), check=True, timeout=10,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _setup_lo(v4, v6):
    # /sys/class/net shows the netns sysfs was mounted in; ask the kernel instead.
    ifaces = sorted(name for _, name in socket.if_nameindex())
    if ifaces != ["lo"]:
        raise RuntimeError("refusing to run: network namespace has interfaces %s besides lo" % ifaces)
    _ip("link", "set", "lo", "up")
    for a in v4:
        _ip("addr", "add", a + "/32", "dev", "lo")
    for a in v6:
        _ip("-6", "addr", "add", a + "/128", "dev", "lo", "nodad")


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------

class _Case:
    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.ctx.ok(self.name)
        elif issubclass(et, (CaseFailed, Prerequisite)):
            self.ctx.fail(self.name, str(ev))
        elif issubclass(et, Exception):
            last = traceback.extract_tb(tb)[-1]
            self.ctx.fail(self.name, "%s: %s (at %s:%d)" % (et.__name__, ev,
                                                           os.path.basename(last.filename), last.lineno))
        else:
            return False
        return True


# --------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------

class Context:
    def __init__(self, args, script):
        self.args = args
        self.script = os.path.basename(script)
        self.passed = 0
        self.failed = 0
        self.procs = []       # (name, Popen) in start order
        self.cleanups = []    # callables, run in reverse
        self.tmp = tempfile.mkdtemp(prefix="portcullis-it-")
        self.binary = args.portcullis
        self.srcdir = args.srcdir
        self.ecs = EcsFields(args.fields)
        self._certs = None
        self.proxies = []
        self._watchdog = None

    # results
    def ok(self, name):
        self.passed += 1
        print("ok - %s" % name, flush=True)

    def fail(self, name, why):
        self.failed += 1
        why = " ".join(str(why).split())
        print("not ok - %s: %s" % (name, why), flush=True)

    def case(self, name):
        return _Case(self, name)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    # processes
    def spawn(self, name, argv, stdout=None, stderr=None, **kw):
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                             stdout=stdout or subprocess.DEVNULL,
                             stderr=stderr or subprocess.DEVNULL,
                             preexec_fn=die_with_me(), **kw)
        self.procs.append((name, p))
        self._watch(p.pid, True)
        return p

    def _watch(self, pid, add):
        if self._watchdog is None:
            self._watchdog = subprocess.Popen([PY, "-c", WATCHDOG], stdin=subprocess.PIPE,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              preexec_fn=os.setpgrp)
        try:
            self._watchdog.stdin.write(b"%s%d\n" % (b"+" if add else b"-", pid))
            self._watchdog.stdin.flush()
        except OSError:
            pass

    def stop_proc(self, p, sig=signal.SIGTERM, timeout=5.0):
        """Signal one of our processes by PID and reap it; SIGKILL after timeout."""
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=5)
        if self._watchdog is not None:
            self._watch(p.pid, False)   # reaped: its PID may be reused
        return p.returncode

    def certs(self):
        if self._certs is None:
            self._certs = make_certs(self.path("certs"))
        return self._certs

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)   # a second signal must not cut the clean-up short
        if et is not None and issubclass(et, Interrupted):
            self.fail("scenario", "%s; every process it started is stopped" % ev)
        elif et is not None and not issubclass(et, SystemExit):
            self.fail("scenario", "unexpected %s: %s" % (et.__name__, ev))
            traceback.print_exception(et, ev, tb, file=sys.stdout)
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                print("# cleanup error: %s" % e)
        for _, p in reversed(self.procs):
            try:
                self.stop_proc(p, timeout=3)
            except Exception:  # noqa: BLE001
                pass
        if self._watchdog is not None:
            self._watchdog.stdin.close()
            self._watchdog.wait(timeout=5)
        if self.failed:
            for px in self.proxies:
                tail = px.stderr_text()[-3000:]
                if tail:
                    print("# --- %s stderr (tail) ---" % px.name)
                    for line in tail.splitlines():
                        print("# " + line)
        if self.args.keep:
            print("# kept %s" % self.tmp)
        else:
            for _ in range(5):
                try:
                    shutil.rmtree(self.tmp)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    err = e
                    time.sleep(0.2)
            else:
                print("# could not remove %s: %s" % (self.tmp, err))
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(1 if self.failed or self.passed == 0 else 0)

    # common end-of-scenario checks
    def final_checks(self, audits, forbidden_text=()):
        """Stop every proxy (SIGTERM -> exit 0), then check every audit file."""
        for px in list(self.proxies):
            if px.proc is None:
                continue
            if px.proc.poll() is None:
                with self.case("%s: SIGTERM -> exit 0 within 5s, no sanitizer report" % px.name):
                    t0 = time.monotonic()
                    rc = px.stop(timeout=5)
                    expect(rc == 0, "exit status %s %.1fs after SIGTERM, want 0" % (rc, time.monotonic() - t0))
                    rep = px.sanitizer_report()
                    expect(not rep, "sanitizer report on stderr: %s" % rep)
            else:
                # already stopped by the scenario, which checked its exit status
                with self.case("%s: no sanitizer report" % px.name):
                    rep = px.sanitizer_report()
                    expect(not rep, "sanitizer report on stderr: %s" % rep)
        for px in list(self.proxies):
            if px.proc is None:
                continue
            with self.case("%s: operational log on stderr is JSON lines" % px.name):
                bad = []
                for ln in px.stderr_text().splitlines():
                    if not ln.strip():
                        continue
                    try:
                        ok = isinstance(json.loads(ln), dict)
                    except ValueError:
                        ok = False
                    if not ok:
                        bad.append(ln)
                expect(not bad, "%d non-JSON stderr lines, e.g. %r" % (len(bad), bad[:2]))
        for a in audits:
            schema, semantic = a.validate(forbidden_text)
            with self.case("audit %s: every record is valid ECS, whole lines, no secrets" % a.name):
                expect(a.records(), "audit file %s holds no record" % a.path)
                expect(not schema, "; ".join(schema[:8]))
            with self.case("audit %s: denied records carry a refusal reason and its status, "
                           "tunnel records a close reason" % a.name):
                expect(not semantic, "%d problems: %s" % (len(semantic), "; ".join(semantic[:4])))


def start(script, v4=(), v6=()):
    ap = argparse.ArgumentParser()
    ap.add_argument("--portcullis", default=os.environ.get("PORTCULLIS", ""))
    ap.add_argument("--srcdir", default=os.path.normpath(os.path.join(HERE, "..", "..")))
    ap.add_argument("--fields", default=os.path.join(HERE, "ecs", "fields.csv"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    _enter_netns()
    try:
        _setup_lo(list(v4), list(v6))
    except Exception as e:  # noqa: BLE001
        print("not ok - setup: namespace: %s" % e)
        print("0 passed, 1 failed")
        sys.exit(1)
    if not args.portcullis or not os.access(args.portcullis, os.X_OK):
        print("not ok - setup: portcullis binary not found (--portcullis %r)" % args.portcullis)
        print("0 passed, 1 failed")
        sys.exit(1)
    args.portcullis = os.path.abspath(args.portcullis)
    print("# %s in a private netns, pid %d" % (os.path.basename(script), os.getpid()), flush=True)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)
    return Context(args, script)


def read_jsonl(path):
    """The JSON lines another process is still appending to: complete lines only.  A write
    that crosses a page boundary can be seen half done (the file's size moves page by page),
    so a last line without its newline is left for the next read, never parsed."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    end = data.rfind(b"\n")
    return [json.loads(ln) for ln in data[:end + 1].split(b"\n") if ln.strip()]


def wait_until(fn, timeout, interval=0.05):
    """Poll fn() until it returns a truthy value or timeout; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def port_open(host, port, timeout=0.2):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------------------
# Certificates (made at run time with the openssl CLI; no key is committed)
# --------------------------------------------------------------------------

LEAF_DNS = ["allowed.example", "*.wild.example", "other.example", "v6only.example",
            "good.example", "mixed.example", "localhost"]
LEAF_IPS = ["198.51.100.10", "2001:db8::10"]


MKCERTS = os.path.normpath(os.path.join(HERE, "..", "..", "certs", "mkcerts"))


def mkcerts(*args):
    """Run certs/mkcerts (the project's one certificate maker, openssl CLI) with args."""
    need(shutil.which("openssl") or "/usr/bin/openssl")
    p = subprocess.run(["/bin/sh", need(MKCERTS)] + [str(a) for a in args], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("mkcerts %s: %s" % (" ".join(map(str, args)),
                                               p.stderr.decode("utf-8", "replace")[-400:]))


def make_certs(d):
    """A test CA in d and one server certificate for every name and address the upstream
    servers answer for: {"ca", "ca_key", "cert" (leaf then CA), "key", "dir"}."""
    os.makedirs(d, exist_ok=True)
    mkcerts("ca", d, "--cn", "portcullis integration test CA")
    args = ["server", d, "leaf", "--cn", "allowed.example"]
    for n in LEAF_DNS:
        args += ["--dns", n]
    for i in LEAF_IPS:
        args += ["--ip", i]
    mkcerts(*args)
    return {"ca": os.path.join(d, "ca.pem"), "ca_key": os.path.join(d, "ca.key"),
            "cert": os.path.join(d, "leaf.pem"), "key": os.path.join(d, "leaf.key"), "dir": d}


# --------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------

def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def to_yaml(obj, indent=0):
    """A small block-style YAML emitter for dicts / lists / scalars."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list) and v and isinstance(v[0], dict):
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list):
                out.append("%s%s: [%s]" % (pad, k, ", ".join(_yaml_scalar(x) for x in v)))
            elif isinstance(v, dict):
                out.append("%s%s: {}" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, _yaml_scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            body = to_yaml(item, indent + 1).splitlines()
            first = body[0].strip()
            out.append("%s- %s" % (pad, first))
            out.extend(body[1:])
    return "\n".join(out)


def _merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            _merge(a[k], v)
        else:
            a[k] = v
    return a


def base_policy(audit_path, tiers, proxy_port=3128, admin_port=9090, **over):
    pol = {
        "version": 1,
        "listen": {"proxy": "127.0.0.1:%d" % proxy_port, "admin": "127.0.0.1:%d" % admin_port,
                   "workers": 2},
        "resolver": {"servers": ["127.0.0.53:53"], "timeout": "1s", "attempts": 1},
        "audit": {"output": audit_path},
        "limits": {"header_timeout": "2s"},
        "timeouts": {"connect": "1s", "idle": "5m", "drain": "3s"},
        "identity": {"unknown_source": "deny"},
        "tiers": tiers,
    }
    return _merge(pol, over)


# --------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------

def daemon_env():
    env = {k: v for k, v in os.environ.items()
           if not k.lower().endswith("_proxy") and k != NETNS_MARK}
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=86")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=87")
    return env


class Proxy:
    """One portcullis process with its own policy, audit file and logs."""

    def __init__(self, ctx, name, tiers, proxy_port=3128, admin_port=9090, **over):
        self.ctx = ctx
        self.name = name
        self.port = proxy_port
        self.audit_path = ctx.path("%s-audit.log" % name)
        self.policy_path = ctx.path("%s-policy.yaml" % name)
        self.stderr_path = ctx.path("%s-stderr.log" % name)
        self.stdout_path = ctx.path("%s-stdout.log" % name)
        self.policy = base_policy(self.audit_path, tiers, proxy_port, admin_port, **over)
        with open(self.policy_path, "w") as f:
            f.write(to_yaml(self.policy) + "\n")
        self.audit = Audit(self.audit_path, ctx.ecs, name)
        self.proc = None
        self.start_error = None
        ctx.proxies.append(self)

    def start(self, timeout=10.0, prefix=()):
        """Start and wait until the proxy port accepts (<= timeout).  Returns self;
        on failure start_error says why and every later request fails on its own.
        prefix: a command the daemon runs under (e.g. prlimit), which must exec it."""
        out = open(self.stdout_path, "ab")
        err = open(self.stderr_path, "ab")
        self.proc = self.ctx.spawn(self.name, list(prefix) + [self.ctx.binary, "-c", self.policy_path],
                                   stdout=out, stderr=err, env=daemon_env())
        out.close()
        err.close()
        ok = wait_until(lambda: self.proc.poll() is not None or port_open("127.0.0.1", self.port),
                        timeout)
        if self.proc.poll() is not None:
            self.start_error = "exited with %s at start-up: %s" % (
                self.proc.returncode, self.stderr_text()[-400:])
        elif not ok:
            self.start_error = "proxy port 127.0.0.1:%d not accepting after %.0fs" % (self.port, timeout)
        if self.start_error:
            print("# %s: %s" % (self.name, self.start_error), flush=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc is None:
            return None
        return self.ctx.stop_proc(self.proc, sig, timeout)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def sanitizer_report(self):
        t = self.stderr_text()
        for m in SANITIZER_MARKERS:
            i = t.find(m)
            if i >= 0:
                return t[max(0, i - 200):i + 600]
        return ""


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------

class Reply:
    def __init__(self):
        self.raw = b""
        self.status = None
        self.status_line = ""
        self.headers = []
        self.body = b""
        self.closed = False
        self.leftover = b""
        self.sock = None
        self.src_port = None
        self.elapsed = None
        self.error = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def headers_named(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def proxy_status(self):
        v = self.header("Proxy-Status") or ""
        m = re.search(r'details="([^"]*)"', v)
        e = re.search(r'error=([A-Za-z0-9_.-]+)', v)
        return {"raw": v, "details": m.group(1) if m else None, "error": e.group(1) if e else None}

    @property
    def reason(self):
        return self.proxy_status["details"]

    def describe(self):
        if self.error:
            return self.error
        return "got %r (Proxy-Status %r)" % (self.status_line or self.raw[:80], self.header("Proxy-Status"))

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    m = re.match(r"HTTP/\d\.\d (\d{3})(?: (.*))?$", status_line)
    hdrs = []
    for ln in lines[1:]:
        if not ln:
            continue
        k, _, v = ln.partition(":")
        hdrs.append((k.strip(), v.strip()))
    return status_line, (int(m.group(1)) if m else None), hdrs


_NEXT_PORT = [11000]


def next_src_port():
    """Source ports are handed out from a counter below the ephemeral range, so an
    audit record's source.port names exactly one client connection of a scenario."""
    _NEXT_PORT[0] += 1
    if _NEXT_PORT[0] > 32000:
        _NEXT_PORT[0] = 11001
    return _NEXT_PORT[0]


def bound_socket(src, family=None):
    """A TCP socket bound to (src, a fresh port from next_src_port()); IPv6 when src is."""
    if family is None:
        family = socket.AF_INET6 if ":" in src else socket.AF_INET
    for _ in range(200):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((src, next_src_port()))
            return s
        except OSError:
            s.close()
    raise RuntimeError("no free source port on %s" % src)


def send_raw(data, src="127.0.0.2", proxy=("127.0.0.1", 3128), timeout=8.0, chunks=None,
             chunk_delay=0.0):
    """Open a connection from src, send data (or chunks with a delay), read the reply head.
    On 200 the socket stays open in reply.sock; otherwise the body is read to EOF.
    An IPv6 src reaches a proxy on 127.0.0.1 at [::1] (same port) instead."""
    if ":" in src and proxy[0] == "127.0.0.1":
        proxy = ("::1", proxy[1])
    r = Reply()
    t0 = time.monotonic()
    s = bound_socket(src)
    s.settimeout(timeout)
    try:
        r.src_port = s.getsockname()[1]
        s.connect(proxy)
    except OSError as e:
        s.close()
        r.error = "connect to proxy %s:%d from %s failed: %s" % (proxy[0], proxy[1], src, e)
        return r
    deadline = t0 + timeout
    try:
        if chunks is None:
            s.sendall(data)
        else:
            for c in chunks:
                s.sendall(c)
                time.sleep(chunk_delay)
    except OSError as e:
        r.error = "send failed after %.2fs: %s" % (time.monotonic() - t0, e)
    buf = b""
    try:
        while b"\r\n\r\n" not in buf and len(buf) < 65536:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            d = s.recv(65536)
            if not d:
                r.closed = True
                break
            buf += d
    except socket.timeout:
        r.error = (r.error or "") + "no complete reply head within %.1fs (got %r)" % (timeout, buf[:120])
    except OSError as e:
        r.error = (r.error or "") + "recv: %s (got %r)" % (e, buf[:120])
        r.closed = True
    r.raw = buf
    i = buf.find(b"\r\n\r\n")
    if i >= 0:
        r.error = None
        r.status_line, r.status, r.headers = _parse_head(buf[:i])
        rest = buf[i + 4:]
        if r.status == 200:
            r.leftover = rest
            r.sock = s
            s.settimeout(timeout)
            r.elapsed = time.monotonic() - t0
            return r
        body = rest
        if not r.closed:
            try:
                while len(body) < 1 << 20:
                    s.settimeout(max(0.05, deadline - time.monotonic()))
                    d = s.recv(65536)
                    if not d:
                        r.closed = True
                        break
                    body += d
            except socket.timeout:
                pass
            except OSError:
                r.closed = True
        r.body = body
    elif not r.error:
        r.error = "connection closed without a reply head (got %r)" % buf[:120]
    r.elapsed = time.monotonic() - t0
    s.close()
    return r


def connect(target, src="127.0.0.2", proxy_port=3128, headers=(), version="HTTP/1.1", timeout=8.0,
            host_header=True):
    head = "CONNECT %s %s\r\n" % (target, version)
    if host_header:
        head += "Host: %s\r\n" % target
    for h in headers:
        head += h + "\r\n"
    head += "\r\n"
    return send_raw(head.encode("latin-1"), src=src, proxy=("127.0.0.1", proxy_port), timeout=timeout)


def expect_refusal(reply, status, reasons, audit=None, ruleset=None):
    """A refusal: the status, a Proxy-Status naming one of reasons, Connection: close,
    a short body, the connection closed; and, when audit is given, exactly one
    denied audit record for this connection with that reason and status."""
    if isinstance(reasons, str):
        reasons = (reasons,)
    expect(reply.status is not None, reply.describe())
    expect(reply.status == status and reply.reason in reasons,
           "want %d %s, %s" % (status, "/".join(reasons), reply.describe()))
    ps = reply.proxy_status
    expect(ps["raw"].startswith("portcullis") and ps["error"],
           "Proxy-Status %r lacks 'portcullis; error=...'" % ps["raw"])
    conn = (reply.header("Connection") or "").lower()
    expect("close" in conn, "no 'Connection: close' header (headers %r)" % reply.headers)
    expect(0 < len(reply.body) <= 4096, "want a short text body, got %d bytes" % len(reply.body))
    cl = reply.header("Content-Length")
    if cl is not None:
        expect(cl.isdigit() and int(cl) == len(reply.body),
               "Content-Length %s but body has %d bytes" % (cl, len(reply.body)))
    expect(reply.closed, "proxy did not close the connection after the refusal")
    if audit is not None:
        rec = audit.wait_one(lambda r: get(r, "source.port") == reply.src_port, timeout=5)
        expect(rec is not None, "no audit record with source.port %s" % reply.src_port)
        check_denied_record(rec, reply.reason, status)
        if ruleset is not None:
            expect(get(rec, "rule.ruleset") == ruleset,
                   "audit rule.ruleset %r, want %r" % (get(rec, "rule.ruleset"), ruleset))
        return rec
    return None


def any_refusal(reply, allowed, audit=None):
    """reply must be one of allowed [(status, reason), ...] with the refusal shape."""
    expect(reply.status is not None, reply.describe())
    pairs = [(s, r) for s, r in allowed if s == reply.status and r == reply.reason]
    expect(pairs, "want one of %s, %s" % (
        ", ".join("%d %s" % p for p in allowed), reply.describe()))
    return expect_refusal(reply, reply.status, reply.reason, audit=audit)


def recv_exact(sock, n, timeout=10.0):
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        d = sock.recv(n - len(buf))
        if not d:
            break
        buf += d
    return buf


def recv_line(sock, leftover=b"", timeout=10.0, limit=4096):
    sock.settimeout(timeout)
    buf = leftover
    while b"\n" not in buf and len(buf) < limit:
        d = sock.recv(4096)
        if not d:
            break
        buf += d
    return buf


def recv_to_eof(sock, timeout=10.0, limit=1 << 30):
    sock.settimeout(timeout)
    h = hashlib.sha256()
    n = 0
    head = b""
    while n < limit:
        d = sock.recv(1 << 20)
        if not d:
            break
        h.update(d)
        n += len(d)
        if len(head) < 4096:
            head += d[:4096 - len(head)]
    return n, h.hexdigest(), head


def say(target, text="ping", src="127.0.0.2", proxy_port=3128):
    """CONNECT to a multi-mode upstream, send 'SAY text', return (reply, answer or None)."""
    r = connect(target, src=src, proxy_port=proxy_port)
    if r.status != 200:
        return r, None
    try:
        r.sock.sendall(b"SAY %s\n" % text.encode())
        ans = recv_line(r.sock, r.leftover)
    except OSError as e:
        ans = ("error: %s" % e).encode()
    r.close()
    return r, ans


def expect_served(target="allowed.example:8080", src="127.0.0.2", proxy_port=3128, what=""):
    token = "alive-%d" % int(time.monotonic() * 1000)
    r, ans = say(target, token, src, proxy_port)
    expect(r.status == 200, "%sCONNECT %s not served: %s" % (what, target, r.describe()))
    expect(ans == (token + "\n").encode(), "%stunnel answer %r, want %r" % (what, ans, token))


def curl(args, timeout=20):
    exe = need(shutil.which("curl") or "/usr/bin/curl")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    port = next_src_port()
    argv = [exe, "-q", "-sS", "--max-time", str(timeout - 5), "--local-port", "%d-%d" % (port, port + 20),
            "-w", "\n%{http_code} %{http_connect} %{local_port}"] + list(args)
    _NEXT_PORT[0] += 20
    p = subprocess.run(argv, capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
                       preexec_fn=die_with_me())
    out = p.stdout.decode("utf-8", "replace")
    body, _, tail = out.rpartition("\n")
    parts = tail.split()
    code, connect_code, lport = (parts + ["", "", ""])[:3]
    return {"rc": p.returncode, "body": body, "code": code, "connect": connect_code,
            "local_port": int(lport) if lport.isdigit() else None,
            "stderr": p.stderr.decode("utf-8", "replace").strip()}


# --------------------------------------------------------------------------
# Inside the tunnel: paced writes, waiting for the cut
# --------------------------------------------------------------------------

def send_paced(sock, data, piece=1, delay=0.004, limit=30.0):
    """Write data piece bytes per send() with delay between them (TCP_NODELAY, so each
    write is its own segment).  Bounded: raises CaseFailed after limit seconds."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t0 = time.monotonic()
    for off in range(0, len(data), piece):
        sock.sendall(data[off:off + piece])
        if delay:
            time.sleep(delay)
        expect(time.monotonic() - t0 < limit, "paced write of %d bytes took over %.0fs" % (len(data), limit))


def await_close(sock, timeout=5.0):
    """Read until the peer closes.  Returns {"end": "eof" | "reset" | None (still open
    after timeout), "got": bytes received, "elapsed": seconds}."""
    t0 = time.monotonic()
    got = b""
    end = None
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            break
        sock.settimeout(min(left, 0.5))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            end = "reset"
            break
        except OSError as e:
            end = "reset" if e.errno in (104, 32) else "error: %s" % e
            break
        if not d:
            end = "eof"
            break
        got += d
    return {"end": end, "got": got, "elapsed": time.monotonic() - t0}


def send_until_cut(sock, data, chunk=16384, timeout=10.0):
    """Write data in chunks until done or the peer cuts us off.  Returns bytes written
    (accepted by the kernel) and whether a write failed."""
    sent = 0
    sock.settimeout(timeout)
    try:
        for off in range(0, len(data), chunk):
            sock.sendall(data[off:off + chunk])
            sent = off + len(data[off:off + chunk])
    except OSError:
        return sent, True
    return sent, False


# --------------------------------------------------------------------------
# TLS ClientHellos: crafted (with an OpenSSL self-check), parsed, re-framed;
# and a MemoryBIO TLS client, so a real handshake can be fed through a raw
# tunnel with segmentation of the test's choosing.
# --------------------------------------------------------------------------

EXT_SNI, EXT_GROUPS, EXT_SIGALGS, EXT_ALPN, EXT_PADDING = 0, 10, 13, 16, 21
EXT_VERSIONS, EXT_PSK_MODES, EXT_KEY_SHARE = 43, 45, 51
EXT_ECH, EXT_ESNI = 0xfe0d, 0xffce
TLS_MAX_FRAGMENT = 16384


def _v8(b):
    return bytes([len(b)]) + b


def _v16(b):
    return struct.pack(">H", len(b)) + b


def tls_ext(etype, body):
    return struct.pack(">H", etype) + _v16(body)


def ext_sni(name):
    n = name.encode("latin-1") if isinstance(name, str) else name
    return tls_ext(EXT_SNI, _v16(b"\x00" + _v16(n)))


def ext_alpn(protos):
    return tls_ext(EXT_ALPN, _v16(b"".join(_v8(p.encode() if isinstance(p, str) else p) for p in protos)))


def ext_versions(versions):
    return tls_ext(EXT_VERSIONS, _v8(b"".join(struct.pack(">H", v) for v in versions)))


def ext_ech():
    """encrypted_client_hello (draft-ietf-tls-esni-18+), outer form, GREASE-like content:
    type outer(0), HPKE suite (HKDF-SHA256, AES-128-GCM), config_id, enc, payload."""
    return tls_ext(EXT_ECH, b"\x00" + struct.pack(">HH", 1, 1) + os.urandom(1) +
                   _v16(os.urandom(32)) + _v16(os.urandom(144)))


def ext_esni():
    """Draft ESNI (0xffce, draft-ietf-tls-esni-02): suite, key share, digest, encrypted SNI."""
    return tls_ext(EXT_ESNI, struct.pack(">H", 0x1301) + struct.pack(">H", 0x001d) + _v16(os.urandom(32)) +
                   _v16(os.urandom(32)) + _v16(os.urandom(276)))


def ext_padding(n):
    return tls_ext(EXT_PADDING, b"\x00" * n)


def client_hello(sni="allowed.example", alpn=None, versions=(0x0304, 0x0303), ech=False, esni=False,
                 padding=0, extra=(), legacy_version=0x0303, hs_type=1, share=None):
    """One ClientHello handshake message (4-byte header included).  With versions it is
    a TLS 1.3 hello (supported_versions, an x25519 key share, or share=(group, key)); without,
    TLS 1.2 only.
    Cipher suites and groups fit the harness's P-256 certificate, so an OpenSSL server
    answers it with a ServerHello (see openssl_answers)."""
    ciphers = [0x1301, 0x1302, 0x1303] if versions else []
    ciphers += [0xc02b, 0xc02f, 0xc02c, 0xc030]
    body = struct.pack(">H", legacy_version) + os.urandom(32) + _v8(os.urandom(32))
    body += _v16(b"".join(struct.pack(">H", c) for c in ciphers)) + _v8(b"\x00")
    exts = []
    if sni is not None:
        exts.append(ext_sni(sni))
    exts.append(tls_ext(EXT_GROUPS, _v16(struct.pack(">HH", 0x001d, 0x0017))))
    exts.append(tls_ext(EXT_SIGALGS, _v16(struct.pack(">HHHH", 0x0403, 0x0804, 0x0401, 0x0503))))
    exts.append(tls_ext(11, _v8(b"\x00")))  # ec_point_formats: uncompressed
    if versions:
        exts.append(ext_versions(versions))
        exts.append(tls_ext(EXT_PSK_MODES, _v8(b"\x01")))
        group, key = share or (0x001d, os.urandom(32))
        exts.append(tls_ext(EXT_KEY_SHARE, _v16(struct.pack(">H", group) + _v16(key))))
    if alpn:
        exts.append(ext_alpn(alpn))
    if ech:
        exts.append(ext_ech())
    if esni:
        exts.append(ext_esni())
    exts.extend(extra)
    if padding:
        exts.append(ext_padding(padding))
    body += _v16(b"".join(exts))
    return bytes([hs_type]) + struct.pack(">I", len(body))[1:] + body


def p256_share():
    """A valid P-256 key share (uncompressed point) made with the openssl CLI: a second hello
    with it gets past an OpenSSL server's key-share check after a retry request."""
    openssl = need(shutil.which("openssl") or "/usr/bin/openssl")
    key = subprocess.run([openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                         check=True, capture_output=True, timeout=20).stdout
    der = subprocess.run([openssl, "ec", "-pubout", "-outform", "DER"], input=key, check=True,
                         capture_output=True, timeout=20).stdout
    return (0x0017, der[-65:])


def tls_records(msg, cuts=(), record_version=0x0301, content_type=0x16):
    """Frame a handshake message into TLS records: a new record at every offset in cuts,
    and whenever a fragment would exceed 2^14 bytes."""
    pos = sorted(set(c for c in cuts if 0 < c < len(msg)))
    bounds = [0]
    for c in pos + [len(msg)]:
        while c - bounds[-1] > TLS_MAX_FRAGMENT:
            bounds.append(bounds[-1] + TLS_MAX_FRAGMENT)
        bounds.append(c)
    out = b""
    for a, b in zip(bounds, bounds[1:]):
        out += struct.pack(">BHH", content_type, record_version, b - a) + msg[a:b]
    return out


def parse_client_hello(stream):
    """Reassemble and parse the ClientHello at the start of stream (strict, like a
    server would).  Returns a dict: records [(offset, length)], consumed, msg, version,
    sni, alpn [..], versions [..], ext_types [..], exts {type: (offset in msg, data)}.
    Raises ValueError for anything that is not one complete, well-formed ClientHello."""
    off = 0
    msg = b""
    recs = []
    while True:
        if len(stream) - off < 5:
            raise ValueError("truncated record header at %d" % off)
        ctype, rver, rlen = struct.unpack(">BHH", stream[off:off + 5])
        if ctype != 0x16 or rver >> 8 != 3:
            raise ValueError("record at %d is not TLS handshake (%02x %04x)" % (off, ctype, rver))
        if rlen == 0 or rlen > TLS_MAX_FRAGMENT:
            raise ValueError("record at %d has length %d" % (off, rlen))
        if len(stream) - off - 5 < rlen:
            raise ValueError("record at %d truncated (%d of %d bytes)" % (off, len(stream) - off - 5, rlen))
        recs.append((off, rlen))
        msg += stream[off + 5:off + 5 + rlen]
        off += 5 + rlen
        if len(msg) >= 4:
            need_len = 4 + int.from_bytes(msg[1:4], "big")
            if len(msg) >= need_len:
                if len(msg) != need_len:
                    raise ValueError("%d bytes after the hello inside its last record" % (len(msg) - need_len))
                break
    if msg[0] != 1:
        raise ValueError("handshake type %d, not client_hello" % msg[0])
    p = 4
    ver = struct.unpack(">H", msg[p:p + 2])[0]
    p += 2 + 32
    p += 1 + msg[p]
    p += 2 + struct.unpack(">H", msg[p:p + 2])[0]
    p += 1 + msg[p]
    if p == len(msg):
        exts_end = p
    else:
        exts_end = p + 2 + struct.unpack(">H", msg[p:p + 2])[0]
        p += 2
    if exts_end != len(msg):
        raise ValueError("extensions end at %d, message at %d" % (exts_end, len(msg)))
    out = {"records": recs, "consumed": off, "msg": msg, "version": ver, "sni": None, "alpn": [],
           "versions": [], "ext_types": [], "exts": {}}
    while p < exts_end:
        et, el = struct.unpack(">HH", msg[p:p + 4])
        data = msg[p + 4:p + 4 + el]
        if len(data) != el:
            raise ValueError("extension %#x overruns the message" % et)
        if et in out["exts"]:
            raise ValueError("duplicate extension %#x" % et)
        out["exts"][et] = (p + 4, data)
        out["ext_types"].append(et)
        if et == EXT_SNI:
            q = 2
            if data[q] != 0:
                raise ValueError("server_name type %d" % data[q])
            n = struct.unpack(">H", data[q + 1:q + 3])[0]
            out["sni"] = data[q + 3:q + 3 + n].decode("latin-1")
        elif et == EXT_ALPN:
            q = 2
            while q < len(data):
                out["alpn"].append(data[q + 1:q + 1 + data[q]].decode("latin-1"))
                q += 1 + data[q]
        elif et == EXT_VERSIONS:
            out["versions"] = [struct.unpack(">H", data[i:i + 2])[0] for i in range(1, 1 + data[0], 2)]
        p += 4 + el
    return out


def reframe(stream, cuts):
    """Re-frame the ClientHello at the start of stream: same handshake bytes, a new TLS
    record at each offset of cuts (offsets into the handshake message)."""
    h = parse_client_hello(stream)
    rver = struct.unpack(">H", stream[1:3])[0]
    return tls_records(h["msg"], cuts, record_version=rver) + stream[h["consumed"]:]


def openssl_answers(stream, certs):
    """Self-check of a crafted hello: feed it to an in-process OpenSSL server (python's
    ssl over MemoryBIOs).  Returns (True, "") when OpenSSL answered with a ServerHello,
    else (False, why)."""
    import ssl
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(certs["cert"], certs["key"])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = sctx.wrap_bio(inc, out, server_side=True)
    inc.write(stream)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError as e:
        return False, "OpenSSL refused it: %s" % e
    ans = out.read()
    if len(ans) >= 6 and ans[0] == 0x16 and ans[5] == 2:
        return True, ""
    return False, "OpenSSL answered %r" % ans[:16]


class TlsClient:
    """A real TLS client (python's ssl = OpenSSL) over MemoryBIOs: hello() gives the first
    flight; the test writes it into a tunnel however it likes, then finish() runs the rest
    of the handshake over the socket and send()/recv_line() exchange data."""

    def __init__(self, server_hostname, cafile=None, alpn=None, verify_name=True):
        import ssl
        self.ssl = ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if cafile:
            ctx.load_verify_locations(cafile)
            ctx.check_hostname = bool(verify_name and server_hostname)
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if alpn:
            ctx.set_alpn_protocols(list(alpn))
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=server_hostname)
        self._hello = None

    def hello(self):
        if self._hello is None:
            try:
                self.obj.do_handshake()
            except self.ssl.SSLWantReadError:
                pass
            self._hello = self.out.read()
        return self._hello

    def _flush(self, sock):
        d = self.out.read()
        if d:
            sock.sendall(d)

    def _fill(self, sock, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise CaseFailed("TLS: no answer from the peer in time")
        sock.settimeout(left)
        d = sock.recv(65536)
        if not d:
            raise CaseFailed("TLS: connection closed by the peer")
        self.inc.write(d)

    def finish(self, sock, leftover=b"", timeout=10.0):
        """Complete the handshake (the hello must already have been written)."""
        self.hello()
        deadline = time.monotonic() + timeout
        if leftover:
            self.inc.write(leftover)
        while True:
            try:
                self.obj.do_handshake()
                self._flush(sock)
                return
            except self.ssl.SSLWantReadError:
                self._flush(sock)
                self._fill(sock, deadline)

    def send(self, sock, data):
        self.obj.write(data)
        self._flush(sock)

    def recv_line(self, sock, timeout=10.0, limit=65536):
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf and len(buf) < limit:
            try:
                d = self.obj.read(65536)
                if not d:
                    break
                buf += d
            except self.ssl.SSLWantReadError:
                self._flush(sock)
                self._fill(sock, deadline)
            except (self.ssl.SSLZeroReturnError, self.ssl.SSLEOFError):
                break
        return buf


def real_hello(server_hostname, alpn=None):
    """A ClientHello as python's ssl (OpenSSL) sends it, for a name (or None: no SNI)."""
    return TlsClient(server_hostname, alpn=alpn).hello()


def check_cut_record(rec, reason, sni=None):
    """The record of a tunnel refused after 200: denied, failure, the reason, status 200
    (what the client saw), and tls.client.server_name when an SNI was parsed."""
    check_denied_record(rec, reason, 200)
    if sni is not None:
        expect(get(rec, "tls.client.server_name") == sni,
               "audit tls.client.server_name %r, want %r" % (get(rec, "tls.client.server_name"), sni))


# --------------------------------------------------------------------------
# Upstream servers (upstreams.py in its own process)
# --------------------------------------------------------------------------

class Upstreams:
    def __init__(self, ctx, specs, name="upstreams"):
        self.ctx = ctx
        self.name = name
        self.spec_path = ctx.path("%s.json" % name)
        self.events_path = ctx.path("%s-events.jsonl" % name)
        certs = None
        for s in specs:
            s.setdefault("role", "upstream")
            s.setdefault("kind", "tcp")
            if s["kind"] in ("tls", "tls-raw"):
                certs = certs or ctx.certs()
                s.setdefault("cert", certs["cert"])
                s.setdefault("key", certs["key"])
        self.specs = specs
        with open(self.spec_path, "w") as f:
            json.dump(specs, f)
        err = open(ctx.path("%s-stderr.log" % name), "ab")
        self.proc = ctx.spawn(name, [PY, os.path.join(HERE, "upstreams.py"), self.spec_path,
                                     self.events_path], stderr=err)
        err.close()
        ok = wait_until(lambda: self.proc.poll() is not None or
                        any(e["event"] == "ready" for e in self.events()), 10)
        if self.proc.poll() is not None or not ok:
            with open(ctx.path("%s-stderr.log" % name), "rb") as f:
                raise RuntimeError("upstream servers did not start: %s" % f.read()[-600:])

    def events(self):
        return read_jsonl(self.events_path)

    def accepts(self, listener=None, role=None):
        return [e for e in self.events() if e["event"] == "accept"
                and (listener is None or e["listener"] == listener)
                and (role is None or e["role"] == role)]

    def closes(self, listener=None):
        return [e for e in self.events() if e["event"] == "close"
                and (listener is None or e["listener"] == listener)]

    def udp(self, listener=None):
        return [e for e in self.events() if e["event"] == "udp"
                and (listener is None or e["listener"] == listener)]

    def wait_close(self, pred, timeout=10):
        return wait_until(lambda: next((e for e in self.closes() if pred(e)), None), timeout)

    def mark(self, listener):
        """How many connections listener has accepted so far; pass it to sessions_since."""
        return len(self.accepts(listener))

    def sessions_since(self, listener, mark, timeout=5.0):
        """[(accept, close or None)] for every connection listener accepted after mark,
        waiting up to timeout for each to close (None: still open when time ran out)."""
        def pairs():
            evs = self.events()
            acc = [e for e in evs if e["event"] == "accept" and e["listener"] == listener][mark:]
            out = []
            for a in acc:
                c = next((e for e in evs if e["event"] == "close" and e["listener"] == listener
                          and e["peer"] == a["peer"] and e["t"] >= a["t"]), None)
                out.append((a, c))
            return out
        wait_until(lambda: all(c is not None for _, c in pairs()), timeout)
        return pairs()

    def requests(self, listener=None):
        """"request" events of http-origin listeners (one per request read, complete or not)."""
        return [e for e in self.events() if e["event"] == "request"
                and (listener is None or e["listener"] == listener)]

    def first_rx(self, listener, peer):
        """Time the listener got its first byte from peer (kinds tls-raw, greet), or None."""
        return next((e["t"] for e in self.events() if e["event"] == "first_rx"
                     and e["listener"] == listener and e["peer"] == peer), None)


# --------------------------------------------------------------------------
# Plain HTTP through the proxy (issue 5): a raw client that sends bytes as
# given and reads each response by its framing (RFC 9112 §6.3), keeping the
# bytes exactly as they came off the wire.
# --------------------------------------------------------------------------

class HttpReply(Reply):
    """One response read by HttpClient.response(): Reply's fields (status, headers,
    body = the decoded body) plus interim [(status, headers)] for the 1xx heads before
    it, raw_body (the body as on the wire, chunk framing included), trailers,
    framing ("none" | "length" | "chunked" | "close"), complete (the framing said the
    body ended) and wire (bytes of this response, interim heads included)."""

    def __init__(self):
        super().__init__()
        self.interim = []
        self.raw_body = b""
        self.trailers = []
        self.framing = None
        self.complete = False
        self.wire = 0


class HttpClient:
    """One client connection to the proxy, bound to src (a fresh source port)."""

    def __init__(self, src="127.0.0.2", proxy_port=3128, timeout=10.0):
        self.sock = bound_socket(src)
        self.src_port = self.sock.getsockname()[1]
        self.sock.settimeout(timeout)
        self.buf = b""
        self.rx = 0
        self.eof_seen = False
        self.error = None
        try:
            self.sock.connect(("127.0.0.1", proxy_port))
        except OSError as e:
            self.error = "connect to the proxy 127.0.0.1:%d from %s failed: %s" % (proxy_port, src, e)

    def send(self, data):
        """sendall; returns None or the error text (the proxy may have closed already)."""
        if self.error:
            return self.error
        try:
            self.sock.sendall(data)
            return None
        except OSError as e:
            return "send: %s" % e

    def _fill(self, deadline):
        """Read more into buf: True on data, False on EOF; raises socket.timeout."""
        if self.eof_seen:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline")
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            d = b""
        if not d:
            self.eof_seen = True
            return False
        self.rx += len(d)
        self.buf += d
        return True

    def _take(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                break
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def _line(self, deadline, limit=16384):
        while b"\r\n" not in self.buf and len(self.buf) < limit:
            if not self._fill(deadline):
                return None
        i = self.buf.find(b"\r\n")
        if i < 0:
            return None
        line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
        return line

    def response(self, method="GET", timeout=10.0):
        """Read the next response (1xx interim heads collected on the way)."""
        r = HttpReply()
        r.src_port = self.src_port
        r.sock = None
        deadline = time.monotonic() + timeout
        if self.error:
            r.error = self.error
            return r
        try:
            while True:
                while b"\r\n\r\n" not in self.buf and len(self.buf) < 65536:
                    if not self._fill(deadline):
                        break
                i = self.buf.find(b"\r\n\r\n")
                if i < 0:
                    r.closed = self.eof_seen
                    r.raw = self.buf[:200]
                    r.error = ("connection closed without a (complete) response head, got %r" % self.buf[:120]
                               if self.eof_seen else "no response head (got %r)" % self.buf[:120])
                    return r
                head, self.buf = self.buf[:i + 4], self.buf[i + 4:]
                r.wire += len(head)
                r.raw = head
                r.status_line, r.status, r.headers = _parse_head(head[:-4])
                if r.status is not None and 100 <= r.status < 200 and r.status != 101:
                    r.interim.append((r.status, r.headers))
                    continue
                break
            te = ",".join(r.headers_named("Transfer-Encoding")).lower()
            cl = r.headers_named("Content-Length")
            if method == "HEAD" or r.status in (101, 204, 304) or r.status is None:
                r.framing = "none"
            elif te:
                r.framing = "chunked" if te.split(",")[-1].strip() == "chunked" else "close"
            elif cl:
                r.framing = "length"
            else:
                r.framing = "close"
            if r.framing == "none":
                r.complete = True
            elif r.framing == "length":
                expect(len(set(cl)) == 1 and cl[0].isdigit(), "response Content-Length %r" % cl)
                n = int(cl[0])
                r.raw_body = self._take(n, deadline)
                r.body = r.raw_body
                r.complete = len(r.body) == n
                if not r.complete:
                    r.error = "body ended after %d of %d bytes" % (len(r.body), n)
            elif r.framing == "close":
                while self._fill(deadline):
                    pass
                r.raw_body, self.buf = self.buf, b""
                r.body = r.raw_body
                r.complete = True
            else:
                raw, body = [], []
                while True:
                    line = self._line(deadline)
                    if line is None:
                        r.error = "chunked body ended inside a chunk line"
                        break
                    raw.append(line)
                    size = line[:-2].split(b";", 1)[0]
                    if not size or any(c not in b"0123456789abcdefABCDEF" for c in size):
                        r.error = "invalid chunk line %r" % line[:40]
                        break
                    n = int(size, 16)
                    if n == 0:
                        while True:
                            t = self._line(deadline)
                            if t is None:
                                r.error = "chunked body ended inside the trailers"
                                break
                            raw.append(t)
                            if t == b"\r\n":
                                r.complete = True
                                break
                            k, _, v = t[:-2].decode("latin-1").partition(":")
                            r.trailers.append((k.strip(), v.strip()))
                        break
                    d = self._take(n + 2, deadline)
                    raw.append(d)
                    body.append(d[:n])
                    if len(d) < n + 2 or not d.endswith(b"\r\n"):
                        r.error = "chunk data cut or not followed by CRLF"
                        break
                r.raw_body = b"".join(raw)
                r.body = b"".join(body)
        except socket.timeout:
            r.error = "response not complete within %.1fs (%s, %d body bytes)" % (
                timeout, r.status_line or "no head", len(r.raw_body) + len(self.buf))
            r.raw_body = r.raw_body or self.buf
        except OSError as e:
            r.error = "recv: %s" % e
        r.wire += len(r.raw_body)
        r.closed = self.eof_seen
        return r

    def at_eof(self, timeout=3.0):
        """Wait up to timeout for the proxy to close: True at EOF with no further bytes."""
        deadline = time.monotonic() + timeout
        n = len(self.buf)
        try:
            while self._fill(deadline):
                pass
        except socket.timeout:
            return False
        except OSError:
            return True
        return self.eof_seen and len(self.buf) == n

    def close(self):
        self.sock.close()


def check_http_record(rec, method, status=None, reason="allowed", domain=None, path=None, port=None):
    """The record of a forwarded plain-HTTP request: http-request, allowed + end, success,
    the reason (allowed when completed), method, upstream status, url.* and bytes."""
    need_paths = REQUIRED_ALWAYS + ("destination.ip", "destination.port", "source.bytes",
                                    "destination.bytes", "event.duration", "rule.ruleset",
                                    "http.request.method", "url.domain", "url.path", "url.port")
    missing = [p for p in need_paths if get(rec, p) is None]
    expect(not missing, "audit http-request record lacks %s: %s" % (missing, json.dumps(rec)[:500]))
    expect(get(rec, "event.action") == "http-request", "event.action %r, want http-request" %
           get(rec, "event.action"))
    types = as_list(get(rec, "event.type"))
    expect(types == ["access"] and as_list(get(rec, "event.category")) == ["network", "web"],
           "audit event.category %r event.type %r, want [network, web] [access]" %
           (get(rec, "event.category"), types))
    expect(get(rec, "event.outcome") == "success", "audit event.outcome %r, want success" %
           get(rec, "event.outcome"))
    expect(get(rec, "event.reason") == reason, "audit event.reason %r, want %s" %
           (get(rec, "event.reason"), reason))
    expect(get(rec, "http.request.method") == method, "http.request.method %r, want %s" %
           (get(rec, "http.request.method"), method))
    if status is not None:
        expect(get(rec, "http.response.status_code") == status, "http.response.status_code %r, want %d" %
               (get(rec, "http.response.status_code"), status))
    for k, v in (("url.domain", domain), ("url.path", path), ("url.port", port)):
        if v is not None:
            expect(get(rec, k) == v, "audit %s = %r, want %r" % (k, get(rec, k), v))
    expect("?" not in str(get(rec, "url.path")), "url.path %r carries a query" % get(rec, "url.path"))


# --------------------------------------------------------------------------
# dnsmasq
# --------------------------------------------------------------------------

DNSMASQ = "/usr/sbin/dnsmasq"


class Dnsmasq:
    """dnsmasq answering only from --host-record/--local data, logging every query."""

    def __init__(self, ctx, listen, records, name="dnsmasq", local=("example", "test"), extra=()):
        need(DNSMASQ)
        self.ctx = ctx
        self.listen = listen
        self.log = ctx.path("%s.log" % name)
        argv = [DNSMASQ, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll",
                "--bind-interfaces", "--listen-address=%s" % listen, "--port=53",
                "--except-interface=nonexistent0", "--user=root", "--pid-file=",
                "--cache-size=0", "--log-queries", "--log-facility=%s" % self.log,
                "--host-record=probe.portcullis-it,192.0.2.1"]
        argv += ["--local=/%s/" % d for d in local]
        argv += ["--host-record=%s,%s" % (n, a) for n, a in records]
        argv += list(extra)
        err = open(ctx.path("%s-stderr.log" % name), "ab")
        self.proc = ctx.spawn(name, argv, stderr=err)
        err.close()

        def probe():
            if self.proc.poll() is not None:
                return True
            try:
                return dns_query(listen, "probe.portcullis-it", 1, timeout=0.3)[1] == ["192.0.2.1"]
            except OSError:
                return False
        wait_until(probe, 10)
        if self.proc.poll() is not None or not probe():
            with open(ctx.path("%s-stderr.log" % name), "rb") as f:
                raise RuntimeError("dnsmasq on %s did not start: %s" % (listen, f.read()[-600:]))

    def queries(self):
        """[(qtype, name, from)] for every query logged, the readiness probe excluded."""
        out = []
        try:
            with open(self.log, errors="replace") as f:
                for ln in f:
                    m = re.search(r"query\[(\w+)\] (\S+) from (\S+)", ln)
                    if m and m.group(2) != "probe.portcullis-it":
                        out.append(m.groups())
        except OSError:
            pass
        return out


def dns_query(server, name, qtype, port=53, timeout=1.0):
    """Minimal stub resolver for probes: (rcode, [addresses])."""
    tid = struct.unpack(">H", os.urandom(2))[0]
    q = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q, (server, port))
        r = s.recv(4096)
    finally:
        s.close()
    flags, qd, an = struct.unpack(">HHH", r[2:8])
    off = 12

    def skip(o):
        while True:
            n = r[o]
            if n == 0:
                return o + 1
            if n & 0xC0 == 0xC0:
                return o + 2
            o += 1 + n
    for _ in range(qd):
        off = skip(off) + 4
    out = []
    for _ in range(an):
        off = skip(off)
        t, _c, _ttl, rdl = struct.unpack(">HHIH", r[off:off + 10])
        off += 10
        rd = r[off:off + rdl]
        off += rdl
        if t == 1:
            out.append(socket.inet_ntop(socket.AF_INET, rd))
        elif t == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, rd))
    return flags & 0xF, out


# --------------------------------------------------------------------------
# Audit records and the ECS checker
# --------------------------------------------------------------------------

STRING_TYPES = {"keyword", "constant_keyword", "wildcard", "match_only_text", "text", "ip", "date",
                "version"}
INT_TYPES = {"long", "integer", "short", "byte", "unsigned_long"}
FLOAT_TYPES = {"float", "double", "scaled_float", "half_float"}
OBJECT_TYPES = {"object", "flattened", "nested"}


class EcsFields:
    """ECS 9.4 fields.csv, the documented custom fields portcullis adds (custom_fields.csv next
    to it) and ECS's expected event.category/event.type pairs (event_categorization.csv)."""

    def __init__(self, path):
        self.path = path
        self.types = {}
        self.pairs = set()
        self.error = None
        here = os.path.dirname(path)
        try:
            for p in (path, os.path.join(here, "custom_fields.csv")):
                with open(p, newline="") as f:
                    for row in csv.DictReader(f):
                        self.types[row["Field"]] = (row["Type"], row.get("Normalization", ""))
            with open(os.path.join(here, "event_categorization.csv"), newline="") as f:
                for row in csv.DictReader(f):
                    self.pairs.add((row["Category"], row["Expected_Event_Type"]))
        except OSError as e:
            self.error = "cannot read ECS field list %s: %s" % (path, e)
        if not self.error and "@timestamp" not in self.types:
            self.error = "ECS field list %s has no @timestamp row" % path
        if not self.error and ("network", "connection") not in self.pairs:
            self.error = "ECS categorisation table next to %s has no network/connection" % path

    def check_categorization(self, cats, types):
        """Every event.type must be one ECS expects with every event.category of the record."""
        return ["event.type %r is not expected with event.category %r (ECS 9.4)" % (t, c)
                for c in cats for t in types if (c, t) not in self.pairs]

    def check_value(self, path, v):
        """Problems with one leaf value at a dotted path."""
        if path.startswith("labels."):
            if path.count(".") != 1:
                return ["%s: labels must be flat key/value pairs" % path]
            if not isinstance(v, (str, bool, int, float)) or v is None:
                return ["%s: label value %r is not a scalar" % (path, v)]
            return []
        if path not in self.types:
            return ["%s: not an ECS 9.4 field" % path]
        typ, _norm = self.types[path]
        vals = v if isinstance(v, list) else [v]
        if isinstance(v, list):
            if typ not in STRING_TYPES:
                return ["%s: array for a %s field" % (path, typ)]
            if not v:
                return ["%s: empty array" % path]
        probs = []
        for x in vals:
            if typ in STRING_TYPES:
                if not isinstance(x, str):
                    probs.append("%s: %s field holds %s %r" % (path, typ, type(x).__name__, x))
                elif typ == "ip":
                    try:
                        ipaddress.ip_address(x)
                    except ValueError:
                        probs.append("%s: %r is not an IP address" % (path, x))
                elif typ == "date":
                    try:
                        datetime.datetime.fromisoformat(x.replace("Z", "+00:00"))
                    except ValueError:
                        probs.append("%s: %r is not an ISO 8601 date" % (path, x))
            elif typ in INT_TYPES:
                if not isinstance(x, int) or isinstance(x, bool):
                    probs.append("%s: %s field holds %s %r" % (path, typ, type(x).__name__, x))
            elif typ in FLOAT_TYPES:
                if not isinstance(x, (int, float)) or isinstance(x, bool):
                    probs.append("%s: %s field holds %s %r" % (path, typ, type(x).__name__, x))
            elif typ == "boolean":
                if not isinstance(x, bool):
                    probs.append("%s: boolean field holds %r" % (path, x))
            elif typ in OBJECT_TYPES:
                probs.append("%s: %s field holds a scalar %r" % (path, typ, x))
            else:
                probs.append("%s: unhandled ECS type %s" % (path, typ))
        return probs


def flatten(rec, prefix=""):
    """{dotted.path: leaf} for a nested record.  Keys with dots inside are reported."""
    out = {}
    for k, v in rec.items():
        p = prefix + k
        if isinstance(v, dict) and v:
            out.update(flatten(v, p + "."))
        else:
            out[p] = v
    return out


def get(rec, path):
    cur = rec
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def as_list(v):
    return v if isinstance(v, list) else ([] if v is None else [v])


REQUIRED_ALWAYS = ("@timestamp", "ecs.version", "event.kind", "event.category", "event.type",
                   "event.action", "event.outcome", "event.reason", "source.ip", "source.port",
                   "observer.product", "observer.hostname", "event.id", "event.dataset",
                   "event.start", "event.end", "event.duration", "message")


def ecs_time_ns(text):
    """An RFC 3339 UTC time with microseconds as integer ns since the epoch."""
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (int(d.timestamp()) * 1000000 + d.microsecond) * 1000


def check_denied_record(rec, reason, status):
    """A refusal record: denied, failure, reason and status as the client saw."""
    missing = [p for p in REQUIRED_ALWAYS if get(rec, p) is None]
    expect(not missing, "audit refusal record lacks %s: %s" % (missing, json.dumps(rec)[:400]))
    types = as_list(get(rec, "event.type"))
    expect("denied" in types, "audit event.type %r lacks 'denied'" % types)
    expect(get(rec, "event.outcome") == "failure", "audit event.outcome %r, want failure" %
           get(rec, "event.outcome"))
    expect(get(rec, "event.reason") == reason, "audit event.reason %r, client saw %r" %
           (get(rec, "event.reason"), reason))
    expect(get(rec, "http.response.status_code") == status,
           "audit http.response.status_code %r, client saw %r" % (get(rec, "http.response.status_code"), status))


def check_tunnel_record(rec):
    need_paths = REQUIRED_ALWAYS + ("destination.ip", "destination.port", "source.bytes",
                                    "destination.bytes", "event.duration", "rule.ruleset",
                                    "http.request.method")
    missing = [p for p in need_paths if get(rec, p) is None]
    expect(not missing, "audit tunnel record lacks %s: %s" % (missing, json.dumps(rec)[:400]))
    types = as_list(get(rec, "event.type"))
    expect("allowed" in types and "end" in types, "audit event.type %r lacks allowed+end" % types)
    expect(get(rec, "event.outcome") == "success", "audit event.outcome %r, want success" %
           get(rec, "event.outcome"))
    expect(get(rec, "event.reason") in CLOSE_REASONS, "audit event.reason %r is not a close reason" %
           get(rec, "event.reason"))
    expect(get(rec, "http.request.method") == "CONNECT", "http.request.method %r" %
           get(rec, "http.request.method"))


class Audit:
    def __init__(self, path, ecs, name):
        self.path = path
        self.ecs = ecs
        self.name = name

    def lines(self):
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def records(self):
        out = []
        for ln in self.lines().split(b"\n"):
            if not ln.strip():
                continue
            try:
                r = json.loads(ln)
            except ValueError:
                continue
            if isinstance(r, dict):
                out.append(r)
        return out

    def find(self, pred):
        return [r for r in self.records() if pred(r)]

    def wait_one(self, pred, timeout=5.0):
        """The single record matching pred, waiting up to timeout; None if none.
        Raises CaseFailed if more than one matches."""
        found = wait_until(lambda: self.find(pred), timeout)
        if not found:
            return None
        time.sleep(0.05)
        found = self.find(pred)
        expect(len(found) == 1, "%d audit records match, want exactly one: %s" %
               (len(found), [json.dumps(x)[:200] for x in found]))
        return found[0]

    def by_port(self, port, timeout=5.0):
        return self.wait_one(lambda r: get(r, "source.port") == port, timeout)

    def mark(self):
        """How many records there are now; pass it to wait_new."""
        return len(self.records())

    def wait_new(self, mark, pred=lambda r: True, timeout=5.0):
        """The single record after mark matching pred (waits up to timeout); None if none.
        For clients whose source port the test does not choose (openssl s_client)."""
        found = wait_until(lambda: [r for r in self.records()[mark:] if pred(r)], timeout)
        if not found:
            return None
        time.sleep(0.05)
        found = [r for r in self.records()[mark:] if pred(r)]
        expect(len(found) == 1, "%d new audit records match, want exactly one: %s" %
               (len(found), [json.dumps(x)[:200] for x in found]))
        return found[0]

    def validate(self, forbidden_text=()):
        """Every line is one whole JSON object whose every key is an ECS 9.4 field of the
        right JSON type; no secrets; no query strings; no partial last line.
        Returns (schema problems, semantic problems): the second list is about the
        record kinds of the contract (refusal: denied + refusal reason + its status;
        tunnel: allowed + end + close reason)."""
        probs = []
        sem = []
        if self.ecs.error:
            return [self.ecs.error], []
        data = self.lines()
        seen_ids = {}
        if data and not data.endswith(b"\n"):
            probs.append("file does not end with a newline (split record?)")
        for i, ln in enumerate(data.split(b"\n"), 1):
            if not ln.strip():
                continue
            try:
                rec = json.loads(ln)
            except ValueError as e:
                probs.append("line %d is not one JSON object (%s): %r" % (i, e, ln[:120]))
                continue
            if not isinstance(rec, dict):
                probs.append("line %d is not a JSON object" % i)
                continue
            for k in _all_keys(rec):
                if "." in k and not k.startswith("labels."):
                    probs.append("line %d: dotted key %r (records use nested objects)" % (i, k))
            flat = flatten(rec)
            for p, v in flat.items():
                for pr in self.ecs.check_value(p, v):
                    probs.append("line %d: %s" % (i, pr))
            for p in REQUIRED_ALWAYS:
                if p not in flat:
                    probs.append("line %d: lacks %s" % (i, p))
            if flat.get("observer.product") not in (None, "portcullis"):
                probs.append("line %d: observer.product %r" % (i, flat.get("observer.product")))
            if "url.query" in flat:
                probs.append("line %d: url.query present" % i)
            for p, v in flat.items():
                if p.startswith("url.") and isinstance(v, str) and "?" in v:
                    probs.append("line %d: %s carries a query string %r" % (i, p, v))
            low = ln.lower()
            if b"proxy-authorization" in low:
                probs.append("line %d mentions Proxy-Authorization" % i)
            for t in forbidden_text:
                if t.encode().lower() in low:
                    probs.append("line %d contains forbidden text %r" % (i, t))
            reason = flat.get("event.reason")
            types = as_list(flat.get("event.type"))
            for pr in self.ecs.check_categorization(as_list(flat.get("event.category")), types):
                probs.append("line %d: %s" % (i, pr))
            if "trace.id" not in flat and flat.get("event.action") != "refusals-aggregated":
                probs.append("line %d: lacks trace.id (only an aggregate of many connections may)" % i)
            eid = flat.get("event.id")
            if eid is not None:
                if eid in seen_ids:
                    probs.append("line %d: event.id %s repeats line %d" % (i, eid, seen_ids[eid]))
                seen_ids[eid] = i
            if all(isinstance(flat.get(k), str) for k in ("@timestamp", "event.start", "event.end")):
                try:
                    ts, st, en = (ecs_time_ns(flat[k]) for k in ("@timestamp", "event.start", "event.end"))
                    dur = flat.get("event.duration")
                    if ts != en:
                        probs.append("line %d: @timestamp %s is not event.end %s" %
                                     (i, flat["@timestamp"], flat["event.end"]))
                    if not isinstance(dur, int) or st > en or abs((en - st) - dur) > 2000:
                        probs.append("line %d: event.start %s + duration %r != event.end %s" %
                                     (i, flat["event.start"], dur, flat["event.end"]))
                except ValueError:
                    pass
            if flat.get("event.dataset") not in (None, "portcullis.audit"):
                probs.append("line %d: event.dataset %r" % (i, flat.get("event.dataset")))
            if "start" in types or "info" in types:
                if flat.get("event.outcome") != "success" or reason != "allowed":
                    sem.append("line %d: tunnel start/interim record with outcome %r reason %r" %
                               (i, flat.get("event.outcome"), reason))
            elif types == ["access"]:
                if reason not in HTTP_END_REASONS or flat.get("event.action") != "http-request":
                    sem.append("line %d: access record with reason %r action %r" %
                               (i, reason, flat.get("event.action")))
                if flat.get("event.outcome") != "success":
                    sem.append("line %d: access record with outcome %r" % (i, flat.get("event.outcome")))
            elif "denied" in types:
                st = REASON_STATUS.get(reason)
                if reason in NO_STATUS_REFUSALS:
                    if "http.response.status_code" in flat:
                        sem.append("line %d: reason %s with status %r: the client saw no HTTP" %
                                   (i, reason, flat.get("http.response.status_code")))
                elif st is None:
                    sem.append("line %d (source.port %s): event.type denied with %r, which is not a "
                               "refusal reason (http.response.status_code %r)" %
                               (i, flat.get("source.port"), reason, flat.get("http.response.status_code")))
                elif flat.get("http.response.status_code") != st:
                    sem.append("line %d: reason %s with status %r, want %d" %
                               (i, reason, flat.get("http.response.status_code"), st))
                if flat.get("event.outcome") != "failure":
                    sem.append("line %d: denied with outcome %r" % (i, flat.get("event.outcome")))
            elif "end" in types:
                ends = HTTP_END_REASONS if flat.get("event.action") == "http-request" else CLOSE_REASONS
                if reason not in ends:
                    sem.append("line %d: tunnel end with reason %r" % (i, reason))
                if flat.get("event.outcome") != "success":
                    sem.append("line %d: tunnel end with outcome %r" % (i, flat.get("event.outcome")))
            else:
                sem.append("line %d: event.type %r is neither denied nor end" % (i, types))
            wd = flat.get("labels.would_deny")
            if wd is not None:
                if wd not in WOULD_DENY_REASONS:
                    sem.append("line %d: labels.would_deny %r is not a reason an audit tier may "
                               "let through" % (i, wd))
                if "denied" in types and wd == reason:
                    sem.append("line %d: refused with %s and labelled would_deny %s: the refusal "
                               "was enforced, not merely recorded" % (i, reason, wd))
        return probs, sem


def _all_keys(d):
    for k, v in d.items():
        yield k
        if isinstance(v, dict) and k != "labels":
            yield from _all_keys(v)


# --------------------------------------------------------------------------
# Namespace-local files
# --------------------------------------------------------------------------

def bind_mount(src, dst):
    """Bind-mount src over dst inside this (private) mount namespace."""
    subprocess.run(["mount", "--bind", src, dst], check=True, timeout=10,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# --------------------------------------------------------------------------
# Files and the daemon's operational log (shared by test_ops and test_kube)
# --------------------------------------------------------------------------

def write_atomic(path, text):
    """Replace path in one rename, as editors and ConfigMap updates do."""
    tmp = os.path.join(os.path.dirname(path), ".tmp-%s" % os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def log_mark(px):
    """Where the daemon's stderr log ends now (for log_since)."""
    try:
        return os.path.getsize(px.stderr_path)
    except OSError:
        return 0


def log_since(px, mark):
    """The daemon's JSON log lines written after mark (a log_mark)."""
    try:
        with open(px.stderr_path, "rb") as f:
            f.seek(mark)
            data = f.read()
    except OSError:
        return []
    out = []
    for ln in data.decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(ln)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
