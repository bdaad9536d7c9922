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
- the per-source slot is taken at accept and held across keep-alive: idle
  connections, slow heads and idle keep-alive connections all count against
  caps.connections_per_source, so one source cannot hold the process's
  limits.max_connections;
- the TLS-port rule holds on every path into a port: plain http:// and
  Upgrade to a tls.require_tls_ports port are refused (tls_required);
- interim (1xx) responses are bounded in number, charged to the download
  cap, and never pile up for a client that does not read;
- every request is decided under the policy current when its head
  completes: connections opened before a reload are decided by the new
  policy.
"""
import http.client
import json
import os
import re
import socket
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
PER_SOURCE = 5              # caps.connections_per_source of tier "limited"
MAX_CONNS = 40              # limits.max_connections of the proxy
MAX_INTERIM = 32            # interim responses forwarded before the exchange is bad_response

ctx = harness.start(__file__, v4=[GOOD, OTHER])
with ctx:
    ups = harness.Upstreams(ctx, [
        {"name": "evil80", "host": GOOD, "port": 80, "kind": "http-origin"},
        {"name": "sink8080", "host": GOOD, "port": 8080, "kind": "tcp"},
        {"name": "tls443", "host": GOOD, "port": 443, "kind": "tcp", "role": "forbidden"},
        {"name": "tls8443", "host": GOOD, "port": 8443, "kind": "tcp", "role": "forbidden"},
        {"name": "other80", "host": OTHER, "port": 80, "kind": "http-origin"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD), ("other.example", OTHER)])
    tls_allow = [{"host": "allowed.example", "ports": [80, 443, 8443]}]
    px = harness.Proxy(ctx, "proxy", {
        "web": {"sources": ["127.0.0.2/32"],
                "allow": [{"host": "allowed.example", "ports": [80]},
                          {"host": "other.example", "ports": [80]}],
                "caps": {"connections_per_source": 64}},
        "budget": {"sources": ["127.0.0.6/32", "127.0.0.7/32", "127.0.0.8/32"],
                   "allow": [{"host": "allowed.example", "ports": [80, 8080]}],
                   "http": {"allow_upgrade": True},
                   "caps": {"connections_per_source": 64,
                            "upload_bytes_per_source": {"bytes": BUDGET, "window": "1h"}}},
        "limited": {"sources": ["127.0.0.10/32", "127.0.0.15/32"],
                    "allow": [{"host": "allowed.example", "ports": [80, 8080]}],
                    "caps": {"connections_per_source": PER_SOURCE}},
        "tlsports": {"sources": ["127.0.0.11/32"], "allow": tls_allow, "http": {"allow_upgrade": True},
                     "tls": {"require_tls_ports": [443, 8443]}},
        "tlsaudit": {"sources": ["127.0.0.12/32"], "mode": "audit", "allow": tls_allow},
        "capped": {"sources": ["127.0.0.13/32"], "allow": [{"host": "allowed.example", "ports": [80]}],
                   "caps": {"download_bytes": "100KiB"}},
    }, limits={"header_timeout": "10s", "max_connections": MAX_CONNS},
       caps={"connections_per_source": 3}).start()
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
    def upstream_rx_since(mark, want, timeout=10.0):
        """Bytes every upstream session opened after mark received, once each has closed.
        The upstreams log on their own threads: wait for the want sessions the case made
        (and their closes) first, so a late one is never counted in the next case."""
        def sessions():
            evs = ups.events()[mark:]
            acc = [e for e in evs if e["event"] == "accept"]
            done = [e for e in evs if e["event"] == "close"]
            return acc, done
        harness.wait_until(lambda: len(sessions()[0]) >= want and
                           len(sessions()[1]) >= len(sessions()[0]), timeout)
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
        rx, n = upstream_rx_since(mark, 1)
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
        rx, n = upstream_rx_since(mark, 2)
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
        rx, n = upstream_rx_since(mark, 1)
        expect(n == 1 and 0 < rx <= BUDGET, "the upstream received %d bytes, want 1..%d" % (rx, BUDGET))
        spent("127.0.0.8")

    # ============================================ the per-source slot, from accept
    def connections_active(port=9090):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        m = re.search(r"^portcullis_connections_active (\d+)$", text, re.M)
        return int(m.group(1)) if m else -1

    def open_idle(src):
        s = harness.bound_socket(src)
        s.settimeout(5)
        s.connect(("127.0.0.1", 3128))
        return s

    def holds_exactly(n, timeout=10.0):
        """Wait until the proxy holds exactly the n connections the case keeps open (those of
        earlier cases, refused or closed, are gone within their flush deadline)."""
        got = harness.wait_until(lambda: connections_active() == n, timeout)
        expect(got, "the proxy holds %d connections, want %d" % (connections_active(), n))

    held = []
    with ctx.case("per-source slot from accept: 2 idle, 2 slow-head and 1 idle keep-alive connection hold "
                  "the source's %d slots; the next is refused 429 at once" % PER_SOURCE):
        held += [open_idle("127.0.0.10") for _ in range(2)]
        for _ in range(2):
            s_ = open_idle("127.0.0.10")
            s_.sendall(b"GET http://allowed.example/slow HTTP/1.1\r\nHost: allo")
            held.append(s_)
        c = harness.HttpClient("127.0.0.10")
        c.send(b"GET http://allowed.example/cl/10 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        r = c.response("GET")
        expect(r.status == 200 and r.complete, "keep-alive request: %s" % r.describe())
        held.append(c.sock)
        holds_exactly(len(held))
        r = harness.connect("allowed.example:8080", src="127.0.0.10")
        rec = harness.expect_refusal(r, 429, "source_connection_limit", audit=audit, ruleset="limited")
        expect(r.header("Retry-After") == "1", "Retry-After %r" % r.header("Retry-After"))
        expect(get(rec, "http.request.method") is None, "the refusal came before any request: %s" %
               json.dumps(rec)[:300])

    with ctx.case("one source cannot hold limits.max_connections: %d more connections from it are all refused "
                  "429, and another source of the tier is served" % MAX_CONNS):
        refused, other = 0, []
        for _ in range(MAX_CONNS):
            r = harness.connect("allowed.example:8080", src="127.0.0.10", timeout=5)
            refused += r.status == 429 and r.reason == "source_connection_limit"
            other.append(r.status)
        expect(refused == MAX_CONNS, "%d of %d refused with 429 source_connection_limit: %s" %
               (refused, MAX_CONNS, sorted(set(map(str, other)))))
        harness.expect_served("allowed.example:8080", src="127.0.0.15", what="127.0.0.15: ")

    with ctx.case("a source with no tier is held to the top-level caps.connections_per_source (3) from accept"):
        held += [open_idle("127.0.0.9") for _ in range(3)]
        holds_exactly(len(held))
        r = harness.connect("allowed.example:8080", src="127.0.0.9")
        harness.expect_refusal(r, 429, "source_connection_limit", audit=audit)

    with ctx.case("closing one held connection frees its slot (within 3 s)"):
        held.pop(0).close()
        got = None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and got is None:
            r = harness.connect("allowed.example:8080", src="127.0.0.10")
            if r.status == 200:
                got = r
            else:
                expect(r.status == 429, "while waiting for a free slot: %s" % r.describe())
                time.sleep(0.2)
        expect(got is not None, "still 429 3 s after a connection was closed")
        got.close()
    for s_ in held:
        s_.close()

    # ============================================ the TLS-port rule on every path
    def plain(src, target, extra=b""):
        c = harness.HttpClient(src)
        host = target.split("/")[2].encode()
        c.send(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (target.encode(), host, extra))
        r = c.response("GET")
        if r.status is not None and r.status != 200 and r.status != 101:
            r.closed = c.at_eof(3.0)
        c.close()
        return r

    with ctx.case("plain http:// to a require_tls_ports port (443, 8443) is refused 403 tls_required; "
                  "its listeners are never reached"):
        for target in ("http://allowed.example:443/", "http://allowed.example:8443/x"):
            harness.expect_refusal(plain("127.0.0.11", target), 403, "tls_required", audit=audit,
                                   ruleset="tlsports")
        expect(not ups.accepts("tls443") and not ups.accepts("tls8443"),
               "a TLS port's listener accepted a plain-HTTP connection")

    with ctx.case("an Upgrade to a require_tls_ports port is refused 403 tls_required, even with "
                  "http.allow_upgrade"):
        r = plain("127.0.0.11", "http://allowed.example:443/upgrade",
                  b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
        harness.expect_refusal(r, 403, "tls_required", audit=audit, ruleset="tlsports")
        expect(not ups.accepts("tls443"), "the TLS port's listener accepted the upgrade")

    with ctx.case("the same tier's plain http:// to port 80 is forwarded"):
        r = plain("127.0.0.11", "http://allowed.example/cl/5")
        expect(r.status == 200 and r.complete, r.describe())

    # (This one reaches the 443 listener: audit mode lets it through.)
    with ctx.case("audit mode: plain http:// to a TLS port goes through, recorded would_deny tls_required"):
        mark = audit.mark()
        plain("127.0.0.12", "http://allowed.example:443/")
        rec = audit.wait_new(mark, lambda r: get(r, "rule.ruleset") == "tlsaudit")
        expect(rec is not None and get(rec, "labels.would_deny") == "tls_required",
               "record: %s" % (json.dumps(rec)[:400] if rec else None))

    # ============================================ interim responses
    with ctx.case("an upstream flooding 1xx heads: at most %d reach the client, then 502 bad_response; "
                  "the upstream is cut off" % MAX_INTERIM):
        mark = len(ups.events())
        c = harness.HttpClient("127.0.0.2")
        c.send(b"GET http://allowed.example/evil/interim/0 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        r = c.response("GET", timeout=15)
        c.close()
        expect(r.status == 502 and r.reason == "bad_response", "final answer: %s" % r.describe())
        expect(len(r.interim) <= MAX_INTERIM, "%d interim heads reached the client" % len(r.interim))
        ev = evil_event(mark, "interim", timeout=15)
        expect(ev["sent"] < 10000, "the upstream could send %d interim heads" % ev["sent"])

    with ctx.case("interim heads are charged to caps.download_bytes: 16 KiB heads stop at the 100 KiB cap"):
        mark = len(ups.events())
        c = harness.HttpClient("127.0.0.13")
        c.send(b"GET http://allowed.example/evil/interim/16000 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        got = 0
        try:
            while True:
                c.sock.settimeout(10)
                d = c.sock.recv(65536)
                if not d:
                    break
                got += len(d)
        except OSError:
            pass
        c.close()
        expect(got <= 100 * 1024 + 1024, "the client got %d bytes through a 100 KiB download cap" % got)
        evil_event(mark, "interim", timeout=15)
        (rec,) = records(c.src_port, 1)
        expect(get(rec, "event.reason") == "download_cap" and get(rec, "destination.bytes") <= 100 * 1024,
               "record: reason %s, destination.bytes %s" % (get(rec, "event.reason"),
                                                         get(rec, "destination.bytes")))

    def rss_kib(proc):
        with open("/proc/%d/status" % proc.pid) as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    return int(ln.split()[1])
        return 0

    with ctx.case("a client that does not read while its upstream floods 1xx heads: the proxy's memory stays "
                  "flat and the upstream is cut off, not left to block"):
        mark = len(ups.events())
        rss0 = rss_kib(px.proc)
        c = harness.HttpClient("127.0.0.2")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.send(b"GET http://allowed.example/evil/interim/0 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        ev = evil_event(mark, "interim", timeout=20)
        grew = rss_kib(px.proc) - rss0
        c.close()
        expect(ev["ended"] == "closed", "the upstream's flood ended by %s after %d heads, want closed by the "
               "proxy" % (ev["ended"], ev["sent"]))
        expect(grew < 32 * 1024, "the proxy grew by %d KiB during the flood" % grew)

    # ============================================ decided under the current policy
    rl_tiers = {"r": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [80, 8080]}]}}
    rl = harness.Proxy(ctx, "reload", rl_tiers, proxy_port=3129, admin_port=9091).start()

    with ctx.case("connections opened before a reload are decided by the new policy (CONNECT and plain "
                  "HTTP on idle connections, and the next request of a keep-alive connection)"):
        idle = []
        for _ in range(2):
            s_ = harness.bound_socket("127.0.0.2")
            s_.settimeout(5)
            s_.connect(("127.0.0.1", 3129))
            idle.append(s_)
        ka = harness.HttpClient("127.0.0.2", proxy_port=3129)
        ka.send(b"GET http://allowed.example/cl/3 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        r = ka.response("GET")
        expect(r.status == 200, "before the reload: %s" % r.describe())
        lm = harness.log_mark(rl)
        new = dict(rl.policy)
        new["tiers"] = {"r": {"sources": ["127.0.0.2/32"], "allow": [{"host": "other.example", "ports": [80]}]}}
        harness.write_atomic(rl.policy_path, harness.to_yaml(new) + "\n")
        done = harness.wait_until(lambda: any("policy reloaded" in e.get("message", "")
                                              for e in harness.log_since(rl, lm)), 10)
        expect(done, "no reload logged")
        idle[0].sendall(b"CONNECT allowed.example:8080 HTTP/1.1\r\nHost: allowed.example:8080\r\n\r\n")
        head = idle[0].recv(4096)
        expect(b" 403 " in head.split(b"\r\n")[0] and b"host_not_allowed" in head,
               "CONNECT on a connection opened before the reload: %r" % head[:200])
        idle[1].sendall(b"GET http://allowed.example/cl/3 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        head = idle[1].recv(4096)
        expect(b" 403 " in head.split(b"\r\n")[0] and b"host_not_allowed" in head,
               "plain HTTP on a connection opened before the reload: %r" % head[:200])
        ka.send(b"GET http://allowed.example/cl/3 HTTP/1.1\r\nHost: allowed.example\r\n\r\n")
        r = ka.response("GET")
        expect(r.status == 403 and r.reason == "host_not_allowed",
               "next request of a keep-alive connection: %s" % r.describe())
        for s_ in idle:
            s_.close()
        ka.close()

    ctx.final_checks([audit, rl.audit])
