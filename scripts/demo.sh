#!/usr/bin/env bash
# `make demo`: the whole MoFaNeRF chain on built-in synthetic data, on the CPU.
#   synthetic FaceScape-format heads -> align_clip.py -> render.py -> run_train.py (tiny)
#   -> expression check (rendered vs true expression change around the mouth, strip PNG)
#   -> run_fit.py on an identity the model never saw -> novel-view orbit + expression edit + mesh
#   -> RefineNet pairs, training and refinement of the novel views.
# Every command below is an ordinary user command; rerunning resumes or skips finished work.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${DEMO_OUT:-demo_out}
DATA="$OUT/data"
LOGS="$OUT/logs"
TRAIN_STEPS=${DEMO_TRAIN_STEPS:-2000}
# The tiny model learns the expressions the demo edits: with all 20, 2000 steps draw each only
# about 100 times, too few to separate them (see README, "Expressions on the CPU").
EXPRESSIONS=${DEMO_EXPRESSIONS:-neutral,smile,mouth_stretch,jaw_left}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
start=$(date +%s)
step() { printf '\n== [%4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }

step "1/8 synthetic FaceScape-format data: 5 identities x 20 expressions"
"$PY" -m facenerf.data.synthetic --ids 5 --out "$DATA" --texture_size 512 --progress false
step "2/8 align the raw scans into the TU frame and clip the shoulders"
"$PY" align_clip.py --data "$DATA" --progress false
step "3/8 render the MoFaNeRF rig (64x64, 40 views) for $EXPRESSIONS"
"$PY" render.py --data "$DATA" --resolution 64 --views 40 --workers 2 --expressions "$EXPRESSIONS" --progress false

step "4/8 train a tiny MoFaNeRF on identities 1-4 (identity 5 is held out)"
"$PY" run_train.py -c configs/mofanerf_tiny.txt --datadir "$DATA/multiViewImages" --basedir "$LOGS" \
    --N_iters "$TRAIN_STEPS" --progress false | tee "$OUT/train.log"

step "5/8 expressions of the training identities: rendered vs true change around the mouth"
"$PY" -m facenerf.tools.expression_check -c configs/mofanerf_tiny.txt --datadir "$DATA/multiViewImages" \
    --basedir "$LOGS" --check_expressions smile,mouth_stretch,jaw_left --strip "$OUT/expressions.png" \
    --strip_expressions smile,mouth_stretch --progress false | tee "$OUT/expressions.log"

FIT_ARGS=(-c configs/fit_tiny.txt --datadir "$DATA/multiViewImages" --basedir "$LOGS" --progress false)
TARGET="$DATA/multiViewImages/5/neutral/0_10.png"
FIT="$OUT/fit"
step "6/8 fit the held-out identity's frontal image"
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" | tee "$OUT/fit.log"
step "7/8 novel views (orbit MP4), an expression edit (MP4) and a mesh"
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" --renderType rendering
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" --renderType expression \
    --expressions neutral,smile,mouth_stretch,jaw_left,neutral
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" --renderType mesh

step "8/8 RefineNet: pairs from the tiny model, short training, refine the novel views"
"$PY" trainingDataPreprocess/make_pairs.py -c configs/mofanerf_tiny.txt --datadir "$DATA/multiViewImages" \
    --basedir "$LOGS" --out "$OUT/refine_pairs" --pair_expressions 4 --pair_views 6 --progress false
"$PY" trainingDataPreprocess/train.py -c configs/refine_tiny.txt --dataroot "$OUT/refine_pairs" \
    --checkpoints_dir "$LOGS/refine" --name demo --max_steps 200 --progress false | tee "$OUT/refine.log"
"$PY" trainingDataPreprocess/test.py --name demo --checkpoints_dir "$LOGS/refine" --nerf_folder "$FIT/render" --progress false

step "done"
echo "Results:"
grep -h "^trained to step" "$OUT/train.log" | sed 's/;.*//; s/^/  MoFaNeRF: /' || true
grep -h "^expression-difference ratio" "$OUT/expressions.log" | sed 's/^/  /' || true
grep -h "^held-out views" "$OUT/fit.log" | sed 's/^/  fit of identity 5: /' || true
grep -h "^held-out:" "$OUT/refine.log" | sed 's/^/  RefineNet /' || true
cat <<MSG
Outputs:
  training data        $DATA/multiViewImages/   (contact sheet: python -m facenerf.tools.contact_sheet --data $DATA --id 1)
  MoFaNeRF run         $LOGS/mofanerf_tiny/      (checkpoints, validation PNGs, tensorboard/)
  expressions          $OUT/expressions.png    (truth | ours: neutral, smile, mouth_stretch)
  fit of identity 5    $FIT/                     (fit.pt, compare.png, heldout.png, loss_curve.png)
  novel-view orbit     $FIT/render/orbit.mp4
  expression edit      $FIT/render/ (expression MP4)
  mesh                 $FIT/mesh/               (OBJ with vertex colours, preview PNG)
  refined novel views  $FIT/render_refined/
  RefineNet run        $LOGS/refine/demo/
MSG
