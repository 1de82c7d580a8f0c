#!/usr/bin/env bash
# Live speech streams through one mtla-server at its default settings: a
# closed-loop sweep over concurrency, then optional open-loop (Poisson) runs,
# each a row of a Markdown table with the 1-minute load average at its start.
#
#   bash bench/speech/stream_sweep.sh MODEL_DIR [CONCURRENCIES] [RATES] [SECONDS]
#
# MODEL_DIR: e.g. the paper-dims random model of
#   /usr/bin/python3 bench/speech/make_random_st_model.py /tmp/x/st_paper --dims paper
# CONCURRENCIES: closed-loop live streams, default "1 8 16 24 32 40 48".
# RATES: open-loop stream arrivals per second, default "" (none); a rate of
#   32 / 4.65 = 6.9 keeps 32 streams of committee_en_16k.wav live on average.
# SECONDS: how long each run starts streams (default 25).
# RAMP_UP (environment, default 0): closed loop, spread the first starts over
#   this many seconds (mtla-bench --ramp_up_seconds); 0 starts every stream at
#   once, so identical clips keep ending in the same 100 ms.
# Builds nothing: uses build/bin (bash tools/build.sh first). Raw JSON reports
# go to $OUT_DIR (default a temporary directory, printed).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?model directory}
concurrencies=${2:-"1 8 16 24 32 40 48"}
rates=${3:-""}
seconds=${4:-25}
wav=../shared/testdata/audio/committee_en_16k.wav
[ -f "$wav" ] || { echo "missing $wav (the shared test data)" >&2; exit 1; }
out=${OUT_DIR:-$(mktemp -d)}
port=$((50000 + RANDOM % 10000))
build/bin/mtla-server --model_dir="$model" --listen=127.0.0.1:$port --metrics_listen=127.0.0.1:0 \
    --request_log=off >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), reports in $out"
echo
echo "| load | run | load avg | streams | chunk latency p50 / p99 (ms) | RTF p50 / p99 | final after audio end p50 / p99 (ms) | good (every chunk <= 500 ms) | errors |"
echo "|---|---|---|---|---|---|---|---|---|"
run() {  # $1: label, rest: mtla-bench load flags
  local label=$1; shift
  local load; load=$(cut -d' ' -f1 /proc/loadavg)
  build/bin/mtla-bench --address 127.0.0.1:$port --scenario speech --wav "$wav" --chunk_ms 100 \
      --pace realtime --max_tokens 40 --duration_seconds "$seconds" --num_requests 0 \
      --warmup_requests 1 --slo_chunk_ms 500 --progress_interval_seconds 0 \
      --json "$out/$label.json" "$@" >"$out/$label.txt" 2>&1 || true
  /usr/bin/python3 - "$out/$label.json" "$label" "$load" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
def pair(key, fmt):
    s = m.get(key)
    return "-" if s is None else (fmt % s["p50"]) + " / " + (fmt % s["p99"])
errors = sum(r["errors"].values()) + r["requests"]["failed"]
print("| %s | %s | %s | %d | %s | %s | %s | %d / %d | %d |" % (
    sys.argv[2].split("_")[0], sys.argv[2].split("_", 1)[1], sys.argv[3], r["requests"]["completed"],
    pair("chunk_latency_ms", "%.1f"), pair("rtf_x", "%.2f"), pair("final_after_audio_ms", "%.0f"),
    r["goodput"]["good_requests"], r["requests"]["completed"], errors))
PY
}
for _ in $(seq 100); do
  build/bin/mtla-client --address=127.0.0.1:$port info >/dev/null 2>&1 && break
  sleep 0.2
done
ramp=${RAMP_UP:-0}
for c in $concurrencies; do
  if [ "$ramp" = 0 ]; then run "closed_$c" --concurrency "$c"
  else run "closed_$c+ramp$ramp" --concurrency "$c" --ramp_up_seconds "$ramp"; fi
done
for rate in $rates; do run "open_${rate}" --request_rate "$rate" --arrival poisson; done
