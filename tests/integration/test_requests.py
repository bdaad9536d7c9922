#!/usr/bin/python3
"""Scenario 5: malformed and hostile requests.

Each malformed request gets its 4xx, a Proxy-Status reason and a close, and
the next connection is still served.  Proxy-Authorization is accepted and
never logged.  A slowloris client is cut at the header deadline while another
client is served.
"""
import os
import select
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
T = "allowed.example:8080"
SECRET = "c2VjcmV0"           # base64("secret")
SECRET_QUERY = "tok3nQu3ry"

BAD = [(400, "bad_request")]
BAD_OR_HOST = [(400, "bad_request"), (400, "invalid_host")]
TOO_LARGE = [(431, "headers_too_large")]


def req(*lines, end=b"\r\n"):
    return b"".join(ln + end for ln in lines) + end


REQ_LINE = b"CONNECT " + T.encode() + b" HTTP/1.1"
HOST = b"Host: " + T.encode()
CASES = [
    ("bare LF line endings", req(REQ_LINE, HOST, end=b"\n"), BAD),
    ("bare LF inside the header block", REQ_LINE + b"\r\n" + HOST + b"\nX-A: 1\r\n\r\n", BAD),
    ("bare CR inside a header", req(REQ_LINE, HOST, b"X-A: 1\rX-B: 2"), BAD),
    ("NUL in a header value", req(REQ_LINE, HOST, b"X-A: a\x00b"), BAD),
    ("NUL in the request target", req(b"CONNECT allowed.example\x00.evil:8080 HTTP/1.1", HOST), BAD_OR_HOST),
    ("obs-fold continuation line", req(REQ_LINE, HOST, b"X-A: a", b"  folded"), BAD),
    ("duplicate Host header", req(REQ_LINE, HOST, HOST), BAD),
    ("conflicting duplicate Host headers", req(REQ_LINE, HOST, b"Host: other.example:8080"), BAD),
    ("whitespace between header name and colon", req(REQ_LINE, b"Host : " + T.encode()), BAD),
    ("header line without a colon", req(REQ_LINE, HOST, b"NoColonHere"), BAD),
    ("single header over 8 KiB", req(REQ_LINE, HOST, b"X-Big: " + b"a" * 9000), TOO_LARGE),
    ("request head over 8 KiB in many headers",
     req(REQ_LINE, HOST, *[b"X-H%d: %s" % (i, b"b" * 400) for i in range(25)]), TOO_LARGE),
    ("too many headers (150)", req(REQ_LINE, HOST, *[b"X-H%d: v" % i for i in range(150)]),
     TOO_LARGE),
    ("HTTP/2.0", req(b"CONNECT " + T.encode() + b" HTTP/2.0", HOST), [(505, "version_not_supported")]),
    ("HTTP/3.0", req(b"CONNECT " + T.encode() + b" HTTP/3.0", HOST), [(505, "version_not_supported")]),
    ("malformed version token", req(b"CONNECT " + T.encode() + b" HTTP/1.1x", HOST), BAD),
    ("garbage request line", req(b"HELLO THERE"), BAD),
    ("TLS ClientHello sent to the plain proxy port",
     bytes.fromhex("16030100a5010000a10303") + os.urandom(32) + b"\x00" * 80 + b"\r\n\r\n", BAD),
    ("double space in the request line", req(b"CONNECT  " + T.encode() + b" HTTP/1.1", HOST), BAD_OR_HOST),
    # Plain HTTP is forwarded with a decision per request (test_http.py); here: refused ones.
    ("absolute-form GET http:// to a host the tier does not allow",
     req(b"GET http://denied.example/path?token=" + SECRET_QUERY.encode() + b" HTTP/1.1",
         b"Host: denied.example"), [(403, "host_not_allowed")]),
    ("POST http:// to a host the tier does not allow",
     req(b"POST http://denied.example/ HTTP/1.1", b"Host: denied.example",
         b"Content-Length: 0"), [(403, "host_not_allowed")]),
    ("origin-form GET /path", req(b"GET /path HTTP/1.1", b"Host: allowed.example"),
     [(400, "not_absolute_form")]),
    ("lower-case method 'connect'", req(b"connect " + T.encode() + b" HTTP/1.1", HOST),
     BAD),
    ("CONNECT without a port", req(b"CONNECT allowed.example HTTP/1.1", b"Host: allowed.example"),
     BAD_OR_HOST),
    ("CONNECT with Content-Length", req(REQ_LINE, HOST, b"Content-Length: 5") + b"hello", BAD),
    ("CONNECT with Content-Length: 0", req(REQ_LINE, HOST, b"Content-Length: 0"), BAD),
    ("CONNECT with Transfer-Encoding", req(REQ_LINE, HOST, b"Transfer-Encoding: chunked") + b"0\r\n\r\n",
     BAD),
]


def slowloris(result, src="127.0.0.2", interval=0.5, limit=12.0):
    """Send one header byte per interval until the proxy answers or closes."""
    data = req(REQ_LINE, HOST, b"X-Slow: " + b"s" * 64)
    s = harness.bound_socket(src)
    result["src_port"] = s.getsockname()[1]
    t0 = time.monotonic()
    s.connect(("127.0.0.1", 3128))
    buf = b""
    sent = 0
    try:
        while time.monotonic() - t0 < limit:
            r, _, _ = select.select([s], [], [], interval)
            if r:
                d = s.recv(65536)
                if not d:
                    result["closed"] = True
                    break
                buf += d
                continue
            if sent < len(data):
                s.send(data[sent:sent + 1])
                sent += 1
    except OSError as e:
        result["error"] = str(e)
    result["elapsed"] = time.monotonic() - t0
    result["raw"] = buf
    result["sent"] = sent
    s.close()


ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    ups = harness.Upstreams(ctx, [{"name": "raw", "host": GOOD, "port": 8080}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD)])
    px = harness.Proxy(ctx, "proxy", {
        "a": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [8080]}]},
    }).start()
    audit = px.audit

    with ctx.case("control: a well-formed CONNECT is served"):
        harness.expect_served(T)

    for name, raw, allowed in CASES:
        with ctx.case("%s -> %s, close, next connection served" %
                      (name, " / ".join("%d %s" % a for a in allowed))):
            n0 = len(ups.accepts())
            r = harness.send_raw(raw)
            harness.any_refusal(r, allowed, audit=audit)
            expect(len(ups.accepts()) == n0, "upstream reached by a malformed request")
            harness.expect_served(T, what="next connection: ")

    with ctx.case("HTTP/1.0 CONNECT without Host is served (openssl s_client style)"):
        r = harness.send_raw(b"CONNECT " + T.encode() + b" HTTP/1.0\r\n\r\n")
        expect(r.status == 200, r.describe())
        r.sock.sendall(b"SAY http10\n")
        expect(harness.recv_line(r.sock, r.leftover) == b"http10\n", "tunnel did not work")
        r.close()

    with ctx.case("ordinary client headers (User-Agent, Proxy-Connection) are accepted"):
        r = harness.connect(T, headers=["User-Agent: curl/8", "Proxy-Connection: Keep-Alive",
                                        "Accept: */*"])
        expect(r.status == 200, r.describe())
        r.close()

    with ctx.case("a 7 KiB request head (7 headers of 1 KiB) is accepted (below the 8 KiB limit)"):
        r = harness.connect(T, headers=["X-Pad-%d: %s" % (i, "p" * 1000) for i in range(7)])
        expect(r.status == 200, r.describe())
        r.close()

    with ctx.case("a request head arriving one byte per write is parsed"):
        raw = req(REQ_LINE, HOST)
        r = harness.send_raw(b"", chunks=[raw[i:i + 1] for i in range(len(raw))], chunk_delay=0.002)
        expect(r.status == 200, r.describe())
        r.close()

    with ctx.case("Proxy-Authorization: Basic %s is accepted and never logged" % SECRET):
        r = harness.connect(T, headers=["Proxy-Authorization: Basic " + SECRET])
        expect(r.status == 200, r.describe())
        r.sock.sendall(b"SAY auth\n")
        expect(harness.recv_line(r.sock, r.leftover) == b"auth\n", "tunnel did not work")
        r.close()
        rec = audit.by_port(r.src_port, timeout=5)
        expect(rec is not None, "no audit record for the tunnel")
        logs = audit.lines() + px.stderr_text().encode()
        try:
            with open(px.stdout_path, "rb") as f:
                logs += f.read()
        except OSError:
            pass
        expect(SECRET.encode() not in logs and b"secret" not in logs.lower(),
               "the Proxy-Authorization secret appears in the audit file or the daemon's output")

    with ctx.case("the query string of a refused GET is never logged"):
        expect(audit.find(lambda r: get(r, "event.reason") == "host_not_allowed"
                          and get(r, "http.request.method") == "GET"),
               "no refused-GET record: the GET was not logged at all, this check would be vacuous")
        logs = audit.lines() + px.stderr_text().encode()
        expect(SECRET_QUERY.encode() not in logs, "query string found in the audit file or stderr")

    with ctx.case("client sending nothing -> 408 request_timeout at the 2s header deadline"):
        r = harness.send_raw(b"", timeout=8)
        harness.expect_refusal(r, 408, "request_timeout", audit=audit)
        expect(1.5 <= r.elapsed <= 4.0, "answered after %.2fs, header_timeout is 2s" % r.elapsed)

    with ctx.case("slowloris (1 byte / 0.5s) is cut at the header deadline while another client is served"):
        res = {}
        th = threading.Thread(target=slowloris, args=(res,), daemon=True)
        th.start()
        time.sleep(0.7)
        t_other = time.monotonic()
        harness.expect_served(T, what="concurrent client: ")
        other = time.monotonic() - t_other
        th.join(15)
        expect(not th.is_alive(), "slowloris client still running")
        expect(other < 1.0, "concurrent client took %.2fs" % other)
        raw = res.get("raw", b"")
        head = raw.split(b"\r\n", 1)[0]
        expect(raw.startswith(b"HTTP/1.1 408") or raw.startswith(b"HTTP/1.0 408"),
               "slowloris got %r after sending %s bytes (error %s)" % (raw[:100], res.get("sent"), res.get("error")))
        expect(b'details="request_timeout"' in raw, "no request_timeout Proxy-Status in %r" % raw[:300])
        expect(res.get("closed"), "connection not closed after 408 (%r)" % head)
        expect(res["elapsed"] <= 4.0, "cut after %.2fs, header_timeout is 2s" % res["elapsed"])
        rec = audit.by_port(res["src_port"], timeout=5)
        expect(rec is not None, "no audit record for the slowloris connection")
        harness.check_denied_record(rec, "request_timeout", 408)

    with ctx.case("still serving after every malformed request"):
        harness.expect_served(T)

    ctx.final_checks([audit], forbidden_text=(SECRET, "secret", SECRET_QUERY))
