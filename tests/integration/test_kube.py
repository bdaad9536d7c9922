#!/usr/bin/python3
"""Scenario: pod identity from the Kubernetes API (issue 8).

The daemon lists and watches pods on a stand-in API server (kubeapi.py: real
TLS, bearer tokens, the list/watch wire format, driven from this process) and
maps pod IP -> {namespace, name, labels} -> tier.  Clients are real curl and
raw CONNECTs bound to pod IPs added on lo; the tier shows in allow / deny
(each tier allows a different host) and in the audit record's rule.ruleset.

Tiers: standard allows allowed.example, trusted other.example, static
good.example (sources 10.42.200.0/24, 10.43.200.0/24, 10.45.200.0/24),
quarantine quarantine.example.  The identity probe is one CONNECT to
allowed.example:443: 200 = standard, 403 host_not_allowed = the record's
rule.ruleset, 403 unknown_source = unknown.

Daemons: "ns" (namespaces mode: runners-a standard, runners-b trusted;
unknown_source deny), "label" (tier_label mode, cluster-wide, unknown_source
quarantine, 1200+ pods paged by the server, watch_timeout 10s), "unsynced"
(API server first unreachable, then 500s, then fine), "auth" (wrong token,
then the file is rewritten), "tls" (a certificate from another CA, then one
without the IP SAN, then the right one), "incluster" (no api_server /
token_file / ca_file: KUBERNETES_SERVICE_HOST/PORT and the service-account
files mounted at /var/run/secrets/kubernetes.io/serviceaccount in this mount
namespace), "stale" (synced, then the API server answers 500 to everything
for over a minute: not ready once no list or watch progress was made for
max(2 x backoff_max, 60 s); started early so the wait overlaps the rest),
"full" (identity.kubernetes.max_pods 3 with more pods: fails closed),
"reload" (SIGHUP reloads that would change how pods are read are refused;
a namespace's tier does reload), "robust" (a 1100-character managedFields
key in a list page; servers that answer every watch with 410, or end every
watch at once: bounded request rates).  --check cases need no daemon.

Timing: identity changes propagate asynchronously, so a positive outcome is
polled for (50 ms steps, bounded); an outcome that must NOT change is checked
only after a later change on the same watch stream (a barrier) was observed.
"""
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubeprobe import (SCRAPES, UNKNOWN, admin_get, expect_still, expect_tier,  # noqa: E402
                       metrics, probe, started, wait_metric)
import kubeapi  # noqa: E402
import promcheck  # noqa: E402
from harness import expect, get, log_mark, log_since, write_atomic  # noqa: E402

GOOD = "198.51.100.10"
API_NS, API_LABEL = ("10.96.0.1", 6443), ("10.96.0.1", 6444)
API_UNSYNCED, API_AUTH, API_TLS = ("10.96.0.2", 6443), ("10.96.0.3", 6443), ("10.96.0.4", 6443)
API_INCLUSTER = ("10.96.0.1", 443)
API_FULL, API_RELOAD, API_ROBUST, API_STALE = (("10.96.0.1", 6445), ("10.96.0.1", 6446), ("10.96.0.1", 6447),
                                               ("10.96.0.1", 6448))
TIER_LABEL = "platform.example.com/runner-tier"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
KUBE_FAMILIES = {"portcullis_kube_synced": "gauge", "portcullis_kube_pods": "gauge",
                 "portcullis_kube_relists_total": "counter", "portcullis_kube_watch_errors_total": "counter"}
BULK = 1200
POD_V6 = "fd00:42::18"


def bulk_ip(i):
    return "10.44.%d.%d" % (i // 250, i % 250 + 1)


BULK_PROBES = [0, 5, 599, 1199, 1200]          # first, deleted mid-pagination, middle, last, added mid-pagination
V4 = ([GOOD, "10.96.0.1", "10.96.0.2", "10.96.0.3", "10.96.0.4"] +
      ["10.42.0.%d" % i for i in range(1, 100)] + ["10.42.200.5", "10.42.200.7"] +
      ["10.43.0.%d" % i for i in range(1, 40)] + ["10.43.200.9"] +
      [bulk_ip(i) for i in BULK_PROBES] +
      ["10.45.0.11", "10.45.200.5", "10.46.0.11", "10.46.0.12", "10.47.0.11", "10.48.0.11"] +
      ["10.49.0.%d" % i for i in range(11, 17)] + ["10.49.200.5", "10.49.200.7"] +
      ["10.50.0.11", "10.50.0.12"] + ["10.51.0.%d" % i for i in range(11, 17)] + ["10.52.0.11"])

TIERS = {
    "standard": {"allow": [{"host": "allowed.example"}]},
    "trusted": {"allow": [{"host": "other.example"}]},
    "static": {"sources": ["10.42.200.0/24", "10.43.200.0/24", "10.45.200.0/24"],
               "allow": [{"host": "good.example"}]},
    "quarantine": {"allow": [{"host": "quarantine.example"}]},
}


# --------------------------------------------------------------------------
# Identity probes
# --------------------------------------------------------------------------

def curl_as(px, src, host, certs):
    res = harness.curl(["-x", "http://127.0.0.1:%d" % px.port, "--interface", src,
                        "--cacert", certs["ca"], "https://%s/" % host])
    rec = px.audit.by_port(res["local_port"], timeout=5) if res["local_port"] else None
    return res, rec


# --------------------------------------------------------------------------
# Admin endpoints
# --------------------------------------------------------------------------


def readyz(px):
    return admin_get(px, "/readyz")[0]


def wait_ready(px, want=200, timeout=10.0):
    return harness.wait_until(lambda: readyz(px) == want, timeout, 0.1)


# --------------------------------------------------------------------------
# Request-log helpers
# --------------------------------------------------------------------------

def is_list(r, ns="*"):
    return not r["watch"] and r["path"].endswith("/pods") and (ns == "*" or r["ns"] == ns)


def is_watch(r, ns="*"):
    return r["watch"] and (ns == "*" or r["ns"] == ns)


def describe_reqs(reqs, n=8):
    return "; ".join("%s %s%s -> %s" % ("WATCH" if r["watch"] else "GET", r["path"],
                                         "?" + "&".join("%s=%s" % kv for kv in sorted(r["query"].items()))
                                         if r["query"] else "", r["status"]) for r in reqs[-n:])


def resume_rv(info):
    """Where a client must resume after this stream died: the last RV fully delivered on it,
    or the RV it asked to start from."""
    return str(info["last_sent"] if info["last_sent"] is not None else info["start_rv"])


def fresh_watch(a, max_age=5.0, timeout=12.0):
    """A live watch stream that started less than max_age seconds ago (waits for the next one
    otherwise), so a test step on it is not overtaken by its timeoutSeconds."""
    deadline = time.monotonic() + timeout
    while True:
        live = [w for w in a.watches(alive=True) if time.monotonic() - w["started"] < max_age]
        if live or time.monotonic() >= deadline:
            return live[0] if live else None
        time.sleep(0.05)


def logged(lines, lvl, text):
    return [x for x in lines if x.get("log.level") == lvl and text in str(x.get("message", ""))]


def reload_counts(px):
    """(success, failure) of portcullis_policy_reloads_total."""
    fam = metrics(px)["__fams__"].get("portcullis_policy_reloads_total")
    out = {"success": 0.0, "failure": 0.0}
    for smp in (fam.samples if fam is not None else []):
        if smp.labels.get("result") in out:
            out[smp.labels["result"]] += smp.value
    return out["success"], out["failure"]


def linked_policy(ctx, px):
    """Before start: px's policy path becomes a symlink, in a directory of its own, to the
    real file in another directory.  The daemon watches the symlink's directory, so
    rewriting the real file makes no inotify event there: only SIGHUP reloads it (and
    nothing else written in the busy temp dir triggers a reload).  Returns the real path."""
    real_dir, link_dir = ctx.path(px.name + "-policy-real"), ctx.path(px.name + "-policy")
    os.makedirs(real_dir)
    os.makedirs(link_dir)
    real = os.path.join(real_dir, "policy.yaml")
    shutil.copy(px.policy_path, real)
    link = os.path.join(link_dir, "policy.yaml")
    os.symlink(real, link)
    px.policy_path = link
    return real


def sighup_reload(ctx, px, real, pol, want, what):
    """Check pol is a valid policy (--check), write it to the real file, SIGHUP, wait
    (bounded) for the reload counters to move, then require them to have moved by exactly
    want (success, failure).  Returns the log lines written meanwhile."""
    rc, out, err, _ = run_check(ctx, pol, what)
    expect(rc == 0, "the %s policy does not pass --check (exit %d: %r): the case would test nothing" %
           (what, rc, err[:300]))
    r0 = reload_counts(px)
    lm = log_mark(px)
    write_atomic(real, harness.to_yaml(pol) + "\n")
    os.kill(px.proc.pid, signal.SIGHUP)
    harness.wait_until(lambda: reload_counts(px) != r0, 5, 0.1)
    time.sleep(0.3)   # a second (spurious) reload would show here
    r1 = reload_counts(px)
    got = (r1[0] - r0[0], r1[1] - r0[1])
    expect(got == want, "reload counters moved by %s (success, failure) after SIGHUP, want %s" % (got, want))
    return log_since(px, lm)


def kube_proxy(ctx, name, port, api_url, kube, tiers=TIERS, unknown="deny", pki=None, token_file=None, **over):
    k = {}
    if api_url is not None:
        k["api_server"] = api_url
    if token_file is not None:
        k["token_file"] = token_file
    if pki is not None:
        k["ca_file"] = pki["ca"]
    k.update(kube)
    return harness.Proxy(ctx, name, tiers, proxy_port=3128 + port, admin_port=9090 + port,
                         identity={"unknown_source": unknown, "kubernetes": k}, **over)


def run_check(ctx, pol, name):
    path = ctx.path("check-%s.yaml" % name)
    with open(path, "w") as f:
        f.write(harness.to_yaml(pol) + "\n")
    p = subprocess.run([ctx.binary, "--check", path], capture_output=True, timeout=20,
                       env=harness.daemon_env(), stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), path


def mount_serviceaccount(ctx, token, ca_path):
    """Make /var/run/secrets/kubernetes.io/serviceaccount exist in this mount namespace only:
    an overlay on /run (lower: the real /run, upper: our temp dir), so nothing changes on the
    host and the rest of /run stays visible."""
    run_dir = os.path.realpath("/var/run")
    up, work = ctx.path("run-upper"), ctx.path("run-work")
    os.makedirs(up)
    os.makedirs(work)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s,upperdir=%s,workdir=%s" % (run_dir, up, work), run_dir],
                   check=True, timeout=10, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ctx.cleanups.append(lambda: subprocess.run(["umount", "-l", run_dir], timeout=10,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    os.makedirs(SA_DIR, exist_ok=True)
    with open(os.path.join(SA_DIR, "token"), "w") as f:
        f.write(token)
    with open(ca_path) as src, open(os.path.join(SA_DIR, "ca.crt"), "w") as dst:
        dst.write(src.read())
    with open(os.path.join(SA_DIR, "namespace"), "w") as f:
        f.write("portcullis")


# --------------------------------------------------------------------------

ctx = harness.start(__file__, v4=V4, v6=[POD_V6])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [{"name": "tls", "host": GOOD, "port": 443, "kind": "tls"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [(n, GOOD) for n in ("allowed.example", "other.example",
                                                                  "good.example", "quarantine.example")],
                          local=("example", "test", "invalid"))
    kdir = ctx.path("kube")
    pki = kubeapi.make_pki(kdir, API_NS[0], "kube")            # serves 10.96.0.1 (both ports)
    apis = []

    def new_api(addr, token, pki_=None):
        """A stand-in API server on addr (stopped at the end by the cleanups)."""
        p = pki_ or pki
        a = kubeapi.KubeAPI(addr[0], addr[1], p["cert"], p["key"], token=token, seed=len(apis) + 1)
        apis.append(a)
        ctx.cleanups.append(a.stop)
        return a

    def token_file(name, token):
        path = ctx.path("%s.token" % name)
        with open(path, "w") as f:
            f.write(token)
        return path

    # ================================================================ --check
    base = lambda kube, tiers=TIERS: harness.base_policy(ctx.path("x.log"), tiers,  # noqa: E731
                                                          identity={"unknown_source": "deny",
                                                                    "kubernetes": kube})
    good_ns = {"api_server": "https://10.96.0.1:6443", "token_file": "/tmp/t", "ca_file": "/tmp/ca",
               "namespaces": {"runners-a": "standard", "runners-b": "trusted"}}
    good_label = {"api_server": "https://10.96.0.1:6443", "tier_label": TIER_LABEL,
                  "audit_labels": ["app", "job-id"], "watch_timeout": "5m", "backoff_max": "30s"}
    for what, kube in (("namespaces mode", good_ns), ("tier_label mode", good_label),
                       ("in-cluster defaults (no api_server, token_file, ca_file)",
                        {"namespaces": {"runners-a": "standard"}}),
                       ("IPv6 api_server https://[fd00::1]:6443", dict(good_ns, api_server="https://[fd00::1]:6443"))):
        with ctx.case("--check accepts a valid kubernetes block: %s" % what):
            rc, out, err, _ = run_check(ctx, base(kube), "ok")
            expect(rc == 0, "exit %d, stderr %r" % (rc, err[:300]))

    REJECT = [
        ("both namespaces and tier_label", dict(good_ns, tier_label=TIER_LABEL)),
        ("neither namespaces nor tier_label", {"api_server": "https://10.96.0.1:6443"}),
        ("9 audit_labels (at most 8)", dict(good_label, audit_labels=["l%d" % i for i in range(9)])),
        ("namespaces mapping to an unknown tier", dict(good_ns, namespaces={"runners-a": "nosuchtier"})),
        ("api_server with a name (https://kubernetes.default.svc:443)",
         dict(good_ns, api_server="https://kubernetes.default.svc:443")),
        ("api_server not https (http://10.96.0.1:6443)", dict(good_ns, api_server="http://10.96.0.1:6443")),
        ("api_server with a path (https://10.96.0.1:6443/api)", dict(good_ns, api_server="https://10.96.0.1:6443/api")),
        ("api_server without scheme (10.96.0.1:6443)", dict(good_ns, api_server="10.96.0.1:6443")),
    ]
    for what, kube in REJECT:
        with ctx.case("--check rejects %s: exit 1, FILE:LINE:COL diagnostic" % what):
            rc, out, err, path = run_check(ctx, base(kube), "bad")
            expect(rc == 1, "exit %d, want 1 (stdout %r, stderr %r)" % (rc, out[:200], err[:300]))
            expect(re.search(r"^%s:\d+:\d+: \S" % re.escape(path), err, re.M),
                   "no FILE:LINE:COL diagnostic on stderr: %r" % err[:300])

    # ================================================================ stale (start; checked at the end)
    # Started here so that the minute without progress it takes overlaps the other cases.
    api_st = new_api(API_STALE, "stale-token")
    api_st.add_pod("runners-z", "z1", "10.52.0.11")
    stale_px = started(kube_proxy(ctx, "stale", 9, api_st.url, {"namespaces": {"runners-z": "standard"},
                                                                "backoff_max": "1s"},
                                  pki=pki, token_file=token_file("stale", "stale-token")))
    STALE = {"log": []}     # readyz samples (monotonic time, status, body) from the outage on

    def poll_ready(px, log, stop):
        while not stop.is_set():
            st, body = admin_get(px, "/readyz", timeout=2.0)
            log.append((time.monotonic(), st, body))
            stop.wait(1.0)

    with ctx.case("stale: synced, the pod maps; then the API server answers 500 to every request "
                  "(the watch is cut) and /readyz is sampled every second from then on"):
        expect(stale_px.start_error is None, stale_px.start_error or "")
        expect(wait_ready(stale_px, 200, 10), "/readyz %s; requests %s" % (readyz(stale_px),
                                                                           describe_reqs(api_st.requests())))
        expect_tier(stale_px, "10.52.0.11", "standard", pod=("runners-z", "z1"))
        expect(api_st.wait_watches(1, timeout=5), "no watch")
        api_st.fail_next(None, 500)
        api_st.drop_watches("rst")
        STALE["t0"] = time.monotonic()
        STALE["mark"] = api_st.mark()
        stop = threading.Event()
        ctx.cleanups.append(stop.set)
        threading.Thread(target=poll_ready, args=(stale_px, STALE["log"], stop), daemon=True,
                         name="stale-readyz").start()
        STALE["stop"] = stop

    # ================================================================ namespaces mode
    TOKEN_NS = "ns-token-0001"
    api = new_api(API_NS, TOKEN_NS)
    tok_ns = token_file("ns", TOKEN_NS)
    uids = {}

    def add(a, ns, name, ip, **kw):
        rv = a.add_pod(ns, name, ip, **kw)
        uids[(ns, name)] = a.pod(ns, name)["metadata"]["uid"]
        return rv

    add(api, "runners-a", "pa1", "10.42.0.11", labels={"app": "build", "job-id": "1234", "team": "web"})
    add(api, "runners-b", "pb1", "10.42.0.21", labels={"app": "deploy"})
    add(api, "kube-system", "coredns-x1", "10.42.0.31", labels={"app": "build"})
    add(api, "runners-a", "hostnet", "10.42.0.41", host_network=True, labels={"app": "node-agent"})
    add(api, "runners-b", "pbs", "10.42.200.7", labels={"job-id": "77"})
    add(api, "runners-a", "nolabels", "10.42.0.22", labels={})

    ns_px = started(kube_proxy(ctx, "ns", 0, api.url, {
        "namespaces": {"runners-a": "standard", "runners-b": "trusted"},
        "audit_labels": ["app", "job-id"], "watch_timeout": "5m", "backoff_max": "1s"},
        pki=pki, token_file=tok_ns, listen={"proxy": ["127.0.0.1:3128", "[::1]:3128"]}))

    with ctx.case("ns: /readyz 200 and portcullis_kube_synced 1 once both namespaces are listed (<= 10s)"):
        expect(ns_px.start_error is None, ns_px.start_error or "")
        expect(wait_ready(ns_px, 200, 10), "/readyz %s after 10s (requests: %s)" %
               (readyz(ns_px), describe_reqs(api.requests())))
        m = metrics(ns_px)
        expect(m["portcullis_kube_synced"] == 1, "portcullis_kube_synced %s" % m["portcullis_kube_synced"])

    with ctx.case("ns: the exposition has the four kube families with their types, and passes promcheck"):
        m = metrics(ns_px)
        fams = m["__fams__"]
        missing = [n for n in KUBE_FAMILIES if n not in fams]
        expect(not missing, "families missing: %s" % missing)
        wrong = ["%s is %s" % (n, fams[n].type) for n, t in KUBE_FAMILIES.items() if fams[n].type != t]
        expect(not wrong, "; ".join(wrong))
        _, probs = promcheck.check(SCRAPES[-1][1])
        probs += promcheck.conventions(fams)
        expect(not probs, "; ".join(str(p) for p in probs[:5]))

    with ctx.case("ns: lists then watches each listed namespace only (never /api/v1/pods or kube-system), "
                  "with the bearer token"):
        for ns in ("runners-a", "runners-b"):   # synced = listed; the watch follows the list
            api.wait_request(lambda r, ns=ns: is_watch(r, ns), timeout=5)
        reqs = api.requests()
        paths = {r["path"] for r in reqs}
        expect(paths == {"/api/v1/namespaces/runners-a/pods", "/api/v1/namespaces/runners-b/pods"},
               "paths requested: %s" % sorted(paths))
        expect(all(r["auth"] == "ok" and r["token"] == TOKEN_NS for r in reqs),
               "requests without the file's token: %s" % [(r["path"], r["auth"]) for r in reqs if r["auth"] != "ok"])
        for ns in ("runners-a", "runners-b"):
            lists = [r for r in reqs if is_list(r, ns)]
            watches = [r for r in reqs if is_watch(r, ns)]
            expect(lists and watches, "%s: lists %d, watches %d" % (ns, len(lists), len(watches)))
            expect(lists[0]["i"] < watches[0]["i"], "%s: watched before listing" % ns)
            expect(watches[0]["query"].get("resourceVersion") == str(lists[-1]["list_rv"]),
                   "%s: watch from RV %r, the list was at %s" % (ns, watches[0]["query"].get("resourceVersion"),
                                                                lists[-1]["list_rv"]))

    with ctx.case("ns: each watch sends allowWatchBookmarks=true and timeoutSeconds=300 (watch_timeout 5m)"):
        ws = [r for r in api.requests() if r["watch"]]
        expect(ws, "no watch request")
        bad = [r["query"] for r in ws if r["query"].get("allowWatchBookmarks") not in kubeapi.TRUE_WORDS
               or r["query"].get("timeoutSeconds") != "300"]
        expect(not bad, "watch queries: %s" % bad[:2])

    S = {}   # what a case hands to the next one; a case whose input is missing fails saying so

    def need_state(*keys):
        missing = [k for k in keys if S.get(k) is None]
        expect(not missing, "needs the result of an earlier case that failed (%s)" % ", ".join(missing))
        return [S[k] for k in keys]

    with ctx.case("ns: curl from a runners-a pod (10.42.0.11) reaches allowed.example as tier standard"):
        res, rec = curl_as(ns_px, "10.42.0.11", "allowed.example", certs)
        expect(res["rc"] == 0 and res["connect"] == "200" and res["body"].startswith("upstream tls "),
               "curl exit %s, CONNECT %s, body %r, stderr %r" % (res["rc"], res["connect"], res["body"][:80],
                                                                 res["stderr"][:200]))
        expect(rec is not None, "no audit record for port %s" % res["local_port"])
        harness.check_tunnel_record(rec)
        expect(get(rec, "rule.ruleset") == "standard", "rule.ruleset %r" % get(rec, "rule.ruleset"))
        S["pa1_rec"] = rec

    with ctx.case("ns: audit record of a pod connection: orchestrator.namespace, resource.name/type/id, "
                  "resource.label [app:build, job-id:1234] (audit_labels only)"):
        rec, = need_state("pa1_rec")
        expect(get(rec, "orchestrator.namespace") == "runners-a", "orchestrator.namespace %r" %
               get(rec, "orchestrator.namespace"))
        expect(get(rec, "orchestrator.resource.name") == "pa1", "resource.name %r" %
               get(rec, "orchestrator.resource.name"))
        expect(get(rec, "orchestrator.resource.type") == "pod", "resource.type %r" %
               get(rec, "orchestrator.resource.type"))
        expect(get(rec, "orchestrator.resource.id") == uids[("runners-a", "pa1")],
               "resource.id %r, uid %s" % (get(rec, "orchestrator.resource.id"), uids[("runners-a", "pa1")]))
        lab = get(rec, "orchestrator.resource.label")
        expect(isinstance(lab, list) and sorted(lab) == ["app:build", "job-id:1234"],
               "orchestrator.resource.label %r, want [app:build, job-id:1234] (team is not an audit label)" % lab)

    with ctx.case("ns: curl from a runners-b pod (10.42.0.21) reaches other.example as trusted, "
                  "and is refused allowed.example (403 host_not_allowed, record names the pod)"):
        res, rec = curl_as(ns_px, "10.42.0.21", "other.example", certs)
        expect(res["rc"] == 0 and res["connect"] == "200", "curl exit %s, CONNECT %s, stderr %r" %
               (res["rc"], res["connect"], res["stderr"][:200]))
        expect(get(rec, "rule.ruleset") == "trusted", "rule.ruleset %r" % get(rec, "rule.ruleset"))
        res, rec = curl_as(ns_px, "10.42.0.21", "allowed.example", certs)
        expect(res["rc"] != 0 and res["connect"] == "403", "curl CONNECT %s, want 403" % res["connect"])
        expect(rec is not None, "no audit record")
        harness.check_denied_record(rec, "host_not_allowed", 403)
        expect(get(rec, "rule.ruleset") == "trusted" and get(rec, "orchestrator.namespace") == "runners-b" and
               get(rec, "orchestrator.resource.name") == "pb1" and
               get(rec, "orchestrator.resource.label") == ["app:deploy"],
               "denied record: ruleset %r ns %r name %r labels %r" % (
                   get(rec, "rule.ruleset"), get(rec, "orchestrator.namespace"),
                   get(rec, "orchestrator.resource.name"), get(rec, "orchestrator.resource.label")))

    with ctx.case("ns: a pod with none of the audit_labels has no orchestrator.resource.label"):
        s = expect_tier(ns_px, "10.42.0.22", "standard", pod=("runners-a", "nolabels"))
        expect(get(s.rec, "orchestrator.resource.label") is None,
               "orchestrator.resource.label %r" % get(s.rec, "orchestrator.resource.label"))

    with ctx.case("ns: a pod in an unwatched namespace (kube-system) -> 403 unknown_source"):
        expect_tier(ns_px, "10.42.0.11", "standard", what="barrier: ")   # the lists were applied
        s = probe(ns_px, "10.42.0.31")
        expect(s.tier == UNKNOWN, s.describe())
        harness.check_denied_record(s.rec, "unknown_source", 403)
        expect(get(s.rec, "orchestrator") is None, "unknown source record has orchestrator %r" %
               get(s.rec, "orchestrator"))

    with ctx.case("ns: a hostNetwork pod never maps (10.42.0.41 -> unknown_source)"):
        expect_tier(ns_px, "10.42.0.11", "standard", what="barrier (same list): ")
        expect_still(ns_px, "10.42.0.41", UNKNOWN)

    with ctx.case("ns: static sources still work: 10.42.200.5 -> static, no orchestrator fields"):
        s = expect_still(ns_px, "10.42.200.5", "static")
        expect(get(s.rec, "orchestrator") is None, "orchestrator %r" % get(s.rec, "orchestrator"))

    with ctx.case("ns: the Kubernetes map wins over a static CIDR: runners-b pod 10.42.200.7 -> trusted"):
        expect_still(ns_px, "10.42.200.7", "trusted", pod=("runners-b", "pbs"))

    with ctx.case("ns: portcullis_kube_pods = 4 (pa1, pb1, pbs, nolabels: hostNetwork and kube-system excluded), "
                  "relists 0"):
        m = wait_metric(ns_px, lambda x: x["portcullis_kube_pods"] == 4)
        expect(m["portcullis_kube_pods"] == 4, "portcullis_kube_pods %s, want 4" % m["portcullis_kube_pods"])
        expect(m["portcullis_kube_relists_total"] == 0, "relists %s" % m["portcullis_kube_relists_total"])

    # ---------------------------------------------------------------- events
    with ctx.case("ns: ADDED -> the new pod's IP gets its namespace's tier (10.42.0.12 standard)"):
        add(api, "runners-a", "pa2", "10.42.0.12", labels={"app": "build", "job-id": "2"})
        expect_tier(ns_px, "10.42.0.12", "standard", pod=("runners-a", "pa2"))

    with ctx.case("ns: ADDED Pending without an IP, then MODIFIED with podIP -> maps (10.42.0.16)"):
        add(api, "runners-b", "pending", None, phase="Pending")
        api.modify_pod("runners-b", "pending", ip="10.42.0.16", phase="Running")
        expect_tier(ns_px, "10.42.0.16", "trusted", pod=("runners-b", "pending"))

    with ctx.case("ns: a dual-stack pod (podIPs v4 + v6) maps on both: curl over IPv6 from %s" % POD_V6):
        add(api, "runners-a", "dual", "10.42.0.24", ips=["10.42.0.24", POD_V6], labels={"app": "dual"})
        expect_tier(ns_px, "10.42.0.24", "standard", pod=("runners-a", "dual"))
        res = harness.curl(["-x", "http://[::1]:3128", "--interface", POD_V6, "--cacert", certs["ca"],
                            "https://allowed.example/"])
        expect(res["rc"] == 0 and res["connect"] == "200", "curl exit %s, CONNECT %s, stderr %r" %
               (res["rc"], res["connect"], res["stderr"][:200]))
        rec = ns_px.audit.by_port(res["local_port"], timeout=5)
        expect(rec is not None, "no audit record")
        expect(get(rec, "source.ip") == POD_V6 and get(rec, "rule.ruleset") == "standard" and
               get(rec, "orchestrator.resource.name") == "dual",
               "source.ip %r ruleset %r pod %r" % (get(rec, "source.ip"), get(rec, "rule.ruleset"),
                                                    get(rec, "orchestrator.resource.name")))

    with ctx.case("ns: MODIFIED labels -> the audit record carries the new audit labels"):
        api.modify_pod("runners-a", "pa2", labels={"app": "test", "job-id": "3"})
        t0 = time.monotonic()
        while True:
            s = probe(ns_px, "10.42.0.12")
            lab = sorted(get(s.rec, "orchestrator.resource.label") or [])
            if lab == ["app:test", "job-id:3"] or time.monotonic() - t0 > 5:
                break
            time.sleep(0.05)
        expect(lab == ["app:test", "job-id:3"] and s.tier == "standard",
               "after 5s: tier %s, labels %s" % (s.tier, lab))

    with ctx.case("ns: MODIFIED phase Succeeded -> removed (10.42.0.17 -> unknown_source)"):
        add(api, "runners-a", "done", "10.42.0.17")
        expect_tier(ns_px, "10.42.0.17", "standard")
        api.modify_pod("runners-a", "done", phase="Succeeded")
        expect_tier(ns_px, "10.42.0.17", UNKNOWN)

    with ctx.case("ns: MODIFIED phase Failed -> removed (10.42.0.18 -> unknown_source)"):
        add(api, "runners-b", "failed", "10.42.0.18")
        expect_tier(ns_px, "10.42.0.18", "trusted")
        api.modify_pod("runners-b", "failed", phase="Failed")
        expect_tier(ns_px, "10.42.0.18", UNKNOWN)

    with ctx.case("ns: DELETED -> 403 unknown_source (10.42.0.12)"):
        expect_tier(ns_px, "10.42.0.12", "standard", what="before: ")
        api.delete_pod("runners-a", "pa2")
        s = expect_tier(ns_px, "10.42.0.12", UNKNOWN)
        harness.check_denied_record(s.rec, "unknown_source", 403)

    with ctx.case("ns: DELETED pod inside a static CIDR -> back to the static tier (10.42.200.7)"):
        expect_tier(ns_px, "10.42.200.7", "trusted", what="before: ")
        api.delete_pod("runners-b", "pbs")
        s = expect_tier(ns_px, "10.42.200.7", "static")
        expect(get(s.rec, "orchestrator") is None, "orchestrator %r" % get(s.rec, "orchestrator"))

    with ctx.case("ns: a terminating pod (deletionTimestamp set) keeps its identity until DELETED"):
        add(api, "runners-a", "term", "10.42.0.19")
        expect_tier(ns_px, "10.42.0.19", "standard")
        api.modify_pod("runners-a", "term", deleting=True)
        add(api, "runners-a", "barrier-term", "10.42.0.20")               # barrier on runners-a's stream
        expect_tier(ns_px, "10.42.0.20", "standard")
        expect_still(ns_px, "10.42.0.19", "standard", pod=("runners-a", "term"))
        api.delete_pod("runners-a", "term")
        expect_tier(ns_px, "10.42.0.19", UNKNOWN)

    # ---------------------------------------------------------------- IP reuse
    with ctx.case("ns: IP reuse: runners-b pod B ADDED with live runners-a pod A's IP -> B's identity"):
        add(api, "runners-a", "reuse-a", "10.42.0.13", labels={"app": "a"})
        expect_tier(ns_px, "10.42.0.13", "standard", pod=("runners-a", "reuse-a"))
        add(api, "runners-b", "reuse-b", "10.42.0.13", labels={"app": "b"})
        expect_tier(ns_px, "10.42.0.13", "trusted", pod=("runners-b", "reuse-b"))

    with ctx.case("ns: IP reuse: A's late MODIFIED (labels, then deletionTimestamp) does not take the IP back"):
        api.modify_pod("runners-a", "reuse-a", labels={"app": "a2"})
        api.modify_pod("runners-a", "reuse-a", deleting=True)
        add(api, "runners-a", "barrier-1", "10.42.0.14")             # same stream as A's events
        expect_tier(ns_px, "10.42.0.14", "standard")
        expect_still(ns_px, "10.42.0.13", "trusted", pod=("runners-b", "reuse-b"))

    with ctx.case("ns: IP reuse: A's late DELETED does not unmap B"):
        api.delete_pod("runners-a", "reuse-a")
        add(api, "runners-a", "barrier-2", "10.42.0.23")
        expect_tier(ns_px, "10.42.0.23", "standard")
        expect_still(ns_px, "10.42.0.13", "trusted", pod=("runners-b", "reuse-b"))

    with ctx.case("ns: IP reuse (podmap.h): when the newer claimant B leaves, the IP passes to live A"):
        add(api, "runners-a", "back-a", "10.42.0.15")
        expect_tier(ns_px, "10.42.0.15", "standard")
        add(api, "runners-b", "back-b", "10.42.0.15")
        expect_tier(ns_px, "10.42.0.15", "trusted", pod=("runners-b", "back-b"))
        api.delete_pod("runners-b", "back-b")
        expect_tier(ns_px, "10.42.0.15", "standard", pod=("runners-a", "back-a"))

    # ---------------------------------------------------------------- bookmarks
    with ctx.case("ns: after a BOOKMARK and a disconnect, runners-a re-watches from the bookmark's RV"):
        add(api, "runners-b", "bm-b", "10.42.0.71")        # moves the RV; runners-a's stream sees nothing
        expect_tier(ns_px, "10.42.0.71", "trusted")
        live = {w["ns"]: w for w in api.watches(alive=True)}
        expect("runners-a" in live, "no live runners-a watch: %s" % api.watches(alive=True))
        before = live["runners-a"]["last_sent"] or live["runners-a"]["start_rv"]
        sent = api.bookmark()
        expect(live["runners-a"]["id"] in sent, "no bookmark sent to runners-a (allowWatchBookmarks %r)" %
               live["runners-a"]["query"].get("allowWatchBookmarks"))
        bm_rv = sent[live["runners-a"]["id"]]
        expect(bm_rv > before, "bookmark RV %s is not past runners-a's last event %s" % (bm_rv, before))
        mark = api.mark()
        metrics_before = metrics(ns_px)
        api.drop_watches("fin")
        S["bm"] = (mark, metrics_before, sent, live)
        w = api.wait_request(lambda r: is_watch(r, "runners-a"), since=mark, timeout=5)
        expect(w is not None, "no re-watch of runners-a within 5s: %s" % describe_reqs(api.requests(since=mark)))
        expect(w["query"].get("resourceVersion") == str(bm_rv),
               "re-watch from resourceVersion=%r, the bookmark said %d (last event %s)" %
               (w["query"].get("resourceVersion"), bm_rv, before))
        lists = [r for r in api.requests(since=mark) if is_list(r)]
        expect(not lists, "relisted after a plain disconnect: %s" % describe_reqs(lists))

    with ctx.case("ns: ... runners-b re-watches from its bookmark too (equal to its last event: not the "
                  "discriminating half); both streams are back"):
        mark, metrics_before, sent, live = need_state("bm")[0]
        expect("runners-b" in live and live["runners-b"]["id"] in sent, "runners-b had no bookmarked stream")
        wb = api.wait_request(lambda r: is_watch(r, "runners-b"), since=mark, timeout=5)
        expect(wb is not None, "no re-watch of runners-b")
        expect(wb["query"].get("resourceVersion") == str(sent[live["runners-b"]["id"]]),
               "runners-b re-watch from %r, bookmark %s" % (wb["query"].get("resourceVersion"),
                                                           sent[live["runners-b"]["id"]]))
        expect(len(api.wait_watches(2, timeout=5)) == 2, "live watches: %s" % api.watches(alive=True))

    with ctx.case("ns: a FIN-dropped stream counts in portcullis_kube_watch_errors_total (+2 for 2 streams), "
                  "relists unchanged"):
        mark, metrics_before, sent, live = need_state("bm")[0]
        m = wait_metric(ns_px, lambda x: x["portcullis_kube_watch_errors_total"] -
                        metrics_before["portcullis_kube_watch_errors_total"] >= 2)
        d = m["portcullis_kube_watch_errors_total"] - metrics_before["portcullis_kube_watch_errors_total"]
        expect(d >= 2, "watch_errors +%s" % d)
        expect(m["portcullis_kube_relists_total"] == metrics_before["portcullis_kube_relists_total"],
               "relists +%s" % (m["portcullis_kube_relists_total"] - metrics_before["portcullis_kube_relists_total"]))

    # ---------------------------------------------------------------- disconnects
    def drop_case(how, when, name, ip, chunking="event"):
        api.set_chunking(chunking)
        api.wait_watches(2, timeout=5)
        mark = api.mark()
        m0 = metrics(ns_px)
        live = {w["ns"]: w for w in api.watches(alive=True)}
        expect(set(live) == {"runners-a", "runners-b"}, "live watch streams before the drop: %s" % sorted(live))
        if when == "now":
            infos = {w["ns"]: w for w in api.drop_watches(how)}
            add(api, "runners-a", name, ip)
            dropped = ("runners-a", "runners-b")
        else:
            api.drop_watches(how, when="next_event", ns="runners-a")
            rv = add(api, "runners-a", name, ip)
            harness.wait_until(lambda: not api.watches(alive=True, ns="runners-a") or
                               all(w["id"] > live["runners-a"]["id"] for w in api.watches(alive=True,
                                                                                            ns="runners-a")), 5)
            infos = {w["ns"]: w for w in api.watches() if w["id"] == live["runners-a"]["id"]}
            expect(infos["runners-a"]["partial_rv"] == rv, "the stream was not cut in the middle of the "
                   "ADDED (rv %s): %s" % (rv, infos["runners-a"]))
            dropped = ("runners-a",)
        expect_tier(ns_px, ip, "standard", timeout=8, pod=("runners-a", name))
        for ns in dropped:
            w = api.wait_request(lambda r, ns=ns: is_watch(r, ns), since=mark, timeout=5)
            expect(w is not None, "%s: no re-watch" % ns)
            expect(w["query"].get("resourceVersion") == resume_rv(infos[ns]),
                   "%s re-watched from resourceVersion=%r, want %s (the last RV delivered whole on the "
                   "dropped stream)" % (ns, w["query"].get("resourceVersion"), resume_rv(infos[ns])))
        lists = [r for r in api.requests(since=mark) if is_list(r)]
        expect(not lists, "relisted after a disconnect: %s" % describe_reqs(lists))
        m = wait_metric(ns_px, lambda x: x["portcullis_kube_watch_errors_total"] -
                        m0["portcullis_kube_watch_errors_total"] >= len(dropped))
        d = m["portcullis_kube_watch_errors_total"] - m0["portcullis_kube_watch_errors_total"]
        expect(d >= len(dropped), "portcullis_kube_watch_errors_total +%s for %d dropped streams" % (d, len(dropped)))
        expect(m["portcullis_kube_relists_total"] == m0["portcullis_kube_relists_total"], "relists moved")
        api.set_chunking("event")

    for how, when, name, ip, what in (
            ("rst", "now", "rst-1", "10.42.0.51", "RST on both streams; a pod ADDED while away"),
            ("fin", "now", "fin-1", "10.42.0.52", "FIN without the last chunk; a pod ADDED while away"),
            ("midchunk", "next_event", "cut-1", "10.42.0.53", "FIN in the middle of a chunk holding an ADDED"),
            ("midchunk-rst", "next_event", "cut-2", "10.42.0.54", "RST in the middle of a chunk holding an ADDED"),
            ("midevent", "next_event", "cut-3", "10.42.0.55", "FIN after a chunk holding half an ADDED line")):
        with ctx.case("ns: disconnect (%s): re-watch from the last whole event's RV, no relist, the event "
                      "is not lost, watch_errors counts it" % what):
            drop_case(how, when, name, ip)

    with ctx.case("ns: chunking split (events cut across chunks and reads): ADDED, MODIFIED phase, DELETED "
                  "all take effect"):
        api.set_chunking("split")
        add(api, "runners-a", "split-1", "10.42.0.56")
        add(api, "runners-b", "split-2", "10.42.0.57")
        expect_tier(ns_px, "10.42.0.56", "standard")
        expect_tier(ns_px, "10.42.0.57", "trusted")
        api.modify_pod("runners-a", "split-1", phase="Succeeded")
        api.delete_pod("runners-b", "split-2")
        expect_tier(ns_px, "10.42.0.56", UNKNOWN)
        expect_tier(ns_px, "10.42.0.57", UNKNOWN)
        api.set_chunking("event")

    with ctx.case("ns: chunking batch (several events per chunk, events straddling chunks): 6 changes in "
                  "one write all take effect"):
        api.set_chunking("batch")
        with api.atomic():
            for i in range(4):
                add(api, "runners-a", "batch-%d" % i, "10.42.0.%d" % (60 + i))
            api.modify_pod("runners-a", "batch-0", phase="Failed")
            api.delete_pod("runners-a", "batch-1")
        for i, want in ((0, UNKNOWN), (1, UNKNOWN), (2, "standard"), (3, "standard")):
            expect_tier(ns_px, "10.42.0.%d" % (60 + i), want, what="batch-%d: " % i)
        api.set_chunking("event")

    with ctx.case("ns: a drop mid-chunk in split mode loses nothing (cut event re-delivered)"):
        drop_case("midchunk", "next_event", "cut-4", "10.42.0.58", chunking="split")

    # ---------------------------------------------------------------- 5xx / 429
    def failing_case(status, n, name, ip):
        api.wait_watches(2, timeout=5)
        mark = api.mark()
        m0 = metrics(ns_px)
        api.fail_next(n, status)
        api.drop_watches("rst", ns="runners-a")
        add(api, "runners-a", name, ip)
        expect_tier(ns_px, ip, "standard", timeout=10)
        reqs = api.requests(lambda r: r["ns"] == "runners-a", since=mark)
        failed = [r for r in reqs if r["status"] == status]
        expect(len(failed) == n, "%d requests answered %d, want %d: %s" % (len(failed), status, n,
                                                                         describe_reqs(reqs)))
        expect(len(reqs) <= n + 2, "%d requests for %d failures: %s" % (len(reqs), n, describe_reqs(reqs, 12)))
        ok = [r for r in reqs if r["status"] == 200]
        expect(ok and ok[-1]["watch"], "no successful watch after the failures: %s" % describe_reqs(reqs))
        span = ok[0]["t"] - failed[0]["t"]
        if n >= 4:
            expect(span >= 0.2, "%d failures and the success within %.3fs: no backoff" % (n, span))
        m = metrics(ns_px)
        d = m["portcullis_kube_watch_errors_total"] - m0["portcullis_kube_watch_errors_total"]
        expect(d >= n, "portcullis_kube_watch_errors_total +%s after %d failed requests" % (d, n))
        return failed

    with ctx.case("ns: 4 x 503 on reconnect: backs off (first failure to success >= 0.2s, at most 2 more "
                  "requests than failures), catches up, "
                  "watch_errors counts them"):
        failing_case(503, 4, "fail-503", "10.42.0.81")

    with ctx.case("ns: 4 x 500 on reconnect: backs off and catches up"):
        failing_case(500, 4, "fail-500", "10.42.0.82")

    with ctx.case("ns: 2 x 429 (Retry-After: 1) on reconnect: retries and catches up"):
        failing_case(429, 2, "fail-429", "10.42.0.83")

    with ctx.case("ns: a slow API server (2 s before each answer) still ends up synced with the change"):
        api.set_delay(2.0)
        api.drop_watches("rst", ns="runners-a")
        add(api, "runners-a", "slow-1", "10.42.0.84")
        expect_tier(ns_px, "10.42.0.84", "standard", timeout=10)
        api.set_delay(0)

    # ---------------------------------------------------------------- 410 Gone
    with ctx.case("ns: 410: compacted while away -> ERROR Expired on re-watch -> relist of both namespaces; "
                  "pods deleted while away leave, pods added appear"):
        expect_tier(ns_px, "10.42.0.11", "standard")
        expect_tier(ns_px, "10.42.0.21", "trusted")
        api.wait_watches(2, timeout=5)
        m0 = metrics(ns_px)
        mark = api.mark()
        api.pause()
        gone = api.drop_watches("fin")   # FIN: the client has read everything sent (the old RV is exact)
        try:
            api.delete_pod("runners-a", "pa1")
            api.delete_pod("runners-b", "pb1")
            add(api, "runners-a", "gone-new", "10.42.0.91")
            add(api, "runners-b", "gone-new-b", "10.42.0.92")
            api.modify_pod("runners-a", "batch-2", phase="Succeeded")
            horizon = api.compact()
        finally:
            api.resume()
        S["gone"] = m0
        expect_tier(ns_px, "10.42.0.91", "standard", timeout=10)
        expect_tier(ns_px, "10.42.0.92", "trusted")
        expect_tier(ns_px, "10.42.0.11", UNKNOWN)
        expect_tier(ns_px, "10.42.0.21", UNKNOWN)
        expect_tier(ns_px, "10.42.0.62", UNKNOWN)
        reqs = api.requests(since=mark)
        for ns in ("runners-a", "runners-b"):
            old = resume_rv([g for g in gone if g["ns"] == ns][0])
            w410 = [r for r in reqs if is_watch(r, ns) and r["query"].get("resourceVersion") == old]
            expect(w410, "%s: no re-watch from the old RV %s: %s" % (ns, old, describe_reqs(reqs)))
            lists = [r for r in reqs if is_list(r, ns) and r["i"] > w410[0]["i"] and r["status"] == 200]
            expect(lists, "%s: no list after the 410: %s" % (ns, describe_reqs(reqs)))
            after = [r for r in reqs if is_watch(r, ns) and r["i"] > lists[-1]["i"]]
            expect(after and after[0]["query"].get("resourceVersion") == str(lists[-1]["list_rv"]),
                   "%s: after relisting at %s, watched from %r" % (ns, lists[-1]["list_rv"],
                                                                  after and after[0]["query"].get("resourceVersion")))
            expect(lists[-1]["list_rv"] >= horizon, "relist at %s, below the horizon %d" % (lists[-1]["list_rv"],
                                                                                             horizon))

    with ctx.case("ns: 410: portcullis_kube_relists_total +2 (one per namespace), synced 1, pods gauge right"):
        m0, = need_state("gone")
        m = wait_metric(ns_px, lambda x: x["portcullis_kube_relists_total"] - m0["portcullis_kube_relists_total"] >= 2)
        d = m["portcullis_kube_relists_total"] - m0["portcullis_kube_relists_total"]
        expect(d == 2, "relists +%s, want +2" % d)
        expect(m["portcullis_kube_synced"] == 1, "synced %s" % m["portcullis_kube_synced"])
        want = sum(1 for (ns, _), p in api.pods.items() if ns in ("runners-a", "runners-b") and
                   kubeapi.pod_ip(p) and not p["spec"].get("hostNetwork") and
                   p["status"]["phase"] not in ("Succeeded", "Failed"))
        m = wait_metric(ns_px, lambda x: x["portcullis_kube_pods"] == want)
        expect(m["portcullis_kube_pods"] == want, "portcullis_kube_pods %s, the API server holds %d eligible "
               "pods in the two namespaces" % (m["portcullis_kube_pods"], want))

    # ---------------------------------------------------------------- token rotation while synced
    with ctx.case("ns: token file rotated (rename): the next connection carries the new token"):
        api.wait_watches(2, timeout=5)
        write_atomic(tok_ns, "ns-token-0002")
        api.set_tokens("ns-token-0002")
        mark = api.mark()
        api.drop_watches("rst", ns="runners-a")
        add(api, "runners-a", "rot-1", "10.42.0.93")
        expect_tier(ns_px, "10.42.0.93", "standard", timeout=8)
        reqs = api.requests(lambda r: r["ns"] == "runners-a", since=mark)
        expect(reqs and reqs[-1]["token"] == "ns-token-0002" and reqs[-1]["auth"] == "ok",
               "requests after the rotation: %s" % [(r["auth"], r["token"]) for r in reqs])
        expect(all(r["token"] == "ns-token-0002" for r in reqs),
               "the old token was still sent after the file changed: %s" % [r["token"] for r in reqs])

    # ================================================================ tier_label mode + pagination
    TOKEN_L = "label-token"
    api2 = new_api(API_LABEL, TOKEN_L)
    tok_l = token_file("label", TOKEN_L)
    api2.page_max = 100
    bulk = []
    for i in range(BULK):
        tier = "standard" if i % 2 == 0 else "trusted"
        bulk.append(("ci-%d" % (i % 7), "bulk-%04d" % i, bulk_ip(i), {"labels": {TIER_LABEL: tier, "app": "bulk"}}))
    api2.add_pods(bulk)
    add(api2, "team-a", "l-std", "10.43.0.11", labels={TIER_LABEL: "standard", "app": "web"})
    add(api2, "team-b", "l-trusted", "10.43.0.12", labels={TIER_LABEL: "trusted"})
    add(api2, "team-a", "l-bogus", "10.43.0.13", labels={TIER_LABEL: "nosuchtier"})
    add(api2, "team-a", "l-none", "10.43.0.14", labels={"app": "web"})
    add(api2, "team-a", "l-bogus-static", "10.43.200.9", labels={TIER_LABEL: "nosuchtier"})
    add(api2, "team-a", "l-hostnet", "10.43.0.15", labels={TIER_LABEL: "trusted"}, host_network=True)
    # IP reuse seen in one list: the stale pod (created first) sorts after its successor in the list
    add(api2, "zz-old", "stale-a", "10.43.0.25", labels={TIER_LABEL: "standard"})
    add(api2, "aa-new", "fresh-b", "10.43.0.25", labels={TIER_LABEL: "trusted"})
    page_log = []

    def mid_pagination(page, rec):
        """After the first page of the first list: delete bulk-0005, add bulk-1200."""
        page_log.append((page, rec["i"]))
        if page == 1 and len(page_log) == 2:
            api2.delete_pod("ci-5", "bulk-0005")
            add(api2, "ci-0", "bulk-1200", bulk_ip(1200), labels={TIER_LABEL: "trusted"})
    api2.on_list_page = mid_pagination
    label_px = started(kube_proxy(ctx, "label", 1, api2.url, {
        "tier_label": TIER_LABEL, "audit_labels": ["app"], "watch_timeout": "10s", "backoff_max": "1s"},
        unknown="quarantine", pki=pki, token_file=tok_l))

    with ctx.case("label: synced (<= 15s) after paging through %d pods in pages of 100" % (BULK + 7)):
        expect(label_px.start_error is None, label_px.start_error or "")
        expect(wait_ready(label_px, 200, 15), "/readyz %s; requests: %s" % (readyz(label_px),
                                                                            describe_reqs(api2.requests())))

    with ctx.case("label: one cluster-wide list+watch of /api/v1/pods with labelSelector = the tier_label key"):
        api2.wait_request(lambda r: r["watch"], timeout=5)
        reqs = api2.requests()
        paths = {r["path"] for r in reqs}
        expect(paths == {"/api/v1/pods"}, "paths %s" % sorted(paths))
        sels = {r["query"].get("labelSelector") for r in reqs}
        expect(sels == {TIER_LABEL}, "labelSelector values %s" % sels)
        expect(any(r["watch"] for r in reqs), "no watch")

    with ctx.case("label: pagination followed every continue token the server issued, in order, once"):
        lists = [r for r in api2.requests() if is_list(r)]
        first = [r for r in lists if not r["query"].get("continue")]
        expect(len(first) == 1, "%d fresh lists" % len(first))
        chain = [r for r in lists if r["list_rv"] == first[0]["list_rv"]]
        pages = len(chain)
        expect(pages == (BULK + 7 + 99) // 100, "%d pages, want %d" % (pages, (BULK + 7 + 99) // 100))
        for prev, nxt in zip(chain, chain[1:]):
            expect(nxt["query"].get("continue") == prev["continue_out"],
                   "page %d sent continue %r, page %d returned %r" % (nxt["i"], nxt["query"].get("continue"),
                                                                      prev["i"], prev["continue_out"]))
        expect(chain[-1]["continue_out"] is None, "stopped before the last page")
        expect(all(r["query"].get("limit") for r in chain), "a page without limit: %s" % describe_reqs(chain))
        w = [r for r in api2.requests() if r["watch"]][0]
        expect(w["query"].get("resourceVersion") == str(first[0]["list_rv"]),
               "watch from %r, the list's snapshot RV is %s" % (w["query"].get("resourceVersion"), first[0]["list_rv"]))

    with ctx.case("label: bulk pods map: first, middle and last of %d (standard/trusted by label)" % BULK):
        expect_tier(label_px, bulk_ip(0), "standard", pod=("ci-0", "bulk-0000"))
        expect_tier(label_px, bulk_ip(599), "trusted", pod=("ci-4", "bulk-0599"))
        expect_tier(label_px, bulk_ip(1199), "trusted", pod=("ci-2", "bulk-1199"))

    with ctx.case("label: changes during pagination arrive through the watch from the list's RV "
                  "(bulk-0005 deleted -> quarantine, bulk-1200 added -> trusted)"):
        expect(len(page_log) >= 2, "hook ran %d times" % len(page_log))
        expect_tier(label_px, bulk_ip(5), "quarantine")
        expect_tier(label_px, bulk_ip(1200), "trusted", pod=("ci-0", "bulk-1200"))

    with ctx.case("label: portcullis_kube_pods counts every selected, eligible pod (%d bulk + l-std, l-trusted, "
                  "l-bogus, l-bogus-static, stale-a, fresh-b)" % BULK):
        want = BULK + 6
        m = wait_metric(label_px, lambda x: x["portcullis_kube_pods"] == want)
        expect(m["portcullis_kube_pods"] == want, "portcullis_kube_pods %s, want %d" % (m["portcullis_kube_pods"],
                                                                                       want))

    with ctx.case("label: IP reuse within one list: the newer pod (aa-new/fresh-b, applied first) owns the IP, "
                  "not the stale one listed after it (zz-old/stale-a)"):
        expect_tier(label_px, "10.43.0.25", "trusted", pod=("aa-new", "fresh-b"))

    with ctx.case("label: ... and the stale pod's DELETED leaves the IP with the newer pod"):
        api2.delete_pod("zz-old", "stale-a")
        add(api2, "team-c", "barrier-reuse", "10.43.0.26", labels={TIER_LABEL: "standard"})   # same stream
        expect_tier(label_px, "10.43.0.26", "standard")
        expect_still(label_px, "10.43.0.25", "trusted", pod=("aa-new", "fresh-b"))

    with ctx.case("label: tier = the label's value (standard / trusted); audit_labels [app]"):
        s = expect_tier(label_px, "10.43.0.11", "standard", pod=("team-a", "l-std"))
        expect(get(s.rec, "orchestrator.resource.label") == ["app:web"],
               "labels %r" % get(s.rec, "orchestrator.resource.label"))
        expect_tier(label_px, "10.43.0.12", "trusted", pod=("team-b", "l-trusted"))

    with ctx.case("label: a tier_label naming no tier -> unknown_source treatment (tier quarantine)"):
        expect_tier(label_px, "10.43.0.11", "standard", what="barrier (same list): ")
        expect_still(label_px, "10.43.0.13", "quarantine")

    with ctx.case("label: ... even inside a static CIDR (policy.h: a known pod without a tier is not an "
                  "unknown address): 10.43.200.9 -> quarantine, not static"):
        expect_tier(label_px, "10.43.0.11", "standard", what="barrier (same list): ")
        expect_still(label_px, "10.43.200.9", "quarantine")

    with ctx.case("label: a pod without the label (not selected) -> quarantine; hostNetwork pod -> quarantine"):
        expect_tier(label_px, "10.43.0.11", "standard", what="barrier (same list): ")
        expect_still(label_px, "10.43.0.14", "quarantine")
        expect_still(label_px, "10.43.0.15", "quarantine")

    with ctx.case("label: MODIFIED label standard -> trusted takes effect"):
        add(api2, "team-c", "l-mod", "10.43.0.21", labels={TIER_LABEL: "standard", "app": "x"})
        expect_tier(label_px, "10.43.0.21", "standard")
        api2.modify_pod("team-c", "l-mod", labels={TIER_LABEL: "trusted", "app": "x"})
        expect_tier(label_px, "10.43.0.21", "trusted")

    with ctx.case("label: MODIFIED label value to a non-tier -> quarantine; back to standard -> standard"):
        api2.modify_pod("team-c", "l-mod", labels={TIER_LABEL: "bogus", "app": "x"})
        expect_tier(label_px, "10.43.0.21", "quarantine")
        api2.modify_pod("team-c", "l-mod", labels={TIER_LABEL: "standard", "app": "x"})
        expect_tier(label_px, "10.43.0.21", "standard")

    with ctx.case("label: label removed (the pod leaves the selector: DELETED on the watch) -> quarantine; "
                  "label back (ADDED) -> trusted"):
        api2.modify_pod("team-c", "l-mod", labels={"app": "x"})
        expect_tier(label_px, "10.43.0.21", "quarantine")
        api2.modify_pod("team-c", "l-mod", labels={TIER_LABEL: "trusted", "app": "x"})
        expect_tier(label_px, "10.43.0.21", "trusted")

    with ctx.case("label: bookmark on the cluster-wide watch, then FIN: re-watch from the bookmark's RV"):
        w0 = fresh_watch(api2)
        expect(w0, "no live watch")
        add(api2, "team-x", "unselected", "10.43.0.30", labels={"app": "nolabel"})   # RV moves, no event
        sent = api2.bookmark()
        expect(sent, "no bookmark sent (allowWatchBookmarks %r)" % w0["query"].get("allowWatchBookmarks"))
        bm = max(sent.values())
        mark = api2.mark()
        api2.drop_watches("fin")   # not RST: a reset may discard the bookmark before the client reads it
        w = api2.wait_request(lambda r: r["watch"], since=mark, timeout=5)
        expect(w is not None, "no re-watch")
        expect(w["query"].get("resourceVersion") == str(bm), "re-watch from %r, bookmark %d" %
               (w["query"].get("resourceVersion"), bm))

    with ctx.case("label: 410 then the continue token expires mid-relist (410 on page 3): the list restarts "
                  "from scratch and completes"):
        api2.wait_watches(1, timeout=5)
        m0 = metrics(label_px)
        mark = api2.mark()
        expired = []

        def expire_on_page(page, rec):
            if rec["query"].get("continue") and page >= 2 and not expired:
                expired.append(rec["i"])
                api2.add_pod("team-x", "unselected-2", "10.43.0.31", labels={})   # move the RV past the snapshot
                api2.compact()
        api2.on_list_page = expire_on_page
        api2.pause()
        try:
            api2.drop_watches("rst")
            api2.delete_pod("team-a", "l-std")
            add(api2, "team-a", "l-new", "10.43.0.16", labels={TIER_LABEL: "trusted"})
            api2.compact()
        finally:
            api2.resume()
        expect_tier(label_px, "10.43.0.16", "trusted", timeout=15)
        expect_tier(label_px, "10.43.0.11", "quarantine")
        expect_tier(label_px, bulk_ip(1199), "trusted")
        reqs = api2.requests(since=mark)
        gone = [r for r in reqs if is_list(r) and r["status"] == 410]
        expect(expired and gone and gone[0]["query"].get("continue"),
               "no 410 on a continue request: %s" % describe_reqs(reqs, 20))
        fresh = [r for r in reqs if is_list(r) and not r["query"].get("continue") and r["i"] > gone[0]["i"]]
        expect(fresh, "no fresh list after the expired continue token: %s" % describe_reqs(reqs, 20))
        m = wait_metric(label_px, lambda x: x["portcullis_kube_synced"] == 1 and
                        x["portcullis_kube_relists_total"] > m0["portcullis_kube_relists_total"])
        expect(m["portcullis_kube_relists_total"] > m0["portcullis_kube_relists_total"], "relists unchanged")
        api2.on_list_page = None

    with ctx.case("label: watch_timeout 10s: timeoutSeconds=10; the server ends the watch cleanly, the client "
                  "re-watches from its last RV without relisting, no watch error counted"):
        ws = [r for r in api2.requests() if r["watch"]]
        expect(all(r["query"].get("timeoutSeconds") == "10" for r in ws),
               "timeoutSeconds %s" % sorted({r["query"].get("timeoutSeconds") for r in ws}))
        cur = fresh_watch(api2)
        expect(cur, "no live watch")
        add(api2, "team-t", "t-1", "10.43.0.17", labels={TIER_LABEL: "standard"})   # one event on this stream
        expect_tier(label_px, "10.43.0.17", "standard")
        m0 = metrics(label_px)
        mark = api2.mark()
        # the stream ends by itself within its timeoutSeconds (<= 10 s from its start)
        nxt = api2.wait_request(lambda r: r["watch"], since=mark, timeout=15)
        expect(nxt is not None, "no re-watch within 15s")
        ended = [w for w in api2.watches() if w["id"] == cur["id"]][0]
        expect(ended["ended"] == "timeout", "the stream ended %r, not by its timeout" % ended["ended"])
        expect(nxt["query"].get("resourceVersion") == resume_rv(ended),
               "re-watch from %r, the stream's last RV was %s" % (nxt["query"].get("resourceVersion"),
                                                                 resume_rv(ended)))
        expect(not [r for r in api2.requests(since=mark) if is_list(r)], "relisted after a clean end")
        m = metrics(label_px)
        expect(m["portcullis_kube_watch_errors_total"] == m0["portcullis_kube_watch_errors_total"] and
               m["portcullis_kube_relists_total"] == m0["portcullis_kube_relists_total"],
               "watch_errors +%s relists +%s after a clean end" % (
                   m["portcullis_kube_watch_errors_total"] - m0["portcullis_kube_watch_errors_total"],
                   m["portcullis_kube_relists_total"] - m0["portcullis_kube_relists_total"]))

    # ================================================================ not synced
    TOKEN_U = "unsynced-token"
    tok_u = token_file("unsynced", TOKEN_U)
    pki_u = kubeapi.make_pki(os.path.join(kdir, "u"), API_UNSYNCED[0], "unsynced")
    unsynced_px = started(kube_proxy(ctx, "unsynced", 2, "https://%s:%d" % API_UNSYNCED,
                                     {"namespaces": {"runners-u": "standard"}, "backoff_max": "1s"},
                                     pki=pki_u, token_file=tok_u))

    with ctx.case("unsynced: the daemon starts and serves while the API server is unreachable"):
        expect(unsynced_px.start_error is None, unsynced_px.start_error or "")

    with ctx.case("unsynced: unreachable -> /readyz 503, kube_synced 0, watch errors counted (retrying)"):
        m = wait_metric(unsynced_px, lambda x: x["portcullis_kube_watch_errors_total"] >= 2, timeout=8)
        expect(m["portcullis_kube_watch_errors_total"] >= 2, "watch_errors %s after 8s: not retrying?" %
               m["portcullis_kube_watch_errors_total"])
        expect(readyz(unsynced_px) == 503, "/readyz %s" % readyz(unsynced_px))
        expect(m["portcullis_kube_synced"] == 0, "synced %s" % m["portcullis_kube_synced"])

    with ctx.case("unsynced: a static CIDR works (10.45.200.5 -> static); a pod IP -> 403 unknown_source"):
        expect_still(unsynced_px, "10.45.200.5", "static")
        expect_still(unsynced_px, "10.45.0.11", UNKNOWN)

    api3 = new_api(API_UNSYNCED, TOKEN_U, pki_=pki_u)
    add(api3, "runners-u", "u1", "10.45.0.11")
    api3.fail_next(None, 500)

    with ctx.case("unsynced: API server answering 500 -> still 503 after several tries, pod unknown"):
        got = harness.wait_until(lambda: len(api3.requests(lambda r: r["status"] == 500)) >= 3, 10)
        expect(got, "fewer than 3 requests answered 500 in 10s: %s" % describe_reqs(api3.requests()))
        expect(readyz(unsynced_px) == 503, "/readyz %s" % readyz(unsynced_px))
        expect_still(unsynced_px, "10.45.0.11", UNKNOWN)
        expect_still(unsynced_px, "10.45.200.5", "static")

    with ctx.case("unsynced: once the API server works -> /readyz 200, synced 1, the pod maps"):
        api3.clear_failures()
        expect(wait_ready(unsynced_px, 200, 10), "/readyz %s 10s after the API server recovered" %
               readyz(unsynced_px))
        expect_tier(unsynced_px, "10.45.0.11", "standard", pod=("runners-u", "u1"))
        m = metrics(unsynced_px)
        expect(m["portcullis_kube_synced"] == 1 and m["portcullis_kube_pods"] == 1,
               "synced %s pods %s" % (m["portcullis_kube_synced"], m["portcullis_kube_pods"]))

    # ================================================================ auth
    pki_a = kubeapi.make_pki(os.path.join(kdir, "a"), API_AUTH[0], "auth")
    api4 = new_api(API_AUTH, "right-token", pki_=pki_a)
    add(api4, "runners-x", "x1", "10.46.0.11")
    tok_a = token_file("auth", "wrong-token")
    auth_px = started(kube_proxy(ctx, "auth", 3, api4.url, {"namespaces": {"runners-x": "trusted"}, "backoff_max": "1s"},
                                 pki=pki_a, token_file=tok_a))

    with ctx.case("auth: wrong token -> 401 (retried) -> /readyz 503, pod unknown"):
        got = harness.wait_until(lambda: len(api4.requests(lambda r: r["status"] == 401)) >= 2, 10)
        expect(got, "fewer than two 401s in 10s: %s" % describe_reqs(api4.requests()))
        expect(all(r["token"] == "wrong-token" for r in api4.requests()), "tokens sent: %s" %
               {r["token"] for r in api4.requests()})
        expect(readyz(auth_px) == 503, "/readyz %s" % readyz(auth_px))
        expect_still(auth_px, "10.46.0.11", UNKNOWN)
        m = metrics(auth_px)
        expect(m["portcullis_kube_synced"] == 0, "synced %s" % m["portcullis_kube_synced"])

    with ctx.case("auth: token file rewritten -> the new token is used, /readyz 200, the pod maps"):
        write_atomic(tok_a, "right-token")
        expect(wait_ready(auth_px, 200, 10), "/readyz %s 10s after the token was fixed (tokens sent: %s)" %
               (readyz(auth_px), [r["token"] for r in api4.requests()][-4:]))
        expect_tier(auth_px, "10.46.0.11", "trusted")

    with ctx.case("auth: a token file ending in a newline (echo token > file) is sent without it"):
        api4.set_tokens("right-token-2")
        write_atomic(tok_a, "right-token-2\n")
        mark = api4.mark()
        api4.drop_watches("rst")
        add(api4, "runners-x", "x2", "10.46.0.12")
        expect_tier(auth_px, "10.46.0.12", "trusted", timeout=8)
        reqs = api4.requests(since=mark)
        expect(reqs and all(r["auth"] == "ok" for r in reqs),
               "requests after the rewrite: %s" % [(r["status"], r["token"]) for r in reqs])

    # ================================================================ TLS
    pki_t = kubeapi.make_pki(os.path.join(kdir, "t"), API_TLS[0], "tlsgood")
    rogue_ca = kubeapi.make_ca(os.path.join(kdir, "t"), "rogue")
    rogue = kubeapi.make_server_cert(os.path.join(kdir, "t"), rogue_ca, "rogue-apiserver", ips=[API_TLS[0]])
    no_ip = kubeapi.make_server_cert(os.path.join(kdir, "t"), pki_t, "noip-apiserver", ips=[],
                                     dns=["kubernetes.default.svc"])
    api5 = new_api(API_TLS, "tls-token", pki_=pki_t)
    api5.set_cert(rogue["cert"], rogue["key"])
    add(api5, "runners-t", "t1", "10.47.0.11")
    tls_px = started(kube_proxy(ctx, "tls", 4, api5.url, {"namespaces": {"runners-t": "standard"}, "backoff_max": "1s"},
                                pki=pki_t, token_file=token_file("tls", "tls-token")))

    with ctx.case("tls: server cert from another CA -> handshake refused (retried), no request sent, "
                  "/readyz 503, nothing mapped"):
        got = harness.wait_until(lambda: len(api5.tls_failures()) >= 2, 10)
        expect(got, "fewer than 2 refused handshakes in 10s: %s" % api5.tls_log[-3:])
        expect(not api5.requests(), "requests sent over an untrusted connection: %s" % describe_reqs(api5.requests()))
        expect(readyz(tls_px) == 503, "/readyz %s" % readyz(tls_px))
        expect_still(tls_px, "10.47.0.11", UNKNOWN)

    with ctx.case("tls: right CA but no IP subjectAltName for %s -> refused, no request" % API_TLS[0]):
        n0 = len(api5.tls_log)
        api5.set_cert(no_ip["cert"], no_ip["key"])
        got = harness.wait_until(lambda: len(api5.tls_failures(n0)) >= 2, 10)
        expect(got, "fewer than 2 refused handshakes in 10s: %s" % api5.tls_log[n0:][-3:])
        expect(not api5.requests(), "requests sent to a server whose cert lacks its IP: %s" %
               describe_reqs(api5.requests()))
        expect(readyz(tls_px) == 503, "/readyz %s" % readyz(tls_px))

    with ctx.case("tls: the right certificate -> synced, the pod maps"):
        api5.set_cert(pki_t["cert"], pki_t["key"])
        expect(wait_ready(tls_px, 200, 10), "/readyz %s" % readyz(tls_px))
        expect_tier(tls_px, "10.47.0.11", "standard")

    # ================================================================ in-cluster defaults
    api6 = new_api(API_INCLUSTER, "sa-token-xyz")
    add(api6, "runners-c", "c1", "10.48.0.11", labels={"app": "ic"})
    incluster_px = None
    with ctx.case("incluster: service-account files mounted at %s in this mount namespace" % SA_DIR):
        mount_serviceaccount(ctx, "sa-token-xyz", pki["ca"])
        expect(open(os.path.join(SA_DIR, "token")).read().strip() == "sa-token-xyz", "token not readable")
        os.environ["KUBERNETES_SERVICE_HOST"] = API_INCLUSTER[0]
        os.environ["KUBERNETES_SERVICE_PORT"] = str(API_INCLUSTER[1])
        try:
            incluster_px = started(kube_proxy(ctx, "incluster", 5, None,
                                              {"namespaces": {"runners-c": "trusted"}, "backoff_max": "1s"}))
        finally:
            del os.environ["KUBERNETES_SERVICE_HOST"]
            del os.environ["KUBERNETES_SERVICE_PORT"]
        expect(incluster_px.start_error is None, incluster_px.start_error or "")

    with ctx.case("incluster: KUBERNETES_SERVICE_HOST/PORT + default token and CA paths -> synced, pod maps"):
        expect(incluster_px is not None, "not started")
        expect("api_server" not in incluster_px.policy["identity"]["kubernetes"], "policy sets api_server")
        expect(wait_ready(incluster_px, 200, 10), "/readyz %s; requests %s" % (readyz(incluster_px),
                                                                               describe_reqs(api6.requests())))
        expect(api6.requests() and all(r["token"] == "sa-token-xyz" for r in api6.requests()),
               "tokens %s" % {r["token"] for r in api6.requests()})
        expect_tier(incluster_px, "10.48.0.11", "trusted", pod=("runners-c", "c1"))

    # ================================================================ max_pods overflow
    tiers_full = copy.deepcopy(TIERS)
    tiers_full["static"]["sources"] = TIERS["static"]["sources"] + ["10.49.200.0/24"]
    api_f = new_api(API_FULL, "full-token")
    # listed in key order: f1..f3 fit (max_pods 3), f4 and f5 (inside the static CIDR) are left out
    FULL_PODS = [("f1", "10.49.0.11"), ("f2", "10.49.0.12"), ("f3", "10.49.0.13"), ("f4", "10.49.0.14"),
                 ("f5", "10.49.200.7")]
    for name, ip in FULL_PODS:
        add(api_f, "runners-f", name, ip)
    full_px = started(kube_proxy(ctx, "full", 6, api_f.url, {
        "namespaces": {"runners-f": "standard"}, "max_pods": 3, "watch_timeout": "10s", "backoff_max": "1s"},
        tiers=tiers_full, pki=pki, token_file=token_file("full", "full-token")))

    def full_503():
        st, body = admin_get(full_px, "/readyz")
        return st == 503 and b"kubernetes pod map full" in body

    with ctx.case("full: 5 pods, max_pods 3 -> an error is logged, /readyz 503 'kubernetes pod map full', "
                  "kube_pods 3 (synced 1: listed, but not everything fits)"):
        expect(full_px.start_error is None, full_px.start_error or "")
        ok = harness.wait_until(full_503, 10, 0.1)
        st, body = admin_get(full_px, "/readyz")
        expect(ok, "/readyz %s %r 10s after start, want 503 'kubernetes pod map full'; requests %s" %
               (st, body[:120], describe_reqs(api_f.requests())))
        errs = logged(log_since(full_px, 0), "error", "pod map full")
        expect(errs, "no error-level log line about the full pod map")
        m = metrics(full_px)
        expect(m["portcullis_kube_pods"] == 3 and m["portcullis_kube_synced"] == 1,
               "pods %s synced %s" % (m["portcullis_kube_pods"], m["portcullis_kube_synced"]))

    with ctx.case("full: the pods in the map keep their tier (f1..f3 standard); the two left out "
                  "(f4, and f5 inside a static CIDR) -> 403 unknown_source"):
        for name, ip in FULL_PODS[:3]:
            expect_still(full_px, ip, "standard", pod=("runners-f", name))
        for name, ip in FULL_PODS[3:]:
            s = expect_still(full_px, ip, UNKNOWN, what="%s: " % name)
            harness.check_denied_record(s.rec, "unknown_source", 403)

    with ctx.case("full: an address the map does not hold inside a static CIDR (10.49.200.5) -> 403 "
                  "unknown_source, not the static tier (it may be a pod left out)"):
        s = expect_still(full_px, "10.49.200.5", UNKNOWN)
        harness.check_denied_record(s.rec, "unknown_source", 403)
        expect(get(s.rec, "orchestrator") is None, "orchestrator %r" % get(s.rec, "orchestrator"))

    with ctx.case("full: f1, f2 deleted (3 pods now fit): still full until a relist; the watch ends at its "
                  "timeoutSeconds (10 s), the client relists -> 'fits again' logged, /readyz 200, "
                  "static fallback back (10.49.200.5 -> static), f4 and f5 map"):
        m0 = metrics(full_px)
        lm = log_mark(full_px)
        mark = api_f.mark()
        api_f.delete_pod("runners-f", "f1")
        api_f.delete_pod("runners-f", "f2")
        expect_tier(full_px, "10.49.0.12", UNKNOWN, what="barrier (DELETED f2 applied): ")
        st, body = admin_get(full_px, "/readyz")
        if not [r for r in api_f.requests(since=mark) if is_list(r)]:
            # no list had even started when /readyz answered: the deletions alone must not clear it
            expect(st == 503 and b"pod map full" in body, "/readyz %s %r after the deletions, before any "
                   "relist: the overflow cleared without a list that fits" % (st, body[:120]))
        t0 = time.monotonic()
        ok = wait_ready(full_px, 200, 16)
        expect(ok, "/readyz %s %r 16s after the deletions (watch_timeout 10s); requests %s" % (
            *admin_get(full_px, "/readyz"), describe_reqs(api_f.requests(since=mark), 10)))
        print("# full: /readyz 200 %.1fs after the deletions" % (time.monotonic() - t0), flush=True)
        reqs = api_f.requests(since=mark)
        lists = [r for r in reqs if is_list(r) and not r["query"].get("continue")]
        expect(lists, "ready again without a relist: %s" % describe_reqs(reqs))
        expect(not [r for r in reqs if r["status"] not in (200, None)], "a failed request (the relist must come from "
               "the clean end of the watch, not a 410): %s" % describe_reqs(reqs))
        before = [r for r in api_f.requests() if r["watch"] and r["i"] < lists[0]["i"]]
        info = [w for w in api_f.watches() if before and w["id"] == before[-1].get("watch_id")]
        expect(info and info[0]["ended"] == "timeout", "the watch before the relist ended %r, not at its "
               "timeoutSeconds" % (info and info[0]["ended"]))
        expect(logged(log_since(full_px, lm), "info", "fits again"), "no info log line 'pod map fits again'")
        s = expect_still(full_px, "10.49.200.5", "static")
        expect(get(s.rec, "orchestrator") is None, "orchestrator %r" % get(s.rec, "orchestrator"))
        expect_still(full_px, "10.49.0.14", "standard", pod=("runners-f", "f4"))
        expect_still(full_px, "10.49.200.7", "standard", pod=("runners-f", "f5"))
        m = metrics(full_px)
        expect(m["portcullis_kube_pods"] == 3, "kube_pods %s, want 3" % m["portcullis_kube_pods"])
        expect(m["portcullis_kube_relists_total"] > m0["portcullis_kube_relists_total"], "relists unchanged")

    with ctx.case("full: an ADDED beyond max_pods on the watch -> full again (/readyz 503 'pod map full'); "
                  "the new pod and 10.49.200.5 -> unknown_source, f3 stays standard"):
        add(api_f, "runners-f", "f6", "10.49.0.16")
        ok = harness.wait_until(full_503, 5, 0.1)
        expect(ok, "/readyz %s %r 5s after a 4th pod was added" % admin_get(full_px, "/readyz"))
        expect_still(full_px, "10.49.0.16", UNKNOWN)
        expect_still(full_px, "10.49.200.5", UNKNOWN)
        expect_still(full_px, "10.49.0.13", "standard", pod=("runners-f", "f3"))

    # ================================================================ reload
    api_r = new_api(API_RELOAD, "reload-token")
    # labelled as the tier_label case would read it: were that policy applied, r1 would turn trusted
    add(api_r, "runners-r", "r1", "10.50.0.11", labels={TIER_LABEL: "trusted"})
    reload_px = kube_proxy(ctx, "reload", 7, api_r.url, {"namespaces": {"runners-r": "standard"},
                                                          "backoff_max": "1s"},
                           pki=pki, token_file=token_file("reload", "reload-token"))
    reload_real = linked_policy(ctx, reload_px)
    started(reload_px)

    with ctx.case("reload: synced, r1 (runners-r) -> standard, reloads 0/0"):
        expect(reload_px.start_error is None, reload_px.start_error or "")
        expect(wait_ready(reload_px, 200, 10), "/readyz %s" % readyz(reload_px))
        expect_tier(reload_px, "10.50.0.11", "standard", pod=("runners-r", "r1"))
        expect(reload_counts(reload_px) == (0, 0), "reloads %s" % (reload_counts(reload_px),))

    with ctx.case("reload: SIGHUP with identity.kubernetes removed -> refused (failure +1, success +0, error "
                  "'refused' logged); r1 keeps its tier, the watch keeps mapping new pods"):
        pol = copy.deepcopy(reload_px.policy)
        del pol["identity"]["kubernetes"]
        lines = sighup_reload(ctx, reload_px, reload_real, pol, (0, 1), "reload-nokube")
        expect(logged(lines, "error", "refused"), "no error log line saying the reload was refused: %s" %
               [x.get("message") for x in lines][:3])
        expect_still(reload_px, "10.50.0.11", "standard", pod=("runners-r", "r1"))
        add(api_r, "runners-r", "r2", "10.50.0.12")
        expect_tier(reload_px, "10.50.0.12", "standard", pod=("runners-r", "r2"))
        expect(readyz(reload_px) == 200, "/readyz %s" % readyz(reload_px))

    with ctx.case("reload: SIGHUP switching to tier_label mode (tier_label %s, no namespaces) -> refused; "
                  "r1 (labelled trusted) stays standard" % TIER_LABEL):
        pol = copy.deepcopy(reload_px.policy)
        k = pol["identity"]["kubernetes"]
        del k["namespaces"]
        k["tier_label"] = TIER_LABEL
        lines = sighup_reload(ctx, reload_px, reload_real, pol, (0, 1), "reload-label")
        expect(logged(lines, "error", "refused"), "no error log line saying the reload was refused")
        expect_still(reload_px, "10.50.0.11", "standard", pod=("runners-r", "r1"))

    with ctx.case("reload: SIGHUP changing only runners-r's tier (standard -> trusted) -> applied "
                  "(success +1, failure +0); r1's and r2's next connections -> trusted"):
        pol = copy.deepcopy(reload_px.policy)
        pol["identity"]["kubernetes"]["namespaces"]["runners-r"] = "trusted"
        sighup_reload(ctx, reload_px, reload_real, pol, (1, 0), "reload-nstier")
        expect_tier(reload_px, "10.50.0.11", "trusted", pod=("runners-r", "r1"))
        expect_tier(reload_px, "10.50.0.12", "trusted", pod=("runners-r", "r2"))

    # ================================================================ robust
    api_h = new_api(API_ROBUST, "robust-token")
    LONG_KEY = "k:{\"name\":\"%s\"}" % ("x" * 1100)

    def long_key(pod):
        pod["metadata"]["managedFields"].append(
            {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
             "time": pod["metadata"]["creationTimestamp"], "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:containers": {LONG_KEY: {".": {}, "f:name": {}}}}}})

    add(api_h, "team-h", "h-a", "10.51.0.11", labels={TIER_LABEL: "standard"})
    add(api_h, "team-h", "h-long", "10.51.0.12", labels={TIER_LABEL: "trusted"}, fn=long_key)
    add(api_h, "team-h", "h-z", "10.51.0.13", labels={TIER_LABEL: "standard"})
    robust_px = kube_proxy(ctx, "robust", 8, api_h.url, {"tier_label": TIER_LABEL, "backoff_max": "1s"},
                           pki=pki, token_file=token_file("robust", "robust-token"))
    robust_real = linked_policy(ctx, robust_px)
    started(robust_px)

    with ctx.case("robust: one list page holding a pod whose managedFields has a 1100-character key, "
                  "between two normal pods -> synced, all three map (h-long -> trusted)"):
        expect(robust_px.start_error is None, robust_px.start_error or "")
        expect(wait_ready(robust_px, 200, 10), "/readyz %s; requests %s" % (readyz(robust_px),
                                                                            describe_reqs(api_h.requests())))
        lists = [r for r in api_h.requests() if is_list(r) and r["status"] == 200]
        expect(lists and lists[0]["items"] == 3 and not lists[0]["continue_out"],
               "the first list was not one page of 3 pods: %s" % describe_reqs(lists))
        mfs = api_h.pod("team-h", "h-long")["metadata"]["managedFields"]
        expect(any(LONG_KEY in (mf.get("fieldsV1") or {}).get("f:spec", {}).get("f:containers", {}) for mf in mfs),
               "the pod lacks the long key")
        expect_tier(robust_px, "10.51.0.11", "standard", pod=("team-h", "h-a"))
        expect_tier(robust_px, "10.51.0.12", "trusted", pod=("team-h", "h-long"))
        expect_tier(robust_px, "10.51.0.13", "standard", pod=("team-h", "h-z"))
        m = metrics(robust_px)
        expect(m["portcullis_kube_pods"] == 3, "kube_pods %s" % m["portcullis_kube_pods"])

    with ctx.case("robust: a watch event (MODIFIED) carrying such a key applies too (h-a -> trusted)"):
        api_h.modify_pod("team-h", "h-a", labels={TIER_LABEL: "trusted"}, fn=long_key)
        expect_tier(robust_px, "10.51.0.11", "trusted", pod=("team-h", "h-a"))

    WINDOW, MAX_REQS = 4.0, 12

    def in_window(mark, first):
        """The requests from first on for WINDOW seconds (waits until the window has passed)."""
        time.sleep(max(0.0, first["t"] + WINDOW - time.time()))
        return [r for r in api_h.requests(since=mark) if first["t"] <= r["t"] < first["t"] + WINDOW]

    def recover(name, ip):
        api_h.set_watch_mode(None)
        add(api_h, "team-h", name, ip, labels={TIER_LABEL: "standard"})
        expect_tier(robust_px, ip, "standard", timeout=10, what="after the server behaves again: ")

    with ctx.case("robust: every watch answered HTTP 410 after a good list: the client backs off "
                  "(lists in %.0f s: >= 2 and <= %d with backoff_max 1s)" % (WINDOW, MAX_REQS)):
        expect(api_h.wait_watches(1, timeout=5), "no live watch")
        mark = api_h.mark()
        api_h.set_watch_mode("gone")
        api_h.drop_watches("rst")
        first = api_h.wait_request(lambda r: r["watch"] and r["status"] == 410, since=mark, timeout=5)
        expect(first, "no watch answered 410: %s" % describe_reqs(api_h.requests(since=mark)))
        reqs = in_window(mark, first)
        lists = [r for r in reqs if is_list(r)]
        gone = [r for r in reqs if r["watch"] and r["status"] == 410]
        print("# robust: HTTP 410 on every watch: %d lists, %d watches (410) in %.0f s" %
              (len(lists), len(gone), WINDOW), flush=True)
        expect(lists and all(r["status"] == 200 for r in lists), "lists failed: %s" % describe_reqs(lists))
        expect(2 <= len(lists) <= MAX_REQS, "%d lists in %.0f s: %s" % (len(lists), WINDOW, describe_reqs(reqs)))

    with ctx.case("robust: every watch answered 200 + ERROR event 410 after a good list: lists in %.0f s "
                  ">= 2 and <= %d (the backoff is not reset by the successful list)" % (WINDOW, MAX_REQS)):
        mark = api_h.mark()
        api_h.set_watch_mode("expired")
        first = api_h.wait_request(lambda r: r["watch"] and r["watch_mode"] == "expired", since=mark, timeout=5)
        expect(first, "no watch in mode expired: %s" % describe_reqs(api_h.requests(since=mark)))
        reqs = in_window(mark, first)
        lists = [r for r in reqs if is_list(r)]
        print("# robust: ERROR 410 on every watch: %d lists, %d watches in %.0f s" %
              (len(lists), len([r for r in reqs if r["watch"]]), WINDOW), flush=True)
        expect(2 <= len(lists) <= MAX_REQS, "%d lists in %.0f s: %s" % (len(lists), WINDOW, describe_reqs(reqs)))

    with ctx.case("robust: the server lists and watches normally again -> a new pod maps (<= 10 s)"):
        recover("h-rec1", "10.51.0.14")

    with ctx.case("robust: every watch gets one BOOKMARK then ends cleanly at once: re-watches in %.0f s "
                  ">= 2 and <= %d, no relist" % (WINDOW, MAX_REQS)):
        expect(api_h.wait_watches(1, timeout=5), "no live watch")
        mark = api_h.mark()
        api_h.set_watch_mode("bookmark-end")
        api_h.drop_watches("fin")
        first = api_h.wait_request(lambda r: r["watch"] and r["watch_mode"] == "bookmark-end", since=mark,
                                   timeout=5)
        expect(first, "no watch in mode bookmark-end: %s" % describe_reqs(api_h.requests(since=mark)))
        reqs = in_window(mark, first)
        ws = [r for r in reqs if r["watch"]]
        print("# robust: one BOOKMARK then the end on every watch: %d watches in %.0f s" % (len(ws), WINDOW),
              flush=True)
        got_bm = [w for w in api_h.watches() if w["id"] in {r.get("watch_id") for r in ws} and w["bookmarks_sent"]]
        expect(got_bm, "no watch in the window delivered its bookmark (the case needs one event per stream)")
        expect(2 <= len(ws) <= MAX_REQS, "%d watches in %.0f s: %s" % (len(ws), WINDOW, describe_reqs(reqs)))
        expect(not [r for r in reqs if is_list(r)], "relisted after clean ends: %s" % describe_reqs(reqs))

    with ctx.case("robust: watches behave again -> a new pod maps (<= 10 s)"):
        recover("h-rec2", "10.51.0.15")

    with ctx.case("robust: SIGHUP changing tier_label to another key -> refused (failure +1); pods keep their "
                  "tiers"):
        pol = copy.deepcopy(robust_px.policy)
        pol["identity"]["kubernetes"]["tier_label"] = "platform.example.com/other-tier"
        lines = sighup_reload(ctx, robust_px, robust_real, pol, (0, 1), "robust-label")
        expect(logged(lines, "error", "refused"), "no error log line saying the reload was refused")
        expect_still(robust_px, "10.51.0.12", "trusted", pod=("team-h", "h-long"))
        expect_still(robust_px, "10.51.0.13", "standard", pod=("team-h", "h-z"))

    # ================================================================ stale (end)
    with ctx.case("stale: no list or watch progress for max(2 x backoff_max, 60 s) -> /readyz 503 "
                  "'kubernetes pod map not synced', after ~60 s (ready until then), kube_synced 0"):
        t0, log = STALE.get("t0"), STALE["log"]
        expect(t0 is not None, "needs the result of the first stale case, which failed")
        harness.wait_until(lambda: any(st == 503 for _, st, _ in log), max(0.0, t0 + 80 - time.monotonic()), 0.5)
        snap = list(log)
        first = next(((t, b) for t, st, b in snap if st == 503), None)
        expect(first is not None, "/readyz never 503 in %.0f s without progress; last samples %s" % (
            time.monotonic() - t0, [(round(t - t0), st) for t, st, _ in snap[-3:]]))
        dt = first[0] - t0
        print("# stale: /readyz 503 %.1f s after the API server started failing" % dt, flush=True)
        early = [(round(t - t0, 1), st, b[:60]) for t, st, b in snap if t < first[0] and st not in (200, None)]
        n200 = len([1 for t, st, _ in snap if t < first[0] and st == 200])
        expect(not early and n200 >= 30, "before the first 503: %d samples 200, others %s" % (n200, early[:3]))
        expect(b"kubernetes pod map not synced" in first[1], "503 body %r" % first[1][:120])
        expect(50.0 <= dt <= 75.0, "not ready %.1f s after the outage began, want 60-65 s (stale after "
               "max(2 x 1 s, 60 s), checked every 5 s)" % dt)
        n500 = len(api_st.requests(lambda r: r["status"] == 500, since=STALE["mark"]))
        expect(n500 >= 10, "only %d requests answered 500: the client stopped retrying?" % n500)
        expect(metrics(stale_px)["portcullis_kube_synced"] == 0, "kube_synced not 0")
        expect(logged(log_since(stale_px, 0), "error", "out of date"), "no error log line 'pod map out of date'")

    with ctx.case("stale: the API server answers again -> /readyz 200 (<= 10 s), the pod still maps"):
        if STALE.get("stop") is not None:
            STALE["stop"].set()
        api_st.clear_failures()
        expect(wait_ready(stale_px, 200, 10), "/readyz %s %r 10 s after the API server recovered" %
               admin_get(stale_px, "/readyz"))
        expect_tier(stale_px, "10.52.0.11", "standard", pod=("runners-z", "z1"))

    # ================================================================ wrap-up
    with ctx.case("every /metrics exposition scraped passes promcheck"):
        probs = []
        for where, body in SCRAPES:
            fams, p = promcheck.check(body)
            probs += ["%s: %s" % (where, x) for x in p + promcheck.conventions(fams)]
        expect(SCRAPES, "no scrape")
        expect(not probs, "; ".join(probs[:5]))

    with ctx.case("stand-in API servers: no request carried a wrong path or failed auth unexpectedly"):
        odd = []
        for a in apis:
            for r in a.requests():
                if r["status"] in (404, 405, 400):
                    odd.append("%s %s -> %s" % (a.url, r["target"][:120], r["status"]))
        expect(not odd, "; ".join(odd[:5]))

    ctx.final_checks([p.audit for p in ctx.proxies if p.proc is not None])
