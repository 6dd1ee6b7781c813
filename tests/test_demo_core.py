"""The procedural scene's exact ray casting and a tiny end-to-end run of the core demo."""

import json
import math

import numpy as np
import pytest
import torch

from facenerf.core.rays import RayBundle
from facenerf.demos.procedural_scene import Scene, cast_rays
from facenerf.errors import FaceNerfError
from facenerf.tools import core_demo


def _rays(origins, directions):
    origins = torch.tensor(origins, dtype=torch.float32)
    directions = torch.tensor(directions, dtype=torch.float32)
    n = origins.shape[0]
    return RayBundle(origins, directions, torch.zeros(n, 1), torch.full((n, 1), 100.0))


def test_cast_rays_analytic_hits():
    scene = Scene(sphere_centers=((0.0, 0.0, 0.0),), sphere_radii=(0.5,), sphere_colors=((0.8, 0.4, 0.2),),
                  box_mins=((2.0, -0.5, -0.5),), box_maxs=((3.0, 0.5, 0.5),), box_colors=((0.2, 0.6, 1.0),),
                  light_dir=(0.0, 0.0, 1.0), ambient=0.25, checker_cells=0.0)
    out = cast_rays(scene, _rays(
        [[0.0, 0.0, 4.0], [2.5, 0.0, 4.0], [0.0, 3.0, 4.0], [0.0, 0.0, 4.0]],
        [[0.0, 0.0, -1.0], [0.0, 0.0, -2.0], [0.0, 0.0, -1.0], [0.1, 0.0, -1.0]]))
    # sphere, head-on: t = 4 - 0.5, normal (0, 0, 1) faces the light -> full albedo
    assert float(out["depth"][0]) == pytest.approx(3.5, abs=1e-5)
    assert torch.allclose(out["rgb"][0], torch.tensor([0.8, 0.4, 0.2]), atol=1e-5)
    # box front face z = 0.5 along an unnormalised direction of length 2: t = 3.5 / 2
    assert float(out["depth"][1]) == pytest.approx(1.75, abs=1e-5)
    assert torch.allclose(out["rgb"][1], torch.tensor([0.2, 0.6, 1.0]), atol=1e-5)
    # a miss is black background
    assert not bool(out["hit"][2]) and torch.equal(out["rgb"][2], torch.zeros(3))
    # oblique sphere hit: shade = ambient + (1 - ambient) * n_z
    d = torch.tensor([0.1, 0.0, -1.0])
    o = torch.tensor([0.0, 0.0, 4.0])
    a, b, c = float(d @ d), float(2 * o @ d), float(o @ o) - 0.25
    t = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)
    normal_z = float((o + t * d)[2] / 0.5)
    assert bool(out["hit"][3]) and 0.5 < normal_z < 0.99
    assert float(out["depth"][3]) == pytest.approx(t, abs=1e-5)
    assert float(out["rgb"][3, 0]) == pytest.approx(0.8 * (0.25 + 0.75 * normal_z), abs=1e-5)


TINY = ["--steps", "6", "--resolution", "16", "--views_per_ring", "3", "--heldout_views", "1", "--n_rays", "64",
        "--n_samples", "8", "--width", "16", "--depth", "1", "--n_freqs", "2", "--warmup_steps", "2",
        "--video_frames", "2", "--video_scale", "1", "--video_upscale", "1", "--png_upscale", "2",
        "--eval_every", "3", "--save_every", "3", "--progress", "false", "--device", "cpu"]


def test_core_demo_tiny_run_writes_everything(tmp_path, capsys):
    import imageio.v2 as imageio

    out = tmp_path / "core"
    assert core_demo.main(["--out", str(out)] + TINY) == 0
    printed = capsys.readouterr().out
    assert "held-out PSNR" in printed and "mean-colour baseline" in printed
    for name in ("metrics.json", "heldout_gt_vs_pred.png", "orbit.mp4", "config.txt", "train_log.txt",
                 "checkpoints/step_00000006.pt"):
        assert (out / name).is_file(), name
        assert str(out / name) in printed or name.startswith("checkpoints") or name == "train_log.txt"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and math.isfinite(metrics["heldout_psnr"])
    assert 5.0 < metrics["mean_colour_baseline_psnr"] < 40.0
    png = imageio.imread(out / "heldout_gt_vs_pred.png")
    assert png.shape == (16 * 2, 3 * 16 * 2, 3)
    assert np.abs(png[:, :32].astype(int)).sum() > 0          # the ground truth is not empty
    video = imageio.mimread(out / "orbit.mp4")
    assert len(video) == 2 and video[0].shape[:2] == (16, 32)
    assert "steps = 6" in (out / "config.txt").read_text()

    # running again with the same output folder resumes from the final checkpoint (no retraining)
    assert core_demo.main(["-c", str(out / "config.txt")]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["resumed_from"].endswith("step_00000006.pt")
    assert again["heldout_psnr"] == pytest.approx(metrics["heldout_psnr"], abs=1e-4)


def test_core_demo_rejects_bad_options(tmp_path):
    with pytest.raises(FaceNerfError, match="--resolution"):
        core_demo.main(["--out", str(tmp_path), "--resolution", "8"])
    with pytest.raises(FaceNerfError, match="--steps"):
        core_demo.main(["--out", str(tmp_path), "--steps", "0"])
    with pytest.raises(FaceNerfError, match="unknown"):
        core_demo.main(["--out", str(tmp_path), "--stpes", "3"])
