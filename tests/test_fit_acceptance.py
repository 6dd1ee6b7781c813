"""Acceptance: fitting a held-out identity beats the mean-code start on its held-out views.

A tiny MoFaNeRF is trained here with the project's training loop (Trainer + MoFaNeRFData +
MoFaNeRF.training_step) on analytic heads: ellipsoids whose size follows the first two shape
code entries and whose upper/lower halves take the two colours of the identity's UV map.
Six identities are trained; the seventh is held out, rendered in the render.py layout
(``{id}/neutral/{view}.png`` + ``transforms.json``), fitted from its frontal view with
``run_fit``'s fitting mode, and scored on its other views.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from facenerf.cli import parse_args
from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import image_rays
from facenerf.core.renderer import RenderSettings
from facenerf.data.mofanerf_dataset import FrameTable, IdentityData, MoFaNeRFData
from facenerf.data.ray_batches import LandmarkSampling, PixelSamplerConfig
from facenerf.engine.trainer import Trainer, TrainerConfig
from facenerf.fitting import workflow
from facenerf.fitting.options import build_fit_parser, fit_command_from_args
from facenerf.fitting.stats import compute_code_statistics
from facenerf.io import write_image
from facenerf.models.mofanerf.checkpoints import load_source, save_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.preprocess.training.rig import mofanerf_pose

SIZE = 24
K = Intrinsics(SIZE, SIZE, 1200 * SIZE / 512, 1200 * SIZE / 512, SIZE / 2, SIZE / 2)
VIEWS = [(p, y) for p in (-15, 0, 15) for y in range(-60, 61, 30)]
ARCH = {"multires": 4, "multires_views": 1, "netdepth": 3, "netwidth": 32, "netdepth_fine": 3, "netwidth_fine": 0,
        "xyz_depth": 1, "skip": 2, "input_ch_shapeCodes": 50, "input_ch_textureCodes": 8, "input_ch_expCodes": 4,
        "n_expressions": 1, "ism_width": 16, "ism_depth": 1, "tex_size": 8, "tex_channels": "8", "tex_hidden": 16,
        "tex_decoder_depth": 1, "tex_logstd_head": "false", "N_samples": 24, "N_importance": 0}


def head(shape: np.ndarray, top, bottom, c2w: torch.Tensor) -> torch.Tensor:
    """Exact render ``[SIZE, SIZE, 3]`` of an ellipsoid head (black background, flat colours)."""
    rays = image_rays(K, c2w, 8.0, 26.0)
    o, d = rays.origins.double(), rays.directions.double()
    radii = torch.tensor([1.6 * (1 + 0.2 * shape[0]), 2.0 * (1 + 0.2 * shape[1]), 1.7], dtype=torch.float64)
    a = ((d / radii) ** 2).sum(-1)
    b = 2 * (o / radii * d / radii).sum(-1)
    c = ((o / radii) ** 2).sum(-1) - 1
    disc = b * b - 4 * a * c
    t = (-b - disc.clamp_min(0).sqrt()) / (2 * a)
    upper = (o + t[:, None] * d)[:, 1] > 0
    colour = torch.where(upper[:, None], torch.tensor(top), torch.tensor(bottom))
    return torch.where((disc > 0)[:, None], colour, torch.zeros(3, dtype=torch.float64)).reshape(SIZE, SIZE, 3).float()


def people(n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.uniform(-1, 1, 2), rng.uniform(0.1, 0.95, 3), rng.uniform(0.1, 0.95, 3)) for _ in range(n)]


def train_tiny(root: Path, heads) -> tuple[MoFaNeRF, list[IdentityData], MoFaNeRFData]:
    paths, ids, poses, identities = [], [], [], []
    for i, (shape, top, bottom) in enumerate(heads):
        uv = np.zeros((8, 8, 3), np.float32)
        uv[:4], uv[4:] = top, bottom
        write_image(root / "uv" / f"{i}.png", uv)
        code = np.zeros(50, np.float32)
        code[:2] = shape
        identities.append(IdentityData(i + 1, code, root / "uv" / f"{i}.png", None))
        for v, (pitch, yaw) in enumerate(VIEWS):
            paths.append(write_image(root / "train" / f"{i}_{v}.png", head(shape, top, bottom, mofanerf_pose(pitch, yaw))))
            ids.append(i)
            poses.append(mofanerf_pose(pitch, yaw).numpy())
    n = len(paths)
    frames = FrameTable(paths, np.array(ids), np.zeros(n, np.int64), np.stack(poses), np.zeros(n, bool), K)
    sampler = PixelSamplerConfig(n_rays=128, landmarks=LandmarkSampling(lm_share=0.0), mask_share=0.5, precrop_iters=0)
    data = MoFaNeRFData(frames, identities, sampler, near=8.0, far=26.0, tex_size=8, seed=0)
    torch.manual_seed(0)
    cfg = MoFaNeRFConfig(multires=4, multires_views=1, netdepth=3, netwidth=32, netdepth_fine=3, netwidth_fine=0,
                         xyz_depth=1, skip=2, shape_dim=50, texture_dim=8, exp_dim=4, n_expressions=1, ism_width=16,
                         ism_depth=1, tex_size=8, tex_channels=(8,), tex_hidden=16, tex_decoder_depth=1,
                         tex_logstd_head=False)
    model = MoFaNeRF(cfg, lrate=2e-3, train_settings=RenderSettings(n_samples=24, n_importance=0, perturb=True))
    loop = TrainerConfig(out_dir=root / "run", max_steps=250, lr_decay_steps=750, log_every=1000, eval_every=0,
                         save_every=0, progress=False, tensorboard=False)
    Trainer(model, data.training_batch, loop, torch.device("cpu"), {}, None, "mofanerf").fit()
    return model, identities, data


def write_heldout(root: Path, shape, top, bottom) -> Path:
    """The held-out identity in the render.py layout; returns its frontal view."""
    folder = root / "multiViewImages" / "7" / "neutral"
    frames = []
    for pitch, yaw in VIEWS:
        name = f"{pitch}_{yaw}"
        write_image(folder / f"{name}.png", head(shape, top, bottom, mofanerf_pose(pitch, yaw)))
        frames.append({"view": name, "expression": 0, "transform_matrix": mofanerf_pose(pitch, yaw).tolist()})
    header = {"w": SIZE, "h": SIZE, "fl_x": K.fx, "fl_y": K.fy, "cx": K.cx, "cy": K.cy, "near": 8.0, "far": 26.0,
              "identity": "7", "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(header))
    return folder / "0_0.png"


def test_fit_of_a_heldout_identity_beats_the_mean_code_start(tmp_path):
    heads = people(7)
    model, identities, data = train_tiny(tmp_path, heads[:6])
    ckpt = save_mofanerf(tmp_path / "ckpt" / "step_00000250.pt", model, step=250)
    shapes = torch.stack([torch.from_numpy(p.shape_code) for p in identities])
    stats = compute_code_statistics(model, shapes, [data.uv(i) for i in range(len(identities))], step=250)
    stats.save(tmp_path / "ckpt" / "code_stats.pt")
    image = write_heldout(tmp_path, *heads[6])
    argv = [f"--{k}={v}" for k, v in ARCH.items()] + [
        "--ckpt", str(ckpt), "--filePath", str(image), "--device", "cpu", "--progress", "false",
        "--num_iterations", "60", "--fit_size", "24", "--fit_rays", "128", "--fit_scales", "0.5,1",
        "--fit_level_starts", "0,0.4", "--lr_shape", "0.02", "--lr_expression", "0.02", "--lr_texture", "0.02",
        "--lr_gain", "0.005", "--eval_views", "14"]
    cmd = fit_command_from_args(parse_args(build_fit_parser(), argv))
    loaded = load_source(cmd.source)
    summary = workflow.run_fitting(cmd, loaded, workflow.load_code_statistics(cmd.code_stats, loaded),
                                   torch.device("cpu"))
    gain = summary["psnr_heldout"] - summary["psnr_heldout_start"]
    print(f"held-out PSNR: mean-code start {summary['psnr_heldout_start']:.2f} dB -> fit "
          f"{summary['psnr_heldout']:.2f} dB (gain {gain:.2f} dB)")
    assert gain > 0.5
    assert Path(summary["fit_file"]).is_file() and Path(summary["loss_curve"]).is_file()
