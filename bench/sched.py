#!/usr/bin/python3
"""bench/sched.py: how often each process was woken during a measurement, and how long each
wake-up took before it ran, from a `perf sched record` file.

    bench/sched.py OUT/sched-portcullis-open-r1.data [--results OUT/results.jsonl --key open
                   --target portcullis --round 1]

`bench/run --sched KEY` records every scheduler switch on the machine while the load
generator runs (perf sched record -a: tracepoints, no PMU needed).  From `perf sched
timehist`, every time a thread starts running after sleeping is one wake-up, and its
"sch delay" is the time from the wake-up to running: on an idle virtual CPU that is the
host waking it.  A thread that ran again without having slept was preempted; those are
counted apart.  With --results, counts are also given per connection completed.

The point: a proxy's latency is a chain of wake-ups (client -> proxy -> upstream and back,
each on another CPU), so the added latency has a floor of (extra wake-ups on the path) x
(wake-up time), whatever the proxy does in user space.
"""
import argparse
import collections
import json
import subprocess
import sys

# Process names (a prefix: a --baseline binary may be portcullis-base); portcullis names its
# threads pc-worker0, pc-audit, pc-admin, ...
TASKS = ("portcullis", "pc-", "squid", "tinyproxy", "loadgen", "upstream", "dnsmasq")


def parse(path):
    """Yield (task, tid, cpu, wait_ms, sch_delay_ms, run_ms) for each switch-out."""
    out = subprocess.run(["perf", "sched", "timehist", "-i", path], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) < 6 or not f[0][:1].isdigit() or not f[1].startswith("["):
            continue
        try:
            wait, sch, run = float(f[-3]), float(f[-2]), float(f[-1])
            cpu = int(f[1].strip("[]"))
        except ValueError:
            continue
        name = " ".join(f[2:-3])
        comm, _, ids = name.rpartition("[")
        tid = ids.rstrip("]").split("/")[0]
        yield comm, tid, cpu, wait, sch, run


def pct(v, p):
    return v[min(len(v) - 1, int(len(v) * p))] if v else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--results")
    ap.add_argument("--key")
    ap.add_argument("--target")
    ap.add_argument("--round")
    a = ap.parse_args()

    per = collections.defaultdict(lambda: {"wakes": [], "preempted": 0, "run": 0.0,
                                           "cpus": collections.Counter()})
    for comm, tid, cpu, wait, sch, run in parse(a.data):
        if not comm.startswith(TASKS):
            continue
        t = per[(comm, tid)]
        t["run"] += run
        t["cpus"][cpu] += 1
        if wait > 0:
            t["wakes"].append(sch * 1000.0)
        elif sch > 0:
            t["preempted"] += 1

    conns = None
    if a.results:
        with open(a.results) as f:
            for line in f:
                r = json.loads(line)
                if (r.get("key") == a.key and r.get("target") == a.target and
                        str(r.get("round")) == str(a.round)):
                    conns = r.get("completed_total") or None

    print(f"# Wake-ups: {a.target or '?'}, {a.key or '?'}, round {a.round or '?'}\n")
    if conns:
        print(f"{conns:,} connections completed while recording.\n")
    print("| thread | CPU | wake-ups | per connection | wake-up to running p50 / p90 / p99 (µs) "
          "| preempted | CPU time per connection (µs) |")
    print("|---|---|---|---|---|---|---|")
    rows = sorted(per.items(), key=lambda kv: -len(kv[1]["wakes"]))
    for (comm, tid), t in rows:
        w = sorted(t["wakes"])
        if len(w) < 10:
            continue
        cpu = ",".join(str(c) for c, _ in t["cpus"].most_common(2))
        each = f"{len(w) / conns:.2f}" if conns else "—"
        run = f"{t['run'] * 1000.0 / conns:.1f}" if conns else "—"
        print(f"| {comm} {tid} | {cpu} | {len(w):,} | {each} | "
              f"{pct(w, 0.5):.0f} / {pct(w, 0.9):.0f} / {pct(w, 0.99):.0f} | "
              f"{t['preempted']:,} | {run} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
