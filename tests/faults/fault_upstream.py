#!/usr/bin/python3
"""Fault campaign: upstreams that fail mid-exchange, under load.

Phases of mixed allowed and denied tunnels and plain-HTTP requests, where
the allowed ones meet: an upstream that resets the connection mid-download
and mid-upload, a client that resets mid-download, an upstream that accepts
and then never reads or answers (the idle timeout ends it), and an upstream
that closes half-way through what it announced.  Every connection still
ends with one record; nothing is allowed without one; the denied host's
listeners never see a connection; the proxy keeps serving.
"""
import os
import socket
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import faultlib  # noqa: E402
from faultlib import expect, harness  # noqa: E402


def upload_into_reset(s, rest, deadline):
    s.sendall(b"RSTRECV 100000\n")
    try:
        s.sendall(b"u" * 400000)
    except OSError:
        pass
    return True


def reset_mid_download(s, rest, deadline):
    s.sendall(b"SOURCE 2000000 7\n")
    got = len(rest)
    while got < 65536:
        d = s.recv(65536)
        if not d:
            break
        got += len(d)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return True


def mute_upload(s, rest, deadline):
    s.sendall(b"MUTE\n")
    s.settimeout(1.0)
    try:
        s.sendall(b"m" * (1 << 20))
    except OSError:
        pass
    return True


ctx = harness.start(__file__, v4=[faultlib.GOOD, faultlib.BAD])
with ctx:
    env = faultlib.Env(ctx, timeouts={"connect": "1s", "idle": "2s", "drain": "3s"})
    load = faultlib.Load(env, threads=32, pace=0.05).start()

    def use(tunnel, path):
        def setup():
            load.tunnel_cmd, load.http_path = tunnel, path
        return setup

    phases = [
        ("baseline", None),
        ("upstream resets mid-download", use(lambda q: b"RSTSEND 300000\n", lambda q: b"/rst/300000")),
        ("upstream resets mid-upload", use(lambda q: upload_into_reset, lambda q: b"/cl/2000/%d" % q)),
        ("client resets mid-download", use(lambda q: reset_mid_download, lambda q: b"/cl/2000000/%d" % q)),
        ("upstream never reads or answers", use(lambda q: mute_upload, lambda q: b"/mute")),
        ("upstream closes half-way", use(lambda q: b"TRUNC 200000\n", lambda q: b"/trunc/200000")),
        ("well again", use(None, None)),
    ]
    faultlib.run_phases(load, phases, ops=200, seconds=3.0)
    load.stop()
    code = env.px.stop()
    faultlib.report_phases(ctx, "upstream", env, load, code, [p[0] for p in phases])
    with ctx.case("upstream, never answers: plain-HTTP requests get 504 response_timeout after the idle "
                  "timeout, with a record saying so"):
        ops = [op for op in load.ops if op.phase == "upstream never reads or answers" and op.kind == "http"]
        recs = {(faultlib.get(r, "source.ip"), faultlib.get(r, "source.port")): r for r in env.px.audit.records()}
        bad = [(op.status, faultlib.get(recs.get((op.src, op.port)) or {}, "event.reason")) for op in ops
               if op.status != 504 or faultlib.get(recs.get((op.src, op.port)) or {}, "event.reason")
               != "response_timeout"]
        expect(ops and not bad, "%d of %d: (status, reason) %s" % (len(bad), len(ops), bad[:5]))

    with ctx.case("upstream, well again: allowed exchanges succeed after the faults"):
        ok = [op for op in load.ops if op.phase == "well again" and op.kind in ("tunnel", "http") and op.ok]
        expect(len(ok) >= 20, "only %d allowed exchanges succeeded" % len(ok))
    ctx.final_checks([env.px.audit])
