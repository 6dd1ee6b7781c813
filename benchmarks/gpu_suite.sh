#!/usr/bin/env bash
# The CUDA tests and the GPU benchmarks in one unattended run.
#
#   benchmarks/gpu_suite.sh OUT [PART ...]
#
# OUT    folder for the results, one log per part and suite.log (created).
# PART   tests (the device-aware tests' CUDA cases, pytest -m cuda), render (MoFaNeRF),
#        fit (MoFaNeRF), blendshape (NeRFBlendShape); default: all four, in that order. "fit"
#        reuses the model that "render" trained (MODEL below); without it, it trains its own.
#
# Each part runs under its own time limit, and a part that fails or runs out of time is logged
# and the suite goes on with the next. At the default limits the four parts take at most
# 12.5 minutes: "tests render fit" fit one 10-minute command, "blendshape" a second. With PACK=1 each part's files are packed into
# OUT/<part>.tar.gz as soon as it ends (for a machine that returns only a few files).
#
# Environment (defaults in brackets):
#   PYTHON [python3]          interpreter that has torch with CUDA
#   DEVICE [cuda]             passed as --device (cpu for a dry run at CPU sizes)
#   MOFANERF_TRAIN_S [60]     in-script training of the full-size MoFaNeRF
#   BLENDSHAPE_TRAIN_S [150]  in-script training of NeRFBlendShape at the release's sizes
#   TALK_DATA [data/gpu_talk] talking-head dataset to train NeRFBlendShape on; when the folder
#                             is absent the benchmark renders one itself (needs pyrender + GL)
#   TEST_TALK [data/gpu_test_talk]  the CUDA tests' talking head (FACENERF_TEST_TALK), likewise
#   MODEL [/tmp/facenerf_mofanerf_full.pt]  where "render" keeps the trained MoFaNeRF for "fit"
#   WHEELS [.whl]             wheels installed into /tmp/facenerf_site first when the folder exists
#   TESTS_LIMIT_S [120]  RENDER_LIMIT_S [210]  FIT_LIMIT_S [150]  BLENDSHAPE_LIMIT_S [270]
#   EXTRA_RENDER, EXTRA_FIT, EXTRA_BLENDSHAPE: further flags for each script
#
# benchmarks/gpu_prepare.sh makes the wheels and the dataset on a machine with PyPI.
set -uo pipefail

if [ $# -lt 1 ]; then
    sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
OUT=$1
shift
PARTS=("$@")
[ ${#PARTS[@]} -eq 0 ] && PARTS=(tests render fit blendshape)
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
WHEELS=${WHEELS:-.whl}
TALK_DATA=${TALK_DATA:-data/gpu_talk}
TEST_TALK=${TEST_TALK:-data/gpu_test_talk}
LOG="$OUT/suite.log"
export PYTHONUNBUFFERED=1

say() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

if [ -d "$WHEELS" ] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/facenerf_site "$WHEELS"/*.whl || { say "installing the wheels in $WHEELS failed"; exit 1; }
    export PYTHONPATH=/tmp/facenerf_site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PYTHON" - <<'EOF' 2>&1 | tee -a "$LOG"
import platform, torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"python {platform.python_version()}, torch {torch.__version__}, {name}")
EOF

model=${MODEL:-/tmp/facenerf_mofanerf_full.pt}

part_dir() {  # where a part writes its files
    if [ "${PACK:-0}" = 1 ]; then echo "$OUT/$1"; else echo "$OUT"; fi
}

run_part() {  # name, limit in seconds, command... (its output folder is $(part_dir name))
    local name=$1 limit=$2
    shift 2
    local dir
    dir=$(part_dir "$name")
    mkdir -p "$dir"
    say "$name: $* (limit ${limit} s)"
    local start=$SECONDS
    timeout --signal=INT --kill-after=20 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    say "$name: exit $rc after $((SECONDS - start)) s (log: $name.log)"
    tail -n 25 "$OUT/$name.log" >>"$LOG"
    if [ "${PACK:-0}" = 1 ]; then
        mv "$OUT/$name.log" "$dir/" && tar -czf "$OUT/$name.tar.gz" -C "$OUT" "$name" && rm -rf "$dir"
    fi
    return 0
}

for part in "${PARTS[@]}"; do
    case $part in
    tests)
        talk=()
        [ -d "$TEST_TALK" ] && talk=(env "FACENERF_TEST_TALK=$TEST_TALK")
        run_part tests "${TESTS_LIMIT_S:-120}" "${talk[@]}" env CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}" \
            "$PYTHON" -m pytest -q -rs -p no:cacheprovider -m cuda --continue-on-collection-errors \
            --junitxml "$(part_dir tests)/cuda_tests.xml" tests
        ;;
    render)
        # shellcheck disable=SC2086
        run_part render "${RENDER_LIMIT_S:-210}" "$PYTHON" benchmarks/mofanerf_render.py --device "$DEVICE" \
            --train_seconds "${MOFANERF_TRAIN_S:-60}" --save_model "$model" --out "$(part_dir render)" \
            ${EXTRA_RENDER:-}
        ;;
    fit)
        source_args=(--train_seconds "${MOFANERF_TRAIN_S:-60}")
        [ -f "$model" ] && source_args=(--ckpt "$model")
        # shellcheck disable=SC2086
        run_part fit "${FIT_LIMIT_S:-150}" "$PYTHON" benchmarks/fit_speed.py --device "$DEVICE" \
            "${source_args[@]}" --out "$(part_dir fit)" ${EXTRA_FIT:-}
        ;;
    blendshape)
        data_args=()
        [ -d "$TALK_DATA" ] && data_args=(--data "$TALK_DATA")
        # shellcheck disable=SC2086
        run_part blendshape "${BLENDSHAPE_LIMIT_S:-270}" "$PYTHON" benchmarks/blendshape_speed.py --device "$DEVICE" \
            --train_seconds "${BLENDSHAPE_TRAIN_S:-150}" "${data_args[@]}" --out "$(part_dir blendshape)" \
            ${EXTRA_BLENDSHAPE:-}
        ;;
    *)
        say "unknown part '$part' (tests, render, fit, blendshape)"
        ;;
    esac
done
say "done"
