#!/usr/bin/python3
"""The audit stream as a security boundary: what a hostile client sends reaches the record
as data, never as structure.

A User-Agent cut at its 256-byte limit is cut between characters; line and paragraph
separators, quotes, backslashes, control bytes and invalid UTF-8 leave one record per
line that strict JSON readers and Unicode line readers both take whole; a value shaped
like JSON members cannot add or change a field (a refusal stays a refusal).
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

GOOD = "198.51.100.10"
T = "allowed.example:8080"


def ua_bytes(b):
    """Header text for harness.connect, which sends it as latin-1: raw bytes b."""
    return "User-Agent: " + b.decode("latin-1")


ctx = harness.start(__file__, v4=[GOOD])
with ctx:
    ups = harness.Upstreams(ctx, [{"name": "raw", "host": GOOD, "port": 8080}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", GOOD)])
    px = harness.Proxy(ctx, "proxy", {
        "a": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [8080]}]},
    }).start()
    audit = px.audit

    with ctx.case("a User-Agent cut at 256 bytes inside a UTF-8 character is cut before it"):
        ua = b"a" * 255 + "\u00e9".encode()  # 257 bytes: the limit falls inside the e-acute
        r = harness.connect(T, headers=[ua_bytes(ua)])
        expect(r.status == 200, r.describe())
        r.close()
        rec = audit.wait_one(lambda x: get(x, "source.port") == r.src_port, timeout=8)
        expect(rec is not None, "no record")
        got = get(rec, "user_agent.original")
        expect(got == "a" * 255, "user_agent.original ends %r (a cut character shows as U+FFFD)" %
               (got[-3:] if isinstance(got, str) else got))

    with ctx.case("separators, quotes, backslashes, controls, invalid UTF-8 in a User-Agent: the "
                  "record is one line for json.loads and for str.splitlines, the value intact"):
        ua = ("x\u2028y\u2029z\u0085w".encode() + b'"\\\t' + b"\xff\xc0\xaf\xed\xa0\x80" +
              "\u00e9".encode())
        r = harness.connect(T, headers=[ua_bytes(ua)])
        expect(r.status == 200, r.describe())
        r.close()
        rec = audit.wait_one(lambda x: get(x, "source.port") == r.src_port, timeout=8)
        expect(rec is not None, "no record")
        want = "x\u2028y\u2029z\u0085w\"\\\t" + "\ufffd" * 6 + "\u00e9"
        expect(get(rec, "user_agent.original") == want, "user_agent.original %r, want %r" %
               (get(rec, "user_agent.original"), want))
        text = audit.lines().decode("utf-8")  # strict: invalid UTF-8 would raise
        lines = [ln for ln in text.splitlines() if ln.strip()]
        for ln in lines:
            try:
                json.loads(ln)
            except ValueError as e:
                raise harness.CaseFailed("a Unicode line reader splits a record: %s: %r" %
                                         (e, ln[:120]))
        expect(len(lines) == len(audit.records()), "%d Unicode lines for %d records" %
               (len(lines), len(audit.records())))

    with ctx.case("a User-Agent shaped like JSON members adds no field and leaves a refusal denied"):
        inj = '","outcome":"success"},"event":{"outcome":"success","type":["allowed"]},"x":"'
        r = harness.connect("denied.example:8080", headers=["User-Agent: " + inj])
        harness.expect_refusal(r, 403, "host_not_allowed")
        rec = audit.wait_one(lambda x: get(x, "source.port") == r.src_port, timeout=8)
        expect(rec is not None, "no record")
        expect(get(rec, "event.outcome") == "failure" and "denied" in get(rec, "event.type"),
               "the record reads %r %r" % (get(rec, "event.outcome"), get(rec, "event.type")))
        expect(get(rec, "user_agent.original") == inj, "user_agent.original %r" %
               get(rec, "user_agent.original"))
        expect("x" not in rec, "a top-level key from the User-Agent: %r" % sorted(rec))

    with ctx.case("an ALPN protocol with a NUL is not recorded as the protocol before the NUL"):
        r = harness.connect(T)
        expect(r.status == 200, r.describe())
        hello = harness.client_hello(sni="allowed.example", alpn=[b"h2\x00evil"])
        r.sock.sendall(harness.tls_records(hello))
        harness.await_close(r.sock, timeout=3)
        r.close()
        rec = audit.wait_one(lambda x: get(x, "source.port") == r.src_port, timeout=8)
        expect(rec is not None, "no record")
        expect(get(rec, "tls.client.server_name") == "allowed.example",
               "the hello was not inspected: %r" % rec)
        expect(get(rec, "tls.next_protocol") in (None, "h2\x00evil"),
               "tls.next_protocol %r for the ALPN h2\\0evil" % get(rec, "tls.next_protocol"))

    with ctx.case("explain --json with hostile arguments (invalid UTF-8, U+2028 in the method) "
                  "prints one line that strict JSON readers take"):
        import subprocess
        pol = os.path.join(ctx.srcdir, "policy", "examples", "default.yaml")
        method = b"GE\xffT\xe2\x80\xa8\xc0\xaf"
        res = subprocess.run([ctx.binary.encode(), b"explain", b"-c", pol.encode(), b"--source",
                              b"127.0.0.1", b"--json", method, b"http://deb.debian.org/"],
                             capture_output=True, timeout=20)
        expect(res.returncode in (0, 1), "explain exit %d: %r" % (res.returncode, res.stderr[:300]))
        try:
            text = res.stdout.decode("utf-8")
            lines = [ln for ln in text.splitlines() if ln.strip()]
            expect(len(lines) == 1, "%d Unicode lines: %r" % (len(lines), text[:300]))
            out = json.loads(lines[0])
        except ValueError as e:
            raise harness.CaseFailed("explain --json output rejected: %s: %r" % (e, res.stdout[:300]))
        expect(out["request"]["method"] == "GE\ufffdT\u2028\ufffd\ufffd",
               "request.method %r" % out["request"]["method"])

    ctx.final_checks([audit])
