#!/usr/bin/python3
"""Scenario 6: process lifecycle.

CLI (--version, --help, usage errors, --check good/broken, start-up failures
with exit 3), survival of connection churn and bad requests, idle timeout,
SIGTERM drain (open tunnel keeps working, listener stops, exit 0 when the
client closes) and the drain timeout (tunnel cut, reason drain_timeout).
"""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
T = "allowed.example:8080"
TIERS = {"a": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [8080]}]}}


def run_cli(ctx, *args, timeout=15):
    p = subprocess.run([ctx.binary] + list(args), capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=harness.daemon_env(), preexec_fn=harness.die_with_me())
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def no_sanitizer(text):
    for m in harness.SANITIZER_MARKERS:
        expect(m not in text, "sanitizer report: %s" % text[text.find(m):][:400])


def open_hold(port):
    r = harness.connect(T, proxy_port=port)
    expect(r.status == 200, r.describe())
    r.sock.sendall(b"HOLD\n")
    line = harness.recv_line(r.sock, r.leftover, timeout=5)
    expect(line == b"HOLD ok\n", "HOLD tunnel answered %r" % line)
    return r


def echo(r, token):
    r.sock.sendall(token + b"\n")
    return harness.recv_line(r.sock, b"", timeout=5) == token + b"\n"


def eof_time(sock, limit):
    """Seconds until the peer closes (EOF or reset), or None if still open after limit."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            d = sock.recv(4096)
            if not d:
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return None


ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    src_meson = os.path.join(ctx.srcdir, "meson.build")
    m = re.search(r"version\s*:\s*'([^']+)'", open(src_meson).read()) if os.path.exists(src_meson) else None
    version = m.group(1) if m else None

    # ---------------------------------------------------------------- CLI
    with ctx.case("--version: exit 0, prints the project version %s" % version):
        rc, out, err = run_cli(ctx, "--version")
        expect(rc == 0, "exit %d (stderr %r)" % (rc, err[:200]))
        expect(version and version in out, "stdout %r lacks version %r" % (out[:200], version))

    with ctx.case("--help: exit 0, mentions -c and --check"):
        rc, out, err = run_cli(ctx, "--help")
        expect(rc == 0, "exit %d" % rc)
        expect("--check" in out + err and "-c" in out + err, "help text %r" % (out + err)[:300])

    with ctx.case("unknown option -> exit 2"):
        rc, out, err = run_cli(ctx, "--no-such-option")
        expect(rc == 2, "exit %d, want 2 (stderr %r)" % (rc, err[:200]))

    with ctx.case("-c without a file -> exit 2"):
        rc, out, err = run_cli(ctx, "-c")
        expect(rc == 2, "exit %d, want 2 (stderr %r)" % (rc, err[:200]))

    with ctx.case("--help lists every option (-c/--config, --check, --strict, --version, --help) "
                  "and points to the docs"):
        rc, out, err = run_cli(ctx, "--help")
        missing = [o for o in ("--config", "--check", "--strict", "--version", "--help",
                               "portcullis(8)", "portcullis-policy(5)") if o not in out]
        expect(rc == 0 and not missing, "exit %d, help lacks %s: %r" % (rc, missing, out[:400]))

    for argv, words in ((["--no-such-option"], "unknown option --no-such-option"),
                        (["-c"], "-c needs a FILE"),
                        (["--check"], "--check needs a FILE"),
                        (["stray"], "unexpected argument 'stray'"),
                        ([], "nothing to do"),
                        (["-c", "a.yaml", "--check", "b.yaml"], "cannot be combined"),
                        (["--strict", "-c", "a.yaml"], "--strict goes with --check"),
                        (["-c", "a.yaml", "-c", "b.yaml"], "given twice")):
        with ctx.case("usage error %s -> exit 2, says %r, not the whole help" % (argv, words)):
            rc, out, err = run_cli(ctx, *argv)
            expect(rc == 2 and words in err and "--help" in err and len(err.splitlines()) <= 3,
                   "exit %d, stderr %r" % (rc, err[:300]))

    good_px = harness.Proxy(ctx, "main", TIERS)   # writes its policy; started below
    with ctx.case("--check on a valid policy: exit 0, one-line summary on stdout"):
        rc, out, err = run_cli(ctx, "--check", good_px.policy_path)
        expect(rc == 0, "exit %d, stderr %r" % (rc, err[:300]))
        lines = [ln for ln in out.splitlines() if ln.strip()]
        expect(len(lines) == 1, "stdout has %d lines: %r" % (len(lines), out[:300]))
        no_sanitizer(err)

    broken = ctx.path("broken.yaml")
    with open(broken, "w") as f:
        f.write('version: 1\n'                                                   # 1
                'listen: {proxy: "127.0.0.1:3128", admin: "127.0.0.1:9090"}\n'  # 2
                'resolver: {servers: ["127.0.0.53:53"]}\n'                      # 3
                'audit: {output: "%s"}\n'                                        # 4
                'tiers:\n'                                                       # 5
                '  a:\n'                                                         # 6
                '    sources: ["10.0.0.0/33"]\n'                                 # 7 bad CIDR
                '    allow:\n'                                                   # 8
                '      - host: "allowed.example"\n'                              # 9
                '        ports: [443, 70000]\n' % ctx.path("x.log"))             # 10 bad port
    with ctx.case("--check on a policy with two errors: exit 1, FILE:LINE:COL for both (lines 7, 10)"):
        rc, out, err = run_cli(ctx, "--check", broken)
        expect(rc == 1, "exit %d, want 1 (stdout %r, stderr %r)" % (rc, out[:200], err[:300]))
        locs = re.findall(r"^%s:(\d+):(\d+): \S.*$" % re.escape(broken), err, re.M)
        lines = {int(ln) for ln, col in locs}
        expect(7 in lines and 10 in lines, "diagnostics at lines %s, want 7 and 10; stderr %r" %
               (sorted(lines), err[:400]))
        expect(all(int(col) >= 1 for _, col in locs), "column < 1 in %s" % locs)
        no_sanitizer(err)

    syntax = ctx.path("syntax.yaml")
    with open(syntax, "w") as f:
        f.write('version: 1\ntiers:\n  a:\n    sources: ["127.0.0.2/32"\n    allow: []\n')
    with ctx.case("--check on malformed YAML: exit 1, FILE:LINE:COL on stderr"):
        rc, out, err = run_cli(ctx, "--check", syntax)
        expect(rc == 1, "exit %d, want 1" % rc)
        expect(re.search(r"^%s:\d+:\d+: \S" % re.escape(syntax), err, re.M), "stderr %r" % err[:300])

    # libyaml's work on nested flow collections grows with the square of the depth: 80,000
    # unclosed '[' (78 KiB) took 13-16 s while the loader read on past its own depth limit.
    bomb_head = "version: 1\nresolver:\n  servers: [\"127.0.0.53\"]\ntiers:\n  a:\n    allow: "
    for what, tail in (("[", "[" * 80000), ("{a:", "{a: " * 40000), ("[{a:", "[{a: " * 20000)):
        with ctx.case("--check on a nesting bomb (%s x many): exit 1 at the depth limit, in seconds" % what):
            bomb = ctx.path("bomb.yaml")
            with open(bomb, "w") as f:
                f.write(bomb_head + tail + "\n")
            try:
                rc, out, err = run_cli(ctx, "--check", bomb, timeout=5)
            except subprocess.TimeoutExpired:
                raise harness.CaseFailed("--check still running after 5 s")
            expect(rc == 1 and "nesting deeper than 16 levels" in err, "exit %d, stderr %r" % (rc, err[:300]))

    with ctx.case("--check on a missing file: exit 1, names the file"):
        missing = ctx.path("does-not-exist.yaml")
        rc, out, err = run_cli(ctx, "--check", missing)
        expect(rc == 1, "exit %d, want 1" % rc)
        expect(missing in err, "stderr %r does not name the file" % err[:300])

    with ctx.case("-c with an invalid policy: exit 1 without listening; each error one JSON log "
                  "line naming FILE:LINE:COL (lines 7, 10)"):
        rc, out, err = run_cli(ctx, "-c", broken)
        expect(rc == 1, "exit %d, want 1" % rc)
        expect(not harness.port_open("127.0.0.1", 3128), "something listens on 3128")
        recs = []
        for ln in err.splitlines():
            try:
                recs.append(json.loads(ln))
            except ValueError:
                raise harness.CaseFailed("stderr line is not JSON: %r" % ln[:200])
        errs = [str(r.get("message")) for r in recs if r.get("log.level") == "error"]
        lines = sorted(int(m.group(1)) for e in errs
                       for m in [re.match(r"%s:(\d+):\d+: " % re.escape(broken), e)] if m)
        expect(lines == [7, 10], "error lines name %s, want [7, 10]: %s" % (lines, errs[:4]))

    for what, make, words in (
            ("a missing file", lambda p: None, "not found"),
            ("a directory", lambda p: os.mkdir(p), "is a directory"),
            ("a tab in the indentation", lambda p: open(p, "w").write("version: 1\ntiers:\n\ta: {}\n"),
             "forbids tabs")):
        with ctx.case("--check on %s says %r" % (what, words)):
            path = ctx.path("msg-%s" % what.replace(" ", "-"))
            make(path)
            rc, out, err = run_cli(ctx, "--check", path)
            expect(rc == 1 and words in err and path in err, "exit %d, stderr %r" % (rc, err[:300]))

    # start-up failures: exit 3
    ups = harness.Upstreams(ctx, [{"name": "raw", "host": GOOD, "port": 8080}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD)])

    def startup_fail(name, policy_over, port=3140):
        path = ctx.path("%s.yaml" % name)
        pol = harness.base_policy(ctx.path("%s-audit.log" % name), TIERS, port, 9140, **policy_over)
        with open(path, "w") as f:
            f.write(harness.to_yaml(pol) + "\n")
        return run_cli(ctx, "-c", path, timeout=20)

    with ctx.case("proxy port already in use -> exit 3"):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 3140))
        blocker.listen(1)
        try:
            rc, out, err = startup_fail("inuse", {})
        finally:
            blocker.close()
        expect(rc == 3, "exit %s, want 3 (stderr %r)" % (rc, err[-300:]))
        no_sanitizer(err)

    with ctx.case("audit output not writable -> exit 3"):
        rc, out, err = startup_fail("noaudit", {"audit": {"output": ctx.path("no-such-dir", "a.log")}})
        expect(rc == 3, "exit %s, want 3 (stderr %r)" % (rc, err[-300:]))
        no_sanitizer(err)

    # ---------------------------------------------------------------- churn
    px = good_px.start()
    with ctx.case("survives 200 connect/close cycles, resets, partial and bad requests"):
        t0 = time.monotonic()
        for i in range(200):
            s = harness.bound_socket("127.0.0.2")
            s.settimeout(3)
            s.connect(("127.0.0.1", 3128))
            if i % 4 == 1:
                s.sendall(b"CONNECT allowed.example:8080 HTT")          # partial, then close
            elif i % 4 == 2:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            elif i % 4 == 3:
                s.sendall(b"\x00\xff garbage \r\n\r\n")
            s.close()
        for i in range(50):
            r = harness.send_raw(b"BOGUS / HTTP/1.1\r\n\r\n", timeout=5)
            expect(r.status is not None and 400 <= r.status < 600, "bad request %d: %s" % (i, r.describe()))
        for i in range(20):    # tunnels closed by RST from the client mid-stream
            r = harness.connect(T)
            expect(r.status == 200, r.describe())
            r.sock.sendall(b"HOLD\n")
            r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            r.close()
        expect(time.monotonic() - t0 < 60, "churn took %.1fs" % (time.monotonic() - t0))
        expect(px.alive(), "daemon died (exit %s)" % (px.proc.poll() if px.proc else None))
        harness.expect_served(T, what="after churn: ")

    # ---------------------------------------------------------------- idle timeout
    idle_px = harness.Proxy(ctx, "idle", TIERS, proxy_port=3129, admin_port=9091,
                            timeouts={"idle": "2s"}).start()
    with ctx.case("idle timeout 2s closes an idle tunnel, audit reason idle_timeout"):
        r = open_hold(3129)
        dt = eof_time(r.sock, 6)
        r.close()
        expect(dt is not None, "idle tunnel still open after 6s")
        expect(1.5 <= dt <= 4.0, "idle tunnel closed after %.2fs, idle timeout is 2s" % dt)
        rec = idle_px.audit.by_port(r.src_port)
        expect(rec is not None, "no audit record for the idle tunnel")
        harness.check_tunnel_record(rec)
        expect(get(rec, "event.reason") == "idle_timeout", "audit reason %r" % get(rec, "event.reason"))

    with ctx.case("a tunnel with traffic every 0.5s outlives the 2s idle timeout"):
        r = open_hold(3129)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 3.5:
            expect(echo(r, b"keepalive-%d" % n), "echo %d failed after %.2fs" % (n, time.monotonic() - t0))
            n += 1
            time.sleep(0.5)
        r.close()
        rec = idle_px.audit.by_port(r.src_port)
        expect(rec is not None, "no audit record")
        expect(get(rec, "event.reason") == "client_closed", "audit reason %r" % get(rec, "event.reason"))

    # ---------------------------------------------------------------- drain
    drain_px = harness.Proxy(ctx, "drain", TIERS, proxy_port=3130, admin_port=9092).start()
    with ctx.case("SIGTERM: listener stops, open tunnel keeps working, exit 0 when the client closes"):
        r = open_hold(3130)
        t0 = time.monotonic()
        os.kill(drain_px.proc.pid, signal.SIGTERM)
        time.sleep(0.5)
        # new connections: refused outright or answered 503 shutting_down
        nr = harness.connect(T, proxy_port=3130, timeout=3)
        if nr.status is not None:
            harness.expect_refusal(nr, 503, "shutting_down", audit=drain_px.audit)
        else:
            expect("refused" in (nr.error or "").lower() or "reset" in (nr.error or "").lower(),
                   "new connection during drain: %s" % nr.describe())
        expect(echo(r, b"still-alive-after-sigterm"), "open tunnel stopped working after SIGTERM")
        expect(drain_px.alive(), "daemon exited while a tunnel was open")
        r.close()
        t_close = time.monotonic()
        try:
            rc = drain_px.proc.wait(timeout=6)
        except subprocess.TimeoutExpired:
            rc = None
        waited = time.monotonic() - t_close
        expect(rc == 0, "exit status %s after drain, want 0" % rc)
        expect(time.monotonic() - t0 < 2.8 and waited < 1.5,
               "exited %.2fs after the client closed (%.2fs after SIGTERM, drain timeout 3s): "
               "should exit once the last tunnel closed" % (waited, time.monotonic() - t0))
        rec = drain_px.audit.by_port(r.src_port)
        expect(rec is not None, "no audit record for the drained tunnel")
        expect(get(rec, "event.reason") == "client_closed", "audit reason %r" % get(rec, "event.reason"))

    drain2 = harness.Proxy(ctx, "drain-timeout", TIERS, proxy_port=3131, admin_port=9093).start()
    with ctx.case("SIGTERM: a tunnel open at the 3s drain timeout is cut, reason drain_timeout, exit 0"):
        r = open_hold(3131)
        t0 = time.monotonic()
        os.kill(drain2.proc.pid, signal.SIGTERM)
        time.sleep(0.3)
        expect(echo(r, b"before-drain-timeout"), "tunnel stopped working right after SIGTERM")
        dt = eof_time(r.sock, 8)
        r.close()
        dt = None if dt is None else dt + 0.3
        expect(dt is not None, "tunnel still open 8s after SIGTERM")
        expect(2.5 <= dt <= 5.0, "tunnel cut %.2fs after SIGTERM, drain timeout is 3s" % dt)
        try:
            rc = drain2.proc.wait(timeout=max(0.5, 7 - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            rc = None
        expect(rc == 0, "exit status %s, want 0 (within 7s of SIGTERM)" % rc)
        rec = drain2.audit.by_port(r.src_port)
        expect(rec is not None, "no audit record for the cut tunnel")
        harness.check_tunnel_record(rec)
        expect(get(rec, "event.reason") == "drain_timeout", "audit reason %r" % get(rec, "event.reason"))

    with ctx.case("a nesting bomb written over the policy of a running proxy: it keeps serving, refuses the "
                  "file, and still stops on SIGTERM right away"):
        bp = harness.Proxy(ctx, "bombed", {"b": {"sources": ["127.0.0.2/32"],
                                                 "allow": [{"host": "allowed.example", "ports": [8080]}]}},
                           proxy_port=3141, admin_port=9141).start()
        lm = harness.log_mark(bp)
        harness.write_atomic(bp.policy_path, bomb_head + "[" * 80000 + "\n")
        failed = harness.wait_until(lambda: any("reload" in str(x.get("message")) and "failed" in
                                                str(x.get("message")) for x in harness.log_since(bp, lm)), 10)
        expect(failed, "no failed reload logged")
        harness.expect_served("allowed.example:8080", proxy_port=3141, what="after the refused reload: ")
        harness.write_atomic(bp.policy_path, bomb_head + "[" * 80000 + "\n# again\n")
        time.sleep(0.3)  # the inotify debounce (200 ms) has started the next load
        t0 = time.monotonic()
        rc = bp.stop(timeout=8)
        expect(rc == 0, "exit %s %.1fs after SIGTERM during a reload" % (rc, time.monotonic() - t0))

    with ctx.case("SIGTERM with no connection open: exit 0 within 2s"):
        t0 = time.monotonic()
        rc = px.stop(timeout=5)
        dt = time.monotonic() - t0
        expect(rc == 0 and dt < 2.0, "exit %s after %.2fs" % (rc, dt))

    ctx.final_checks([px.audit, idle_px.audit, drain_px.audit, drain2.audit])
