"""End to end: trainingDataPreprocess/train.py (with bad pairs, then resumed) and test.py, as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from facenerf.data.pairs import make_degraded_pairs
from facenerf.io import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--load_size", "32", "--batch_size", "2", "--ngf", "4", "--n_downsample_global", "2",
        "--n_blocks_global", "1", "--ndf", "4", "--n_layers_D", "2", "--val_fraction", "0.3",
        "--eval_every", "2", "--save_every", "2", "--log_every", "1", "--device", "cpu", "--no_progress"]


def _run(script, *args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(ROOT / "trainingDataPreprocess" / script), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_train_resume_and_refine(tmp_path):
    data = tmp_path / "dataset"
    make_degraded_pairs(data, n_procedural=4, size=32, crops=2, seed=0, report=lambda s: None)
    write_image(data / "train_A" / "orphan" / "e" / "0.png", np.zeros((8, 8, 3)))  # no ground truth
    (data / "train_A" / "proc00003" / "degraded" / "1.png").write_bytes(b"corrupt")

    first = _run("train.py", "--name", "t", "--dataroot", data, "--max_steps", 2, *TINY, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "no ground truth for render orphan/e/0" in first.stdout
    assert "unreadable image" in first.stdout and "proc00003/degraded/1.png" in first.stdout
    assert "7 pairs; skipped 1 renders without ground truth" in first.stdout
    run_dir = tmp_path / "logs" / "refine" / "t"
    assert (run_dir / "checkpoints" / "step_00000002.pt").is_file() and (run_dir / "config.txt").is_file()
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert {"psnr_input", "psnr_refined", "ssim_input", "ssim_refined"} <= set(summary["eval"])

    again = _run("train.py", "-c", run_dir / "config.txt", "--max_steps", 4, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout + again.stderr and "step 4" in again.stdout
    assert (run_dir / "checkpoints" / "step_00000004.pt").is_file()

    renders = tmp_path / "fit" / "renders"
    write_image(renders / "view_000.png", np.random.default_rng(0).random((24, 40, 3)))
    refined = _run("test.py", "--name", "t", "--nerf_folder", f"{renders}/", "--device", "cpu", "--no_progress",
                   cwd=tmp_path)
    assert refined.returncode == 0, refined.stderr
    out = tmp_path / "fit" / "renders_refined" / "view_000.png"
    assert out.is_file() and read_image(out).shape == (24, 40, 3)
    assert "refined 1 images into" in refined.stdout and "step_00000004.pt" in refined.stdout


def test_user_errors_are_one_line(tmp_path):
    missing = _run("train.py", "--dataroot", tmp_path / "nope", "--max_steps", 1, *TINY, cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: render (--nerf_folder) folder not found")
    assert "Traceback" not in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "renders").mkdir()
    no_ckpt = _run("test.py", "--name", "none", "--nerf_folder", tmp_path / "renders", cwd=tmp_path)
    assert no_ckpt.returncode == 2 and no_ckpt.stderr.startswith("error: no RefineNet checkpoint")
    bad_vgg = _run("train.py", "--vgg_weights", tmp_path / "vgg.pth", "--dataroot", tmp_path, "--nerf_folder", ".",
                   "--gt_folder", ".", *TINY, cwd=tmp_path)
    assert bad_vgg.returncode == 2 and "VGG-19 weights not found" in bad_vgg.stderr
