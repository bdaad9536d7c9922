#!/usr/bin/python3
"""Fault campaign: the audit file is rotated every 100 ms under load.

Each rotation renames the file and sends SIGUSR1, as logrotate does.  Across
all the files, every exchange has exactly one record, whole lines only.
"""
import os
import signal
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, harness  # noqa: E402

ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    env = faultlib.Env(ctx)
    path = env.px.audit_path
    rotated = []
    stop = threading.Event()

    def rotate():
        while not stop.wait(0.1) and len(rotated) < 200:
            to = "%s.%d" % (path, len(rotated) + 1)
            os.rename(path, to)
            rotated.append(to)
            os.kill(env.px.proc.pid, signal.SIGUSR1)

    load = faultlib.Load(env, threads=32, pace=0.02).start()
    rot = None

    def start_rotating():
        global rot
        rot = threading.Thread(target=rotate, daemon=True)
        rot.start()

    phases = [("baseline", None), ("rotated every 100 ms", start_rotating), ("after rotation", stop.set)]
    faultlib.run_phases(load, phases, ops=400, seconds=4.0)
    load.stop()
    rot.join(5)
    code = env.px.stop()
    files = rotated + [path]
    for name in [p[0] for p in phases]:
        row = faultlib.account(env, load, code, audit_paths=files, phase=name)
        row["files"] = len(files)
        faultlib.report(ctx, "audit rotation", name, load, row)
        faultlib.check(ctx, "audit rotation, %s" % name, row)
    with ctx.case("audit rotation: %d rotations, every file whole lines" % len(rotated)):
        expect(len(rotated) >= 20, "only %d rotations" % len(rotated))
        bad = [f for f in files if os.path.getsize(f) and not open(f, "rb").read().endswith(b"\n")]
        expect(not bad, "files ending mid-line: %s" % bad)
    ctx.final_checks([harness.Audit(f, ctx.ecs, os.path.basename(f)) for f in files if os.path.getsize(f)])
