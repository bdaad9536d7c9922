#!/usr/bin/python3
"""Fault campaign: the audit log's disk fills up under load, then has room again.

The audit file lives on a small tmpfs in the scenario's mount namespace.
Mid-run a filler file takes every free byte: writes fail with ENOSPC, the
queue (audit.queue_size 512KiB here) fills, and new exchanges are refused
with 503 audit_unavailable (fail closed).  Then the filler goes: the writer
resumes, and every record it writes is a whole line.  No exchange is let
through without a record; refusals whose records could not be queued are
counted in portcullis_audit_records_lost_total.
"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, harness  # noqa: E402

ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    disk = ctx.path("disk")
    os.makedirs(disk)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk], check=True, timeout=10)
    ctx.cleanups.append(lambda: subprocess.run(["umount", "-l", disk], timeout=10))
    filler = os.path.join(disk, "filler")
    env = faultlib.Env(ctx, audit={"output": os.path.join(disk, "audit.log"), "queue_size": "512KiB"})
    load = faultlib.Load(env, threads=32, pace=0.02).start()

    def fill():
        # Unbuffered: a buffered file would flush what it still holds when it closes, and
        # that write fails with ENOSPC outside the try (it did on a loaded CI machine).
        with open(filler, "wb", buffering=0) as f:
            try:
                while f.write(b"\0" * 65536):
                    pass
            except OSError:
                pass

    phases = [("baseline", None), ("disk full", fill), ("disk has room again", lambda: os.unlink(filler))]
    faultlib.run_phases(load, phases, ops=400, seconds=4.0)
    load.stop()
    lost = faultlib.metric(env, "portcullis_audit_records_lost_total")
    code = env.px.stop()
    faultlib.report_phases(ctx, "audit disk", env, load, code, [p[0] for p in phases], lost_counted=lost)
    with ctx.case("audit disk, full: new exchanges were refused with 503 audit_unavailable (fail closed)"):
        ops = [op for op in load.ops if op.phase == "disk full"]
        expect(any(op.status == 503 for op in ops), "no 503 while the disk was full: %s" %
               sorted({op.status for op in ops}, key=str))
    with ctx.case("audit disk, room again: allowed exchanges succeed and are recorded"):
        ok = [op for op in load.ops if op.phase == "disk has room again" and op.ok and op.status == 200]
        expect(len(ok) >= 20, "only %d allowed exchanges after the disk had room" % len(ok))
    ctx.final_checks([env.px.audit])
