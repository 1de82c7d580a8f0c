#!/usr/bin/env python3
"""deploy/docker/entrypoint.sh (the image's entrypoint) sets OMP_NUM_THREADS
from the container's CPU quota: cgroup v2 cpu.max and v1 cfs quota, rounded
up, capped by the CPUs this process may run on; no quota: those CPUs; an
OMP_NUM_THREADS already set is kept; the arguments are exec'd unchanged.

usage: check_entrypoint.py
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mtla_testlib import REPO, check  # noqa: E402

SCRIPT = os.path.join(REPO, "deploy", "docker", "entrypoint.sh")
CPUS = len(os.sched_getaffinity(0))


def run(files, extra_env=None):
    with tempfile.TemporaryDirectory() as cgroup:
        for name, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(cgroup, name)), exist_ok=True)
            with open(os.path.join(cgroup, name), "w") as f:
                f.write(text)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MTLA_CGROUP_DIR": cgroup}
        env.update(extra_env or {})
        out = subprocess.run([SCRIPT, "sh", "-c", 'echo "$OMP_NUM_THREADS|$0|$1"', "a b", "c"],
                             env=env, capture_output=True, text=True, timeout=10)
        check(out.returncode == 0, f"entrypoint exits 0 ({out.stderr.strip()})")
        threads, arg0, arg1 = out.stdout.strip().split("|")
        check((arg0, arg1) == ("a b", "c"), "arguments are passed on unchanged")
        return int(threads)


check(run({}) == CPUS, f"no cgroup CPU files: {CPUS} threads (the affinity mask)")
check(run({"cpu.max": "max 100000\n"}) == CPUS, "cgroup v2 without a quota: the affinity mask")
check(run({"cpu.max": "100000 100000\n"}) == 1, "cgroup v2 quota of 1 CPU: 1 thread")
check(run({"cpu.max": "50000 100000\n"}) == 1, "half a CPU: 1 thread (rounded up)")
if CPUS >= 2:
    check(run({"cpu.max": "150000 100000\n"}) == 2, "1.5 CPUs: 2 threads")
check(run({"cpu.max": f"{100000 * (CPUS + 8)} 100000\n"}) == CPUS, "a quota above the affinity mask is capped")
check(run({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}) == 1,
      "cgroup v1 quota of 1 CPU: 1 thread")
check(run({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}) == CPUS,
      "cgroup v1 without a quota: the affinity mask")
check(run({"cpu.max": "100000 100000\n"}, {"OMP_NUM_THREADS": "7"}) == 7, "a given OMP_NUM_THREADS is kept")
print("PASS")
