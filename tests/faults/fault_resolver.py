#!/usr/bin/python3
"""Fault campaign: the pinned resolvers fail under load.

Two pinned resolvers (dnsfault.py) answer allowed.example and denied.example.
Under a load of mixed allowed and denied tunnels and plain-HTTP requests,
one phase after another: one resolver black-holed; both killed, then
restarted; both answering SERVFAIL, truncated (TC, TCP refused), oversized
and garbage answers; one answering REFUSED; then both well again.  A lookup
that fails is a refusal with a record (fail closed); nothing is allowed
without a record; the denied host's listeners never see a connection;
allowed exchanges work again once the resolvers do.  /readyz, sampled all
along, names the failing resolver and how it fails, and each change of
readiness is logged once.
"""
import os
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import harness, expect  # noqa: E402

PHASE_OPS = 240
PHASE_S = 4.0        # and at least this long: answers are cached for 1 s at the least, and a
                     # lookup the resolvers ignore gives up after 2 s (1 s per resolver)
CACHE_S = 1.5        # past this into a phase, no answer from before it is cached

ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    env = faultlib.Env(ctx, resolvers=("127.0.0.53", "127.0.0.54"), fault_dns=True)
    load = faultlib.Load(env, threads=32, pace=0.1).start()
    a, b = env.dns
    admin_port = int(env.px.policy["listen"]["admin"].rsplit(":", 1)[1])
    samples = []          # (monotonic time, status, body) of /readyz, every 0.2 s
    sampling = threading.Event()

    def sample_readyz():
        url = "http://127.0.0.1:%d/readyz" % admin_port
        while not sampling.wait(0.2):
            t = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=3) as r:
                    samples.append((t, r.status, r.read().decode()))
            except urllib.error.HTTPError as e:
                samples.append((t, e.code, e.read().decode()))
            except OSError:
                pass

    sampler = threading.Thread(target=sample_readyz, daemon=True)
    sampler.start()

    began = {}
    ended = {}

    def phase(name, setup=None):
        if load.phase is not None:
            ended[load.phase] = time.monotonic()
        if setup:
            setup()
        load.set_phase(name, load.max_ops // 10)   # ten phases: each has its share
        began[name] = time.monotonic()
        load.wait_ops(PHASE_OPS, 60)
        left = PHASE_S - (time.monotonic() - began[name])
        if left > 0:
            time.sleep(left)   # the load runs meanwhile; nothing is asserted on time

    phase("baseline")
    phase("one resolver black-holed", lambda: a.set_mode("blackhole"))
    phase("both resolvers killed", lambda: (a.set_mode("ok"), a.kill(), b.kill()))
    phase("both restarted", lambda: (a.start(), b.start()))
    for mode in ("servfail", "truncated", "oversized", "garbage"):
        phase("both answer %s" % mode, lambda m=mode: (a.set_mode(m), b.set_mode(m)))
    phase("one answers REFUSED", lambda: (a.set_mode("refused"), b.set_mode("ok")))
    phase("both well again", lambda: (a.set_mode("ok"), b.set_mode("ok")))
    ended[load.phase] = time.monotonic()
    sampling.set()
    sampler.join(10)
    load.stop()
    code = env.px.stop()

    def readyz_in(name):
        return [(st, body) for t, st, body in samples if began[name] <= t < ended[name]]

    for name, status, words in (
            ("one resolver black-holed", 200, ("ready", "127.0.0.53:53 timeout")),
            ("both answer servfail", None, ("127.0.0.53:53 SERVFAIL", "127.0.0.54:53 SERVFAIL")),
            ("one answers REFUSED", 200, ("ready", "127.0.0.53:53 REFUSED"))):
        with ctx.case("resolver, %s: /readyz names the failing resolver and how (%s)" %
                      (name, ", ".join(words))):
            got = readyz_in(name)
            hit = [(st, body) for st, body in got
                   if all(w in body for w in words) and (status is None or st == status)]
            expect(hit, "no /readyz sample in the phase says %s (status %s); samples: %s" %
                   (words, status, sorted(set(got))[:6]))
    with ctx.case("resolver, both well again: /readyz returns to 200 \"ready\\n\" alone"):
        got = readyz_in("both well again")
        expect((200, "ready\n") in got, "samples: %s" % sorted(set(got))[-4:])
    with ctx.case("resolver: each readiness change is logged once (never the same state twice "
                  "in a row), and the outage is logged"):
        lines = [x.get("message", "") for x in harness.log_since(env.px, 0)
                 if str(x.get("message", "")).startswith("readiness:")]
        twice = [m for prev, m in zip(lines, lines[1:]) if m == prev]
        expect(lines and not twice, "readiness lines %s, repeated: %s" % (lines[:8], twice[:2]))
        expect(any("not ready" in m and "pinned resolvers not answering" in m for m in lines),
               "the outage (both killed) was not logged: %s" % lines[:8])

    phases = []
    for op in load.ops:
        if op.phase not in phases:
            phases.append(op.phase)
    for name in phases:
        row = faultlib.account(env, load, code, phase=name)
        faultlib.report(ctx, "resolver", name, load, row)
        faultlib.check(ctx, "resolver, %s" % name, row, min_answered=PHASE_OPS // 2)
    for name in ("baseline", "one resolver black-holed", "both restarted", "both well again"):
        with ctx.case("resolver, %s: allowed exchanges succeed" % name):
            ok = [op for op in load.ops if op.phase == name and op.kind in ("tunnel", "http") and op.ok]
            expect(ok, "no allowed exchange succeeded in phase %s" % name)
    for name in ("both resolvers killed", "both answer servfail", "both answer truncated",
                 "both answer garbage"):
        with ctx.case("resolver, %s: once the cache has expired, allowed exchanges are refused "
                      "(fail closed, recorded)" % name):
            # begun after the cache expired, and over before the resolvers were well again
            ops = [op for op in load.ops if op.phase == name and op.kind in ("tunnel", "http")
                   and op.t >= began[name] + CACHE_S and op.t_end < ended[name]]
            through = [op for op in ops if op.status == 200]
            expect(ops and not through, "%d of %d allowed exchanges went through %.1fs into the phase" %
                   (len(through), len(ops), CACHE_S))
    ctx.final_checks([env.px.audit])
