#!/usr/bin/python3
"""Scenario 10: running it like a production service (issue 6).

Admin listener: /metrics (Prometheus text 0.0.4, checked by promcheck.py and by
`promtool check metrics`), /healthz, /readyz, 404 / 405, one request per
connection; slow and silent scrapers are cut after 5 s and never delay a CONNECT.
Metrics: after real traffic (tunnels in two tiers, refusals, an unknown source,
nxdomain and nodata) every counter and histogram count moved by exactly the
right amount, and agrees with the audit records; gauges for open connections
and tunnels; bounded label sets; build, policy and process metrics.
Reload: SIGHUP (the new file bind-mounted over the old, so no inotify event can
be the trigger) with a tunnel open to a host the new policy removes; inotify on
a plain file (rename, two-part in-place write); unchanged content does nothing;
a broken file keeps the old policy (errors with line:col, failure counter);
settings that cannot change at run time are named in a warning; the Kubernetes
ConfigMap ..data symlink swap, twice.
Logs: SIGUSR1 after renaming the audit file, under load: every record in
exactly one of the two files, none split.  A stalled FIFO reader: new
connections fail closed with 503 audit_unavailable, an open tunnel keeps
working, service comes back when the reader reads again, and every connection
is either delivered or counted as lost.
Readiness: unready while the pinned dnsmasq is stopped (SIGSTOP) or gone,
ready again when it answers; unready while draining; portcullis_ready follows /readyz.
"""
import collections
import copy
import hashlib
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import promcheck  # noqa: E402
from harness import expect, get, log_mark, log_since, write_atomic  # noqa: E402

GOOD = "198.51.100.10"
T = "allowed.example:8080"
PROMTOOL = "/usr/bin/promtool"
HIST = ("portcullis_dns_lookup_duration_seconds", "portcullis_upstream_connect_duration_seconds",
        "portcullis_tunnel_setup_duration_seconds")
FAMILIES = {
    "portcullis_connections_total": "counter",
    "portcullis_connections_active": "gauge",
    "portcullis_tunnels_active": "gauge",
    "portcullis_tunnel_bytes_total": "counter",
    "portcullis_dns_lookup_duration_seconds": "histogram",
    "portcullis_upstream_connect_duration_seconds": "histogram",
    "portcullis_tunnel_setup_duration_seconds": "histogram",
    "portcullis_dns_errors_total": "counter",
    "portcullis_policy_reloads_total": "counter",
    "portcullis_policy_info": "gauge",
    "portcullis_policy_load_timestamp_seconds": "gauge",
    "portcullis_audit_records_lost_total": "counter",
    "portcullis_ready": "gauge",
    "portcullis_build_info": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}
LABELS = {   # family -> exact label names of its samples (histograms: besides le)
    "portcullis_connections_total": {"tier", "decision", "reason"},
    "portcullis_connections_active": set(),
    "portcullis_tunnels_active": {"tier"},
    "portcullis_tunnel_bytes_total": {"tier", "direction"},
    "portcullis_dns_errors_total": {"kind"},
    "portcullis_policy_reloads_total": {"result"},
    "portcullis_policy_info": {"sha256"},
    "portcullis_policy_load_timestamp_seconds": set(),
    "portcullis_audit_records_lost_total": set(),
    "portcullis_ready": set(),
    "portcullis_build_info": {"version", "libevent", "cares", "openssl"},
}
NO_TIER = "(none)"   # the tier label for a source that has no tier (outside the tier-name alphabet)
DNS_KINDS = {"nxdomain", "nodata", "error", "timeout"}
ALL_REASONS = set(harness.REASON_STATUS) | harness.CLOSE_REASONS
LONG_TIER = "stall" + "-x" * 29                                     # 63 characters
LONG_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 53, "example"])   # 253 characters

SCRAPES = []     # (where, body) of every exposition fetched: all are checked at the end


# --------------------------------------------------------------------------
# Admin client
# --------------------------------------------------------------------------

class AdminReply:
    def __init__(self):
        self.status = None
        self.headers = []
        self.body = b""
        self.raw = b""
        self.closed = False
        self.error = None
        self.elapsed = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def describe(self):
        if self.error:
            return self.error
        return "got %r" % self.raw[:160]


def admin_port(px):
    return int(px.policy["listen"]["admin"].rsplit(":", 1)[1])


def admin(port, path="/metrics", method="GET", raw=None, timeout=5.0):
    """One request to the admin listener on 127.0.0.1:port; reads to EOF (or timeout)."""
    r = AdminReply()
    t0 = time.monotonic()
    s = socket.socket()
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
    except OSError as e:
        s.close()
        r.error = "connect to the admin listener 127.0.0.1:%d failed: %s" % (port, e)
        return r
    req = raw if raw is not None else (
        "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: portcullis-it\r\nAccept: */*\r\n%s\r\n" %
        (method, path, port, "Content-Length: 0\r\n" if method in ("POST", "PUT") else "")).encode()
    buf = b""
    try:
        s.sendall(req)
        deadline = t0 + timeout
        while len(buf) < 8 << 20:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            d = s.recv(65536)
            if not d:
                r.closed = True
                break
            buf += d
    except socket.timeout:
        r.error = "%s %s: no EOF within %.1fs (got %r)" % (method, path, timeout, buf[:120])
    except OSError as e:
        r.error = "%s %s: %s (got %r)" % (method, path, e, buf[:120])
        r.closed = True
    finally:
        s.close()
    r.elapsed = time.monotonic() - t0
    r.raw = buf
    i = buf.find(b"\r\n\r\n")
    if i >= 0:
        head = buf[:i].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})(?: |$)", head[0])
        r.status = int(m.group(1)) if m else None
        for ln in head[1:]:
            k, _, v = ln.partition(":")
            r.headers.append((k.strip(), v.strip()))
        r.body = buf[i + 4:]
        if r.status is None and not r.error:
            r.error = "bad status line %r" % head[0]
    elif not r.error:
        r.error = "%s %s: no response head (got %r)" % (method, path, buf[:120])
    return r


def started(px, timeout=5.0):
    """px.start(), then also wait (bounded) for its admin listener, which comes up on its own
    thread; a proxy whose admin port never opens is reported through start_error."""
    px.start()
    if px.start_error is None and not harness.wait_until(
            lambda: not px.alive() or harness.port_open("127.0.0.1", admin_port(px)), timeout):
        px.start_error = "admin listener 127.0.0.1:%d not accepting after %.0fs" % (admin_port(px), timeout)
        print("# %s: %s" % (px.name, px.start_error), flush=True)
    return px


def admin_wait(port, path, pred, timeout, interval=0.25):
    """Ask port for path until pred(reply); the reply that satisfied it, or None at timeout."""
    return harness.wait_until(lambda: (lambda x: x if pred(x) else None)(admin(port, path)), timeout, interval)


def expect_admin(r, status, body=None, what=""):
    expect(r.status is not None, "%s%s" % (what, r.describe()))
    expect(r.status == status, "%sstatus %s, want %d (body %r)" % (what, r.status, status, r.body[:120]))
    if body is not None:
        expect(r.body == body, "%sbody %r, want %r" % (what, r.body[:200], body))
    expect("close" in (r.header("Connection") or "").lower(),
           "%sno 'Connection: close' (headers %r)" % (what, r.headers))
    expect(r.closed, "%sconnection not closed after the response" % what)
    cl = r.header("Content-Length")
    if cl is not None:
        expect(cl.isdigit() and int(cl) == len(r.body),
               "%sContent-Length %s, body has %d bytes" % (what, cl, len(r.body)))


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------

class Metrics:
    def __init__(self, fams, text):
        self.fams = fams
        self.text = text
        self.by_name = collections.defaultdict(list)
        for f in fams.values():
            for s in f.samples:
                self.by_name[s.name].append(s)

    def series(self, name):
        return self.by_name.get(name, [])

    def v(self, name, **labels):
        """Sum of the samples called name whose labels include labels (0 when none)."""
        return sum(s.value for s in self.series(name)
                   if all(s.labels.get(k) == want for k, want in labels.items()))

    def one(self, name, **labels):
        got = [s for s in self.series(name) if all(s.labels.get(k) == w for k, w in labels.items())]
        expect(len(got) == 1, "%d samples %s%s, want exactly one" % (len(got), name, labels or ""))
        return got[0].value

    def table(self, name, keys):
        """{(label values...): value} for every sample called name."""
        return {tuple(s.labels.get(k) for k in keys): s.value for s in self.series(name)}

    def buckets(self, name):
        return {s.labels.get("le"): s.value for s in self.series(name + "_bucket")}


def scrape(px, where="", timeout=3.0):
    r = admin(admin_port(px), "/metrics", timeout=timeout)
    expect(r.status == 200, "GET /metrics on %s: %s" % (px.name, r.describe() if r.status is None else
                                                       "status %s, body %r" % (r.status, r.body[:160])))
    SCRAPES.append(("%s %s" % (px.name, where), r.body))
    fams, _probs = promcheck.check(r.body)   # problems are reported by the format cases
    return Metrics(fams, r.body.decode("utf-8", "replace"))


def delta(after, before, name, **labels):
    return after.v(name, **labels) - before.v(name, **labels)


def wait_metric(px, pred, timeout=3.0, interval=0.1):
    """Scrape until pred(metrics) is true; returns the last scrape."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(px)
        if pred(m) or time.monotonic() >= deadline:
            return m
        time.sleep(interval)


# --------------------------------------------------------------------------
# Operational log, policy files, processes
# --------------------------------------------------------------------------

def level(rec):
    return rec.get("log.level") or get(rec, "log.level")


def policy_text(pol):
    return harness.to_yaml(pol) + "\n"


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def proc_stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    # fields[0] is field 3 (state): utime is field 14, stime 15, starttime 22
    return {"cpu": (int(fields[11]) + int(fields[12])) / tck, "start_ticks": int(fields[19]), "tck": tck}


def proc_start_time(pid):
    with open("/proc/stat") as f:
        btime = next(int(ln.split()[1]) for ln in f if ln.startswith("btime "))
    st = proc_stat(pid)
    return btime + st["start_ticks"] / st["tck"]


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith(key + ":"):
                return int(ln.split()[1]) * 1024
    return None


def proc_nofile_soft(pid):
    with open("/proc/%d/limits" % pid) as f:
        for ln in f:
            if ln.startswith("Max open files"):
                v = ln.split()[3]
                return math.inf if v == "unlimited" else int(v)
    return None


def broken_lines(data):
    """Lines of an audit stream that are not one whole JSON object each."""
    bad = []
    for ln in data.split(b"\n"):
        if not ln.strip():
            continue
        try:
            ok = isinstance(json.loads(ln), dict)
        except ValueError:
            ok = False
        if not ok:
            bad.append(ln[:100])
    return bad


def open_hold(target=T, src="127.0.0.2", port=3128):
    r = harness.connect(target, src=src, proxy_port=port)
    expect(r.status == 200, "CONNECT %s from %s via :%d: %s" % (target, src, port, r.describe()))
    r.sock.sendall(b"HOLD\n")
    line = harness.recv_line(r.sock, r.leftover, timeout=5)
    expect(line == b"HOLD ok\n", "HOLD tunnel answered %r" % line)
    return r


def echo(r, payload, timeout=5.0):
    r.sock.sendall(payload)
    got = harness.recv_exact(r.sock, len(payload), timeout=timeout)
    return got == payload


def served(target, src="127.0.0.2", port=3128):
    r, ans = harness.say(target, "hello", src=src, proxy_port=port)
    return r, ans == b"hello\n"


def denied(px, target, reason, status=403, src="127.0.0.2"):
    r = harness.connect(target, src=src, proxy_port=px.port)
    harness.expect_refusal(r, status, reason, audit=px.audit)
    return r


# --------------------------------------------------------------------------

ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    m = re.search(r"version\s*:\s*'([^']+)'", open(os.path.join(ctx.srcdir, "meson.build")).read()) \
        if os.path.exists(os.path.join(ctx.srcdir, "meson.build")) else None
    version = m.group(1) if m else None

    ups = harness.Upstreams(ctx, [{"name": "raw", "host": GOOD, "port": 8080}])
    records = [("allowed.example", GOOD), ("other.example", GOOD), ("new.example", GOOD)]
    dns_extra = ["--txt-record=nodata.example,nothing-here"]
    # .invalid is local too: the readiness probe (readyz.portcullis.invalid) gets NXDOMAIN,
    # as a cluster resolver would answer it.
    dns = harness.Dnsmasq(ctx, "127.0.0.53", records, name="pinned", local=("example", "test", "invalid"),
                          extra=dns_extra)

    main_tiers = {
        "alpha": {"sources": ["127.0.0.2/32"],
                  "allow": [{"host": "allowed.example", "ports": [8080]},
                            {"host": "nx.example", "ports": [8080]},
                            {"host": "nodata.example", "ports": [8080]}]},
        "beta": {"sources": ["127.0.0.3/32"], "allow": [{"host": "allowed.example", "ports": [8080]}]},
    }
    t_start_wall = time.time()
    m0 = None
    TIMINGS_SLOW = None
    READY_M = None
    px = started(harness.Proxy(ctx, "main", main_tiers))
    APORT = admin_port(px)

    # ------------------------------------------------------------ endpoints
    with ctx.case("GET /healthz -> 200 \"ok\\n\", Connection: close, connection closed"):
        expect_admin(admin(APORT, "/healthz"), 200, b"ok\n")

    with ctx.case("GET /readyz -> 200 \"ready\\n\" once the pinned resolver answered (<= 5s after start)"):
        r = admin_wait(APORT, "/readyz", lambda x: x.status == 200, 5) or admin(APORT, "/readyz")
        expect_admin(r, 200, b"ready\n")

    with ctx.case("GET /metrics -> 200, Content-Type text/plain; version=0.0.4"):
        r = admin(APORT, "/metrics")
        expect_admin(r, 200)
        ct = (r.header("Content-Type") or "").replace(" ", "").lower()
        expect(ct in ("text/plain;version=0.0.4", "text/plain;version=0.0.4;charset=utf-8"),
               "Content-Type %r" % r.header("Content-Type"))
        SCRAPES.append(("main first", r.body))

    with ctx.case("unknown paths -> 404 (/, /nope, /metrics/, /metricsx, /healthz/extra)"):
        for p in ("/", "/nope", "/metrics/", "/metricsx", "/healthz/extra"):
            expect_admin(admin(APORT, p), 404, what="GET %s: " % p)

    with ctx.case("non-GET methods -> 405 (POST /metrics, PUT /healthz, DELETE /readyz, HEAD /metrics)"):
        for meth, p in (("POST", "/metrics"), ("PUT", "/healthz"), ("DELETE", "/readyz"), ("HEAD", "/metrics")):
            r = admin(APORT, p, method=meth)
            expect(r.status == 405, "%s %s: status %s, want 405 (%s)" % (meth, p, r.status, r.describe()))
            expect("close" in (r.header("Connection") or "").lower() and r.closed,
                   "%s %s: not closed with Connection: close" % (meth, p))

    with ctx.case("405 responses carry Allow: GET (RFC 9110 15.5.6)"):
        r = admin(APORT, "/metrics", method="POST")
        allow = r.header("Allow") or ""
        expect("GET" in [a.strip() for a in allow.split(",")], "Allow header %r (headers %r)" % (allow, r.headers))

    with ctx.case("one request per connection: two pipelined requests get one response, then EOF"):
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        r = admin(APORT, raw=req + req)
        expect_admin(r, 200, b"ok\n")
        expect(r.raw.count(b"HTTP/1.") == 1, "%d responses: %r" % (r.raw.count(b"HTTP/1."), r.raw[:300]))

    with ctx.case("a malformed admin request gets a 4xx or a close; the admin listener keeps serving"):
        r = admin(APORT, raw=b"\x16\x03\x01\x00\xff garbage\r\n\r\n", timeout=7)
        expect(r.closed, "connection not closed: %s" % r.describe())
        expect(r.status is None or 400 <= r.status < 500, "status %s" % r.status)
        expect_admin(admin(APORT, "/healthz"), 200, b"ok\n", what="afterwards: ")

    # ------------------------------------------------------------ static metrics
    with ctx.case("the exposition has every contract family with its type, HELP and TYPE"):
        m0 = scrape(px, "start")
        expect(m0.fams, "empty exposition")
        missing = [n for n in FAMILIES if n not in m0.fams]
        expect(not missing, "families missing: %s" % missing)
        wrong = ["%s is %s, want %s" % (n, m0.fams[n].type, t) for n, t in FAMILIES.items()
                 if m0.fams[n].type != t]
        expect(not wrong, "; ".join(wrong))
        nohelp = [n for n in FAMILIES if not (m0.fams[n].help or "").strip()]
        expect(not nohelp, "no HELP text: %s" % nohelp)

    with ctx.case("histograms: buckets in seconds (smallest < 50ms, largest <= 120s), +Inf, zero at start"):
        expect(m0 is not None, "no exposition")
        for h in HIST:
            b = m0.buckets(h)
            expect("+Inf" in b, "%s has no le=\"+Inf\" bucket: %s" % (h, sorted(b)))
            fin = sorted(float(x) for x in b if x != "+Inf")
            expect(len(fin) >= 4, "%s has %d finite buckets" % (h, len(fin)))
            expect(fin[0] < 0.05 and fin[-1] <= 120, "%s buckets %s do not look like seconds" % (h, fin))
            expect(m0.v(h + "_count") == 0 and m0.v(h + "_sum") == 0,
                   "%s count %s sum %s before any traffic" % (h, m0.v(h + "_count"), m0.v(h + "_sum")))

    with ctx.case("portcullis_build_info{version=%s,libevent,cares,openssl} 1" % version):
        expect(m0 is not None, "no exposition")
        s = m0.series("portcullis_build_info")
        expect(len(s) == 1, "%d build_info series" % len(s))
        lab = s[0].labels
        expect(s[0].value == 1, "value %r" % s[0].value)
        expect(lab.get("version") == version, "version label %r, meson.build says %r" % (lab.get("version"), version))
        for k in ("libevent", "cares", "openssl"):
            expect(re.search(r"\d+\.\d+", lab.get(k, "")), "%s label %r is not a version" % (k, lab.get(k)))

    with ctx.case("policy metrics at start: info{sha256 of the file} 1, load time, reloads 0/0, audit lost 0"):
        expect(m0 is not None, "no exposition")
        s = m0.series("portcullis_policy_info")
        expect(len(s) == 1, "%d policy_info series" % len(s))
        expect(s[0].value == 1, "value %r" % s[0].value)
        want = sha256_file(px.policy_path)
        expect(s[0].labels.get("sha256") == want, "sha256 %r, the file's is %s" % (s[0].labels.get("sha256"), want))
        ts = m0.one("portcullis_policy_load_timestamp_seconds")
        expect(t_start_wall - 1 <= ts <= time.time() + 1, "load timestamp %s, proxy started at %.1f" %
               (ts, t_start_wall))
        expect(m0.v("portcullis_policy_reloads_total", result="success") == 0 and
               m0.v("portcullis_policy_reloads_total", result="failure") == 0,
               "reloads %s" % m0.table("portcullis_policy_reloads_total", ["result"]))
        expect(m0.one("portcullis_audit_records_lost_total") == 0, "audit records lost at start")

    with ctx.case("process metrics agree with /proc (start time, fds, max fds, RSS, CPU)"):
        pid = px.proc.pid
        cpu0 = proc_stat(pid)["cpu"]
        m1 = scrape(px, "process")
        cpu1 = proc_stat(pid)["cpu"]
        nfd = len(os.listdir("/proc/%d/fd" % pid))
        st = m1.one("process_start_time_seconds")
        want = proc_start_time(pid)
        expect(abs(st - want) < 1.5, "process_start_time_seconds %.2f, /proc says %.2f" % (st, want))
        fds = m1.one("process_open_fds")
        expect(abs(fds - nfd) <= 4, "process_open_fds %s, /proc/%d/fd has %d" % (fds, pid, nfd))
        mx = m1.one("process_max_fds")
        expect(mx == proc_nofile_soft(pid), "process_max_fds %s, soft RLIMIT_NOFILE %s" % (mx, proc_nofile_soft(pid)))
        rss = m1.one("process_resident_memory_bytes")
        vm_rss = proc_status(pid, "VmRSS")
        expect(0.5 * vm_rss <= rss <= 2 * vm_rss, "process_resident_memory_bytes %s, VmRSS %s" % (rss, vm_rss))
        vsz = m1.one("process_virtual_memory_bytes")
        vm_size = proc_status(pid, "VmSize")
        expect(0.9 * vm_size <= vsz <= 1.1 * vm_size and vsz >= rss,
               "process_virtual_memory_bytes %s, VmSize %s, RSS %s" % (vsz, vm_size, rss))
        cpu = m1.one("process_cpu_seconds_total")
        expect(cpu0 - 0.1 <= cpu <= cpu1 + 0.1, "process_cpu_seconds_total %s, /proc says %.2f..%.2f" %
               (cpu, cpu0, cpu1))

    with ctx.case("threads named by role; the audit writer and admin never preempt a worker"):
        # /proc/PID/task/TID/stat field 41 is the scheduling policy: 0 SCHED_OTHER, 3 SCHED_BATCH
        pid = px.proc.pid
        roles = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                policy = int(f.read().rsplit(")", 1)[1].split()[38])
            roles.setdefault(comm, []).append(policy)
        expect(roles.get("portcullis") == [0], "main thread (the process name): %r" % roles)
        workers = {k: v for k, v in roles.items() if k.startswith("pc-worker")}
        expect(workers and all(v == [0] for v in workers.values()),
               "workers must stay SCHED_OTHER: %r" % roles)
        for bg in ("pc-audit", "pc-admin"):
            expect(roles.get(bg) == [3], "%s must be one SCHED_BATCH thread: %r" % (bg, roles))

    # ------------------------------------------------------------ exact deltas
    # Traffic: 3 tunnels in alpha and 1 in beta (HOLD + payload, closed by the client),
    # host_not_allowed, port_not_allowed, an unknown source, nxdomain, nodata, an unknown method.
    # Expected: connections_total by series; bytes per tier and direction; one DNS lookup per
    # name resolved (4 tunnels + nx + nodata), one connect and one setup per tunnel.
    payloads = {("alpha", 0): 1000, ("alpha", 1): 2000, ("alpha", 2): 3000, ("beta", 0): 4096}
    exp_conns = {("alpha", "allow", "client_closed"): 3, ("beta", "allow", "client_closed"): 1,
                 ("alpha", "deny", "host_not_allowed"): 1, ("alpha", "deny", "port_not_allowed"): 1,
                 (NO_TIER, "deny", "unknown_source"): 1, ("alpha", "deny", "dns_nxdomain"): 1,
                 ("alpha", "deny", "dns_error"): 1}
    exp_bytes = {("alpha", "upload"): 6000 + 3 * 5, ("alpha", "download"): 6000 + 3 * 8,
                 ("beta", "upload"): 4096 + 5, ("beta", "download"): 4096 + 8}
    traffic_ok = False
    with ctx.case("real traffic: 4 tunnels, 6 refusals, all as expected (the input of the next cases)"):
        mark = px.audit.mark()
        before = scrape(px, "before traffic")
        ports = []
        for (tier, i), n in payloads.items():
            src = "127.0.0.2" if tier == "alpha" else "127.0.0.3"
            r = open_hold(src=src)
            expect(echo(r, os.urandom(n)), "%s tunnel %d: echo of %d bytes failed" % (tier, i, n))
            r.close()
            ports.append(r.src_port)
        ports.append(denied(px, "denied.example:8080", "host_not_allowed").src_port)
        ports.append(denied(px, "allowed.example:9999", "port_not_allowed").src_port)
        ports.append(denied(px, T, "unknown_source", src="127.0.0.9").src_port)
        ports.append(denied(px, "nx.example:8080", "dns_nxdomain", status=502).src_port)
        ports.append(denied(px, "nodata.example:8080", "dns_error", status=502).src_port)
        r = harness.send_raw(b"BOGUS / HTTP/1.1\r\n\r\n", timeout=5)
        expect(r.status == 400 and r.reason == "bad_request", "BOGUS request: %s" % r.describe())
        ports.append(r.src_port)
        for p in ports[:4]:
            rec = px.audit.by_port(p)
            expect(rec is not None, "no audit record for tunnel from port %d" % p)
            expect(get(rec, "event.reason") == "client_closed", "tunnel closed with %r" % get(rec, "event.reason"))
        expect(harness.wait_until(lambda: len(px.audit.records()) >= mark + len(ports), 5),
               "%d new audit records, want %d" % (len(px.audit.records()) - mark, len(ports)))
        time.sleep(0.3)
        new_recs = px.audit.records()[mark:]
        expect(len(new_recs) == len(ports), "%d new audit records, want %d" % (len(new_recs), len(ports)))
        res = harness.curl(["http://127.0.0.1:%d/metrics" % APORT])   # the SRE's way
        expect(res["rc"] == 0 and res["code"] == "200", "curl /metrics: rc %s code %s %s" %
               (res["rc"], res["code"], res["stderr"][:200]))
        SCRAPES.append(("main after traffic (curl)", res["body"].encode()))
        fams, _ = promcheck.check(res["body"])
        after = Metrics(fams, res["body"])
        traffic_ok = True

    with ctx.case("connections_total moved by exactly the expected amount in each series, nothing else"):
        expect(traffic_ok, "no traffic")
        keys = ["tier", "decision", "reason"]
        tb, ta = before.table("portcullis_connections_total", keys), after.table("portcullis_connections_total", keys)
        moved = {k: ta.get(k, 0) - tb.get(k, 0) for k in set(ta) | set(tb) if ta.get(k, 0) != tb.get(k, 0)}
        # the BOGUS request: refused before identity may or may not be applied, so any tier
        bad = {k: v for k, v in moved.items() if k[1:] == ("deny", "bad_request")}
        expect(sum(bad.values()) == 1, "bad_request series moved %s, want +1 in one series" % bad)
        rest = {k: v for k, v in moved.items() if k not in bad}
        expect(rest == exp_conns, "moved %s, want %s" % (sorted(rest.items()), sorted(exp_conns.items())))

    with ctx.case("connections_total: one increment per audit record, same tier/decision/reason as the record"):
        expect(traffic_ok, "no traffic")
        from_audit = collections.Counter(
            (get(r, "rule.ruleset") or NO_TIER, "allow" if get(r, "event.outcome") == "success" else "deny",
             get(r, "event.reason")) for r in new_recs)
        keys = ["tier", "decision", "reason"]
        tb, ta = before.table("portcullis_connections_total", keys), after.table("portcullis_connections_total", keys)
        moved = {k: ta.get(k, 0) - tb.get(k, 0) for k in set(ta) | set(tb) if ta.get(k, 0) != tb.get(k, 0)}
        expect(dict(from_audit) == moved, "audit records say %s, metrics moved %s" %
               (sorted(from_audit.items()), sorted(moved.items())))

    with ctx.case("tunnel_bytes_total{tier,direction} moved by exactly the bytes relayed (and the audit's)"):
        expect(traffic_ok, "no traffic")
        got = {k: delta(after, before, "portcullis_tunnel_bytes_total", tier=k[0], direction=k[1]) for k in exp_bytes}
        expect(got == exp_bytes, "moved %s, want %s" % (got, exp_bytes))
        aud = collections.Counter()
        for r in new_recs:
            if get(r, "event.outcome") == "success":
                aud[(get(r, "rule.ruleset"), "upload")] += get(r, "source.bytes") or 0
                aud[(get(r, "rule.ruleset"), "download")] += get(r, "destination.bytes") or 0
        expect(dict(aud) == exp_bytes, "audit records sum to %s" % dict(aud))
        others = [s for s in after.series("portcullis_tunnel_bytes_total")
                  if (s.labels.get("tier"), s.labels.get("direction")) not in exp_bytes
                  and s.value != before.v("portcullis_tunnel_bytes_total", **s.labels)]
        expect(not others, "other series moved: %s" % others)

    with ctx.case("histogram counts: dns_lookup +6, upstream_connect +4, tunnel_setup +4; buckets consistent"):
        expect(traffic_ok, "no traffic")
        want = {"portcullis_dns_lookup_duration_seconds": 6, "portcullis_upstream_connect_duration_seconds": 4,
                "portcullis_tunnel_setup_duration_seconds": 4}
        probs = []
        for h, n in want.items():
            dc = delta(after, before, h + "_count")
            if dc != n:
                probs.append("%s_count moved by %s, want %d" % (h, dc, n))
            ds = delta(after, before, h + "_sum")
            if not (0 < ds < n * 5.0):
                probs.append("%s_sum moved by %r for %d observations" % (h, ds, n))
            bb, ba = before.buckets(h), after.buckets(h)
            if set(bb) != set(ba):
                probs.append("%s bucket bounds changed: %s -> %s" % (h, sorted(bb), sorted(ba)))
            elif ba.get("+Inf", 0) - bb.get("+Inf", 0) != n:
                probs.append("%s +Inf bucket moved by %s" % (h, ba.get("+Inf", 0) - bb.get("+Inf", 0)))
            elif any(not (0 <= ba[k] - bb[k] <= n) for k in ba):
                probs.append("%s bucket deltas %s" % (h, {k: ba[k] - bb[k] for k in ba}))
        expect(not probs, "; ".join(probs))

    with ctx.case("dns_errors_total{kind}: nxdomain +1, nodata +1, error +0, timeout +0"):
        expect(traffic_ok, "no traffic")
        got = {k: delta(after, before, "portcullis_dns_errors_total", kind=k) for k in DNS_KINDS}
        expect(got == {"nxdomain": 1, "nodata": 1, "error": 0, "timeout": 0}, "moved %s" % got)

    with ctx.case("label sets are bounded: exact label names, known values, no host name or IP anywhere"):
        expect(traffic_ok, "no traffic")
        probs = []
        for fam, want in LABELS.items():
            for s in after.series(fam) if after.fams.get(fam) and after.fams[fam].type != "histogram" else []:
                if set(s.labels) != want:
                    probs.append("%s labels %s, want %s" % (fam, sorted(s.labels), sorted(want)))
        for h in HIST:
            for s in after.series(h + "_bucket"):
                if set(s.labels) != {"le"}:
                    probs.append("%s_bucket labels %s" % (h, sorted(s.labels)))
        tiers = {"alpha", "beta", NO_TIER}
        for s in after.series("portcullis_connections_total"):
            lab = s.labels
            if lab.get("tier") not in tiers or lab.get("decision") not in ("allow", "deny") or \
                    lab.get("reason") not in ALL_REASONS:
                probs.append("connections_total%s" % lab)
        for s in after.series("portcullis_tunnel_bytes_total"):
            if s.labels.get("tier") not in tiers or s.labels.get("direction") not in ("upload", "download"):
                probs.append("tunnel_bytes_total%s" % s.labels)
        for s in after.series("portcullis_tunnels_active"):
            if s.labels.get("tier") not in tiers:
                probs.append("tunnels_active%s" % s.labels)
        for s in after.series("portcullis_dns_errors_total"):
            if s.labels.get("kind") not in DNS_KINDS:
                probs.append("dns_errors_total%s" % s.labels)
        for s in after.series("portcullis_policy_reloads_total"):
            if s.labels.get("result") not in ("success", "failure"):
                probs.append("policy_reloads_total%s" % s.labels)
        ipish = re.compile(r"\d+\.\d+\.\d+\.\d+|[0-9a-f]*:[0-9a-f]*:[0-9a-f:]*")
        for f in after.fams.values():
            for s in f.samples:
                for k, val in s.labels.items():
                    if "example" in val or ipish.search(val) and k != "le" or "127.0.0." in val:
                        probs.append("%s{%s=%r}: a host name or address as a label value" % (s.name, k, val))
        for ln in after.text.splitlines():
            if not ln.startswith("#") and ("127.0.0." in ln or GOOD in ln or "example" in ln):
                probs.append("sample line names a host or source: %r" % ln[:120])
        nser = sum(len(f.samples) for f in after.fams.values())
        if nser > 3000:
            probs.append("%d series" % nser)
        expect(not probs, "; ".join(probs[:8]))

    with ctx.case("gauges: connections_active counts every state, tunnels_active{tier}; both back to 0"):
        held = [open_hold(), open_hold(), open_hold(src="127.0.0.3")]
        partial = harness.bound_socket("127.0.0.2")
        partial.settimeout(3)
        partial.connect(("127.0.0.1", 3128))
        partial.sendall(b"CONNECT allowed.exa")       # still reading the request head
        try:
            mm = wait_metric(px, lambda x: x.v("portcullis_connections_active") == 4, timeout=2)
            expect(mm.v("portcullis_connections_active") == 4,
                   "connections_active %s with 3 tunnels and 1 half-sent request open, want 4" %
                   mm.v("portcullis_connections_active"))
            ta = mm.table("portcullis_tunnels_active", ["tier"])
            expect(ta.get(("alpha",)) == 2 and ta.get(("beta",)) == 1 and sum(ta.values()) == 3,
                   "tunnels_active %s, want alpha 2, beta 1" % ta)
        finally:
            for r in held:
                r.close()
            partial.close()
        mm = wait_metric(px, lambda x: x.v("portcullis_connections_active") == 0 and
                         x.v("portcullis_tunnels_active") == 0, timeout=3)
        expect(mm.v("portcullis_connections_active") == 0 and mm.v("portcullis_tunnels_active") == 0,
               "3s after closing: connections_active %s, tunnels_active %s" %
               (mm.v("portcullis_connections_active"), mm.table("portcullis_tunnels_active", ["tier"])))

    # ------------------------------------------------------------ slow scrapers
    with ctx.case("slow scrapers (1 dribbling, 20 silent) do not delay a CONNECT (< 1s) or another scrape"):
        t0 = time.monotonic()
        # from two sources of their own: the probes below come from 127.0.0.1
        dribbler = socket.create_connection(("127.0.0.1", APORT), timeout=2,
                                            source_address=("127.0.0.2", 0))
        silent = [socket.create_connection(("127.0.0.1", APORT), timeout=2,
                                           source_address=("127.0.0.3", 0)) for _ in range(20)]
        opened = time.monotonic()
        socks = [dribbler] + silent
        for s in socks:
            s.setblocking(False)
        closed_at = {}
        dribble = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
        di = 0
        next_drip = t0
        checks = [0.25, 0.75, 1.25, 1.75]   # the silent ones are cut at 2s
        timings = []
        scrape_t = []
        while time.monotonic() - opened < 8.0 and len(closed_at) < len(socks):
            now = time.monotonic()
            if dribbler not in closed_at and now >= next_drip and di < len(dribble):
                try:
                    dribbler.send(dribble[di:di + 1])
                    di += 1
                except OSError:
                    closed_at[dribbler] = now
                next_drip = now + 0.25
            if checks and now - opened >= checks[0]:
                checks.pop(0)
                c0 = time.monotonic()
                rr, ok = served(T)
                timings.append((time.monotonic() - c0, ok, rr.describe() if not ok else ""))
                c0 = time.monotonic()
                ar = admin(APORT, "/healthz", timeout=3)
                scrape_t.append((time.monotonic() - c0, ar.status))
            live = [s for s in socks if s not in closed_at]
            rd, _, _ = select.select(live, [], [], 0.05)
            for s in rd:
                try:
                    d = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if not d:
                    closed_at[s] = time.monotonic()
        for s in socks:
            s.close()
        expect(len(timings) == 4, "only %d CONNECT checks ran" % len(timings))
        slow = [t for t in timings if t[0] >= 1.0 or not t[1]]
        expect(not slow, "CONNECTs while slow scrapers were connected: %s" %
               ["%.2fs ok=%s %s" % t for t in timings])
        bad = [t for t in scrape_t if t[0] >= 1.0 or t[1] != 200]
        expect(not bad, "GET /healthz while slow scrapers were connected: %s" % scrape_t)
        TIMINGS_SLOW = (timings, closed_at, opened, dribbler, silent)

    with ctx.case("slow scrapers are cut: a request head not complete 2s after connect is closed (the "
                  "dribbler and the 8 silent ones a source may hold: 1.5-4.5s), the 12 silent ones over "
                  "the per-source bound of 8 at once (< 1s)"):
        expect(TIMINGS_SLOW is not None, "the slow scrapers did not run")
        timings, closed_at, opened, dribbler, silent = TIMINGS_SLOW
        when = {("dribbler" if s is dribbler else "silent%d" % silent.index(s)):
                (round(closed_at[s] - opened, 2) if s in closed_at else None) for s in [dribbler] + silent}
        bad = {k: v for k, v in when.items() if v is None or v > 4.5}
        expect(not bad, "still open or cut late (s after connect): %s" % bad)
        early = sorted(k for k, v in when.items() if v < 1.0)
        late = sorted(k for k, v in when.items() if v >= 1.5)
        expect(len(early) == 12 and "dribbler" not in early, "closed at once: %s, want 12 silent ones" % early)
        expect(len(late) == 9 and "dribbler" in late, "cut by the head deadline: %s, want the dribbler and 8 "
               "silent ones (all: %s)" % (late, when))

    # ------------------------------------------------------------ admin starvation
    def hold_admin(n, src, send=b""):
        socks = []
        for _ in range(n):
            try:
                s = socket.create_connection(("127.0.0.1", APORT), timeout=2, source_address=(src, 0))
                if send:
                    s.sendall(send)
                socks.append(s)
            except OSError:
                pass   # refused or reset: the cases below only need the probe answered
        return socks

    def probes_answered(what):
        for path, body in (("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
            r = admin(APORT, path, timeout=3)
            expect_admin(r, 200, body, "%s with %s: " % (path, what))

    evicted0 = scrape(px).v("portcullis_admin_connections_evicted_total")
    with ctx.case("64 idle admin connections from the probe's own source: /healthz and /readyz answer 200"):
        socks = hold_admin(64, "127.0.0.1")
        try:
            probes_answered("64 idle connections from 127.0.0.1")
        finally:
            for s in socks:
                s.close()

    with ctx.case("64 idle admin connections, 8 from each of 8 sources (every slot taken): probes from "
                  "127.0.0.1 answer 200"):
        socks = []
        for i in range(8):
            socks += hold_admin(8, "127.0.0.%d" % (10 + i))
        try:
            probes_answered("every admin slot held by 8 other sources")
        finally:
            for s in socks:
                s.close()

    with ctx.case("a scraper holding 64 /metrics responses unread: probes answer 200"):
        socks = hold_admin(64, "127.0.0.20",
                           b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            probes_answered("64 unread scrapes from 127.0.0.20")
        finally:
            for s in socks:
                s.close()

    with ctx.case("a probe followed at once by 64 connections from 64 sources (every slot taken, one each) "
                  "is answered"):
        for attempt in range(3):
            probe = socket.create_connection(("127.0.0.1", APORT), timeout=3)
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            burst = []
            for i in range(64):
                s = socket.socket()
                s.bind(("127.0.0.%d" % (100 + i), 0))
                s.setblocking(False)
                try:
                    s.connect(("127.0.0.1", APORT))
                except BlockingIOError:
                    pass
                burst.append(s)
            got = b""
            try:
                while True:
                    d = probe.recv(4096)
                    if not d:
                        break
                    got += d
            except OSError as e:
                got += ("<%s>" % e).encode()
            probe.close()
            for s in burst:
                s.close()
            expect(got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"ok\n"),
                   "attempt %d: the probe got %r" % (attempt, got[:80]))

    with ctx.case("portcullis_admin_connections_evicted_total counts the connections closed for newer ones"):
        got = scrape(px).v("portcullis_admin_connections_evicted_total") - evicted0
        expect(got >= 64, "evicted +%d, want >= 64 (the three floods above)" % got)



    # ------------------------------------------------------------ reload
    rl_tiers = {"alpha": {"sources": ["127.0.0.2/32"],
                          "allow": [{"host": "allowed.example", "ports": [8080]},
                                    {"host": "other.example", "ports": [8080]}]}}
    rl = harness.Proxy(ctx, "reload", rl_tiers, proxy_port=3129, admin_port=9091)
    # its own directory (the daemon watches the policy file's directory; the temp dir is busy),
    # and the SIGHUP case's replacement file outside it
    os.makedirs(ctx.path("reload"))
    os.makedirs(ctx.path("hup"))
    shutil.copy(rl.policy_path, ctx.path("reload", "policy.yaml"))
    rl.policy_path = ctx.path("reload", "policy.yaml")
    started(rl)
    rl_pol = copy.deepcopy(rl.policy)

    def rl_policy(hosts, **over):
        pol = copy.deepcopy(rl_pol)
        pol["tiers"]["alpha"]["allow"] = [{"host": h, "ports": [8080]} for h in hosts]
        for k, v in over.items():
            if isinstance(v, dict):
                pol.setdefault(k, {}).update(v)
            else:
                pol[k] = v
        return policy_text(pol)

    def reloads(m):
        return (m.v("portcullis_policy_reloads_total", result="success"),
                m.v("portcullis_policy_reloads_total", result="failure"))

    def wait_reload(p, before, want, timeout=3.0, settle=0.6):
        """Wait until the (success, failure) counters differ from before, then settle and
        require them to be exactly before + want."""
        m = wait_metric(p, lambda x: reloads(x) != before, timeout=timeout)
        if reloads(m) == before:
            raise harness.CaseFailed("reload counters still %s %.0fs later (success, failure)" % (before, timeout))
        time.sleep(settle)
        m = scrape(p)
        got = (reloads(m)[0] - before[0], reloads(m)[1] - before[1])
        expect(got == want, "reload counters moved by %s (success, failure), want %s" % (got, want))
        return m

    with ctx.case("SIGHUP (new file bind-mounted, so no inotify event): tunnel to a removed host survives; "
                  "new connections see the new policy"):
        mounted = False
        try:
            m_a = scrape(rl)
            r0 = reloads(m_a)
            ts0 = m_a.one("portcullis_policy_load_timestamp_seconds")
            old = open_hold("other.example:8080", port=3129)
            expect(echo(old, b"before\n"), "tunnel to other.example does not echo")
            b_path = ctx.path("hup", "policy-B.yaml")
            with open(b_path, "w") as f:
                f.write(rl_policy(["allowed.example"]))
            harness.bind_mount(b_path, rl.policy_path)
            mounted = True
            time.sleep(0.8)
            expect(reloads(scrape(rl)) == r0, "reloaded before the signal (the file was bind-mounted: no "
                                              "inotify event): the case cannot attribute the reload to SIGHUP")
            lm = log_mark(rl)
            os.kill(rl.proc.pid, signal.SIGHUP)
            m_b = wait_reload(rl, r0, (1, 0))
            expect(echo(old, b"after the reload\n"), "the tunnel opened before the reload stopped working")
            denied(rl, "other.example:8080", "host_not_allowed")
            r, ok = served(T, port=3129)
            expect(ok, "allowed.example after the reload: %s" % r.describe())
            s = m_b.series("portcullis_policy_info")
            expect(len(s) == 1 and s[0].labels.get("sha256") == sha256_file(b_path) and s[0].value == 1,
                   "policy_info %s, want one series with the new file's sha256 %s" % (s, sha256_file(b_path)))
            expect(m_b.one("portcullis_policy_load_timestamp_seconds") > ts0, "load timestamp did not move")
            infos = [x for x in log_since(rl, lm) if level(x) == "info"]
            expect(infos, "no info line on stderr after the reload")
            expect(echo(old, b"still\n"), "old tunnel")
            old.close()
            rec = rl.audit.by_port(old.src_port)
            expect(rec is not None and get(rec, "event.reason") == "client_closed" and
                   get(rec, "rule.ruleset") == "alpha", "old tunnel's record: %s" % json.dumps(rec)[:300])
        finally:
            if mounted:
                subprocess.run(["umount", rl.policy_path], timeout=10, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)

    with ctx.case("inotify: a new file renamed over the policy reloads it without a signal"):
        # the file on disk is the start-up policy again (umount); the daemon serves B
        r0 = reloads(scrape(rl))
        c_text = rl_policy(["allowed.example", "other.example", "new.example"])
        write_atomic(rl.policy_path, c_text)
        m_c = wait_reload(rl, r0, (1, 0))
        r, ok = served("new.example:8080", port=3129)
        expect(ok, "new.example after the reload: %s" % r.describe())
        expect(m_c.one("portcullis_policy_info", sha256=hashlib.sha256(c_text.encode()).hexdigest()) == 1,
               "policy_info does not show the new file")

    with ctx.case("inotify: an in-place write in two parts 50ms apart reloads once, no failure (debounced)"):
        r0 = reloads(scrape(rl))
        d_text = rl_policy(["allowed.example", "new.example"])
        with open(rl.policy_path, "w") as f:
            f.write(d_text[:len(d_text) // 2])
            f.flush()
            time.sleep(0.05)
            f.write(d_text[len(d_text) // 2:])
        wait_reload(rl, r0, (1, 0), settle=0.8)
        denied(rl, "other.example:8080", "host_not_allowed")

    with ctx.case("unchanged content: touch, identical in-place rewrite, identical rename -> no reload"):
        m0r = scrape(rl)
        r0 = reloads(m0r)
        ts0 = m0r.one("portcullis_policy_load_timestamp_seconds")
        lm = log_mark(rl)
        os.utime(rl.policy_path)
        time.sleep(0.4)
        with open(rl.policy_path, "w") as f:
            f.write(d_text)
        time.sleep(0.4)
        write_atomic(rl.policy_path, d_text)
        time.sleep(1.0)
        m1r = scrape(rl)
        expect(reloads(m1r) == r0, "reload counters %s -> %s" % (r0, reloads(m1r)))
        expect(m1r.one("portcullis_policy_load_timestamp_seconds") == ts0, "load timestamp moved")
        logged = [x.get("message") for x in log_since(rl, lm) if level(x) in ("info", "warn", "warning", "error")]
        expect(not logged, "log lines for an unchanged file: %s" % logged[:3])

    with ctx.case("broken file: old policy keeps serving, failure +1, each error logged (JSON, error) with "
                  "line:col; --check refuses the same file at the same lines"):
        m0r = scrape(rl)
        r0 = reloads(m0r)
        sha0 = m0r.series("portcullis_policy_info")[0].labels.get("sha256")
        good_lines = d_text.rstrip("\n").split("\n")
        # the port list follows the host line in the block emitter
        idx = next(i for i, ln in enumerate(good_lines) if "new.example" in ln)
        bad_lines = list(good_lines)
        port_line = next(i for i in range(idx, len(good_lines)) if "ports:" in good_lines[i])
        bad_lines[port_line] = good_lines[port_line].replace("[8080]", "[8080, 70000]")
        bad_lines.append("bogus_key: 1")
        want_lines = {port_line + 1, len(bad_lines)}
        broken = "\n".join(bad_lines) + "\n"
        lm = log_mark(rl)
        write_atomic(rl.policy_path, broken)
        wait_reload(rl, r0, (0, 1))
        r, ok = served("new.example:8080", port=3129)
        expect(ok, "the old policy stopped serving new.example: %s" % r.describe())
        denied(rl, "other.example:8080", "host_not_allowed")
        m1r = scrape(rl)
        expect([s.labels.get("sha256") for s in m1r.series("portcullis_policy_info")] == [sha0],
               "policy_info changed to %s" % m1r.series("portcullis_policy_info"))
        errs = [x for x in log_since(rl, lm) if level(x) == "error"]
        expect(errs, "no log.level error line on stderr")
        msgs = " | ".join(str(x.get("message")) for x in errs)
        for ln in sorted(want_lines):
            expect(re.search(r":%d:\d+" % ln, msgs),
                   "no error naming line %d with a column: %s" % (ln, msgs[:400]))
        p = subprocess.run([ctx.binary, "--check", rl.policy_path], capture_output=True, timeout=15,
                           env=harness.daemon_env(), stdin=subprocess.DEVNULL)
        cerr = p.stderr.decode("utf-8", "replace")
        expect(p.returncode == 1, "--check on the refused file: exit %d" % p.returncode)
        clines = {int(x) for x in re.findall(r":(\d+):\d+: ", cerr)}
        expect(clines == want_lines, "--check names lines %s, reload errors should be at %s" %
               (sorted(clines), sorted(want_lines)))

    with ctx.case("the same broken file, then SIGHUP: still one failure in all, its errors not "
                  "logged again, one info line says the file is unchanged since it was refused"):
        r1 = reloads(scrape(rl))
        lm = log_mark(rl)
        os.kill(rl.proc.pid, signal.SIGHUP)
        said = harness.wait_until(
            lambda: any("unchanged since it was refused" in str(x.get("message"))
                        for x in log_since(rl, lm)), 5, 0.05)
        expect(said, "no info line after SIGHUP: %s" % [x.get("message") for x in log_since(rl, lm)][:4])
        expect(reloads(scrape(rl)) == r1, "reload counters %s -> %s" % (r1, reloads(scrape(rl))))
        again = [x for x in log_since(rl, lm) if level(x) == "error"]
        expect(not again, "errors logged again: %s" % [x.get("message") for x in again][:3])
        r, ok = served("new.example:8080", port=3129)
        expect(ok, "the old policy stopped serving new.example: %s" % r.describe())

    with ctx.case("settings that cannot change at run time are named in a warn line and keep their values"):
        r0 = reloads(scrape(rl))
        lm = log_mark(rl)
        new_audit = ctx.path("reload-audit-new.log")
        e_text = rl_policy(["allowed.example", "other.example"],
                           listen={"proxy": "127.0.0.1:3139", "admin": "127.0.0.1:9099", "workers": 3},
                           resolver={"timeout": "2s"}, audit={"output": new_audit})
        write_atomic(rl.policy_path, e_text)
        wait_reload(rl, r0, (1, 0))
        warns = " | ".join(str(x.get("message")) for x in log_since(rl, lm) if level(x) in ("warn", "warning"))
        missing = [k for k in ("listen.proxy", "listen.admin", "listen.workers", "resolver", "audit.output")
                   if k not in warns]
        expect(not missing, "warn lines do not name %s: %r" % (missing, warns[:400]))
        r, ok = served("other.example:8080", port=3129)
        expect(ok, "other.example (added by the same reload) via :3129: %s" % r.describe())
        expect(not harness.port_open("127.0.0.1", 3139), "the new proxy address 3139 is listening")
        expect(not harness.port_open("127.0.0.1", 9099), "the new admin address 9099 is listening")
        expect(rl.audit.by_port(r.src_port) is not None, "the record did not go to the running audit file")
        expect(not os.path.exists(new_audit) or os.path.getsize(new_audit) == 0, "records went to the new audit.output")

    # ------------------------------------------------------------ ConfigMap
    cm = harness.Proxy(ctx, "configmap", {"alpha": {"sources": ["127.0.0.2/32"],
                                                    "allow": [{"host": "allowed.example", "ports": [8080]}]}},
                       proxy_port=3130, admin_port=9092)
    cm_dir = ctx.path("configmap")
    cm_pol = copy.deepcopy(cm.policy)

    def cm_text(hosts):
        pol = copy.deepcopy(cm_pol)
        pol["tiers"]["alpha"]["allow"] = [{"host": h, "ports": [8080]} for h in hosts]
        return policy_text(pol)

    def cm_swap(text, stamp):
        """What the kubelet does: a new timestamped dir, ..data_tmp -> it, renamed over ..data,
        the old timestamped dir removed."""
        old = os.readlink(os.path.join(cm_dir, "..data"))
        new = "..2026_11_23_%s" % stamp
        os.mkdir(os.path.join(cm_dir, new))
        with open(os.path.join(cm_dir, new, "policy.yaml"), "w") as f:
            f.write(text)
        os.symlink(new, os.path.join(cm_dir, "..data_tmp"))
        os.rename(os.path.join(cm_dir, "..data_tmp"), os.path.join(cm_dir, "..data"))
        shutil.rmtree(os.path.join(cm_dir, old))

    os.makedirs(os.path.join(cm_dir, "..2026_11_23_a"))
    with open(os.path.join(cm_dir, "..2026_11_23_a", "policy.yaml"), "w") as f:
        f.write(cm_text(["allowed.example"]))
    os.symlink("..2026_11_23_a", os.path.join(cm_dir, "..data"))
    os.symlink("..data/policy.yaml", os.path.join(cm_dir, "policy.yaml"))
    cm.policy_path = os.path.join(cm_dir, "policy.yaml")
    started(cm)

    with ctx.case("ConfigMap ..data swap reloads without a signal (adds other.example)"):
        expect(cm.alive(), "configmap proxy not running: %s" % cm.start_error)
        r0 = reloads(scrape(cm))
        denied(cm, "other.example:8080", "host_not_allowed")
        v2 = cm_text(["allowed.example", "other.example"])
        cm_swap(v2, "b")
        m = wait_reload(cm, r0, (1, 0))
        r, ok = served("other.example:8080", port=3130)
        expect(ok, "other.example after the swap: %s" % r.describe())
        expect(m.one("portcullis_policy_info", sha256=hashlib.sha256(v2.encode()).hexdigest()) == 1,
               "policy_info does not show the new content")

    v3 = cm_text(["allowed.example"])
    with ctx.case("a second ConfigMap swap reloads too; a tunnel to the host it removes keeps working"):
        r0 = reloads(scrape(cm))
        old = open_hold("other.example:8080", port=3130)
        cm_swap(v3, "c")
        wait_reload(cm, r0, (1, 0))
        denied(cm, "other.example:8080", "host_not_allowed")
        expect(echo(old, b"across the swap\n"), "the tunnel opened before the swap stopped working")
        old.close()

    with ctx.case("a ConfigMap swap with identical content does not reload"):
        m0c = scrape(cm)
        r0 = reloads(m0c)
        cm_swap(v3, "d")
        time.sleep(1.2)
        m1c = scrape(cm)
        expect(reloads(m1c) == r0, "reload counters %s -> %s" % (r0, reloads(m1c)))
        expect(m1c.one("portcullis_policy_load_timestamp_seconds") ==
               m0c.one("portcullis_policy_load_timestamp_seconds"), "load timestamp moved")

    # ------------------------------------------------------------ SIGUSR1 rotation
    rot = harness.Proxy(ctx, "rotate", {"alpha": {"sources": ["127.0.0.2/32"],
                                                  "allow": [{"host": "allowed.example", "ports": [8080]}]}},
                        proxy_port=3131, admin_port=9093)
    started(rot)
    rotated = harness.Audit(rot.audit_path + ".1", ctx.ecs, "rotate (renamed)")

    with ctx.case("SIGUSR1 after renaming the audit file, under load: every record in exactly one file, "
                  "none split, later ones in the new file"):
        m_r0 = scrape(rot)
        used = []

        def some(n):
            out = []
            for i in range(n):
                if i % 2:
                    r = harness.connect("denied.example:8080", proxy_port=3131)
                    expect(r.status == 403, "denied: %s" % r.describe())
                else:
                    r, ok = served(T, port=3131)
                    expect(ok, "tunnel: %s" % r.describe())
                out.append(r.src_port)
            return out

        used += some(6)
        expect(harness.wait_until(lambda: len(rot.audit.records()) == 6, 5), "first 6 records not written")
        stop = threading.Event()
        gen = {"ok": [], "err": []}

        def generator():
            while not stop.is_set():
                r = harness.connect("denied.example:8080", proxy_port=3131, timeout=5)
                (gen["ok"] if r.status == 403 else gen["err"]).append((r.src_port, r.describe()))

        th = threading.Thread(target=generator, daemon=True)
        th.start()
        time.sleep(0.3)
        os.rename(rot.audit_path, rotated.path)
        time.sleep(0.2)
        os.kill(rot.proc.pid, signal.SIGUSR1)
        time.sleep(0.5)
        stop.set()
        th.join(10)
        expect(not th.is_alive(), "load generator stuck")
        expect(not gen["err"], "%d load connections failed: %s" % (len(gen["err"]), gen["err"][:2]))
        after_ports = some(6)
        used += [p for p, _ in gen["ok"]] + after_ports
        total = len(used)
        harness.wait_until(lambda: len(rot.audit.records()) + len(rotated.records()) >= total, 5)
        time.sleep(0.3)
        old_recs, new_recs_r = rotated.records(), rot.audit.records()
        for a in (rotated, rot.audit):
            data = a.lines()
            expect(data.endswith(b"\n"), "%s does not end with a newline" % a.path)
            bad = broken_lines(data)
            expect(not bad, "%s has split or broken lines: %r" % (a.path, bad[:2]))
        ports = collections.Counter(get(r, "source.port") for r in old_recs + new_recs_r)
        expect(len(old_recs) + len(new_recs_r) == total,
               "%d + %d records across the two files, %d connections made" % (len(old_recs), len(new_recs_r), total))
        expect(set(ports) == set(used) and max(ports.values()) == 1,
               "records do not match the connections one to one (dupes %s, missing %s)" %
               ([p for p, c in ports.items() if c > 1][:5], sorted(set(used) - set(ports))[:5]))
        newp = {get(r, "source.port") for r in new_recs_r}
        expect(set(after_ports) <= newp, "connections made after SIGUSR1 are not in the new file")
        expect(len(old_recs) >= 6, "the renamed file has %d records" % len(old_recs))
        m_r1 = scrape(rot)
        dc = delta(m_r1, m_r0, "portcullis_connections_total")
        expect(dc == total, "connections_total moved by %s, %d records written" % (dc, total))
        print("# rotation: %d records before/around the rename, %d in the new file" % (len(old_recs), len(new_recs_r)))

    # ------------------------------------------------------------ FIFO stall
    fifo = ctx.path("audit.fifo")
    fifo_out = ctx.path("fifo-reader-out.log")
    os.mkfifo(fifo)
    reader = ctx.spawn("fifo-reader", [harness.PY, "-c", harness.FIFO_READER, fifo, fifo_out])
    # A 1 MiB queue, so that filling it takes seconds. One source's refusals are aggregated
    # under pressure (test_auditflood.py), so the flood comes from 150 sources.
    fx = harness.Proxy(ctx, "fifo", {LONG_TIER: {"sources": ["127.0.0.0/24"],
                                                 "allow": [{"host": "allowed.example", "ports": [8080]}]}},
                       proxy_port=3132, admin_port=9094, audit={"output": fifo, "queue_size": "1MiB"})
    started(fx)
    fifo_audit = harness.Audit(fifo_out, ctx.ecs, "fifo reader output")
    FPORT = admin_port(fx)
    stall = {}

    def flood(max_attempts=20000, max_seconds=30.0, threads=16, probe=True):
        """Fill the audit queue with denied CONNECTs (long host, long tier: big records) while a
        probe thread asks for an allowed tunnel every 0.1s, until the probe gets 503
        audit_unavailable (or max_attempts / max_seconds; without probe: until those).
        Returns (flood tally, probe tally, seconds to the first 503 or None, seconds)."""
        req = ("CONNECT %s:8080 HTTP/1.1\r\nHost: %s:8080\r\n\r\n" % (LONG_HOST, LONG_HOST)).encode()
        stop = threading.Event()
        lock = threading.Lock()
        tally = collections.Counter()
        probes = collections.Counter()
        first503 = []
        started = [0]
        t0 = time.monotonic()

        def worker():
            while not stop.is_set():
                with lock:
                    if started[0] >= max_attempts or time.monotonic() - t0 > max_seconds:
                        stop.set()
                        return
                    started[0] += 1
                src = "127.0.0.%d" % (100 + started[0] % 150)
                try:
                    s = socket.create_connection(("127.0.0.1", 3132), timeout=5, source_address=(src, 0))
                    s.sendall(req)
                    buf = b""
                    while True:
                        d = s.recv(4096)
                        if not d:
                            break
                        buf += d
                    s.close()
                except OSError as e:
                    with lock:
                        tally["error: %s" % type(e).__name__] += 1
                    continue
                mm = re.search(rb'details="([^"]*)"', buf)
                with lock:
                    tally["%s %s" % (buf[9:12].decode("latin-1", "replace"), mm.group(1).decode() if mm else "?")] += 1

        def prober():
            while not stop.is_set():
                r = harness.connect(T, proxy_port=3132, timeout=5)
                r.close()
                key = "%s %s" % (r.status, r.reason if r.status != 200 else "tunnel")
                with lock:
                    probes[key] += 1
                    if key == "503 audit_unavailable":
                        first503.append(time.monotonic() - t0)
                        stop.set()
                stop.wait(0.1)

        ths = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
        if probe:
            ths.append(threading.Thread(target=prober, daemon=True))
        for t in ths:
            t.start()
        for t in ths:
            t.join(max_seconds + 10)
        return tally, probes, (first503[0] if first503 else None), time.monotonic() - t0

    with ctx.case("audit FIFO stalled: new connections get 503 audit_unavailable (fail closed)"):
        expect(fx.alive(), "fifo proxy not running: %s" % fx.start_error)
        held = open_hold(port=3132)
        expect(echo(held, b"before the stall\n"), "held tunnel")
        r, ok = served(T, port=3132)
        expect(ok, "CONNECT before the stall: %s" % r.describe())
        stall["held"] = held
        stall["m0"] = scrape(fx, "before stall")
        os.kill(reader.pid, signal.SIGSTOP)
        stall["stopped"] = True
        tally, probes, t503, dt = flood()
        stall["tally"] = tally
        print("# flood: %s, allowed probes: %s, in %.1fs, first 503 audit_unavailable after %s s" %
              (dict(tally), dict(probes), dt, "%.1f" % t503 if t503 else "never"))
        expect(t503 is not None, "no 503 audit_unavailable for an allowed CONNECT after %d denied ones in "
               "%.1fs: %s; probes %s" % (sum(tally.values()), dt, dict(tally), dict(probes)))
        r = harness.connect(T, proxy_port=3132)
        harness.expect_refusal(r, 503, "audit_unavailable")
        stall["n503"] = tally["503 audit_unavailable"] + probes["503 audit_unavailable"] + 1

    with ctx.case("audit FIFO stalled and full: 4000 more refusals answered; what no longer fits the queue "
                  "is dropped and counted in audit_records_lost_total"):
        expect("n503" in stall, "no stall")
        # the refusals before this case are counted within the 1 s aggregation interval:
        # wait for the counter to settle so that only this case's 4000 move it
        def settled_lost():
            a = scrape(fx).v("portcullis_audit_records_lost_total")
            time.sleep(1.2)
            return a == scrape(fx).v("portcullis_audit_records_lost_total")
        harness.wait_until(settled_lost, 6)
        ml0 = scrape(fx, "stalled, before overfill")
        tally, _, _, dt = flood(max_attempts=4000, max_seconds=20, probe=False)
        print("# overfill: %s in %.1fs" % (dict(tally), dt))
        expect(tally.get("403 host_not_allowed") == 4000, "overfill: %s" % dict(tally))
        # Each refusal is its own record or counted in its source's aggregate one, and a record
        # that does not fit is counted lost.  Past the 90% mark new connections are refused, but
        # a small aggregate record may still fit the last 10% and be delivered once the reader
        # resumes: so most of the 4000, not necessarily all, are lost here.  The exact books
        # (delivered + lost == connections counted) are the "audit FIFO accounting" case's.
        # (a deadline, not a sleep: it returns as soon as the count is there)
        ml1 = wait_metric(fx, lambda x: delta(x, ml0, "portcullis_audit_records_lost_total") >= 4000, 15)
        lost = delta(ml1, ml0, "portcullis_audit_records_lost_total")
        expect(0 < lost <= 4000, "audit_records_lost_total moved by %s for 4000 more refusals into a "
               "full queue (its 90%% mark had already been crossed)" % lost)

    with ctx.case("audit FIFO stalled: a tunnel opened before the stall still echoes; /healthz and /metrics "
                  "answer in < 1s"):
        expect("held" in stall and "tally" in stall, "no stall")
        expect(echo(stall["held"], b"during the stall\n" * 100, timeout=3), "held tunnel stopped echoing")
        t0 = time.monotonic()
        hr = admin(FPORT, "/healthz", timeout=3)
        expect_admin(hr, 200, b"ok\n", what="/healthz: ")
        ms = scrape(fx, "during stall")
        expect(time.monotonic() - t0 < 1.0, "admin took %.2fs" % (time.monotonic() - t0))
        stall["m1"] = ms

    with ctx.case("audit FIFO stalled: every 503 audit_unavailable counted in connections_total"):
        expect("m1" in stall and "n503" in stall, "no stall")
        m1 = wait_metric(fx, lambda x: delta(x, stall["m0"], "portcullis_connections_total", reason="audit_unavailable")
                         >= stall["n503"], timeout=1.0)
        d503 = delta(m1, stall["m0"], "portcullis_connections_total", decision="deny", reason="audit_unavailable")
        expect(d503 == stall["n503"], "connections_total{deny,audit_unavailable} moved by %s, clients saw %d" %
               (d503, stall["n503"]))

    with ctx.case("audit FIFO: the reader reads again -> service recovers within 10s, held tunnel fine"):
        expect(stall.get("stopped"), "no stall")
        os.kill(reader.pid, signal.SIGCONT)
        stall["stopped"] = False
        t0 = time.monotonic()
        res = None
        while time.monotonic() - t0 < 10:
            r, ok = served(T, port=3132)
            if ok:
                res = time.monotonic() - t0
                break
            expect(r.status == 503 and r.reason == "audit_unavailable", "while recovering: %s" % r.describe())
            time.sleep(0.2)
        expect(res is not None, "still refusing 10s after the reader resumed")
        held = stall.pop("held")
        expect(echo(held, b"after the stall\n"), "held tunnel after the stall")
        held.close()
        rec = fifo_audit.by_port(held.src_port, timeout=10)
        expect(rec is not None, "the held tunnel's record never reached the reader")
        expect(get(rec, "event.reason") == "client_closed", "held tunnel reason %r" % get(rec, "event.reason"))

    with ctx.case("audit FIFO accounting: records delivered + records lost == connections counted, whole lines"):
        expect("tally" in stall, "no stall")

        def settled():
            a = len(fifo_audit.records())
            time.sleep(0.3)
            return len(fifo_audit.records()) == a
        harness.wait_until(settled, 10)
        mf = scrape(fx, "after stall")
        data = fifo_audit.lines()
        expect(data.endswith(b"\n"), "reader output does not end with a newline")
        lines = [ln for ln in data.split(b"\n") if ln.strip()]
        bad = broken_lines(data)
        expect(not bad, "%d broken lines in the reader's output, e.g. %r" % (len(bad), bad[:2]))
        counted = mf.v("portcullis_connections_total")
        lost = mf.one("portcullis_audit_records_lost_total")
        # an aggregate record stands for the refusals it counts
        delivered = sum(int(get(r, "labels.aggregated_refusals") or 1) for r in fifo_audit.records())
        expect(len(fifo_audit.records()) == len(lines), "unparsable lines in the reader's output")
        expect(delivered + lost == counted, "%d delivered (%d records) + %s lost != %s counted in "
               "connections_total" % (delivered, len(lines), lost, counted))

    if stall.get("stopped"):
        os.kill(reader.pid, signal.SIGCONT)

    # ------------------------------------------------------------ readiness
    with ctx.case("/readyz: 503 with a one-line reason 4-10s after the pinned resolver stops (SIGSTOP); "
                  "/healthz stays 200"):
        m_d0 = scrape(px, "before resolver stop")
        expect_admin(admin(APORT, "/readyz"), 200, b"ready\n", what="before: ")
        os.kill(dns.proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            r = None
            while time.monotonic() - t0 < 12:
                r = admin(APORT, "/readyz")
                if r.status != 200:
                    break
                time.sleep(0.25)
            dt = time.monotonic() - t0
            expect(r is not None and r.status == 503, "still %s after %.1fs" % (r and r.status, dt))
            expect_admin(r, 503, what="/readyz: ")
            body = r.body.decode("utf-8", "replace")
            expect(body.strip() and "\n" not in body.rstrip("\n") and len(body) < 300,
                   "reason body %r is not one line" % body)
            expect(dt >= 3.0, "unready %.1fs after the resolver stopped: the window is 6s" % dt)
            expect_admin(admin(APORT, "/healthz"), 200, b"ok\n", what="/healthz while unready: ")
            print("# unready %.1fs after SIGSTOP: %r" % (dt, body))
            READY_M = (m_d0, scrape(px, "resolver stopped"))
            expect(READY_M[0].v("portcullis_ready") == 1 and READY_M[1].v("portcullis_ready") == 0,
                   "portcullis_ready is %s while ready and %s while unready, want 1 and 0" %
                   (READY_M[0].v("portcullis_ready"), READY_M[1].v("portcullis_ready")))
        finally:
            os.kill(dns.proc.pid, signal.SIGCONT)
        t1 = time.monotonic()
        r = admin_wait(APORT, "/readyz", lambda x: x.status == 200, 10)
        expect(r is not None, "not ready 10s after the resolver resumed")
        expect(time.monotonic() - t1 <= 6, "ready again only after %.1fs" % (time.monotonic() - t1))
        expect(scrape(px, "resolver resumed").v("portcullis_ready") == 1, "portcullis_ready not 1 once ready again")

    with ctx.case("readiness probes are not client lookups: dns_errors_total and dns_lookup _count unchanged"):
        expect(READY_M is not None, "the resolver-stop case did not get that far")
        a, b = READY_M
        expect(delta(b, a, "portcullis_dns_errors_total") == 0, "dns_errors_total moved by %s" %
               {k: delta(b, a, "portcullis_dns_errors_total", kind=k) for k in DNS_KINDS})
        expect(delta(b, a, "portcullis_dns_lookup_duration_seconds_count") == 0,
               "dns_lookup_duration_seconds_count moved by %s" %
               delta(b, a, "portcullis_dns_lookup_duration_seconds_count"))

    with ctx.case("the readiness probe asks the pinned resolver for readyz.portcullis.invalid (A and AAAA, "
                  "the same lookup path as real traffic)"):
        probes = [q for q in dns.queries() if q[1] == "readyz.portcullis.invalid"]
        expect(probes, "the pinned resolver never saw a readyz.portcullis.invalid query")
        expect({q[0] for q in probes} <= {"A", "AAAA"} and "A" in {q[0] for q in probes},
               "probe query types %s" % sorted({q[0] for q in probes}))

    with ctx.case("/readyz: 503 when the pinned resolver is gone (killed), 200 when a new one answers"):
        ctx.stop_proc(dns.proc)
        t0 = time.monotonic()
        r = admin_wait(APORT, "/readyz", lambda x: x.status == 503, 12)
        expect(r is not None, "still ready %.0fs after the resolver died" % (time.monotonic() - t0))
        dns = harness.Dnsmasq(ctx, "127.0.0.53", records, name="pinned2", local=("example", "test", "invalid"),
                              extra=dns_extra)
        t1 = time.monotonic()
        r = admin_wait(APORT, "/readyz", lambda x: x.status == 200, 10)
        expect(r is not None and r.body == b"ready\n", "not ready 10s after a resolver came back")
        expect(time.monotonic() - t1 <= 6, "ready only %.1fs after the resolver came back" % (time.monotonic() - t1))
        harness.expect_served(T, what="after the resolver came back: ")

    # ------------------------------------------------------------ format, all scrapes
    with ctx.case("every exposition scraped in this run passes the strict checker (promcheck.py)"):
        expect(SCRAPES, "nothing was scraped")
        probs = []
        for where, body in SCRAPES:
            fams, p = promcheck.check(body)
            p += promcheck.conventions(fams)
            probs += ["%s: %s" % (where, x) for x in p]
        expect(not probs, "%d problems in %d expositions: %s" % (len(probs), len(SCRAPES), "; ".join(probs[:6])))

    with ctx.case("promtool check metrics accepts the expositions (Debian package prometheus)"):
        harness.need(PROMTOOL)
        expect(SCRAPES, "nothing was scraped")
        step = max(1, len(SCRAPES) // 25)
        picked = SCRAPES[::step] + [SCRAPES[-1]]
        fails = []
        for where, body in picked:
            p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=20)
            if p.returncode != 0:
                fails.append("%s: exit %d: %s" % (where, p.returncode,
                                                  (p.stdout + p.stderr).decode("utf-8", "replace")[:300]))
        expect(not fails, "%d of %d rejected: %s" % (len(fails), len(picked), "; ".join(fails[:3])))

    # ------------------------------------------------------------ draining
    with ctx.case("SIGTERM with a tunnel open: /readyz 503 while draining, exit 0 once the tunnel closes"):
        held = open_hold()
        os.kill(px.proc.pid, signal.SIGTERM)
        r = admin_wait(APORT, "/readyz", lambda x: x.status is not None and x.status != 200, 2, interval=0.1)
        last = admin(APORT, "/readyz")
        expect(r is not None and r.status == 503, "/readyz during the drain: %s" %
               (last.describe() if last.status is None else "%s %r" % (last.status, last.body)))
        expect(r.body.strip() and b"\n" not in r.body.rstrip(b"\n"), "reason body %r" % r.body)
        expect(echo(held, b"draining\n"), "the tunnel stopped working during the drain")
        held.close()
        try:
            rc = px.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        expect(rc == 0, "exit status %s after the drain" % rc)

    ctx.final_checks([px.audit, rl.audit, cm.audit, rot.audit, rotated, fifo_audit])
