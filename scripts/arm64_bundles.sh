#!/usr/bin/env bash
# The bundles verified on the emulated ARM64 board (device_tests/test_arm64_bundles.py), exported into OUT:
#   bash scripts/arm64_bundles.sh OUT [MODEL]
# * default-android-tflite-int8-qat, default-x86-openvino-int8-qat: the shipped `default` int8 bundles, by their
#   recipes (PT2E + 1,200 QAT steps; LFW skipped with --lfw-folds 0: the ARM check needs the conformance set, not
#   the accuracy, which the x86 export measured);
# * ref-TARGET: MODEL (default: the reference MobileFaceNet) for each target that has an aarch64 runtime wheel,
#   with the device tests' reduced verification (40 faces, 200 impostors, 100 calibration faces).
# A bundle already in OUT is kept. Slow on 2 cores: the QAT exports take the longest.
set -euo pipefail
out=${1:?usage: arm64_bundles.sh OUT [MODEL]}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${EDGEFACE_PYTHON:-$(bash "$root/scripts/env.sh")/bin/python}
model=${2:-$(cd "$root" && "$py" -c "from edgeface.core import paths; print(paths.reference_mobilefacenet())")}
mkdir -p "$out"
for r in android-tflite-int8-qat x86-openvino-int8-qat; do
  [ -f "$out/default-$r/edgeface.json" ] || (cd "$root" && "$py" -m edgeface export default --recipe "$r" --lfw-folds 0 --out "$out/default-$r" --quiet)
done
for t in onnx-fp32 onnx-int8 ort-fp32 tflite-fp32 tflite-fp16 tflite-int8 mnn-fp32 mnn-fp16 mnn-int8 ncnn-fp32 ncnn-fp16 openvino-fp32 openvino-fp16 openvino-int8; do
  [ -f "$out/ref-$t/edgeface.json" ] || (cd "$root" && "$py" -m edgeface export "$model" --target "${t%-*}" --precision "${t#*-}" --out "$out/ref-$t" \
    --lfw-folds 0 --n-verify 40 --n-impostor 200 --n-calib 100 --quiet) || echo "arm64_bundles.sh: export of $t failed" >&2
done
