#!/usr/bin/python3
"""Fault campaign: the proxy at its file-descriptor limit, under load.

The daemon runs with RLIMIT_NOFILE 128.  Mid-run every allowed tunnel is
held open for a second, so the connections the load keeps open need more
descriptors than the proxy has: accept fails with EMFILE and backs off (no
spin, no crash); connections wait in the backlog and are served as
descriptors come free.  Every connection that got in has its record.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, harness  # noqa: E402

NOFILE = 128


ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    env = faultlib.Env(ctx, start=False)
    env.px.start(prefix=["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE), "--"])
    load = faultlib.Load(env, threads=200, pace=0.05).start()

    def hold_tunnels():
        load.tunnel_cmd = lambda q: faultlib.holding(1.0)

    def quick():
        load.tunnel_cmd = None

    phases = [("baseline", None), ("at the fd limit (%d)" % NOFILE, hold_tunnels), ("well again", quick)]
    faultlib.run_phases(load, phases, ops=300, seconds=5.0, timeout=90)
    load.stop()
    with ctx.case("fd limit: the daemon is alive and answers its admin port"):
        expect(env.px.alive(), "the proxy exited: %s" % env.px.stderr_text()[-300:])
        expect(faultlib.metric(env, "process_max_fds") == NOFILE, "process_max_fds %s, want %d" %
               (faultlib.metric(env, "process_max_fds"), NOFILE))
    code = env.px.stop()
    faultlib.report_phases(ctx, "fd limit", env, load, code, [p[0] for p in phases])
    with ctx.case("fd limit: the limit was reached (accept: Too many open files, accepting paused)"):
        expect("Too many open files" in env.px.stderr_text(), "no EMFILE in the proxy's log: the load did "
               "not reach the limit")
    with ctx.case("fd limit: connections waited for descriptors (held tunnels filled them) and were served"):
        ops = [op for op in load.ops if op.phase == phases[1][0] and op.kind == "tunnel" and op.ok]
        expect(len(ops) >= 50, "only %d held tunnels completed at the limit" % len(ops))
    ctx.final_checks([env.px.audit])
