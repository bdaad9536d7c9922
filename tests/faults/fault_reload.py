#!/usr/bin/python3
"""Fault campaign: policy reloads under load.

The policy is mounted the way a ConfigMap is (policy.yaml -> ..data/policy.yaml,
..data -> a timestamped directory).  Under load: a SIGHUP every 10 ms while
the file is rewritten in turn with two valid policies and a broken one; then
a ..data swap every 50 ms, as the kubelet does it, with the same three.  Both
valid policies allow the load's allowed exchanges and refuse its denied
ones, and a broken file keeps the running policy, so every exchange must
come out as before, each with one record, while the reload counters move.
"""
import os
import shutil
import signal
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, harness  # noqa: E402

ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    env = faultlib.Env(ctx, start=False)
    a = harness.to_yaml(env.px.policy) + "\n"
    b_pol = dict(env.px.policy)
    b_pol["tiers"] = {"fault": dict(faultlib.TIER, allow=faultlib.TIER["allow"] +
                                    [{"host": "other.example", "ports": [443]}])}
    b = harness.to_yaml(b_pol) + "\n"
    broken = a.replace("tiers:", "tiers: [", 1)
    texts = [a, b, broken]

    cm = ctx.path("configmap")
    os.makedirs(os.path.join(cm, "..v0"))
    with open(os.path.join(cm, "..v0", "policy.yaml"), "w") as f:
        f.write(a)
    os.symlink("..v0", os.path.join(cm, "..data"))
    os.symlink("..data/policy.yaml", os.path.join(cm, "policy.yaml"))
    env.px.policy_path = os.path.join(cm, "policy.yaml")
    env.px.start()

    stop = threading.Event()
    ticks = [0, 0]

    def sighup_storm():
        while not stop.wait(0.01):
            with open(os.path.join(cm, "..data", "policy.yaml"), "w") as f:
                f.write(texts[ticks[0] % 3])
            os.kill(env.px.proc.pid, signal.SIGHUP)
            ticks[0] += 1

    def swaps():
        while not stop.wait(0.05):
            n = ticks[1] + 1
            old = os.readlink(os.path.join(cm, "..data"))
            new = "..v%d" % n
            os.mkdir(os.path.join(cm, new))
            with open(os.path.join(cm, new, "policy.yaml"), "w") as f:
                f.write(texts[n % 3])
            os.symlink(new, os.path.join(cm, "..data_tmp"))
            os.rename(os.path.join(cm, "..data_tmp"), os.path.join(cm, "..data"))
            shutil.rmtree(os.path.join(cm, old))
            ticks[1] = n

    runner = {}

    def start(fn):
        def go():
            stop.clear()
            runner["t"] = threading.Thread(target=fn, daemon=True)
            runner["t"].start()
        return go

    def halt():
        stop.set()
        runner["t"].join(5)

    def swap_phase():
        halt()
        start(swaps)()

    def settle():
        halt()
        with open(os.path.join(cm, "..data", "policy.yaml"), "w") as f:
            f.write(a)
        os.kill(env.px.proc.pid, signal.SIGHUP)

    load = faultlib.Load(env, threads=32, pace=0.02).start()
    phases = [("baseline", None), ("SIGHUP every 10 ms (2 valid policies, 1 broken)", start(sighup_storm)),
              ("ConfigMap ..data swap every 50 ms", swap_phase), ("well again", settle)]
    faultlib.run_phases(load, phases, ops=400, seconds=3.0)
    load.stop()
    with ctx.case("reloads: %d SIGHUPs and %d ..data swaps; the daemon serves on" % tuple(ticks)):
        expect(env.px.alive(), "the proxy exited: %s" % env.px.stderr_text()[-300:])
        expect(ticks[0] >= 100 and ticks[1] >= 20, "only %d SIGHUPs and %d swaps" % tuple(ticks))
        text = env.px.stderr_text()
        expect("policy reloaded" in text, "no reload succeeded")
        expect("is invalid; the previous policy stays" in text, "no broken file was refused")
    code = env.px.stop()
    faultlib.report_phases(ctx, "reload", env, load, code, [p[0] for p in phases])
    ctx.final_checks([env.px.audit])
