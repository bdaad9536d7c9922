#!/usr/bin/python3
"""Scenario 8: per-tunnel byte caps and per-source limits.

caps.upload_bytes / caps.download_bytes: the side sending 5x the cap is cut at
the cap (reason upload_cap / download_cap); the other end never gets more than
the cap, and what it got is an exact prefix of what was sent; the record's
byte counts are <= the cap and >= what was delivered.  Plain and TLS tunnels.
caps.connections_per_source: the N+1th concurrent tunnel from one source gets
429 + Retry-After (source_connection_limit) while the N open tunnels keep
working; another source is unaffected; closing one frees a slot.
caps.upload_bytes_per_source: many small tunnels spend the budget; the tunnel
that crosses it is cut at the budget, a live tunnel sending afterwards gets
nothing through, new tunnels get 429 + Retry-After (source_upload_budget),
another source is unaffected, the upstream got <= the budget from the source;
with a short window the budget comes back.  Top-level caps are inherited.
"""
import email.utils
import hashlib
import os
import random
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

V4 = "198.51.100.10"
T = "allowed.example:8080"
CAP = 64 * 1024
BUDGET = 40000
SMALL = 8192
WIN_BUDGET = 10000
WIN = 2.0
DEF_CAP = 32 * 1024

ctx = harness.start(__file__, v4=[V4])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"},
        {"name": "tls443", "host": V4, "port": 443, "kind": "tls-raw"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])
    allow = [{"host": "allowed.example", "ports": [8080, 443]}]
    px = harness.Proxy(ctx, "proxy", {
        "cap": {"sources": ["127.0.0.2/32"], "allow": allow,
                "caps": {"upload_bytes": "64KiB", "download_bytes": "64KiB"}},
        "conn": {"sources": ["127.0.0.3/32", "127.0.0.4/32"], "allow": allow,
                 "caps": {"connections_per_source": 3}},
        "budget": {"sources": ["127.0.0.5/32", "127.0.0.6/32"], "allow": allow,
                   "caps": {"upload_bytes_per_source": {"bytes": BUDGET, "window": "1m"}}},
        "win": {"sources": ["127.0.0.7/32"], "allow": allow,
                "caps": {"upload_bytes_per_source": {"bytes": WIN_BUDGET, "window": "2s"}}},
    }).start()
    dpx = harness.Proxy(ctx, "defaults", {"d": {"sources": ["127.0.0.2/32"], "allow": allow}},
                        proxy_port=3129, admin_port=9091, caps={"upload_bytes": "32KiB"}).start()
    audit = px.audit

    def tunnel(target=T, src="127.0.0.2", proxy=None):
        r = harness.connect(target, src=src, proxy_port=(proxy or px).port)
        expect(r.status == 200, "CONNECT %s from %s: %s" % (target, src, r.describe()))
        return r

    def session(listener, mark, timeout=5.0):
        # The upstream logs its accept on its own thread: wait for it to appear
        # (sessions_since waits only for the closes of accepts already logged).
        harness.wait_until(lambda: len(ups.sessions_since(listener, mark, 0)) >= 1, timeout)
        sess = ups.sessions_since(listener, mark, timeout)
        expect(len(sess) == 1, "upstream %s accepted %d connections, want 1" % (listener, len(sess)))
        expect(sess[0][1] is not None, "upstream %s connection still open %.0fs later" % (listener, timeout))
        return sess[0][1]

    def end_record(r, reason, proxy=None):
        rec = (proxy or px).audit.by_port(r.src_port, timeout=5)
        expect(rec is not None, "no audit record for source port %s" % r.src_port)
        harness.check_tunnel_record(rec)
        expect(get(rec, "event.reason") == reason, "audit event.reason %r, want %s" %
               (get(rec, "event.reason"), reason))
        return rec

    def retry_after_ok(reply, most=None):
        v = reply.header("Retry-After")
        expect(v is not None, "429 without Retry-After (headers %r)" % reply.headers)
        if re.fullmatch(r"\d+", v):
            secs = int(v)
        else:
            d = email.utils.parsedate_to_datetime(v)
            expect(d is not None, "Retry-After %r is neither delta-seconds nor an HTTP-date" % v)
            secs = d.timestamp() - time.time()
        if most is not None:
            expect(secs <= most, "Retry-After %r: longer than the %ss window" % (v, most))
        return v

    def upload_cut(src, cap, proxy=None, label="upload"):
        """SINK 5x cap through a tunnel whose upload cap is cap: cut at the cap."""
        data = random.Random(src.encode() + label.encode()).randbytes(5 * cap)
        head = b"SINK %d\n" % len(data)
        mark = ups.mark("raw8080")
        r = tunnel(src=src, proxy=proxy)
        harness.send_until_cut(r.sock, head + data, timeout=10)
        res = harness.await_close(r.sock, 10)
        r.close()
        ev = session("raw8080", mark)
        rec = (proxy or px).audit.by_port(r.src_port, timeout=5)
        seen = "audit reason %r" % get(rec, "event.reason") if rec else "no audit record"
        expect(res["end"] is not None, "tunnel still open 10s after sending %d bytes (%s)" % (len(data), seen))
        expect(res["got"] == b"", "client got %r (the upstream answered: it read the whole SINK?)" % res["got"][:80])
        expect(0 < ev["rx"] <= cap, "upstream received %d bytes, want 1..%d (%s)" % (ev["rx"], cap, seen))
        n = ev.get("n", 0)
        expect(ev.get("sha256") == hashlib.sha256(data[:n]).hexdigest(),
               "the %d bytes the upstream got are not the prefix the client sent" % n)
        rec = end_record(r, "upload_cap", proxy)
        sb = get(rec, "source.bytes")
        expect(ev["rx"] <= sb <= cap, "audit source.bytes %r, want between %d (delivered) and %d (cap)" %
               (sb, ev["rx"], cap))
        print("# %s: upstream received %d of the %d-byte cap" % (label, ev["rx"], cap))

    # ---------------------------------------------------------------- per-tunnel caps
    with ctx.case("upload cap 64KiB: client sends 5x the cap -> cut, upstream got 1..cap bytes (a prefix), "
                  "record upload_cap, source.bytes <= cap"):
        upload_cut("127.0.0.2", CAP)

    with ctx.case("download cap 64KiB: upstream sends 5x the cap -> cut, client got 1..cap bytes (a prefix), "
                  "record download_cap, destination.bytes <= cap"):
        n = 5 * CAP
        want = random.Random(5).randbytes(n)
        mark = ups.mark("raw8080")
        r = tunnel()
        r.sock.sendall(b"SOURCE %d 5\n" % n)
        res = harness.await_close(r.sock, 10)
        r.close()
        got = r.leftover + res["got"]
        rec = audit.by_port(r.src_port, timeout=5)
        seen = "audit reason %r" % get(rec, "event.reason") if rec else "no audit record"
        expect(res["end"] is not None, "tunnel still open 10s later (%d bytes received; %s)" % (len(got), seen))
        expect(0 < len(got) <= CAP, "client received %d bytes, want 1..%d (%s)" % (len(got), CAP, seen))
        expect(got == want[:len(got)], "the %d bytes received are not the prefix the upstream sent" % len(got))
        session("raw8080", mark)
        rec = end_record(r, "download_cap")
        db = get(rec, "destination.bytes")
        expect(len(got) <= db <= CAP, "audit destination.bytes %r, want between %d (delivered) and %d (cap)" %
               (db, len(got), CAP))
        print("# download: client received %d of the %d-byte cap" % (len(got), CAP))

    with ctx.case("a tunnel under both caps is untouched (60000 bytes up, answer back, client_closed)"):
        data = random.Random(9).randbytes(60000)
        r = tunnel()
        r.sock.sendall(b"SINK %d\n" % len(data) + data)
        line = harness.recv_line(r.sock, r.leftover, timeout=10)
        r.close()
        expect(line == b"SINK %d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()),
               "upstream answered %r" % line[:100])
        end_record(r, "client_closed")

    with ctx.case("upload cap on a TLS tunnel (443): handshake, then 5x the cap of application data -> cut, "
                  "upstream got <= cap raw bytes, record upload_cap"):
        mark = ups.mark("tls443")
        r = tunnel("allowed.example:443")
        c = harness.TlsClient("allowed.example", cafile=certs["ca"])
        r.sock.sendall(c.hello())
        c.finish(r.sock, r.leftover, timeout=10)
        data = random.Random(13).randbytes(5 * CAP)
        try:
            c.send(r.sock, b"SINK %d\n" % len(data))
            for off in range(0, len(data), 8192):
                c.send(r.sock, data[off:off + 8192])
        except OSError:
            pass
        res = harness.await_close(r.sock, 10)
        r.close()
        ev = session("tls443", mark)
        expect(res["end"] is not None, "tunnel still open 10s later")
        expect(len(c.hello()) < ev["raw_rx"] <= CAP, "upstream received %d raw bytes, want %d..%d" %
               (ev["raw_rx"], len(c.hello()) + 1, CAP))
        rec = end_record(r, "upload_cap")
        sb = get(rec, "source.bytes")
        expect(ev["raw_rx"] <= sb <= CAP, "audit source.bytes %r, want between %d and %d" % (sb, ev["raw_rx"], CAP))

    with ctx.case("top-level caps.upload_bytes 32KiB is inherited by a tier without caps"):
        upload_cut("127.0.0.2", DEF_CAP, proxy=dpx, label="defaults upload")

    # ---------------------------------------------------------------- connections per source
    def hold(src):
        r = tunnel(src=src)
        r.sock.sendall(b"HOLD\n")
        line = harness.recv_line(r.sock, r.leftover, timeout=5)
        expect(line == b"HOLD ok\n", "HOLD tunnel from %s answered %r" % (src, line))
        return r

    def echo_ok(r, token):
        r.sock.sendall(token + b"\n")
        return harness.recv_line(r.sock, b"", timeout=5) == token + b"\n"

    held = []
    with ctx.case("connections_per_source 3: the 4th concurrent tunnel from 127.0.0.3 gets 429 + Retry-After, "
                  "source_connection_limit"):
        for _ in range(3):
            held.append(hold("127.0.0.3"))
        mark = ups.mark("raw8080")
        rep = harness.connect(T, src="127.0.0.3")
        harness.expect_refusal(rep, 429, "source_connection_limit", audit=audit, ruleset="conn")
        retry_after_ok(rep)
        expect(ups.mark("raw8080") == mark, "the refused tunnel reached the upstream")

    with ctx.case("after the 429 the 3 open tunnels still exchange data"):
        expect(len(held) == 3, "only %d tunnels were open" % len(held))
        bad = [i for i, r in enumerate(held) if not echo_ok(r, b"still-alive-%d" % i)]
        expect(not bad, "tunnels %s no longer echo" % bad)

    with ctx.case("another source of the same tier (127.0.0.4) is unaffected"):
        harness.expect_served(T, src="127.0.0.4", what="127.0.0.4: ")

    with ctx.case("after closing one of the 3, a new tunnel from 127.0.0.3 works (within 3s)"):
        expect(held, "no tunnel to close")
        held.pop(0).close()
        got = None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            rep = harness.connect(T, src="127.0.0.3")
            if rep.status == 200:
                got = rep
                break
            expect(rep.status == 429, "while waiting for a free slot: %s" % rep.describe())
            time.sleep(0.2)
        expect(got is not None, "still 429 3s after a tunnel was closed")
        got.sock.sendall(b"SAY slot-free\n")
        ans = harness.recv_line(got.sock, got.leftover, timeout=5)
        got.close()
        expect(ans == b"slot-free\n", "new tunnel answered %r" % ans)
    for r in held:
        r.close()

    # ---------------------------------------------------------------- upload budget per source
    def small_sink(src, n, seed):
        data = random.Random(seed).randbytes(n)
        r = tunnel(src=src)
        r.sock.sendall(b"SINK %d\n" % n + data)
        line = harness.recv_line(r.sock, r.leftover, timeout=10)
        r.close()
        expect(line == b"SINK %d %s\n" % (n, hashlib.sha256(data).hexdigest().encode()),
               "small tunnel from %s (%d bytes) answered %r" % (src, n, line[:100]))
        return end_record(r, "client_closed")

    budget_mark = ups.mark("raw8080")
    spent = []
    with ctx.case("upload budget 40000/1m: four 8 KiB tunnels from 127.0.0.5 pass"):
        for i in range(4):
            rec = small_sink("127.0.0.5", SMALL, 100 + i)
            spent.append(get(rec, "source.bytes"))

    live2 = None
    live2_mark = [None]
    with ctx.case("the tunnel that crosses the budget is cut at it: reason source_upload_budget, upstream got "
                  "<= the remainder"):
        expect(len(spent) == 4, "the small tunnels did not all pass")
        remain = BUDGET - sum(spent)
        live2_mark[0] = ups.mark("raw8080")
        live2 = tunnel(src="127.0.0.5")            # opened now, used after the budget is spent
        data = random.Random(7).randbytes(100000)
        # The upstream logs its accept a moment after the proxy's 200: wait for it.
        harness.wait_until(lambda: ups.mark("raw8080") > live2_mark[0], 5)
        mark = ups.mark("raw8080")
        expect(mark == live2_mark[0] + 1, "the live tunnel did not reach the upstream")
        r = tunnel(src="127.0.0.5")
        harness.send_until_cut(r.sock, b"SINK %d\n" % len(data) + data, timeout=10)
        res = harness.await_close(r.sock, 10)
        r.close()
        ev = session("raw8080", mark)
        rec = audit.by_port(r.src_port, timeout=5)
        seen = "audit reason %r" % get(rec, "event.reason") if rec else "no audit record"
        expect(res["end"] is not None, "tunnel still open 10s after sending 100000 bytes (%s)" % seen)
        expect(ev["rx"] <= remain, "upstream received %d bytes, the remaining budget was %d (%s)" %
               (ev["rx"], remain, seen))
        rec = end_record(r, "source_upload_budget")
        expect(ev["rx"] <= get(rec, "source.bytes") <= remain, "audit source.bytes %r, want between %d and %d" %
               (get(rec, "source.bytes"), ev["rx"], remain))

    with ctx.case("a live tunnel of the same source sending after the budget is spent gets nothing through "
                  "(cut, source_upload_budget)"):
        expect(live2 is not None, "no live tunnel")
        mark = ups.mark("raw8080")
        try:
            live2.sock.sendall(b"SAY after-budget\n" + b"x" * 1000)
        except OSError:
            pass
        res = harness.await_close(live2.sock, 5)
        live2.close()
        rec = audit.by_port(live2.src_port, timeout=5)
        seen = "audit reason %r" % get(rec, "event.reason") if rec else "no audit record"
        expect(res["got"] == b"", "client got %r: the upstream answered (%s)" % (res["got"][:60], seen))
        expect(res["end"] is not None, "live tunnel still open 5s after sending past the budget (%s)" % seen)
        a, c = ups.sessions_since("raw8080", live2_mark[0], 5)[0]
        expect(c is not None, "the live tunnel's upstream connection is still open 5s later")
        expect(c["rx"] == 0, "upstream received %d bytes on the live tunnel after the budget was spent" % c["rx"])
        rec = end_record(live2, "source_upload_budget")
        expect(get(rec, "source.bytes") == 0, "audit source.bytes %r, want 0" % get(rec, "source.bytes"))
        expect(mark == ups.mark("raw8080"), "a new upstream connection appeared")

    with ctx.case("after the budget is spent a new tunnel from 127.0.0.5 gets 429 + Retry-After (<= 60s), "
                  "source_upload_budget"):
        mark = ups.mark("raw8080")
        rep = harness.connect(T, src="127.0.0.5")
        harness.expect_refusal(rep, 429, "source_upload_budget", audit=audit, ruleset="budget")
        retry_after_ok(rep, most=60)
        expect(ups.mark("raw8080") == mark, "the refused tunnel reached the upstream")

    with ctx.case("the upstream received <= 40000 bytes in total from 127.0.0.5's tunnels"):
        sess = ups.sessions_since("raw8080", budget_mark, 5)
        expect(all(c is not None for _, c in sess), "some upstream connections are still open")
        total = sum(c["rx"] for _, c in sess)
        # the small tunnels' command lines count too: that is client->upstream traffic
        expect(0 < total <= BUDGET, "upstream received %d bytes over %d connections, budget %d" %
               (total, len(sess), BUDGET))

    with ctx.case("another source of the budget tier (127.0.0.6) is unaffected"):
        small_sink("127.0.0.6", SMALL, 200)

    with ctx.case("budget 10000 per 2s window: spent -> cut and 429 (Retry-After <= 2s), usable again "
                  "after the window"):
        rec = small_sink("127.0.0.7", 9000, 300)
        remain = WIN_BUDGET - get(rec, "source.bytes")
        mark = ups.mark("raw8080")
        r = tunnel(src="127.0.0.7")
        harness.send_until_cut(r.sock, b"SINK 5000\n" + b"y" * 5000, timeout=10)
        res = harness.await_close(r.sock, 5)
        r.close()
        t_spent = time.monotonic()
        ev = session("raw8080", mark)
        expect(res["end"] is not None and ev["rx"] <= remain,
               "crossing tunnel: %s, upstream got %d bytes, remaining budget %d" %
               ("cut" if res["end"] else "still open", ev["rx"], remain))
        end_record(r, "source_upload_budget")
        rep = harness.connect(T, src="127.0.0.7")
        harness.expect_refusal(rep, 429, "source_upload_budget", audit=audit, ruleset="win")
        retry_after_ok(rep, most=WIN)
        back = None
        while time.monotonic() - t_spent < WIN + 3:
            time.sleep(0.25)
            rep = harness.connect(T, src="127.0.0.7")
            if rep.status == 200:
                back = rep
                break
            expect(rep.status == 429, "while waiting for the window: %s" % rep.describe())
        expect(back is not None, "still 429 %.1fs after the budget was spent (window 2s)" % (WIN + 3))
        back.close()
        small_sink("127.0.0.7", 1000, 301)

    ctx.final_checks([audit, dpx.audit])
