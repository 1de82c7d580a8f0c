#!/usr/bin/env bash
# Installs every Debian package the build, the tests and the benchmarks need.
# Idempotent: packages already present are not reinstalled, and apt-get update
# runs only when something is missing. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl
  clang libclang-rt-14-dev dpkg-dev
  libabsl-dev
  libprotobuf-dev protobuf-compiler
  libgrpc++-dev protobuf-compiler-grpc
  grpc-proto  # canonical grpc.health.v1 and grpc.reflection.v1 protos (proto/CMakeLists.txt)
  python3-grpcio  # the Python client example and its test (examples/python); stubs from protoc + grpc_python_plugin
  libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-openmp-dev libdnnl-dev
  prometheus-cpp-dev prometheus
  nlohmann-json3-dev
  sentencepiece  # spm_train / spm_encode / spm_decode (tokenizer tests)
  libsentencepiece-dev  # the SentencePiece plugin (engine/tokenizer, libmtla_sentencepiece.so)
  python3-sentencepiece  # the text test model and its references (tests/text)
  libsoxr-dev libfftw3-dev libsleef-dev
  python3 python3-numpy python3-torch
  python3-yaml
  openssl  # the TLS tests make their certificates with it at test time
)
# `setup.sh --train` adds what tools/train/pipeline.sh needs (speech synthesis,
# audio effects, BLEU).
if [ "${1:-}" = "--train" ]; then
  PACKAGES+=(espeak-ng sox python3-nltk)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
