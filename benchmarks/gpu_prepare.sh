#!/usr/bin/env bash
# Make what benchmarks/gpu_suite.sh needs on a GPU machine that cannot reach PyPI, here:
#
#   benchmarks/gpu_prepare.sh [PYTHON_VERSION]
#
# - .whl/: wheels of the pure-Python requirements that a CUDA PyTorch image usually lacks
#   (ConfigArgParse), for PYTHON_VERSION (default 3.12) on x86-64 Linux;
# - data/gpu_talk/: the 400-frame 256^2 synthetic talking head that NeRFBlendShape trains on, and
#   data/gpu_test_talk/: the CUDA tests' 24-frame one (both rendered here with pyrender, so the
#   GPU machine needs no OpenGL).
#
# All three folders are git-ignored; carry them to the GPU machine with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV=${1:-3.12}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
    "$(grep -i '^configargparse' requirements.txt)"
ls -l .whl

if [ ! -f data/gpu_talk/transforms_train.json ]; then
    "$PY" -m facenerf.tools.talking_head --out data/gpu_talk --frames 400 --size 256 --seed 0 --progress false
fi
# the CUDA tests' talking head (tests/test_blendshape_cli.py, FACENERF_TEST_TALK=data/gpu_test_talk)
if [ ! -f data/gpu_test_talk/transforms_train.json ]; then
    "$PY" -m facenerf.tools.talking_head --out data/gpu_test_talk --frames 24 --size 32 --test_num 4 \
        --texture_size 128 --vertices 2500 --progress false
fi
du -sh data/gpu_talk data/gpu_test_talk .whl
