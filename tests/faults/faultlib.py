"""The fault campaign's load, its accounting, and its report rows.

A scenario starts an Env (upstreams, the pinned resolver, the proxy), runs a
Load (client threads doing mixed allowed and denied tunnels and plain-HTTP
requests, one exchange per connection, each from its own source port),
injects a fault mid-run, stops the load and the proxy, then calls account():
every client connection is matched to its audit records by source port.

The invariant (check()):
- every connection the proxy answered has exactly one audit record (a refusal
  counted in an aggregate record of its source counts as recorded);
- no connection is allowed without a record;
- no connection has two records;
- no byte reaches an upstream after a refusal: the denied host resolves to
  listeners of their own, which must never see a connection;
- the daemon keeps serving, or exits with a clear error and a non-zero status.

A connection that got no byte from the proxy (refused, reset, timed out
before an answer) may or may not have a record: the proxy may never have
accepted it.  Those are counted, not judged.
"""
import collections
import json
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402,F401

GOOD = "198.51.100.10"    # allowed.example: the upstreams
BAD = "198.51.100.20"     # denied.example: listeners that must never see a connection
SOURCES = ["127.0.0.%d" % i for i in range(2, 10)]
TIMEOUT = 10.0            # one exchange, client side

TIER = {"sources": ["127.0.0.0/24"],
        "allow": [{"host": "allowed.example", "ports": [80, 8080]}]}


class FaultDns:
    """dnsfault.py on addr: a pinned resolver whose behaviour a scenario switches."""

    def __init__(self, ctx, addr, records):
        self.ctx, self.addr, self.records = ctx, addr, records
        self.mode_file = ctx.path("dns-mode-%s" % addr)
        self.set_mode("ok")
        self.proc = None
        self.start()

    def start(self):
        argv = [harness.PY, os.path.join(HERE, "dnsfault.py"), self.addr, self.mode_file]
        argv += ["%s=%s" % r for r in self.records]
        self.proc = self.ctx.spawn("dns-%s" % self.addr, argv)

        def up():
            try:
                return harness.dns_query(self.addr, self.records[0][0], 1, timeout=0.2)[1]
            except OSError:
                return None
        if not harness.wait_until(up, 10):
            raise RuntimeError("dnsfault on %s did not answer" % self.addr)

    def kill(self):
        self.ctx.stop_proc(self.proc, signal.SIGKILL)

    def set_mode(self, mode):
        with open(self.mode_file + ".tmp", "w") as f:
            f.write(mode)
        os.replace(self.mode_file + ".tmp", self.mode_file)


class Env:
    """Upstreams, a pinned resolver and one proxy, in the scenario's namespace."""

    def __init__(self, ctx, tiers=None, resolvers=("127.0.0.53",), start=True, fault_dns=False,
                 **over):
        self.ctx = ctx
        self.ups = harness.Upstreams(ctx, [
            {"name": "raw8080", "host": GOOD, "port": 8080, "kind": "tcp"},
            {"name": "origin80", "host": GOOD, "port": 80, "kind": "http-origin"},
            {"name": "bad8080", "host": BAD, "port": 8080, "kind": "tcp", "role": "forbidden"},
            {"name": "bad80", "host": BAD, "port": 80, "kind": "tcp", "role": "forbidden"},
        ])
        recs = [("allowed.example", GOOD), ("denied.example", BAD)]
        if fault_dns:
            self.dns = [FaultDns(ctx, r, recs) for r in resolvers]
        else:
            self.dns = [harness.Dnsmasq(ctx, r, recs, name="dns-%s" % r) for r in resolvers]
        over.setdefault("resolver", {"servers": ["%s:53" % r for r in resolvers], "timeout": "1s",
                                     "attempts": 1})
        over.setdefault("timeouts", {"connect": "1s", "idle": "10s", "drain": "3s"})
        self.px = harness.Proxy(ctx, "proxy", tiers or {"fault": TIER}, **over)
        out = over.get("audit", {}).get("output")
        if out:   # the audit output the scenario chose (a small disk, a pipe)
            self.px.audit_path = out
            self.px.audit = harness.Audit(out, ctx.ecs, "proxy")
        if start:
            self.px.start()

    def forbidden_accepts(self):
        return len(self.ups.accepts(role="forbidden"))


class Op:
    __slots__ = ("kind", "src", "port", "status", "ok", "answered", "error", "t", "t_end", "phase")

    def __init__(self, kind, src):
        self.kind, self.src = kind, src
        self.phase = None
        self.port = None
        self.status = None     # the proxy's status; 200 for a tunnel
        self.ok = False        # the exchange did what the client wanted
        self.answered = False  # any byte came back from the proxy
        self.error = None
        self.t = time.monotonic()
        self.t_end = None


def _recv_head(s, deadline):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return buf


def _recv_all(s, buf, deadline, limit=1 << 22):
    while len(buf) < limit:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return buf


def run_op(kind, src, proxy_port, seq, tunnel_cmd=None, http_path=None):
    """One exchange on a connection of its own.  kinds: tunnel, denied_tunnel, http, denied_http.
    tunnel_cmd(seq): what a tunnel sends (default SAY fault-<seq>), or a callable(sock, rest,
    deadline) that runs the tunnel itself; http_path(seq): the path of a plain-HTTP request
    (default /cl/2000/<seq>)."""
    op = Op(kind, src)
    deadline = time.monotonic() + TIMEOUT
    try:
        s = harness.bound_socket(src)
    except RuntimeError as e:
        op.error = str(e)
        return op
    op.port = s.getsockname()[1]
    try:
        s.settimeout(TIMEOUT)
        s.connect(("127.0.0.1", proxy_port))
        if kind == "tunnel":
            s.sendall(b"CONNECT allowed.example:8080 HTTP/1.1\r\nHost: allowed.example:8080\r\n\r\n")
        elif kind == "denied_tunnel":
            # the payload rides with the request: it must never reach an upstream
            s.sendall(b"CONNECT denied.example:8080 HTTP/1.1\r\nHost: denied.example:8080\r\n\r\n"
                      b"SAY denied\n")
        elif kind == "http":
            path = http_path(seq) if http_path else b"/cl/2000/%d" % seq
            s.sendall(b"GET http://allowed.example%s HTTP/1.1\r\nHost: allowed.example\r\n"
                      b"Connection: close\r\n\r\n" % path)
        else:
            s.sendall(b"POST http://denied.example/x HTTP/1.1\r\nHost: denied.example\r\n"
                      b"Content-Length: 6\r\nConnection: close\r\n\r\ndenied")
        head = _recv_head(s, deadline)
        op.answered = len(head) > 0
        if head.startswith(b"HTTP/1."):
            try:
                op.status = int(head[9:12])
            except ValueError:
                op.status = None
        if kind == "tunnel" and op.status == 200:
            rest = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
            cmd = tunnel_cmd(seq) if tunnel_cmd else b"SAY fault-%d\n" % seq
            if callable(cmd):
                op.ok = cmd(s, rest, deadline)
            else:
                s.sendall(cmd)
                got = _recv_all(s, rest, deadline)
                op.ok = got == b"fault-%d\n" % seq if tunnel_cmd is None else True
        elif kind == "http" and op.status == 200:
            got = _recv_all(s, head, deadline)
            op.ok = http_path is not None or len(got.split(b"\r\n\r\n", 1)[-1]) == 2000
        elif kind in ("denied_tunnel", "denied_http"):
            op.ok = op.status == 403
            _recv_all(s, head, deadline, limit=65536)
    except OSError as e:
        op.error = "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()
        op.t_end = time.monotonic()
    return op


class Load:
    """Client threads cycling through kinds until stopped (or max_ops)."""

    def __init__(self, env, threads=48, kinds=("tunnel", "denied_tunnel", "http", "denied_http"),
                 max_ops=20000, tunnel_cmd=None, pace=0.0, sources=None):
        self.env, self.threads, self.kinds, self.max_ops = env, threads, kinds, max_ops
        self.sources = sources or SOURCES
        self.tunnel_cmd, self.pace = tunnel_cmd, pace
        self.http_path = None     # the scenario may change both between phases
        self.ops = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ths = []
        self.seq = 0
        self.phase = None     # set by the scenario; every exchange notes the phase it began in
        self.phase_cap = None  # at most this many exchanges begin in one phase (set_phase)
        self.phase_seq0 = 0

    def set_phase(self, name, cap=None):
        """Exchanges begun from now on note `name`; at most `cap` of them begin in it, so a
        fast phase cannot spend the whole max_ops and leave the next phase nothing."""
        with self.lock:
            self.phase, self.phase_cap, self.phase_seq0 = name, cap, self.seq

    def _worker(self, i):
        while not self.stopping.is_set():
            with self.lock:
                if self.seq >= self.max_ops:
                    return
                full = self.phase_cap is not None and self.seq - self.phase_seq0 >= self.phase_cap
                if not full:
                    seq = self.seq
                    self.seq += 1
                    phase = self.phase
            if full:
                self.stopping.wait(0.05)   # this phase has had its share; wait for the next
                continue
            kind = self.kinds[seq % len(self.kinds)]
            src = self.sources[(seq // len(self.kinds)) % len(self.sources)]
            op = run_op(kind, src, self.env.px.port, seq, self.tunnel_cmd, self.http_path)
            op.phase = phase
            with self.lock:
                self.ops.append(op)
            if self.pace:
                self.stopping.wait(self.pace)

    def start(self):
        self.t0 = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._worker, args=(i,), daemon=True)
            t.start()
            self.ths.append(t)
        return self

    def done(self):
        with self.lock:
            return len(self.ops)

    def wait_ops(self, n, timeout):
        """Until n more exchanges finished (bounded)."""
        want = self.done() + n
        return harness.wait_until(lambda: self.done() >= want, timeout)

    def stop(self):
        self.stopping.set()
        for t in self.ths:
            t.join(TIMEOUT + 5)
        self.seconds = time.monotonic() - self.t0
        return self


def account(env, load, exit_code, audit_paths=None, phase=None):
    """Match every exchange (of one phase, or all) to its records (in the proxy's audit file, or
    in audit_paths: a rotated file and its successor); the numbers of one report row."""
    recs = []
    for path in audit_paths or [env.px.audit_path]:
        recs += harness.Audit(path, env.ctx.ecs, os.path.basename(path)).records()
    by_port = collections.Counter()
    aggregated = collections.Counter()   # source ip -> refusals counted in aggregates
    for r in recs:
        n = get(r, "labels.aggregated_refusals")
        if n is not None:
            aggregated[get(r, "source.ip")] += int(n)
        else:
            by_port[(get(r, "source.ip"), get(r, "source.port"))] += 1
    ops = [op for op in load.ops if phase is None or op.phase == phase]
    row = collections.OrderedDict(connections=len(ops), answered=0, allowed=0, refused=0,
                                  unanswered=0, records=len(recs), lost=0, doubled=0,
                                  allowed_unrecorded=0, aggregated=sum(aggregated.values()),
                                  after_refusal=env.forbidden_accepts(), exit=exit_code)
    unrec_denied = collections.Counter()
    examples = []
    for op in ops:
        n = by_port.get((op.src, op.port), 0)
        if n > 1:
            row["doubled"] += 1
            examples.append("port %s: %d records" % (op.port, n))
        if not op.answered:
            row["unanswered"] += 1
            continue
        row["answered"] += 1
        allowed = op.status == 200
        row["allowed" if allowed else "refused"] += 1
        if n == 0:
            if allowed:
                row["allowed_unrecorded"] += 1
                row["lost"] += 1
                examples.append("%s from %s:%s allowed, no record" % (op.kind, op.src, op.port))
            else:
                unrec_denied[op.src] += 1
    # refusals without their own record must all be counted in their source's aggregates
    for src, n in unrec_denied.items():
        if n > aggregated.get(src, 0):
            row["lost"] += n - aggregated.get(src, 0)
            examples.append("%d refusals from %s neither recorded nor aggregated" %
                            (n - aggregated.get(src, 0), src))
    row["examples"] = examples[:5]
    return row


def report(ctx, scenario, fault, load, row, extra=None):
    """Print the row and append it to $PORTCULLIS_FAULTS_RESULTS (a JSON-lines file)."""
    out = collections.OrderedDict(scenario=scenario, fault=fault, threads=load.threads,
                                  seconds=round(getattr(load, "seconds", 0), 1))
    out.update(row)
    if extra:
        out.update(extra)
    print("# row: %s" % json.dumps(out), flush=True)
    path = os.environ.get("PORTCULLIS_FAULTS_RESULTS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(out) + "\n")
    return out


def check(ctx, name, row, min_answered=100, serving=True, allow_lost_counted=0):
    """The invariant, one case per promise."""
    with ctx.case("%s: load ran (%d exchanges, %d answered)" % (name, row["connections"], row["answered"])):
        expect(row["answered"] >= min_answered, "only %d exchanges answered" % row["answered"])
    with ctx.case("%s: every answered connection has exactly one record (or is counted lost, if "
                  "refused); none allowed without one" % name):
        expect(row["lost"] <= allow_lost_counted and row["allowed_unrecorded"] == 0,
               "lost %d (allowed without a record %d): %s" %
               (row["lost"], row["allowed_unrecorded"], row["examples"]))
    with ctx.case("%s: no connection recorded twice" % name):
        expect(row["doubled"] == 0, "%d doubled: %s" % (row["doubled"], row["examples"]))
    with ctx.case("%s: no byte reached an upstream after a refusal" % name):
        expect(row["after_refusal"] == 0, "the denied host's listeners accepted %d connections" %
               row["after_refusal"])
    if serving:
        with ctx.case("%s: the daemon kept serving, then drained and exited 0" % name):
            expect(row["exit"] == 0, "exit status %s" % row["exit"])


def holding(seconds, until_closed=False):
    """A tunnel_cmd callable: HOLD (the upstream echoes until EOF), then keep the tunnel open
    for `seconds`; until_closed: also return early when the proxy ends it."""
    def run(s, rest, deadline):
        s.sendall(b"HOLD\n")
        got = rest
        while b"HOLD ok\n" not in got:
            d = s.recv(4096)
            if not d:
                return False
            got += d
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end:
                s.settimeout(max(0.05, end - time.monotonic()))
                if until_closed and not s.recv(4096):
                    break
                if not until_closed:
                    time.sleep(max(0.0, end - time.monotonic()))
            if not until_closed:
                s.sendall(b"still here\n")
        except OSError:
            pass
        return True
    return run


def run_phases(load, phases, ops=240, seconds=2.0, timeout=60):
    """Run the load through phases [(name, setup or None)]: each phase's setup, then at least
    `ops` exchanges and `seconds`.  Returns {name: (began, ended)} (monotonic times)."""
    times = {}
    with load.lock:
        cap = (load.max_ops - load.seq) // len(phases)   # each phase its share of what is left
    for name, setup in phases:
        if setup:
            setup()
        load.set_phase(name, cap)
        t0 = time.monotonic()
        load.wait_ops(ops, timeout)
        left = seconds - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)   # the load runs meanwhile; nothing is asserted on time
        times[name] = (t0, time.monotonic())
    return times


def report_phases(ctx, scenario, env, load, exit_code, names, min_answered=100, serving=True,
                  audit_paths=None, lost_counted=0):
    """One report row and the invariant's cases per phase.  lost_counted: records the proxy
    counted as lost (portcullis_audit_records_lost_total); refusals may be among them, never an
    allowed exchange."""
    rows = []
    for name in names:
        row = account(env, load, exit_code, audit_paths=audit_paths, phase=name)
        row["lost_counted"] = lost_counted
        rows.append(report(ctx, scenario, name, load, row))
        check(ctx, "%s, %s" % (scenario, name), row, min_answered=min_answered, serving=serving,
              allow_lost_counted=lost_counted)
    return rows


def metric(env, name):
    """One unlabelled sample of the proxy's /metrics (None when absent)."""
    import re
    import urllib.request
    port = int(env.px.policy["listen"]["admin"].rsplit(":", 1)[1])
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None
