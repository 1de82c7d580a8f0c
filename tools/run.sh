#!/usr/bin/env bash
# The README's run command: install what is missing, build, then run the main
# job: mtla-server on the embedded default model, answering a real request
# sent with mtla-client over gRPC, then a graceful shutdown (SIGTERM drain).
#
# The default model is models/en-de-synthetic: a small speech-translation
# model (the paper's architecture, MTLA decoder with s = 2) trained by
# tools/train/pipeline.sh on synthetic English speech (espeak-ng) of a
# restricted domain, translating into German. The request streams its bundled
# held-out utterance (sample.wav) at real-time pace; interim hypotheses and the
# final translation print as they arrive.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh

model=models/en-de-synthetic

port=${MTLA_PORT:-50051}
metrics_port=${MTLA_METRICS_PORT:-9090}
./build/bin/mtla-server --model_dir="$model" --listen="127.0.0.1:$port" \
  --metrics_listen="127.0.0.1:$metrics_port" --drain_grace_seconds=10 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT

for _ in $(seq 100); do
  ./build/bin/mtla-client --address "127.0.0.1:$port" health >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== model"
./build/bin/mtla-client --address "127.0.0.1:$port" info | head -8
echo "== translate $model/sample.wav (streamed in 200 ms chunks at real-time pace)"
printf 'spoken English:    %s\n' "$(sed -n 's/^english\t//p' "$model/sample.txt")"
./build/bin/mtla-client --address "127.0.0.1:$port" translate "$model/sample.wav" \
  --realtime --chunk_ms 200 --interim
printf 'reference German:  %s\n' "$(sed -n 's/^german\t//p' "$model/sample.txt")"
echo "== metrics (excerpt)"
curl -s "127.0.0.1:$metrics_port/metrics" 2>/dev/null | grep -E '^mtla_(generation_tokens_total|kv_cache_bytes_per_token|audio_seconds_total|real_time_factor_(sum|count))' || true
kill -TERM $server
wait $server
trap - EXIT
echo "== server drained and exited 0"
