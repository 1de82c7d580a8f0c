#!/usr/bin/env bash
# The whole default-model pipeline in one command, from the repository root:
#
#   bash tools/train/pipeline.sh [WORK_DIR]        (default build/train)
#
# data (template grammar -> espeak-ng + sox speech -> mtla-features), the
# SentencePiece vocabulary (Debian's spm_train), training (PyTorch, resumes from
# WORK_DIR/ckpt/checkpoint.pt), export to models/en-de-synthetic/, and the
# evaluation through a running mtla-server (exact match and BLEU, served vs
# PyTorch). Every stage whose output exists is skipped, so a rerun resumes.
# Stage wall times go to WORK_DIR/timings.tsv. Environment: N_TRAIN, N_DEV,
# N_TEST, EPOCHS, SEED, MODEL_OUT, PYTHON (an interpreter with torch and numpy).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=$(realpath -m "${1:-build/train}")
N_TRAIN=${N_TRAIN:-9000}
N_DEV=${N_DEV:-300}
N_TEST=${N_TEST:-300}
EPOCHS=${EPOCHS:-40}
SEED=${SEED:-1}
VOCAB=${VOCAB:-1000}
MODEL_OUT=${MODEL_OUT:-models/en-de-synthetic}
PYTHON=${PYTHON:-/usr/bin/python3}
TRAIN=tools/train

bash tools/setup.sh --train
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target mtla-features mtla-server mtla-client
mkdir -p "$WORK"
pipeline_start=$(date +%s)

# stage NAME DONE_FILE COMMAND...: runs COMMAND unless DONE_FILE exists; logs the time.
stage() {
  local name=$1 done_file=$2
  shift 2
  if [ -e "$done_file" ]; then
    echo "== $name: done before ($done_file)"
    return
  fi
  echo "== $name"
  local start
  start=$(date +%s)
  "$@"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >>"$WORK/timings.tsv"
}

corpus() {
  "$PYTHON" $TRAIN/grammar.py --seed "$SEED" --train $((N_TRAIN + N_DEV)) --test "$N_TEST" \
    --out "$WORK/corpus"
  head -n "$N_TRAIN" "$WORK/corpus/train.tsv" >"$WORK/corpus/train_only.tsv"
  tail -n "$N_DEV" "$WORK/corpus/train.tsv" >"$WORK/corpus/dev.tsv"
}

speech() {
  "$PYTHON" $TRAIN/synthesize.py "$WORK/corpus/train_only.tsv" "$WORK" --split train --seed "$SEED"
  "$PYTHON" $TRAIN/synthesize.py "$WORK/corpus/dev.tsv" "$WORK" --split dev --seed "$SEED"
  "$PYTHON" $TRAIN/synthesize.py "$WORK/corpus/test.tsv" "$WORK" --split test --seed "$SEED"
}

vocabulary() {
  cut -f2 "$WORK/corpus/train_only.tsv" >"$WORK/german_train.txt"
  spm_train --input="$WORK/german_train.txt" --model_prefix="$WORK/spm" \
    --vocab_size="$VOCAB" --hard_vocab_limit=false --model_type=unigram \
    --character_coverage=1.0 --bos_id=0 --pad_id=1 --eos_id=2 --unk_id=3 \
    --minloglevel=1
  wc -l <"$WORK/spm.vocab" | tr -d ' ' >"$WORK/vocab_size"
}

features() {
  for split in train dev test; do
    cut -f1 "$WORK/$split.tsv" >"$WORK/feat_$split.list"
    build/bin/mtla-features --list "$WORK/feat_$split.list" --out "$WORK/feat_$split"
  done
}

train() {
  (cd $TRAIN && "$PYTHON" train.py --data "$WORK" --out "$WORK/ckpt" \
    --epochs "$EPOCHS" --seed "$SEED")
  touch "$WORK/ckpt/done"
}

export_model() {
  "$PYTHON" $TRAIN/export.py --checkpoint "$WORK/ckpt/final.pt" --data "$WORK" \
    --out "$MODEL_OUT" --features-binary build/bin/mtla-features
  touch "$WORK/exported"
}

evaluate() {
  "$PYTHON" $TRAIN/evaluate.py --model "$MODEL_OUT" --data "$WORK" \
    --checkpoint "$WORK/ckpt/final.pt" --out "$WORK/eval.json"
}

stage corpus "$WORK/corpus/dev.tsv" corpus
stage speech "$WORK/test.tsv" speech
stage vocabulary "$WORK/vocab_size" vocabulary
stage features "$WORK/feat_test.tsv" features
stage train "$WORK/ckpt/done" train
# The done-marker lives in WORK, not MODEL_OUT: the repository ships a model
# there, which must not stop a fresh training run from exporting its own.
stage export "$WORK/exported" export_model
stage evaluate "$WORK/eval.json" evaluate
echo "== pipeline wall time this run: $(( $(date +%s) - pipeline_start )) s (stages: $WORK/timings.tsv)"
cat "$WORK/timings.tsv"
