"""Checks of the root Containerfile, without a container engine.

No Docker or Podman runs in CI, so the image recipe is checked against what
it must agree with:
  - its build stage runs the meson commands of `./dev build` (parsed from ./dev);
  - it installs the Debian packages that hold the pkg-config files of
    meson.build's dependencies, and nothing CI does not install itself;
  - its build stage's steps, run in a scratch directory holding only what the
    Containerfile COPYs, build and install a working binary (so the COPY list
    is complete);
  - its runtime stage installs exactly the packages that hold the libraries
    that binary loads (ldd, then dpkg -S), plus ca-certificates, minus what
    debian:12-slim already has — and no compiler or -dev package;
  - its user, entrypoint, command and ports agree with the Helm chart.
"""

import os
import re
import shlex
import shutil
import subprocess
import tempfile

BASE_IMAGE = "debian:12-slim"
# In debian:12-slim already (dependencies of its Essential packages).
BASE_PACKAGES = {"libc6", "libgcc-s1"}
RUNTIME_EXTRA = {"ca-certificates"}
BUILD_TOOLS = {"build-essential", "meson", "ninja-build", "pkg-config"}


def parse(path):
    """The Containerfile as stages: [{'from': image, 'name': n, 'ins': [(INSTR, args)]}]."""
    with open(path) as fh:
        text = fh.read()
    lines, cur = [], ""
    for raw in text.splitlines():
        if not cur and raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            cur += raw.rstrip()[:-1] + " "
            continue
        cur += raw
        if cur.strip():
            lines.append(cur.strip())
        cur = ""
    args, stages = {}, []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k] = v
            continue
        rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
        if instr == "FROM":
            parts = rest.split()
            stages.append({"from": parts[0], "name": parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None,
                           "ins": []})
        else:
            stages[-1]["ins"].append((instr, rest))
    return stages


def commands(stage):
    """Every shell command of the stage's RUN lines, split on &&."""
    out = []
    for instr, rest in stage["ins"]:
        if instr == "RUN" and not rest.startswith("["):
            out += [" ".join(c.split()) for c in rest.split("&&")]
    return out


def apt_packages(stage):
    pkgs = set()
    for c in commands(stage):
        words = shlex.split(c)
        if "apt-get" in words and "install" in words:
            pkgs |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return pkgs


def dev_build_commands(dev):
    """The commands of ./dev's build_release(), without its quiet/idempotence wrappers."""
    with open(dev) as fh:
        text = fh.read()
    m = re.search(r"^build_release\(\) \{\n(.*?)^\}", text, re.S | re.M)
    if not m:
        return None
    out = []
    for line in m.group(1).splitlines():
        line = line.strip()
        line = re.sub(r"^\[[^]]*\]\s*\|\|\s*", "", line)
        line = re.sub(r"^quiet\s+", "", line)
        if line:
            out.append(" ".join(line.split()))
    return out


def dev_packages(dev):
    with open(dev) as fh:
        m = re.search(r'^PKGS="([^"]*)"', fh.read(), re.M)
    return set(m.group(1).split()) if m else set()


def meson_pc_dependencies(meson_build):
    """pkg-config names of meson.build's dependency() calls, less tests-only ones and threads."""
    with open(meson_build) as fh:
        text = fh.read()
    out = []
    for m in re.finditer(r"dependency\(\s*'([^']+)'([^)]*)\)", text):
        name, rest = m.group(1), m.group(2)
        if name == "threads" or "get_option('tests'" in rest:
            continue
        out.append(name)
    return out


def dpkg_owner(path):
    """The Debian package that ships a file, trying the /lib <-> /usr/lib spellings (usrmerge)."""
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        if p.startswith("/usr/lib/"):
            cands.append(p[len("/usr"):])
        elif p.startswith("/lib"):
            cands.append("/usr" + p)
    for p in cands:
        r = subprocess.run(["dpkg", "-S", p], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if r.returncode == 0:
            line = r.stdout.splitlines()[0]
            return line.split(":")[0].split(",")[0].strip()
    return None


def ldd_libraries(binary):
    r = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    libs = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+) \(", line)
        if m:
            libs.append(m.group(2))
        elif "ld-linux" in line:
            libs.append(line.split()[0])
        elif "not found" in line:
            libs.append("NOT FOUND: " + line.strip())
    return r.returncode, libs


def run(args, t, check, Failure):
    path = os.path.join(args.srcdir, "Containerfile")
    dev = os.path.join(args.srcdir, "dev")
    state = {}

    def parsed():
        stages = parse(path)
        check(len(stages) == 2, f"expected a build stage and a runtime stage, found {len(stages)}")
        for s in stages:
            check(s["from"] == BASE_IMAGE, f"stage FROM {s['from']}, expected {BASE_IMAGE}")
        check(stages[0]["name"], "the build stage has no name")
        state["stages"] = stages
    t.case("Containerfile: two debian:12-slim stages, a named build stage and the runtime", parsed)
    stages = state.get("stages")
    if not stages:
        return
    build, runtime = stages

    def same_commands():
        want = dev_build_commands(dev)
        check(want, "./dev has no build_release() to compare with")
        got = commands(build)
        for c in want:
            check(c in got, f"the build stage does not run `{c}` (./dev build does); it runs:\n" + "\n".join(got))
    t.case("Containerfile: the build stage runs ./dev build's meson and ninja commands", same_commands)

    def build_packages():
        pkgs = apt_packages(build)
        missing_tools = BUILD_TOOLS - pkgs
        check(not missing_tools, f"build stage lacks {sorted(missing_tools)}")
        for dep in meson_pc_dependencies(os.path.join(args.srcdir, "meson.build")):
            r = subprocess.run(["pkg-config", "--variable", "pcfiledir", dep], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
            check(r.returncode == 0, f"pkg-config does not know {dep} (install the build dependencies)")
            owner = dpkg_owner(os.path.join(r.stdout.strip(), f"{dep}.pc"))
            check(owner, f"no Debian package ships {dep}.pc")
            check(owner in pkgs, f"meson.build needs {dep} ({owner}), the build stage does not install it")
        extra = pkgs - dev_packages(dev)
        check(not extra, f"the build stage installs {sorted(extra)}, which ./dev (and so CI) does not")
    t.case("Containerfile: the build stage installs meson.build's dependencies, all of them in ./dev's list",
           build_packages)

    def scratch_build():
        tmp = tempfile.mkdtemp(prefix="portcullis-image-", dir=args.workdir)
        state["tmp"] = tmp
        src, out = os.path.join(tmp, "src"), os.path.join(tmp, "out")
        os.makedirs(src)
        workdir = None
        for instr, rest in build["ins"]:
            if instr == "WORKDIR":
                workdir = rest
            elif instr == "COPY":
                parts = rest.split()
                check(not parts[0].startswith("--"), f"unexpected COPY flags in the build stage: {rest}")
                srcs, dest = parts[:-1], parts[-1]
                check(not os.path.isabs(dest), f"COPY destination {dest} is not relative to WORKDIR")
                for s in srcs:
                    spath = os.path.join(args.srcdir, s)
                    check(os.path.exists(spath), f"COPY source {s} does not exist")
                    if os.path.isdir(spath):
                        # Docker copies a directory's contents into the destination.
                        shutil.copytree(spath, os.path.join(src, dest), dirs_exist_ok=True)
                    else:
                        check(dest.endswith("/") or len(srcs) == 1, f"COPY {rest}: several files need a directory")
                        target = os.path.join(src, dest, os.path.basename(s)) if dest.endswith("/") else \
                            os.path.join(src, dest)
                        os.makedirs(os.path.dirname(target), exist_ok=True)
                        shutil.copy(spath, target)
        check(workdir == "/src", f"WORKDIR is {workdir}")
        for instr, rest in build["ins"]:
            if instr != "RUN" or "apt-get" in rest:
                continue
            cmd = rest.replace("/out", out)
            r = subprocess.run(["/bin/sh", "-c", cmd], cwd=src, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=1200)
            check(r.returncode == 0, f"`{cmd}` failed in a copy holding only the COPYed files:\n{r.stdout[-4000:]}")
        copy_from = [rest for instr, rest in runtime["ins"] if instr == "COPY" and rest.startswith("--from=")]
        check(len(copy_from) == 1, "the runtime stage should COPY exactly one thing from the build stage")
        frm, srcpath, dest = copy_from[0].split()
        check(frm == f"--from={build['name']}", f"COPY {frm}")
        check(srcpath.startswith("/out/"), f"COPY source {srcpath} is not under the install destdir /out")
        binary = os.path.join(out, srcpath[len("/out/"):])
        check(os.access(binary, os.X_OK), f"{srcpath} was not installed by the build stage")
        state["binary"], state["dest"] = binary, dest
    t.case("Containerfile: the build stage's steps build and install portcullis from the COPYed files alone",
           scratch_build)

    def runtime_packages():
        check("binary" in state, "no binary (the scratch build failed)")
        rc, libs = ldd_libraries(state["binary"])
        check(rc == 0, f"ldd failed on {state['binary']}")
        need, unknown = set(), []
        for lib in libs:
            check(not lib.startswith("NOT FOUND"), lib)
            owner = dpkg_owner(lib)
            if owner is None:
                unknown.append(lib)
            else:
                need.add(owner)
        check(not unknown, f"no Debian package ships {unknown}")
        pkgs = apt_packages(runtime)
        want = (need - BASE_PACKAGES) | RUNTIME_EXTRA
        check(pkgs == want, f"the runtime stage installs {sorted(pkgs)}; the binary's libraries need "
                            f"{sorted(need)} (of which {sorted(BASE_PACKAGES & need)} are in {BASE_IMAGE}), "
                            f"so it should install {sorted(want)}")
        bad = {p for p in pkgs if p.endswith("-dev") or p in BUILD_TOOLS or p in ("gcc", "clang", "make")}
        check(not bad, f"build tools in the runtime stage: {sorted(bad)}")
    t.case("Containerfile: the runtime stage installs exactly the packages of the binary's libraries (ldd, dpkg -S)",
           runtime_packages)
    if "tmp" in state:
        shutil.rmtree(state["tmp"], ignore_errors=True)

    def agrees_with_chart():
        ins = dict((i, r) for i, r in runtime["ins"] if i in ("USER", "ENTRYPOINT", "CMD", "EXPOSE"))
        check(ins.get("USER") == "65532:65532", f"USER {ins.get('USER')}")
        check(ins.get("ENTRYPOINT") == '["/usr/local/bin/portcullis"]', f"ENTRYPOINT {ins.get('ENTRYPOINT')}")
        check(state.get("dest") in (None, "/usr/local/bin/portcullis"), f"binary copied to {state.get('dest')}")
        check(ins.get("CMD") == '["-c", "/etc/portcullis/policy.yaml"]', f"CMD {ins.get('CMD')}")
        check(set(ins.get("EXPOSE", "").split()) == {"3128", "9090"}, f"EXPOSE {ins.get('EXPOSE')}")
        p = subprocess.run([args.renderer, "--chart", args.chart, "-f",
                            os.path.join(args.here, "values", "defaults.yaml")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        check(p.returncode == 0, p.stderr)
        import yaml
        dep = [d for d in yaml.safe_load_all(p.stdout) if d and d["kind"] == "Deployment"][0]
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        check(pod["securityContext"]["runAsUser"] == 65532 and c["securityContext"]["runAsUser"] == 65532,
              "the chart's runAsUser differs from the image's USER")
        check(c["args"] == ["-c", "/etc/portcullis/policy.yaml"] and "command" not in c,
              "the chart's args differ from the image's CMD, or it overrides the ENTRYPOINT")
        check({p["containerPort"] for p in c["ports"]} == {3128, 9090}, "the chart's default ports differ from EXPOSE")
    t.case("Containerfile: user 65532, entrypoint, command and ports agree with the chart", agrees_with_chart)
