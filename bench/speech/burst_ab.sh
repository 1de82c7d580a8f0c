#!/usr/bin/env bash
# The issue-14 burst: C closed-loop real-time streams of committee_en_16k.wav
# that start together (so their audio keeps ending within the same 100 ms),
# against one mtla-server started with the given flags, after a warm-up run
# of the same load (oneDNN compiles its primitives on first use). Prints one
# line: the server flags, the 1-minute load average at the start, final
# result after the audio end p50 / p99, and from the server's metrics the
# encoder's wall time per segment and the mean step time (warm-up included).
# TEXT=1: a text load (2 concurrent Generate calls, 32-token prompts, 64
# tokens) runs beside the measured speech run, and its inter-token gaps
# (p50 / p99 / max) are printed too.
#
#   bash bench/speech/burst_ab.sh MODEL_DIR [SERVER FLAGS...]
#   C=32 RUN_SECONDS=25 WARM=20 SERVER=build/bin/mtla-server (environment)
#
# A/B: alternate settings or binaries within minutes, e.g.
#   for f in --early_finals=false --early_finals=true; do
#     bash bench/speech/burst_ab.sh /tmp/x/st_paper $f; done
set -euo pipefail
cd "$(dirname "$0")/../.."
model=${1:?model directory}
shift
wav=../shared/testdata/audio/committee_en_16k.wav
[ -f "$wav" ] || { echo "missing $wav (the shared test data)" >&2; exit 1; }
out=$(mktemp -d)
port=$((50000 + RANDOM % 10000))
metrics_port=$((port + 1))
load=$(cut -d' ' -f1 /proc/loadavg)
${SERVER:-build/bin/mtla-server} --model_dir="$model" --listen=127.0.0.1:$port \
    --metrics_listen=127.0.0.1:$metrics_port --request_log=off "$@" >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do
  build/bin/mtla-client --address=127.0.0.1:$port info >/dev/null 2>&1 && break
  sleep 0.2
done
bench() {  # $1: seconds, rest: extra flags
  local seconds=$1; shift
  build/bin/mtla-bench --address 127.0.0.1:$port --scenario speech --wav "$wav" --chunk_ms 100 \
      --pace realtime --max_tokens 40 --duration_seconds "$seconds" --num_requests 0 \
      --concurrency "${C:-32}" --progress_interval_seconds 0 "$@"
}
[ "${WARM:-20}" != 0 ] && bench "${WARM:-20}" >/dev/null 2>&1
bench "${RUN_SECONDS:-25}" --warmup_requests 1 --json "$out/run.json" >/dev/null 2>&1 &
speech=$!
if [ -n "${TEXT:-}" ]; then
  sleep 2
  build/bin/mtla-bench --address 127.0.0.1:$port --scenario text --prompt_len 32 --output_len 64 \
      --concurrency 2 --duration_seconds $(( ${RUN_SECONDS:-25} - 5 )) --num_requests 0 \
      --progress_interval_seconds 0 --json "$out/text.json" >/dev/null 2>&1 || true
fi
wait $speech || true
curl -s "127.0.0.1:$metrics_port/metrics" >"$out/metrics.txt"
/usr/bin/python3 - "$out/run.json" "$out/metrics.txt" "$load" "$*" "$out/text.json" <<'PY'
import json, os, sys
m = json.load(open(sys.argv[1]))["metrics"]["final_after_audio_ms"]
v = {}
for line in open(sys.argv[2]):
    if line.startswith("mtla_") and " " in line:
        name = line.split("{")[0].split(" ")[0]
        v[name] = v.get(name, 0) + float(line.rsplit(" ", 1)[1])
enc = 1000 * v["mtla_encoder_batch_duration_seconds_sum"] / max(1, v["mtla_encoder_batch_size_sum"])
step = 1000 * v["mtla_step_duration_seconds_sum"] / max(1, v["mtla_step_duration_seconds_count"])
line = ("flags [%s] load %s: final p50 / p99 %.0f / %.0f ms; encoder %.1f ms per segment; step %.2f ms"
        % (sys.argv[4], sys.argv[3], m["p50"], m["p99"], enc, step))
if os.path.exists(sys.argv[5]):
    itl = json.load(open(sys.argv[5]))["metrics"]["itl_ms"]
    line += "; text ITL p50 / p99 / max %.1f / %.1f / %.1f ms" % (itl["p50"], itl["p99"], itl["max"])
print(line)
PY
