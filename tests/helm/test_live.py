#!/usr/bin/python3
"""The chart's scripts and monitoring against a running portcullis, in a private
network namespace (tests/integration/harness.py: no packet leaves the machine).

- The `helm test` script (helm/portcullis/files/helm-test.sh, what the test
  pod runs) passes against the daemon started on policies the chart renders:
  one whose unknown sources are refused (unknown_source) and one whose sources
  land in a tier (blocked_address). It fails against stand-ins that must not
  pass: a proxy that opens the tunnel, one that refuses without portcullis's
  Proxy-Status, and no proxy at all.
- /metrics of those daemons (one with identity.kubernetes, so the pod-map
  families are exported) is the list of what portcullis really exports: every
  metric the chart's PrometheusRule and Grafana dashboard read must be on it.
- portcullis_ready agrees with /readyz, unready (pinned resolver silent, pod map not
  synced) and ready (a stand-in resolver answers).
- With audit.destination file, records go to the file and not to stdout, and
  moving the file aside plus SIGUSR1 starts a new one (what a shipper does).
- values/proxy-protocol.yaml (tls with required client certificates, a PROXY
  protocol port): with the certificate files laid out where the chart mounts
  them, as the kubelet writes a Secret volume (a ..data symlink), curl over the
  https:// proxy is refused without a certificate and with one no rule matches,
  and reaches the policy decision with one that maps to a tier; swapping ..data
  to a new certificate (a Secret update) is served without a restart; the PROXY
  protocol port refuses an untrusted peer and a trusted one without a header, and
  takes the header's client as the source.

usage: test_live.py --portcullis BIN --srcdir REPO   (HELM_RENDER=the renderer, built by meson)
"""
import json
import os
import shutil
import signal
import ssl
import socket
import subprocess
import sys
import threading
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import monitoring  # noqa: E402
import promcheck  # noqa: E402
from harness import expect  # noqa: E402

RENDERER = os.environ.get("HELM_RENDER", "")
METADATA = "169.254.169.254:80"

BALANCER = "10.0.16.10"   # proxyProtocol.trusted in the live TLS/PROXY protocol case

ctx = harness.start(__file__, v4=["10.96.0.10", BALANCER])


def render(values_files, tag):
    p = subprocess.run([RENDERER, "--chart", os.path.join(ctx.srcdir, "helm", "portcullis"), "--name", "portcullis",
                        "--namespace", "egress"] + sum((["-f", f] for f in values_files), []),
                       capture_output=True, text=True, timeout=60)
    expect(p.returncode == 0, "%s: the chart does not render: %s" % (tag, p.stderr[-400:]))
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def policy_text(objects):
    cms = [o for o in objects if o["kind"] == "ConfigMap" and "policy.yaml" in (o.get("data") or {})
           and "helm.sh/hook" not in (o["metadata"].get("annotations") or {})]
    expect(len(cms) == 1, "expected one policy ConfigMap, found %d" % len(cms))
    return cms[0]["data"]["policy.yaml"]


def start_daemon(name, policy, admin_port):
    path = ctx.path(name + "-policy.yaml")
    with open(path, "w") as fh:
        fh.write(policy)
    out = open(ctx.path(name + "-audit.log"), "ab")
    err = open(ctx.path(name + "-stderr.log"), "ab")
    p = ctx.spawn(name, [ctx.binary, "-c", path], stdout=out, stderr=err, env=harness.daemon_env())
    out.close()
    err.close()
    ok = harness.wait_until(lambda: p.poll() is not None or harness.port_open("127.0.0.1", admin_port), 20)
    if p.poll() is not None or not ok:
        with open(ctx.path(name + "-stderr.log"), errors="replace") as fh:
            raise harness.CaseFailed("%s did not start (exit %s): %s" % (name, p.poll(), fh.read()[-600:]))
    return p


def get(port, path):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def helm_test(proxy):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PROXY": proxy, "TARGET": METADATA}
    p = subprocess.run(["/bin/sh", os.path.join(ctx.srcdir, "helm", "portcullis", "files", "helm-test.sh")],
                       capture_output=True, text=True, timeout=90, env=env)
    return p.returncode, p.stdout + p.stderr


def dns_stand_in(addr):
    """A resolver on addr:53/udp that answers every query NXDOMAIN: enough for the readiness
    probe, which needs an answer, not an address."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((addr, 53))

    def serve():
        while True:
            try:
                q, peer = srv.recvfrom(4096)
            except OSError:
                return
            if len(q) < 12:
                continue
            # RFC 1035 4.1.1: same ID, QR=1, the query's opcode and RD, RA=1, RCODE=3; the question echoed.
            flags = 0x8000 | (q[2] << 8 & 0x7900) | 0x0080 | 3
            srv.sendto(q[:2] + flags.to_bytes(2, "big") + q[4:6] + b"\0\0\0\0\0\0" + q[12:], peer)
    threading.Thread(target=serve, daemon=True).start()
    ctx.cleanups.append(srv.close)


def stand_in(port, response):
    """A one-line HTTP proxy stand-in on 127.0.0.1:port: reads a request head, answers response."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            with c:
                c.settimeout(10)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    c.sendall(response)
                except OSError:
                    pass
    threading.Thread(target=serve, daemon=True).start()
    ctx.cleanups.append(srv.close)


with ctx:
    exported = {}
    with ctx.case("the renderer is given (HELM_RENDER)"):
        expect(RENDERER and os.access(RENDERER, os.X_OK), "HELM_RENDER=%r is not an executable" % RENDERER)

    # Daemon A: values/monitoring.yaml (pod identity on; unknown sources refused). The API server
    # is not there (nothing listens on 127.0.0.1:6443): the pod map stays unsynced, which is what
    # the daemon exports then.
    with ctx.case("a daemon starts on the policy values/monitoring.yaml renders (identity.kubernetes on)"):
        objs = render([os.path.join(HERE, "values", "monitoring.yaml")], "monitoring")
        pol = yaml.safe_load(policy_text(objs))
        with open(ctx.path("token"), "w") as fh:
            fh.write("test-token")
        pol["identity"]["kubernetes"].update({"api_server": "https://127.0.0.1:6443", "token_file": ctx.path("token"),
                                             "ca_file": ctx.certs()["ca"]})
        start_daemon("kube", yaml.safe_dump(pol), 9090)

    # Daemon B: the defaults with unknown sources in the default tier, on other ports.
    with ctx.case("a daemon starts on the policy the chart's defaults render, unknown sources in the default tier"):
        extra = ctx.path("b-values.yaml")
        with open(extra, "w") as fh:
            yaml.safe_dump({"ports": {"proxy": 3129, "admin": 9091},
                            "policy": {"identity": {"unknown_source": "standard"}}}, fh)
        objs_b = render([os.path.join(HERE, "values", "defaults.yaml"), extra], "defaults")
        start_daemon("defaults", policy_text(objs_b), 9091)

    # Daemon C: audit records to a file (audit.destination: file), in a directory standing in
    # for the emptyDir.
    audit_dir = ctx.path("audit-volume")
    os.makedirs(audit_dir)
    audit_file = os.path.join(audit_dir, "audit.json")
    with ctx.case("a daemon starts on a rendered policy with audit.destination: file"):
        extra_c = ctx.path("c-values.yaml")
        with open(extra_c, "w") as fh:
            yaml.safe_dump({"ports": {"proxy": 3130, "admin": 9092},
                            "audit": {"destination": "file",
                                      "file": {"directory": audit_dir, "name": "audit.json", "sizeLimit": "1Gi"}}}, fh)
        pol_c = policy_text(render([os.path.join(HERE, "values", "defaults.yaml"), extra_c], "audit-file"))
        expect(yaml.safe_load(pol_c)["audit"]["output"] == audit_file, "audit.output is not the file")
        daemon_c = start_daemon("auditfile", pol_c, 9092)

    def records(path):
        try:
            with open(path) as fh:
                return [json.loads(line) for line in fh if line.strip()]
        except FileNotFoundError:
            return []

    with ctx.case("audit.destination file: a refusal's record lands in the file, stdout stays empty"):
        rc, out = helm_test("http://127.0.0.1:3130")
        expect(rc == 0, "helm-test.sh against it: exit %d\n%s" % (rc, out))
        got = harness.wait_until(lambda: records(audit_file), 10)
        expect(got, "no record in %s" % audit_file)
        expect(any("unknown_source" in json.dumps(rec) for rec in got), "no unknown_source record: %s" % got)
        with open(ctx.path("auditfile-audit.log")) as fh:
            expect(fh.read() == "", "records on stdout too")

    with ctx.case("audit.destination file: moved aside and SIGUSR1, the next record starts a new file"):
        os.rename(audit_file, audit_file + ".1")
        before = len(records(audit_file + ".1"))
        os.kill(daemon_c.pid, signal.SIGUSR1)
        # The reopen is asynchronous: repeat refusals until one lands in the new file.
        def new_record():
            helm_test("http://127.0.0.1:3130")
            return records(audit_file)
        expect(harness.wait_until(new_record, 15, interval=0.5), "no new %s after SIGUSR1" % audit_file)
        expect(len(records(audit_file + ".1")) >= before, "the moved file lost records")

    for port, why in ((3128, "unknown_source"), (3129, "blocked_address")):
        with ctx.case("helm-test.sh passes against the gateway (CONNECT %s refused: %s)" % (METADATA, why)):
            rc, out = helm_test("http://127.0.0.1:%d" % port)
            expect(rc == 0, "exit %d:\n%s" % (rc, out))
            expect('details="%s"' % why in out, "the refusal is not %s:\n%s" % (why, out))

    # Daemon D: values/proxy-protocol.yaml (TLS listener, client certificates required, a
    # PROXY protocol port), with its certificate files where the chart mounts them, in the
    # layout the kubelet gives a Secret volume: NAME -> ..data/NAME, ..data -> ..<generation>.
    pki = ctx.path("pki")
    root = ctx.path("root")

    def secret_volume(d, files, gen):
        """Write files ({name: source}) into d as the kubelet updates a Secret volume: a new
        generation directory, then an atomic rename of the ..data symlink."""
        os.makedirs(d, exist_ok=True)
        os.makedirs(os.path.join(d, "..%d" % gen))
        for name, src in files.items():
            shutil.copy(src, os.path.join(d, "..%d" % gen, name))
        os.symlink("..%d" % gen, os.path.join(d, "..data_tmp"))
        os.rename(os.path.join(d, "..data_tmp"), os.path.join(d, "..data"))
        for name in files:
            if not os.path.islink(os.path.join(d, name)):
                os.symlink(os.path.join("..data", name), os.path.join(d, name))

    def served_cn(port):
        c = ssl.create_default_context(cafile=os.path.join(pki, "ca.pem"))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with c.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    return dict(x[0] for x in tls.getpeercert()["subject"]).get("commonName")
        except (OSError, ssl.SSLError):
            return None

    with ctx.case("a daemon starts on the policy values/proxy-protocol.yaml renders, its files where the chart "
                  "mounts them"):
        harness.mkcerts("ca", pki, "--cn", "helm live CA")
        for name, cn in (("gw1", "gateway-1"), ("gw2", "gateway-2")):
            harness.mkcerts("server", pki, name, "--cn", cn, "--ip", "127.0.0.1")
        for name in ("runner-1", "runner-2"):
            harness.mkcerts("client", pki, name, "--cn", name)
        extra_d = ctx.path("d-values.yaml")
        with open(extra_d, "w") as fh:
            yaml.safe_dump({"ports": {"proxy": 3150, "admin": 9093}, "tls": {"port": 3151},
                            "proxyProtocol": {"port": 3152, "trusted": [BALANCER + "/32"]}}, fh)
        pol_d = yaml.safe_load(policy_text(render([os.path.join(HERE, "values", "proxy-protocol.yaml"), extra_d],
                                                  "tls-proxy-protocol")))
        lt = pol_d["listen"]["tls"]
        expect(lt["client_certs"] == "require" and set(lt) == {"cert", "key", "client_ca", "client_certs"},
               "listen.tls: %s" % lt)
        server_dir = os.path.dirname(lt["cert"])
        expect(os.path.dirname(lt["key"]) == server_dir, "certificate and key in different directories: %s" % lt)
        secret_volume(root + server_dir, {os.path.basename(lt["cert"]): os.path.join(pki, "gw1.pem"),
                                          os.path.basename(lt["key"]): os.path.join(pki, "gw1.key")}, 1)
        secret_volume(root + os.path.dirname(lt["client_ca"]),
                      {os.path.basename(lt["client_ca"]): os.path.join(pki, "ca.pem")}, 1)
        for k in ("cert", "key", "client_ca"):
            lt[k] = root + lt[k]
        start_daemon("tlspp", yaml.safe_dump(pol_d), 9093)
        expect(harness.wait_until(lambda: harness.port_open("127.0.0.1", 3151), 10), "TLS port not open")

    def via_https(*cert):
        args = ["-i", "--proxy", "https://127.0.0.1:3151", "--proxy-cacert", os.path.join(pki, "ca.pem")]
        if cert:
            args += ["--proxy-cert", os.path.join(pki, cert[0] + ".pem"), "--proxy-key", os.path.join(pki, cert[0] + ".key")]
        return harness.curl(args + ["http://" + METADATA + "/"])

    for cert, code, why in (((), "403", "client_cert_required"), (("runner-2",), "403", "client_cert_no_match"),
                            (("runner-1",), "403", "blocked_address")):
        with ctx.case("https:// proxy from the rendered policy, %s: %s %s" % (
                "client certificate " + cert[0] if cert else "no client certificate", code, why)):
            res = via_https(*cert)
            expect(res["code"] == code and ('details="%s"' % why) in res["body"], "got %s:\n%s\n%s" % (
                res["code"], res["body"][-600:], res["stderr"][-300:]))

    with ctx.case("a Secret update (..data swapped to a new certificate) is served without a restart"):
        expect(served_cn(3151) == "gateway-1", "serving %r before the update" % served_cn(3151))
        secret_volume(root + server_dir, {"tls.crt": os.path.join(pki, "gw2.pem"),
                                          "tls.key": os.path.join(pki, "gw2.key")}, 2)
        got = harness.wait_until(lambda: served_cn(3151) == "gateway-2", 20, interval=0.2)
        expect(got, "still serving %r after the ..data swap" % served_cn(3151))
        res = via_https("runner-1")
        expect(res["code"] == "403" and 'details="blocked_address"' in res["body"], "after the swap: %s" % res)

    def pp_request(src, header):
        s = socket.socket()
        s.settimeout(10)
        try:
            s.bind((src, 0))
            s.connect((BALANCER, 3152))
            s.sendall(header + b"GET http://" + METADATA.encode() + b"/ HTTP/1.1\r\nHost: " + METADATA.encode()
                      + b"\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.decode("latin-1")
        finally:
            s.close()

    header = b"PROXY TCP4 10.244.1.5 10.96.200.10 40000 3130\r\n"
    for src, hdr, want, what in (("127.0.0.1", header, ("403", "proxy_untrusted_peer"), "a peer outside trusted"),
                                 (BALANCER, b"", ("400", "proxy_header_missing"), "the balancer without a header"),
                                 (BALANCER, header, ("403", "blocked_address"),
                                  "the balancer with a header naming a runner pod (its tier decides)")):
        with ctx.case("PROXY protocol port from the rendered policy, %s: %s %s" % (what, want[0], want[1])):
            got = pp_request(src, hdr)
            expect(got.startswith("HTTP/1.1 " + want[0]) and ('"%s"' % want[1]) in got, "got:\n%s" % got[:600])

    stand_in(3140, b"HTTP/1.1 200 Connection established\r\n\r\n")
    stand_in(3141, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    for port, what in ((3140, "a proxy that opens the tunnel"),
                       (3141, "a proxy that answers 403 without portcullis's Proxy-Status"),
                       (3142, "no proxy listening")):
        with ctx.case("helm-test.sh fails against %s" % what):
            rc, out = helm_test("http://127.0.0.1:%d" % port)
            expect(rc != 0, "it passed:\n%s" % out)

    def readiness(port):
        """(/readyz status, body, portcullis_ready) read back to back."""
        rstatus, body = get(port, "/readyz")
        status, text = get(port, "/metrics")
        expect(status == 200, "GET /metrics: %s" % status)
        fams, _ = promcheck.check(text.encode())
        return rstatus, body.strip(), fams["portcullis_ready"].get()

    for name, port in (("kube", 9090), ("defaults", 9091)):
        with ctx.case("%s: /metrics parses; with the pinned resolver silent, /readyz 503 and portcullis_ready 0"
                      % name):
            status, text = get(port, "/metrics")
            expect(status == 200, "GET /metrics: %s" % status)
            fams, problems = promcheck.check(text.encode())
            expect(not problems, "exposition problems: %s" % problems[:5])
            for f in fams.values():
                exported[f.name] = f.type
            got = readiness(port)
            expect(got[0] == 503 and got[2] == [0.0], "/readyz %s %r, portcullis_ready %s" % got)

    dns_stand_in("10.96.0.10")
    with ctx.case("once the pinned resolver answers: defaults /readyz 200 and portcullis_ready 1; "
                  "kube (pod map not synced) still 503 and 0"):
        got = harness.wait_until(lambda: (lambda r: r if r[0] == 200 else None)(readiness(9091)), 15, interval=0.5)
        expect(got and got[2] == [1.0], "defaults: %r" % ((got or readiness(9091)),))
        got = readiness(9090)
        expect(got[0] == 503 and "pod map" in got[1] and got[2] == [0.0], "kube: /readyz %s %r, portcullis_ready %s" % got)

    with ctx.case("the pod map families are exported with identity.kubernetes"):
        missing = [n for n in ("portcullis_kube_synced", "portcullis_kube_pods", "portcullis_kube_watch_errors_total",
                               "portcullis_kube_relists_total") if n not in exported]
        expect(not missing, "missing: %s" % missing)

    with ctx.case("every metric the PrometheusRule reads is one portcullis exports"):
        names = monitoring.exported(exported)
        rule = monitoring.prometheus_rule(objs)
        expect(rule is not None, "no PrometheusRule rendered")
        bad = ["%s: %s" % (w, sorted(monitoring.metric_names(e) - names)) for w, e in monitoring.rule_exprs(rule)
               if monitoring.metric_names(e) - names or not monitoring.metric_names(e)]
        expect(not bad, "unknown metrics: %s" % bad)

    with ctx.case("every metric the Grafana dashboard queries is one portcullis exports"):
        dash = monitoring.dashboard(objs)
        expect(dash is not None, "no dashboard rendered")
        queries = monitoring.dashboard_queries(dash)
        bad = ["%s: %s" % (w, sorted(monitoring.metric_names(q) - names)) for w, q in queries
               if monitoring.metric_names(q) - names or not monitoring.metric_names(q)]
        expect(queries and not bad, "unknown metrics: %s" % bad)
        print("# %d dashboard queries and %d alerts read %d of %d exported names" % (
            len(queries), len(monitoring.rule_exprs(rule)),
            len(set().union(*(monitoring.metric_names(q) for _, q in queries))), len(names)))

    with ctx.case("a metric name portcullis does not export is caught (the check is not vacuous)"):
        expect(monitoring.metric_names("rate(portcullis_made_up_total[5m])") - names == {"portcullis_made_up_total"},
               "a made-up name passed")
