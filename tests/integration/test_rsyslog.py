#!/usr/bin/python3
"""A real log shipper on the audit file: Debian's rsyslog tails it with imfile, parses each line
with mmjsonparse and writes what it parsed through templates, the way a SIEM pipeline does.

Every record the proxy wrote must come out of rsyslog exactly once, whole (the parsed object
equal to the line the proxy wrote) and with the fields a template extracts intact, including
records written while rsyslog was stopped (a SIEM-side restart resumes from imfile's saved
offset) and records written around a SIGUSR1 rotation (the file renamed, the proxy reopens;
rsyslog follows the renamed file by inode and picks up the new one).  Waits have deadlines.
"""
import json
import os
import shutil
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import expect, get  # noqa: E402

V4 = "198.51.100.30"
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

# Fields a template pulls out of the parsed record, and their dotted paths in the record.
FIELDS = [("ts", "@timestamp"), ("id", "event.id"), ("trace", "trace.id"),
          ("reason", "event.reason"), ("port", "source.port"), ("dataset", "event.dataset")]

CONF = """
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imfile" mode="inotify")
module(load="mmjsonparse")
template(name="whole" type="string" string="%$!all-json%\\n")
template(name="fields" type="list") {{
{fields}
  constant(value="\\"}}\\n")
}}
ruleset(name="audit") {{
  action(type="mmjsonparse" cookie="")
  if $parsesuccess == "OK" then {{
    action(type="omfile" file="{out}/whole.jsonl" template="whole")
    action(type="omfile" file="{out}/fields.jsonl" template="fields")
  }} else {{
    action(type="omfile" file="{out}/unparsed.log")
  }}
}}
# The file's own name, no wildcard: after a rename imfile (inotify mode) reads the renamed file
# to its end and the new one from its start.  A wildcard that also matches the renamed file
# makes rsyslog 8.2302 read it again from the start (every record of it twice).
input(type="imfile" File="{audit}" Tag="portcullis" ruleset="audit" addMetadata="off")
"""


def template_fields():
    parts = []
    for i, (out, path) in enumerate(FIELDS):
        sep = "{" if i == 0 else ","
        parts.append('  constant(value="%s\\"%s\\":\\"")' % (sep, out))
        parts.append('  property(name="$!%s" format="json")' % path.replace(".", "!"))
        if i < len(FIELDS) - 1:
            parts.append('  constant(value="\\"")')
    return "\n".join(parts)


ctx = harness.start(__file__, v4=[V4])
with ctx:
    with ctx.case("rsyslogd is installed (Debian's rsyslog, with imfile and mmjsonparse)"):
        expect(os.access(RSYSLOGD, os.X_OK), "%s not found: ./dev deps installs rsyslog" % RSYSLOGD)
    ups = harness.Upstreams(ctx, [{"name": "raw8080", "host": V4, "port": 8080, "kind": "tcp"}])
    dns = harness.Dnsmasq(ctx, "127.0.0.53", [("allowed.example", V4)])
    px = harness.Proxy(ctx, "proxy", {
        "a": {"sources": ["127.0.0.2/32"], "allow": [{"host": "allowed.example", "ports": [8080]}]},
    }).start()
    audit_path = px.audit_path
    out = ctx.path("rsyslog-out")
    work = ctx.path("rsyslog-work")
    os.makedirs(out)
    os.makedirs(work)
    conf = ctx.path("rsyslog.conf")
    with open(conf, "w") as f:
        f.write(CONF.format(work=work, out=out, audit=audit_path, fields=template_fields()))
    state = {"proc": None}

    def rsyslog_start():
        state["proc"] = ctx.spawn("rsyslogd", [RSYSLOGD, "-n", "-f", conf, "-i", ctx.path("rsyslog.pid")],
                                  stderr=open(ctx.path("rsyslog-stderr.log"), "ab"))

    def rsyslog_stop():
        rc = ctx.stop_proc(state["proc"], signal.SIGTERM, timeout=10)
        expect(rc == 0, "rsyslogd exit %r: %s" % (rc, open(ctx.path("rsyslog-stderr.log")).read()[-300:]))

    def traffic(n):
        """n records: refusals and allowed tunnels, alternately; returns once all are written."""
        before = len(proxy_records())
        for i in range(n):
            if i % 2:
                r, ans = harness.say("allowed.example:8080", "rs%d" % i)
                expect(ans == b"rs%d\n" % i, "tunnel %d answered %r" % (i, ans))
            else:
                r = harness.connect("denied.example:443")
                expect(r.status == 403, "refusal %d: %s" % (i, r.describe()))
                r.close()
        expect(harness.wait_until(lambda: len(proxy_records()) >= before + n, 10),
               "the proxy wrote %d of %d records" % (len(proxy_records()) - before, n))

    def proxy_records():
        recs = []
        for p in (audit_path + ".1", audit_path):
            if os.path.exists(p):
                recs += harness.Audit(p, ctx.ecs, "a").records()
        return recs

    def shipped(name):
        try:
            with open(os.path.join(out, name), "rb") as f:
                data = f.read()
        except OSError:
            return []
        return [json.loads(ln) for ln in data.split(b"\n") if ln.strip()]

    def all_shipped(timeout=30):
        """Wait until rsyslog wrote as many records as the proxy did; then compare."""
        want = lambda: len(proxy_records())  # noqa: E731
        harness.wait_until(lambda: len(shipped("whole.jsonl")) >= want() and
                           len(shipped("fields.jsonl")) >= want(), timeout)
        mine = proxy_records()
        whole = shipped("whole.jsonl")
        fields = shipped("fields.jsonl")
        ids = [get(r, "event.id") for r in mine]
        expect(len(set(ids)) == len(ids), "the proxy wrote repeated event.ids")
        got = [get(r, "event.id") for r in whole]
        dup = sorted({i for i in got if got.count(i) > 1})
        lost = sorted(set(ids) - set(got))
        expect(not dup and not lost, "rsyslog: %d records lost (%s), %d shipped twice (%s) of %d" %
               (len(lost), lost[:3], len(dup), dup[:3], len(ids)))
        by_id = {get(r, "event.id"): r for r in mine}
        for r in whole:
            expect(r == by_id[get(r, "event.id")], "record %s changed on its way: %s" %
                   (get(r, "event.id"), json.dumps(r)[:300]))
        expect(len(fields) == len(mine), "%d template lines for %d records" % (len(fields), len(mine)))
        for fl in fields:
            rec = by_id.get(fl.get("id"))
            expect(rec is not None, "template line for an unknown event.id: %r" % fl)
            for name, path in FIELDS:
                expect(fl.get(name) == str(get(rec, path)), "template field %s = %r, record %s = %r" %
                       (name, fl.get(name), path, get(rec, path)))
        expect(not os.path.exists(os.path.join(out, "unparsed.log")),
               "lines mmjsonparse could not parse: %r" %
               open(os.path.join(out, "unparsed.log")).read()[:300] if os.path.exists(
                   os.path.join(out, "unparsed.log")) else "")
        return len(mine)

    rsyslog_start()
    with ctx.case("imfile + mmjsonparse ship every record whole, template fields intact"):
        traffic(30)
        n = all_shipped()
        expect(n >= 30, "only %d records" % n)

    with ctx.case("records written while rsyslog is stopped arrive once after it restarts"):
        rsyslog_stop()
        traffic(20)
        rsyslog_start()
        all_shipped()

    with ctx.case("SIGUSR1 rotation: records before and after the rename arrive once each"):
        traffic(10)
        os.rename(audit_path, audit_path + ".1")
        traffic(6)                       # still written to the renamed file
        os.kill(px.proc.pid, signal.SIGUSR1)
        expect(harness.wait_until(lambda: os.path.exists(audit_path), 10),
               "the proxy did not reopen %s after SIGUSR1" % audit_path)
        traffic(10)
        n = all_shipped()
        newfile = harness.Audit(audit_path, ctx.ecs, "new").records()
        expect(len(newfile) > 0, "no record in the reopened file")

    rsyslog_stop()
    ctx.final_checks([px.audit, harness.Audit(audit_path + ".1", ctx.ecs, "rotated")])
