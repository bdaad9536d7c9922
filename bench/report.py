#!/usr/bin/python3
"""bench/report.py: medians over rounds, ratios to direct and to Squid, as a Markdown table.

Reads the JSON lines bench/run collected (one per loadgen run, with the
proxy's CPU seconds and RSS added) and machine.txt.  Prints the table and the
state of each of issue 7's targets; writes the same Markdown to --md.
Exit status: 0, or with --smoke 1 when some expected result is missing (the
harness did not work).  Times are never judged here.
"""
import argparse
import json
import statistics
import sys

TARGET_ORDER = ["direct", "portcullis", "portcullis_tls", "baseline", "squid", "tinyproxy"]

# (row label, result key, metric function, unit, digits, higher_is_better, proxy_only)
def cpu_per_tunnel(r):
    n = r.get("completed_total", 0)
    return r["proxy_cpu_s"] * 1e6 / n if n and "proxy_cpu_s" in r else None


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


def rows(concurrency, idle_counts):
    out = [
        ("dripped request head (64 KiB): proxy CPU each (µs)", "drip_head", cpu_per_tunnel, "", 0,
         False, True),
        ("dripped ClientHello (16 KB): proxy CPU each (µs)", "drip_hello", cpu_per_tunnel, "", 0,
         False, True),
        ("tunnel setup rate (/s)", "setup", field("rate_per_s"), "", 0, True, False),
        ("setup latency p50 (µs)", "setup", field("p50_us"), "", 0, False, False),
        ("setup latency p90 (µs)", "setup", field("p90_us"), "", 0, False, False),
        ("setup latency p99 (µs)", "setup", field("p99_us"), "", 0, False, False),
        ("proxy CPU per tunnel (µs)", "setup", cpu_per_tunnel, "", 1, False, True),
        ("  CPU busy: proxy (CPU 0) / load side (CPU 1)", "setup", None, "", 0, False, False),
        ("TLS setup rate (/s)", "tls", field("rate_per_s"), "", 0, True, False),
        ("TLS setup latency p99 (µs)", "tls", field("p99_us"), "", 0, False, False),
        ("proxy CPU per TLS tunnel (µs)", "tls", cpu_per_tunnel, "", 1, False, True),
    ]
    for s in (1, 8):
        for d, word in (("down", "download"), ("up", "upload")):
            key = "bulk_%s_%d" % (d, s)
            out.append(("bulk %s, %d stream%s (MiB/s)" % (word, s, "s" if s > 1 else ""), key,
                        field("mib_per_s"), "", 0, True, False))
            out.append(("  proxy CPU per MiB (µs)", key, cpu_per_mib, "", 1, False, True))
            out.append(("  CPU busy: proxy (CPU 0) / load side (CPU 1)", key, None, "", 0, False, False))
    for n in idle_counts:
        out.append(("RSS per idle tunnel, %s (KiB)" % f"{n:,}", "idle_%d" % n, rss_per_tunnel, "", 2,
                    False, True))
        out.append(("  tunnels held / asked", "idle_%d" % n,
                    lambda r: r.get("alive"), "", 0, True, True))
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
    ap.add_argument("--scenarios", default="setup,tls,bulk,idle,drip")
    ap.add_argument("--idle", default="1000,10000")
    ap.add_argument("--smoke", default="0")
    ap.add_argument("--md")
    a = ap.parse_args()

    targets = [t for t in TARGET_ORDER if t in a.targets.split(",")]
    idle_counts = [int(x) for x in a.idle.split(",") if x]
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

    concurrency = next((r.get("concurrency") for r in results if r.get("key") == "setup"), None)
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
    lines.append("Each cell: median over rounds; (×d = ratio to direct, ×s = ratio to Squid%s%s)." %
                 (", ×b = portcullis to the baseline build" if "baseline" in targets else "",
                  ", ×p = the TLS listener to the plain one" if "portcullis_tls" in targets else ""))
    lines.append("")
    hdr = "| metric | " + " | ".join(targets) + " |"
    lines.append(hdr)
    lines.append("|---" * (len(targets) + 1) + "|")
    scen = a.scenarios.split(",")
    for label, key, fn, _unit, digits, _hib, proxy_only in rows(concurrency, idle_counts):
        base = key.split("_")[0]
        if base not in scen:
            continue
        if fn is None:
            cells = []
            for t in targets:
                p, l = med(t, key, busy_proxy), med(t, key, busy_load)
                pc = "—" if t == "direct" or p is None else "%.0f%%" % (100 * p)
                lc = "—" if l is None else "%.0f%%" % (100 * l)
                cells.append("%s / %s" % (pc, lc))
            lines.append("| %s | %s |" % (label, " | ".join(cells)))
            continue
        if "held" in label:
            cells = []
            n = int(key.split("_")[1])
            for t in targets:
                v = med(t, key, fn)
                cells.append("—" if t == "direct" or v is None else "%s / %s" % (fmt(v, 0), f"{n:,}"))
            lines.append("| %s | %s |" % (label, " | ".join(cells)))
            continue
        d = med("direct", key, fn) if not proxy_only else None
        s = med("squid", key, fn)
        cells = []
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
            rq = ratio(v, s)
            if rq is not None and t not in ("squid", "direct"):
                rs.append("%.2f×s" % rq)
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
    if concurrency:
        lines.append("")
        lines.append("Setup and TLS scenarios: %s concurrent clients, closed loop." % concurrency)

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

    # Where portcullis stands against issue 7's targets.
    if "portcullis" in targets:
        lines.append("")
        lines.append("Targets (issue 7), portcullis:")

        def target(desc, v, limit, ok_if_le):
            if v is None:
                lines.append("- %s: not measured" % desc)
                return
            ok = v <= limit if ok_if_le else v >= limit
            lines.append("- %s: %.2f → %s" % (desc, v, "met" if ok else "NOT met"))

        pc = lambda k, fn: med("portcullis", k, fn)
        if "setup" in scen:
            target("proxy CPU per tunnel setup ≤ 0.25× Squid's",
                   ratio(pc("setup", cpu_per_tunnel), med("squid", "setup", cpu_per_tunnel)), 0.25, True)
            target("tunnel setup rate ≥ 3× Squid's",
                   ratio(pc("setup", field("rate_per_s")), med("squid", "setup", field("rate_per_s"))),
                   3.0, False)
            target("p99 setup latency ≤ 1.5× direct (%s clients)" % concurrency,
                   ratio(pc("setup", field("p99_us")), med("direct", "setup", field("p99_us"))), 1.5, True)
        if "bulk" in scen:
            for s in (1, 8):
                for d in ("down", "up"):
                    k = "bulk_%s_%d" % (d, s)
                    target("bulk %s %d stream(s) ≥ 0.9× direct" % (d, s),
                           ratio(pc(k, field("mib_per_s")), med("direct", k, field("mib_per_s"))), 0.9, False)
        if "idle" in scen and idle_counts:
            n = max(idle_counts)
            target("RSS per idle tunnel at %s ≤ 4 KiB (KiB)" % f"{n:,}", pc("idle_%d" % n, rss_per_tunnel), 4.0,
                   True)

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
            if "tls" in scen:
                keys.append(("tls", "completed"))
            if "bulk" in scen:
                keys += [("bulk_%s_%d" % (d, s), "bytes_total") for s in (1, 8) for d in ("down", "up")]
            if "idle" in scen and t != "direct":
                keys += [("idle_%d" % n, "alive") for n in idle_counts]
            if "drip" in scen and t != "direct":
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
