#!/usr/bin/python3
"""Scenario 9: a tier in audit mode.

Tier "obs" (mode: audit) runs every check but lets allowlist, TLS and caps
refusals through: the tunnel works and its record says what would have
happened (outcome success, event.type allowed, labels.would_deny = the reason).
The built-in blocked ranges and the policy's blocked_ranges stay enforced in
every mode: 169.254.169.254 (literal or by name) and a blocked_ranges address
are refused 403, and their listeners never see a connection.  Tier "enf" with
the same rules in enforce mode refuses, for contrast.
"""
import hashlib
import os
import random
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

V4 = "198.51.100.10"
META = "169.254.169.254"
INTERNAL = "198.51.100.99"       # in the policy's blocked_ranges
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"

ctx = harness.start(__file__, v4=[V4, META, INTERNAL])
with ctx:
    certs = ctx.certs()
    ups = harness.Upstreams(ctx, [
        {"name": "tls443", "host": V4, "port": 443, "kind": "tls-raw"},
        {"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"},
        {"name": "raw8081", "host": V4, "port": 8081, "kind": "tcp"},
        {"name": "meta80", "host": META, "port": 80, "kind": "tcp", "role": "forbidden"},
        {"name": "meta443", "host": META, "port": 443, "kind": "tcp", "role": "forbidden"},
        {"name": "internal443", "host": INTERNAL, "port": 443, "kind": "tcp", "role": "forbidden"},
    ])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [
        ("allowed.example", V4), ("notallowed.example", V4), ("evil.example", V4),
        ("meta.example", META), ("internal.example", INTERNAL), ("rogue.example", META),
    ])
    rules = [{"host": "allowed.example", "ports": [443, 8080]},
             {"host": "meta.example", "ports": [80, 443]},
             {"host": META, "ports": [80, 443]},
             {"host": "internal.example", "ports": [443]},
             {"host": INTERNAL, "ports": [443]}]
    px = harness.Proxy(ctx, "proxy", {
        "obs": {"mode": "audit", "sources": ["127.0.0.1/32", "127.0.0.2/32"], "allow": rules,
                "tls": {"require_sni": True, "sni_must_match": True, "require_tls_ports": [443]},
                "caps": {"upload_bytes": "16KiB", "download_bytes": "16KiB", "connections_per_source": 2}},
        "obsb": {"mode": "audit", "sources": ["127.0.0.4/32"], "allow": rules,
                 "caps": {"upload_bytes_per_source": {"bytes": 20000, "window": "1m"}}},
        "enf": {"mode": "enforce", "sources": ["127.0.0.3/32"], "allow": rules},
    }, blocked_ranges=[INTERNAL + "/32"]).start()
    audit = px.audit

    def would(rec):
        v = get(rec, "labels.would_deny")
        return v if v is not None else rec.get("labels.would_deny")

    def let_through(rec, reason, tier="obs"):
        harness.check_tunnel_record(rec)
        expect(would(rec) == reason, "labels.would_deny %r, want %r" % (would(rec), reason))
        expect(get(rec, "rule.ruleset") == tier, "rule.ruleset %r, want %s" % (get(rec, "rule.ruleset"), tier))

    def record(r):
        rec = audit.by_port(r.src_port, timeout=5)
        expect(rec is not None, "no audit record for source port %s" % r.src_port)
        return rec

    def tunnel(target, src="127.0.0.2"):
        r = harness.connect(target, src=src)
        expect(r.status == 200, "CONNECT %s from %s: %s (an audit tier must let it through)" %
               (target, src, r.describe()))
        return r

    def say_through(target, token, listener):
        mark = ups.mark(listener)
        r, ans = harness.say(target, token)
        expect(r.status == 200, "CONNECT %s: %s (an audit tier must let it through)" % (target, r.describe()))
        expect(ans == (token + "\n").encode(), "tunnel answered %r, want %r" % (ans, token))
        expect(ups.mark(listener) == mark + 1, "upstream %s not reached" % listener)
        return record(r)

    with ctx.case("audit tier: notallowed.example:8080 (no rule) goes through; record allowed, success, "
                  "labels.would_deny host_not_allowed"):
        let_through(say_through("notallowed.example:8080", "not-allowed-but-audit", "raw8080"), "host_not_allowed")

    with ctx.case("audit tier: allowed.example:8081 (rule, other port) goes through; would_deny port_not_allowed"):
        let_through(say_through("allowed.example:8081", "port-audit", "raw8081"), "port_not_allowed")

    with ctx.case("audit tier: s_client -servername evil.example to allowed.example:443 completes; "
                  "would_deny tls_sni_mismatch, tls.client.server_name evil.example"):
        exe = harness.need(shutil.which("openssl") or "/usr/bin/openssl")
        mark, amark = ups.mark("tls443"), audit.mark()
        p = subprocess.run([exe, "s_client", "-proxy", "127.0.0.1:3128", "-connect", "allowed.example:443",
                            "-servername", "evil.example", "-CAfile", certs["ca"], "-quiet"],
                           input=b"SAY sni-mismatch-audit\n", capture_output=True, timeout=20,
                           preexec_fn=harness.die_with_me())
        out = p.stdout.decode("utf-8", "replace")
        expect("sni-mismatch-audit" in out, "s_client exit %d, stdout %r, stderr %r" %
               (p.returncode, out[-200:], p.stderr.decode("utf-8", "replace")[-300:]))
        sess = ups.sessions_since("tls443", mark, 5)
        expect(len(sess) == 1 and sess[0][1] is not None and sess[0][1].get("sni") == "evil.example",
               "upstream sessions %r, want one with SNI evil.example" % [c for _, c in sess])
        rec = audit.wait_new(amark, lambda r: get(r, "source.ip") == "127.0.0.1", timeout=5)
        expect(rec is not None, "no audit record for the s_client tunnel")
        let_through(rec, "tls_sni_mismatch")
        expect(get(rec, "tls.client.server_name") == "evil.example",
               "tls.client.server_name %r" % get(rec, "tls.client.server_name"))

    with ctx.case("audit tier: SSH banner on 443 reaches the upstream; would_deny not_tls"):
        mark = ups.mark("tls443")
        r = tunnel("allowed.example:443")
        r.sock.sendall(SSH_BANNER)
        harness.await_close(r.sock, 5)
        r.close()
        sess = ups.sessions_since("tls443", mark, 5)
        expect(len(sess) == 1 and sess[0][1] is not None, "upstream sessions %r" % [c for _, c in sess])
        ev = sess[0][1]
        expect(ev["raw_rx"] > 0 and bytes.fromhex(ev["raw_head"]).startswith(SSH_BANNER[:ev["raw_rx"]]),
               "upstream received %d bytes (%r), want the SSH banner" %
               (ev["raw_rx"], bytes.fromhex(ev.get("raw_head", ""))))
        let_through(record(r), "not_tls")

    with ctx.case("audit tier: a hello without SNI completes the handshake; would_deny tls_no_sni"):
        r = tunnel("allowed.example:443")
        c = harness.TlsClient(None, cafile=certs["ca"])
        r.sock.sendall(c.hello())
        try:
            c.finish(r.sock, r.leftover, timeout=10)
            c.send(r.sock, b"SAY no-sni-audit\n")
            line = c.recv_line(r.sock)
        except (harness.CaseFailed, OSError, c.ssl.SSLError) as e:
            raise harness.CaseFailed("handshake through the tunnel failed: %s" % e)
        r.close()
        expect(line == b"no-sni-audit\n", "TLS answer %r" % line)
        let_through(record(r), "tls_no_sni")

    with ctx.case("audit tier: 64 KiB up through a 16KiB upload cap arrives whole; would_deny upload_cap"):
        data = random.Random(3).randbytes(65536)
        head = b"SINK %d\n" % len(data)
        r = tunnel("allowed.example:8080")
        r.sock.sendall(head + data)
        line = harness.recv_line(r.sock, r.leftover, timeout=10)
        r.close()
        expect(line == b"SINK %d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()),
               "upstream answered %r" % line[:100])
        rec = record(r)
        let_through(rec, "upload_cap")
        expect(get(rec, "source.bytes") == len(head) + len(data), "source.bytes %r, want %d" %
               (get(rec, "source.bytes"), len(head) + len(data)))

    with ctx.case("audit tier: 64 KiB down through a 16KiB download cap arrives whole; would_deny download_cap"):
        n = 65536
        want = random.Random(4).randbytes(n)
        r = tunnel("allowed.example:8080")
        r.sock.sendall(b"SOURCE %d 4\n" % n)
        res = harness.await_close(r.sock, 10)
        r.close()
        got = r.leftover + res["got"]
        expect(got == want, "client received %d bytes%s, want all %d" %
               (len(got), "" if got == want[:len(got)] else " (not a prefix)", n))
        rec = record(r)
        let_through(rec, "download_cap")
        expect(get(rec, "destination.bytes") == n, "destination.bytes %r, want %d" %
               (get(rec, "destination.bytes"), n))

    def sink_from(src, n, seed):
        data = random.Random(seed).randbytes(n)
        r = tunnel("allowed.example:8080", src=src)
        r.sock.sendall(b"SINK %d\n" % n + data)
        line = harness.recv_line(r.sock, r.leftover, timeout=10)
        r.close()
        expect(line == b"SINK %d %s\n" % (n, hashlib.sha256(data).hexdigest().encode()),
               "upstream answered %r" % line[:100])
        return record(r)

    with ctx.case("audit tier obsb: upload budget 20000/1m from 127.0.0.4: the crossing tunnel arrives whole "
                  "and the next is not refused; both would_deny source_upload_budget, the first none"):
        recs = [sink_from("127.0.0.4", 12000, 40 + i) for i in range(3)]
        labels = [would(r) for r in recs]
        for rec in recs:
            harness.check_tunnel_record(rec)
        expect(labels == [None, "source_upload_budget", "source_upload_budget"],
               "labels.would_deny of the three tunnels %r, want [None, source_upload_budget x2]" % labels)

    with ctx.case("audit tier obsb, budget spent (a would-deny at CONNECT), then meta.example:80 -> 403 "
                  "resolved_to_blocked_range; labels.would_deny is not the enforced reason"):
        rep = harness.connect("meta.example:80", src="127.0.0.4")
        try:
            rec = harness.expect_refusal(rep, 403, "resolved_to_blocked_range", audit=audit, ruleset="obsb")
        finally:
            rep.close()
        expect(would(rec) in (None, "source_upload_budget"),
               "labels.would_deny %r on a record refused with resolved_to_blocked_range (want none, or the "
               "would-deny reason source_upload_budget)" % would(rec))

    with ctx.case("audit tier: connections_per_source 2, a 3rd concurrent tunnel still works; only it has "
                  "would_deny source_connection_limit"):
        held = []
        try:
            for i in range(3):
                r = tunnel("allowed.example:8080")
                held.append(r)
                r.sock.sendall(b"HOLD\n")
                line = harness.recv_line(r.sock, r.leftover, timeout=5)
                expect(line == b"HOLD ok\n", "tunnel %d answered %r" % (i + 1, line))
            for i, r in enumerate(held):
                r.sock.sendall(b"echo-%d\n" % i)
                got = harness.recv_line(r.sock, b"", timeout=5)
                expect(got == b"echo-%d\n" % i, "tunnel %d echoed %r" % (i + 1, got))
        finally:
            for r in held:
                r.close()
        recs = [record(r) for r in held]
        for rec in recs:
            harness.check_tunnel_record(rec)
        expect(would(recs[2]) == "source_connection_limit", "3rd tunnel: labels.would_deny %r" % would(recs[2]))
        expect(would(recs[0]) is None and would(recs[1]) is None, "first two tunnels: labels.would_deny %r, %r" %
               (would(recs[0]), would(recs[1])))

    with ctx.case("audit tier: a compliant TLS tunnel has no labels.would_deny"):
        r = tunnel("allowed.example:443")
        c = harness.TlsClient("allowed.example", cafile=certs["ca"])
        r.sock.sendall(c.hello())
        c.finish(r.sock, r.leftover, timeout=10)
        c.send(r.sock, b"SAY compliant\n")
        line = c.recv_line(r.sock)
        r.close()
        expect(line == b"compliant\n", "TLS answer %r" % line)
        rec = record(r)
        harness.check_tunnel_record(rec)
        expect(would(rec) is None, "labels.would_deny %r on a compliant tunnel" % would(rec))

    # ---------------------------------------------------------------- still enforced
    for target, reason in (("%s:80" % META, "blocked_address"), ("%s:443" % META, "blocked_address"),
                           ("meta.example:80", "resolved_to_blocked_range"),
                           ("meta.example:443", "resolved_to_blocked_range"),
                           ("%s:443" % INTERNAL, "blocked_address"),
                           ("internal.example:443", "resolved_to_blocked_range")):
        with ctx.case("audit tier: CONNECT %s still refused 403 %s" % (target, reason)):
            rep = harness.connect(target)
            try:
                rec = harness.expect_refusal(rep, 403, reason, audit=audit, ruleset="obs")
            finally:
                rep.close()
            expect(would(rec) is None, "labels.would_deny %r on an enforced refusal" % would(rec))

    with ctx.case("audit tier: rogue.example:80 (no rule, resolves to 169.254.169.254) -> 403 "
                  "resolved_to_blocked_range; labels.would_deny none or host_not_allowed, never the enforced reason"):
        rep = harness.connect("rogue.example:80")
        try:
            rec = harness.expect_refusal(rep, 403, "resolved_to_blocked_range", audit=audit, ruleset="obs")
        finally:
            rep.close()
        expect(would(rec) in (None, "host_not_allowed"),
               "labels.would_deny %r on a record refused with resolved_to_blocked_range" % would(rec))

    with ctx.case("audit tier: nx.example:443 (no rule, NXDOMAIN) -> 502 dns_nxdomain; labels.would_deny none "
                  "or host_not_allowed, never the refusal reason"):
        rep = harness.connect("nx.example:443")
        try:
            rec = harness.expect_refusal(rep, 502, "dns_nxdomain", audit=audit, ruleset="obs")
        finally:
            rep.close()
        expect(would(rec) in (None, "host_not_allowed"),
               "labels.would_deny %r on a record refused with dns_nxdomain" % would(rec))

    with ctx.case("enforce tier with the same rules: notallowed.example:8080 -> 403 host_not_allowed"):
        mark = ups.mark("raw8080")
        rep = harness.connect("notallowed.example:8080", src="127.0.0.3")
        try:
            harness.expect_refusal(rep, 403, "host_not_allowed", audit=audit, ruleset="enf")
        finally:
            rep.close()
        expect(ups.mark("raw8080") == mark, "upstream reached")

    with ctx.case("the metadata and blocked_ranges listeners never saw a connection"):
        hits = ups.accepts(role="forbidden")
        expect(not hits, "%d connections: %s" % (len(hits), [(e["listener"], e["peer"]) for e in hits]))

    ctx.final_checks([audit])
