#!/usr/bin/python3
"""Fault campaign: SIGTERM under load, with drain.

Half the allowed tunnels are held open for 8 s.  SIGTERM arrives mid-run
with timeouts.drain 3s: the proxy stops accepting, lets open exchanges
finish, cuts what is still open when the drain ends (drain_timeout), and
exits 0.  Every connection it answered has exactly one record, the tunnels
open at SIGTERM included.
"""
import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, get, harness  # noqa: E402


ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    env = faultlib.Env(ctx)
    load = faultlib.Load(env, threads=48, pace=0.05,
                         tunnel_cmd=lambda q: faultlib.holding(8.0, True) if q % 8 == 0 else b"SAY fault-%d\n" % q).start()
    sigterm = {}

    def term():
        sigterm["t"] = time.monotonic()
        os.kill(env.px.proc.pid, signal.SIGTERM)

    phases = [("under load", None), ("SIGTERM, draining", term)]
    faultlib.run_phases(load, phases, ops=100, seconds=4.0)
    code = env.px.proc.wait(timeout=15)
    load.stop()
    faultlib.report_phases(ctx, "shutdown", env, load, code, [phases[0][0]], min_answered=50)
    # once the listeners close, new connections are refused by the kernel: none is answered
    faultlib.report_phases(ctx, "shutdown", env, load, code, [phases[1][0]], min_answered=0)
    with ctx.case("shutdown: tunnels open at SIGTERM end with a record each (finished, or drain_timeout)"):
        recs = {(get(r, "source.ip"), get(r, "source.port")): r for r in env.px.audit.records()}
        open_then = [op for op in load.ops if op.kind == "tunnel" and op.status == 200 and
                     op.t < sigterm["t"] < op.t_end]
        reasons = sorted({get(recs.get((op.src, op.port)) or {}, "event.reason") for op in open_then},
                         key=str)
        expect(open_then, "no tunnel was open at SIGTERM")
        for op in open_then[:3]:
            r = recs.get((op.src, op.port)) or {}
            print("# open at SIGTERM: ended %.2fs after it, ok %s, reason %s, duration %s" %
                  (op.t_end - sigterm["t"], op.ok, get(r, "event.reason"), get(r, "event.duration")))
        expect(set(reasons) <= {"client_closed", "upstream_closed", "drain_timeout"},
               "reasons %s" % reasons)
        expect("drain_timeout" in reasons, "no held tunnel was cut at the end of the drain: %s" % reasons)
    ctx.final_checks([env.px.audit])
