"""End to end: trainingDataPreprocess/train.py (with bad pairs, then resumed) and test.py, as a user runs them."""

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facenerf.data.synthetic.degraded_pairs import DegradedPairs, make_degraded_pairs
from facenerf.io import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--load_size", "32", "--batch_size", "2", "--ngf", "4", "--n_downsample_global", "2",
        "--n_blocks_global", "1", "--ndf", "4", "--n_layers_D", "2", "--val_fraction", "0.3",
        "--eval_every", "2", "--save_every", "2", "--log_every", "1", "--device", "cpu", "--progress", "false"]


def _main(script, *args, monkeypatch, capsys):
    """Run a script's ``__main__`` in this process; return (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [script, *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "trainingDataPreprocess" / script), run_name="__main__")
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_train_resume_and_refine(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "dataset"
    make_degraded_pairs(DegradedPairs(out=str(data), procedural=4, size=32, crops=2), report=lambda s: None)
    write_image(data / "train_A" / "orphan" / "e" / "0.png", np.zeros((8, 8, 3)))  # no ground truth
    (data / "train_A" / "proc00003" / "degraded" / "1.png").write_bytes(b"corrupt")

    code, out, err = _main("train.py", "--name", "t", "--max_steps", 2, *TINY, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    assert "no ground truth for render orphan/e/0" in out
    assert "unreadable image" in out and "proc00003/degraded/1.png" in out
    assert "7 pairs; skipped 1 renders without ground truth" in out
    run_dir = tmp_path / "logs" / "refine" / "t"
    assert (run_dir / "checkpoints" / "step_00000002.pt").is_file() and (run_dir / "config.txt").is_file()
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert {"psnr_input", "psnr_refined", "ssim_input", "ssim_refined"} <= set(summary["eval"])

    code, out, err = _main("train.py", "-c", run_dir / "config.txt", "--max_steps", 4,
                           monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    assert "resumed from" in out + err and "trained to step 4" in out
    assert (run_dir / "checkpoints" / "step_00000004.pt").is_file()

    renders = tmp_path / "fit" / "renders"
    write_image(renders / "view_000.png", np.random.default_rng(0).random((24, 40, 3)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    refined = subprocess.run(  # a fresh interpreter: the script finds the package by itself
        [sys.executable, str(ROOT / "trainingDataPreprocess" / "test.py"), "--name", "t",
         "--nerf_folder", f"{renders}/", "--device", "cpu", "--progress", "false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert refined.returncode == 0, refined.stderr
    result = tmp_path / "fit" / "renders_refined" / "view_000.png"
    assert result.is_file() and read_image(result).shape == (24, 40, 3)
    assert "refined 1 images into" in refined.stdout and "step_00000004.pt" in refined.stdout


def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = _main("train.py", "--dataroot", tmp_path / "nope", "--max_steps", 1, *TINY,
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and err.startswith("error: render (--nerf_folder) folder not found")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    (tmp_path / "renders").mkdir()
    code, _, err = _main("test.py", "--name", "none", "--nerf_folder", tmp_path / "renders",
                         monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and err.startswith("error: no RefineNet checkpoint")
    code, _, err = _main("train.py", "--vgg_weights", tmp_path / "vgg.pth", *TINY, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and err.startswith("error: VGG-19 weights not found")
    code, _, err = _main("train.py", "--lambda_l1", "lots", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 2 and "--lambda_l1" in err and "invalid float value" in err
