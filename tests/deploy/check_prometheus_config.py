#!/usr/bin/env python3
"""promtool (Debian's prometheus package): check rules, check config, and the
rules' unit tests. Debian's Prometheus is built without Kubernetes service
discovery, so prometheus-kubernetes.yml is checked with its
kubernetes_sd_configs replaced by a static target (everything else as is).

usage: check_prometheus_config.py [PROMTOOL]
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import REPO, check, need_yaml, skip  # noqa: E402

promtool = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else shutil.which("promtool")
if not promtool or not os.path.exists(promtool):
    skip("promtool not found (Debian package prometheus, see tools/setup.sh)")
need_yaml()
import yaml  # noqa: E402

prom = os.path.join(REPO, "deploy", "prometheus")


def run(*args):
    proc = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
    print("$ promtool", " ".join(args))
    print(proc.stdout + proc.stderr)
    return proc.returncode


rules = sorted(glob.glob(os.path.join(prom, "rules", "*.yml")))
check(len(rules) >= 2, f"rule files: {[os.path.basename(r) for r in rules]}")
check(run("check", "rules", *rules) == 0, "promtool check rules")
check(run("check", "config", os.path.join(prom, "prometheus.yml")) == 0,
      "promtool check config prometheus.yml")

k8s = yaml.safe_load(open(os.path.join(prom, "prometheus-kubernetes.yml")))
replaced = 0
for job in k8s["scrape_configs"]:
    if "kubernetes_sd_configs" in job:
        del job["kubernetes_sd_configs"]
        job["static_configs"] = [{"targets": ["127.0.0.1:9090"]}]
        replaced += 1
check(replaced == 1, "prometheus-kubernetes.yml discovers pods with kubernetes_sd_configs")
with tempfile.TemporaryDirectory() as tmp:
    shutil.copytree(os.path.join(prom, "rules"), os.path.join(tmp, "rules"))
    path = os.path.join(tmp, "prometheus-kubernetes.yml")
    with open(path, "w") as f:
        yaml.safe_dump(k8s, f)
    check(run("check", "config", path) == 0,
          "promtool check config prometheus-kubernetes.yml (kubernetes_sd -> static)")

check(run("test", "rules", os.path.join(prom, "tests", "alerts_test.yml")) == 0,
      "promtool test rules (alert and recording-rule unit tests)")
print("PASS")
