#!/usr/bin/env bash
# Prepares, on the development machine (it reaches the package registry), what
# tests/bench/gpu_run.sh carries to the lent GPU machine (which reaches nothing), in
# .cache/whl (ignored by git): the cp312 wheels of the packages photofind imports at load
# that the machine's image lacks, hnswlib's source (it publishes no wheel; built there),
# and CLIP's BPE vocabulary (open_clip is not there). Versions: the development venv's.
#
#   bash tests/bench/gpu_prepare.sh [PYTHON]      (PYTHON: the venv's, default python3)
set -euo pipefail
py=${1:-python3}
dest=.cache/whl
mkdir -p "$dest/src"
plat='--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64'
# shellcheck disable=SC2086
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp $plat -d "$dest" \
    ftfy==6.3.1 wcwidth==0.9.4 platformdirs==4.14.9 pillow_heif==1.8.1 rawpy==0.28.0 \
    pillow-jxl-plugin==1.3.8
# pip reads an sdist's metadata by building it: its build requirements, in a scratch folder.
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
"$py" -m pip install -q --target "$tools" pybind11 setuptools wheel
PYTHONPATH="$tools" "$py" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation \
    -d "$dest/src" hnswlib==0.8.0
cp "$("$py" -c 'from export.vocab import find_clip_vocab; print(find_clip_vocab())')" "$dest/"
du -sh "$dest"
