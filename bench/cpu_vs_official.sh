#!/usr/bin/env bash
# Decode speed of the CPU backend next to the paper's official PyTorch code,
# measured one after the other on this machine (the paper's ST decoder dims,
# random weights, 100 prefix frames, batch 1 and 32), with the ratio; ours runs
# twice: linear layers on oneDNN (the default) and on OpenBLAS
# (MTLA_LINEAR=openblas). The official run decodes 64 tokens after the prefix
# and EOS (contexts 101..164); ours decodes at the fixed context 133, their
# middle (mtla_decode_bench keeps the context fixed per run).
#
#   bench/cpu_vs_official.sh [MIRROR_GIT_DIR]
#
# MIRROR_GIT_DIR is a clone (bare is fine) of the paper's repository; its
# mtla/MTLA.py is extracted to a temporary folder and loaded at run time. None
# of it is kept. Needs Debian's python3-torch. Build first (tools/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
mirror=${1:-${MTLA_OFFICIAL_REPO:-/work/.mirror/D-Keqi+mtla/repo}}
out=$(mktemp -d)
git -C "$mirror" show HEAD:mtla/MTLA.py > "$out/MTLA.py"
/usr/bin/python3 bench/official/official_decode_bench.py --mtla-py "$out/MTLA.py" \
  --batch 1 32 --repeats 5 --wait-idle 60 --json "$out/official.json" >&2
./build/bin/mtla_decode_bench --benchmark_filter='DecodeStep/batch:(1|32)/context:133/' \
  --benchmark_format=json --benchmark_out="$out/ours.json" >/dev/null
MTLA_LINEAR=openblas ./build/bin/mtla_decode_bench --benchmark_filter='DecodeStep/batch:(1|32)/context:133/' \
  --benchmark_format=json --benchmark_out="$out/ours_openblas.json" >/dev/null
/usr/bin/python3 - "$out/official.json" "$out/ours.json" "$out/ours_openblas.json" <<'PY'
import json, sys
official = json.load(open(sys.argv[1]))
ours, openblas = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
def official_tps(batch):
    return official["batches"][str(batch)]["median_tok_per_s"]
def median_tps(run, batch):
    for b in run["benchmarks"]:
        if b.get("aggregate_name") == "median" and f"batch:{batch}/context:133/" in b["name"]:
            return b["tokens_per_s"]
print("| batch | official PyTorch tok/s | CPU backend (oneDNN) tok/s | ratio "
      "| CPU backend (OpenBLAS only) tok/s | ratio |")
print("|---|---|---|---|---|---|")
for batch in (1, 32):
    o, c, b = official_tps(batch), median_tps(ours, batch), median_tps(openblas, batch)
    print(f"| {batch} | {o:.1f} | {c:.1f} | {c / o:.1f}x | {b:.1f} | {b / o:.1f}x |")
PY
rm -rf "$out"
