#!/usr/bin/python3
"""bench/report.py: medians over rounds, ratios to direct and to Squid, as a Markdown table.

Reads the JSON lines bench/run collected (one per loadgen run, with the
proxy's CPU seconds and RSS added) and machine.txt.  Prints the table and the
state of each of the proxy's targets; writes the same Markdown to --md.
Exit status: 0, or with --smoke 1 when some expected result is missing (the
harness did not work).  Times are never judged here.
"""
import argparse
import json
import statistics
import sys

TARGET_ORDER = ["direct", "portcullis", "relay", "portcullis_tls", "baseline", "squid", "tinyproxy"]


def cpu_per_tunnel(r):
    n = r.get("completed_total", 0)
    return r["proxy_cpu_s"] * 1e6 / n if n and "proxy_cpu_s" in r else None


def endpoints_cpu_per_conn(r):
    """CPU the two endpoints (load generator + upstream) spent per connection.

    For the direct target this is the floor: what one TCP connection (or one TLS connection)
    costs the kernel and the two programs at its ends, with no proxy.  It divides like the
    proxy's CPU per tunnel, because all three CPU figures cover the same span.  bench/run reads
    the proxy's and the upstream's /proc ticks in one pass right before the loadgen starts and
    right after it exits; the loadgen's getrusage() runs from its exec to the line it prints at
    the very end (after the final drain), missing only its exit.  All three include the warm-up,
    and so does completed_total.  What none of them sees is the same for every target: kernel
    work not charged to any of these processes (ksoftirqd; and on a kernel built with
    CONFIG_IRQ_TIME_ACCOUNTING, all softirq time, much of loopback TCP).  /proc ticks are
    10 ms: under 1% of the upstream's share in a run of a few seconds.
    """
    n = r.get("completed_total", 0)
    if not n or "loadgen_cpu_s" not in r or "upstream_cpu_s" not in r:
        return None
    return (r["loadgen_cpu_s"] + r["upstream_cpu_s"]) * 1e6 / n


def cpu_per_mib(r):
    b = r.get("bytes_total", 0)
    return r["proxy_cpu_s"] * 1e6 / (b / 1048576.0) if b and "proxy_cpu_s" in r else None


def rss_per_tunnel(r):
    n = r.get("opened", 0)
    if not n or "rss_held_kb" not in r:
        return None
    return (r["rss_held_kb"] - r["rss_before_kb"]) / n


def field(name):
    return lambda r: r.get(name)


def wall(r):
    """Seconds the loadgen ran (older results: from the window, which is 90% of a run up to 10 s)."""
    if r.get("wall_s"):
        return r["wall_s"]
    w = r.get("window_s")
    if not w:
        return None
    return w / 0.9 if w / 0.9 <= 10 else w + 1


def busy_proxy(r):
    """Share of CPU 0 the proxy used during the measurement."""
    t = wall(r)
    return r["proxy_cpu_s"] / t if t and "proxy_cpu_s" in r else None


def busy_load(r):
    """Share of CPU 1 the load generator and the upstreams used (dnsmasq, kernel threads not counted)."""
    t = wall(r)
    if not t or "loadgen_cpu_s" not in r or "upstream_cpu_s" not in r:
        return None
    return (r["loadgen_cpu_s"] + r["upstream_cpu_s"]) / t


# Row kinds: "value" (a median, ratios to direct and Squid), "busy" (CPU busy shares), "held"
# (idle tunnels held), "floor" (the direct endpoints' CPU per connection), "open" (open-loop
# p50 / p99), "added" (open-loop latency added to direct's), "openrate" (achieved / offered,
# missed), "perround" (median of per-round ratios to direct), "plain" (a median, no ratios).
# (row label, result key, metric function, digits, proxy_only, kind)
def rows(idle_counts, open_rate, icpt_requests=()):
    out = [
        ("dripped request head (64 KiB): proxy CPU each (µs)", "drip_head", cpu_per_tunnel, 0, True,
         "value"),
        ("dripped ClientHello (16 KB): proxy CPU each (µs)", "drip_hello", cpu_per_tunnel, 0, True,
         "value"),
        ("tunnel setup rate (/s)", "setup", field("rate_per_s"), 0, False, "value"),
        ("setup latency p50 (µs)", "setup", field("p50_us"), 0, False, "value"),
        ("setup latency p90 (µs)", "setup", field("p90_us"), 0, False, "value"),
        ("setup latency p99 (µs)", "setup", field("p99_us"), 0, False, "value"),
        ("proxy CPU per tunnel (µs)", "setup", cpu_per_tunnel, 1, True, "value"),
        ("  CPU busy: proxy (CPU 0) / load side (CPU 1)", "setup", None, 0, False, "busy"),
        ("floor: endpoints' CPU per direct connection (µs)", "setup", endpoints_cpu_per_conn, 1,
         False, "floor"),
        ("open loop %s/s: latency p50 / p99 (µs)" % open_rate, "open", None, 0, False, "open"),
        ("  added to direct at p50 / p99 (µs)", "open", None, 0, True, "added"),
        ("  rate achieved / offered (/s); arrivals missed", "open", None, 0, False, "openrate"),
        ("  loadgen's own start lag p99 (µs; part of every latency above)", "open",
         field("start_lag_p99_us"), 0, False, "plain"),
        ("  CPU busy: proxy (CPU 0) / load side (CPU 1)", "open", None, 0, False, "busy"),
        ("TLS setup rate (/s)", "tls", field("rate_per_s"), 0, False, "value"),
        ("TLS setup latency p99 (µs)", "tls", field("p99_us"), 0, False, "value"),
        ("proxy CPU per TLS tunnel (µs)", "tls", cpu_per_tunnel, 1, True, "value"),
        ("floor: endpoints' CPU per direct TLS connection (µs)", "tls", endpoints_cpu_per_conn, 1,
         False, "floor"),
    ]
    # icpt: HTTPS requests through an intercepting proxy (direct: straight to the origin).  The
    # loadgen counts requests, so completed_total divides the CPU per request.
    for k in icpt_requests:
        key = "icpt_%d" % k
        out += [
            ("intercepted HTTPS, %d request%s per connection: requests/s" % (k, "s" if k > 1 else ""),
             key, field("rate_per_s"), 0, False, "value"),
            ("  request latency p50 (µs)", key, field("p50_us"), 0, False, "value"),
            ("  request latency p99 (µs)", key, field("p99_us"), 0, False, "value"),
            ("  proxy CPU per request (µs)", key, cpu_per_tunnel, 1, True, "value"),
            ("  CPU busy: proxy (CPU 0) / load side (CPU 1)", key, None, 0, False, "busy"),
            ("  floor: endpoints' CPU per direct request (µs)", key, endpoints_cpu_per_conn, 1,
             False, "floor"),
        ]
    for s in (1, 8):
        for d, word in (("down", "download"), ("up", "upload")):
            key = "bulk_%s_%d" % (d, s)
            out.append(("bulk %s, %d stream%s (MiB/s)" % (word, s, "s" if s > 1 else ""), key,
                        field("mib_per_s"), 0, False, "value"))
            if s == 1:
                out.append(("  median of per-round ratios to direct", key, field("mib_per_s"), 2,
                            True, "perround"))
            out.append(("  proxy CPU per MiB (µs)", key, cpu_per_mib, 1, True, "value"))
            out.append(("  CPU busy: proxy (CPU 0) / load side (CPU 1)", key, None, 0, False, "busy"))
    for n in idle_counts:
        out.append(("RSS per idle tunnel, %s (KiB)" % f"{n:,}", "idle_%d" % n, rss_per_tunnel, 2,
                    True, "value"))
        out.append(("  tunnels held / asked", "idle_%d" % n, field("alive"), 0, True, "held"))
    return out


def fmt(v, digits):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("machine")
    ap.add_argument("--targets", default=",".join(TARGET_ORDER))
    ap.add_argument("--scenarios", default="setup,open,tls,bulk,idle,drip")
    ap.add_argument("--idle", default="1000,10000")
    ap.add_argument("--icpt-requests", default="1,10")
    ap.add_argument("--open-rate", default=None, help="label for the open-loop rows (default: "
                    "from the results)")
    ap.add_argument("--smoke", default="0")
    ap.add_argument("--md")
    a = ap.parse_args()

    targets = [t for t in TARGET_ORDER if t in a.targets.split(",")]
    idle_counts = [int(x) for x in a.idle.split(",") if x]
    icpt_requests = [int(x) for x in a.icpt_requests.split(",") if x]
    machine = {}
    with open(a.machine) as f:
        for ln in f:
            k, _, v = ln.rstrip("\n").partition("=")
            machine[k] = v
    results = []
    with open(a.results) as f:
        for ln in f:
            ln = ln.strip()
            if ln:
                try:
                    results.append(json.loads(ln))
                except ValueError:
                    print("bench: unparsable result line: %s" % ln[:200], file=sys.stderr)

    by = {}  # (target, key) -> [result, ...] one per round
    for r in results:
        by.setdefault((r.get("target"), r.get("key")), []).append(r)

    def med(t, key, fn):
        vals = [fn(r) for r in by.get((t, key), [])]
        vals = [v for v in vals if v is not None]
        return statistics.median(vals) if vals else None

    def per_round_ratio(t, key, fn):
        """Median over rounds of (t's value / direct's value in the same round).

        The targets run interleaved within each round, so a round's pair shares the machine's
        state of that moment; the ratio of the medians mixes rounds."""
        dir_by_round = {r.get("round"): fn(r) for r in by.get(("direct", key), [])}
        ratios = []
        for r in by.get((t, key), []):
            v, d = fn(r), dir_by_round.get(r.get("round"))
            if v is not None and d:
                ratios.append(v / d)
        return statistics.median(ratios) if ratios else None

    def floor(key):
        return med("direct", key, endpoints_cpu_per_conn)

    def diff(a_, b_):
        return None if a_ is None or b_ is None else a_ - b_

    concurrency = next((r.get("concurrency") for r in results if r.get("key") == "setup"), None)
    open_rate = a.open_rate or next((r.get("rate") for r in results if r.get("key") == "open"), None)
    open_label = fmt(float(open_rate), 0) if open_rate else "?"
    lines = []
    lines.append("Machine: %s CPUs, %s, Linux %s" % (machine.get("nproc"), machine.get("cpu"),
                                                     machine.get("kernel")))
    vers = [machine.get("portcullis", "")]
    for k in ("squid", "tinyproxy"):
        if k in machine:
            vers.append(machine[k])
    try:
        lgv = json.loads(machine.get("loadgen", "{}"))
        vers.append("libevent %s" % lgv.get("libevent"))
        vers.append(lgv.get("openssl", ""))
    except ValueError:
        pass
    lines.append("Versions: " + "; ".join(v for v in vers if v))
    lines.append("Run: %s (%s)" % (machine.get("params", ""), machine.get("date", "")))
    other = [r["other_load"] for r in results if "other_load" in r]
    if other:
        lines.append("Other processes on the machine (not the bench's) used a median %.0f%% (max %.0f%%) "
                     "of its CPU during the measurements; load average at the start %s." %
                     (100 * statistics.median(other), 100 * max(other), machine.get("loadavg", "?")))
    lines.append("")
    lines.append("Each cell: median over rounds; (×d = ratio to direct, ×s = ratio to Squid, "
                 "×f = ratio to the floor, the CPU the two endpoints spend per direct connection%s%s%s)." %
                 (", ×r = portcullis to the floor relay (bench/relay.c)" if "relay" in targets else "",
                  ", ×b = portcullis to the baseline build" if "baseline" in targets else "",
                  ", ×p = the TLS listener to the plain one" if "portcullis_tls" in targets else ""))
    lines.append("")
    hdr = "| metric | " + " | ".join(targets) + " |"
    lines.append(hdr)
    lines.append("|---" * (len(targets) + 1) + "|")
    scen = a.scenarios.split(",")
    for label, key, fn, digits, proxy_only, kind in rows(idle_counts, open_label, icpt_requests):
        base = key.split("_")[0]
        if base not in scen:
            continue
        cells = []
        if kind == "busy":
            for t in targets:
                p, l = med(t, key, busy_proxy), med(t, key, busy_load)
                pc = "—" if t == "direct" or p is None else "%.0f%%" % (100 * p)
                lc = "—" if l is None else "%.0f%%" % (100 * l)
                cells.append("%s / %s" % (pc, lc))
        elif kind == "held":
            n = int(key.split("_")[1])
            for t in targets:
                v = med(t, key, fn)
                cells.append("—" if t == "direct" or v is None else "%s / %s" % (fmt(v, 0), f"{n:,}"))
        elif kind == "floor":
            cells = [fmt(floor(key), digits) if t == "direct" else "—" for t in targets]
        elif kind == "open":
            d50, d99 = med("direct", key, field("p50_us")), med("direct", key, field("p99_us"))
            for t in targets:
                v50, v99 = med(t, key, field("p50_us")), med(t, key, field("p99_us"))
                c = "%s / %s" % (fmt(v50, 0), fmt(v99, 0))
                r50, r99 = ratio(v50, d50), ratio(v99, d99)
                if t != "direct" and r50 is not None and r99 is not None:
                    c += " (%.2f / %.2f×d)" % (r50, r99)
                cells.append(c)
        elif kind == "added":
            d50, d99 = med("direct", key, field("p50_us")), med("direct", key, field("p99_us"))
            for t in targets:
                a50 = diff(med(t, key, field("p50_us")), d50)
                a99 = diff(med(t, key, field("p99_us")), d99)
                if t == "direct" or a50 is None or a99 is None:
                    cells.append("—")
                else:
                    cells.append(f"{a50:+,.0f} / {a99:+,.0f}")
        elif kind == "openrate":
            for t in targets:
                ach, off = med(t, key, field("rate_per_s")), med(t, key, field("offered_per_s"))
                missed = sum(r.get("missed", 0) for r in by.get((t, key), []))
                cells.append("—" if ach is None else "%s / %s; %s" % (fmt(ach, 0), fmt(off, 0),
                                                                       f"{missed:,}"))
        elif kind == "plain":
            cells = [fmt(med(t, key, fn), digits) for t in targets]
        elif kind == "perround":
            for t in targets:
                v = per_round_ratio(t, key, fn) if t != "direct" else None
                cells.append("—" if v is None else "%.2f×d" % v)
        else:
            d = med("direct", key, fn) if not proxy_only else None
            sq = med("squid", key, fn) if "squid" in targets else None
            f = floor(key) if fn is cpu_per_tunnel and key.split("_")[0] in ("setup", "tls",
                                                                              "icpt") else None
            for t in targets:
                v = med(t, key, fn)
                if proxy_only and t == "direct":
                    cells.append("—")
                    continue
                c = fmt(v, digits)
                rs = []
                rd = ratio(v, d)
                if rd is not None and t != "direct":
                    rs.append("%.2f×d" % rd)
                rf = ratio(v, f)
                if rf is not None:
                    rs.append("%.2f×f" % rf)
                rq = ratio(v, sq)
                if rq is not None and t not in ("squid", "direct"):
                    rs.append("%.2f×s" % rq)
                rr = ratio(v, med("relay", key, fn)) if t == "portcullis" else None
                if rr is not None:
                    rs.append("%.2f×r" % rr)
                rb = ratio(v, med("baseline", key, fn)) if t == "portcullis" else None
                if rb is not None:
                    rs.append("%.2f×b" % rb)
                rp = ratio(v, med("portcullis", key, fn)) if t == "portcullis_tls" else None
                if rp is not None:
                    rs.append("%.2f×p" % rp)
                if rs and v is not None:
                    c += " (" + ", ".join(rs) + ")"
                cells.append(c)
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    notes = []
    if concurrency and ("setup" in scen or "tls" in scen):
        notes.append("Setup and TLS scenarios: %s concurrent clients, closed loop." % concurrency)
    if "open" in scen and open_rate:
        notes.append("Open loop: %s arrivals/s on a fixed schedule, each timed from when it was due; "
                     "an arrival that finds all %s slots busy is missed, not queued." %
                     (open_label, next((r.get("pool") for r in results if r.get("key") == "open"), "?")))
    if "icpt" in scen and icpt_requests:
        ic = next((r for r in results if str(r.get("key", "")).startswith("icpt_")), {})
        notes.append("Interception: %s concurrent clients, closed loop, HTTPS through a CONNECT "
                     "tunnel, %s keep-alive request(s) per connection (GET, 1 KiB response); "
                     "latency per request, the first from the connect; portcullis with "
                     "intercept:, Squid with ssl_bump, direct straight to the origin." %
                     (ic.get("concurrency", "?"), " or ".join(str(k) for k in icpt_requests)))
    if notes:
        lines.append("")
        lines.append(" ".join(notes))

    # Errors seen by the load generator.
    errs = []
    for (t, key), rs in sorted(by.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        n = sum(r.get("errors", 0) for r in rs)
        if n:
            fe = next((r.get("first_error") for r in rs if r.get("first_error")), "")
            errs.append("- %s %s: %d errors over %d rounds (first: %s)" % (t, key, n, len(rs), fe))
    if errs:
        lines.append("")
        lines.append("Load generator errors:")
        lines.extend(errs)

    # Where portcullis stands against its targets.
    if "portcullis" in targets:
        lines.append("")
        lines.append("Targets, portcullis:")

        def target(desc, v, limit, ok_if_le, figure):
            if v is None:
                lines.append("- %s: not measured" % desc)
                return
            ok = v <= limit if ok_if_le else v >= limit
            lines.append("- %s: %s → %s" % (desc, figure, "met" if ok else "NOT met"))

        pc = lambda k, fn: med("portcullis", k, fn)
        if "setup" in scen:
            v, f = pc("setup", cpu_per_tunnel), floor("setup")
            r = ratio(v, f)
            target("proxy CPU per tunnel ≤ 1.25× the floor", r, 1.25, True,
                   r is not None and "%.2f× (%s µs against %s µs)" % (r, fmt(v, 1), fmt(f, 1)))
            v, d = pc("setup", field("p99_us")), med("direct", "setup", field("p99_us"))
            r = ratio(v, d)
            target("closed-loop setup p99 ≤ 1.4× direct (%s clients)" % concurrency, r, 1.4, True,
                   r is not None and "%.2f× (%s µs against %s µs)" % (r, fmt(v, 0), fmt(d, 0)))
        if "open" in scen:
            v = diff(pc("open", field("p99_us")), med("direct", "open", field("p99_us")))
            missed = sum(r.get("missed", 0) for r in by.get(("portcullis", "open"), []))
            target("open-loop (%s/s) p99 added to direct ≤ 150 µs" % open_label, v, 150, True,
                   v is not None and "%s µs%s" % (fmt(v, 0), ", %s arrivals missed" % f"{missed:,}"
                                                  if missed else ""))
        if "bulk" in scen:
            for d, word in (("down", "download"), ("up", "upload")):
                k = "bulk_%s_1" % d
                r = per_round_ratio("portcullis", k, field("mib_per_s"))
                target("bulk %s, 1 stream ≥ 0.9× direct (median of per-round ratios)" % word, r, 0.9,
                       False, r is not None and "%.2f×" % r)
        if "tls" in scen:
            v, sq = pc("tls", cpu_per_tunnel), med("squid", "tls", cpu_per_tunnel)
            r = ratio(v, sq)
            target("proxy CPU per TLS tunnel ≤ 0.5× Squid's", r, 0.5, True,
                   r is not None and "%.2f× (%s µs against %s µs)" % (r, fmt(v, 1), fmt(sq, 1)))
        if "bulk" in scen:
            for d, word in (("down", "download"), ("up", "upload")):
                k = "bulk_%s_8" % d
                v, dv = pc(k, field("mib_per_s")), med("direct", k, field("mib_per_s"))
                r = ratio(v, dv)
                target("bulk %s, 8 streams ≥ 1.0× direct" % word, r, 1.0, False,
                       r is not None and "%.2f× (%s MiB/s against %s)" % (r, fmt(v, 0), fmt(dv, 0)))
        if "idle" in scen and idle_counts:
            n = max(idle_counts)
            v = pc("idle_%d" % n, rss_per_tunnel)
            target("RSS per idle tunnel at %s ≤ 1.5 KiB" % f"{n:,}", v, 1.5, True,
                   v is not None and "%.2f KiB" % v)
        if lines[-1] == "Targets, portcullis:":
            del lines[-2:]  # none of the scenarios run has a target (icpt alone)

    text = "\n".join(lines)
    print(text)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text + "\n")

    if a.smoke == "1":
        # The harness worked when every target produced every result it should have.
        missing = []
        for t in targets:
            keys = []
            if "setup" in scen:
                keys.append(("setup", "completed"))
            if "open" in scen:
                keys.append(("open", "completed"))
            if "tls" in scen:
                keys.append(("tls", "completed"))
            if "bulk" in scen:
                keys += [("bulk_%s_%d" % (d, s), "bytes_total") for s in (1, 8) for d in ("down", "up")]
            if "idle" in scen and t != "direct":
                keys += [("idle_%d" % n, "alive") for n in idle_counts]
            if "icpt" in scen and t in ("direct", "portcullis", "squid"):
                keys += [("icpt_%d" % k, "completed") for k in icpt_requests]
            if "drip" in scen and t not in ("direct", "relay", "portcullis_tls"):
                keys += [("drip_head", "completed_total"), ("drip_hello", "completed_total")]
            for key, fld in keys:
                rs = by.get((t, key), [])
                if not rs or not any(r.get(fld, 0) > 0 for r in rs):
                    missing.append("%s/%s" % (t, key))
        if missing:
            print("bench smoke: missing or empty results: " + ", ".join(missing))
            return 1
        print("bench smoke: every result present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
