#!/usr/bin/python3
"""Scenario: one tenant's refusals cannot starve everyone's audit.

The audit sink is slow (a FIFO read at 20 KiB/s). One source (an IPv4 address
and, in the same flood, sixteen addresses of one IPv6 /64) sends 20,000
refused CONNECTs with long host names as fast as it can, enough to fill the
16 MiB audit queue several times over. While the queue is under pressure, a
source's refusals after the first of each reason per interval are counted
into one aggregate record per second instead of queued one by one, so:

- another tenant's allowed tunnels during and after the flood get 200, never
  503 audit_unavailable, and each of them is recorded;
- nothing goes silently missing: the flooding source's own records plus the
  counts of its aggregate records (labels.aggregated_refusals) equal the
  refusals it was sent, and no record is lost;
- the aggregate records are valid refusal records (denied, the reason, the
  status, the source, event.start/end) and
  portcullis_audit_refusals_aggregated_total counts what they hold;
- once the queue has drained, refusals are recorded one by one again.
"""
import collections
import os
import re
import socket
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

V4 = "198.51.100.10"
T = "allowed.example:8080"
FLOOD = 20000
FLOODER = "127.0.0.2"
NET6 = ["2001:db8:1::%x" % i for i in range(1, 17)]   # one /64: one source
VICTIM = "127.0.0.3"
TIER = "flood" + "-x" * 29                                      # 63 characters
LONG_HOST = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 53, "example"])   # 253 characters

ctx = harness.start(__file__, v4=[V4], v6=NET6)
with ctx:
    ups = harness.Upstreams(ctx, [{"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])

    fifo = ctx.path("audit.fifo")
    out = ctx.path("sink-out.log")
    fast = ctx.path("sink-fast")
    os.mkfifo(fifo)
    # A sink that reads 2 KiB every 100 ms (20 KiB/s) until the file `fast` appears.
    reader_code = ("import os,sys,time\n"
                   "fd=os.open(sys.argv[1],os.O_RDONLY)\n"
                   "out=os.open(sys.argv[2],os.O_WRONLY|os.O_CREAT|os.O_APPEND,0o644)\n"
                   "while True:\n"
                   "    quick=os.path.exists(sys.argv[3])\n"
                   "    d=os.read(fd,65536 if quick else 2048)\n"
                   "    if not d: break\n"
                   "    while d:\n"
                   "        d=d[os.write(out,d):]\n"
                   "    if not quick: time.sleep(0.1)\n")
    reader = ctx.spawn("sink", [harness.PY, "-c", reader_code, fifo, out, fast])
    px = harness.Proxy(ctx, "proxy", {
        TIER: {"sources": ["127.0.0.0/24", "2001:db8::/32"],
               "allow": [{"host": "allowed.example", "ports": [8080]}]},
    }, listen={"proxy": ["127.0.0.1:3128", "[::1]:3128"], "admin": "127.0.0.1:9090", "workers": 2},
       audit={"output": fifo}).start()
    sink = harness.Audit(out, ctx.ecs, "sink output")

    def metric(name):
        with urllib.request.urlopen("http://127.0.0.1:9090/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
        return int(m.group(1)) if m else None

    req = ("CONNECT %s:8080 HTTP/1.1\r\nHost: %s:8080\r\n\r\n" % (LONG_HOST, LONG_HOST)).encode()
    lock = threading.Lock()
    tally = collections.Counter()
    sent = collections.Counter()          # refusals answered, per source group
    victim = collections.Counter()
    victim_ports = []
    stop = threading.Event()
    started = [0]

    def flooder():
        while not stop.is_set():
            with lock:
                if started[0] >= FLOOD:
                    return
                i = started[0]
                started[0] += 1
            # every other refusal from the IPv4 address, the rest spread over the /64
            src = FLOODER if i % 2 == 0 else NET6[(i // 2) % len(NET6)]
            fam = socket.AF_INET6 if ":" in src else socket.AF_INET
            try:
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.settimeout(10)
                s.bind((src, 0))
                s.connect(("::1" if fam == socket.AF_INET6 else "127.0.0.1", 3128))
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
            key = "%s %s" % (buf[9:12].decode("latin-1", "replace"), mm.group(1).decode() if mm else "?")
            with lock:
                tally[key] += 1
                if key == "403 host_not_allowed":
                    sent["v4" if fam == socket.AF_INET else "v6"] += 1

    def prober():
        while not stop.is_set():
            r = harness.connect(T, src=VICTIM, timeout=10)
            key = "%s %s" % (r.status, r.reason if r.status != 200 else "tunnel")
            if r.status == 200:
                r.sock.sendall(b"SAY victim\n")
                harness.recv_line(r.sock, r.leftover, timeout=5)
                victim_ports.append(r.src_port)
            r.close()
            with lock:
                victim[key] += 1
            stop.wait(0.2)

    t0 = time.monotonic()
    ths = [threading.Thread(target=flooder, daemon=True) for _ in range(16)]
    pth = threading.Thread(target=prober, daemon=True)
    for t in ths + [pth]:
        t.start()
    for t in ths:
        t.join(120)
    stop.set()
    pth.join(20)
    dt = time.monotonic() - t0
    print("# flood: %s in %.1fs; victim: %s" % (dict(tally), dt, dict(victim)), flush=True)

    with ctx.case("one source floods %d refused CONNECTs through a 20 KiB/s sink: every one answered 403 "
                  "host_not_allowed" % FLOOD):
        expect(tally.get("403 host_not_allowed") == FLOOD, "flood answers: %s" % dict(tally))

    with ctx.case("meanwhile another tenant's allowed CONNECTs all get 200, never 503 audit_unavailable"):
        expect(victim.get("200 tunnel", 0) >= 5 and set(victim) == {"200 tunnel"},
               "victim's tunnels during the flood: %s" % dict(victim))
        r = harness.connect(T, src=VICTIM)
        expect(r.status == 200, "victim's tunnel after the flood: %s" % r.describe())
        victim_ports.append(r.src_port)
        r.close()

    with ctx.case("the sink reads at full speed again: every record reaches it"):
        open(fast, "w").close()

        def settled():
            n = len(sink.records())
            time.sleep(1.5)    # more than the 1 s aggregation interval
            return n > 0 and len(sink.records()) == n
        expect(harness.wait_until(settled, 60), "sink output still growing after 60s")

    recs = sink.records()
    with ctx.case("every allowed tunnel of the other tenant is recorded (%d)" % len(victim_ports)):
        got = {get(r, "source.port") for r in recs if get(r, "source.ip") == VICTIM}
        missing = [p for p in victim_ports if p not in got]
        expect(not missing, "%d of %d victim tunnels have no record (ports %s)" %
               (len(missing), len(victim_ports), missing[:5]))

    def group(r):
        ip = get(r, "source.ip") or ""
        return "v6" if ip.startswith("2001:db8:1:") else "v4" if ip == FLOODER else None

    agg = [r for r in recs if get(r, "labels.aggregated_refusals") is not None]
    with ctx.case("nothing goes silently missing: per source, own records + aggregated counts == refusals "
                  "answered (IPv4 %d, IPv6 /64 %d); no record lost" % (sent["v4"], sent["v6"])):
        for g in ("v4", "v6"):
            own = sum(1 for r in recs if group(r) == g and get(r, "labels.aggregated_refusals") is None)
            counted = sum(int(get(r, "labels.aggregated_refusals")) for r in agg if group(r) == g)
            expect(own + counted == sent[g], "%s: %d own records + %d counted = %d, %d refusals answered" %
                   (g, own, counted, own + counted, sent[g]))
            expect(own < sent[g] // 4, "%s: %d of %d refusals written one by one: the flood was not "
                   "aggregated" % (g, own, sent[g]))
        expect(metric("portcullis_audit_records_lost_total") == 0,
               "audit_records_lost_total %s" % metric("portcullis_audit_records_lost_total"))

    with ctx.case("aggregate records are refusal records: denied, host_not_allowed, 403, the source, the "
                  "tier, event.action refusals-aggregated, event.start <= event.end"):
        expect(agg, "no aggregate record")
        for r in agg:
            harness.check_denied_record(r, "host_not_allowed", 403)
            expect(get(r, "event.action") == "refusals-aggregated", "event.action %r" % get(r, "event.action"))
            expect(group(r) is not None, "aggregate record for source %r" % get(r, "source.ip"))
            expect(get(r, "rule.ruleset") == TIER, "rule.ruleset %r" % get(r, "rule.ruleset"))
            expect(get(r, "event.start") <= get(r, "event.end"), "event.start %r after event.end %r" %
                   (get(r, "event.start"), get(r, "event.end")))
            expect(int(get(r, "labels.aggregated_refusals")) >= 1, "count %r" % get(r, "labels.aggregated_refusals"))

    with ctx.case("portcullis_audit_refusals_aggregated_total equals the refusals the aggregate records count"):
        total = sum(int(get(r, "labels.aggregated_refusals")) for r in agg)
        expect(metric("portcullis_audit_refusals_aggregated_total") == total,
               "metric %s, records count %d" % (metric("portcullis_audit_refusals_aggregated_total"), total))

    with ctx.case("with the queue drained, refusals are recorded one by one again"):
        before = len(recs)
        ports = []
        for _ in range(5):
            r = harness.connect(LONG_HOST + ":8080", src=FLOODER)
            expect(r.status == 403, "refusal after the flood: %s" % r.describe())
            ports.append(r.src_port)
        got = harness.wait_until(lambda: {get(x, "source.port") for x in sink.records()[before:]} >= set(ports), 5)
        expect(got, "the five refusals after the flood were not each recorded")

    with ctx.case("proxy still running, no sanitizer report"):
        expect(px.alive(), "proxy exited: %s" % px.stderr_text()[-300:])
        expect(not px.sanitizer_report(), px.sanitizer_report())
    ctx.final_checks([sink])
