#!/usr/bin/python3
"""bench/tail.py: what held up the slowest exchanges of a measurement.

    bench/tail.py --trace OUT/trace.txt [--sched OUT/tsched.data] [--target portcullis]

`bench/run --trace KEY` gives this script two files for one measurement:
- the load generator's --trace: for every exchange counted in the latencies,
  when it was due (CLOCK_MONOTONIC, µs), and from then when it started, was
  TCP-connected, got its 200 (direct: connected) and finished;
- a scheduler recording on the same clock (perf record -k CLOCK_MONOTONIC of
  sched_switch and sched_wakeup, the whole machine).

It prints, for all exchanges and for the slowest 1%, the median time of each
step, and how the slowest ones bunch together in time.  With the recording,
for the proxy's busiest thread, it splits the slowest exchanges' time between
their TCP connect and their 200 into: the thread running, asleep, woken but not
yet running, and preempted (by whom).  Time the host takes the virtual CPU
away is invisible to the guest and counts as running.
"""
import argparse
import bisect
import collections
import re
import statistics
import subprocess
import sys

PROXY_THREADS = ("pc-worker", "portcullis", "squid", "relay", "tinyproxy")
EVENT = re.compile(r"^\s*(.*?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)$")
SWITCH = re.compile(r"prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)")


def read_trace(path):
    rows = []
    with open(path) as f:
        for line in f:
            v = line.split()
            if len(v) == 5:
                rows.append([float(x) for x in v])
    return rows


def read_sched(path):
    out = subprocess.run(["perf", "script", "-i", path, "-F", "comm,tid,cpu,time,event,trace"],
                         check=True, capture_output=True, text=True).stdout
    ev = []
    for line in out.splitlines():
        m = EVENT.match(line)
        if m:
            ev.append((float(m.group(4)) * 1e6, m.group(1), int(m.group(2)), m.group(5),
                       m.group(6)))
    return ev


def timeline(ev, tid):
    """(time, state, who): state run | runnable (preempted by who) | sleep | woken."""
    tl = []
    for t, comm, _tid, kind, rest in ev:
        if kind == "sched_switch":
            m = SWITCH.search(rest)
            if not m:
                continue
            if int(m.group(1)) == tid:
                tl.append((t, "runnable" if m.group(2).startswith("R") else "sleep",
                           m.group(3)))
            elif int(m.group(4)) == tid:
                tl.append((t, "run", ""))
        elif kind == "sched_wakeup" and re.search(r"\bpid=%d\b" % tid, rest):
            tl.append((t, "woken", ""))
    tl.sort()
    return tl


def split(tl, times, a, b):
    d = collections.Counter()
    i = bisect.bisect_right(times, a) - 1
    state, who = (tl[i][1], tl[i][2]) if i >= 0 else ("sleep", "")
    t = a
    i += 1
    while True:
        nt = tl[i][0] if i < len(tl) else b
        end = min(nt, b)
        key = state if state != "runnable" else "preempted by " + re.sub(r"[/:]\d.*", "", who)
        d[key] += max(0.0, end - t)
        if nt >= b:
            return d
        t, state, who = nt, tl[i][1], tl[i][2]
        i += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trace", required=True)
    ap.add_argument("--sched")
    ap.add_argument("--target", default="?")
    ap.add_argument("--key", default="?")
    a = ap.parse_args()

    rows = read_trace(a.trace)
    if len(rows) < 100:
        print("too few exchanges in %s (%d)" % (a.trace, len(rows)), file=sys.stderr)
        return 1
    rows.sort(key=lambda r: r[4])
    slow = rows[int(len(rows) * 0.99):]
    med = statistics.median
    print("# The slowest exchanges: %s, %s\n" % (a.target, a.key))
    print(f"{len(rows):,} exchanges; the slowest 1% took {slow[0][4]:,.0f} µs or more.\n")
    print("| exchanges | start lag | start → TCP connected | connected → tunnel up | "
          "up → done | total (µs, medians) |")
    print("|---|---|---|---|---|---|")
    for name, part in (("all", rows), ("slowest 1%", slow)):
        print("| %s | %.0f | %.0f | %.0f | %.0f | %.0f |" % (
            name, med(r[1] for r in part), med(r[2] - r[1] for r in part),
            med(r[3] - r[2] for r in part), med(r[4] - r[3] for r in part),
            med(r[4] for r in part)))
    bursts = []
    for r in sorted(slow):
        if bursts and r[0] - bursts[-1][1] < 20000:
            bursts[-1][1] = max(bursts[-1][1], r[0] + r[4])
            bursts[-1][2] += 1
        else:
            bursts.append([r[0], r[0] + r[4], 1])
    sizes = sorted((b[2] for b in bursts), reverse=True)
    print("\nThe slowest 1%% came in %d bursts (each due less than 20 ms after the one before "
          "finished); the largest held %s." % (len(bursts), ", ".join(str(n) for n in sizes[:5])))

    if not a.sched:
        return 0
    ev = read_sched(a.sched)
    busy = collections.Counter(tid for _t, comm, tid, kind, _r in ev
                               if kind == "sched_switch" and comm.startswith(PROXY_THREADS))
    if not busy:
        print("\nNo proxy thread in the scheduler recording.")
        return 0
    tid = busy.most_common(1)[0][0]
    name = next(comm for _t, comm, t, _k, _r in ev if t == tid)
    tl = timeline(ev, tid)
    times = [x[0] for x in tl]
    lo, hi = tl[0][0], tl[-1][0]
    print("\nThe proxy's busiest thread (%s %d), between each exchange's TCP connect and its "
          "200:\n" % (name, tid))
    print("| exchanges | mean (µs) | where that time went |")
    print("|---|---|---|")
    inside = [r for r in rows if r[0] + r[2] > lo and r[0] + r[3] < hi]
    inside.sort(key=lambda r: r[3] - r[2])
    for label, part in (("all", inside), ("slowest 1%", inside[int(len(inside) * 0.99):])):
        tot = collections.Counter()
        for r in part:
            tot.update(split(tl, times, r[0] + r[2], r[0] + r[3]))
        s = sum(tot.values()) or 1.0
        parts = ", ".join("%s %.1f%%" % (k, 100 * v / s) for k, v in tot.most_common(6))
        print("| %s | %.0f | %s |" % (label, s / max(1, len(part)), parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
