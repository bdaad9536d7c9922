#!/usr/bin/python3
"""A stand-in Kubernetes API server for the pod-identity tests (stdlib only).

It speaks the list/watch wire format of the real kube-apiserver for pods, as
the Kubernetes API documents it ("API concepts": efficient detection of
changes, watch bookmarks, 410 Gone, retrieving large results in chunks):

  GET /api/v1/pods                        every namespace
  GET /api/v1/namespaces/{ns}/pods        one namespace
      ?limit=N&continue=TOKEN             pagination; the token is opaque (base64 JSON
                                          {"v","rv","start"} like the real one) and
                                          pins the list to its first page's RV
      &labelSelector=SEL                  key, !key, key=v, key==v, key!=v, key in (a,b),
                                          key notin (a,b), key>N, key<N; comma = AND
      &resourceVersion=RV                 unset: most recent; "0": any; N: not older
      &resourceVersionMatch=Exact|NotOlderThan   than N, or exactly N (legacy: exactly
                                          when limit is set); exact and compacted: 410
      &watch=1|true                       a watch instead of a list
      &allowWatchBookmarks=true           BOOKMARK events on demand (bookmark())
      &timeoutSeconds=N                   the watch ends cleanly after N seconds
      &sendInitialEvents=true             synthetic ADDED for the current state, then a
                                          BOOKMARK annotated k8s.io/initial-events-end

HTTPS only (python's ssl; the certificate is made at run time by make_pki()
with the openssl CLI), and every request needs "Authorization: Bearer TOKEN"
(401 Status otherwise).  Responses are compact JSON like the Go server's
(struct field order, <>& escaped as \\u003c \\u003e \\u0026), Content-Length
up to 4 KiB and chunked above (as Go's net/http does when a handler streams),
gzip when asked and over 128 KiB.

A watch is HTTP/1.1 200 with Transfer-Encoding: chunked, one JSON event per
line: {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}, events
with a resourceVersion above the one asked for.  With a label selector a
MODIFIED that makes a pod start or stop matching becomes ADDED or DELETED
(the previous object, carrying the event's RV), as the apiserver's watch cache
does.  A resourceVersion below the compaction horizon gets HTTP 200, one
ERROR event holding a Status (reason Expired, code 410, "too old resource
version: X (Y)") and the end of the stream.

One global resourceVersion counter, incremented per change like etcd's
revision.  History is kept from the compaction horizon on, so a list can be
served exactly at any RV the horizon still covers.

The server runs on threads of the test process; the test drives it through
the KubeAPI object (the control API): add_pod / modify_pod / delete_pod /
atomic() (several changes seen by watchers as one wake-up), compact(),
bookmark(), drop_watches() (FIN or RST, now, or in the middle of the next
event: inside a chunk, or at a chunk boundary inside the event line),
set_chunking() ("event": one chunk per event as the Go server flushes;
"split": every event cut into several chunks, each chunk written in pieces,
with pauses so the client's reads end mid-size-line and mid-data; "batch":
all pending events in one stream cut at random offsets, so a chunk holds
several events and events straddle chunks), fail_next() (5xx / 429 with
Retry-After for the next N requests, or until clear_failures()), pause() /
resume() (requests wait before they are answered), set_delay(),
page_max (a server-side page size below the client's limit), on_list_page
(a hook run before each page: mutate or compact mid-pagination),
set_watch_mode() (every watch answered with HTTP 410, or an ERROR 410 event, or one
BOOKMARK and the end of the stream at once: servers that would make a client spin),
set_cert() (serve another certificate from the next connection on),
set_tokens(), and the request log (requests(), mark(), wait_request()) with
path, decoded query, auth result and status of every request, plus tls_log
(every connection's handshake outcome) and watches() (the live streams: the
RV each started from, the last RV fully delivered, bookmarks sent).

    /usr/bin/python3 kubeapi.py --selftest   # exercises all of it with plain python clients
"""
import base64
import bisect
import contextlib
import datetime
import gzip
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

BASE_TIME = datetime.datetime(2026, 11, 23, 9, 0, 0, tzinfo=datetime.timezone.utc)
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
TRUE_WORDS = ("1", "t", "T", "true", "TRUE", "True")   # Go strconv.ParseBool
LIST_CHUNK_OVER = 4096         # Go net/http: a streamed body past its buffer goes chunked
GZIP_OVER = 128 * 1024         # apiserver compresses responses over 128 KiB when asked


# --------------------------------------------------------------------------
# Certificates (openssl CLI, at run time)
# --------------------------------------------------------------------------

MKCERTS = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                        "certs", "mkcerts"))


def _mkcerts(*args):
    """certs/mkcerts, the project's one certificate maker (openssl CLI)."""
    p = subprocess.run(["/bin/sh", MKCERTS] + list(args), timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("mkcerts %s: %s" % (" ".join(args), p.stderr.decode("utf-8", "replace")[-400:]))


def make_ca(d, name):
    """A test CA in d/<name>-ca: {"ca": cert path, "ca_key": key path, "dir": its directory}."""
    cadir = os.path.join(d, name + "-ca")
    _mkcerts("ca", cadir, "--cn", "%s test CA" % name)
    return {"ca": os.path.join(cadir, "ca.pem"), "ca_key": os.path.join(cadir, "ca.key"), "dir": cadir}


def make_server_cert(d, ca, name, ips=(), dns=("kubernetes.default.svc",)):
    """A server certificate signed by ca (made by make_ca), subjectAltName IP:<ips> DNS:<dns>.
    d is unused: the certificate lives in the CA's directory."""
    args = ["server", ca["dir"], name, "--cn", "kube-apiserver"]
    for i in ips:
        args += ["--ip", i]
    for n in dns:
        args += ["--dns", n]
    _mkcerts(*args)
    return {"cert": os.path.join(ca["dir"], name + ".pem"), "key": os.path.join(ca["dir"], name + ".key"),
            "ca": ca["ca"]}


def make_pki(d, ip, name="kube"):
    """CA + server cert for an API server at ip (SAN IP:ip, DNS:kubernetes.default.svc and
    the other in-cluster names).  Returns {"ca", "ca_key", "cert", "key"}."""
    ca = make_ca(d, name)
    srv = make_server_cert(d, ca, name + "-apiserver", ips=[ip],
                           dns=["kubernetes", "kubernetes.default", "kubernetes.default.svc",
                                "kubernetes.default.svc.cluster.local"])
    return dict(ca, cert=srv["cert"], key=srv["key"])


# --------------------------------------------------------------------------
# JSON like Go's encoding/json
# --------------------------------------------------------------------------

def go_json(obj):
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")).encode("utf-8")


def status_obj(code, reason, message, details=None):
    st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
          "message": message, "reason": reason}
    if details is not None:
        st["details"] = details
    st["code"] = code
    return st


HTTP_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                404: "Not Found", 405: "Method Not Allowed", 410: "Gone", 429: "Too Many Requests",
                500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Timeout"}
FAIL_REASONS = {429: ("TooManyRequests", "Too many requests, please try again later."),
                500: ("InternalError", "Internal error occurred: etcdserver: request timed out"),
                502: ("InternalError", "Internal error occurred: upstream connect error"),
                503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
                504: ("Timeout", "Timeout: request did not complete within requested timeout")}


def rfc3339(t):
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------
# Label selectors (k8s.io/apimachinery/pkg/labels, the string form)
# --------------------------------------------------------------------------

class Selector:
    _KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"

    def __init__(self, text):
        self.text = text or ""
        self.reqs = []
        for part in self._split(self.text):
            part = part.strip()
            if not part:
                raise ValueError("found '', expected: !, identifier, or 'end of string'")
            self.reqs.append(self._parse(part))

    @staticmethod
    def _split(text):
        out, depth, cur = [], 0, ""
        if not text.strip():
            return []
        for c in text:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            if c == "," and depth == 0:
                out.append(cur)
                cur = ""
            else:
                cur += c
        out.append(cur)
        return out

    def _parse(self, s):
        m = re.fullmatch(r"!\s*(%s)" % self._KEY, s)
        if m:
            return ("!", m.group(1), None)
        m = re.fullmatch(r"(%s)\s+(in|notin)\s+\(([^()]*)\)" % self._KEY, s)
        if m:
            vals = {v.strip() for v in m.group(3).split(",")}
            return (m.group(2), m.group(1), vals)
        m = re.fullmatch(r"(%s)\s*(==|!=|=|>|<)\s*([-A-Za-z0-9_.]*)" % self._KEY, s)
        if m:
            op = "=" if m.group(2) == "==" else m.group(2)
            if op in (">", "<") and not re.fullmatch(r"-?\d+", m.group(3)):
                raise ValueError("for 'Gt', 'Lt' operators, the value must be an integer")
            return (op, m.group(1), m.group(3))
        m = re.fullmatch(self._KEY, s)
        if m:
            return ("exists", s, None)
        raise ValueError("unable to parse requirement: %r" % s)

    def matches(self, labels):
        labels = labels or {}
        for op, k, v in self.reqs:
            have = k in labels
            val = labels.get(k)
            ok = {"exists": have, "!": not have, "=": have and val == v,
                  "!=": not have or val != v, "in": have and val in (v or ()),
                  "notin": not have or val not in (v or ()),
                  ">": have and val.lstrip("-").isdigit() and int(val) > int(v or 0),
                  "<": have and val.lstrip("-").isdigit() and int(val) < int(v or 0)}[op]
            if not ok:
                return False
        return True

    @property
    def empty(self):
        return not self.reqs


# --------------------------------------------------------------------------
# Pods that look like the ones a CI runner's Kubernetes executor makes
# --------------------------------------------------------------------------

def pod_object(ns, name, ip=None, labels=None, phase="Running", host_network=False, uid=None,
               created=None, node="ci-node-1", node_ip="172.18.0.2", ips=None, annotations=None,
               deleting=None):
    """A v1 Pod as the apiserver stores it (without resourceVersion; the server stamps it).
    ip: status.podIP (None: not assigned yet, e.g. Pending); ips: status.podIPs (default [ip]).
    host_network: spec.hostNetwork, and then the pod's IP is its node's (hostIP = ip)."""
    uid = uid or str(uuid.uuid4())
    created = created or BASE_TIME
    ts = rfc3339(created)
    labels = dict(labels) if labels is not None else {}
    job = labels.get("job-id", str(abs(hash(name)) % 900000 + 100000))
    ann = {"job.runner.gitlab.com/url": "https://gitlab.example.com/ci/app/-/jobs/%s" % job,
           "job.runner.gitlab.com/sha": hashlib.sha1(name.encode()).hexdigest(),
           "project.runner.gitlab.com/description":
               "Builds f\u00fcr \u00fcn\u00efc\u00f8de <main> & \"quotes\" \\ back\\slash\ttab\nnewline \u2028",
           "kubectl.kubernetes.io/default-container": "build"}
    ann.update(annotations or {})
    if host_network and ip:
        node_ip = ip
    meta = {"name": name, "generateName": name.rsplit("-", 1)[0] + "-", "namespace": ns, "uid": uid,
            "creationTimestamp": ts}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(deleting)
        meta["deletionGracePeriodSeconds"] = 30
    meta["labels"] = labels
    meta["annotations"] = ann
    meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "runner-manager-0",
                                "uid": "7d3c1a5e-0000-4000-8000-00000000%04d" % (len(name) % 9999),
                                "controller": False, "blockOwnerDeletion": False}]
    meta["finalizers"] = ["ci.example.com/log-flush"]
    meta["managedFields"] = [
        {"manager": "gitlab-runner", "operation": "Update", "apiVersion": "v1", "time": ts,
         "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:job.runner.gitlab.com/url": {}},
                                     "f:generateName": {},
                                     "f:labels": dict({".": {}}, **{"f:" + k: {} for k in labels})},
                      "f:spec": {"f:containers": {"k:{\"name\":\"build\"}": {".": {}, "f:image": {},
                                                                             "f:name": {}}}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": ts,
         "fieldsType": "FieldsV1",
         "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}}},
                                   "f:podIPs": ({".": {}, "k:{\"ip\":\"%s\"}" % ip: {".": {}, "f:ip": {}}}
                                                if ip else {})}},
         "subresource": "status"}]
    spec = {"volumes": [{"name": "repo", "emptyDir": {}},
                        {"name": "kube-api-access-x7k2p", "projected": {"sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt",
                                           "items": [{"key": "ca.crt", "path": "ca.crt"}]}}],
                            "defaultMode": 420}}],
            "containers": [{"name": "build", "image": "registry.example.com/ci/build:bookworm",
                            "command": ["sh", "-c", "if [ -x /usr/local/bin/bash ]; then exec bash; fi"],
                            "env": [{"name": "HTTPS_PROXY", "value": "http://portcullis.egress:3128"},
                                    {"name": "CI_JOB_ID", "value": job}],
                            "resources": {"limits": {"memory": "2Gi"}, "requests": {"cpu": "500m"}},
                            "volumeMounts": [{"name": "repo", "mountPath": "/builds"}],
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent",
                            "securityContext": {"allowPrivilegeEscalation": False}}],
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "nodeName": node}
    if host_network:
        spec["hostNetwork"] = True
    spec.update({"securityContext": {}, "schedulerName": "default-scheduler",
                 "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                  "effect": "NoExecute", "tolerationSeconds": 300}],
                 "priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority"})
    status = {"phase": phase}
    status.update(_status_detail(phase, ts, node_ip, ip, ips))
    return {"metadata": meta, "spec": spec, "status": status}


def _status_detail(phase, ts, node_ip, ip, ips):
    ready = "True" if phase == "Running" else "False"
    conds = [{"type": "PodReadyToStartContainers", "status": "True" if ip else "False",
              "lastProbeTime": None, "lastTransitionTime": ts},
             {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts},
             {"type": "Ready", "status": ready, "lastProbeTime": None, "lastTransitionTime": ts},
             {"type": "ContainersReady", "status": ready, "lastProbeTime": None, "lastTransitionTime": ts},
             {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": ts}]
    out = {"conditions": conds, "hostIP": node_ip, "hostIPs": [{"ip": node_ip}]}
    if ip:
        out["podIP"] = ip
        out["podIPs"] = [{"ip": a} for a in (ips or [ip])]
    out["startTime"] = ts
    if phase == "Running":
        state = {"running": {"startedAt": ts}}
    elif phase in ("Succeeded", "Failed"):
        state = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                "reason": "Completed" if phase == "Succeeded" else "Error",
                                "startedAt": ts, "finishedAt": ts,
                                "containerID": "containerd://" + "ab" * 32}}
    else:
        state = {"waiting": {"reason": "ContainerCreating"}}
    out["containerStatuses"] = [{"name": "build", "state": state, "lastState": {},
                                 "ready": phase == "Running", "restartCount": 0,
                                 "image": "registry.example.com/ci/build:bookworm",
                                 "imageID": "registry.example.com/ci/build@sha256:" + "0f" * 32,
                                 "containerID": "containerd://" + "ab" * 32,
                                 "started": phase == "Running"}]
    out["qosClass"] = "Burstable"
    return out


def pod_ip(pod):
    return (pod.get("status") or {}).get("podIP")


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------

class _Hist:
    __slots__ = ("rv", "type", "key", "obj", "prev")

    def __init__(self, rv, typ, key, obj, prev):
        self.rv, self.type, self.key, self.obj, self.prev = rv, typ, key, obj, prev


class _Watch:
    def __init__(self, wid, ns, query, start):
        self.id = wid
        self.ns = ns
        self.query = query
        self.start_rv = start
        self.pos = start              # every history entry up to here has been handled
        self.last_sent = None         # RV of the last event (or bookmark) written completely
        self.events_sent = 0
        self.bookmarks_sent = []
        self.want_bookmark = False
        self.drop = None              # "fin" | "rst" | "midchunk" | "midchunk-rst" | "midevent"
        self.drop_on_event = None
        self.dropped = None           # how it ended: "timeout", "dropped:<how>", "expired", "peer"
        self.partial_rv = None        # RV of an event cut in the middle
        self.alive = True
        self.started = time.monotonic()

    def info(self):
        return {"id": self.id, "ns": self.ns, "query": dict(self.query), "start_rv": self.start_rv,
                "last_sent": self.last_sent, "events_sent": self.events_sent,
                "bookmarks_sent": list(self.bookmarks_sent), "alive": self.alive,
                "ended": self.dropped, "partial_rv": self.partial_rv, "started": self.started}


class KubeAPI:
    """The stand-in API server on host:port, serving TLS with certfile/keyfile."""

    def __init__(self, host, port, certfile, keyfile, token="test-token", seed=8, start_rv=4711):
        self.host, self.port = host, port
        self.cv = threading.Condition(threading.RLock())
        self.rng = random.Random(seed)
        self.tokens = {token}
        self.rv = start_rv
        self.horizon = start_rv       # history holds every change with rv > horizon
        self.base = {}                # state at the horizon: key -> pod
        self.pods = {}                # current state: (ns, name) -> pod
        self.history = []             # [_Hist], ascending rv
        self.clock = BASE_TIME
        self.log = []                 # request log
        self.tls_log = []             # one entry per accepted connection
        self._watches = []
        self._wid = 0
        self._fail = []               # [(status, retry_after)] for the next requests
        self._fail_always = None
        self._paused = False
        self.delay = 0.0
        self.chunking = "event"
        self.page_max = None
        self.on_list_page = None      # fn(page_index, request dict), before each list page
        self.list_framing = "auto"    # "auto" | "length" | "chunked"
        self.watch_mode = None        # see set_watch_mode
        self._conns = set()
        self._threads = []
        self._stopping = False
        self._ctx = self._make_ctx(certfile, keyfile)
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._lsock = socket.socket(fam, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, port))
        self.port = self._lsock.getsockname()[1]
        self._lsock.listen(64)
        t = threading.Thread(target=self._accept_loop, name="kubeapi-accept", daemon=True)
        t.start()
        self._threads.append(t)

    # ------------------------------------------------------------------ control: TLS, auth
    @staticmethod
    def _make_ctx(certfile, keyfile):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(certfile, keyfile)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    @property
    def url(self):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "https://%s:%d" % (h, self.port)

    def set_cert(self, certfile, keyfile):
        """Serve this certificate from the next connection on."""
        with self.cv:
            self._ctx = self._make_ctx(certfile, keyfile)

    def set_tokens(self, *tokens):
        """The bearer tokens accepted from now on."""
        with self.cv:
            self.tokens = set(tokens)

    # ------------------------------------------------------------------ control: objects
    def _tick(self, created):
        if created is not None:
            return created
        self.clock += datetime.timedelta(seconds=1)
        return self.clock

    def _commit(self, typ, key, obj, prev):
        with self.cv:
            self.rv += 1
            if obj is not None:
                obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append(_Hist(self.rv, typ, key, obj, prev))
            if typ == "DELETED":
                self.pods.pop(key, None)
            else:
                self.pods[key] = obj
            self.cv.notify_all()
            return self.rv

    def add_pod(self, ns, name, ip=None, created=None, fn=None, **kw):
        """Create a pod (ADDED).  kw: pod_object's (labels, phase, host_network, ips, ...);
        fn(pod) changes anything else before it is stored.  Returns its resourceVersion."""
        with self.cv:
            key = (ns, name)
            if key in self.pods:
                raise ValueError("pod %s/%s exists" % key)
            pod = pod_object(ns, name, ip=ip, created=self._tick(created), **kw)
            if fn is not None:
                fn(pod)
            return self._commit("ADDED", key, pod, None)

    def add_pods(self, specs):
        """Many pods in one go ([(ns, name, ip, kw)]); one wake-up for watchers."""
        with self.atomic():
            return [self.add_pod(ns, name, ip, **kw) for ns, name, ip, kw in specs]

    def pod(self, ns, name):
        with self.cv:
            p = self.pods.get((ns, name))
            return json.loads(json.dumps(p)) if p is not None else None

    def modify_pod(self, ns, name, labels=None, phase=None, ip=None, ips=None, deleting=False,
                   annotations=None, fn=None):
        """Change a pod (MODIFIED): labels (replaced), phase (status rewritten to fit), ip
        (status.podIP/podIPs; "" removes them), deleting (set deletionTimestamp, as a
        graceful delete does), annotations (merged), fn(pod) for anything else.
        Returns the new resourceVersion."""
        with self.cv:
            key = (ns, name)
            prev = self.pods[key]
            pod = json.loads(json.dumps(prev))
            meta, st = pod["metadata"], pod["status"]
            if labels is not None:
                meta["labels"] = dict(labels)
            if annotations:
                meta["annotations"].update(annotations)
            if deleting and "deletionTimestamp" not in meta:
                meta["deletionTimestamp"] = rfc3339(self._tick(None))
                meta["deletionGracePeriodSeconds"] = 30
            if phase is not None or ip is not None or ips is not None:
                cur_ip = st.get("podIP") if ip is None else (ip or None)
                cur_ips = ips or ([d["ip"] for d in st.get("podIPs", [])] if ip is None else None)
                new_phase = phase or st["phase"]
                pod["status"] = dict({"phase": new_phase},
                                     **_status_detail(new_phase, meta["creationTimestamp"],
                                                      st.get("hostIP"), cur_ip,
                                                      cur_ips if cur_ip else None))
            if fn is not None:
                fn(pod)
            return self._commit("MODIFIED", key, pod, prev)

    def delete_pod(self, ns, name):
        """Remove a pod (DELETED: its last state with the deletion's RV).  Returns the RV."""
        with self.cv:
            key = (ns, name)
            prev = self.pods[key]
            pod = json.loads(json.dumps(prev))
            pod["metadata"].setdefault("deletionTimestamp", rfc3339(self._tick(None)))
            pod["metadata"].setdefault("deletionGracePeriodSeconds", 0)
            return self._commit("DELETED", key, pod, prev)

    @contextlib.contextmanager
    def atomic(self):
        """Changes made inside reach every watcher in one wake-up (so "batch" chunking
        puts them in one stream write)."""
        with self.cv:
            yield self
            self.cv.notify_all()

    def compact(self, rv=None, timeout=3.0):
        """Forget history up to rv (default: now), like etcd compaction: a watch or an exact
        list or a continue token from before it gets 410 Expired.  Live watch streams keep
        their events (etcd's registered watchers do): this waits (bounded) until each has
        handled everything up to rv.  Returns the horizon."""
        with self.cv:
            rv = self.rv if rv is None else rv
            deadline = time.monotonic() + timeout
            while any(w.alive and w.pos < rv for w in self._watches) and time.monotonic() < deadline:
                self.cv.wait(0.02)
            cut = bisect.bisect_right([h.rv for h in self.history], rv)
            self.base = self._state_at_locked(rv)
            self.history = self.history[cut:]
            self.horizon = rv
            self.cv.notify_all()
            return rv

    def _state_at_locked(self, rv):
        if rv >= self.rv:
            return dict(self.pods)
        state = dict(self.base)
        for h in self.history:
            if h.rv > rv:
                break
            if h.type == "DELETED":
                state.pop(h.key, None)
            else:
                state[h.key] = h.obj
        return state

    # ------------------------------------------------------------------ control: streams
    def watches(self, alive=None, ns="*"):
        with self.cv:
            return [w.info() for w in self._watches
                    if (alive is None or w.alive == alive) and (ns == "*" or w.ns == ns)]

    def wait_watches(self, n, ns="*", timeout=5.0, since_id=0):
        """Wait until at least n live watch streams (of ns; with an id above since_id) are
        open; returns them (possibly fewer at timeout)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                live = [w.info() for w in self._watches if w.alive and w.id > since_id
                        and (ns == "*" or w.ns == ns)]
                left = deadline - time.monotonic()
                if len(live) >= n or left <= 0:
                    return live
                self.cv.wait(min(left, 0.05))

    def last_watch_id(self):
        with self.cv:
            return self._wid

    def bookmark(self, timeout=5.0, ns="*"):
        """Ask every live watch that allowed bookmarks (of ns) to send a BOOKMARK at the
        current RV; waits until they did.  Returns {watch id: rv sent}."""
        with self.cv:
            targets = [w for w in self._watches if w.alive and (ns == "*" or w.ns == ns)
                       and w.query.get("allowWatchBookmarks") in TRUE_WORDS]
            before = {w.id: len(w.bookmarks_sent) for w in targets}
            for w in targets:
                w.want_bookmark = True
            self.cv.notify_all()
            deadline = time.monotonic() + timeout
            while any(w.alive and len(w.bookmarks_sent) == before[w.id] for w in targets):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(min(left, 0.05))
            return {w.id: w.bookmarks_sent[-1] for w in targets if len(w.bookmarks_sent) > before[w.id]}

    def drop_watches(self, how="rst", when="now", ns="*", timeout=5.0):
        """End live watch streams abruptly.  how: "fin" (TCP FIN, no TLS close_notify, no
        last chunk), "rst" (RST), "midchunk" (write the chunk-size line and part of the data,
        then FIN), "midchunk-rst", "midevent" (a complete chunk holding the first part of an
        event line, then FIN).  when: "now", or "next_event" (cut the next event written).
        "now" waits until the streams are gone and returns their info; "next_event" arms
        and returns at once (see watches() for partial_rv)."""
        with self.cv:
            ws = [w for w in self._watches if w.alive and (ns == "*" or w.ns == ns)]
            for w in ws:
                if when == "now":
                    w.drop = how
                else:
                    w.drop_on_event = how
            self.cv.notify_all()
            if when != "now":
                return [w.info() for w in ws]
            deadline = time.monotonic() + timeout
            while any(w.alive for w in ws) and time.monotonic() < deadline:
                self.cv.wait(0.05)
            return [w.info() for w in ws]

    def set_watch_mode(self, mode):
        """How every watch request is answered from now on (lists are not affected):
        None: normally; "gone": HTTP 410 with a Status Expired, as the apiserver answers
        some too-old resourceVersions; "expired": 200, one ERROR event holding that Status,
        then the end of the stream (as for a compacted RV); "bookmark-end": 200, one BOOKMARK
        at the current RV (when allowWatchBookmarks), then the end of the stream at once.
        The request log's entry has watch_mode set."""
        assert mode in (None, "gone", "expired", "bookmark-end")
        with self.cv:
            self.watch_mode = mode

    def set_chunking(self, mode):
        assert mode in ("event", "split", "batch")
        with self.cv:
            self.chunking = mode

    # ------------------------------------------------------------------ control: failures
    def fail_next(self, n=1, status=500, retry_after=None):
        """Answer the next n requests (n None: every request until clear_failures()) with
        status and a Status body; 429 gets Retry-After (default 1)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        with self.cv:
            if n is None:
                self._fail_always = (status, retry_after)
            else:
                self._fail.extend([(status, retry_after)] * n)

    def clear_failures(self):
        with self.cv:
            self._fail = []
            self._fail_always = None

    def pending_failures(self):
        with self.cv:
            return len(self._fail)

    def pause(self):
        """Requests that arrive (or are in their delay) wait until resume(); bounded at 30 s."""
        with self.cv:
            self._paused = True

    def resume(self):
        with self.cv:
            self._paused = False
            self.cv.notify_all()

    def set_delay(self, seconds):
        with self.cv:
            self.delay = seconds

    # ------------------------------------------------------------------ request log
    def requests(self, pred=None, since=0):
        with self.cv:
            return [dict(r) for r in self.log[since:] if pred is None or pred(r)]

    def mark(self):
        with self.cv:
            return len(self.log)

    def wait_request(self, pred, since=0, timeout=5.0, answered=True):
        """The first request after mark since matching pred (and answered, i.e. with a status,
        when answered); None at timeout."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for r in self.log[since:]:
                    if pred(r) and (not answered or r["status"] is not None):
                        return dict(r)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(min(left, 0.05))

    def tls_failures(self, since=0):
        with self.cv:
            return [c for c in self.tls_log[since:] if c["tls"] != "ok"]

    # ------------------------------------------------------------------ lifecycle
    def stop(self):
        with self.cv:
            self._stopping = True
            self._paused = False
            self.cv.notify_all()
            conns = list(self._conns)
        try:
            self._lsock.close()
        except OSError:
            pass
        for c in conns:
            _abort(c)
        for t in list(self._threads):
            t.join(timeout=3)

    def _accept_loop(self):
        while True:
            try:
                raw, peer = self._lsock.accept()
            except OSError:
                return
            with self.cv:
                if self._stopping:
                    raw.close()
                    return
                t = threading.Thread(target=self._serve_conn, args=(raw, peer), daemon=True,
                                     name="kubeapi-conn")
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    # ------------------------------------------------------------------ connections
    def _serve_conn(self, raw, peer):
        peer_s = "%s:%d" % (peer[0], peer[1])
        entry = {"peer": peer_s, "t": time.time(), "tls": None, "requests": 0}
        with self.cv:
            self.tls_log.append(entry)
            ctx = self._ctx
            self._conns.add(raw)
        sock = raw
        try:
            raw.settimeout(10)
            try:
                sock = ctx.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as e:
                entry["tls"] = "%s: %s" % (type(e).__name__, e)
                return
            entry["tls"] = "ok"
            entry["version"] = sock.version()
            with self.cv:
                self._conns.discard(raw)
                self._conns.add(sock)
            sock.settimeout(60)
            _Http(self, sock, peer_s, entry).serve()
        except Exception as e:  # noqa: BLE001 - a connection's failure is recorded, never fatal
            entry["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            with self.cv:
                self._conns.discard(sock)
                self._conns.discard(raw)
                self.cv.notify_all()
            try:
                sock.close()
            except OSError:
                pass


def _abort(sock):
    """Close with RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()   # an SSLSocket closes without close_notify
    except OSError:
        pass


class _Dropped(Exception):
    pass


class _Http:
    """One connection: HTTP/1.1 requests, keep-alive, until EOF or a dropped stream."""

    def __init__(self, api, sock, peer, entry):
        self.api = api
        self.sock = sock
        self.peer = peer
        self.entry = entry
        self.buf = b""

    # -------------------------------------------------------------- reading
    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                return "toolarge"
            try:
                d = self.sock.recv(65536)
            except (socket.timeout, OSError, ssl.SSLError):
                return None
            if not d:
                return None
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head

    def serve(self):
        while not self.api._stopping:
            head = self._read_head()
            if head is None:
                return
            if head == "toolarge":
                self._send_status(None, status_obj(431, "RequestHeaderFieldsTooLarge", "too large"),
                                  close=True)
                return
            req = self._parse(head)
            if req is None:
                self._raw_response(400, [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Connection", "close")], b"400 Bad Request")
                return
            self.entry["requests"] += 1
            try:
                keep = self._handle(req)
            except _Dropped:
                return
            except (OSError, ssl.SSLError):
                return
            if not keep or req["close"]:
                return

    def _parse(self, head):
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return None
        hdrs = {}
        for ln in lines[1:]:
            k, sep, v = ln.partition(":")
            if not sep or not k or k != k.strip() or "\n" in ln or "\r" in ln:
                return None   # like Go's net/http: bare CR / LF in a header is a 400
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
        method, target, version = parts
        u = urllib.parse.urlsplit(target)
        q = {}
        for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True):
            q[k] = v
        n = int((hdrs.get("content-length") or ["0"])[0] or 0)
        while len(self.buf) < n:
            d = self.sock.recv(65536)
            if not d:
                break
            self.buf += d
        self.buf = self.buf[n:]
        conn = ",".join(hdrs.get("connection", [])).lower()
        return {"method": method, "target": target, "path": u.path, "query": q, "headers": hdrs,
                "version": version,
                "close": "close" in conn or (version == "HTTP/1.0" and "keep-alive" not in conn)}

    # -------------------------------------------------------------- writing
    def _raw_response(self, status, headers, body):
        out = "HTTP/1.1 %d %s\r\n" % (status, HTTP_REASONS.get(status, "Status"))
        for k, v in headers:
            out += "%s: %s\r\n" % (k, v)
        self.sock.sendall(out.encode("latin-1") + b"\r\n" + body)

    def _std_headers(self):
        return [("Audit-Id", str(uuid.uuid4())), ("Cache-Control", "no-cache, private"),
                ("Content-Type", "application/json"),
                ("X-Kubernetes-Pf-Flowschema-Uid", "5cd7b2d1-4c7a-4c5e-9d33-0d8c0c1f0a11"),
                ("X-Kubernetes-Pf-Prioritylevel-Uid", "e2a0f4c6-0d1b-4c55-8f2f-6a6f5d7c8b90"),
                ("Date", datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT"))]

    def _send_json(self, rec, status, obj, extra=(), close=False):
        body = go_json(obj)
        hdrs = self._std_headers() + list(extra)
        framing = self.api.list_framing
        gz = "gzip" in rec.get("accept_encoding", "") if rec else False
        if gz and len(body) > GZIP_OVER:
            body = gzip.compress(body, 1)
            hdrs.append(("Content-Encoding", "gzip"))
            hdrs.append(("Vary", "Accept-Encoding"))
        if close:
            hdrs.append(("Connection", "close"))
        chunked = framing == "chunked" or (framing == "auto" and len(body) > LIST_CHUNK_OVER)
        if rec is not None:
            rec["status"] = status
            rec["framing"] = "chunked" if chunked else "length"
            rec["bytes"] = len(body)
        if not chunked:
            hdrs.append(("Content-Length", str(len(body))))
            self._raw_response(status, hdrs, body)
        else:
            hdrs.append(("Transfer-Encoding", "chunked"))
            self._raw_response(status, hdrs, b"")
            self._write_stream(body, self.api.chunking, whole=True)
            self.sock.sendall(b"0\r\n\r\n")
        with self.api.cv:
            self.api.cv.notify_all()

    def _send_status(self, rec, st, extra=(), close=False):
        self._send_json(rec, st["code"], st, extra, close)

    def _write_stream(self, data, mode, whole=False):
        """Write data as chunks of the current mode (data: event lines, or a whole body)."""
        rng = self.api.rng
        if mode == "event" and not whole:
            self.sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            return
        if mode == "event" or (mode == "batch" and whole):
            for off in range(0, len(data), 4096):
                piece = data[off:off + 4096]
                self.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            return
        if mode == "batch":
            pos = 0
            while pos < len(data):
                n = min(len(data) - pos, rng.randint(1, max(2, len(data) // 2)))
                self.sock.sendall(b"%x\r\n%s\r\n" % (n, data[pos:pos + n]))
                pos += n
            return
        # split: several chunks per line, each chunk written in two or three pieces
        # (the size line cut before its LF, the data cut in the middle), pausing so the
        # client's reads end there.
        pos = 0
        big = len(data) > 65536
        while pos < len(data):
            n = min(len(data) - pos, rng.randint(1, 8192 if big else max(2, len(data) // 3)))
            frame = b"%x\r\n%s\r\n" % (n, data[pos:pos + n])
            cuts = sorted({len(b"%x\r" % n), rng.randint(1, len(frame) - 1)})
            last = 0
            for c in cuts + [len(frame)]:
                if c > last:
                    self.sock.sendall(frame[last:c])
                    if not big:
                        time.sleep(0.003)
                last = c
            pos += n

    # -------------------------------------------------------------- handling
    def _handle(self, req):
        api = self.api
        auth = (req["headers"].get("authorization") or [""])[0]
        token = auth[7:] if auth.startswith("Bearer ") else None
        rec = {"i": None, "t": time.time(), "peer": self.peer, "method": req["method"],
               "target": req["target"], "path": req["path"], "query": req["query"],
               "watch": req["query"].get("watch") in TRUE_WORDS, "watch_mode": None, "token": token,
               "auth": None, "status": None, "user_agent": (req["headers"].get("user-agent") or [""])[0],
               "accept_encoding": ",".join(req["headers"].get("accept-encoding", []))}
        ns = None
        m = re.fullmatch(r"/api/v1/namespaces/([a-z0-9]([-a-z0-9]*[a-z0-9])?)/pods", req["path"])
        if m:
            ns = m.group(1)
        rec["ns"] = ns
        with api.cv:
            rec["i"] = len(api.log)
            api.log.append(rec)
            api.cv.notify_all()
            deadline = time.monotonic() + 30
            t_delay = time.monotonic() + api.delay
            while not api._stopping and (api._paused or time.monotonic() < t_delay) \
                    and time.monotonic() < deadline:
                api.cv.wait(0.02)
            fail = api._fail.pop(0) if api._fail else api._fail_always
            tokens = set(api.tokens)
        if fail is not None:
            code, retry = fail
            reason, msg = FAIL_REASONS.get(code, ("InternalError", "error"))
            extra = [("Retry-After", str(retry))] if retry is not None else []
            details = {"causes": [{"message": msg}], "retryAfterSeconds": retry} if retry else None
            rec["auth"] = "unchecked"
            self._send_status(rec, status_obj(code, reason, msg, details), extra)
            return True
        rec["auth"] = "ok" if token is not None and token in tokens else ("bad" if token else "missing")
        if rec["auth"] != "ok":
            self._send_status(rec, status_obj(401, "Unauthorized", "Unauthorized"))
            return True
        if req["path"] in ("/version", "/healthz", "/livez", "/readyz"):
            if req["path"] == "/version":
                self._send_json(rec, 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.4",
                                           "platform": "linux/amd64"})
            else:
                rec["status"] = 200
                self._raw_response(200, [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", "2")], b"ok")
            return True
        if req["path"] != "/api/v1/pods" and ns is None:
            self._send_status(rec, status_obj(404, "NotFound", "the server could not find the requested resource",
                                              {}))
            return True
        if req["method"] != "GET":
            self._send_status(rec, status_obj(405, "MethodNotAllowed",
                                              "the server does not allow this method on the requested resource",
                                              {}))
            return True
        q = req["query"]
        try:
            sel = Selector(q.get("labelSelector", ""))
        except ValueError as e:
            self._send_status(rec, status_obj(400, "BadRequest", "unable to parse requirement: %s" % e))
            return True
        if rec["watch"]:
            return self._watch(rec, ns, sel)
        return self._list(rec, ns, sel)

    # -------------------------------------------------------------- list
    @staticmethod
    def _encode_continue(rv, start):
        tok = go_json({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
        return base64.urlsafe_b64encode(tok).decode().rstrip("=")

    @staticmethod
    def _decode_continue(s):
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
        d = json.loads(raw)
        if d.get("v") != "meta.k8s.io/v1" or not isinstance(d.get("rv"), int) or \
                not isinstance(d.get("start"), str):
            raise ValueError("bad continue token")
        return d["rv"], d["start"]

    def _list(self, rec, ns, sel):
        api = self.api
        q = rec["query"]
        try:
            limit = int(q.get("limit") or 0)
            if limit < 0:
                raise ValueError
        except ValueError:
            self._send_status(rec, status_obj(400, "BadRequest", "limit must be a non-negative integer"))
            return True
        cont, rvq, match = q.get("continue"), q.get("resourceVersion"), q.get("resourceVersionMatch")
        page = 0
        with api.cv:
            if cont:
                try:
                    snap_rv, start = self._decode_continue(cont)
                except (ValueError, TypeError, json.JSONDecodeError, base64.binascii.Error):
                    st = status_obj(400, "BadRequest", "continue key is not valid: incorrect encoded start "
                                                       "resourceVersion (version meta.k8s.io/v1)")
                    self._send_status(rec, st)
                    return True
                if rvq not in (None, "", "0"):
                    self._send_status(rec, status_obj(400, "BadRequest", "specifying resource version is "
                                                                         "not allowed when using continue"))
                    return True
                if snap_rv < api.horizon:
                    st = status_obj(410, "Expired",
                                    "The provided continue parameter is too old to display a consistent "
                                    "list result. You can start a new list without the continue "
                                    "parameter, or use the continue value from the response.")
                    self._send_status(rec, st)
                    return True
                page = sum(1 for r in api.log[:rec["i"]] if r.get("list_rv") == snap_rv and r["path"] ==
                           rec["path"])
            else:
                start = ""
                if match and not rvq:
                    self._send_status(rec, status_obj(400, "BadRequest",
                                                      "resourceVersionMatch is forbidden unless "
                                                      "resourceVersion is provided"))
                    return True
                if rvq in (None, "", "0"):
                    snap_rv = api.rv
                else:
                    try:
                        want = int(rvq)
                    except ValueError:
                        self._send_status(rec, status_obj(400, "BadRequest", "invalid resource version"))
                        return True
                    exact = match == "Exact" or (not match and limit > 0)
                    if want > api.rv:
                        st = status_obj(504, "Timeout", "Too large resource version: %d, current: %d" %
                                        (want, api.rv),
                                        {"causes": [{"reason": "ResourceVersionTooLarge",
                                                     "message": "Too large resource version"}],
                                         "retryAfterSeconds": 1})
                        self._send_status(rec, st)
                        return True
                    if exact and want < api.horizon:
                        st = status_obj(410, "Expired", "too old resource version: %d (%d)" %
                                        (want, api.horizon + 1))
                        self._send_status(rec, st)
                        return True
                    snap_rv = want if exact else api.rv
            rec["list_rv"] = snap_rv
        hook = api.on_list_page
        if hook is not None:
            hook(page, rec)
        with api.cv:
            if cont and snap_rv < api.horizon:   # compacted by the hook
                st = status_obj(410, "Expired",
                                "The provided continue parameter is too old to display a consistent "
                                "list result. You can start a new list without the continue "
                                "parameter, or use the continue value from the response.")
                self._send_status(rec, st)
                return True
            state = api._state_at_locked(snap_rv)
        # etcd key order: "ns/name", the order the continue token's start refers to
        keys = sorted((k for k, p in state.items()
                       if (ns is None or k[0] == ns) and sel.matches(p["metadata"].get("labels"))),
                      key=lambda k: "%s/%s" % k)
        keys = [k for k in keys if "%s/%s" % k >= start]
        size = len(keys)
        if limit > 0:
            size = min(size, limit, api.page_max or limit)
        items = []
        for k in keys[:size]:
            items.append(state[k])
        meta = {"resourceVersion": str(snap_rv)}
        if size < len(keys):
            last = "%s/%s" % keys[size - 1]
            meta["continue"] = self._encode_continue(snap_rv, last + "\x00")
            if sel.empty:
                meta["remainingItemCount"] = len(keys) - size
        rec["items"] = len(items)
        rec["continue_out"] = meta.get("continue")
        self._send_json(rec, 200, {"kind": "PodList", "apiVersion": "v1", "metadata": meta, "items": items})
        return True

    # -------------------------------------------------------------- watch
    def _event_line(self, typ, obj):
        if obj is not None and typ != "ERROR" and typ != "BOOKMARK":
            obj = dict({"kind": "Pod", "apiVersion": "v1"}, **obj)
        return go_json({"type": typ, "object": obj}) + b"\n"

    @staticmethod
    def _bookmark_obj(rv, initial_end=False):
        meta = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {"containers": None},
                "status": {}}

    @staticmethod
    def _filter(h, ns, sel):
        """The event a watcher of (ns, sel) sees for history entry h, or None."""
        if ns is not None and h.key[0] != ns:
            return None
        lab = lambda p: (p or {}).get("metadata", {}).get("labels")  # noqa: E731
        if h.type == "ADDED":
            return ("ADDED", h.obj) if sel.matches(lab(h.obj)) else None
        if h.type == "DELETED":
            return ("DELETED", h.obj) if sel.matches(lab(h.prev or h.obj)) else None
        old, new = sel.matches(lab(h.prev)), sel.matches(lab(h.obj))
        if old and new:
            return ("MODIFIED", h.obj)
        if new:
            return ("ADDED", h.obj)
        if old:
            prev = json.loads(json.dumps(h.prev))
            prev["metadata"]["resourceVersion"] = str(h.rv)
            return ("DELETED", prev)
        return None

    def _watch(self, rec, ns, sel):
        api = self.api
        q = rec["query"]
        rvq = q.get("resourceVersion")
        try:
            timeout = int(q.get("timeoutSeconds") or 1800)
        except ValueError:
            self._send_status(rec, status_obj(400, "BadRequest", "invalid timeoutSeconds"))
            return True
        initial = []
        too_old = None
        send_initial = q.get("sendInitialEvents") in TRUE_WORDS
        with api.cv:
            mode = rec["watch_mode"] = api.watch_mode
            horizon = api.horizon
        if mode == "gone":
            self._send_status(rec, status_obj(410, "Expired", "too old resource version: %s (%d)" %
                                              (rvq, horizon + 1)))
            return True
        with api.cv:
            if rvq in (None, "", "0") or send_initial:
                start = api.rv
                initial = [p for k, p in sorted(api.pods.items())
                           if (ns is None or k[0] == ns) and sel.matches(p["metadata"].get("labels"))]
            else:
                try:
                    start = int(rvq)
                except ValueError:
                    self._send_status(rec, status_obj(400, "BadRequest", "invalid resource version"))
                    return True
                if start < api.horizon:
                    too_old = status_obj(410, "Expired", "too old resource version: %d (%d)" %
                                         (start, api.horizon + 1))
            if mode == "expired" and too_old is None:
                too_old = status_obj(410, "Expired", "too old resource version: %d (%d)" %
                                     (start, api.horizon + 1))
            api._wid += 1
            w = _Watch(api._wid, ns, q, start)
            api._watches.append(w)
            api.cv.notify_all()
        rec["status"] = 200
        rec["watch_id"] = w.id
        try:
            self._raw_response(200, self._std_headers() + [("Transfer-Encoding", "chunked")], b"")
            if too_old is not None:
                w.dropped = "expired"
                self._write_stream(self._event_line("ERROR", too_old), api.chunking)
                self.sock.sendall(b"0\r\n\r\n")
                return True
            for p in initial:
                self._write_stream(self._event_line("ADDED", p), api.chunking)
                w.events_sent += 1
                w.last_sent = int(p["metadata"]["resourceVersion"])
            if send_initial and q.get("allowWatchBookmarks") in TRUE_WORDS:
                self._write_stream(self._event_line("BOOKMARK", self._bookmark_obj(start, True)), api.chunking)
                w.bookmarks_sent.append(start)
                w.last_sent = start
            if mode == "bookmark-end":
                if q.get("allowWatchBookmarks") in TRUE_WORDS:
                    with api.cv:
                        cur = api.rv
                    self._write_stream(self._event_line("BOOKMARK", self._bookmark_obj(cur)), api.chunking)
                    with api.cv:
                        w.bookmarks_sent.append(cur)
                        w.last_sent = cur
                w.dropped = "ended"
                self.sock.sendall(b"0\r\n\r\n")
                return True
            ended = self._watch_loop(w, sel, time.monotonic() + timeout)
            if ended == "timeout":
                self.sock.sendall(b"0\r\n\r\n")
                return True
            return False
        finally:
            with api.cv:
                w.alive = False
                api.cv.notify_all()

    def _watch_loop(self, w, sel, deadline):
        api = self.api
        while True:
            with api.cv:
                while True:
                    if api._stopping:
                        w.dropped = "stopped"
                        return "stopped"
                    if w.drop:
                        how, w.drop = w.drop, None
                        break
                    if w.pos < api.horizon and (not api.history or api.history[0].rv > w.pos + 1):
                        # compacted past this watcher (it fell behind): the watch expires
                        how = "expired"
                        break
                    if (api.history and api.history[-1].rv > w.pos) or w.want_bookmark:
                        how = None
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        w.dropped = "timeout"
                        return "timeout"
                    api.cv.wait(min(left, 0.25))
                cur = api.rv
                i = bisect.bisect_right([h.rv for h in api.history], w.pos)
                hist = api.history[i:]
                bm = w.want_bookmark
                w.want_bookmark = False
                chunking = api.chunking
            if how == "expired":
                st = status_obj(410, "Expired", "too old resource version: %d (%d)" % (w.pos, api.horizon + 1))
                self._write_stream(self._event_line("ERROR", st), chunking)
                self.sock.sendall(b"0\r\n\r\n")
                w.dropped = "expired"
                return "timeout"
            if how is not None:
                self._drop(w, how, None)
            evs = []
            for h in hist:
                e = self._filter(h, w.ns, sel)
                if e is not None:
                    evs.append((h.rv, self._event_line(*e)))
            if w.drop_on_event and evs:
                # complete the events before the cut one, then cut it
                for rv, line in evs[:-1]:
                    self._write_stream(line, chunking)
                    self._sent(w, rv)
                self._drop(w, w.drop_on_event, evs[-1])
            if chunking == "batch" and evs:
                self._write_stream(b"".join(line for _, line in evs), "batch")
                for rv, _ in evs:
                    self._sent(w, rv)
            else:
                for rv, line in evs:
                    self._write_stream(line, chunking)
                    self._sent(w, rv)
            w.pos = max(w.pos, cur)
            if bm:
                self._write_stream(self._event_line("BOOKMARK", self._bookmark_obj(cur)), chunking)
                with api.cv:
                    w.bookmarks_sent.append(cur)
                    w.last_sent = cur
                    api.cv.notify_all()

    def _sent(self, w, rv):
        with self.api.cv:
            w.events_sent += 1
            w.last_sent = rv

    def _drop(self, w, how, ev):
        """End the stream abruptly (see drop_watches)."""
        if how in ("midchunk", "midchunk-rst", "midevent"):
            if ev is None:
                ev = (None, self._event_line("BOOKMARK", self._bookmark_obj(self.api.rv)))
            rv, line = ev
            w.partial_rv = rv
            half = max(1, len(line) // 2)
            if how == "midevent":
                self.sock.sendall(b"%x\r\n%s\r\n" % (half, line[:half]))
            else:
                self.sock.sendall(b"%x\r\n%s" % (len(line), line[:half]))
        w.dropped = "dropped:" + how
        if how in ("rst", "midchunk-rst"):
            _abort(self.sock)
        else:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self.sock.close()
            except OSError:
                pass
        raise _Dropped()


# --------------------------------------------------------------------------
# Self-test: plain python clients against the stand-in
# --------------------------------------------------------------------------

class _Resp:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.chunks = []        # data lengths of each chunk, in order
        self.complete = False   # saw the last chunk (or the whole Content-Length)
        self.error = None


class RawClient:
    """A strict HTTP/1.1-over-TLS client (one request per connection) used by --selftest:
    chunked bodies are decoded by hand and their chunk sizes kept."""

    def __init__(self, api, cafile, token, server_hostname=None):
        self.addr = (api.host, api.port)
        self.cafile = cafile
        self.token = token
        self.hostname = server_hostname or api.host

    def connect(self):
        ctx = ssl.create_default_context(cafile=self.cafile)
        raw = socket.create_connection(self.addr, timeout=10)
        return ctx.wrap_socket(raw, server_hostname=self.hostname)

    def get(self, target, token="__default__", on_line=None, timeout=10.0):
        s = self.connect()
        s.settimeout(timeout)
        tok = self.token if token == "__default__" else token
        req = "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: kubeapi-selftest\r\nAccept: application/json\r\n" % (
            target, self.addr[0], self.addr[1])
        if tok is not None:
            req += "Authorization: Bearer %s\r\n" % tok
        s.sendall((req + "Connection: close\r\n\r\n").encode())
        r = _Resp()
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise EOFError("EOF in head")
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            r.status = int(lines[0].split(" ")[1])
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                r.headers[k.strip().lower()] = v.strip()
            if r.headers.get("transfer-encoding") == "chunked":
                pending = b""
                while True:
                    while b"\r\n" not in buf:
                        d = s.recv(65536)
                        if not d:
                            raise EOFError("EOF in chunk size line")
                        buf += d
                    line, buf = buf.split(b"\r\n", 1)
                    size = int(line.split(b";")[0], 16)
                    if size == 0:
                        while not buf.startswith(b"\r\n"):
                            d = s.recv(65536)
                            if not d:
                                raise EOFError("EOF in trailer")
                            buf += d
                        r.complete = True
                        break
                    while len(buf) < size + 2:
                        d = s.recv(65536)
                        if not d:
                            raise EOFError("EOF in chunk data")
                        buf += d
                    if buf[size:size + 2] != b"\r\n":
                        raise ValueError("chunk data not followed by CRLF")
                    data, buf = buf[:size], buf[size + 2:]
                    r.chunks.append(size)
                    r.body += data
                    if on_line is not None:
                        pending += data
                        while b"\n" in pending:
                            ln, pending = pending.split(b"\n", 1)
                            on_line(json.loads(ln))
            else:
                n = int(r.headers.get("content-length", "0"))
                while len(buf) < n:
                    d = s.recv(65536)
                    if not d:
                        raise EOFError("EOF in body")
                    buf += d
                r.body = buf[:n]
                r.complete = True
        except (EOFError, OSError, ValueError, ssl.SSLError) as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        finally:
            s.close()
        if r.headers.get("content-encoding") == "gzip":
            r.body = gzip.decompress(r.body)
        return r


def _selftest():   # noqa: C901 - one linear script
    results = {"ok": 0, "fail": 0}

    def check(name, cond, why=""):
        if cond:
            results["ok"] += 1
            print("ok - %s" % name, flush=True)
        else:
            results["fail"] += 1
            print("not ok - %s: %s" % (name, why), flush=True)

    tmp = tempfile.mkdtemp(prefix="kubeapi-selftest-")
    api = None
    try:
        pki = make_pki(tmp, "127.0.0.1")
        other = make_ca(tmp, "other")
        other_srv = make_server_cert(tmp, other, "other-apiserver", ips=["127.0.0.1"])
        api = KubeAPI("127.0.0.1", 0, pki["cert"], pki["key"], token="tok-1")
        cli = RawClient(api, pki["ca"], "tok-1")

        # --- TLS and auth
        r = RawClient(api, pki["ca"], "tok-1", server_hostname="kubernetes.default.svc").get("/version")
        check("TLS verifies by IP SAN and by DNS:kubernetes.default.svc; /version 200",
              r.status == 200 and json.loads(r.body)["major"] == "1", "%s %s" % (r.status, r.error))
        try:
            ctx = ssl.create_default_context(cafile=other["ca"])
            raw = socket.create_connection(("127.0.0.1", api.port), timeout=5)
            ctx.wrap_socket(raw, server_hostname="127.0.0.1").close()
            check("a client trusting another CA refuses the server", False, "handshake succeeded")
        except ssl.SSLCertVerificationError:
            check("a client trusting another CA refuses the server", True)
        t0 = len(api.tls_log)
        r = cli.get("/api/v1/pods", token=None)
        st = json.loads(r.body) if r.body else {}
        check("no token -> 401 Status Unauthorized",
              r.status == 401 and st.get("kind") == "Status" and st.get("code") == 401 and
              st.get("reason") == "Unauthorized", "%s %r" % (r.status, r.body[:200]))
        r = cli.get("/api/v1/pods", token="wrong")
        check("wrong token -> 401", r.status == 401, str(r.status))
        check("request log records auth missing/bad",
              [x["auth"] for x in api.requests()[-2:]] == ["missing", "bad"], str(api.requests()[-2:]))
        check("tls_log has one ok handshake per connection", all(c["tls"] == "ok" for c in api.tls_log[t0:]),
              str(api.tls_log[t0:]))

        # --- objects, list
        for i in range(5):
            api.add_pod("ra", "p%d" % i, "10.42.0.%d" % (i + 1), labels={"tier": "standard", "app": "a%d" % i})
        for i in range(3):
            api.add_pod("rb", "q%d" % i, "10.42.1.%d" % (i + 1), labels={"tier": "trusted"})
        api.add_pod("rb", "nolabel", "10.42.1.99", labels={"app": "x"})
        r = cli.get("/api/v1/namespaces/ra/pods")
        body = json.loads(r.body)
        check("namespace list: PodList, 5 items, RV = current, items without kind",
              r.status == 200 and body["kind"] == "PodList" and body["apiVersion"] == "v1" and
              len(body["items"]) == 5 and body["metadata"]["resourceVersion"] == str(api.rv) and
              "kind" not in body["items"][0], "%s %s" % (r.status, r.body[:200]))
        check("list is compact JSON, application/json, Go escapes (\\u003c)",
              b": " not in r.body[:200] and r.headers.get("content-type") == "application/json" and
              b"\\u003cmain\\u003e" in r.body, r.body[:100])
        check("list over 4 KiB is chunked like Go's", r.headers.get("transfer-encoding") == "chunked",
              str(r.headers))
        pod0 = body["items"][0]
        check("pods look real (uid, RV, labels, podIPs, conditions, managedFields, ownerReferences)",
              pod0["metadata"]["uid"] and pod0["status"]["podIPs"] == [{"ip": "10.42.0.1"}] and
              pod0["metadata"]["managedFields"] and pod0["status"]["conditions"] and
              pod0["metadata"]["ownerReferences"], json.dumps(pod0)[:200])
        r = cli.get("/api/v1/pods")
        check("cluster list has all 9 pods", len(json.loads(r.body)["items"]) == 9, r.body[:100])
        for sel, want in (("tier", 8), ("tier=trusted", 3), ("tier==trusted", 3), ("tier!=trusted", 6),
                          ("!tier", 1), ("tier,app", 5), ("tier=standard,app=a1", 1),
                          ("tier in (standard, trusted)", 8), ("tier notin (standard)", 4)):
            r = cli.get("/api/v1/pods?labelSelector=" + urllib.parse.quote(sel))
            n = len(json.loads(r.body)["items"]) if r.status == 200 else None
            check("labelSelector %r -> %d" % (sel, want), n == want, "got %s" % n)
        r = cli.get("/api/v1/pods?labelSelector=" + urllib.parse.quote("tier in (a"))
        check("bad labelSelector -> 400 BadRequest", r.status == 400, str(r.status))

        # --- pagination: consistent snapshot across pages, continue opaque
        api.page_max = 2
        snap = api.rv
        seen, cont, pages, conts = [], None, 0, []
        while True:
            t = "/api/v1/pods?limit=3" + ("&continue=" + urllib.parse.quote(cont) if cont else "")
            r = cli.get(t)
            b = json.loads(r.body)
            pages += 1
            seen += ["%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"]) for p in b["items"]]
            if pages == 1:
                api.delete_pod("ra", "p4")        # after page 1: the list must still show it
                api.add_pod("ra", "p9", "10.42.0.9")  # ... and must not show this one
            check("page %d: RV pinned to the first page's (%d)" % (pages, snap),
                  b["metadata"]["resourceVersion"] == str(snap), b["metadata"])
            cont = b["metadata"].get("continue")
            if not cont:
                break
            conts.append(cont)
        check("pagination: server page_max 2 under limit 3 -> 5 pages of the 9-pod snapshot",
              pages == 5 and len(seen) == 9 and "ra/p4" in seen and "ra/p9" not in seen and
              len(set(seen)) == 9, "%d pages %s" % (pages, seen))
        api.page_max = None
        r = cli.get("/api/v1/pods?limit=4")
        b = json.loads(r.body)
        check("remainingItemCount without a selector", b["metadata"].get("remainingItemCount") == 5,
              b["metadata"])
        api.compact()
        r = cli.get("/api/v1/pods?limit=3&continue=" + urllib.parse.quote(conts[0]))
        st = json.loads(r.body)
        check("continue token from before a compaction -> 410 Expired",
              r.status == 410 and st["reason"] == "Expired" and st["code"] == 410, "%s %r" % (r.status, r.body))
        r = cli.get("/api/v1/pods?resourceVersion=%d&resourceVersionMatch=Exact" % snap)
        check("exact list at a compacted RV -> 410", r.status == 410 and b"too old resource version" in r.body,
              "%s %r" % (r.status, r.body[:200]))
        r = cli.get("/api/v1/pods?resourceVersion=%d" % snap)
        check("not-older-than list at a compacted RV -> 200 current", r.status == 200 and
              json.loads(r.body)["metadata"]["resourceVersion"] == str(api.rv), str(r.status))
        r = cli.get("/api/v1/pods?resourceVersion=%d&resourceVersionMatch=NotOlderThan" % (api.rv + 50))
        check("list at a future RV -> 504 Too large resource version", r.status == 504, str(r.status))

        # --- watch: events after the RV, in order; selector transitions; bookmarks; timeout
        got = []
        base_rv = api.rv
        th = threading.Thread(target=lambda: got.append(cli.get(
            "/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=3&labelSelector=tier&resourceVersion=%d"
            % base_rv, on_line=lambda ev: got.append(ev), timeout=15)))
        th.start()
        api.wait_watches(1, timeout=5)
        rv_add = api.add_pod("ra", "w1", "10.42.0.21", labels={"tier": "standard"})
        api.add_pod("ra", "w2", "10.42.0.22", labels={})                  # not selected: no event
        api.modify_pod("ra", "w2", labels={"tier": "trusted"})           # starts matching: ADDED
        api.modify_pod("ra", "w1", labels={"tier": "trusted"})           # MODIFIED
        api.modify_pod("ra", "w1", labels={"other": "x"})                # stops matching: DELETED
        api.delete_pod("ra", "w2")                                        # DELETED
        bms = api.bookmark()
        th.join(timeout=10)
        evs = [e for e in got if isinstance(e, dict)]
        resp = next((e for e in got if isinstance(e, _Resp)), None)
        kinds = [(e["type"], e["object"]["metadata"].get("name")) for e in evs]
        check("watch events: ADDED w1, ADDED w2 (selector), MODIFIED w1, DELETED w1 (selector), DELETED w2, "
              "BOOKMARK", kinds == [("ADDED", "w1"), ("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w1"),
                                    ("DELETED", "w2"), ("BOOKMARK", None)], str(kinds))
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        check("event RVs increase, first above the watch RV, bookmark at the current RV",
              rvs == sorted(rvs) and rvs[0] == rv_add > base_rv and rvs[-1] == api.rv and
              list(bms.values()) == [api.rv], "%s bms %s rv %d" % (rvs, bms, api.rv))
        check("watch objects carry kind Pod", all(e["object"].get("kind") == "Pod" for e in evs), "")
        check("selector-leaving DELETED carries the previous object with the event's RV",
              evs[3]["object"]["metadata"]["labels"] == {"tier": "trusted"} and rvs[3] > rvs[2], str(evs[3])[:200])
        check("watch ends cleanly at timeoutSeconds (last chunk)", resp is not None and resp.complete and
              resp.error is None and resp.headers.get("transfer-encoding") == "chunked",
              resp.error if resp else "no response")

        # --- watch with an RV below the horizon: ERROR 410 event, end of stream
        api.compact()
        got = []
        r = cli.get("/api/v1/namespaces/ra/pods?watch=true&resourceVersion=%d" % base_rv,
                    on_line=got.append)
        check("watch from a compacted RV -> 200, one ERROR event (Status Expired 410), end of stream",
              r.status == 200 and r.complete and len(got) == 1 and got[0]["type"] == "ERROR" and
              got[0]["object"]["code"] == 410 and got[0]["object"]["reason"] == "Expired" and
              got[0]["object"]["message"].startswith("too old resource version: %d (" % base_rv),
              "%s %s %s" % (r.status, r.error, got))

        # --- watch rv=0 / sendInitialEvents: synthetic ADDED then the end-of-initial bookmark
        got = []
        r = cli.get("/api/v1/namespaces/rb/pods?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
                    "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1", on_line=got.append)
        check("sendInitialEvents: ADDED per pod, then BOOKMARK k8s.io/initial-events-end",
              [e["type"] for e in got] == ["ADDED"] * 4 + ["BOOKMARK"] and
              got[-1]["object"]["metadata"]["annotations"] == {INITIAL_EVENTS_END: "true"}, str(got)[:300])

        # --- chunking modes and drops, read by the strict client and by http.client
        for mode in ("split", "batch"):
            api.set_chunking(mode)
            got = []
            start = api.rv
            th = threading.Thread(target=lambda: got.append(cli.get(
                "/api/v1/namespaces/ra/pods?watch=1&timeoutSeconds=2&resourceVersion=%d" % start,
                on_line=lambda ev: got.append(ev), timeout=15)))
            th.start()
            api.wait_watches(1, ns="ra", timeout=5)
            with api.atomic():
                for i in range(4):
                    api.add_pod("ra", "%s%d" % (mode, i), "10.42.3.%d" % (10 * (mode == "batch") + i))
            th.join(timeout=10)
            resp = next((e for e in got if isinstance(e, _Resp)), None)
            names = [e["object"]["metadata"]["name"] for e in got if isinstance(e, dict)]
            check("chunking %s: 4 events decoded whole, stream complete" % mode,
                  names == ["%s%d" % (mode, i) for i in range(4)] and resp and resp.complete, str(names))
            if mode == "split":
                check("chunking split: more chunks than events", resp and len(resp.chunks) > 4, str(resp.chunks))
            else:
                ev_ends, off = set(), 0
                for ln in resp.body.split(b"\n")[:-1]:
                    off += len(ln) + 1
                    ev_ends.add(off)
                ck_ends, off = set(), 0
                for c in resp.chunks:
                    off += c
                    ck_ends.add(off)
                check("chunking batch: chunk boundaries are not event boundaries",
                      ck_ends != ev_ends, "%s vs %s" % (sorted(ck_ends), sorted(ev_ends)))
        # http.client (a standard client) reads a split watch stream too
        start = api.rv
        conn = http.client.HTTPSConnection("127.0.0.1", api.port, timeout=10,
                                           context=ssl.create_default_context(cafile=pki["ca"]))
        conn.request("GET", "/api/v1/namespaces/ra/pods?watch=1&timeoutSeconds=2&resourceVersion=%d" % start,
                     headers={"Authorization": "Bearer tok-1"})
        api.wait_watches(1, ns="ra", timeout=5)
        api.modify_pod("ra", "p0", phase="Succeeded")
        hr = conn.getresponse()
        line = hr.readline()
        ev = json.loads(line)
        rest = hr.read()
        conn.close()
        check("http.client reads a split watch stream (MODIFIED phase Succeeded)",
              ev["type"] == "MODIFIED" and ev["object"]["status"]["phase"] == "Succeeded" and rest == b"",
              str(line[:200]))
        api.set_chunking("event")

        for how in ("fin", "rst", "midchunk", "midevent", "midchunk-rst"):
            got = []
            start = api.rv
            since = api.last_watch_id()
            th = threading.Thread(target=lambda: got.append(cli.get(
                "/api/v1/namespaces/ra/pods?watch=1&resourceVersion=%d" % start,
                on_line=lambda ev: got.append(ev), timeout=15)))
            th.start()
            api.wait_watches(1, ns="ra", since_id=since, timeout=5)
            api.add_pod("ra", "pre-%s" % how, "10.42.5.%d" % len(how))
            harness_wait(lambda: got, 5)          # the client has read one event: the head is in
            rv_cut = None
            if how.startswith("mid"):
                api.drop_watches(how, when="next_event", ns="ra")
                rv_cut = api.add_pod("ra", "cut-%s" % how, "10.42.4.%d" % len(how))
            else:
                api.drop_watches(how, ns="ra")
            th.join(timeout=10)
            resp = next((e for e in got if isinstance(e, _Resp)), None)
            names = [e["object"]["metadata"]["name"] for e in got if isinstance(e, dict)]
            info = [w for w in api.watches() if w["id"] > since]
            ok = resp is not None and resp.status == 200 and not resp.complete and resp.error and \
                names == ["pre-%s" % how]
            if how.startswith("mid"):
                ok = ok and info and info[0]["partial_rv"] == rv_cut and info[0]["last_sent"] == rv_cut - 1
            check("drop %s: the client has the event before the cut and sees the stream end incomplete" % how,
                  ok, "%s %s %s" % (resp and resp.error, names, info))

        # --- set_watch_mode: servers that end every watch at once
        cur = api.rv
        api.set_watch_mode("gone")
        r = cli.get("/api/v1/namespaces/ra/pods?watch=1&resourceVersion=%d" % cur)
        st = json.loads(r.body) if r.body else {}
        check("watch mode gone: HTTP 410 Status Expired", r.status == 410 and st.get("code") == 410 and
              st.get("reason") == "Expired", "%s %r" % (r.status, r.body[:200]))
        r = cli.get("/api/v1/namespaces/ra/pods?limit=2")
        check("watch mode gone: lists unaffected", r.status == 200, str(r.status))
        api.set_watch_mode("expired")
        got = []
        r = cli.get("/api/v1/namespaces/ra/pods?watch=1&resourceVersion=%d" % cur, on_line=got.append)
        check("watch mode expired: 200, one ERROR 410 event at a current RV, end of stream",
              r.status == 200 and r.complete and [e["type"] for e in got] == ["ERROR"] and
              got[0]["object"]["code"] == 410, "%s %s %s" % (r.status, r.error, got))
        api.set_watch_mode("bookmark-end")
        got = []
        r = cli.get("/api/v1/namespaces/ra/pods?watch=1&allowWatchBookmarks=true&resourceVersion=%d" % cur,
                    on_line=got.append)
        check("watch mode bookmark-end: 200, one BOOKMARK at the current RV, end of stream at once",
              r.status == 200 and r.complete and [e["type"] for e in got] == ["BOOKMARK"] and
              got[0]["object"]["metadata"]["resourceVersion"] == str(api.rv), "%s %s %s" % (r.status, r.error, got))
        check("request log records the watch mode",
              [x["watch_mode"] for x in api.requests()[-4:]] == ["gone", None, "expired", "bookmark-end"],
              str([x["watch_mode"] for x in api.requests()[-4:]]))
        api.set_watch_mode(None)
        api.add_pod("ra", "fnpod", "10.42.6.1", fn=lambda p: p["metadata"].update({"annotations": {"x": "y"}}))
        check("add_pod fn changes the stored object", api.pod("ra", "fnpod")["metadata"]["annotations"] == {"x": "y"},
              str(api.pod("ra", "fnpod")["metadata"].get("annotations")))

        # --- failures, pause, request log
        api.fail_next(2, 503)
        api.fail_next(1, 429)
        codes = [cli.get("/api/v1/pods?limit=1").status for _ in range(4)]
        check("fail_next: 503, 503, 429, then 200", codes == [503, 503, 429, 200], str(codes))
        r429 = api.requests(lambda x: x["status"] == 429)
        check("request log holds status and decoded query", r429 and r429[-1]["query"] == {"limit": "1"},
              str(r429[-1:]))
        api.fail_next(1, 429)
        r = cli.get("/api/v1/pods")
        check("429 has Retry-After and a Status TooManyRequests", r.headers.get("retry-after") == "1" and
              json.loads(r.body)["reason"] == "TooManyRequests", str(r.headers))
        api.pause()
        out = []
        th = threading.Thread(target=lambda: out.append(cli.get("/api/v1/namespaces/rb/pods")))
        th.start()
        waiting = api.wait_request(lambda x: x["ns"] == "rb", since=api.mark() - 1, answered=False, timeout=5)
        api.add_pod("rb", "late", "10.42.1.50")
        held = api.wait_request(lambda x: x["ns"] == "rb", since=waiting["i"] if waiting else 0,
                                answered=True, timeout=0.3)
        check("pause holds requests", waiting and held is None and not out, str(out))
        api.resume()
        th.join(timeout=5)
        names = [p["metadata"]["name"] for p in json.loads(out[0].body)["items"]] if out else []
        check("a paused request is answered after resume with the state at resume", waiting and "late" in names,
              str(names))
        api.set_tokens("tok-2")
        r = cli.get("/api/v1/pods")
        check("set_tokens: the old token is refused", r.status == 401, str(r.status))
        api.set_cert(other_srv["cert"], other_srv["key"])
        t0 = len(api.tls_log)
        m0 = api.mark()
        try:
            cli.get("/api/v1/pods")
            check("set_cert: a client trusting the first CA refuses the new cert", False, "accepted")
        except ssl.SSLError:
            check("set_cert: a client trusting the first CA refuses the new cert", True)
        bad = api.wait_request(lambda x: True, since=m0, timeout=0.2)
        check("tls_log records the refused handshake and no request", bad is None and
              harness_wait(lambda: api.tls_failures(t0), 3), str(api.tls_log[t0:]))
        # big list, gzip when asked
        api.set_cert(pki["cert"], pki["key"])
        api.set_tokens("tok-1")
        api.add_pods([("big", "b%04d" % i, "10.44.%d.%d" % (i // 250, i % 250 + 1), {}) for i in range(200)])
        s = cli.connect()
        s.sendall(b"GET /api/v1/namespaces/big/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-1\r\n"
                  b"Accept-Encoding: gzip\r\nConnection: close\r\n\r\n")
        data = b""
        s.settimeout(10)
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
        check("a big list is gzip-compressed when the client asks", b"Content-Encoding: gzip" in data, data[:300])
    finally:
        if api is not None:
            api.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (results["ok"], results["fail"]), flush=True)
    return 1 if results["fail"] else 0


def harness_wait(fn, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        # like every scenario: in a private network namespace with only lo
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import harness  # noqa: E402
        harness._enter_netns()
        harness._setup_lo([], [])
        sys.exit(_selftest())
    print("usage: kubeapi.py --selftest   (as a module: KubeAPI, make_pki, pod_object)", file=sys.stderr)
    sys.exit(2)
