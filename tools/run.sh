#!/usr/bin/env bash
# The README's run command: install what is missing, build, then run the main
# job: mtla-server on the embedded default model, answering a real request
# sent with mtla-client over gRPC, then a graceful shutdown (SIGTERM drain).
#
# The default model until a trained one ships: an untrained LlamaMTLA of
# documented dims (hidden 128, 4 layers, 4 heads, kv_lora_rank 64, rope dim
# 16, down_rate 2, vocab 256), written with fixed random weights by
# `mtla-generate --write-random-model`. Its tokens are meaningless; what the run
# shows is the service working end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh

model=build/default_model
if [ ! -f "$model/model.safetensors" ]; then
  mkdir -p "$model"
  ./build/bin/mtla-generate --write-random-model "$model"
fi

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
echo "== generate (greedy, 16 tokens)"
./build/bin/mtla-client --address "127.0.0.1:$port" generate \
  --prompt-ids "1 5 9 42 17" --max-new-tokens 16
echo "== metrics (excerpt)"
curl -s "127.0.0.1:$metrics_port/metrics" 2>/dev/null | grep -E '^mtla_(generation_tokens_total|kv_cache_bytes_per_token|requests_total\{.*status="ok")' || true
kill -TERM $server
wait $server
trap - EXIT
echo "== server drained and exited 0"
