"""The clients suite: one real CI client through the real daemon, against local stand-ins.

A test_<client>.py script does:

    import clientlib
    s = clientlib.Suite(__file__, "curl", version_argv=["curl", "--version"])
    with s.ctx:
        s.prepare(...)          # its files under s.docroot / s.git_root
        s.matrix(fetch, verify)  # the three cases, the proxy variables, credentials
        s.finish()

It runs on the integration harness (tests/integration/harness.py): a private network and
mount namespace with only lo, dnsmasq answering the real host names (pypi.org,
registry.npmjs.org, ...) with a local address, an origin (origin.py, TLS on 443, plain on
80) serving every name from one tree, a listener on the metadata address that must never
be reached, and portcullis allowing the client's hosts.  /etc/resolv.conf is bind-mounted
(in the mount namespace only) so a client that goes direct resolves the same names.

fetch(base, env, work) runs the client against base ("https://pypi.org",
"https://denied.example", "http://169.254.169.254", ...) and returns a CompletedProcess;
verify(work) says whether what it fetched is there and right (None: yes; else why not).

Each script appends one row to $PORTCULLIS_CLIENTS_RESULTS (results.jsonl);
report.py turns the rows into docs/clients.md.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402,F401

ORIGIN = "198.51.100.10"        # every stand-in host name resolves here
META = "169.254.169.254"        # the cloud metadata address: must never be reached
RESOLVER = "127.0.0.53"
PROXY = "http://127.0.0.1:3128"
STANDIN_PORT = 3129             # a stand-in proxy that answers 407 (credential probe)
INTERNAL = "mirror.ci.svc.cluster.local"   # a cluster-internal name for the NO_PROXY probes
HOSTS = ["example.org", "github.com", "deb.debian.org", "pypi.org", "files.pythonhosted.org",
         "registry.npmjs.org", "proxy.golang.org", "sum.golang.org", "index.crates.io",
         "static.crates.io", "rubygems.org", "repo.maven.apache.org"]
DENIED = "denied.example"       # resolves to the origin too; no tier allows it
HERE = os.path.dirname(os.path.abspath(__file__))

# How each proxy variable is probed: the variables set, the base fetched, and what
# "honoured" means (via: the proxy saw it; direct: the origin got it without the proxy).
RELAY_PORT = 3130
RELAY = "http://127.0.0.1:%d" % RELAY_PORT   # the probes' proxy URL: a relay to portcullis
VAR_PROBES = [
    ("HTTPS_PROXY", {"HTTPS_PROXY": RELAY}, "allowed", "via"),
    ("https_proxy", {"https_proxy": RELAY}, "allowed", "via"),
    ("ALL_PROXY", {"ALL_PROXY": RELAY}, "allowed", "via"),
    ("NO_PROXY=.svc.cluster.local", {"HTTPS_PROXY": RELAY, "https_proxy": RELAY,
                                     "NO_PROXY": ".svc.cluster.local"}, "internal", "direct"),
    ("no_proxy=.svc.cluster.local", {"HTTPS_PROXY": RELAY, "https_proxy": RELAY,
                                     "no_proxy": ".svc.cluster.local"}, "internal", "direct"),
    ("NO_PROXY=198.51.100.0/24 (IP-literal URL)", {"HTTPS_PROXY": RELAY, "https_proxy": RELAY,
                                                   "NO_PROXY": "198.51.100.0/24",
                                                   "no_proxy": "198.51.100.0/24"}, "ip", "direct"),
]


def clean_env():
    """The environment a client starts from: nothing of the caller's but the locale (no proxy
    variable, no CA bundle, no registry setting), and Debian's binaries first on PATH."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
            "TERM": "dumb"}


class StandinProxy:
    """A listener that plays a proxy which wants credentials: it logs each request head,
    answers 407 (Proxy-Authenticate: Basic) to one without Proxy-Authorization and 403 to
    one with it, so a client shows whether it sends credentials up front or after a 407."""

    def __init__(self, port=STANDIN_PORT):
        self.heads = []          # (connection number, request line, has Proxy-Authorization)
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
            threading.Thread(target=self._serve, args=(c, n), daemon=True).start()

    def _serve(self, c, n):
        c.settimeout(15)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(4096)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                auth = any(ln.lower().startswith("proxy-authorization:") for ln in lines[1:])
                with self.lock:
                    self.heads.append((n, lines[0], auth))
                if auth:
                    c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                          b"Proxy-Authenticate: Basic realm=\"portcullis\"\r\n"
                          b"Content-Length: 0\r\n\r\n")
        except OSError:
            return
        finally:
            c.close()

    def mark(self):
        with self.lock:
            return len(self.heads)

    def since(self, mark):
        with self.lock:
            return list(self.heads[mark:])


class Relay:
    """A TCP relay in front of portcullis for the proxy-variable probes: a client that uses the
    proxy it is given must connect here first, so "went through the proxy" is a count taken
    when the client has exited, with no waiting for audit records."""

    def __init__(self, port, upstream=("127.0.0.1", 3128)):
        self.upstream = upstream
        self.accepted = 0
        self.targets = []    # the host each relayed connection asked the proxy for
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(c,), daemon=True).start()

    @staticmethod
    def _copy(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _pipe(self, c):
        head = b""
        try:
            c.settimeout(10)
            while b"\r\n" not in head and len(head) < 8192:
                d = c.recv(8192)
                if not d:
                    break
                head += d
            c.settimeout(None)
            u = socket.create_connection(self.upstream, timeout=10)
            u.settimeout(None)
            u.sendall(head)
        except OSError:
            with self.lock:
                self.targets.append("")      # every accepted connection names one target
            c.close()
            return
        # The request line names the target: "CONNECT host:443 ..." or "GET http://host/... ...".
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        target = parts[1] if len(parts) > 1 else ""
        target = target.split("://", 1)[-1].split("/", 1)[0]
        host = target[1:].split("]")[0] if target.startswith("[") else target.rsplit(":", 1)[0] \
            if target.count(":") == 1 else target
        with self.lock:
            self.targets.append(host.lower())
        t = threading.Thread(target=self._copy, args=(u, c), daemon=True)
        t.start()
        self._copy(c, u)
        t.join(60)
        c.close()
        u.close()

    def count(self):
        with self.lock:
            return self.accepted

    def mark(self):
        with self.lock:
            return len(self.targets)

    def targets_since(self, mark, timeout=5.0):
        """Hosts asked for since mark; waits until every accepted connection has named one."""
        harness.wait_until(lambda: self.count() <= self.mark(), timeout)
        with self.lock:
            return self.targets[mark:]


class Suite:
    def __init__(self, script, client, version_argv=None, extra_v4=()):
        self.client = client
        self.version_argv = version_argv
        self.ctx = harness.start(script, v4=[ORIGIN, META] + list(extra_v4))
        self.row = {"client": client, "version": "", "cases": {}, "vars": {}, "credentials": "",
                    "settings": "", "refusal": "", "notes": []}
        self.t0 = time.monotonic()

    # ---------------------------------------------------------------- set-up
    def setup(self, extra_hosts=(), tier_extra=None, allow_ech=False):
        ctx = self.ctx
        harness.LEAF_DNS = list(HOSTS) + [DENIED, INTERNAL, "localhost"] + list(extra_hosts)
        harness.LEAF_IPS = [ORIGIN]
        self.certs = ctx.certs()
        self.ca = self.certs["ca"]
        self.docroot = ctx.path("www")
        self.git_root = ctx.path("git")
        self.work_root = ctx.path("work")
        for d in (self.docroot, self.git_root, self.work_root):
            os.makedirs(d)
        # A resolv.conf naming only the namespace's dnsmasq, visible in this mount namespace only.
        resolv = ctx.path("resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\noptions attempts:1 timeout:2\n" % RESOLVER)
        harness.bind_mount(resolv, os.path.realpath("/etc/resolv.conf"))
        names = list(HOSTS) + [DENIED, INTERNAL] + list(extra_hosts)
        self.dns = harness.Dnsmasq(ctx, RESOLVER, [(n, ORIGIN) for n in names],
                                   local=("example", "local", "org", "com", "io"))
        spec = {"listen": [[ORIGIN, 443, True], [ORIGIN, 80, False]], "cert": self.certs["cert"],
                "key": self.certs["key"], "docroot": self.docroot, "git_root": self.git_root}
        spec_path = ctx.path("origin.json")
        self.origin_events = ctx.path("origin-events.jsonl")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        err = open(ctx.path("origin-stderr.log"), "ab")
        self.origin = ctx.spawn("origin", [harness.PY, os.path.join(HERE, "origin.py"), spec_path,
                                           self.origin_events], stderr=err)
        err.close()
        harness.wait_until(lambda: self.origin.poll() is not None or any(
            e["event"] == "ready" for e in self.origin_log()), 10)
        expect(any(e["event"] == "ready" for e in self.origin_log()), "origin did not start")
        self.meta = harness.Upstreams(ctx, [{"name": "meta80", "host": META, "port": 80, "kind": "tcp",
                                             "role": "forbidden"},
                                            {"name": "meta443", "host": META, "port": 443, "kind": "tcp",
                                             "role": "forbidden"}], name="metadata")
        tier = {"sources": ["127.0.0.1/32"],
                "allow": [{"host": h, "ports": [80, 443]} for h in HOSTS]}
        if allow_ech:
            tier["tls"] = {"allow_ech": True}
        if tier_extra:
            tier.update(tier_extra)
        self.px = harness.Proxy(ctx, "portcullis", {"ci": tier}).start()
        expect(self.px.start_error is None, "portcullis: %s" % self.px.start_error)
        self.standin = StandinProxy()
        self.relay = Relay(RELAY_PORT)
        if self.version_argv:
            try:
                p = subprocess.run(self.version_argv, capture_output=True, timeout=30, env=clean_env())
                out = (p.stdout or p.stderr).decode("utf-8", "replace").strip().splitlines()
                v = out[0] if out else ""
                for cut in (" (", " from ", " built on "):
                    v = v.split(cut)[0]
                self.row["version"] = v[:48]
            except (OSError, subprocess.TimeoutExpired) as e:
                self.row["version"] = "not found: %s" % e

    def origin_log(self):
        return harness.read_jsonl(self.origin_events)

    def origin_requests(self, mark=0):
        return [e for e in self.origin_log()[mark:] if e["event"] == "request"]

    def work(self, name):
        d = os.path.join(self.work_root, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        return d

    def env(self, proxies=None, home=None):
        """A client environment: HOME in the run's own directory (no cache outside the run),
        the proxy variables given (default: both schemes at portcullis)."""
        env = clean_env()
        env["HOME"] = home or self.work("home")
        env.update({"HTTPS_PROXY": PROXY, "HTTP_PROXY": PROXY, "https_proxy": PROXY,
                    "http_proxy": PROXY} if proxies is None else proxies)
        return env

    # ---------------------------------------------------------------- the matrix
    BASES = {"allowed": None, "denied": "https://" + DENIED, "metadata": "http://" + META,
             "internal": "https://" + INTERNAL, "ip": "https://" + ORIGIN}

    def base(self, which):
        return self.BASES[which] or "https://" + self.host

    def run(self, fetch, which, env, name):
        w = self.work(name)
        try:
            p = fetch(self.base(which), env, w)
        except subprocess.TimeoutExpired as e:
            p = subprocess.CompletedProcess(e.cmd, -9, e.stdout or b"", (e.stderr or b"") + b"\n[timed out]")
        return p, w

    @staticmethod
    def text(p):
        out = p.stdout if isinstance(p.stdout, str) else (p.stdout or b"").decode("utf-8", "replace")
        err = p.stderr if isinstance(p.stderr, str) else (p.stderr or b"").decode("utf-8", "replace")
        return out, err

    def new_records(self, mark, settle=lambda: True):
        """Audit records written since mark, once the client's tunnels are closed and recorded."""
        harness.wait_until(settle, 5)
        time.sleep(0.3)
        return self.px.audit.records()[mark:]

    def wait_records(self, mark, pred):
        """Every record after mark matching pred, once at least one has come (<= 5 s)."""
        harness.wait_until(lambda: any(pred(r) for r in self.px.audit.records()[mark:]), 5)
        time.sleep(0.3)
        return [r for r in self.px.audit.records()[mark:] if pred(r)]

    def matrix(self, host, fetch, verify, refusal_where="", settings="", env_proxy=True,
               creds_unsupported=None, side_hosts=None, exit0_known=False, reason_shown=None):
        """The three cases, the proxy-variable probes and the credential probe."""
        self.host = host
        side_hosts = side_hosts or {}   # host -> why a refusal of it does not fail the fetch
        ctx, audit = self.ctx, self.px.audit
        extra = {}
        self.row["settings"] = settings
        lines = []

        def message(out, err):
            text = (err.strip() or out.strip()).splitlines()
            pick = ([ln for ln in text if "403" in ln or "orbidden" in ln] or
                    [ln for ln in text if "rror" in ln] or text[-1:])
            return (pick[-1] if pick else "").strip()[:240]

        with ctx.case("%s: allowed fetch from %s through portcullis, audited" % (self.client, host)):
            env = dict(self.env(), **extra)
            m = audit.mark()
            p, w = self.run(fetch, "allowed", env, "allowed")
            out, err = self.text(p)
            expect(p.returncode == 0, "exit %s: %s" % (p.returncode, (err or out)[-700:]))
            why = verify(w)
            expect(why is None, "fetched content: %s" % why)
            recs = self.new_records(m, lambda: any(get(r, "destination.domain") == host
                                                   for r in audit.records()[m:]))
            ok = [r for r in recs if get(r, "destination.domain") == host and "allowed" in
                  harness.as_list(get(r, "event.type"))]
            denied = [r for r in recs if "denied" in harness.as_list(get(r, "event.type"))]
            def side(d):     # a side host, by name or as a parent domain
                return next((k for k in side_hosts if d and (d == k or d.endswith("." + k))), None)
            bad = [r for r in denied if side(get(r, "destination.domain") or get(r, "url.domain")) is None]
            for k in sorted({side(get(r, "destination.domain") or get(r, "url.domain")) for r in denied} - {None}):
                self.note("asks %s too (refused here, harmless: %s)" % (k, side_hosts[k]))
            expect(ok, "no allowed audit record for %s among %d new: %s" % (
                host, len(recs), [json.dumps(r)[:200] for r in recs[:3]]))
            expect(not bad, "refusals during the allowed fetch: %s" % [
                (get(r, "destination.domain"), get(r, "event.reason")) for r in bad])
            self.row["cases"]["allowed"] = "ok: %d record(s), %s" % (
                len(ok), ", ".join(sorted({"%s %s" % (get(r, "http.request.method"), get(r, "event.reason"))
                                           for r in ok})))

        with ctx.case("%s: fetch from a host not in the policy -> 403 host_not_allowed, audited, "
                      "nothing fetched" % self.client):
            env = dict(self.env(), **extra)
            m = audit.mark()
            p, w = self.run(fetch, "denied", env, "denied")
            out, err = self.text(p)
            expect(verify(w) is not None, "the refused fetch delivered its content")
            if p.returncode == 0 and not exit0_known:
                self.note("exits 0 when a host is refused (%s): check the result, not the exit status"
                          % message(out, err)[:100])
            recs = self.wait_records(m, lambda r: DENIED in (get(r, "destination.domain"),
                                                             get(r, "url.domain")))
            expect(recs, "no audit record for %s" % DENIED)
            for rec in recs:    # a client may retry, or ask for several files
                harness.check_denied_record(rec, "host_not_allowed", 403)
            msg = message(out, err)
            shows = "403" in out + err
            self.row["cases"]["denied"] = {"exit": p.returncode, "message": msg, "shows_403": shows}
            self.row["refusal"] = "exit %d; `%s`%s" % (
                p.returncode, msg.replace("|", "/").replace("`", "'"),
                ("; " + refusal_where if refusal_where else "") if shows else
                " (the 403 is not shown%s)" % (": " + refusal_where if refusal_where else ""))
            lines.append("denied: exit %d, %r, 403 shown: %s" % (p.returncode, msg, shows))

        if reason_shown:
            how, venv = reason_shown
            with ctx.case("%s: the refusal's reason code reaches the job with %s" % (self.client, how)):
                env = dict(self.env(), **venv)
                p, w = self.run(fetch, "denied", env, "denied-verbose")
                out, err = self.text(p)
                expect("host_not_allowed" in out + err, "no host_not_allowed in the output: %s" %
                       (err or out)[-400:])
                self.row["refusal"] += "; the reason code `host_not_allowed` shows with %s" % how

        with ctx.case("%s: fetch from 169.254.169.254 -> 403 blocked_address, audited, the metadata "
                      "listener never reached" % self.client):
            env = dict(self.env(), **extra)
            m = audit.mark()
            before = len(self.meta.accepts())
            p, w = self.run(fetch, "metadata", env, "metadata")
            out, err = self.text(p)
            expect(verify(w) is not None, "the refused fetch delivered its content")
            if p.returncode == 0 and not exit0_known:
                self.note("exits 0 when the metadata address is refused (%s): check the result, "
                          "not the exit status" % message(out, err)[:100])
            recs = self.wait_records(m, lambda r: META in (get(r, "destination.ip"), get(r, "url.domain")))
            expect(recs, "no record for %s; new: %s" % (META, [
                (get(r, "destination.ip"), get(r, "event.reason")) for r in audit.records()[m:]]))
            for rec in recs:
                harness.check_denied_record(rec, "blocked_address", 403)
            expect(len(self.meta.accepts()) == before, "the metadata listener was reached")
            self.row["cases"]["metadata"] = {"exit": p.returncode, "message": message(out, err)}

        # The proxy variables: measurements for the matrix, not pass/fail cases by themselves
        # (a client that ignores one is a fact to document); the case after them asserts the
        # one thing a job relies on.
        for label, proxies, which, honoured in VAR_PROBES:
            if not env_proxy:
                break
            env = dict(self.env(proxies), **extra)
            rm, om = self.relay.mark(), len(self.origin_log())
            target = {"allowed": host, "internal": INTERNAL, "ip": ORIGIN}[which]
            p, w = self.run(fetch, which, env, "probe")
            ok = p.returncode == 0 and verify(w) is None
            # the client has exited: each connection it made to the relay has been accepted
            via = target in self.relay.targets_since(rm)
            direct = self.origin_requests(om)
            if honoured == "via":
                result = ("yes" if ok and via else "no (went direct)" if ok and direct
                          else "no (fetch failed: exit %d)" % p.returncode)
            else:
                # Portcullis allows neither the internal name nor the bare address, so a fetch that
                # worked went straight to the origin; the relay says whether the proxy was asked.
                result = ("yes" if ok and direct and not via else "no (sent to the proxy)" if via
                          else "no (fetch failed: exit %d)" % p.returncode)
            self.row["vars"][label] = result
            lines.append("probe %s: %s" % (label, result))
        if env_proxy:
            with ctx.case("%s: honours HTTPS_PROXY or https_proxy (what runner pods set)" % self.client):
                got = [self.row["vars"][k] for k in ("HTTPS_PROXY", "https_proxy")]
                expect("yes" in got, "HTTPS_PROXY: %s; https_proxy: %s" % tuple(got))

        with ctx.case(("%s: a proxy URL with user:pass reaches the proxy (credentials probed with a "
                       "stand-in answering 407)" if not creds_unsupported else
                       "%s: a proxy URL with user:pass: measured whether it is used; nothing is fetched "
                       "around the proxy") % self.client):
            url = "http://ci-job:s3cret@127.0.0.1:%d" % STANDIN_PORT
            env = dict(self.env({"HTTPS_PROXY": url, "https_proxy": url, "HTTP_PROXY": url,
                                 "http_proxy": url, "ALL_PROXY": url}), **extra)
            m = self.standin.mark()
            p, w = self.run(fetch, "allowed", env, "creds")
            heads = self.standin.since(m)
            if not heads and creds_unsupported:
                self.row["credentials"] = creds_unsupported
                heads = [(0, "", False)]   # measured: the client does not use such a URL
                expect(verify(w) is not None, "fetched through no proxy at all with a user:pass proxy URL")
            expect(heads, "the stand-in proxy got no request (exit %s)" % p.returncode)
            if self.row["credentials"]:
                result = self.row["credentials"]
            elif heads[0][2]:
                result = "up front"
            elif any(h[2] for h in heads):
                result = "after a 407"
            else:
                result = "never (gives up on the 407)"
            self.row["credentials"] = result
            lines.append("credentials: %s (%d request heads)" % (result, len(heads)))
        for ln in lines:
            print("# %s" % ln, flush=True)

    def note(self, text):
        self.row["notes"].append(text)

    def finish(self):
        self.row["seconds"] = round(time.monotonic() - self.t0, 1)
        failed_before = self.ctx.failed
        self.ctx.final_checks([self.px.audit])
        self.row["works"] = failed_before == 0 and self.ctx.failed == 0
        out = os.environ.get("PORTCULLIS_CLIENTS_RESULTS")
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(self.row) + "\n")


def run(argv, env, cwd=None, timeout=60, input=None):
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=timeout,
                          stdin=None if input is not None else subprocess.DEVNULL, input=input,
                          preexec_fn=harness.die_with_me())
