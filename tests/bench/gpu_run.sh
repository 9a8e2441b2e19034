#!/usr/bin/env bash
# The GPU benchmark in one go on a lent machine (16 cores, one H200), from the repo root:
#
#   device run: command "bash tests/bench/gpu_run.sh", carry [".cache/whl"], timeout_s 560
#
# Prepared here first (the machine reaches no network; .cache/ is ignored by git):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .cache/whl ftfy wcwidth platformdirs
#   cp "$(python -c 'from export.vocab import find_clip_vocab; print(find_clip_vocab())')" .cache/whl/
#
# The machine's image has torch (the package is built there by export/), onnx, Pillow,
# tokenizers and a CPU onnxruntime. photofind's CUDA path needs onnxruntime-gpu, a wheel
# far over the 64 MiB a call may carry: where the image lacks it the script says so and
# measures the rest (CPU encoder, decode on every core, torch's fp16 ceiling on the GPU).
# hnswlib has no wheel: the end-to-end figure then runs the pipeline's stages without the
# catalog, and says so.
set -o pipefail
out=${OUT:-/tmp}
export PYTHONUNBUFFERED=1
if ls .cache/whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .cache/whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
else
    export PYTHONPATH="$PWD"
fi
nvidia-smi -L 2>&1 | head -2
timeout 540 python3 tests/bench/gpu_run.py --out "$out/gpu_run.json" "$@" 2>&1 | tee "$out/gpu_run.log"
