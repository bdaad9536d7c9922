#!/usr/bin/python3
"""Scenario: big pod objects cannot break pod identity (tier_label mode, cluster-wide).

In tier_label mode the daemon lists and watches every labelled pod in the
cluster, so anyone who may create a labelled pod in any namespace controls
part of what it reads.  A list page used to be buffered whole (at most 64 MiB,
limit=500 items) and one watch event at most 8 MiB: 270 pods with 250 KB of
annotations each in a hostile tenant's namespace made every list fail, the map
never synced (/readyz 503 "kubernetes pod map not synced") and every runner
pod got unknown_source.

What must hold now (black-box, against kubeapi.py, the stand-in API server):

  - list pages are streamed: a page of any size syncs, and every object up to
    the per-object bound (4 MiB of JSON per pod; a watch event line likewise)
    is applied normally, however many of them a page holds;
  - one object over the bound (a pod with 5 MiB of annotations: the stand-in
    serves what a real API server would refuse) is skipped and counted
    (portcullis_kube_objects_skipped_total, a warn log line naming it): its
    addresses map to no pod (403 unknown_source), everything else maps, the
    map syncs; on the watch (ADDED / MODIFIED) the pod leaves the map and the
    watch goes on (no relist);
  - the page size adapts: limit=500 at first, fewer items per page once the
    items are fat (pages of about 8 MiB), never fewer than 10.

Daemons: "hostile" (tier_label; 270 pods of 250 KB in tenant-evil labelled
with a value naming no tier plus runner pods, some of them 250 KB too, all in
one first page of over 64 MiB; then 100 more fat pods and a 410 relist),
"skip" (tier_label; runner pods, two of 3 MiB and one of 5 MiB, served in
pages of 2 items (page_max); then over-bound events on the watch).

Identity probe: one CONNECT to allowed.example:443 from the pod's IP: 200 =
standard, 403 host_not_allowed = the record's rule.ruleset (trusted), 403
unknown_source = unknown (identity.unknown_source: deny).  A pod the map holds
whose label names no tier (tenant-evil) is unknown with a record naming the pod
(it was read); an address that maps to no pod (a skipped one) is unknown with
no orchestrator fields.  Positive outcomes
are polled for (bounded); an outcome that must NOT change is checked after a
later change on the same watch stream was observed (a barrier).
"""
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubeprobe import (SCRAPES, UNKNOWN, admin_get, expect_still, expect_tier,  # noqa: E402
                       metrics, started, wait_metric)
import kubeapi  # noqa: E402
import promcheck  # noqa: E402
from harness import expect, get, log_mark, log_since  # noqa: E402

GOOD = "198.51.100.10"
API_HOSTILE, API_SKIP = ("10.96.0.1", 6443), ("10.96.0.1", 6444)
TIER_LABEL = "platform.example.com/runner-tier"
MIB = 1 << 20
OLD_PAGE_CAP = 64 * MIB          # what the old client buffered at most per list page
OBJECT_BOUND = 4 * MIB           # per pod object (list item or watch event line)
FAT = 250 * 1000                 # annotation bytes of a fat pod (a real API server allows 256 KiB)
BIG = 3 * MIB                    # a pod well under the bound, but far fatter than FAT
OVER = 5 * MIB                   # over the bound
HOSTILE_N = 270                  # 270 x ~255 KB > 64 MiB in one page of limit=500
GROW_N = 100                     # added before the relist
SKIPPED = "portcullis_kube_objects_skipped_total"

# one string per size, shared by every pod (the stand-in stores references)
BLOB = {n: "x" * n for n in (FAT, BIG, OVER)}


def blob(n):
    return {"evil.example.com/blob": BLOB[n]}


def hostile_ip(i):
    return "10.71.%d.%d" % (i // 250, i % 250 + 1)


def grow_ip(i):
    return "10.72.%d.%d" % (i // 250, i % 250 + 1)


HOSTILE_PROBES = [0, HOSTILE_N // 2, HOSTILE_N - 1]
V4 = ([GOOD, API_HOSTILE[0]] + ["10.70.0.%d" % i for i in range(11, 31)] +
      [hostile_ip(i) for i in HOSTILE_PROBES] + [grow_ip(0), grow_ip(GROW_N - 1)] +
      ["10.73.0.%d" % i for i in range(11, 31)])

TIERS = {
    "standard": {"allow": [{"host": "allowed.example"}]},
    "trusted": {"allow": [{"host": "other.example"}]},
}


# --------------------------------------------------------------------------
# Identity probes (as in test_kube.py)
# --------------------------------------------------------------------------

def expect_unknown(px, src, what=""):
    """After a barrier: src maps to no pod (403 unknown_source, no orchestrator fields)."""
    s = expect_still(px, src, UNKNOWN, what=what)
    harness.check_denied_record(s.rec, "unknown_source", 403)
    expect(get(s.rec, "orchestrator") is None, "%s%s: unknown source record has orchestrator %r" %
           (what, src, get(s.rec, "orchestrator")))
    return s


def expect_tierless(px, src, pod, what=""):
    """After a barrier: src is a pod the map holds whose label names no tier: 403 unknown_source, and the
    record names the pod (it was read, not dropped)."""
    s = expect_still(px, src, UNKNOWN, what=what, pod=pod)
    harness.check_denied_record(s.rec, "unknown_source", 403)
    return s


# --------------------------------------------------------------------------
# Admin endpoints
# --------------------------------------------------------------------------


def readyz(px):
    return admin_get(px, "/readyz")


def wait_ready(px, timeout):
    return harness.wait_until(lambda: readyz(px)[0] == 200, timeout, 0.1)


def skipped_family(m):
    """The skipped-objects counter must exist, typed counter."""
    fam = m["__fams__"].get(SKIPPED)
    expect(fam is not None, "no %s family in /metrics" % SKIPPED)
    expect(fam.type == "counter", "%s is a %s, want counter" % (SKIPPED, fam.type))
    return m[SKIPPED]


# --------------------------------------------------------------------------
# Request log, operational log
# --------------------------------------------------------------------------

def is_list(r):
    return not r["watch"] and r["path"].endswith("/pods")


def limit_of(r):
    try:
        return int(r["query"].get("limit") or -1)
    except ValueError:
        return -1


def describe_reqs(reqs, n=8):
    out = []
    for r in reqs[-n:]:
        q = dict(r["query"])
        if q.get("continue"):
            q["continue"] = q["continue"][:8] + "..."
        q.pop("labelSelector", None)
        out.append("%s %s?%s -> %s%s" % ("WATCH" if r["watch"] else "GET", r["path"],
                                         "&".join("%s=%s" % kv for kv in sorted(q.items())), r["status"],
                                         " (%d items, %.1f MB)" % (r["items"], r.get("bytes", 0) / 1e6)
                                         if "items" in r else ""))
    return "; ".join(out)


def skip_lines(px, mark, ns_name):
    """warn-level log lines since mark that say ns_name was skipped."""
    return [x for x in log_since(px, mark) if x.get("log.level") == "warn" and
            "skipped" in str(x.get("message", "")) and ns_name in str(x.get("message", ""))]


def kube_proxy(ctx, name, port, api_url, kube, pki, token_file):
    k = {"api_server": api_url, "token_file": token_file, "ca_file": pki["ca"]}
    k.update(kube)
    return harness.Proxy(ctx, name, TIERS, proxy_port=3128 + port, admin_port=9090 + port,
                         identity={"unknown_source": "deny", "kubernetes": k})


def eligible(api):
    """The pods the map should hold: selected (tier label), with an IP, not hostNetwork, running,
    and not over the per-object bound."""
    n = 0
    with api.cv:
        pods = list(api.pods.values())
    for p in pods:
        if TIER_LABEL not in (p["metadata"].get("labels") or {}) or not kubeapi.pod_ip(p):
            continue
        if p["spec"].get("hostNetwork") or p["status"]["phase"] in ("Succeeded", "Failed"):
            continue
        ann = sum(len(v) for v in (p["metadata"].get("annotations") or {}).values())
        if ann > OBJECT_BOUND // 2 and len(kubeapi.go_json(p)) > OBJECT_BOUND:
            continue
        n += 1
    return n


# --------------------------------------------------------------------------

ctx = harness.start(__file__, v4=V4)
with ctx:
    T0 = time.monotonic()
    ctx.certs()
    harness.Upstreams(ctx, [{"name": "tls", "host": GOOD, "port": 443, "kind": "tls"}])
    harness.Dnsmasq(ctx, "127.0.0.53", [(n, GOOD) for n in ("allowed.example", "other.example")],
                    local=("example", "test", "invalid"))
    pki = kubeapi.make_pki(ctx.path("kube"), API_HOSTILE[0], "kube")
    apis = []

    def new_api(addr, token):
        a = kubeapi.KubeAPI(addr[0], addr[1], pki["cert"], pki["key"], token=token, seed=len(apis) + 1)
        apis.append(a)
        ctx.cleanups.append(a.stop)
        return a

    def token_file(name, token):
        path = ctx.path("%s.token" % name)
        with open(path, "w") as f:
            f.write(token)
        return path

    S = {}   # what a case hands to the next one

    def need_state(*keys):
        missing = [k for k in keys if S.get(k) is None]
        expect(not missing, "needs the result of an earlier case that failed (%s)" % ", ".join(missing))
        return [S[k] for k in keys]

    # ================================================================ hostile
    api_h = new_api(API_HOSTILE, "hostile-token")
    RUNNERS = [  # (name, ip, tier, annotation bytes or None)
        ("r-std", "10.70.0.11", "standard", None),
        ("r-trusted", "10.70.0.12", "trusted", None),
        ("r-fat-std", "10.70.0.13", "standard", FAT),
        ("r-fat-trusted", "10.70.0.14", "trusted", FAT),
    ]
    for name, ip, tier, size in RUNNERS:
        api_h.add_pod("runners-a", name, ip, labels={TIER_LABEL: tier, "app": "runner"},
                      annotations=blob(size) if size else None)
    # a tenant allowed to create pods in its own namespace, labelled with a value naming no tier
    api_h.add_pods([("tenant-evil", "evil-%03d" % i, hostile_ip(i),
                     {"labels": {TIER_LABEL: "hostile-%d" % (i % 3), "app": "evil"}, "annotations": blob(FAT)})
                    for i in range(HOSTILE_N)])
    n_first = len(RUNNERS) + HOSTILE_N
    hostile_px = started(kube_proxy(ctx, "hostile", 0, api_h.url,
                                    {"tier_label": TIER_LABEL, "watch_timeout": "5m", "backoff_max": "1s"},
                                    pki, token_file("hostile", "hostile-token")))

    with ctx.case("hostile: tier_label mode, %d pods with %d KB of annotations in tenant-evil (label naming "
                  "no tier) + %d runner pods, all in one first list page (limit=500) of over 64 MiB -> "
                  "synced: /readyz 200 (<= 30 s), kube_synced 1, kube_pods %d, nothing skipped" %
                  (HOSTILE_N, FAT // 1000, len(RUNNERS), n_first)):
        expect(hostile_px.start_error is None, hostile_px.start_error or "")
        t0 = time.monotonic()
        ok = wait_ready(hostile_px, 30)
        print("# hostile: /readyz %s %.1f s after start" % (readyz(hostile_px)[0], time.monotonic() - t0),
              flush=True)
        lists = [r for r in api_h.requests() if is_list(r)]
        expect(lists, "no list request")
        first = lists[0]
        # the case tests nothing unless the first page is what the old client could not hold
        expect(limit_of(first) == 500 and first["status"] == 200 and first.get("items") == n_first and
               not first.get("continue_out") and first.get("bytes", 0) > OLD_PAGE_CAP,
               "the first list page is not one page of %d pods over 64 MiB asked with limit=500: %s" %
               (n_first, describe_reqs([first])))
        print("# hostile: first page %d items, %d bytes" % (first["items"], first["bytes"]), flush=True)
        expect(ok, "/readyz %s %r 30 s after start; %d list requests: %s" % (
            *readyz(hostile_px), len(lists), describe_reqs(api_h.requests())))
        m = wait_metric(hostile_px, lambda x: x["portcullis_kube_pods"] == n_first)
        expect(m["portcullis_kube_synced"] == 1, "kube_synced %s" % m["portcullis_kube_synced"])
        expect(m["portcullis_kube_pods"] == n_first, "kube_pods %s, want %d (every fat pod applied)" %
               (m["portcullis_kube_pods"], n_first))
        expect(skipped_family(m) == 0, "%s %s: a pod under the 4 MiB bound was skipped" % (SKIPPED, m[SKIPPED]))
        S["hostile_synced"] = True

    with ctx.case("hostile: runner pods map to their tier (r-std standard, r-trusted trusted); tenant-evil "
                  "pods' IPs (first, middle, last of the page) -> 403 unknown_source, the record naming the "
                  "pod (read, label naming no tier)"):
        need_state("hostile_synced")
        expect_tier(hostile_px, "10.70.0.11", "standard", pod=("runners-a", "r-std"))
        expect_tier(hostile_px, "10.70.0.12", "trusted", pod=("runners-a", "r-trusted"))
        for i in HOSTILE_PROBES:
            expect_tierless(hostile_px, hostile_ip(i), ("tenant-evil", "evil-%03d" % i))

    with ctx.case("hostile: runner pods with %d KB of annotations map too (r-fat-std standard, r-fat-trusted "
                  "trusted)" % (FAT // 1000)):
        expect_tier(hostile_px, "10.70.0.13", "standard", pod=("runners-a", "r-fat-std"))
        expect_tier(hostile_px, "10.70.0.14", "trusted", pod=("runners-a", "r-fat-trusted"))

    with ctx.case("hostile: a watch event (ADDED) for a %d KB runner pod applies (r-fat-new -> trusted)" %
                  (FAT // 1000)):
        expect(api_h.wait_watches(1, timeout=10), "no live watch: %s" % describe_reqs(api_h.requests()))
        api_h.add_pod("runners-a", "r-fat-new", "10.70.0.15", labels={TIER_LABEL: "trusted"},
                      annotations=blob(FAT))
        expect_tier(hostile_px, "10.70.0.15", "trusted", pod=("runners-a", "r-fat-new"))

    with ctx.case("hostile: the list grows between relists (%d more %d KB pods in tenant-evil, r-new and "
                  "r-new-fat added, r-std deleted while the watch was away, history compacted) -> 410 -> "
                  "relist: synced again (watching, <= 45 s), r-new standard, r-new-fat trusted, r-std (gone) "
                  "and the new tenant-evil pods (no tier) -> unknown_source, kube_pods right" % (GROW_N, FAT // 1000)):
        expect(api_h.wait_watches(1, timeout=10), "no live watch")
        m0 = metrics(hostile_px)
        mark = api_h.mark()
        t0 = time.monotonic()
        api_h.pause()
        try:
            gone = api_h.drop_watches("fin")
            api_h.add_pods([("tenant-evil", "grow-%03d" % i, grow_ip(i),
                             {"labels": {TIER_LABEL: "hostile", "app": "evil"}, "annotations": blob(FAT)})
                            for i in range(GROW_N)])
            api_h.add_pod("runners-a", "r-new", "10.70.0.21", labels={TIER_LABEL: "standard"})
            api_h.add_pod("runners-a", "r-new-fat", "10.70.0.22", labels={TIER_LABEL: "trusted"},
                          annotations=blob(FAT))
            api_h.delete_pod("runners-a", "r-std")
            horizon = api_h.compact()
        finally:
            api_h.resume()
        S["grow_mark"] = mark
        expect(gone, "no watch stream was dropped")
        old_rv = str(gone[0]["last_sent"] if gone[0]["last_sent"] is not None else gone[0]["start_rv"])
        # the relist is over when the client watches again, from the new list's RV
        rewatch = api_h.wait_request(lambda r: r["watch"] and r["query"].get("resourceVersion") != old_rv,
                                     since=mark, timeout=45)
        print("# hostile: relisted and watching again %.1f s after the 410" % (time.monotonic() - t0), flush=True)
        expect(rewatch, "no watch after the relist 45 s after the 410: %s" % describe_reqs(api_h.requests(since=mark)))
        expect_tier(hostile_px, "10.70.0.21", "standard", pod=("runners-a", "r-new"))
        expect_tier(hostile_px, "10.70.0.22", "trusted", pod=("runners-a", "r-new-fat"))
        s = expect_tier(hostile_px, "10.70.0.11", UNKNOWN, what="r-std (deleted while away): ")
        expect(get(s.rec, "orchestrator") is None, "r-std's record has orchestrator %r" % get(s.rec, "orchestrator"))
        for i in (0, GROW_N - 1):
            expect_tierless(hostile_px, grow_ip(i), ("tenant-evil", "grow-%03d" % i))
        expect_still(hostile_px, "10.70.0.14", "trusted", pod=("runners-a", "r-fat-trusted"))
        reqs = api_h.requests(since=mark)
        w410 = [r for r in reqs if r["watch"] and r["query"].get("resourceVersion") == old_rv]
        lists = [r for r in reqs if is_list(r) and r["status"] == 200]
        expect(w410 and lists and w410[0]["i"] < lists[0]["i"] and lists[-1]["i"] < rewatch["i"] and
               rewatch["query"].get("resourceVersion") == str(lists[-1]["list_rv"]) and
               lists[-1]["list_rv"] >= horizon,
               "not: a re-watch from the old RV, a relist at or past the horizon %d, a watch from the relist's RV: %s" %
               (horizon, describe_reqs(reqs, 20)))
        want = eligible(api_h)
        m = wait_metric(hostile_px, lambda x: x["portcullis_kube_pods"] == want)
        expect(m["portcullis_kube_pods"] == want, "kube_pods %s, the API server holds %d eligible pods" %
               (m["portcullis_kube_pods"], want))
        expect(m["portcullis_kube_relists_total"] > m0["portcullis_kube_relists_total"], "relists unchanged")
        expect(m["portcullis_kube_synced"] == 1 and readyz(hostile_px)[0] == 200,
               "synced %s, /readyz %s" % (m["portcullis_kube_synced"], readyz(hostile_px)[0]))
        expect(skipped_family(m) == 0, "%s %s" % (SKIPPED, m[SKIPPED]))

    with ctx.case("hostile: adaptive page size: every list request after the first asks 10 <= limit < 500; "
                  "the relist (%d+ fat pods) took several pages of at most 16 MiB" % (HOSTILE_N + GROW_N)):
        mark, = need_state("grow_mark")
        lists = [r for r in api_h.requests() if is_list(r)]
        print("# hostile: list requests: %s" % ", ".join(
            "limit=%s %d items %.1f MB" % (r["query"].get("limit"), r.get("items", -1), r.get("bytes", 0) / 1e6)
            for r in lists), flush=True)
        later = lists[1:]
        expect(later, "only one list request")
        bad = [r for r in later if not 10 <= limit_of(r) < 500]
        expect(not bad, "list requests after the first with limit outside [10, 500): %s" % describe_reqs(bad))
        relist = [r for r in later if r["i"] >= mark and r["status"] == 200]
        expect(len(relist) >= 2, "the relist took %d page(s): %s" % (len(relist), describe_reqs(relist)))
        big = [r for r in relist if r.get("bytes", 0) > 16 * MIB]
        expect(not big, "relist pages over 16 MiB: %s" % describe_reqs(big))

    # ================================================================ skip
    api_s = new_api(API_SKIP, "skip-token")
    api_s.page_max = 2   # pages of 2 items whatever the limit: the first is [a-big1, a-big2]
    SKIP_PODS = [  # (name, ip, tier, annotation bytes or None); listed in this (key) order
        ("a-big1", "10.73.0.11", "standard", BIG),
        ("a-big2", "10.73.0.12", "trusted", BIG),
        ("b-over", "10.73.0.13", "standard", OVER),
        ("s1", "10.73.0.14", "standard", None),
        ("s2", "10.73.0.15", "trusted", None),
        ("s3", "10.73.0.16", "standard", None),
    ]
    for name, ip, tier, size in SKIP_PODS:
        api_s.add_pod("runners-s", name, ip, labels={TIER_LABEL: tier},
                      annotations=blob(size) if size else None)
    skip_px = started(kube_proxy(ctx, "skip", 1, api_s.url,
                                 {"tier_label": TIER_LABEL, "watch_timeout": "5m", "backoff_max": "1s"},
                                 pki, token_file("skip", "skip-token")))

    with ctx.case("skip: a pod with 5 MiB of annotations (over the 4 MiB bound) in a list page among runner "
                  "pods (two of 3 MiB; pages of 2) -> synced (/readyz 200 <= 15 s), b-over -> 403 "
                  "unknown_source, every other pod maps (the 3 MiB ones too), kube_pods 5"):
        expect(skip_px.start_error is None, skip_px.start_error or "")
        ok = wait_ready(skip_px, 15)
        expect(ok, "/readyz %s %r; requests %s" % (*readyz(skip_px), describe_reqs(api_s.requests())))
        over = api_s.pod("runners-s", "b-over")
        size = len(kubeapi.go_json(over))
        expect(size > OBJECT_BOUND, "b-over is %d bytes: not over the bound, the case tests nothing" % size)
        for name, ip, tier, _ in SKIP_PODS:
            if name != "b-over":
                expect_tier(skip_px, ip, tier, pod=("runners-s", name))
        expect_unknown(skip_px, "10.73.0.13", what="b-over: ")
        m = wait_metric(skip_px, lambda x: x["portcullis_kube_pods"] == 5)
        expect(m["portcullis_kube_pods"] == 5 and m["portcullis_kube_synced"] == 1,
               "kube_pods %s (want 5: b-over is not in the map), synced %s" %
               (m["portcullis_kube_pods"], m["portcullis_kube_synced"]))
        S["skip_synced"] = True

    with ctx.case("skip: %s is a counter >= 1; a warn log line says runners-s/b-over was skipped" % SKIPPED):
        need_state("skip_synced")
        m = metrics(skip_px)
        expect(skipped_family(m) >= 1, "%s %s" % (SKIPPED, m[SKIPPED]))
        lines = skip_lines(skip_px, 0, "runners-s/b-over")
        expect(lines, "no warn log line with 'skipped' and 'runners-s/b-over'; warn lines: %s" %
               [x.get("message") for x in log_since(skip_px, 0) if x.get("log.level") == "warn"][:4])
        print("# skip: %s" % lines[0].get("message"), flush=True)

    with ctx.case("skip: adaptive page size: the first list asks limit=500; after a page averaging 3 MiB per "
                  "item the next asks limit=10 (the floor: 8 MiB / 3 MiB < 10); none below 10"):
        lists = [r for r in api_s.requests() if is_list(r)]
        expect(len(lists) >= 2, "%d list requests: %s" % (len(lists), describe_reqs(lists)))
        expect(limit_of(lists[0]) == 500, "first list request: %s" % describe_reqs(lists[:1]))
        expect(lists[0].get("items") == 2 and lists[0].get("bytes", 0) > 2 * BIG,
               "the first page is not [a-big1, a-big2]: %s" % describe_reqs(lists[:1]))
        expect(limit_of(lists[1]) == 10, "the request after the 3 MiB-per-item page: %s" %
               describe_reqs(lists[1:2]))
        bad = [r for r in lists[1:] if not 10 <= limit_of(r) < 500]
        expect(not bad, "later list requests with limit outside [10, 500): %s" % describe_reqs(bad))

    with ctx.case("skip: over-bound MODIFIED on the watch (s1 grows 5 MiB of annotations) -> s1 -> "
                  "unknown_source (<= 10 s), %s +1, a warn line names runners-s/s1; s2, s3, a-big1 keep "
                  "their tiers and a new pod (s4) maps" % SKIPPED):
        need_state("skip_synced")
        live = api_s.wait_watches(1, timeout=10)
        expect(len(live) == 1, "live watch streams: %s" % live)
        m0 = metrics(skip_px)
        lm = log_mark(skip_px)
        mark = api_s.mark()
        api_s.modify_pod("runners-s", "s1", annotations=blob(OVER))
        S["mod"] = (live[0], mark, m0)
        expect_tier(skip_px, "10.73.0.14", UNKNOWN, timeout=10, what="s1: ")
        api_s.add_pod("runners-s", "s4", "10.73.0.17", labels={TIER_LABEL: "trusted"})   # barrier
        expect_tier(skip_px, "10.73.0.17", "trusted", pod=("runners-s", "s4"))
        expect_unknown(skip_px, "10.73.0.14", what="s1 after the barrier: ")
        expect_still(skip_px, "10.73.0.15", "trusted", pod=("runners-s", "s2"))
        expect_still(skip_px, "10.73.0.16", "standard", pod=("runners-s", "s3"))
        expect_still(skip_px, "10.73.0.11", "standard", pod=("runners-s", "a-big1"))
        m = wait_metric(skip_px, lambda x: x[SKIPPED] >= m0[SKIPPED] + 1)
        expect(m[SKIPPED] >= m0[SKIPPED] + 1, "%s %s -> %s" % (SKIPPED, m0[SKIPPED], m[SKIPPED]))
        expect(skip_lines(skip_px, lm, "runners-s/s1"), "no warn log line with 'skipped' and 'runners-s/s1'")
        want = eligible(api_s)
        m = wait_metric(skip_px, lambda x: x["portcullis_kube_pods"] == want)
        expect(m["portcullis_kube_pods"] == want, "kube_pods %s, want %d" % (m["portcullis_kube_pods"], want))

    with ctx.case("skip: ... the watch goes on: the stream live before the event delivered the barrier, "
                  "no re-watch, no list, relists unchanged, /readyz 200"):
        w0, mark, m0 = need_state("mod")[0]
        now = [w for w in api_s.watches() if w["id"] == w0["id"]]
        expect(now and now[0]["alive"] and now[0]["events_sent"] >= w0["events_sent"] + 2,
               "the stream live before the event: %s" % now)
        reqs = api_s.requests(since=mark)
        expect(not reqs, "requests after the over-bound event: %s" % describe_reqs(reqs))
        m = metrics(skip_px)
        expect(m["portcullis_kube_relists_total"] == m0["portcullis_kube_relists_total"],
               "relists +%s" % (m["portcullis_kube_relists_total"] - m0["portcullis_kube_relists_total"]))
        expect(readyz(skip_px)[0] == 200, "/readyz %s %r" % readyz(skip_px))

    with ctx.case("skip: over-bound ADDED on the watch (s-add, 5 MiB) -> its IP maps to no pod (after a "
                  "barrier on the same stream), %s +1; a 3 MiB ADDED (a-big3) maps; no list" % SKIPPED):
        m0 = metrics(skip_px)
        mark = api_s.mark()
        api_s.add_pod("runners-s", "s-add", "10.73.0.18", labels={TIER_LABEL: "standard"}, annotations=blob(OVER))
        api_s.add_pod("runners-s", "a-big3", "10.73.0.19", labels={TIER_LABEL: "trusted"}, annotations=blob(BIG))
        expect_tier(skip_px, "10.73.0.19", "trusted", pod=("runners-s", "a-big3"))
        expect_unknown(skip_px, "10.73.0.18", what="s-add: ")
        m = wait_metric(skip_px, lambda x: x[SKIPPED] >= m0[SKIPPED] + 1)
        expect(m[SKIPPED] >= m0[SKIPPED] + 1, "%s %s -> %s" % (SKIPPED, m0[SKIPPED], m[SKIPPED]))
        lists = [r for r in api_s.requests(since=mark) if is_list(r)]
        expect(not lists, "listed again: %s" % describe_reqs(lists))

    with ctx.case("skip: the over-bound pod shrinks back (MODIFIED, small annotations) -> s1 maps again "
                  "(standard)"):
        need_state("mod")
        api_s.modify_pod("runners-s", "s1",
                         fn=lambda p: p["metadata"]["annotations"].pop("evil.example.com/blob", None))
        expect_tier(skip_px, "10.73.0.14", "standard", timeout=10, pod=("runners-s", "s1"))

    # ================================================================ wrap-up
    with ctx.case("every /metrics exposition scraped passes promcheck"):
        probs = []
        for where, body in SCRAPES:
            fams, p = promcheck.check(body)
            probs += ["%s: %s" % (where, x) for x in p + promcheck.conventions(fams)]
        expect(SCRAPES, "no scrape")
        expect(not probs, "; ".join(probs[:5]))

    with ctx.case("stand-in API servers: no request refused (4xx)"):
        odd = ["%s %s -> %s" % (a.url, r["target"][:120], r["status"]) for a in apis for r in a.requests()
               if r["status"] is not None and 400 <= r["status"] < 500]
        expect(not odd, "; ".join(odd[:5]))

    print("# cases took %.1f s" % (time.monotonic() - T0), flush=True)
    ctx.final_checks([p.audit for p in ctx.proxies if p.proc is not None])
