#!/usr/bin/python3
"""The examples the documentation shows work as shown, and its links resolve.

    check_doc_examples.py --portcullis BIN --renderer HELM_RENDER --srcdir DIR --workdir DIR

- README.md's ten-line policy passes `portcullis --check --strict`.
- README.md's five-minute Kubernetes values and docs/examples/portcullis-gitlab.yaml
  render with the chart (schema and template checks included), and the policy the
  chart renders from them passes `portcullis --check --strict`.
- The GitLab runner values (docs/examples/gitlab-runner-*.yaml) agree with the
  gateway's values: their runners.config is valid TOML, points HTTPS_PROXY and
  HTTP_PROXY (both spellings) at the gateway's Service IP, keeps the Kubernetes API
  and in-cluster names in NO_PROXY, runs jobs in a namespace the gateway treats as a
  runner namespace mapped to a tier, never lets a job pick its namespace or run
  privileged, and labels pods with exactly the keys the gateway copies into audit
  records. The trusted runner's tier is not the untrusted runner's.
- The ARC values parse and send the runner pods through the same gateway.
- Every relative link and #anchor in README.md, docs/*.md and bench/README.md
  points at a file and a heading that exist.
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import tomllib

import yaml

ap = argparse.ArgumentParser()
ap.add_argument("--portcullis", required=True)
ap.add_argument("--renderer", required=True)
ap.add_argument("--srcdir", required=True)
ap.add_argument("--workdir", required=True)
args = ap.parse_args()
os.makedirs(args.workdir, exist_ok=True)
SRC = args.srcdir
results = []


def case(name, problems):
    results.append(not problems)
    if problems:
        print("not ok - %s: %s" % (name, "; ".join(problems)), flush=True)
    else:
        print("ok - %s" % name, flush=True)


def read(rel):
    with open(os.path.join(SRC, rel)) as f:
        return f.read()


def check_policy(path):
    p = subprocess.run([args.portcullis, "--check", path, "--strict"], capture_output=True, text=True,
                       timeout=60)
    return [] if p.returncode == 0 else ["--check --strict exited %d: %s" % (p.returncode,
                                                                           (p.stdout + p.stderr).strip())]


def render_policy(values_path, tag):
    """Render the chart with these values; returns (problems, policy path)."""
    p = subprocess.run([args.renderer, "--chart", os.path.join(SRC, "helm/portcullis"), "--name", "portcullis",
                        "--namespace", "egress", "-f", values_path], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return ["the chart refuses the values: %s" % p.stderr.strip()[-600:]], None
    for obj in yaml.safe_load_all(p.stdout):
        if obj and obj.get("kind") == "ConfigMap" and "policy.yaml" in obj.get("data", {}):
            out = os.path.join(args.workdir, tag + "-policy.yaml")
            with open(out, "w") as f:
                f.write(obj["data"]["policy.yaml"])
            return [], out
    return ["no policy ConfigMap in the rendered chart"], None


readme = read("README.md")
yaml_blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)

# README: the ten-line policy.
probs = []
policy_block = next((b for b in yaml_blocks if b.lstrip().startswith("version: 1")), None)
if policy_block is None:
    probs.append("no ```yaml block starting with `version: 1` in README.md")
else:
    n = len(policy_block.rstrip("\n").splitlines())
    if n > 12:
        probs.append("the short policy has %d lines" % n)
    path = os.path.join(args.workdir, "readme-policy.yaml")
    with open(path, "w") as f:
        f.write(policy_block)
    probs += check_policy(path)
case("README.md: the ten-line policy passes --check --strict", probs)

# README: the five-minute Kubernetes values.
probs = []
values_block = next((textwrap.dedent(b) for b in yaml_blocks if "runnerNamespaces" in b), None)
if values_block is None:
    probs.append("no values block with runnerNamespaces in README.md")
else:
    path = os.path.join(args.workdir, "readme-values.yaml")
    with open(path, "w") as f:
        f.write(values_block)
    probs, pol = render_policy(path, "readme")
    if pol:
        probs += check_policy(pol)
case("README.md: the Kubernetes values render and their policy passes --check --strict", probs)

# docs/examples/portcullis-gitlab.yaml
gw_path = os.path.join(SRC, "docs/examples/portcullis-gitlab.yaml")
probs, pol = render_policy(gw_path, "gitlab")
if pol:
    probs += check_policy(pol)
case("docs/examples/portcullis-gitlab.yaml renders and its policy passes --check --strict", probs)

with open(gw_path) as f:
    gw = yaml.safe_load(f)
proxy_url = "http://%s:3128" % gw["service"]["clusterIP"]
runner_ns = {n["name"] for n in gw.get("runnerNamespaces", [])}
ns_tier = gw["kubernetesIdentity"]["namespaces"]
audit_labels = set(gw["kubernetesIdentity"]["auditLabels"])

# docs/examples/gitlab-runner-*.yaml
tiers_seen = {}
for kind in ("untrusted", "trusted"):
    rel = "docs/examples/gitlab-runner-%s.yaml" % kind
    probs = []
    try:
        values = yaml.safe_load(read(rel))
        conf = tomllib.loads(values["runners"]["config"])
        runner = conf["runners"][0]
        env = dict(e.split("=", 1) for e in runner.get("environment", []))
        kube = runner.get("kubernetes", {})
    except (KeyError, IndexError, ValueError, yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        case(rel + ": agrees with the gateway's values", ["unreadable: %s" % e])
        continue
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        if env.get(var) != proxy_url:
            probs.append("%s is %r, not the gateway %s" % (var, env.get(var), proxy_url))
    for var in ("NO_PROXY", "no_proxy"):
        entries = env.get(var, "").split(",")
        for need in ("localhost", "127.0.0.1", ".svc", ".cluster.local", "kubernetes.default.svc"):
            if need not in entries:
                probs.append("%s lacks %s" % (var, need))
        if any("gitlab" in e for e in entries):
            probs.append("%s names the GitLab host: job clones would go around the gateway" % var)
    ns = kube.get("namespace")
    if ns not in runner_ns:
        probs.append("job namespace %r is not a runnerNamespace of the gateway" % ns)
    if ns not in ns_tier:
        probs.append("job namespace %r maps to no tier" % ns)
    tiers_seen[kind] = ns_tier.get(ns)
    if kube.get("namespace_overwrite_allowed", "") != "":
        probs.append("namespace_overwrite_allowed is set")
    if kube.get("privileged", False):
        probs.append("jobs run privileged")
    if "pod_labels_overwrite_allowed" in kube:
        probs.append("jobs may overwrite pod labels")
    labels = set(kube.get("pod_labels", {}))
    if labels != audit_labels:
        probs.append("pod labels %s differ from the gateway's auditLabels %s" % (sorted(labels),
                                                                                 sorted(audit_labels)))
    case(rel + ": agrees with the gateway's values", probs)
case("the trusted and untrusted runners land in different tiers",
     [] if tiers_seen.get("trusted") and tiers_seen.get("trusted") != tiers_seen.get("untrusted")
     else ["tiers: %s" % tiers_seen])

# docs/examples/arc-runner-scale-set.yaml
probs = []
try:
    arc = yaml.safe_load(read("docs/examples/arc-runner-scale-set.yaml"))
    for k in ("http", "https"):
        if arc["proxy"][k]["url"] != proxy_url:
            probs.append("proxy.%s.url is %r, not %s" % (k, arc["proxy"][k]["url"], proxy_url))
    for need in ("localhost", ".svc", ".cluster.local"):
        if need not in arc["proxy"]["noProxy"]:
            probs.append("noProxy lacks %s" % need)
except (KeyError, TypeError, yaml.YAMLError) as e:
    probs.append("unreadable: %s" % e)
case("docs/examples/arc-runner-scale-set.yaml sends runner pods through the gateway", probs)


# Links and anchors (GitHub's heading slugs: lower case, punctuation dropped, spaces to
# hyphens, -1, -2 ... for repeats).
def anchors(path):
    seen, out, fence = {}, set(), False
    with open(path) as f:
        for ln in f:
            if ln.startswith("```"):
                fence = not fence
                continue
            m = None if fence else re.match(r"^#{1,6} (.*)", ln)
            if m:
                s = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
                n = seen.get(s, 0)
                out.add(s if n == 0 else "%s-%d" % (s, n))
                seen[s] = n + 1
    return out


probs = []
docs = [os.path.join(SRC, "README.md"), os.path.join(SRC, "bench/README.md")] + \
    sorted(glob.glob(os.path.join(SRC, "docs", "*.md")))
for doc in docs:
    with open(doc) as f:
        text = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    for m in re.finditer(r"\]\(([^)\s]+)\)", text):
        link = m.group(1)
        if re.match(r"^[a-z]+:", link):
            continue
        path, _, frag = link.partition("#")
        target = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
        rel = os.path.relpath(doc, SRC)
        if not os.path.exists(target):
            probs.append("%s: %s does not exist" % (rel, link))
        elif frag and target.endswith(".md") and frag not in anchors(target):
            probs.append("%s: no heading for #%s in %s" % (rel, frag, os.path.relpath(target, SRC)))
case("every relative link and anchor in README.md, docs/ and bench/README.md resolves", probs)

passed = sum(results)
print("%d passed, %d failed" % (passed, len(results) - passed))
sys.exit(0 if results and all(results) else 1)
