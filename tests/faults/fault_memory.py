#!/usr/bin/python3
"""Fault campaign: 9,000 tunnels held while half their receivers stall.

4,500 tunnels to a source that sends without end, whose clients never read
(the receivers stall), and 4,500 idle tunnels that did one echo round trip
(every one relaying).  The relay reads from an upstream no more than its
receiver's socket has room for, so a stalled receiver pins mostly kernel
socket buffers; what the kernel then does not take of the last read (more
when it is short of TCP memory, as 9,000 stalled sockets make it) waits in
the proxy: at most one read per stalled direction.  The daemon's RSS is
reported, and must stay under 64 KiB per tunnel on average (docs/faults.md).
Then every client closes, and each of the 9,000 tunnels has exactly one
record.  ASan's quarantine is turned off for this daemon: it would keep
every freed buffer and measure ASan, not the proxy.
"""
import os
import resource
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, harness  # noqa: E402

HALF = 4500
PER_TUNNEL_BOUND = 65536    # bytes of RSS per tunnel beyond the idle daemon's, on average


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    upstream = os.path.join(os.path.dirname(ctx.binary), "..", "bench", "upstream")
    up = ctx.spawn("bench-upstream", [upstream, "--addr", faultlib.GOOD, "--echo", "7000",
                                      "--source", "7001"])
    expect(harness.wait_until(lambda: harness.port_open(faultlib.GOOD, 7001), 10), "bench upstream down")
    tiers = {"fault": {"sources": ["127.0.0.0/24"],
                       "allow": [{"host": "allowed.example", "ports": [7000, 7001]}],
                       "caps": {"connections_per_source": 20000}}}
    # idle tunnels must outlive the opening of all 9,000
    env = faultlib.Env(ctx, tiers=tiers, start=False, limits={"max_connections": 20000},
                       timeouts={"connect": "1s", "idle": "5m", "drain": "3s"})
    os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "detect_leaks=1:exitcode=86") +
                                  ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    env.px.start(prefix=["prlimit", "--nofile=%d:%d" % (hard, hard), "--"])
    time.sleep(0.5)
    base = rss(env.px.proc.pid)
    socks = []   # (Op, socket)

    def open_tunnel(port, seq):
        op = faultlib.Op("tunnel", faultlib.SOURCES[seq % len(faultlib.SOURCES)])
        op.phase = "9000 tunnels, half stalled"
        s = harness.bound_socket(op.src)
        op.port = s.getsockname()[1]
        s.settimeout(10)
        s.connect(("127.0.0.1", env.px.port))
        s.sendall(b"CONNECT allowed.example:%d HTTP/1.1\r\nHost: allowed.example:%d\r\n\r\n" % (port, port))
        head = b""
        while b"\r\n\r\n" not in head:
            d = s.recv(4096)
            if not d:
                break
            head += d
        op.answered = bool(head)
        op.status = int(head[9:12]) if head.startswith(b"HTTP/1.") else None
        rest = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
        if op.status == 200 and port == 7000:
            s.sendall(b"x" * 64)
            got = rest
            while len(got) < 64:
                d = s.recv(64 - len(got))
                if not d:
                    break
                got += d
            op.ok = got == b"x" * 64
        elif op.status == 200:
            op.ok = True   # a stalled receiver: never reads what the source sends
        socks.append((op, s))

    with ctx.case("%d stalled and %d idle tunnels open" % (HALF, HALF)):
        for i in range(2 * HALF):
            open_tunnel(7000 if i % 2 else 7001, i)
        ok = sum(1 for op, _ in socks if op.ok)
        expect(ok == 2 * HALF, "only %d of %d tunnels opened" % (ok, 2 * HALF))
    time.sleep(2.0)   # the sources fill every stalled path
    held = rss(env.px.proc.pid)
    per = (held - base) / max(1, len(socks))
    print("# memory: idle daemon %.1f MiB, with %d tunnels %.1f MiB: %.0f bytes per tunnel" %
          (base / 2**20, len(socks), held / 2**20, per), flush=True)
    with ctx.case("RSS with %d tunnels, half of them stalled: <= %d bytes per tunnel over the idle daemon "
                  "on average (%.0f measured)" % (len(socks), PER_TUNNEL_BOUND, per)):
        expect(per <= PER_TUNNEL_BOUND, "%.0f bytes per tunnel" % per)
    with ctx.case("every held tunnel still relays (the idle ones echo)"):
        bad = 0
        for op, s in socks[1::2][:200]:
            s.sendall(b"y" * 16)
            got = b""
            while len(got) < 16:
                d = s.recv(16 - len(got))
                if not d:
                    break
                got += d
            bad += got != b"y" * 16
        expect(bad == 0, "%d of 200 idle tunnels did not echo" % bad)
    for op, s in socks:
        s.close()
        op.t_end = time.monotonic()

    class Held:
        threads = 1
        seconds = 0
        ops = [op for op, _ in socks]
    harness.wait_until(lambda: len(env.px.audit.records()) >= len(socks), 30)
    code = env.px.stop()
    row = faultlib.account(env, Held, code)
    row["rss_base_mib"] = round(base / 2**20, 1)
    row["rss_held_mib"] = round(held / 2**20, 1)
    row["bytes_per_tunnel"] = int(per)
    faultlib.report(ctx, "memory", "9000 tunnels, half of the receivers stalled", Held, row)
    faultlib.check(ctx, "memory", row, min_answered=2 * HALF)
    ctx.final_checks([env.px.audit])
