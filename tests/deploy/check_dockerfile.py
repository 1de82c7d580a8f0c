#!/usr/bin/env python3
"""The Dockerfile cannot be built here (no container engine); this keeps it
consistent with the repository: it copies every source folder the top-level
CMakeLists.txt adds, installs the build packages with tools/setup.sh, runs as
the same non-root user as the Kubernetes pods, exposes the ports of its own
FLAGS_listen/FLAGS_metrics_listen, carries the default model at its
FLAGS_model_dir, and reads only real server flags from the environment.

usage: check_dockerfile.py MTLA_SERVER
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import REPO, check, need_yaml  # noqa: E402

need_yaml()
import yaml  # noqa: E402

server_bin = sys.argv[1]
text = open(os.path.join(REPO, "Dockerfile")).read()
# Join continuation lines.
lines = re.sub(r"\\\n", " ", text).splitlines()
instructions = [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]

froms = [l for l in instructions if l.startswith("FROM ")]
check(len(froms) == 2 and all("nvidia/cuda:" in l for l in froms) and "-devel-" in froms[0]
      and "-runtime-" in froms[1], "two stages on NVIDIA CUDA images (devel -> runtime)")

subdirs = re.findall(r"^add_subdirectory\((\w+)\)", open(os.path.join(REPO, "CMakeLists.txt")).read(), re.M)
copied = set()
for l in instructions:
    m = re.match(r"COPY (?!--from)(.+) (\S+)$", l)
    if m:
        copied |= set(m.group(1).split())
check(set(subdirs) <= copied and "CMakeLists.txt" in copied,
      f"build stage copies every add_subdirectory folder {subdirs} (missing {set(subdirs) - copied})")
check(any(l.startswith("RUN ") and "tools/setup.sh" in l for l in instructions),
      "build stage installs packages with tools/setup.sh")

users = [l.split()[1] for l in instructions if l.startswith("USER ")]
deployment = yaml.safe_load(open(os.path.join(REPO, "deploy", "k8s", "base", "deployment.yaml")))
pod_sc = deployment["spec"]["template"]["spec"]["securityContext"]
check(users and users[-1] == f"{pod_sc['runAsUser']}:{pod_sc['runAsGroup']}",
      f"image runs as {users[-1] if users else None}, the pods' runAsUser:runAsGroup")

env = {}
for l in instructions:
    if l.startswith("ENV "):
        for k, v in re.findall(r"(\w+)=(\S+)", l):
            env[k] = v
exposed = {int(p) for l in instructions if l.startswith("EXPOSE ") for p in l.split()[1:]}
ports = {int(env["FLAGS_listen"].rsplit(":", 1)[1]), int(env["FLAGS_metrics_listen"].rsplit(":", 1)[1])}
check(ports == exposed, f"EXPOSE {sorted(exposed)} == the FLAGS_listen/FLAGS_metrics_listen ports")

# The image carries the default model tools/run.sh serves, where FLAGS_model_dir points.
default_model = re.search(r"^model=(\S+)$", open(os.path.join(REPO, "tools", "run.sh")).read(), re.M).group(1)
check(f"COPY {default_model} {env.get('FLAGS_model_dir')}" in instructions
      and os.path.isfile(os.path.join(REPO, default_model, "config.json")),
      f"runtime stage copies the default model {default_model} to FLAGS_model_dir")

entry = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])", text, re.M).group(1))
check(entry[0].endswith("/mtla-server"), "the server is the entrypoint")
names = next(a for a in entry if a.startswith("--tryfromenv=")).split("=", 1)[1].split(",")
help_text = subprocess.run([server_bin, "--helpfull"], capture_output=True, text=True, timeout=30)
flags = set(re.findall(r"^\s+--([a-z0-9_]+) \(", help_text.stdout + help_text.stderr, re.M))
check(set(names) <= flags, f"--tryfromenv names are server flags (unknown: {set(names) - flags})")
check({k[6:] for k in env if k.startswith("FLAGS_")} <= set(names), "every ENV FLAGS_ default is read")
main_flags = set(re.findall(r"ABSL_FLAG\(\s*[\w:<>]+\s*,\s*(\w+)\s*,",
                            open(os.path.join(REPO, "server", "main.cc")).read()))
check(main_flags and main_flags <= set(names),
      "every flag of server/main.cc can be set from the environment "
      f"(add {sorted(main_flags - set(names))} to the Dockerfile's --tryfromenv list)")
print("PASS")
