#!/usr/bin/env bash
# The main job on built-in synthetic data. Called by `make demo` with PY and DEMO_OUT set.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${DEMO_OUT:-demo_out}
mkdir -p "$OUT"
"$PY" -m facenerf.demos.core_demo --out "$OUT/core"
