#!/usr/bin/python3
"""Fault campaign: the reader of an audit pipe stalls under load, then resumes.

The audit output is a FIFO read by a separate process.  Mid-run the reader is
stopped (SIGSTOP): the pipe and then the queue (audit.queue_size 512KiB
here) fill, and new exchanges are refused with 503 audit_unavailable.  Then
the reader resumes (SIGCONT) and the proxy recovers.  No exchange is let
through without a record; the reader's output is whole lines.
"""
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, harness  # noqa: E402

ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    fifo, out = ctx.path("audit.fifo"), ctx.path("reader-out.log")
    os.mkfifo(fifo)
    reader = ctx.spawn("reader", [harness.PY, "-c", harness.FIFO_READER, fifo, out])
    env = faultlib.Env(ctx, audit={"output": fifo, "queue_size": "512KiB"})
    env.px.audit_path = out
    env.px.audit = harness.Audit(out, ctx.ecs, "reader output")
    load = faultlib.Load(env, threads=32, pace=0.02).start()
    phases = [("baseline", None),
              ("pipe reader stalled", lambda: os.kill(reader.pid, signal.SIGSTOP)),
              ("pipe reader resumed", lambda: os.kill(reader.pid, signal.SIGCONT))]
    faultlib.run_phases(load, phases, ops=400, seconds=4.0)
    load.stop()
    lost = faultlib.metric(env, "portcullis_audit_records_lost_total")
    code = env.px.stop()
    ctx.stop_proc(reader)   # EOF after the proxy closed the pipe: every record read
    faultlib.report_phases(ctx, "audit pipe", env, load, code, [p[0] for p in phases], lost_counted=lost)
    with ctx.case("audit pipe, stalled: new exchanges were refused with 503 audit_unavailable (fail closed)"):
        ops = [op for op in load.ops if op.phase == "pipe reader stalled"]
        expect(any(op.status == 503 for op in ops), "no 503 while the reader was stopped")
    with ctx.case("audit pipe, resumed: allowed exchanges succeed and are recorded"):
        ok = [op for op in load.ops if op.phase == "pipe reader resumed" and op.ok and op.status == 200]
        expect(len(ok) >= 20, "only %d allowed exchanges after the reader resumed" % len(ok))
    ctx.final_checks([env.px.audit])
