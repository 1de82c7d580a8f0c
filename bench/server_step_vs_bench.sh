#!/usr/bin/env bash
# The decode step inside mtla-server next to mtla_decode_bench's step at the
# same dims and context, alternating on this machine (issue 15's last target:
# the server's per-token time within 10% of the benchmark's step).
#
#   bench/server_step_vs_bench.sh MODEL_DIR [ROUNDS] [SECONDS]
#
# MODEL_DIR: the paper-dims random speech model
# (bench/speech/make_random_st_model.py DIR --dims paper; its decoder has the
# benchmark's dims). Each round:
#   - mtla_decode_bench, batch 1, context 256 (median of 5 ms_per_step);
#   - one closed-loop TextGeneration stream through the server at its defaults
#     (128-token prompt, 256 new tokens: the context runs 128..384, mean 256),
#     read from the server's own metrics: mtla_inter_token_latency_seconds and
#     mtla_step_duration_seconds means over the round;
#   - one live speech stream (committee_en_16k.wav at real time, 100 ms chunks,
#     40 tokens per segment: bursts of decoding between seconds of idling),
#     same metrics.
# The client runs on the same cores as the server. SERVER_ENV="NAME=VALUE ..."
# sets variables for the server only (e.g. SERVER_ENV=OMP_WAIT_POLICY=PASSIVE).
# Build first (tools/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?model directory}
rounds=${2:-3}
seconds=${3:-20}
wav=../shared/testdata/audio/committee_en_16k.wav
out=$(mktemp -d)

# Mean in ms of a histogram over every label set: "<name>_sum" / "<name>_count".
metric_mean_ms() {  # $1: metrics port, $2: histogram name
  curl -s "127.0.0.1:$1/metrics" | awk -v n="$2" '
    index($1, n "_sum") == 1 { s += $2 } index($1, n "_count") == 1 { c += $2 }
    END { if (c > 0) printf "%.2f", 1000 * s / c; else printf "-" }'
}

serve_and_measure() {  # $1: label, rest: mtla-bench flags; prints "inter-token step"
  local label=$1; shift
  local port=$((50000 + RANDOM % 10000))
  # shellcheck disable=SC2086  # SERVER_ENV: words on purpose
  env ${SERVER_ENV:-} build/bin/mtla-server --model_dir="$model" --listen=127.0.0.1:$port \
      --metrics_listen=127.0.0.1:$((port + 1)) --request_log=off >"$out/$label.server.log" 2>&1 &
  local server=$!
  for _ in $(seq 100); do curl -s "127.0.0.1:$((port + 1))/metrics" >/dev/null 2>&1 && break; sleep 0.1; done
  build/bin/mtla-bench --address 127.0.0.1:$port --duration_seconds "$seconds" --num_requests 0 \
      --concurrency 1 --warmup_requests 1 --progress_interval_seconds 0 "$@" >"$out/$label.txt" 2>&1
  echo "$(metric_mean_ms $((port + 1)) mtla_inter_token_latency_seconds)" \
       "$(metric_mean_ms $((port + 1)) mtla_step_duration_seconds)"
  kill "$server"; wait "$server" 2>/dev/null || true
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "commit: $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC'), logs in $out"
echo "server environment: ${SERVER_ENV:-(none)}"
echo
echo "| round | load avg | bench ms/step (b1, ctx 256) | text stream: inter-token / step ms | ratio | speech stream: inter-token / step ms | ratio |"
echo "|---|---|---|---|---|---|---|"
for round in $(seq "$rounds"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  build/bin/mtla_decode_bench --benchmark_filter='DecodeStep/batch:1/context:256/' \
      --benchmark_format=json --benchmark_out="$out/bench$round.json" >/dev/null 2>&1
  bench=$(/usr/bin/python3 -c '
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    if b.get("aggregate_name") == "median": print("%.2f" % b["ms_per_step"])' "$out/bench$round.json")
  read -r text_itl text_step < <(serve_and_measure "text$round" --scenario text --prompt_len 128 \
      --output_len 256)
  read -r speech_itl speech_step < <(serve_and_measure "speech$round" --scenario speech \
      --wav "$wav" --chunk_ms 100 --pace realtime --max_tokens 40)
  ratio() { /usr/bin/python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$1" "$2"; }
  echo "| $round | $load | $bench | $text_itl / $text_step | $(ratio "$text_itl" "$bench") |" \
       "$speech_itl / $speech_step | $(ratio "$speech_itl" "$bench") |"
done
