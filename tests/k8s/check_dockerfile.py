#!/usr/bin/python3
"""check_dockerfile.py - the Dockerfile agrees with what meson builds (a TAP producer).

No container engine runs here, so the image is never built by the tests. What can drift is
checked instead, against the configured meson build folder and the real binaries:

  1. FKS_PROGRAMS (the binaries the image ships) is exactly the set of executables meson
     installs (meson introspect --targets).
  2. Every program a Kubernetes manifest runs (args[0] of a container of image "fks") is in
     FKS_PROGRAMS.
  3. The runtime stage installs exactly the Debian packages that hold the shared libraries the
     built programs link (readelf NEEDED -> ldconfig -> dpkg -S), besides libc6 (in the base
     image) and ca-certificates (HTTPS to exchanges and market data).
  4. The build stage installs exactly the -dev packages of meson's dependencies
     (meson introspect --dependencies and find_library() in meson.build files -> dpkg -S)
     plus the toolchain (meson, ninja-build, pkg-config, gcc, libc6-dev).
  5. The files it copies from the source tree exist and .dockerignore lets them through.

usage: check_dockerfile.py --build-dir DIR --source-dir DIR RENDERED.yaml...
"""
import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys

import yaml

BASE_IMAGE_PACKAGES = {"libc6"}           # in debian:12-slim already
RUNTIME_EXTRAS = {"ca-certificates"}      # not a linked library, needed all the same
TOOLCHAIN = {"meson", "ninja-build", "pkg-config", "gcc", "libc6-dev"}

results = []


def report(ok, what, problems=()):
    results.append((ok, what, list(problems)))


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def parse_dockerfile(path):
    """Stages as lists of logical lines (continuations joined), and ARG defaults."""
    text = open(path, encoding="utf-8").read()
    logical, cur = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        logical.append((cur + line).strip())
        cur = ""
    stages, args = [], {}
    for line in logical:
        word = line.split(None, 1)[0].upper()
        if word == "FROM":
            stages.append([])
        elif word == "ARG":
            m = re.match(r'ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$', line)
            if m:
                args[m.group(1)] = " ".join(shlex.split(m.group(2)))
        if stages:
            stages[-1].append(line)
    return stages, args


def apt_packages(stage):
    pkgs = set()
    for line in stage:
        if not line.upper().startswith("RUN "):
            continue
        for cmd in re.split(r"&&|;", line[4:]):
            words = shlex.split(cmd)
            words = [w for w in words if "=" not in w or w.startswith("-")]   # env assignments
            if "apt-get" in words and "install" in words:
                after = words[words.index("install") + 1:]
                pkgs.update(w for w in after if not w.startswith("-"))
    return pkgs


_owners = {}


def _candidates(path):
    path = os.path.normpath(path)
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        cands.append(p[4:] if p.startswith("/usr/") else "/usr" + p)     # merged /usr
    return cands


def dpkg_prefetch(paths):
    """One `dpkg -S` for many paths (each call reads dpkg's whole database)."""
    want = sorted({c for p in paths for c in _candidates(p)} - set(_owners))
    if not want:
        return
    r = subprocess.run(["dpkg", "-S"] + want, capture_output=True, text=True)
    for line in r.stdout.splitlines():
        pkgs, _, files = line.partition(": ")
        for f in files.split(", "):
            _owners[f.strip()] = pkgs.split(",")[0].strip()
    for c in want:
        _owners.setdefault(c, None)


def dpkg_owner(path):
    dpkg_prefetch([path])
    for c in _candidates(path):
        if _owners.get(c):
            return _owners[c]
    return None


def ldconfig_map():
    libs = {}
    for line in run(["ldconfig", "-p"]).splitlines()[1:]:
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and "x86-64" in m.group(2) or (m and "x86_64" in m.group(3)):
            libs.setdefault(m.group(1), m.group(3))
    return libs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("rendered", nargs="+")
    a = ap.parse_args()

    stages, dargs = parse_dockerfile(os.path.join(a.source_dir, "Dockerfile"))
    if len(stages) < 2:
        print("not ok 1 - Dockerfile has a build and a runtime stage\n1..1")
        return 1
    build_pkgs, runtime_pkgs = apt_packages(stages[0]), apt_packages(stages[-1])
    shipped = set(dargs.get("FKS_PROGRAMS", "").split())

    targets = json.loads(run(["meson", "introspect", "--targets", a.build_dir]))
    installed = {t["name"]: t["filename"][0] for t in targets
                 if t["type"] == "executable" and t.get("installed")}

    # 1. programs
    problems = [f"meson installs {p}, the Dockerfile does not ship it" for p in sorted(set(installed) - shipped)]
    problems += [f"the Dockerfile ships {p}, which meson does not build" for p in sorted(shipped - set(installed))]
    if not shipped:
        problems.append("no ARG FKS_PROGRAMS in the Dockerfile")
    report(not problems, "Dockerfile FKS_PROGRAMS equals meson's installed executables", problems)

    # 2. programs the manifests run
    problems, used = [], set()
    for path in a.rendered:
        for doc in yaml.safe_load_all(open(path, encoding="utf-8")):
            if not doc or doc.get("kind") not in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
                continue
            spec = doc["spec"]["template"]["spec"]
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                if not re.match(r"^(.*/)?fks([:@].*)?$", c.get("image", "")):
                    continue
                argv = c.get("command") or c.get("args") or []
                prog = argv[0] if argv else None
                used.add(prog)
                if prog not in shipped:
                    problems.append(f"{os.path.basename(path)}: {doc['kind']}/{doc['metadata']['name']} runs {prog}, "
                                    "which the image does not ship")
    if not used:
        problems.append("no manifest runs an FKS program (wrong files?)")
    report(not problems, f"every program the manifests run is in the image ({', '.join(sorted(p for p in used if p))})",
           problems)

    # 3. runtime libraries
    libs = ldconfig_map()
    need, problems = set(), []
    needed = {}
    for name, path in installed.items():
        if os.path.exists(path):
            needed[name] = [m.group(1) for m in (re.search(r"\(NEEDED\)\s+Shared library: \[(.+)\]", l)
                                                 for l in run(["readelf", "-d", path]).splitlines()) if m]
    dpkg_prefetch([libs[l] for ls in needed.values() for l in ls if l in libs])
    for name, path in sorted(installed.items()):
        if not os.path.exists(path):
            problems.append(f"{path} is not built (run ninja first)")
            continue
        for lib in needed[name]:
            if lib.startswith("ld-linux"):
                continue
            owner = dpkg_owner(libs[lib]) if lib in libs else None
            if not owner:
                problems.append(f"{name}: cannot tell which package holds {lib}")
            else:
                need.add(owner.split(":")[0])
    need -= BASE_IMAGE_PACKAGES
    have = runtime_pkgs - RUNTIME_EXTRAS
    problems += [f"runtime stage lacks {p} (linked by the programs)" for p in sorted(need - have)]
    problems += [f"runtime stage installs {p}, which no program links" for p in sorted(have - need)]
    problems += [f"runtime stage lacks {p}" for p in sorted(RUNTIME_EXTRAS - runtime_pkgs)]
    report(not problems, f"runtime packages are exactly the linked libraries' ({' '.join(sorted(need))})", problems)

    # 4. build dependencies
    problems, dev = [], set()
    deps = json.loads(run(["meson", "introspect", "--dependencies", a.build_dir]))
    dpkg_prefetch([x for d in deps for x in d.get("link_args", []) if x.startswith("/") and ".so" in x])
    for d in deps:
        files = [x for x in d.get("link_args", []) if x.startswith("/") and ".so" in x]
        if not files:
            continue                 # threads, and other flags-only dependencies
        for f in files:
            owner = dpkg_owner(f)
            if owner:
                dev.add(owner.split(":")[0])
            else:
                problems.append(f"dependency {d['name']}: no package holds {f}")
    for root, _, names in os.walk(a.source_dir):
        if "/build" in root or "/." in root or "node_modules" in root:
            continue
        if "meson.build" in names:
            text = open(os.path.join(root, "meson.build"), encoding="utf-8").read()
            for lib in re.findall(r"find_library\(\s*'([A-Za-z0-9_+-]+)'", text):
                # the linker's choice: libX.so, else libX.a (glibc 2.34+ ships libdl.a only)
                path = next((os.path.join(d, f"lib{lib}{ext}") for ext in (".so", ".a")
                             for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib")
                             if os.path.exists(os.path.join(d, f"lib{lib}{ext}"))), None)
                owner = dpkg_owner(path) if path else None
                if owner:
                    dev.add(owner.split(":")[0])
                else:
                    problems.append(f"find_library('{lib}'): no package holds lib{lib}.so or .a")
    want = dev | TOOLCHAIN
    problems += [f"build stage lacks {p} (meson needs it)" for p in sorted(want - build_pkgs)]
    problems += [f"build stage installs {p}, which meson does not use" for p in sorted(build_pkgs - want)]
    report(not problems, f"build packages are exactly meson's dependencies' ({' '.join(sorted(dev))}) and the toolchain",
           problems)

    # 5. what the Dockerfile copies from the source tree exists and is not .dockerignore'd
    problems, copied = [], []
    ignore_path = os.path.join(a.source_dir, ".dockerignore")
    ignores = [l.strip().rstrip("/") for l in open(ignore_path, encoding="utf-8")
               if l.strip() and not l.startswith("#")] if os.path.exists(ignore_path) else []
    for stage in stages:
        for line in stage:
            words = shlex.split(line)
            if words[0].upper() != "COPY" or any(w.startswith("--from") for w in words):
                continue
            for srcpath in [w for w in words[1:-1] if not w.startswith("--")]:
                if srcpath == ".":
                    continue
                copied.append(srcpath)
                full = os.path.join(a.source_dir, srcpath.rstrip("/"))
                if not os.path.exists(full):
                    problems.append(f"COPY {srcpath}: no such file in the source tree")
                if any(fnmatch.fnmatch(srcpath.rstrip("/"), pat) or srcpath.startswith(pat + "/") for pat in ignores):
                    problems.append(f"COPY {srcpath}: excluded by .dockerignore")
    for pat in ("meson.build", "schemas/migrations", "tools/data/model.txt"):
        if any(fnmatch.fnmatch(pat, i) for i in ignores):
            problems.append(f".dockerignore excludes {pat}, which the build needs")
    report(not problems, f"the files the Dockerfile copies exist and reach the build ({' '.join(copied)})", problems)

    failed = 0
    for i, (ok, what, probs) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {what}")
        for p in probs:
            for line in str(p).splitlines() or [""]:
                print(f"# {line}")
        failed += not ok
    print(f"1..{len(results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
