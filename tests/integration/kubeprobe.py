"""Shared by the Kubernetes scenarios: which tier the proxy gives a source, and its admin endpoints."""
import collections
import re
import socket
import time

import harness
import promcheck
from harness import expect, get

PROBE = "allowed.example:443"   # every tier of these scenarios allows it or refuses it by tier
UNKNOWN = "unknown"             # the tier name probe() reports for 403 unknown_source


class Seen:
    def __init__(self, tier, reply, rec):
        self.tier, self.reply, self.rec = tier, reply, rec

    def describe(self):
        o = (get(self.rec, "orchestrator") or {}) if self.rec else {}
        return "%s (%s %s, pod %s/%s)" % (self.tier, self.reply.status, self.reply.reason,
                                          o.get("namespace"), (o.get("resource") or {}).get("name"))


def probe(px, src):
    """One CONNECT to allowed.example:443 from src; the tier the proxy gave it."""
    r = harness.connect(PROBE, src=src, proxy_port=px.port, timeout=5)
    if r.status == 200:
        r.close()
    rec = px.audit.by_port(r.src_port, timeout=5) if r.status is not None else None
    if r.status == 403 and r.reason == "unknown_source":
        tier = UNKNOWN
    elif r.status in (200, 403) and rec is not None and get(rec, "rule.ruleset"):
        tier = get(rec, "rule.ruleset")
    else:
        tier = "?(%s)" % r.describe()
    return Seen(tier, r, rec)


def wait_tier(px, src, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        s = probe(px, src)
        if s.tier == want or time.monotonic() >= deadline:
            return s
        time.sleep(0.05)


def check_pod(s, pod, what, src):
    """pod=(ns, name): the record of s names that pod."""
    if pod is None:
        return
    o = get(s.rec, "orchestrator") or {}
    expect((o.get("namespace"), (o.get("resource") or {}).get("name")) == pod,
           "%s%s: audit names pod %s/%s, want %s/%s" % (what, src, o.get("namespace"),
                                                        (o.get("resource") or {}).get("name"), *pod))


def expect_tier(px, src, want, timeout=5.0, what="", pod=None):
    """Poll (bounded) until src has tier want; pod=(ns, name) also checks the record names it."""
    t0 = time.monotonic()
    s = wait_tier(px, src, want, timeout)
    expect(s.tier == want, "%s%s is %s after %.1fs, want %s" % (what, src, s.describe(),
                                                                time.monotonic() - t0, want))
    check_pod(s, pod, what, src)
    return s


def expect_still(px, src, want, what="", pod=None):
    """After a barrier: src has tier want right now (no polling)."""
    s = probe(px, src)
    expect(s.tier == want, "%s%s is %s, want %s" % (what, src, s.describe(), want))
    check_pod(s, pod, what, src)
    return s


# --------------------------------------------------------------------------
# Admin endpoints
# --------------------------------------------------------------------------

SCRAPES = []   # (proxy name, body) of every /metrics scrape, for the format checks

def admin_port(px):
    return int(px.policy["listen"]["admin"].rsplit(":", 1)[1])


def admin_get(px, path, timeout=3.0):
    """(status, body) of GET path on px's admin listener; (None, why) on failure."""
    try:
        s = socket.create_connection(("127.0.0.1", admin_port(px)), timeout=timeout)
    except OSError as e:
        return None, "connect: %s" % e
    buf = b""
    try:
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path).encode())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except OSError as e:
        return None, "%s (got %r)" % (e, buf[:80])
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
    if not m:
        return None, "no status line in %r" % buf[:80]
    return int(m.group(1)), buf.split(b"\r\n\r\n", 1)[-1]


def metrics(px):
    st, body = admin_get(px, "/metrics")
    expect(st == 200, "GET /metrics on %s: %s %r" % (px.name, st, body[:120]))
    SCRAPES.append((px.name, body))
    fams, _ = promcheck.check(body)
    out = collections.defaultdict(float)
    for f in fams.values():
        for smp in f.samples:
            out[smp.name] += smp.value
    out["__fams__"] = fams
    return out


def wait_metric(px, pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(px)
        if pred(m) or time.monotonic() >= deadline:
            return m
        time.sleep(0.1)


def started(px):
    px.start()
    if px.start_error is None and not harness.wait_until(
            lambda: not px.alive() or harness.port_open("127.0.0.1", admin_port(px)), 5):
        px.start_error = "admin listener not accepting after 5s"
    return px
