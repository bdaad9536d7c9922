#!/usr/bin/python3
"""audit.format: ocsf — every record the daemon writes is an OCSF 1.1.0 event of class 4001
(Network Activity: CONNECT refusals, tunnel open / traffic / close) or 4002 (HTTP Activity:
plain HTTP), valid against the vendored class definitions (ocsfcheck.py), with the mapping
docs/siem.md documents.  Real daemon, real TLS client; waits have deadlines."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import ocsfcheck  # noqa: E402
from harness import expect  # noqa: E402

V4 = "198.51.100.40"

ctx = harness.start(__file__, v4=[V4])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "tls443", "host": V4, "port": 443, "kind": "tls-raw"},
        {"name": "origin80", "host": V4, "port": 80, "kind": "http-origin"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])
    px = harness.Proxy(ctx, "proxy", {
        "a": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [443, 80]}],
              "http": {"methods": ["GET", "PATCH"]}},
    }, audit={"format": "ocsf", "tunnel_start": True}).start()
    schema = ocsfcheck.load()
    audit = harness.Audit(px.audit_path, None, "proxy")

    def one(pred, what, timeout=8):
        found = harness.wait_until(lambda: [r for r in audit.records() if pred(r)], timeout)
        expect(found and len(found) == 1, "%s: %d records" % (what, len(found or [])))
        return found[0]

    def port_of(r):
        return (r.get("src_endpoint") or {}).get("port")

    with ctx.case("a refused CONNECT: 4001 Refuse, denied, the reason"):
        r = harness.connect("denied.example:443")
        expect(r.status == 403, r.describe())
        r.close()
        rec = one(lambda x: port_of(x) == r.src_port, "refusal")
        want = {"class_uid": 4001, "activity_id": 5, "type_uid": 400105, "status_id": 2,
                "action_id": 2, "disposition_id": 2}
        for k, v in want.items():
            expect(rec.get(k) == v, "%s = %r, want %r" % (k, rec.get(k), v))
        expect(rec["unmapped"]["reason"] == "host_not_allowed", "reason %r" % rec["unmapped"])
        expect(rec["dst_endpoint"].get("hostname") == "denied.example", "dst %r" % rec["dst_endpoint"])

    with ctx.case("a TLS tunnel: 4001 Open then Close, one correlation_uid, traffic, tls, the JA4"):
        r = harness.connect("allowed.example:443")
        expect(r.status == 200, r.describe())
        c = harness.TlsClient("allowed.example", cafile=certs["ca"])
        r.sock.sendall(c.hello())
        c.finish(r.sock, timeout=10)
        c.send(r.sock, b"SAY ocsf\n")
        expect(c.recv_line(r.sock, timeout=10) == b"ocsf\n", "no TLS answer")
        r.close()
        close = one(lambda x: port_of(x) == r.src_port and x.get("activity_id") == 2, "close")
        opened = one(lambda x: port_of(x) == r.src_port and x.get("activity_id") == 1, "open")
        expect(close["type_uid"] == 400102 and opened["type_uid"] == 400101, "type_uids %r %r" %
               (close["type_uid"], opened["type_uid"]))
        expect(close["metadata"]["correlation_uid"] == opened["metadata"]["correlation_uid"],
               "correlation_uid differs")
        expect(close["metadata"]["uid"] != opened["metadata"]["uid"], "metadata.uid repeats")
        expect(close["traffic"]["bytes_out"] > 0 and close["traffic"]["bytes_in"] > 0, "traffic %r" %
               close["traffic"])
        expect(close["tls"] == {"version": "1.3", "sni": "allowed.example"}, "tls %r" % close["tls"])
        ja4 = close["unmapped"].get("ja4_fingerprint_list")
        expect(ja4 and ja4[0]["type_id"] == 1 and len(ja4[0]["value"]) == 36, "JA4 %r" % ja4)
        expect(close["end_time"] - close["start_time"] == close["duration"] or
               abs(close["end_time"] - close["start_time"] - close["duration"]) <= 1,
               "start %r + duration %r != end %r" % (close["start_time"], close["duration"], close["end_time"]))

    with ctx.case("plain HTTP: 4002 Get with http_request (url, user_agent) and http_response"):
        cl = harness.HttpClient("127.0.0.2")
        cl.send(b"GET http://allowed.example/o HTTP/1.1\r\nHost: allowed.example\r\n"
                b"User-Agent: ocsf-test\r\nConnection: close\r\n\r\n")
        resp = cl.response()
        expect(resp.status == 200, resp.describe())
        cl.close()
        rec = one(lambda x: port_of(x) == cl.src_port, "GET")
        expect(rec["class_uid"] == 4002 and rec["activity_id"] == 3 and rec["type_uid"] == 400203,
               "class %r activity %r" % (rec["class_uid"], rec["activity_id"]))
        hr = rec["http_request"]
        expect(hr.get("http_method") == "GET" and hr.get("user_agent") == "ocsf-test" and
               hr["url"].get("path") == "/o" and hr["url"].get("hostname") == "allowed.example",
               "http_request %r" % hr)
        expect(rec["http_response"] == {"code": 200}, "http_response %r" % rec["http_response"])

    with ctx.case("a method OCSF 1.1.0 does not name: 4002 Other, the method under unmapped"):
        cl = harness.HttpClient("127.0.0.2")
        cl.send(b"PATCH http://allowed.example/p HTTP/1.1\r\nHost: allowed.example\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        resp = cl.response("PATCH")
        cl.close()
        rec = one(lambda x: port_of(x) == cl.src_port, "PATCH")
        expect(rec["activity_id"] == 99 and "http_method" not in rec["http_request"] and
               rec["unmapped"].get("http_method") == "PATCH", "PATCH record %r" % rec)

    with ctx.case("every record is valid OCSF 1.1.0 against the vendored class definitions"):
        recs = audit.records()
        expect(len(recs) >= 5, "only %d records" % len(recs))
        probs = ["%s: %s" % (r.get("type_uid"), p) for r in recs for p in ocsfcheck.check(r, schema)]
        expect(not probs, "%d problems: %s" % (len(probs), "; ".join(probs[:6])))
        ids = [r["metadata"]["uid"] for r in recs]
        expect(len(set(ids)) == len(ids), "metadata.uid repeats")

    with ctx.case("the checker refuses what OCSF 1.1.0 does not allow"):
        good = audit.records()[0]
        bad = dict(good, severity_id=7, unknown_key=1)
        bad["src_endpoint"] = dict(good["src_endpoint"], port="80")
        del bad["time"]
        probs = ocsfcheck.check(bad, schema)
        for want in ("severity_id", "unknown_key", "src_endpoint.port", "time: required"):
            expect(any(want in p for p in probs), "checker missed %s: %r" % (want, probs))

    ctx.final_checks([])
