#!/usr/bin/env bash
# The GPU benchmark in one go on a lent machine (16 cores, one H200), from the repo root:
#
#   device run: command "bash tests/bench/gpu_run.sh", carry [".cache/whl"], timeout_s 560
#
# Prepared here first by `bash tests/bench/gpu_prepare.sh .venv/bin/python` (the machine
# reaches no network; .cache/ is ignored by git): the cp312 wheels of what photofind imports
# at load and the image lacks (ftfy, wcwidth, platformdirs, pillow_heif, rawpy,
# pillow-jxl-plugin: the catalog needs hnswlib, every decode path the three decoders),
# hnswlib's source, and CLIP's BPE vocabulary; about 16 MB.
#
# hnswlib publishes no wheel: its source is built there (g++, pybind11, numpy and setuptools
# are in the machine's image; about a minute). Where that fails, the end-to-end figure runs
# the pipeline's stages without the catalog, and says so. (chroma-hnswlib's cp312 wheel is
# no stand-in: photofind's index files do not save with it, tests/test_vector_index.py.)
#
# The machine's image has torch (the package is built there by export/), onnx, Pillow,
# tokenizers and a CPU onnxruntime. photofind's CUDA path needs onnxruntime-gpu, a wheel
# far over the 64 MiB a call may carry: where the image lacks it the script says so and
# measures the rest (the CPU encoder, decode on every core, photofind's pipeline with the
# encoder on the CPU, torch's fp16 ceiling on the GPU).
set -o pipefail
out=${OUT:-/tmp}
export PYTHONUNBUFFERED=1
site=/tmp/site
if ls .cache/whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .cache/whl/*.whl || exit 1
fi
export PYTHONPATH="$site:$PWD"
if ! python3 -c 'import hnswlib' 2>/dev/null; then
    if ls .cache/whl/src/hnswlib-*.tar.gz >/dev/null 2>&1; then
        echo "[gpu_run.sh] building hnswlib from its source"
        timeout 240 python3 -m pip install -q --no-index --no-deps --no-build-isolation \
            --no-cache-dir --target "$site" .cache/whl/src/hnswlib-*.tar.gz 2>&1 | tail -3
    fi
fi
python3 -c 'import hnswlib, onnxruntime as o; print("[gpu_run.sh] hnswlib ok; onnxruntime",
    o.__version__, o.get_available_providers())' 2>&1
nvidia-smi -L 2>&1 | head -2
# What is left of the call's 560 s; the script writes its JSON after each stage, so a
# stop at the limit still brings back what was measured.
timeout $((540 - SECONDS)) python3 tests/bench/gpu_run.py --out "$out/gpu_run.json" "$@" 2>&1 \
    | tee "$out/gpu_run.log"
