#!/bin/sh
# The image's entrypoint: sets the OpenMP thread count for the CPUs this
# container may use, then execs its arguments (the server and its flags).
#
# Contract:
# - OMP_NUM_THREADS already set (e.g. by the pod, from limits.cpu): kept.
# - Otherwise: the cgroup CPU quota rounded up (cgroup v2 cpu.max, or v1
#   cpu.cfs_quota_us / cpu.cfs_period_us), at most the CPUs in this process's
#   affinity mask (nproc); without a quota, nproc. OpenMP itself would use
#   every CPU of the affinity mask, which is every CPU of the node under a
#   `docker run --cpus=N` or a Kubernetes CPU limit: N busy cores' worth of
#   threads time-sliced onto fewer cores.
# - OMP_WAIT_POLICY and GOMP_SPINCOUNT are left as the environment says (the
#   image sets GOMP_SPINCOUNT=10000: spin about 0.1 ms, then sleep).
# MTLA_CGROUP_DIR overrides /sys/fs/cgroup (tests).
set -eu

cgroup=${MTLA_CGROUP_DIR:-/sys/fs/cgroup}

quota_cpus() {
  if [ -r "$cgroup/cpu.max" ]; then
    read -r quota period < "$cgroup/cpu.max" || return 1
  elif [ -r "$cgroup/cpu/cpu.cfs_quota_us" ] && [ -r "$cgroup/cpu/cpu.cfs_period_us" ]; then
    quota=$(cat "$cgroup/cpu/cpu.cfs_quota_us")
    period=$(cat "$cgroup/cpu/cpu.cfs_period_us")
  else
    return 1
  fi
  case "$quota" in max | -1 | '') return 1 ;; esac
  [ "${period:-0}" -gt 0 ] || return 1
  echo $(( (quota + period - 1) / period ))
}

if [ -z "${OMP_NUM_THREADS:-}" ]; then
  threads=$(nproc)
  if cpus=$(quota_cpus) && [ "$cpus" -ge 1 ] && [ "$cpus" -lt "$threads" ]; then
    threads=$cpus
  fi
  OMP_NUM_THREADS=$threads
  export OMP_NUM_THREADS
fi
exec "$@"
