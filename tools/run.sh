#!/usr/bin/env bash
# The README's run command: install, build, and run the main job.
# Until the gRPC server lands this is greedy generation on the CPU backend with
# the LlamaMTLA reference checkpoint from ../shared/testdata when present, and
# otherwise a small random-weight checkpoint written on the spot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
model=../shared/testdata/model_reference/llama_mtla_s2
prompt="1 17 42 5 66 23 9"
if [ ! -f "$model/model.safetensors" ]; then
  model=build/demo_model
  mkdir -p "$model"
  ./build/bin/mtla-generate --write-random-model "$model"
  prompt="1 5 9"
fi
./build/bin/mtla-generate --model "$model" --prompt "$prompt" --max-new-tokens 12
