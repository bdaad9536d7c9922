#!/usr/bin/python3
"""Scenario: a stopped or killed scenario leaves no process behind.

A test runner's timeout stops a scenario with SIGTERM; a developer stops one
with ^C; an OOM killer or a runner that gives up sends SIGKILL. However it
ends, every process the scenario started (the daemon, dnsmasq, the upstream
servers) must die with it, and a scenario stopped by a signal still prints
its honest total. Each case starts a child scenario (this file in its child
role: a proxy, dnsmasq and upstreams, then idle), stops it, and looks for
any process that carries the child's tag in its environment.
"""
import os
import signal
import subprocess
import sys
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect  # noqa: E402

V4 = "198.51.100.10"
TAG = "PORTCULLIS_IT_HARNESS_TAG"

if os.environ.get(TAG):
    # The child: everything a typical scenario starts, then wait to be stopped.
    ctx = harness.start(__file__, v4=[V4])
    with ctx:
        ups = harness.Upstreams(ctx, [{"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"}])
        dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])
        px = harness.Proxy(ctx, "proxy", {"t": {"sources": ["127.0.0.2/32"],
                                                "allow": [{"host": "allowed.example", "ports": [8080]}]}})
        px.start()
        with ctx.case("child: proxy up"):
            expect(px.start_error is None, px.start_error)
        print("# ready", flush=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:   # idle until stopped (bounded)
            time.sleep(0.1)
    sys.exit(0)


def tagged(tag):
    """PIDs of live processes whose environment carries tag."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                env = f.read()
        except OSError:
            continue
        if ("%s=%s" % (TAG, tag)).encode() in env.split(b"\0"):
            try:
                with open("/proc/%s/stat" % d) as f:
                    if f.read().split(") ", 1)[1].startswith("Z"):
                        continue   # a zombie is already dead
            except OSError:
                continue
            found.append(int(d))
    return found


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return "%d %s" % (pid, f.read().replace(b"\0", b" ").decode("utf-8", "replace")[:120])
    except OSError:
        return "%d (gone)" % pid


ctx = harness.start(__file__)
with ctx:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
        name = signal.Signals(sig).name
        with ctx.case("%s to a running scenario: no process of it survives; %s" %
                      (name, "it still prints its total" if sig != signal.SIGKILL else "(nothing can print)")):
            tag = uuid.uuid4().hex
            env = dict(os.environ, **{TAG: tag})
            env.pop(harness.NETNS_MARK, None)   # each child in a namespace of its own
            child = subprocess.Popen([harness.PY, os.path.abspath(__file__), "--portcullis", ctx.binary],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=harness.die_with_me())
            out = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                line = child.stdout.readline().decode("utf-8", "replace")
                if not line:
                    break
                out.append(line)
                if line.startswith("# ready"):
                    break
            ready = any(ln.startswith("# ready") for ln in out)
            started = tagged(tag)
            if not ready:
                child.kill()
                child.wait(5)
            expect(ready, "the child scenario did not get ready: %s" % "".join(out)[-600:])
            expect(len(started) >= 4, "only %d tagged processes while running (want the scenario, proxy, "
                   "dnsmasq, upstreams)" % len(started))
            os.kill(child.pid, sig)
            try:
                rest, _ = child.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                rest, _ = child.communicate(timeout=5)
                raise harness.CaseFailed("the child scenario still ran 20s after %s" % name)
            text = "".join(out) + rest.decode("utf-8", "replace")
            left = harness.wait_until(lambda: not tagged(tag), 5) is True and [] or tagged(tag)
            expect(not left, "%d processes survived %s: %s" % (len(left), name, [cmdline(p) for p in left]))
            if sig != signal.SIGKILL:
                expect("not ok - scenario: stopped by signal" in text, "no 'stopped by signal' line: %r" %
                       text[-400:])
                last = text.strip().splitlines()[-1] if text.strip() else ""
                expect(last.endswith("failed") and " passed, " in last, "last line %r is not the total" % last)
                expect(child.returncode != 0, "a stopped scenario exited 0")
