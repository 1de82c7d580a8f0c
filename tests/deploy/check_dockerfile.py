#!/usr/bin/env python3
"""The Dockerfile cannot be built here (no container engine); this keeps it
consistent with the repository and with the machines the tests run on: both
stages are the Debian release of this machine, the build stage copies every
source folder the top-level CMakeLists.txt adds and installs the build
packages with tools/setup.sh (no other Debian package by name), .dockerignore
keeps build trees and .git out of the context but sends everything the
Dockerfile COPYs, the image runs as the same non-root user as the Kubernetes
pods, exposes the ports of its own FLAGS_listen/FLAGS_metrics_listen, carries
the default model at its FLAGS_model_dir, reads only real server flags from
the environment, sets GOMP_SPINCOUNT=10000 (and no OMP_WAIT_POLICY), and its
HEALTHCHECK command,
run against a real server started the image's way (entrypoint script, image
environment), is healthy while it serves and unhealthy when it is gone.

usage: check_dockerfile.py MTLA_SERVER MTLA_CLIENT TESTDATA_DIR
"""
import fnmatch
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import REPO, Server, check, free_port, model_dir, need_yaml  # noqa: E402

need_yaml()
import yaml  # noqa: E402

server_bin, client_bin, testdata = sys.argv[1:4]
text = open(os.path.join(REPO, "Dockerfile")).read()
# Join continuation lines.
lines = re.sub(r"\\\n", " ", text).splitlines()
instructions = [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]

args = {}
for l in instructions:
    m = re.match(r"ARG (\w+)=(.*)$", l)
    if m:
        args[m.group(1)] = m.group(2).strip('"')
os_release = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', open("/etc/os-release").read(), re.M))
froms = [l for l in instructions if l.startswith("FROM ")]
check(froms == ["FROM debian:${DEBIAN_RELEASE} AS build", "FROM debian:${DEBIAN_RELEASE}-slim AS runtime"],
      f"two stages on Debian images (build -> slim runtime): {froms}")
check(os_release.get("ID") == "debian" and args.get("DEBIAN_RELEASE") == os_release.get("VERSION_CODENAME"),
      f"image release {args.get('DEBIAN_RELEASE')} == this machine's "
      f"{os_release.get('ID')} {os_release.get('VERSION_CODENAME')}")
check(args.get("CUDA_REPO") == f"debian{os_release.get('VERSION_ID')}",
      f"NVIDIA's CUDA repository for the same release ({args.get('CUDA_REPO')})")
# Debian packages come from tools/setup.sh (build) and the computed runtime
# list; by name the Dockerfile installs only what fetches NVIDIA's keyring and CUDA itself.
named = set()
for l in instructions:
    for m in re.finditer(r"apt-get install -y --no-install-recommends ((?:[\w.+${}-]+ ?)+)", l):
        named |= set(m.group(1).split())
check(all(p in ("ca-certificates", "curl") or p.startswith(("cuda-", "libcublas")) for p in named),
      f"no Debian package installed by name outside tools/setup.sh ({sorted(named)})")

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
check(entry[1].endswith("/mtla-server"), "the entrypoint runs the server")
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
# The plugins the server loads at run time are built, checked and shipped
# next to it (where their loaders look first), so ldd/dpkg -S finds their
# runtime packages (libsentencepiece0, CUDA's).
build_runs = " ".join(l for l in instructions if l.startswith("RUN ") and "cmake --build" in l)
copy_out = " ".join(l for l in instructions if l.startswith("RUN ") and "/out/bin/" in l)
for plugin in ("libmtla_cuda_backend.so", "libmtla_sentencepiece.so"):
    check(f"/build/bin/{plugin}" in build_runs and f"/build/bin/{plugin}" in copy_out,
          f"the image builds, checks and ships {plugin}")

# .dockerignore: build trees and version control stay out of the context,
# every path the Dockerfile COPYs from the context is sent.
ignore = [l.strip() for l in open(os.path.join(REPO, ".dockerignore")) if l.strip() and not l.startswith("#")]
check({"build*/", ".git"} <= set(ignore), f".dockerignore excludes build*/ and .git ({ignore})")


def ignored(path):
    parts = path.rstrip("/").split("/")
    for pattern in ignore:
        pat = pattern.rstrip("/")
        for i in range(1, len(parts) + 1):
            if fnmatch.fnmatch("/".join(parts[:i]), pat) or (pat.startswith("**/") and
                                                             fnmatch.fnmatch(parts[i - 1], pat[3:])):
                return True
    return False


sources = {src for l in instructions for src in
           (re.match(r"COPY (?!--from)(.+) (\S+)$", l).group(1).split() if re.match(r"COPY (?!--from)(.+) (\S+)$", l) else [])}
check(sources and not [p for p in sources if ignored(p)],
      f"no COPY source is excluded by .dockerignore ({sorted(p for p in sources if ignored(p))})")
check(ignored("build/bin/mtla-server") and ignored("build-asan/x") and ignored(".git/HEAD"),
      ".dockerignore matches build trees and .git")

# Shared cores: the image makes idle OpenMP threads spin briefly, then sleep
# (PASSIVE, sleeping at once, doubled the decode step; ACTIVE holds cores);
# the entrypoint script sets the thread count (its own test:
# deploy.entrypoint_omp).
check(env.get("GOMP_SPINCOUNT") == "10000" and "OMP_WAIT_POLICY" not in env,
      f"ENV GOMP_SPINCOUNT=10000 and no OMP_WAIT_POLICY (got {env.get('GOMP_SPINCOUNT')}, "
      f"{env.get('OMP_WAIT_POLICY')})")
check(entry[0] == "/usr/local/bin/mtla-entrypoint" and entry[1] == "/usr/local/bin/mtla-server"
      and "COPY deploy/docker/entrypoint.sh /usr/local/bin/mtla-entrypoint" in instructions,
      "ENTRYPOINT runs mtla-server through deploy/docker/entrypoint.sh")

# HEALTHCHECK: the bundled client's health command, run here the way Docker
# runs it (sh -c, the container's environment), against a server started the
# image's way.
(health,) = [l for l in instructions if l.startswith("HEALTHCHECK ")]
m = re.match(r"HEALTHCHECK((?:\s+--[\w-]+=\S+)*)\s+CMD\s+(.+)$", health)
check(m is not None and "/usr/local/bin/mtla-client" in m.group(2) and m.group(2).rstrip().endswith(" health"),
      f"HEALTHCHECK runs the bundled mtla-client's health command ({health})")
options = dict(o.split("=", 1) for o in m.group(1).split())
check(float(options["--start-period"].rstrip("s")) >= 120, "HEALTHCHECK allows for model load")
command = m.group(2).replace("/usr/local/bin/mtla-client", client_bin)
port = free_port()
run_env = {k: v for k, v in env.items()}
run_env.update({"FLAGS_model_dir": model_dir(testdata), "FLAGS_listen": f"127.0.0.1:{port}",
                "FLAGS_metrics_listen": "127.0.0.1:0", "FLAGS_device": "cpu",
                "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
script = os.path.join(REPO, "deploy", "docker", "entrypoint.sh")
server = Server(script, None, args=[server_bin] + entry[2:], env=run_env, listen=None, metrics_listen=None)
try:
    server.wait_serving()
    probe = subprocess.run(["sh", "-c", command], env=run_env, capture_output=True, text=True, timeout=30)
    check(probe.returncode == 0, f"HEALTHCHECK is healthy while the server serves: {command} -> "
          f"{probe.returncode} {probe.stdout.strip()} {probe.stderr.strip()}")
    environ = dict(kv.split("=", 1) for kv in open(f"/proc/{server.proc.pid}/environ").read().split("\0") if "=" in kv)
    check(environ.get("GOMP_SPINCOUNT") == "10000" and "OMP_WAIT_POLICY" not in environ
          and int(environ.get("OMP_NUM_THREADS", "0")) >= 1,
          f"the server runs with GOMP_SPINCOUNT={environ.get('GOMP_SPINCOUNT')} "
          f"OMP_WAIT_POLICY={environ.get('OMP_WAIT_POLICY')} "
          f"OMP_NUM_THREADS={environ.get('OMP_NUM_THREADS')}")
finally:
    code = server.stop()
check(code == 0, "server drained and exited 0")
probe = subprocess.run(["sh", "-c", command], env=run_env, capture_output=True, text=True, timeout=30)
check(probe.returncode != 0, f"HEALTHCHECK is unhealthy when the server is gone ({probe.returncode})")
print("PASS")
