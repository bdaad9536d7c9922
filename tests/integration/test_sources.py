#!/usr/bin/python3
"""Scenario: what one source is, for every per-source limit, and a full source table.

- A source that owns many IPv6 addresses is one source: by default every
  address of a /64 counts against the same caps.connections_per_source and
  caps.upload_bytes_per_source, so a job cannot multiply its limits by the
  number of addresses it uses; another /64 is another source.
- identity.ipv6_source_prefix: 128 counts each address on its own.
- Sources of two tiers in one /64 are counted apart; so are two pods of the
  Kubernetes map in one /64, while one pod is one source over all its
  addresses (IPv4 and IPv6).
- limits.max_sources bounds the per-source table. A full table is not a
  refusal for everyone: a new source takes the place of one without an open
  connection (its budget record is dropped, counted in
  portcullis_source_table_evictions_total); only when every tracked source
  holds a connection is the new one refused, 503 source_table_full with
  Retry-After and an audit record, while the tracked sources go on working.
"""
import os
import random
import re
import sys
import time
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import kubeapi  # noqa: E402
from harness import expect  # noqa: E402

V4 = "198.51.100.10"
T = "allowed.example:8080"
S = "allowed.example:8081"   # the budget's sinks only: no earlier tunnel's accept to count
NET1 = ["2001:db8:1::%x" % i for i in range(1, 10)]   # one /64
NET2 = "2001:db8:2::1"                                 # another /64
NET3 = ["2001:db8:3::%x" % i for i in range(1, 4)]    # the budget test's /64
SPLIT = ["2001:db8:5::1", "2001:db8:5::2"]             # one /64, two tiers
PODS6 = ["2001:db8:7::1", "2001:db8:7::2", "2001:db8:7::3"]   # three pods' addresses, one /64
POD3_V4 = "10.77.0.3"                                  # the third pod's IPv4 address
API = ("10.96.0.7", 6443)
PER_SOURCE = 3
BUDGET = 20000
SMALL_TABLE = 4

ctx = harness.start(__file__, v4=[V4, POD3_V4, API[0]], v6=NET1 + [NET2] + NET3 + SPLIT + PODS6)
with ctx:
    ups = harness.Upstreams(ctx, [{"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"},
                                  {"name": "sink8081", "host": V4, "port": 8081, "kind": "tcp"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])
    allow = [{"host": "allowed.example", "ports": [8080, 8081]}]
    six = {"sources": ["2001:db8:1::/48", "2001:db8:2::/48", "2001:db8:3::/48"], "allow": allow,
           "caps": {"connections_per_source": PER_SOURCE,
                    "upload_bytes_per_source": {"bytes": BUDGET, "window": "1h"}}}

    def listen(port, admin):
        return {"proxy": ["127.0.0.1:%d" % port, "[::1]:%d" % port], "admin": "127.0.0.1:%d" % admin,
                "workers": 2}

    one = {"connections_per_source": 1}
    px = harness.Proxy(ctx, "proxy", {
        "six": six,
        "split-a": {"sources": [SPLIT[0] + "/128"], "allow": allow, "caps": one},
        "split-b": {"sources": [SPLIT[1] + "/128"], "allow": allow, "caps": one},
    }, listen=listen(3128, 9090)).start()
    per_addr = harness.Proxy(ctx, "peraddr", {"six": dict(six, caps={"connections_per_source": 1})},
                             proxy_port=3129, admin_port=9091, listen=listen(3129, 9091),
                             identity={"ipv6_source_prefix": 128}).start()
    small = harness.Proxy(ctx, "small", {
        "t": {"sources": ["127.0.0.0/24"], "allow": allow,
              "caps": {"connections_per_source": 8,
                       "upload_bytes_per_source": {"bytes": 1000000, "window": "1h"}}},
    }, proxy_port=3130, admin_port=9092, limits={"max_sources": SMALL_TABLE}).start()

    open_tunnels = []

    def tunnel(src, proxy=px, target=T):
        r = harness.connect(target, src=src, proxy_port=proxy.port)
        expect(r.status == 200, "CONNECT %s from %s via %s: %s" % (target, src, proxy.name,
                                                                   r.describe()))
        open_tunnels.append(r)
        return r

    def close_all():
        while open_tunnels:
            open_tunnels.pop().close()

    def metric(proxy, name):
        port = int(proxy.policy["listen"]["admin"].rsplit(":", 1)[1])
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
        expect(m is not None, "%s: no sample %s" % (proxy.name, name))
        return int(m.group(1))

    def wait_metric(proxy, name, want, timeout=5.0):
        got = harness.wait_until(lambda: metric(proxy, name) == want, timeout)
        expect(got, "%s: %s is %d, want %d (waited %.0fs)" % (proxy.name, name, metric(proxy, name),
                                                               want, timeout))

    def sink(src, n, seed, proxy=px):
        """SINK n bytes through a new tunnel; returns what the upstream said."""
        data = random.Random(seed).randbytes(n)
        r = tunnel(src, proxy, S)
        r.sock.sendall(b"SINK %d\n" % n + data)
        line = harness.recv_line(r.sock, r.leftover, timeout=10)
        open_tunnels.remove(r)
        r.close()
        return line

    # ---------------------------------------------------------------- one /64, one source
    with ctx.case("caps.connections_per_source %d: three tunnels from three addresses of one /64 fill it; "
                  "the fourth address gets 429 source_connection_limit" % PER_SOURCE):
        mark = ups.mark("raw8080") + PER_SOURCE
        for a in NET1[:PER_SOURCE]:
            tunnel(a)
        # the upstream logs its accepts on its own thread: wait for the three
        harness.wait_until(lambda: ups.mark("raw8080") >= mark, 5)
        rep = harness.connect(T, src=NET1[PER_SOURCE])
        harness.expect_refusal(rep, 429, "source_connection_limit", audit=px.audit, ruleset="six")
        time.sleep(0.2)
        expect(ups.mark("raw8080") == mark, "the refused tunnel reached the upstream")

    with ctx.case("another /64 is another source: %s gets its tunnel meanwhile" % NET2):
        tunnel(NET2)

    with ctx.case("closing one tunnel of the /64 frees one slot for any of its addresses"):
        open_tunnels.pop(0).close()
        ok = harness.wait_until(lambda: (lambda r: r if r.status == 200 else r.close())(
            harness.connect(T, src=NET1[PER_SOURCE + 1])), 5, 0.2)
        expect(ok, "no slot for %s within 5s of closing a tunnel of its /64" % NET1[PER_SOURCE + 1])
        open_tunnels.append(ok)
    close_all()

    with ctx.case("caps.upload_bytes_per_source %d: three addresses of one /64 share one budget; "
                  "the upstream gets <= the budget, then 429 source_upload_budget" % BUDGET):
        mark = ups.mark("sink8081")   # 0: this case's sinks are the listener's first connections
        for i, a in enumerate(NET3):
            sink(a, 8000, 300 + i)   # the third crosses the budget and is cut
        rep = harness.connect(S, src=NET3[0])
        harness.expect_refusal(rep, 429, "source_upload_budget", audit=px.audit, ruleset="six")
        harness.wait_until(lambda: ups.mark("sink8081") >= mark + 3, 5)
        sess = ups.sessions_since("sink8081", mark, 5)
        total = sum(c["rx"] for _, c in sess if c is not None)
        expect(len(sess) == 3, "upstream saw %d connections, want 3" % len(sess))
        expect(0 < total <= BUDGET, "upstream received %d bytes from the /64, budget %d" % (total, BUDGET))

    with ctx.case("one /64 holding sources of two tiers counts them apart: each gets its one tunnel"):
        tunnel(SPLIT[0])
        tunnel(SPLIT[1])
        rep = harness.connect(T, src=SPLIT[0])
        harness.expect_refusal(rep, 429, "source_connection_limit", audit=px.audit, ruleset="split-a")
    close_all()

    with ctx.case("identity.ipv6_source_prefix: 128 counts every address on its own "
                  "(connections_per_source 1: two addresses of one /64 both get a tunnel, a second "
                  "from one of them 429)"):
        tunnel(NET1[0], per_addr)
        tunnel(NET1[1], per_addr)
        rep = harness.connect(T, src=NET1[0], proxy_port=per_addr.port)
        harness.expect_refusal(rep, 429, "source_connection_limit", audit=per_addr.audit, ruleset="six")
    close_all()

    # ---------------------------------------------------------------- pods
    pki = kubeapi.make_pki(ctx.path("kube"), API[0], "kube")
    api = kubeapi.KubeAPI(API[0], API[1], pki["cert"], pki["key"], token="sources-token")
    ctx.cleanups.append(api.stop)
    with open(ctx.path("kube.token"), "w") as f:
        f.write("sources-token")
    label = {"portcullis.dev/tier": "capped"}
    api.add_pod("ci", "p1", PODS6[0], labels=label)
    api.add_pod("ci", "p2", PODS6[1], labels=label)
    api.add_pod("ci", "p3", POD3_V4, ips=[POD3_V4, PODS6[2]], labels=label)
    kpx = harness.Proxy(ctx, "kube", {"capped": {"allow": allow, "caps": {"connections_per_source": 1}}},
                        proxy_port=3131, admin_port=9093, listen=listen(3131, 9093),
                        identity={"kubernetes": {"api_server": "https://%s:%d" % API,
                                                 "token_file": ctx.path("kube.token"),
                                                 "ca_file": pki["ca"],
                                                 "tier_label": "portcullis.dev/tier"}}).start()

    def kube_ready():
        try:
            return metric(kpx, "portcullis_kube_synced") == 1
        except OSError:
            return False

    with ctx.case("two pods in one /64 are two sources, one pod is one source over its IPv4 and IPv6 "
                  "addresses (connections_per_source 1)"):
        expect(harness.wait_until(kube_ready, 15), "the pod map did not sync in 15 s")
        tunnel(PODS6[0], kpx)
        tunnel(PODS6[1], kpx)     # the same /64, another pod: its own limit
        rep = harness.connect(T, src=PODS6[0], proxy_port=kpx.port)
        harness.expect_refusal(rep, 429, "source_connection_limit", audit=kpx.audit, ruleset="capped")
        tunnel(POD3_V4, kpx)
        rep = harness.connect(T, src=PODS6[2], proxy_port=kpx.port)   # the same pod over IPv6
        harness.expect_refusal(rep, 429, "source_connection_limit", audit=kpx.audit, ruleset="capped")
    close_all()

    # ---------------------------------------------------------------- a full table
    held = ["127.0.0.%d" % i for i in range(2, 2 + SMALL_TABLE)]
    with ctx.case("limits.max_sources %d, every tracked source holding a tunnel: a new source gets 503 "
                  "source_table_full with Retry-After and an audit record" % SMALL_TABLE):
        mark = ups.mark("raw8080") + SMALL_TABLE
        for a in held:
            tunnel(a, small)
        wait_metric(small, "portcullis_source_table_entries", SMALL_TABLE)
        harness.wait_until(lambda: ups.mark("raw8080") >= mark, 5)
        rep = harness.connect(T, src="127.0.0.20", proxy_port=small.port)
        harness.expect_refusal(rep, 503, "source_table_full", audit=small.audit)
        expect(rep.header("Retry-After") is not None, "503 without Retry-After (%r)" % rep.headers)
        time.sleep(0.2)
        expect(ups.mark("raw8080") == mark, "the refused tunnel reached the upstream")

    with ctx.case("a full table still serves the sources it tracks: %s gets a second tunnel" % held[0]):
        tunnel(held[0], small)

    with ctx.case("one source closing its only tunnel makes room: the new source gets in"):
        r = next(t for t in open_tunnels if t.sock.getsockname()[0] == held[-1])
        open_tunnels.remove(r)
        r.close()
        wait_metric(small, "portcullis_source_table_entries", SMALL_TABLE - 1)
        tunnel("127.0.0.20", small)
    close_all()
    wait_metric(small, "portcullis_source_table_entries", 0)

    idle = ["127.0.0.%d" % i for i in range(30, 30 + SMALL_TABLE)]
    with ctx.case("a table full of idle sources (budget windows running, no connection) is not a "
                  "refusal for everyone: a new source evicts one and gets its tunnel"):
        for i, a in enumerate(idle):
            line = sink(a, 1000 + 1000 * i, 400 + i, small)
            expect(line.startswith(b"SINK %d " % (1000 + 1000 * i)), "sink from %s: %r" % (a, line[:80]))
        wait_metric(small, "portcullis_source_table_entries", SMALL_TABLE)
        before = metric(small, "portcullis_source_table_evictions_total")
        for i in range(3):
            line = sink("127.0.0.%d" % (40 + i), 500, 500 + i, small)
            expect(line.startswith(b"SINK 500 "), "sink from a new source: %r" % line[:80])
        expect(metric(small, "portcullis_source_table_evictions_total") == before + 3,
               "evictions went from %d to %d, want +3" %
               (before, metric(small, "portcullis_source_table_evictions_total")))
        expect(metric(small, "portcullis_source_table_entries") <= SMALL_TABLE, "table over its size")

    for p in (px, per_addr, small, kpx):
        with ctx.case("%s: still running, no sanitizer report" % p.name):
            expect(p.alive(), "%s exited: %s" % (p.name, p.stderr_text()[-300:]))
            expect(not p.sanitizer_report(), p.sanitizer_report())
    ctx.final_checks([px.audit, per_addr.audit, small.audit, kpx.audit])
