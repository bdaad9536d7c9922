#!/usr/bin/python3
"""Scenario 11: plain HTTP forwarding (HTTP_PROXY, absolute-form requests).

Real curl (-x and http_proxy) doing GET, HEAD, POST with a Content-Length and
with a chunked body; Content-Length, chunked (with trailers) and
close-delimited responses of a few MiB arrive byte-exact, on the wire as the
origin sent them.  HEAD, 1xx (100-continue, 103), 204 and 304 carry no body
and the keep-alive connection goes on.  Every request on a client connection
is decided on its own: an allowed request then one to a denied host (and three
pipelined in one write) get their answers in order and the denied host's
listener is never reached.  Request smuggling (RFC 9112 §6), Host / target
disagreement, userinfo, duplicate Host: 400 and the origin gets nothing (or,
for a bad chunk in a streamed body, never a complete request).  Hop-by-hop
headers are stripped both ways and Via added; one request per upstream
connection (Connection: close); methods allowlist; Upgrade refused unless the
tier allows it (then 101 and a relayed tunnel); caps per request and response
body; malformed upstream responses -> 502 bad_response; top-level http:
defaults.  Finally apt-get (Debian's own tools) updates from and downloads a
.deb out of a flat APT repository built at run time and served in the
namespace, through the proxy.  Every request has exactly one audit record.
"""
import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import upstreams  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"      # allowed.example, apt.example, portonly.example, nx: none
OTHER = "198.51.100.30"     # other.example
DENIED = "198.51.100.20"    # denied.example: not in any allow list
META = "169.254.169.254"    # meta.example resolves here (allowed name, blocked address)
V6 = "2001:db8::10"
MIB = 1024 * 1024
BIG = 3 * MIB
CAP = 64 * 1024
SECRET = "c2VjcmV0LWh0dHA="          # a Proxy-Authorization credential: never logged, never forwarded
SECRET_QUERY = "qS3cr3tT0ken"        # a query string: forwarded upstream, never logged
PKG = "portcullis-it-hello"
SM = b"GET http://allowed.example/smuggled HTTP/1.1\r\nHost: allowed.example\r\n\r\n"


def sha(b):
    return hashlib.sha256(b).hexdigest()


def msg(first, *headers, body=b"", eol=b"\r\n"):
    """Raw request bytes: a request line, header lines, an empty line, body."""
    return first + eol + b"".join(h + eol for h in headers) + eol + body


def values(req, name):
    """Values of a header an origin recorded (its "request" event)."""
    return [v for k, v in req["headers"] if k.lower() == name.lower()]


ctx = harness.start(__file__, v4=[GOOD, OTHER, DENIED, META], v6=[V6])
with ctx:
    docroot = ctx.path("apt-root")
    os.makedirs(docroot)
    ups = harness.Upstreams(ctx, [
        {"name": "origin80", "host": GOOD, "port": 80, "kind": "http-origin",
         "docroot": docroot, "docprefix": "/debian/"},
        {"name": "origin8080", "host": GOOD, "port": 8080, "kind": "http-origin"},
        {"name": "other80", "host": OTHER, "port": 80, "kind": "http-origin"},
        {"name": "v6-80", "host": V6, "port": 80, "kind": "http-origin"},
        {"name": "denied80", "host": DENIED, "port": 80, "kind": "http-origin", "role": "forbidden"},
        {"name": "meta80", "host": META, "port": 80, "kind": "http-origin", "role": "forbidden"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", GOOD), ("apt.example", GOOD), ("portonly.example", GOOD),
        ("other.example", OTHER), ("denied.example", DENIED), ("meta.example", META),
    ])
    allowed80 = [{"host": "allowed.example", "ports": [80]}]
    px = harness.Proxy(ctx, "proxy", {
        "web": {"sources": ["127.0.0.2/32"],
                "allow": [{"host": "allowed.example", "ports": [80, 8080, 8081]},
                          {"host": "other.example", "ports": [80]},
                          {"host": "meta.example", "ports": [80]},
                          {"host": "nx.example", "ports": [80]},
                          {"host": "portonly.example", "ports": [8080]},
                          {"host": V6, "ports": [80]}]},
        "mirror": {"sources": ["127.0.0.3/32"], "allow": allowed80,
                   "http": {"methods": ["GET", "HEAD"], "allow_upgrade": False}},
        "ws": {"sources": ["127.0.0.4/32"], "allow": allowed80, "http": {"allow_upgrade": True}},
        "cap": {"sources": ["127.0.0.5/32"], "allow": allowed80,
                "caps": {"upload_bytes": "64KiB", "download_bytes": "64KiB"}},
        "apt": {"sources": ["127.0.0.1/32"], "allow": [{"host": "apt.example", "ports": [80]}],
                "http": {"methods": ["GET", "HEAD"]}},
    }).start()
    dpx = harness.Proxy(ctx, "defaults", {
        "d": {"sources": ["127.0.0.2/32"], "allow": allowed80},
        "o": {"sources": ["127.0.0.3/32"], "allow": allowed80,
              "http": {"methods": ["GET", "POST"], "allow_upgrade": False}},
    }, proxy_port=3129, admin_port=9091, http={"methods": ["GET"], "allow_upgrade": True}).start()
    audit = px.audit
    proxy_url = "http://127.0.0.1:3128"

    # ------------------------------------------------------------------ helpers
    def records(port, n, a=None, timeout=5.0):
        """Exactly n audit records for one client connection (by source port), in order."""
        a = a or audit
        f = lambda: a.find(lambda r: get(r, "source.port") == port)  # noqa: E731
        harness.wait_until(lambda: len(f()) >= n, timeout)
        time.sleep(0.1)
        got = f()
        expect(len(got) == n, "%d audit records for source port %s, want %d: %s" %
               (len(got), port, n, [json.dumps(r)[:300] for r in got]))
        return got

    def exchange(raw, src="127.0.0.2", method="GET", port=3128, timeout=10.0):
        c = harness.HttpClient(src, proxy_port=port)
        err = c.send(raw)
        r = c.response(method, timeout=timeout)
        if err and r.status is None:
            r.error = "%s; %s" % (err, r.error)
        return c, r

    def served(r, what=""):
        expect(r.status is not None and not r.error, "%s%s" % (what, r.describe()))
        expect(r.complete, "%sresponse incomplete: %s" % (what, r.error))

    def refused(c, r, status, reason, a=None, domain=None, path=None, single=True):
        """A refusal with the CONNECT shape (Proxy-Status, Connection: close, short body,
        closed); single: the connection's only record is the refusal."""
        if r.status is not None and not r.closed:
            r.closed = c.at_eof(3.0)
        rec = harness.expect_refusal(r, status, reason, audit=(a or audit) if single else None)
        if rec is not None:
            for k, v in (("url.domain", domain), ("url.path", path)):
                if v is not None:
                    expect(get(rec, k) == v, "refusal record %s = %r, want %r" % (k, get(rec, k), v))
        return rec

    def refused_head(c, r, status, reason, a):
        """A refusal of a HEAD request: the refusal shape, but no content after the head
        (RFC 9110 §9.3.2: the server MUST NOT send content in a response to HEAD)."""
        expect(r.status == status and r.reason == reason, "want %d %s, %s" % (status, reason, r.describe()))
        expect((r.proxy_status["raw"] or "").startswith("portcullis"), "Proxy-Status %r" % r.proxy_status["raw"])
        expect("close" in (r.header("Connection") or "").lower(), "no 'Connection: close' (%r)" % r.headers)
        closed = c.at_eof(3.0)
        extra = c.buf
        c.close()
        expect(closed, "connection not closed after the refusal")
        expect(not extra, "%d bytes of content after the head of the refusal of a HEAD request (%r): RFC 9110 "
               "§9.3.2 says MUST NOT" % (len(extra), extra[:60]))
        (rec,) = records(r.src_port, 1, a)
        harness.check_denied_record(rec, reason, status)

    def nothing_reached(marks, what="the request"):
        for name, n in marks.items():
            got = ups.accepts(name)[n:]
            expect(not got, "listener %s accepted %d connection(s) for %s" % (name, len(got), what))

    def marks(*names):
        return {n: len(ups.accepts(n)) for n in names}

    def origin_requests(listener, mark, n, timeout=5.0):
        f = lambda: ups.requests(listener)[mark:]  # noqa: E731
        harness.wait_until(lambda: len(f()) >= n, timeout)
        time.sleep(0.05)
        got = f()
        expect(len(got) == n, "origin %s logged %d requests, want %d: %s" %
               (listener, len(got), n, [(e["method"], e["target"]) for e in got]))
        return got

    def rmark(listener):
        return len(ups.requests(listener))

    def upstream_sessions_closed(listener, mark, timeout=5.0):
        sess = ups.sessions_since(listener, mark, timeout)
        open_ = [a["peer"] for a, c in sess if c is None]
        expect(not open_, "upstream connections to %s still open %.0fs later: %s" % (listener, timeout, open_))
        return sess

    def check_one_request_upstream(req):
        """The proxy's side of an upstream exchange: origin-form, Connection: close, Via."""
        expect(req["target"].startswith("/"), "origin got request-target %r, want origin-form" % req["target"])
        conn = [t.strip().lower() for v in values(req, "Connection") for t in v.split(",")]
        expect(conn == ["close"], "origin got Connection %r, want exactly 'close'" % values(req, "Connection"))
        via = values(req, "Via")
        expect(any("1.1 portcullis" in v for v in via), "origin got Via %r, want '1.1 portcullis'" % via)

    # ================================================================== curl
    big_seed = 11
    big = upstreams.body_bytes(BIG, big_seed)
    for kind in ("cl", "chunked", "close"):
        with ctx.case("curl -x GET %s body of %d MiB arrives byte-exact (sha256), one audit record" %
                      ({"cl": "Content-Length", "chunked": "chunked", "close": "close-delimited"}[kind],
                       BIG // MIB)):
            out = ctx.path("curl-%s.bin" % kind)
            m = rmark("origin80")
            url = "http://allowed.example/%s/%d/%d" % (kind, BIG, big_seed)
            res = harness.curl(["-x", proxy_url, "--interface", "127.0.0.2", "-o", out, url], timeout=30)
            expect(res["rc"] == 0 and res["code"] == "200", "curl %s: exit %s, HTTP %s: %s" %
                   (url, res["rc"], res["code"], res["stderr"][:300]))
            with open(out, "rb") as f:
                got = f.read()
            expect(len(got) == BIG and sha(got) == sha(big), "curl got %d bytes (sha %s), want %d (sha %s)" %
                   (len(got), sha(got)[:16], BIG, sha(big)[:16]))
            (req,) = origin_requests("origin80", m, 1)
            expect(req["method"] == "GET" and req["target"] == "/%s/%d/%d" % (kind, BIG, big_seed),
                   "origin got %s %s" % (req["method"], req["target"]))
            check_one_request_upstream(req)
            (rec,) = records(res["local_port"], 1)
            harness.check_http_record(rec, "GET", 200, "allowed", "allowed.example",
                                      "/%s/%d/%d" % (kind, BIG, big_seed), 80)
            expect(get(rec, "destination.ip") == GOOD and get(rec, "destination.port") == 80,
                   "destination %s:%s" % (get(rec, "destination.ip"), get(rec, "destination.port")))
            expect(get(rec, "rule.ruleset") == "web", "rule.ruleset %r" % get(rec, "rule.ruleset"))
            expect(get(rec, "destination.bytes") > BIG, "destination.bytes %r for a %d-byte body" %
                   (get(rec, "destination.bytes"), BIG))

    with ctx.case("curl -I (HEAD): Content-Length of the GET, no body, curl does not hang"):
        m = rmark("origin80")
        res = harness.curl(["-x", proxy_url, "--interface", "127.0.0.2", "-I",
                            "http://allowed.example/cl/12345/3"])
        expect(res["rc"] == 0 and res["code"] == "200", "curl -I: exit %s, HTTP %s: %s" %
               (res["rc"], res["code"], res["stderr"][:300]))
        expect("content-length: 12345" in res["body"].lower(), "HEAD answer lacks Content-Length: 12345: %r" %
               res["body"][:400])
        (req,) = origin_requests("origin80", m, 1)
        expect(req["method"] == "HEAD", "origin got method %r" % req["method"])
        (rec,) = records(res["local_port"], 1)
        harness.check_http_record(rec, "HEAD", 200, "allowed", "allowed.example", "/cl/12345/3", 80)

    upload = random.Random(5).randbytes(2 * MIB + 17)
    up_path = ctx.path("upload.bin")
    with open(up_path, "wb") as f:
        f.write(upload)
    for chunked in (False, True):
        with ctx.case("curl -x POST 2 MiB %s body: the origin gets it byte-exact" %
                      ("chunked (-H 'Transfer-Encoding: chunked')" if chunked else "Content-Length")):
            m = rmark("origin80")
            extra = ["-H", "Transfer-Encoding: chunked"] if chunked else []
            res = harness.curl(["-x", proxy_url, "--interface", "127.0.0.2", "--data-binary", "@" + up_path]
                               + extra + ["http://allowed.example/post"], timeout=30)
            expect(res["rc"] == 0 and res["code"] == "200", "curl POST: exit %s, HTTP %s: %s" %
                   (res["rc"], res["code"], res["stderr"][:300]))
            (req,) = origin_requests("origin80", m, 1)
            expect(req["complete"], "origin: request incomplete (%s)" % req.get("error"))
            expect(req["method"] == "POST" and req["body_len"] == len(upload) and
                   req["body_sha256"] == sha(upload),
                   "origin got %s with %d body bytes (sha %s), want %d (sha %s)" %
                   (req["method"], req["body_len"], req["body_sha256"][:16], len(upload), sha(upload)[:16]))
            expect(req["chunked"] == chunked, "origin saw chunked=%s, curl sent chunked=%s (TE %r, CL %r)" %
                   (req["chunked"], chunked, values(req, "Transfer-Encoding"), values(req, "Content-Length")))
            if chunked:
                expect(not values(req, "Content-Length"), "chunked request forwarded with Content-Length %r" %
                       values(req, "Content-Length"))
            else:
                expect(values(req, "Content-Length") == [str(len(upload))], "Content-Length %r" %
                       values(req, "Content-Length"))
            check_one_request_upstream(req)
            (rec,) = records(res["local_port"], 1)
            harness.check_http_record(rec, "POST", 200, "allowed", "allowed.example", "/post", 80)
            expect(get(rec, "source.bytes") > len(upload), "source.bytes %r for a %d-byte upload" %
                   (get(rec, "source.bytes"), len(upload)))

    with ctx.case("curl with http_proxy in the environment (no -x) is forwarded"):
        exe = harness.need(shutil.which("curl") or "/usr/bin/curl")
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["http_proxy"] = proxy_url
        out = ctx.path("curl-env.bin")
        p = subprocess.run([exe, "-q", "-sS", "--max-time", "15", "--interface", "127.0.0.2", "-o", out,
                            "-w", "%{http_code}", "http://allowed.example/cl/4096/9"],
                           capture_output=True, timeout=20, env=env, stdin=subprocess.DEVNULL)
        expect(p.returncode == 0 and p.stdout == b"200", "curl: exit %s, HTTP %r: %s" %
               (p.returncode, p.stdout, p.stderr[:300]))
        with open(out, "rb") as f:
            expect(f.read() == upstreams.body_bytes(4096, 9), "body differs")

    with ctx.case("curl -x GET to a denied host -> 403 host_not_allowed, Proxy-Status, listener untouched"):
        mk = marks("denied80")
        hdr = ctx.path("curl-denied.hdr")
        res = harness.curl(["-x", proxy_url, "--interface", "127.0.0.2", "-D", hdr, "-o", "/dev/null",
                            "http://denied.example/pkg?x=1"])
        expect(res["code"] == "403", "curl got HTTP %r (exit %s: %s)" % (res["code"], res["rc"], res["stderr"][:200]))
        with open(hdr, "rb") as f:
            h = f.read().decode("latin-1").lower()
        expect('details="host_not_allowed"' in h, "no Proxy-Status host_not_allowed in %r" % h[:400])
        (rec,) = records(res["local_port"], 1)
        harness.check_denied_record(rec, "host_not_allowed", 403)
        expect(get(rec, "url.domain") == "denied.example" and get(rec, "url.path") == "/pkg",
               "refusal url.domain %r url.path %r" % (get(rec, "url.domain"), get(rec, "url.path")))
        nothing_reached(mk)

    # ================================================================== wire-exact, raw sockets
    with ctx.case("raw GET, Content-Length: body and byte counts exact (destination.bytes = bytes the "
                  "client got, source.bytes = bytes the origin got)"):
        m = rmark("origin80")
        mk = ups.mark("origin80")
        c, r = exchange(msg(b"GET http://allowed.example/cl/100000/4 HTTP/1.1", b"Host: allowed.example",
                            b"User-Agent: it", b"Connection: close"))
        served(r)
        expect(r.status == 200 and r.body == upstreams.body_bytes(100000, 4), "body differs (%d bytes)" % len(r.body))
        expect(c.at_eof(3), "connection not closed after a 'Connection: close' request")
        total = c.rx
        c.close()
        (req,) = origin_requests("origin80", m, 1)
        expect(req["request_line"] == "GET /cl/100000/4 HTTP/1.1", "origin got request line %r" %
               req["request_line"])
        expect(values(req, "Host") == ["allowed.example"], "origin got Host %r" % values(req, "Host"))
        expect(values(req, "User-Agent") == ["it"], "origin got User-Agent %r" % values(req, "User-Agent"))
        check_one_request_upstream(req)
        (sess,) = upstream_sessions_closed("origin80", mk)
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "allowed", "allowed.example", "/cl/100000/4", 80)
        expect(get(rec, "destination.bytes") == total, "destination.bytes %r, the client got %d" %
               (get(rec, "destination.bytes"), total))
        expect(get(rec, "source.bytes") == sess[1]["rx"], "source.bytes %r, the origin got %d" %
               (get(rec, "source.bytes"), sess[1]["rx"]))

    with ctx.case("raw GET, chunked response: chunk framing and trailers relayed byte-exact"):
        data = upstreams.body_bytes(700000, 8)
        c, r = exchange(msg(b"GET http://allowed.example/chunked/700000/8 HTTP/1.1", b"Host: allowed.example"))
        served(r)
        c.close()
        expect(r.framing == "chunked", "response framing %s (headers %r), want chunked" % (r.framing, r.headers))
        expect(r.body == data, "decoded body differs (%d bytes, want %d)" % (len(r.body), len(data)))
        expect(r.raw_body == upstreams.chunked_stream(data), "chunked framing not relayed verbatim "
               "(%d wire body bytes, origin sent %d)" % (len(r.raw_body), len(upstreams.chunked_stream(data))))
        expect(("X-Body-Sha256", sha(data)) in r.trailers, "trailers %r lack X-Body-Sha256" % r.trailers)
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "allowed")

    with ctx.case("raw POST, chunked request with trailers: framing relayed byte-exact, forwarded as chunked"):
        pieces = [b"a", b"0123456789abcdef", os.urandom(5000), os.urandom(70000)]
        body = b"".join(b"%X\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\nX-Up-Trailer: t1\r\n\r\n"
        m = rmark("origin80")
        c, r = exchange(msg(b"POST http://allowed.example/up HTTP/1.1", b"Host: allowed.example",
                            b"Transfer-Encoding: chunked", body=body))
        served(r)
        c.close()
        expect(r.status == 200, r.describe())
        (req,) = origin_requests("origin80", m, 1)
        expect(req["complete"] and req["chunked"], "origin: complete=%s chunked=%s (%s)" %
               (req["complete"], req["chunked"], req.get("error")))
        expect(values(req, "Transfer-Encoding") == ["chunked"] and not values(req, "Content-Length"),
               "origin got Transfer-Encoding %r Content-Length %r" %
               (values(req, "Transfer-Encoding"), values(req, "Content-Length")))
        expect(req["body_sha256"] == sha(b"".join(pieces)), "decoded body differs at the origin")
        expect(req["trailers"] == [["X-Up-Trailer", "t1"]], "origin got trailers %r" % req["trailers"])
        expect(req["raw_body_sha256"] == sha(body) and req["raw_body_len"] == len(body),
               "chunk framing not relayed verbatim (origin got %d raw body bytes, client sent %d)" %
               (req["raw_body_len"], len(body)))
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "POST", 200, "allowed")

    with ctx.case("Content-Length: 5, 5 (equal values) and 'Transfer-Encoding: Chunked' (any case) are "
                  "forwarded, not refused"):
        m = rmark("origin80")
        c, r = exchange(msg(b"POST http://allowed.example/eq HTTP/1.1", b"Host: allowed.example",
                            b"Content-Length: 5, 5", body=b"hello"))
        served(r, "Content-Length: 5, 5: ")
        c.close()
        c, r = exchange(msg(b"POST http://allowed.example/eq2 HTTP/1.1", b"Host: allowed.example",
                            b"Transfer-Encoding: Chunked", body=b"5\r\nhello\r\n0\r\n\r\n"))
        served(r, "Transfer-Encoding: Chunked: ")
        c.close()
        reqs = origin_requests("origin80", m, 2)
        expect(all(q["complete"] and q["body_sha256"] == sha(b"hello") for q in reqs),
               "origin bodies: %r" % [(q["target"], q["body_len"], q.get("error")) for q in reqs])

    with ctx.case("HEAD then GET on one keep-alive connection: HEAD has no body, the GET is framed right"):
        c = harness.HttpClient("127.0.0.2")
        c.send(msg(b"HEAD http://allowed.example/cl/5000/1 HTTP/1.1", b"Host: allowed.example"))
        r1 = c.response("HEAD")
        served(r1, "HEAD: ")
        expect(r1.header("Content-Length") == "5000" and r1.body == b"", "HEAD: CL %r, %d body bytes" %
               (r1.header("Content-Length"), len(r1.body)))
        c.send(msg(b"GET http://allowed.example/cl/10/2 HTTP/1.1", b"Host: allowed.example"))
        r2 = c.response()
        c.close()
        served(r2, "GET after HEAD: ")
        expect(r2.body == upstreams.body_bytes(10, 2), "GET after HEAD got %r" % r2.body[:40])
        recs = records(c.src_port, 2)
        harness.check_http_record(recs[0], "HEAD", 200)
        harness.check_http_record(recs[1], "GET", 200)

    with ctx.case("204 and 304 without bodies, then a GET, on one keep-alive connection"):
        c = harness.HttpClient("127.0.0.2")
        c.send(msg(b"GET http://allowed.example/status/204 HTTP/1.1", b"Host: allowed.example"))
        r1 = c.response()
        c.send(msg(b"GET http://allowed.example/status/304 HTTP/1.1", b"Host: allowed.example",
                   b'If-None-Match: "it-etag"'))
        r2 = c.response()
        c.send(msg(b"GET http://allowed.example/cl/33/3 HTTP/1.1", b"Host: allowed.example"))
        r3 = c.response()
        c.close()
        expect(r1.status == 204 and not r1.error, "first: %s" % r1.describe())
        expect(r2.status == 304 and not r2.error, "second: %s" % r2.describe())
        served(r3, "third: ")
        expect(r3.body == upstreams.body_bytes(33, 3), "third got %r" % r3.body[:40])
        recs = records(c.src_port, 3)
        for rec, st in zip(recs, (204, 304, 200)):
            harness.check_http_record(rec, "GET", st)

    with ctx.case("103 Early Hints relayed before the final 200 (record: status 200)"):
        c, r = exchange(msg(b"GET http://allowed.example/early/2000/6 HTTP/1.1", b"Host: allowed.example"))
        c.close()
        served(r)
        expect([s for s, _ in r.interim] == [103], "interim heads %r, want one 103" % [s for s, _ in r.interim])
        link = [v for k, v in r.interim[0][1] if k.lower() == "link"] if r.interim else []
        expect(link and "style.css" in link[0], "103 lacks its Link field: %r" % (r.interim,))
        expect(r.status == 200 and r.body == upstreams.body_bytes(2000, 6), "final %s, %d bytes" %
               (r.status_line, len(r.body)))
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200)

    with ctx.case("Expect: 100-continue: the origin's 100 reaches the client before it sends the body"):
        body = os.urandom(50000)
        m = rmark("origin80")
        c = harness.HttpClient("127.0.0.2")
        c.send(msg(b"POST http://allowed.example/cont HTTP/1.1", b"Host: allowed.example",
                   b"Content-Length: %d" % len(body), b"Expect: 100-continue"))
        deadline = time.monotonic() + 3
        try:
            while b"\r\n\r\n" not in c.buf and c._fill(deadline):
                pass
        except OSError:
            pass
        early = c.buf
        expect(early.startswith(b"HTTP/1.1 100"), "no 100 Continue within 3s, got %r" % early[:80])
        c.send(body)
        r = c.response("POST")
        c.close()
        served(r)
        expect(r.status == 200 and [s for s, _ in r.interim] == [100], "final %s, interim %r" %
               (r.status_line, r.interim))
        (req,) = origin_requests("origin80", m, 1)
        expect(req["sent_100"] and req["body_sha256"] == sha(body), "origin: sent_100=%s body ok=%s" %
               (req["sent_100"], req["body_sha256"] == sha(body)))
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "POST", 200)

    with ctx.case("close-delimited response on a keep-alive request: relayed as is, then the client "
                  "connection is closed"):
        c, r = exchange(msg(b"GET http://allowed.example/close/300000/12 HTTP/1.1", b"Host: allowed.example"))
        c.close()
        served(r)
        expect(r.framing == "close", "framing %s (headers %r): the proxy re-framed a close-delimited body" %
               (r.framing, r.headers))
        expect(r.body == upstreams.body_bytes(300000, 12), "body differs (%d bytes)" % len(r.body))
        expect(r.closed, "connection not closed after the close-delimited body")
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "allowed")

    with ctx.case("HTTP/1.0 request without Host: served, Host set from the target, connection closed"):
        m = rmark("origin80")
        c, r = exchange(b"GET http://allowed.example/cl/64/5 HTTP/1.0\r\n\r\n")
        served(r)
        expect(r.body == upstreams.body_bytes(64, 5), "body %r" % r.body[:40])
        expect(r.closed or c.at_eof(3), "HTTP/1.0 client connection kept open")
        c.close()
        (req,) = origin_requests("origin80", m, 1)
        expect(values(req, "Host") == ["allowed.example"], "origin got Host %r" % values(req, "Host"))

    for host_hdr in (b"Host: allowed.example:80", b"Host: ALLOWED.Example"):
        with ctx.case("%s for http://allowed.example/: served, the origin gets Host: allowed.example" %
                      host_hdr.decode()):
            m = rmark("origin80")
            c, r = exchange(msg(b"GET http://allowed.example/hh HTTP/1.1", host_hdr))
            c.close()
            served(r)
            expect(r.status == 200, r.describe())
            (req,) = origin_requests("origin80", m, 1)
            expect(len(values(req, "Host")) == 1 and values(req, "Host")[0].lower() in
                   ("allowed.example", "allowed.example:80"), "origin got Host %r" % values(req, "Host"))

    with ctx.case("port 8080 target: dialled on 8080, Host allowed.example:8080, url.port 8080"):
        m = rmark("origin8080")
        c, r = exchange(msg(b"GET http://allowed.example:8080/p8080 HTTP/1.1", b"Host: allowed.example:8080"))
        c.close()
        served(r)
        (req,) = origin_requests("origin8080", m, 1)
        expect(values(req, "Host") == ["allowed.example:8080"], "origin got Host %r" % values(req, "Host"))
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "allowed", "allowed.example", "/p8080", 8080)
        expect(get(rec, "destination.port") == 8080, "destination.port %r" % get(rec, "destination.port"))

    with ctx.case("IPv6 literal target http://[2001:db8::10]/ reaches the IPv6 origin"):
        m = rmark("v6-80")
        c, r = exchange(msg(b"GET http://[2001:db8::10]/v6 HTTP/1.1", b"Host: [2001:db8::10]"))
        c.close()
        served(r)
        (req,) = origin_requests("v6-80", m, 1)
        expect(values(req, "Host") in (["[2001:db8::10]"], ["[2001:db8::10]:80"]), "origin got Host %r" %
               values(req, "Host"))
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "allowed", path="/v6", port=80)
        expect(get(rec, "destination.ip") == V6, "destination.ip %r" % get(rec, "destination.ip"))

    with ctx.case("the query string is forwarded upstream but never logged (url.path without it)"):
        m = rmark("origin80")
        c, r = exchange(msg(b"GET http://allowed.example/q/path?token=" + SECRET_QUERY.encode() + b"&a=1 HTTP/1.1",
                            b"Host: allowed.example"))
        c.close()
        served(r)
        (req,) = origin_requests("origin80", m, 1)
        expect(req["target"] == "/q/path?token=%s&a=1" % SECRET_QUERY, "origin got target %r" % req["target"])
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "allowed", "allowed.example", "/q/path", 80)
        expect(SECRET_QUERY.encode() not in audit.lines(), "the query string is in the audit file")

    with ctx.case("PUT, DELETE, PATCH, OPTIONS and an extension method are forwarded (no http.methods)"):
        m = rmark("origin80")
        for meth in (b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"PROPFIND"):
            c, r = exchange(msg(meth + b" http://allowed.example/m HTTP/1.1", b"Host: allowed.example",
                                b"Content-Length: 2", body=b"{}"), method=meth.decode())
            c.close()
            served(r, meth.decode() + ": ")
            (rec,) = records(r.src_port, 1)
            harness.check_http_record(rec, meth.decode(), 200)
        reqs = origin_requests("origin80", m, 5)
        expect([q["method"] for q in reqs] == ["PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"],
               "origin got %r" % [q["method"] for q in reqs])

    with ctx.case("hop-by-hop headers stripped both ways, end-to-end kept, Via added both ways, "
                  "Proxy-Authorization never forwarded"):
        m = rmark("origin80")
        c, r = exchange(msg(b"GET http://allowed.example/hop HTTP/1.1", b"Host: allowed.example",
                            b"Connection: keep-alive, X-Hop-A", b"X-Hop-A: 1", b"Proxy-Connection: keep-alive",
                            b"Keep-Alive: timeout=5", b"TE: trailers", b"Trailer: X-Foo",
                            b"Proxy-Authorization: Basic " + SECRET.encode(), b"X-E2E: yes"))
        c.close()
        served(r)
        (req,) = origin_requests("origin80", m, 1)
        names = [k.lower() for k, _ in req["headers"]]
        for h in ("x-hop-a", "proxy-connection", "keep-alive", "te", "trailer", "proxy-authorization"):
            expect(h not in names, "origin received hop-by-hop header %s (headers %r)" % (h, req["headers"]))
        expect(SECRET not in json.dumps(req), "the Proxy-Authorization credential reached the origin")
        expect(values(req, "X-E2E") == ["yes"], "end-to-end X-E2E %r" % values(req, "X-E2E"))
        check_one_request_upstream(req)
        rnames = [k.lower() for k, _ in r.headers]
        for h in ("x-resp-hop", "keep-alive", "proxy-authenticate", "upgrade", "te", "trailer",
                  "proxy-connection"):
            expect(h not in rnames, "client received hop-by-hop header %s (headers %r)" % (h, r.headers))
        conn = ",".join(r.headers_named("Connection")).lower()
        expect("x-resp-hop" not in conn, "Connection %r still names X-Resp-Hop" % conn)
        expect(r.header("X-Resp-E2E") == "yes", "end-to-end X-Resp-E2E %r" % r.header("X-Resp-E2E"))
        expect(any("1.1 portcullis" in v for v in r.headers_named("Via")), "response Via %r" %
               r.headers_named("Via"))

    # ================================================================== one decision per request
    with ctx.case("keep-alive: allowed request, then one to a denied host on the same connection -> "
                  "200 then 403 host_not_allowed; the denied listener records nothing"):
        mk = marks("denied80")
        c = harness.HttpClient("127.0.0.2")
        c.send(msg(b"GET http://allowed.example/ka/1 HTTP/1.1", b"Host: allowed.example"))
        r1 = c.response()
        served(r1, "first: ")
        expect(r1.status == 200 and not r1.closed, "first: %s (closed=%s)" % (r1.describe(), r1.closed))
        c.send(msg(b"GET http://denied.example/ka/2 HTTP/1.1", b"Host: denied.example"))
        r2 = c.response()
        refused(c, r2, 403, "host_not_allowed", single=False)
        c.close()
        recs = records(c.src_port, 2)
        harness.check_http_record(recs[0], "GET", 200, "allowed", "allowed.example", "/ka/1", 80)
        harness.check_denied_record(recs[1], "host_not_allowed", 403)
        expect(get(recs[1], "url.domain") == "denied.example", "url.domain %r" % get(recs[1], "url.domain"))
        nothing_reached(mk, "the second request")

    with ctx.case("keep-alive: two targets on one client connection -> two upstream connections, one "
                  "request each, never reused"):
        m80, mo = ups.mark("origin80"), ups.mark("other80")
        r80, ro = rmark("origin80"), rmark("other80")
        c = harness.HttpClient("127.0.0.2")
        got = []
        for url in (b"http://allowed.example/t/1", b"http://other.example/t/2", b"http://allowed.example/t/3"):
            c.send(msg(b"GET " + url + b" HTTP/1.1", b"Host: " + url.split(b"/")[2]))
            got.append(c.response())
        c.close()
        for i, r in enumerate(got):
            served(r, "request %d: " % (i + 1))
        expect([r.header("X-Origin") for r in got] == ["origin80", "other80", "origin80"],
               "answered by %r" % [r.header("X-Origin") for r in got])
        s80 = upstream_sessions_closed("origin80", m80)
        so = upstream_sessions_closed("other80", mo)
        expect(len(s80) == 2 and len(so) == 1, "upstream connections: origin80 %d (want 2), other80 %d (want 1)" %
               (len(s80), len(so)))
        reqs = origin_requests("origin80", r80, 2) + origin_requests("other80", ro, 1)
        expect(all(q["seq"] == 1 for q in reqs), "an upstream connection carried more than one request")
        for q in reqs:
            check_one_request_upstream(q)
        records(c.src_port, 3)

    with ctx.case("three allowed requests pipelined in one write() -> three answers in order"):
        m = rmark("origin80")
        c = harness.HttpClient("127.0.0.2")
        c.send(b"".join(msg(b"GET http://allowed.example/cl/%d/%d HTTP/1.1" % (1000 + i, i),
                            b"Host: allowed.example") for i in range(3)))
        got = [c.response() for _ in range(3)]
        c.close()
        for i, r in enumerate(got):
            served(r, "answer %d: " % (i + 1))
            expect(r.body == upstreams.body_bytes(1000 + i, i), "answer %d is not the body of request %d "
                   "(%d bytes)" % (i + 1, i + 1, len(r.body)))
        origin_requests("origin80", m, 3)
        records(c.src_port, 3)

    with ctx.case("pipelined in one write(): allowed, denied, allowed -> 200, 403, close; the denied "
                  "listener and the third request never reach anything"):
        mk = marks("denied80")
        m = rmark("origin80")
        c = harness.HttpClient("127.0.0.2")
        c.send(msg(b"GET http://allowed.example/pl/1 HTTP/1.1", b"Host: allowed.example") +
               msg(b"GET http://denied.example/pl/2 HTTP/1.1", b"Host: denied.example") +
               msg(b"GET http://allowed.example/pl/3 HTTP/1.1", b"Host: allowed.example"))
        r1 = c.response()
        r2 = c.response()
        served(r1, "first: ")
        expect(r1.status == 200 and json.loads(r1.body)["target"] == "/pl/1", "first answer: %s %r" %
               (r1.status_line, r1.body[:100]))
        refused(c, r2, 403, "host_not_allowed", single=False)
        c.close()
        time.sleep(0.3)
        reqs = ups.requests("origin80")[m:]
        expect([q["target"] for q in reqs] == ["/pl/1"], "origin got %r, want only /pl/1" %
               [q["target"] for q in reqs])
        nothing_reached(mk, "the pipelined denied request")
        recs = records(c.src_port, 2)
        harness.check_http_record(recs[0], "GET", 200, "allowed", "allowed.example", "/pl/1", 80)
        harness.check_denied_record(recs[1], "host_not_allowed", 403)

    # ================================================================== refusals like CONNECT's
    POLICY = [
        ("denied host", b"http://denied.example/x", 403, "host_not_allowed", "denied.example"),
        ("rule without port 80 (ports: [8080])", b"http://portonly.example/x", 403, "port_not_allowed",
         "portonly.example"),
        ("metadata IP literal", b"http://169.254.169.254/latest/meta-data/", 403, "blocked_address", None),
        ("allowed name resolving to 169.254.169.254", b"http://meta.example/x", 403,
         "resolved_to_blocked_range", "meta.example"),
        ("allowed name without a DNS record", b"http://nx.example/x", 502, "dns_nxdomain", "nx.example"),
        ("allowed port with no listener", b"http://allowed.example:8081/x", 502, "upstream_refused",
         "allowed.example"),
    ]
    for name, url, st, reason, domain in POLICY:
        with ctx.case("GET %s (%s) -> %d %s, nothing reached" % (url.decode(), name, st, reason)):
            mk = marks("denied80", "meta80", "origin80")
            c, r = exchange(msg(b"GET " + url + b" HTTP/1.1", b"Host: " + url.split(b"/")[2]))
            refused(c, r, st, reason, domain=domain)
            c.close()
            nothing_reached(mk)

    with ctx.case("unknown source -> 403 unknown_source"):
        c, r = exchange(msg(b"GET http://allowed.example/x HTTP/1.1", b"Host: allowed.example"), src="127.0.0.9")
        refused(c, r, 403, "unknown_source")
        c.close()

    # ================================================================== target and Host
    TARGETS = [
        ("Host names another host", msg(b"GET http://allowed.example/h HTTP/1.1", b"Host: denied.example"),
         "host_mismatch"),
        ("Host names another port", msg(b"GET http://allowed.example/h HTTP/1.1", b"Host: allowed.example:8080"),
         "host_mismatch"),
        ("target on 8080, Host without a port", msg(b"GET http://allowed.example:8080/h HTTP/1.1",
                                                    b"Host: allowed.example"), "host_mismatch"),
        ("empty Host", msg(b"GET http://allowed.example/h HTTP/1.1", b"Host: "), "host_mismatch"),
        ("duplicate Host (same value)", msg(b"GET http://allowed.example/h HTTP/1.1", b"Host: allowed.example",
                                            b"Host: allowed.example"), "bad_request"),
        ("duplicate Host (different values)", msg(b"GET http://allowed.example/h HTTP/1.1",
                                                  b"Host: allowed.example", b"Host: denied.example"), "bad_request"),
        ("userinfo", msg(b"GET http://user:pw@allowed.example/h HTTP/1.1", b"Host: allowed.example"), "invalid_host"),
        ("userinfo naming the allowed host", msg(b"GET http://allowed.example@denied.example/h HTTP/1.1", b"Host: allowed.example"),
         "invalid_host"),
        ("backslash in the authority", msg(b"GET http://allowed.example\\@denied.example/h HTTP/1.1", b"Host: allowed.example"),
         "invalid_host"),
        ("percent-escape in the host", msg(b"GET http://allowed%2Eexample/h HTTP/1.1", b"Host: allowed.example"), "invalid_host"),
        ("port out of range", msg(b"GET http://allowed.example:65536/h HTTP/1.1", b"Host: allowed.example"), "invalid_host"),
        ("non-numeric port", msg(b"GET http://allowed.example:8o/h HTTP/1.1", b"Host: allowed.example"), "invalid_host"),
        ("empty host", msg(b"GET http://:80/h HTTP/1.1", b"Host: allowed.example"), "invalid_host"),
        ("HTTP/1.1 request without Host (RFC 9112 §3.2: MUST 400)", msg(b"GET http://allowed.example/h HTTP/1.1"),
         "bad_request"),
        ("origin-form GET /x", msg(b"GET /h HTTP/1.1", b"Host: allowed.example"), "not_absolute_form"),
        ("https:// target", msg(b"GET https://allowed.example/h HTTP/1.1", b"Host: allowed.example"),
         "https_target"),
    ]
    for name, raw, reason in TARGETS:
        with ctx.case("%s -> 400 %s, nothing reached" % (name, reason)):
            mk = marks("origin80", "origin8080", "denied80")
            c, r = exchange(raw)
            refused(c, r, 400, reason)
            c.close()
            nothing_reached(mk)

    # ================================================================== smuggling
    def post(i, headers, body, version=b"HTTP/1.1", eol=b"\r\n"):
        return msg(b"POST http://allowed.example/smuggle/%d %s" % (i, version), b"Host: allowed.example",
                   *headers, body=body, eol=eol)

    HEAD_CASES = [
        ("Transfer-Encoding: chunked and Content-Length", [b"Transfer-Encoding: chunked", b"Content-Length: 5"],
         b"0\r\n\r\n" + SM),
        ("Content-Length then Transfer-Encoding: chunked", [b"Content-Length: 40", b"Transfer-Encoding: chunked"],
         b"0\r\n\r\n" + SM),
        ("two Content-Length lines that differ", [b"Content-Length: 5", b"Content-Length: 6"], b"hello!" + SM),
        ("Content-Length: 5, 6", [b"Content-Length: 5, 6"], b"hello!" + SM),
        ("Content-Length: +5", [b"Content-Length: +5"], b"hello" + SM),
        ("Content-Length: -1", [b"Content-Length: -1"], SM),
        ("Content-Length: 0x5", [b"Content-Length: 0x5"], b"hello" + SM),
        ("Content-Length: 5 5", [b"Content-Length: 5 5"], b"hello" + SM),
        ("Content-Length: 5.0", [b"Content-Length: 5.0"], b"hello" + SM),
        ("empty Content-Length", [b"Content-Length: "], SM),
        ("Content-Length over 2^63", [b"Content-Length: 99999999999999999999"], SM),
        ("Transfer-Encoding: gzip", [b"Transfer-Encoding: gzip"], SM),
        ("Transfer-Encoding: chunked, identity", [b"Transfer-Encoding: chunked, identity"], b"0\r\n\r\n" + SM),
        ("Transfer-Encoding: identity", [b"Transfer-Encoding: identity"], SM),
        ("Transfer-Encoding: xchunked", [b"Transfer-Encoding: xchunked"], b"0\r\n\r\n" + SM),
        ("Transfer-Encoding: chunked, chunked", [b"Transfer-Encoding: chunked, chunked"], b"0\r\n\r\n" + SM),
        ("Transfer-Encoding: chunked on two lines", [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
         b"0\r\n\r\n" + SM),
        ("Transfer-Encoding in an HTTP/1.0 request", [b"Transfer-Encoding: chunked"], b"0\r\n\r\n" + SM,
         b"HTTP/1.0"),
        ("space before the colon of Transfer-Encoding", [b"Transfer-Encoding : chunked", b"Content-Length: 5"],
         b"0\r\n\r\n" + SM),
        ("obs-fold in Transfer-Encoding", [b"Transfer-Encoding: identity", b" chunked"], b"0\r\n\r\n" + SM),
        ("obs-fold in an ordinary header", [b"X-A: a", b"\tfolded"], b""),
        ("bare LF line endings", [b"Content-Length: 0"], b"", b"HTTP/1.1", b"\n"),
    ]
    RAW_CASES = [
        ("bare LF after the request line", b"GET http://allowed.example/s HTTP/1.1\nHost: allowed.example\r\n\r\n"),
        ("'#' in the request-target", msg(b"GET http://allowed.example/a#frag HTTP/1.1", b"Host: allowed.example")),
        ("space in the request-target", msg(b"GET http://allowed.example/a b HTTP/1.1", b"Host: allowed.example")),
        ("raw byte >= 0x80 in the request-target", msg(b"GET http://allowed.example/caf\xc3\xa9 HTTP/1.1",
                                                       b"Host: allowed.example")),
    ]
    for i, case in enumerate(HEAD_CASES):
        name, hdrs, body = case[:3]
        raw = post(i, hdrs, body, *case[3:])
        RAW_CASES.append((name, raw))
    for name, raw in RAW_CASES:
        with ctx.case("smuggling: %s -> 400 bad_request, close, the origin records nothing" % name):
            mk = marks("origin80", "denied80")
            c, r = exchange(raw, method="POST")
            refused(c, r, 400, "bad_request")
            c.close()
            nothing_reached(mk)

    CHUNK_CASES = [
        ("chunk size not hex", b"5\r\nhello\r\nzz\r\n"),
        ("chunk size with 0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
        ("chunk size with a leading space", b" 5\r\nhello\r\n0\r\n\r\n"),
        ("chunk size with trailing whitespace", b"5 \r\nhello\r\n0\r\n\r\n"),
        ("negative chunk size", b"-5\r\nhello\r\n0\r\n\r\n"),
        ("empty chunk size line", b"\r\nhello\r\n0\r\n\r\n"),
        ("chunk size over 2^62", b"4000000000000001\r\nhello\r\n0\r\n\r\n"),
        ("chunk size of 17 hex digits", b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
        ("chunk data longer than its size", b"5\r\nhelloXX\r\n0\r\n\r\n"),
        ("bare LF after a chunk size", b"5\nhello\r\n0\r\n\r\n"),
        ("bare LF after chunk data", b"5\r\nhello\n0\r\n\r\n"),
        ("obs-fold in a trailer", b"0\r\nX-T: a\r\n folded\r\n\r\n"),
    ]
    for j, (name, chunks) in enumerate(CHUNK_CASES):
        with ctx.case("smuggling: %s -> 400 bad_request, close; the origin never gets a complete request "
                      "nor the smuggled one" % name):
            i = 100 + j
            mk = marks("denied80")
            m = rmark("origin80")
            am = ups.mark("origin80")
            c, r = exchange(post(i, [b"Transfer-Encoding: chunked"], chunks + SM), method="POST")
            refused(c, r, 400, "bad_request")
            c.close()
            upstream_sessions_closed("origin80", am)
            time.sleep(0.1)
            reqs = ups.requests("origin80")[m:]
            bad = [(q["target"], q["complete"]) for q in reqs
                   if q["complete"] or "smuggled" in q["target"]]
            expect(not bad, "origin got %r" % bad)
            nothing_reached(mk)

    # ================================================================== methods, Upgrade
    with ctx.case("http.methods [GET, HEAD]: GET and HEAD served"):
        c, r = exchange(msg(b"GET http://allowed.example/mirror HTTP/1.1", b"Host: allowed.example"), src="127.0.0.3")
        c.close()
        served(r, "GET: ")
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200)
        expect(get(rec, "rule.ruleset") == "mirror", "rule.ruleset %r" % get(rec, "rule.ruleset"))
        c, r = exchange(msg(b"HEAD http://allowed.example/cl/10 HTTP/1.1", b"Host: allowed.example"),
                        src="127.0.0.3", method="HEAD")
        c.close()
        served(r, "HEAD: ")

    for meth in (b"POST", b"DELETE", b"PUT", b"OPTIONS"):
        with ctx.case("http.methods [GET, HEAD]: %s -> 403 method_not_allowed, nothing reached" % meth.decode()):
            mk = marks("origin80")
            c, r = exchange(msg(meth + b" http://allowed.example/mirror HTTP/1.1", b"Host: allowed.example",
                                b"Content-Length: 3", body=b"abc"), src="127.0.0.3", method=meth.decode())
            refused(c, r, 403, "method_not_allowed", domain="allowed.example", path="/mirror")
            c.close()
            nothing_reached(mk)

    with ctx.case("http.methods [GET, HEAD]: curl -d (POST) -> 403; GET then POST on one connection -> "
                  "200 then 403"):
        mk = marks("origin80")
        res = harness.curl(["-x", proxy_url, "--interface", "127.0.0.3", "-o", "/dev/null", "-d", "x=1",
                            "http://allowed.example/mirror"])
        expect(res["code"] == "403", "curl POST got HTTP %r: %s" % (res["code"], res["stderr"][:200]))
        nothing_reached(mk)
        (rec,) = records(res["local_port"], 1)
        harness.check_denied_record(rec, "method_not_allowed", 403)
        c = harness.HttpClient("127.0.0.3")
        c.send(msg(b"GET http://allowed.example/cl/7 HTTP/1.1", b"Host: allowed.example"))
        r1 = c.response()
        c.send(msg(b"POST http://allowed.example/m HTTP/1.1", b"Host: allowed.example", b"Content-Length: 1",
                   body=b"x"))
        r2 = c.response()
        served(r1, "GET: ")
        refused(c, r2, 403, "method_not_allowed", single=False)
        c.close()

    for hdrs in ([b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Version: 13",
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="], [b"Upgrade: h2c"]):
        with ctx.case("%s without http.allow_upgrade -> 403 upgrade_not_allowed, nothing reached" %
                      hdrs[1 if len(hdrs) > 1 else 0].decode()):
            mk = marks("origin80")
            c, r = exchange(msg(b"GET http://allowed.example/upgrade HTTP/1.1", b"Host: allowed.example", *hdrs))
            refused(c, r, 403, "upgrade_not_allowed", domain="allowed.example", path="/upgrade")
            c.close()
            nothing_reached(mk)

    def upgrade_ok(src, port):
        m = rmark("origin80")
        c = harness.HttpClient(src, proxy_port=port)
        c.send(msg(b"GET http://allowed.example/upgrade HTTP/1.1", b"Host: allowed.example",
                   b"Connection: Upgrade", b"Upgrade: websocket", b"Sec-WebSocket-Version: 13",
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))
        r = c.response()
        expect(r.status == 101, "want 101, %s" % r.describe())
        c.send(b"ping over the upgraded connection\n")
        deadline = time.monotonic() + 5
        try:
            while b"\n" not in c.buf and c._fill(deadline):
                pass
        except OSError:
            pass
        c.close()
        expect(c.buf == b"ping over the upgraded connection\n", "echo through the upgraded connection: %r" %
               c.buf[:80])
        (req,) = origin_requests("origin80", m, 1)
        expect(values(req, "Upgrade") == ["websocket"], "origin got Upgrade %r" % values(req, "Upgrade"))

    with ctx.case("http.allow_upgrade: true: a WebSocket handshake gets the origin's 101, then bytes flow "
                  "both ways"):
        upgrade_ok("127.0.0.4", 3128)

    # ================================================================== caps
    with ctx.case("caps.download_bytes 64KiB: a 320 KiB response is cut at the cap (prefix-exact), "
                  "record download_cap with the upstream's 200"):
        data = upstreams.body_bytes(5 * CAP, 21)
        c, r = exchange(msg(b"GET http://allowed.example/cl/%d/21 HTTP/1.1" % (5 * CAP), b"Host: allowed.example"),
                        src="127.0.0.5")
        c.close()
        expect(r.status == 200, r.describe())
        expect(not r.complete and r.closed, "response complete=%s closed=%s (%s)" % (r.complete, r.closed, r.error))
        expect(0 < len(r.body) <= CAP and r.body == data[:len(r.body)], "client got %d body bytes, want 1..%d "
               "(a prefix)" % (len(r.body), CAP))
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "download_cap")

    with ctx.case("caps.upload_bytes 64KiB: a 320 KiB request body is cut at the cap (prefix-exact), "
                  "record upload_cap"):
        data = os.urandom(5 * CAP)
        m = rmark("origin80")
        c = harness.HttpClient("127.0.0.5")
        c.send(msg(b"POST http://allowed.example/upcap HTTP/1.1", b"Host: allowed.example",
                   b"Content-Length: %d" % len(data)))
        harness.send_until_cut(c.sock, data, timeout=10)
        res = harness.await_close(c.sock, 10)
        c.close()
        expect(res["end"] is not None, "client connection still open 10s after the upload")
        (req,) = origin_requests("origin80", m, 1)
        expect(not req["complete"] and 0 < req["body_len"] <= CAP, "origin: complete=%s, %d body bytes "
               "(want 1..%d)" % (req["complete"], req["body_len"], CAP))
        expect(req["body_sha256"] == sha(data[:req["body_len"]]), "origin's bytes are not a prefix of the upload")
        (rec,) = records(c.src_port, 1)
        harness.check_http_record(rec, "POST", None, "upload_cap")

    with ctx.case("caps apply to each body: two 48 KiB downloads and two 48 KiB uploads on one connection "
                  "all complete"):
        m = rmark("origin80")
        c = harness.HttpClient("127.0.0.5")
        got = []
        for i in range(2):
            c.send(msg(b"GET http://allowed.example/cl/49152/%d HTTP/1.1" % (30 + i), b"Host: allowed.example"))
            got.append(c.response())
        blob = os.urandom(48 * 1024)
        for i in range(2):
            c.send(msg(b"POST http://allowed.example/up/%d HTTP/1.1" % i, b"Host: allowed.example",
                       b"Content-Length: %d" % len(blob), body=blob))
            got.append(c.response("POST"))
        c.close()
        for i, r in enumerate(got):
            served(r, "exchange %d: " % (i + 1))
        expect(got[0].body == upstreams.body_bytes(49152, 30) and got[1].body == upstreams.body_bytes(49152, 31),
               "download bodies differ")
        reqs = origin_requests("origin80", m, 4)
        expect(all(q["complete"] for q in reqs[2:]) and all(q["body_sha256"] == sha(blob) for q in reqs[2:]),
               "uploads: %r" % [(q["complete"], q["body_len"]) for q in reqs[2:]])
        for rec in records(c.src_port, 4):
            harness.check_http_record(rec, get(rec, "http.request.method"), 200, "allowed")

    # ================================================================== bad upstream responses
    for what in ("status", "te-cl", "cl-cl", "cl-alpha"):
        with ctx.case("upstream answers a malformed head (%s) -> 502 bad_response" % what):
            c, r = exchange(msg(b"GET http://allowed.example/bad/" + what.encode() + b" HTTP/1.1",
                                b"Host: allowed.example"))
            expect(r.status == 502 and r.reason == "bad_response", "want 502 bad_response, %s" % r.describe())
            expect(r.complete and (r.closed or c.at_eof(3)), "502 not followed by a close")
            c.close()
            (rec,) = records(r.src_port, 1)
            expect(get(rec, "event.reason") == "bad_response" and get(rec, "http.response.status_code") == 502,
                   "record reason %r status %r" % (get(rec, "event.reason"), get(rec, "http.response.status_code")))

    with ctx.case("upstream's chunked body turns invalid mid-stream -> the client connection is closed, "
                  "record bad_response"):
        am = ups.mark("origin80")
        c, r = exchange(msg(b"GET http://allowed.example/bad/chunk HTTP/1.1", b"Host: allowed.example"), timeout=8)
        c.close()
        expect(r.status == 200, r.describe())
        expect(not r.complete and r.closed, "response complete=%s closed=%s (%s)" % (r.complete, r.closed, r.error))
        expect(b"smuggled" not in r.raw_body, "bytes after the invalid chunk reached the client: %r" % r.raw_body)
        upstream_sessions_closed("origin80", am)
        (rec,) = records(r.src_port, 1)
        harness.check_http_record(rec, "GET", 200, "bad_response")

    # ================================================================== top-level http: defaults
    with ctx.case("top-level http.methods [GET]: a tier without http: serves GET, refuses HEAD "
                  "(method_not_allowed)"):
        c, r = exchange(msg(b"GET http://allowed.example/d HTTP/1.1", b"Host: allowed.example"), port=3129)
        c.close()
        served(r, "GET: ")
        c, r = exchange(msg(b"HEAD http://allowed.example/d HTTP/1.1", b"Host: allowed.example"), port=3129,
                        method="HEAD")
        refused_head(c, r, 403, "method_not_allowed", dpx.audit)

    with ctx.case("top-level http.allow_upgrade: true is inherited (101 relayed)"):
        upgrade_ok("127.0.0.2", 3129)

    with ctx.case("a tier's own http: overrides the top level (POST served, Upgrade refused)"):
        c, r = exchange(msg(b"POST http://allowed.example/o HTTP/1.1", b"Host: allowed.example",
                            b"Content-Length: 2", body=b"ok"), src="127.0.0.3", port=3129, method="POST")
        c.close()
        served(r, "POST: ")
        c, r = exchange(msg(b"GET http://allowed.example/o HTTP/1.1", b"Host: allowed.example",
                            b"Connection: Upgrade", b"Upgrade: websocket"), src="127.0.0.3", port=3129)
        refused(c, r, 403, "upgrade_not_allowed", a=dpx.audit)
        c.close()

    # ================================================================== apt-get
    with ctx.case("apt-get update + apt-get download through the proxy from a local flat APT repository"):
        apt_get = harness.need("/usr/bin/apt-get")
        dpkg_deb = harness.need("/usr/bin/dpkg-deb")
        pkgdir = ctx.path("pkg")
        os.makedirs(os.path.join(pkgdir, "DEBIAN"))
        os.makedirs(os.path.join(pkgdir, "usr", "share", "doc", PKG))
        with open(os.path.join(pkgdir, "DEBIAN", "control"), "w") as f:
            f.write("Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: portcullis tests "
                    "<it@portcullis.invalid>\nDescription: portcullis integration test package\n "
                    "Fetched through the proxy by apt-get.\n" % PKG)
        with open(os.path.join(pkgdir, "usr", "share", "doc", PKG, "hello.txt"), "w") as f:
            f.write("hello through portcullis\n")
        deb_name = "%s_1.0_all.deb" % PKG
        flat = os.path.join(docroot, "flat")
        os.makedirs(flat)
        deb = os.path.join(flat, deb_name)
        p = subprocess.run([dpkg_deb, "--root-owner-group", "-Zgzip", "--build", pkgdir, deb],
                           capture_output=True, timeout=30)
        expect(p.returncode == 0, "dpkg-deb --build failed: %s" % p.stderr[-300:])
        with open(deb, "rb") as f:
            deb_bytes = f.read()
        packages = ("Package: %s\nVersion: 1.0\nArchitecture: all\nMaintainer: portcullis tests "
                    "<it@portcullis.invalid>\nFilename: %s\nSize: %d\nMD5sum: %s\nSHA256: %s\n"
                    "Description: portcullis integration test package\n\n" %
                    (PKG, deb_name, len(deb_bytes), hashlib.md5(deb_bytes).hexdigest(), sha(deb_bytes))).encode()
        packages_gz = gzip.compress(packages, mtime=0)
        with open(os.path.join(flat, "Packages"), "wb") as f:
            f.write(packages)
        with open(os.path.join(flat, "Packages.gz"), "wb") as f:
            f.write(packages_gz)
        files = [("Packages", packages), ("Packages.gz", packages_gz)]
        release = ("Origin: portcullis-it\nLabel: portcullis-it\n"
                   "Date: %s\nArchitectures: all amd64 arm64\nDescription: portcullis integration test repository\n"
                   % time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime()))
        release += "MD5Sum:\n" + "".join(" %s %d %s\n" % (hashlib.md5(d).hexdigest(), len(d), n) for n, d in files)
        release += "SHA256:\n" + "".join(" %s %d %s\n" % (sha(d), len(d), n) for n, d in files)
        with open(os.path.join(flat, "Release"), "w") as f:
            f.write(release)
        aptd = ctx.path("apt")
        for d in ("etc/sources.list.d", "etc/preferences.d", "state/lists/partial", "cache/archives/partial",
                  "download"):
            os.makedirs(os.path.join(aptd, d))
        with open(os.path.join(aptd, "etc", "sources.list"), "w") as f:
            f.write("deb [trusted=yes] http://apt.example/debian/flat/ /\n")
        open(os.path.join(aptd, "state", "status"), "w").close()
        opts = ["-q", "-o", "Acquire::http::Proxy=" + proxy_url,
                "-o", "Dir::Etc::sourcelist=" + os.path.join(aptd, "etc", "sources.list"),
                "-o", "Dir::Etc::sourceparts=" + os.path.join(aptd, "etc", "sources.list.d"),
                "-o", "Dir::Etc::preferencesparts=" + os.path.join(aptd, "etc", "preferences.d"),
                "-o", "Dir::State=" + os.path.join(aptd, "state"),
                "-o", "Dir::State::status=" + os.path.join(aptd, "state", "status"),
                "-o", "Dir::Cache=" + os.path.join(aptd, "cache"),
                "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root",
                "-o", "Acquire::Retries=0", "-o", "Acquire::http::Timeout=10",
                "-o", "Acquire::Languages=none", "-o", "Acquire::GzipIndexes=false"]
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        mark = audit.mark()
        m = rmark("origin80")
        p = subprocess.run([apt_get] + opts + ["update"], capture_output=True, timeout=40, env=env,
                           stdin=subprocess.DEVNULL, preexec_fn=harness.die_with_me())
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        expect(p.returncode == 0 and "Err:" not in out and "\nE:" not in "\n" + out and "\nW:" not in "\n" + out,
               "apt-get update exit %s: %s" % (p.returncode, out[-600:]))
        p = subprocess.run([apt_get] + opts + ["download", PKG], capture_output=True, timeout=40, env=env,
                           cwd=os.path.join(aptd, "download"), stdin=subprocess.DEVNULL,
                           preexec_fn=harness.die_with_me())
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        expect(p.returncode == 0, "apt-get download exit %s: %s" % (p.returncode, out[-600:]))
        got = os.path.join(aptd, "download", deb_name)
        expect(os.path.isfile(got), "apt-get download left no %s (%s)" % (deb_name, os.listdir(os.path.dirname(got))))
        with open(got, "rb") as f:
            expect(sha(f.read()) == sha(deb_bytes), "the downloaded .deb differs from the one served")
        reqs = ups.requests("origin80")[m:]
        targets = [q["target"] for q in reqs]
        expect("/debian/flat/" + deb_name in targets and any(t.startswith("/debian/flat/Packages") for t in targets),
               "origin did not see the index and the .deb: %r" % targets)
        expect(all(any("APT" in v for v in values(q, "User-Agent")) for q in reqs),
               "requests without apt's User-Agent: %r" % [(q["target"], values(q, "User-Agent")) for q in reqs])
        deb_record = lambda: [r for r in audit.records()[mark:]  # noqa: E731
                              if get(r, "url.path") == "/debian/flat/" + deb_name]
        harness.wait_until(deb_record, 5.0)
        recs = audit.records()[mark:]
        bad = [json.dumps(r)[:200] for r in recs
               if get(r, "url.domain") != "apt.example" or get(r, "event.reason") != "allowed"]
        expect(recs and not bad, "apt's audit records: %d, unexpected: %s" % (len(recs), bad[:3]))
        expect(any(get(r, "url.path") == "/debian/flat/" + deb_name and get(r, "http.response.status_code") == 200
                   for r in recs), "no record for the .deb download")
        print("# apt-get: %d requests through the proxy (%s)" % (len(reqs), ", ".join(sorted(set(targets)))))

    # ================================================================== end
    with ctx.case("forbidden listeners (denied.example, 169.254.169.254) never reached"):
        got = ups.accepts(role="forbidden")
        expect(not got, "forbidden listeners accepted: %s" % [(e["listener"], e["peer"]) for e in got])

    with ctx.case("still serving after everything"):
        c, r = exchange(msg(b"GET http://allowed.example/final HTTP/1.1", b"Host: allowed.example"))
        c.close()
        served(r)

    ctx.final_checks([audit, dpx.audit], forbidden_text=(SECRET, SECRET_QUERY, "origin-secret-realm"))
