#!/usr/bin/env bash
# `make demo`: the whole MoFaNeRF chain and a NeRFBlendShape run on built-in synthetic data, on the CPU.
#   MoFaNeRF: synthetic FaceScape-format heads -> align_clip.py -> render.py -> run_train.py (tiny)
#   -> expression check (rendered vs true expression change around the mouth, strip PNG)
#   -> run_fit.py on an identity the model never saw -> novel-view orbit + expression edit + mesh
#   -> RefineNet pairs, training and refinement of the novel views.
#   NeRFBlendShape: a synthetic talking head -> main_nerf.py head, then torso -> --test (held-out
#   PSNR, reenactment and orbit videos).
# Every command below is an ordinary user command; rerunning resumes or skips finished work.
# Each step prints the elapsed wall time and the CPU time its processes used; a table at the end
# lists both per step.
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
STEP_NAMES=() STEP_WALL=() STEP_CPU=()
# CPU=seconds (user + system) used by every finished child process so far. `times` must run in
# this shell (a $(...) subshell would see only its own children), so it goes through a file.
cpu_seconds() {
    times > "$OUT/.times"
    CPU=$(awk 'NR == 2 { split($1, u, "m"); split($2, s, "m"); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
        "$OUT/.times")
}
close_step() {
    if (( ${#STEP_NAMES[@]} > ${#STEP_WALL[@]} )); then
        cpu_seconds
        STEP_WALL+=($(( $(date +%s) - step_wall0 ))) STEP_CPU+=($(( CPU - step_cpu0 )))
    fi
}
step() {
    close_step
    cpu_seconds
    step_wall0=$(date +%s) step_cpu0=$CPU
    printf '\n== [%4ss, cpu %4ss] %s\n' "$(( step_wall0 - start ))" "$step_cpu0" "$*"
    STEP_NAMES+=("${*%%:*}")
}

step "1/11 synthetic FaceScape-format data: 5 identities x 20 expressions"
"$PY" -m facenerf.data.synthetic --ids 5 --out "$DATA" --texture_size 512 --progress false
step "2/11 align the raw scans into the TU frame and clip the shoulders"
"$PY" align_clip.py --data "$DATA" --progress false
step "3/11 render the MoFaNeRF rig (64x64, 40 views) for $EXPRESSIONS"
"$PY" render.py --data "$DATA" --resolution 64 --views 40 --workers 2 --expressions "$EXPRESSIONS" --progress false

step "4/11 train a tiny MoFaNeRF on identities 1-4 (identity 5 is held out)"
"$PY" run_train.py -c configs/mofanerf_tiny.txt --datadir "$DATA/multiViewImages" --basedir "$LOGS" \
    --N_iters "$TRAIN_STEPS" --progress false | tee "$OUT/train.log"

step "5/11 expressions of the training identities: rendered vs true change around the mouth"
"$PY" -m facenerf.tools.expression_check -c configs/mofanerf_tiny.txt --datadir "$DATA/multiViewImages" \
    --basedir "$LOGS" --check_expressions smile,mouth_stretch,jaw_left --strip "$OUT/expressions.png" \
    --strip_expressions smile,mouth_stretch --progress false | tee "$OUT/expressions.log"

FIT_ARGS=(-c configs/fit_tiny.txt --datadir "$DATA/multiViewImages" --basedir "$LOGS" --progress false)
TARGET="$DATA/multiViewImages/5/neutral/0_10.png"
FIT="$OUT/fit"
step "6/11 fit the held-out identity's frontal image"
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" | tee "$OUT/fit.log"
step "7/11 novel views (orbit MP4), an expression edit (MP4) and a mesh"
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" --renderType rendering --frames 24
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" --renderType expression \
    --expressions neutral,smile,mouth_stretch,jaw_left,neutral --frames 12
"$PY" run_fit.py "${FIT_ARGS[@]}" --filePath "$TARGET" --fit_out "$FIT" --renderType mesh --mesh_resolution 64

step "8/11 RefineNet: pairs from the tiny model, short training, refine the novel views"
"$PY" trainingDataPreprocess/make_pairs.py -c configs/mofanerf_tiny.txt --datadir "$DATA/multiViewImages" \
    --basedir "$LOGS" --out "$OUT/refine_pairs" --pair_expressions 4 --pair_views 4 --progress false
"$PY" trainingDataPreprocess/train.py -c configs/refine_tiny.txt --dataroot "$OUT/refine_pairs" \
    --checkpoints_dir "$LOGS/refine" --name demo --max_steps 120 --eval_every 120 --save_every 120 \
    --progress false | tee "$OUT/refine.log"
"$PY" trainingDataPreprocess/test.py --name demo --checkpoints_dir "$LOGS/refine" --nerf_folder "$FIT/render" --progress false

TALK="$OUT/talk"
HEAD="$LOGS/blendshape_head"
TORSO="$LOGS/blendshape_torso"
BLEND_ARGS=(-c configs/blendshape_tiny.txt --progress false)
step "9/11 NeRFBlendShape: a synthetic talking head (160 frames at 80x80, the last 16 held out)"
"$PY" -m facenerf.tools.talking_head --out "$TALK" --frames 160 --size 80 --test_num 16 --progress false
step "10/11 NeRFBlendShape: train the head, then the torso behind it"
"$PY" main_nerf.py "$TALK" --workspace "$HEAD" "${BLEND_ARGS[@]}" --use_patch_loss --train_epoch 5 \
    | tee "$OUT/blendshape_head.log"
HEAD_CKPT=$(ls "$HEAD"/checkpoints/step_*.pt | tail -n 1)
"$PY" main_nerf.py "$TALK" --workspace "$TORSO" "${BLEND_ARGS[@]}" --torso --head_ckpt "$HEAD_CKPT" \
    --train_epoch 10 | tee "$OUT/blendshape_torso.log"
step "11/11 NeRFBlendShape: test on the held-out frames (head over torso over background)"
"$PY" main_nerf.py "$TALK" --workspace "$TORSO" "${BLEND_ARGS[@]}" --test --orbit_frames 50 \
    | tee "$OUT/blendshape_test.log"

step "done"
close_step
echo "Time per step (wall and CPU seconds; the CPU time is what the step costs on an idle machine"
echo "with one thread, and an upper bound of its wall time there):"
for (( i = 0; i < ${#STEP_WALL[@]} - 1; i++ )); do
    printf '  %-8s wall %5ss  cpu %5ss\n' "${STEP_NAMES[$i]%% *}" "${STEP_WALL[$i]}" "${STEP_CPU[$i]}"
done
cpu_seconds
printf '  %-8s wall %5ss  cpu %5ss\n' total "$(( $(date +%s) - start ))" "$CPU"
echo "Results:"
grep -h "^trained to step" "$OUT/train.log" | sed 's/;.*//; s/^/  MoFaNeRF: /' || true
grep -h "^expression-difference ratio" "$OUT/expressions.log" | sed 's/^/  /' || true
grep -h "^held-out views" "$OUT/fit.log" | sed 's/^/  fit of identity 5: /' || true
grep -h "^held-out:" "$OUT/refine.log" | sed 's/^/  RefineNet /' || true
grep -h "^trained the head" "$OUT/blendshape_head.log" | sed 's/ (.*//; s/^/  NeRFBlendShape: /' || true
grep -h "^held-out PSNR" "$OUT/blendshape_test.log" | sed 's/; checkpoint.*//; s/^/  NeRFBlendShape head + torso: /' || true
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
  talking head         $TALK/talk.mp4           (dataset and ground truth beside it)
  NeRFBlendShape       $HEAD/ (head), $TORSO/ (torso; validation PNGs, checkpoints)
  NeRFBlendShape test  $TORSO/results/         (reenact.mp4, reenact_vs_gt.mp4, orbit.mp4, metrics.json)
MSG
