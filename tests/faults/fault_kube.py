#!/usr/bin/python3
"""Fault campaign: the Kubernetes API flaps under load; no pod gets a tier it should not have.

Eight pods (tier_label mode): four in tier "build" (allowed.example allowed),
four in tier "locked" (nothing the load asks for is allowed), and an address
no pod owns.  The load runs from all nine.  Meanwhile the stand-in API server
answers 500s, drops its watch streams mid-chunk and mid-event, compacts its
history (410 Gone, relist), stalls every request, and is restarted.  No
exchange from a "locked" pod or from the pod-less address is ever let
through, no record names a tier other than the pod's, and every exchange
has its record.
"""
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, get, harness  # noqa: E402

sys.path.insert(0, os.path.join(faultlib.HERE, "..", "integration"))
import kubeapi  # noqa: E402

API = ("10.96.0.9", 6443)
BUILD = ["10.80.0.%d" % i for i in range(2, 6)]
LOCKED = ["10.80.0.%d" % i for i in range(6, 10)]
NOBODY = "10.80.0.99"
LABEL = "portcullis.dev/tier"

ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD, API[0]] + BUILD + LOCKED + [NOBODY])
with ctx:
    pki = kubeapi.make_pki(ctx.path("kube"), API[0], "kube")
    with open(ctx.path("kube.token"), "w") as f:
        f.write("fault-token")
    apis = []

    def new_api():
        a = kubeapi.KubeAPI(API[0], API[1], pki["cert"], pki["key"], token="fault-token")
        ctx.cleanups.append(a.stop)
        for i, ip in enumerate(BUILD + LOCKED):
            tier = "build" if ip in BUILD else "locked"
            a.add_pod("ci", "%s-%d" % (tier, i), ip, labels={LABEL: tier})
        apis.append(a)
        return a

    api = new_api()
    allow = faultlib.TIER["allow"]
    env = faultlib.Env(ctx, tiers={"build": {"allow": allow},
                                   "locked": {"allow": [{"host": "other.example", "ports": [443]}]}},
                       identity={"unknown_source": "deny", "kubernetes": {
                           "api_server": "https://%s:%d" % API, "token_file": ctx.path("kube.token"),
                           "ca_file": pki["ca"], "tier_label": LABEL, "backoff_max": "1s"}})
    synced = harness.wait_until(lambda: faultlib.metric(env, "portcullis_kube_synced") == 1, 15)
    load = faultlib.Load(env, threads=36, pace=0.03, sources=BUILD + LOCKED + [NOBODY]).start()

    def restart():
        apis[-1].stop()
        time.sleep(0.5)
        new_api()

    phases = [
        ("baseline", None),
        ("API answers 500s, watches dropped mid-chunk", lambda: (apis[-1].fail_next(n=40, status=500),
                                                               apis[-1].drop_watches(how="midchunk"))),
        ("history compacted: 410 Gone, relist", lambda: (apis[-1].compact(), apis[-1].drop_watches(how="fin"))),
        ("API stalls every request", lambda: (apis[-1].pause(), apis[-1].drop_watches(how="midevent"))),
        ("API restarted", lambda: (apis[-1].resume(), restart())),
    ]
    faultlib.run_phases(load, phases, ops=300, seconds=3.0)
    load.stop()
    code = env.px.stop()
    with ctx.case("kube: the pod map synced before the load"):
        expect(synced, "portcullis_kube_synced not 1 after 15 s")
    faultlib.report_phases(ctx, "kubernetes API", env, load, code, [p[0] for p in phases])
    with ctx.case("kube: no exchange from a locked pod or a pod-less address let through; no record names "
                  "a tier other than the pod's"):
        recs = {(get(r, "source.ip"), get(r, "source.port")): r for r in env.px.audit.records()}
        wrong = []
        for op in load.ops:
            r = recs.get((op.src, op.port)) or {}
            want = "build" if op.src in BUILD else "locked" if op.src in LOCKED else None
            if op.src not in BUILD and op.status == 200:
                wrong.append("%s let through from %s" % (op.kind, op.src))
            if get(r, "rule.ruleset") not in (None, want):
                wrong.append("%s from %s recorded in tier %s" % (op.kind, op.src, get(r, "rule.ruleset")))
        expect(not wrong, "%d: %s" % (len(wrong), wrong[:5]))
    with ctx.case("kube: the build pods' allowed exchanges succeed once the API is back"):
        ok = [op for op in load.ops if op.phase == "API restarted" and op.src in BUILD and op.ok
              and op.kind in ("tunnel", "http")]
        expect(len(ok) >= 10, "only %d" % len(ok))
    ctx.final_checks([env.px.audit])
