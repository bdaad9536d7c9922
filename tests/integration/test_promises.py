#!/usr/bin/python3
"""Scenario: the promises of one connection's life, kept on every path.

Each promise lives at one point of the connection lifecycle and every path
goes through it; each case here attacks one promise from the path that used
to forget it, with real clients and real (some malicious) upstreams:

- an exchange is over only when both directions ended by their own framing:
  a malicious upstream that answers early (chunked and Content-Length
  variants) never receives a byte of the client's next request, and the next
  request is decided and audited on its own;
- every byte a source sends upstream is charged to its upload budget, on
  every path and in any mix: plain-HTTP heads and bodies, CONNECT tunnels,
  upgraded (101) exchanges; a spent budget refuses the next request of any
  kind with 429;
"""
import json
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"      # allowed.example: an origin with malicious answers under /evil/
OTHER = "198.51.100.30"     # other.example: an honest origin
TOKEN = "Bearer s3cr3t-second-request"

BUDGET = 10000              # caps.upload_bytes_per_source of tier "budget"

ctx = harness.start(__file__, v4=[GOOD, OTHER])
with ctx:
    ups = harness.Upstreams(ctx, [
        {"name": "evil80", "host": GOOD, "port": 80, "kind": "http-origin"},
        {"name": "sink8080", "host": GOOD, "port": 8080, "kind": "tcp"},
        {"name": "other80", "host": OTHER, "port": 80, "kind": "http-origin"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD), ("other.example", OTHER)])
    px = harness.Proxy(ctx, "proxy", {
        "web": {"sources": ["127.0.0.2/32"],
                "allow": [{"host": "allowed.example", "ports": [80]},
                          {"host": "other.example", "ports": [80]}]},
        "budget": {"sources": ["127.0.0.6/32", "127.0.0.7/32", "127.0.0.8/32"],
                   "allow": [{"host": "allowed.example", "ports": [80, 8080]}],
                   "http": {"allow_upgrade": True},
                   "caps": {"upload_bytes_per_source": {"bytes": BUDGET, "window": "1h"}}},
    }).start()
    audit = px.audit

    def records(port, n, timeout=5.0):
        """Exactly n audit records for one client connection (by source port), in order."""
        f = lambda: audit.find(lambda r: get(r, "source.port") == port)  # noqa: E731
        harness.wait_until(lambda: len(f()) >= n, timeout)
        time.sleep(0.2)
        got = f()
        expect(len(got) == n, "%d audit records for source port %s, want %d: %s" %
               (len(got), port, n, [json.dumps(r)[:300] for r in got]))
        return got

    def evil_event(mark, what, timeout=10.0):
        f = lambda: [e for e in ups.events()[mark:] if e["event"] == "evil" and e["what"] == what]  # noqa: E731
        got = harness.wait_until(f, timeout)
        expect(got, "the malicious upstream logged no end of its session")
        return got[0]

    def wait_in_buf(c, marker, timeout=5.0):
        deadline = time.monotonic() + timeout
        while marker not in c.buf:
            if not c._fill(deadline):
                raise harness.CaseFailed("connection closed before %r arrived (got %r)" % (marker, c.buf[:200]))

    # ============================================ an exchange ends by both framings
    with ctx.case("early answer, chunked upload: the next request on the connection never reaches the "
                  "malicious upstream, is decided on its own and gets its own origin's answer"):
        mark = len(ups.events())
        other_mark = len(ups.requests("other80"))
        c = harness.HttpClient("127.0.0.2")
        c.send(b"POST http://allowed.example/evil/chunked-desync HTTP/1.1\r\nHost: allowed.example\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        # The upstream answers at once: a head and the size line of a 256-byte chunk.
        wait_in_buf(c, b"\r\n\r\n100\r\n")
        c.send(b"5\r\nhello\r\n0\r\n\r\n")
        r1 = c.response("POST")
        expect(r1.status == 200 and r1.complete and len(r1.body) == 256,
               "first response: %s, complete=%s, %d body bytes" % (r1.describe(), r1.complete, len(r1.body)))
        err = c.send(b"GET http://other.example/second HTTP/1.1\r\nHost: other.example\r\n"
                     b"Authorization: " + TOKEN.encode() + b"\r\n\r\n")
        r2 = c.response("GET")
        c.close()
        ev = evil_event(mark, "chunked-desync")
        expect(TOKEN not in ev["leaked"] and not ev["leaked"],
               "the malicious upstream received %d bytes after its exchange: %r" %
               (len(ev["leaked"]), ev["leaked"][:200]))
        expect(err is None and r2.status == 200 and r2.header("X-Origin") == "other80",
               "second response is not other.example's: %s %r (send: %s)" % (r2.describe(), r2.body[:80], err))
        got = ups.requests("other80")[other_mark:]
        expect(len(got) == 1 and ["Authorization", TOKEN] in got[0]["headers"],
               "other.example got %d requests: %s" % (len(got), got))
        recs = records(c.src_port, 2)
        expect([get(r, "url.domain") for r in recs] == ["allowed.example", "other.example"] and
               all(get(r, "event.reason") == "allowed" for r in recs),
               "records: %s" % [(get(r, "url.domain"), get(r, "event.reason")) for r in recs])

    with ctx.case("early chunked 401 to a Content-Length upload: the upload body is never parsed as a "
                  "request; the next request on the connection gets its own answer"):
        mark = len(ups.events())
        other_mark = len(ups.requests("other80"))
        body = b"GET http://other.example/smuggled HTTP/1.1\r\nHost: other.example\r\n\r\n"
        c = harness.HttpClient("127.0.0.2")
        c.send(b"POST http://allowed.example/evil/cl-early HTTP/1.1\r\nHost: allowed.example\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body))
        wait_in_buf(c, b"\r\n\r\n")
        c.send(body)
        r1 = c.response("POST")
        expect(r1.status == 401 and r1.complete, "first response: %s" % r1.describe())
        # The connection may close (the exchange could not end cleanly) or carry on; if it
        # carries on, the next response must answer the next request.
        err = c.send(b"GET http://other.example/third HTTP/1.1\r\nHost: other.example\r\n\r\n")
        r2 = c.response("GET", timeout=5.0)
        c.close()
        evil_event(mark, "cl-early")
        got = ups.requests("other80")[other_mark:]
        expect(all(e["target"] != "/smuggled" for e in got),
               "the upload body reached other.example as a request: %s" % got)
        if r2.status is not None:
            expect(r2.header("X-Origin") == "other80" and b"/third" in r2.body,
                   "the response after the 401 is not the answer to the next request: %s %r" %
                   (r2.describe(), r2.body[:120]))
            recs = records(c.src_port, 2)
            expect([get(r, "url.path") for r in recs] == ["/evil/cl-early", "/third"],
                   "records: %s" % [get(r, "url.path") for r in recs])
        else:
            expect(c.eof_seen, "no response to the next request and no close: %s" % r2.describe())
            records(c.src_port, 1)

    # ============================================ every upload byte is charged
    def upstream_rx_since(mark, timeout=10.0):
        """Bytes every upstream session opened after mark received, once each has closed."""
        def sessions():
            evs = ups.events()[mark:]
            acc = [e for e in evs if e["event"] == "accept"]
            done = [e for e in evs if e["event"] == "close"]
            return acc, done
        harness.wait_until(lambda: len(sessions()[1]) >= len(sessions()[0]), timeout)
        acc, done = sessions()
        expect(len(done) == len(acc), "%d upstream sessions still open" % (len(acc) - len(done)))
        return sum(e.get("rx", 0) for e in done), len(acc)

    def post(src, n, path="/sink"):
        c = harness.HttpClient(src)
        c.send(b"POST http://allowed.example%s HTTP/1.1\r\nHost: allowed.example\r\n"
               b"Content-Length: %d\r\n\r\n" % (path.encode(), n))
        err = c.send(os.urandom(n))
        r = c.response("POST")
        c.close()
        return r, c.src_port, err

    def spent(src):
        """The budget is spent: the next plain-HTTP request and the next CONNECT are refused."""
        c = harness.HttpClient(src)
        c.send(b"GET http://allowed.example/cl/10 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        r = c.response("GET")
        r.closed = c.at_eof(3.0)
        c.close()
        harness.expect_refusal(r, 429, ["source_upload_budget"], audit=audit)
        harness.expect_refusal(harness.connect("allowed.example:8080", src=src), 429,
                               ["source_upload_budget"], audit=audit)

    with ctx.case("upload budget, plain HTTP: a 1 MB POST is cut at the budget (heads included), then "
                  "plain HTTP and CONNECT get 429 source_upload_budget"):
        mark = len(ups.events())
        r, port, _ = post("127.0.0.6", 1000000)
        rx, n = upstream_rx_since(mark)
        expect(n == 1 and 0 < rx <= BUDGET, "the upstream received %d bytes over %d connection(s), "
               "want 1..%d over 1" % (rx, n, BUDGET))
        (rec,) = records(port, 1)
        expect(get(rec, "event.reason") == "source_upload_budget" and
               rx <= get(rec, "source.bytes") <= BUDGET,
               "record: reason %s, source.bytes %s (upstream got %d)" %
               (get(rec, "event.reason"), get(rec, "source.bytes"), rx))
        spent("127.0.0.6")

    with ctx.case("upload budget, CONNECT then plain HTTP: one budget over both paths"):
        mark = len(ups.events())
        first = 9000
        r = harness.connect("allowed.example:8080", src="127.0.0.7")
        expect(r.status == 200, "CONNECT: %s" % r.describe())
        r.sock.sendall(b"SINK %d\n" % first + os.urandom(first))
        line = harness.recv_line(r.sock, r.leftover)
        expect(line.startswith(b"SINK %d " % first), "sink answered %r" % line[:60])
        r.close()
        post("127.0.0.7", 5000)
        rx, n = upstream_rx_since(mark)
        expect(n == 2 and first < rx <= BUDGET, "the upstreams received %d bytes over %d connections, "
               "want %d..%d over 2" % (rx, n, first + 1, BUDGET))
        spent("127.0.0.7")

    with ctx.case("upload budget, an upgraded (101) exchange: its relay is charged to the same "
                  "budget as its heads"):
        mark = len(ups.events())
        c = harness.HttpClient("127.0.0.8")
        c.send(b"GET http://allowed.example/upgrade HTTP/1.1\r\nHost: allowed.example\r\n"
               b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        r = c.response("GET")
        expect(r.status == 101, "upgrade: %s" % r.describe())
        for _ in range(20):
            if c.send(os.urandom(1000)) is not None:
                break
        harness.wait_until(lambda: c.at_eof(0.2), 10.0)
        c.close()
        rx, n = upstream_rx_since(mark)
        expect(n == 1 and 0 < rx <= BUDGET, "the upstream received %d bytes, want 1..%d" % (rx, BUDGET))
        spent("127.0.0.8")

    ctx.final_checks([audit])
