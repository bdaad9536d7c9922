#!/usr/bin/python3
"""bench/phases.py: where a tunnel's CPU goes, by phase of the connection, from a perf profile.

    bench/phases.py OUT/perf-setup.data [--results OUT/results.jsonl --key setup --target portcullis]

Reads the call stacks `bench/run --profile KEY` recorded (perf record -e
cpu-clock --call-graph dwarf) and gives each sample to a phase: walking its
stack from the sampled frame towards the thread's root, the first function
that marks a phase wins, so kernel work lands in the phase whose system call
caused it (a connect's SYN and the loopback peer's SYN-ACK processing in
"connect", a send's delivery in "relay").  A sample whose stack reaches the
event loop without passing a marker is "event loop"; anything else is
"other".  With --results, each phase's share is also given in µs per tunnel
(the proxy's CPU for that measurement divided by the tunnels completed).

Inlined static functions are invisible to the walk, so the split is
approximate; it is for finding the largest phase, not for comparing builds
to a microsecond.
"""
import argparse
import json
import subprocess
import sys

# (phase, exact function names, name prefixes).  Order does not matter: the first
# frame (from the leaf) that matches any phase decides.
PHASES = [
    ("accept", {"evutil_accept4_", "accept4", "listener_read_cb", "conn_accept", "conn_start",
                "take_slot", "flow_id"}, ()),
    ("request head: read, parse, decide", {"read_early", "read_cb", "head_limits", "identify",
                                           "conn_admit", "decide"},
     ("http_parse", "policy_decide", "host_")),
    ("audit record: format, queue, write", {"conn_audit_reserve", "conn_audit", "submit",
                                            "conn_audit_raw", "writer_main", "build",
                                            "community_id_v1"},
     ("audit_", "jsonw_")),
    ("resolve (cache or c-ares)", {"resolved", "dns_lookup"}, ("dns_", "ares_", "ares__")),
    ("upstream connect: socket, connect", {"connect_next", "dial_enter", "resolving_enter"}, ()),
    ("connected: SO_ERROR, 200", {"connected", "connect_ready_cb", "write_through"}, ()),
    ("TLS first flight", {"hello_enter", "check_hello", "hello_read_cb", "check_server",
                          "server_read_cb", "server_hello_enter", "send_now", "pass_on"},
     ("tls_hello", "tls_server", "ja4")),
    ("relay: recv, send", {"pump", "deliver_cb", "relay_enter", "peek_first"}, ("relay_",)),
    ("close: shutdown, close, free", {"end", "settle", "conn_close", "conn_finish", "reap",
                                      "conn_free", "tcp_destroy"}, ()),
]
LOOP = {"event_base_loop", "event_process_active", "epoll_dispatch", "worker_main"}


def phase_of(frames):
    for fn in frames:
        for name, exact, prefixes in PHASES:
            if fn in exact or any(fn.startswith(p) for p in prefixes):
                return name
        if fn in LOOP:
            return "event loop: epoll_wait, epoll_ctl, timers"
    return "other"


def samples(path):
    p = subprocess.Popen(["perf", "script", "-i", path, "-F", "comm,ip,sym"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, errors="replace")
    frames = []
    for ln in p.stdout:
        s = ln.strip()
        if not s:
            if frames:
                yield frames
            frames = []
            continue
        if ln[0] not in " \t":
            continue   # the comm line that starts a sample
        parts = s.split(None, 1)   # address, symbol
        fn = parts[1] if len(parts) > 1 else "[unknown]"
        fn = fn.replace(" (inlined)", "").split("+")[0]
        frames.append(fn)
    if frames:
        yield frames
    p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("perf_data")
    ap.add_argument("--results")
    ap.add_argument("--key", default="setup")
    ap.add_argument("--target", default="portcullis")
    a = ap.parse_args()
    counts = {}
    total = 0
    for fr in samples(a.perf_data):
        ph = phase_of(fr)
        counts[ph] = counts.get(ph, 0) + 1
        total += 1
    if total == 0:
        print("phases: no samples in %s" % a.perf_data, file=sys.stderr)
        return 1
    per = None
    if a.results:
        with open(a.results) as f:
            for ln in f:
                r = json.loads(ln)
                if r.get("key") == a.key and r.get("target") == a.target and r.get("completed_total"):
                    per = r["proxy_cpu_s"] * 1e6 / r["completed_total"]
    print("| phase | share of the proxy's CPU |%s" % (" µs per tunnel |" if per else ""))
    print("|---|---|%s" % ("---|" if per else ""))
    for ph, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        share = n / total
        print("| %s | %.1f%% |%s" % (ph, 100 * share, " %.1f |" % (share * per) if per else ""))
    print("| all (%d samples) | 100%% |%s" % (total, " %.1f |" % per if per else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
