#!/usr/bin/python3
"""Scenario: start and interim records never cost a tunnel its close record.

The audit sink stops reading (a FIFO nobody drains) and the queue is small
(audit.queue_size 64 KiB), with audit.tunnel_start on and audit.interim at its
10 s minimum.  Tunnels are opened and held until the proxy refuses new ones
with 503 audit_unavailable (fail closed), and held past an interim period, so
start and interim records press on the full queue.  Then the tunnels close
and the sink reads again:

- every tunnel that got 200 has exactly one close record: the room promised
  to it at admission was never taken by a start or interim record;
- start and interim records the queue had no unpromised room for are missing,
  and portcullis_audit_records_lost_total counts every record that is
  missing (with the refusals that could not be queued either): nothing goes
  silently missing.  (Refusals under pressure may arrive as one aggregate record
  counting several: labels.aggregated_refusals.)
"""
import os
import re
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get, as_list  # noqa: E402

V4 = "198.51.100.50"
MAX_TUNNELS = 400

ctx = harness.start(__file__, v4=[V4])
with ctx:
    ups = harness.Upstreams(ctx, [{"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])
    fifo = ctx.path("audit.fifo")
    out = ctx.path("sink-out.log")
    go = ctx.path("sink-go")
    os.mkfifo(fifo)
    # Opens the FIFO (so the proxy can), reads nothing until `go` exists, then copies to out.
    reader_code = ("import os,sys,time\n"
                   "fd=os.open(sys.argv[1],os.O_RDONLY)\n"
                   "while not os.path.exists(sys.argv[3]): time.sleep(0.05)\n"
                   "out=os.open(sys.argv[2],os.O_WRONLY|os.O_CREAT|os.O_APPEND,0o644)\n"
                   "while True:\n"
                   "    d=os.read(fd,65536)\n"
                   "    if not d: break\n"
                   "    while d: d=d[os.write(out,d):]\n")
    reader = ctx.spawn("sink", [harness.PY, "-c", reader_code, fifo, out, go])
    px = harness.Proxy(ctx, "proxy", {
        "a": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [8080]}]},
    }, audit={"output": fifo, "queue_size": "64KiB", "tunnel_start": True, "interim": "10s"}).start()
    sink = harness.Audit(out, ctx.ecs, "sink output")

    def lost():
        with urllib.request.urlopen("http://127.0.0.1:9090/metrics", timeout=5) as r:
            m = re.search(r"^portcullis_audit_records_lost_total (\d+)$", r.read().decode(), re.M)
        return int(m.group(1)) if m else None

    held, refused = [], 0
    with ctx.case("tunnels are admitted until the queue is full, then refused 503 audit_unavailable"):
        for _ in range(MAX_TUNNELS):
            r = harness.connect("allowed.example:8080")
            if r.status == 200:
                r.opened = time.monotonic()
                r.sock.sendall(b"HOLD\n")
                expect(harness.recv_line(r.sock, r.leftover) == b"HOLD ok\n", "no HOLD answer")
                held.append(r)
                continue
            expect(r.status == 503 and r.reason == "audit_unavailable", "refused with %s" % r.describe())
            r.close()
            refused += 1
            if refused >= 5:
                break
        expect(refused >= 5 and len(held) >= 10, "%d tunnels held, %d refused: the queue never filled" %
               (len(held), refused))

    with ctx.case("held past an interim period, closed, drained: one close record per tunnel, "
                  "every missing record counted"):
        t0 = time.monotonic()
        harness.wait_until(lambda: time.monotonic() - t0 > 12, 15, interval=0.5)   # past audit.interim
        ports = {r.src_port for r in held}
        interim_lo = interim_hi = 0   # interim records the tunnels' lives call for (+-0.5 s)
        for r in held:
            life = time.monotonic() - r.opened
            interim_lo += int(max(0.0, life - 0.5) // 10)
            interim_hi += int((life + 0.5) // 10)
            r.close()
        open(go, "w").close()
        closes = lambda: [x for x in sink.records() if "end" in as_list(get(x, "event.type"))]  # noqa: E731
        harness.wait_until(lambda: {get(x, "source.port") for x in closes()} >= ports, 30)
        per_port = {}
        for x in closes():
            per_port[get(x, "source.port")] = per_port.get(get(x, "source.port"), 0) + 1
        missing = sorted(ports - set(per_port))
        twice = sorted(p for p, n in per_port.items() if n > 1)
        expect(not missing and not twice, "%d tunnels without a close record (%s), %d with two (%s)" %
               (len(missing), missing[:5], len(twice), twice[:5]))
        recs = sink.records()
        starts = sum(1 for x in recs if "start" in as_list(get(x, "event.type")))
        # Under pressure a source's refusals are counted into one aggregate record a second.
        refusals = sum(int(get(x, "labels.aggregated_refusals") or 1) for x in recs
                       if "denied" in as_list(get(x, "event.type")))
        # Every start and refusal record, and the interim records the tunnels' lives call for,
        # either reached the sink or was counted lost: exactly, up to the interims of tunnels
        # that closed within half a second of an interim deadline.
        interims = sum(1 for x in recs if "info" in as_list(get(x, "event.type")))
        n_lost = harness.wait_until(lambda: lost(), 5)
        base = (len(held) - starts) + (refused - refusals)
        lo, hi = base + max(0, interim_lo - interims), base + interim_hi - interims
        expect(n_lost is not None and lo <= n_lost <= hi,
               "portcullis_audit_records_lost_total %r, but %d start, %d refusal and %d..%d interim "
               "records are missing" % (n_lost, len(held) - starts, refused - refusals,
                                        interim_lo - interims, interim_hi - interims))
        print("# %d tunnels, %d refused; %d start, %d interim, %d refusal records shipped; %d lost" %
              (len(held), refused, starts, interims, refusals, n_lost), flush=True)

    ctx.final_checks([sink])
