"""A tiny NeRF trained on the procedural scene: the core demo's model, data and outputs.

Everything here uses the shared pieces: cameras and rays (:mod:`facenerf.core`), the
renderer, the one training loop (:class:`facenerf.engine.trainer.Trainer`), the metrics and
the image/video writers. :func:`run_core_demo` does the whole run and returns a summary.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from facenerf.config import option, to_dict
from facenerf.core.cameras import Intrinsics, orbit_poses
from facenerf.core.encodings import FrequencyEncoding
from facenerf.core.mlp import MLP
from facenerf.core.rays import RayBundle, image_rays
from facenerf.core.renderer import DEFAULT_CHUNK_RAYS, RenderSettings, render_image, render_rays
from facenerf.demos.procedural_scene import Scene, default_scene, render_views
from facenerf.engine.trainer import TrainerConfig
from facenerf.errors import FaceNerfError
from facenerf.io import VIDEO_FPS
from facenerf.metrics import psnr, ssim
from facenerf.runtime import RunSettings

MODEL_NAME = "tiny-nerf-demo"


@dataclass(frozen=True)
class CoreDemoConfig:
    """Everything the core demo's run depends on (stored in its checkpoints)."""

    out: str = option("demo_out/core", "output directory")
    steps: int = option(800, "training steps")
    resolution: int = option(32, "image width = height in pixels")
    views_per_ring: int = option(12, "training cameras per ring (two rings)")
    heldout_views: int = option(4, "held-out cameras between the rings")
    n_rays: int = option(512, "rays per training step")
    n_samples: int = option(24, "samples per ray")
    n_freqs: int = option(6, "frequency-encoding octaves")
    width: int = option(64, "MLP hidden width")
    depth: int = option(3, "MLP hidden layers")
    lr: float = option(5e-3, "initial Adam learning rate")
    warmup_steps: int = option(50, "steps of linear learning-rate warm-up")
    lr_decay_rate: float = option(TrainerConfig.lr_decay_rate, "learning-rate factor reached at the last step")
    chunk_rays: int = option(DEFAULT_CHUNK_RAYS, "rays per pass when rendering images")
    log_every: int = option(50, "steps between log lines")
    eval_every: int = option(400, "steps between held-out evaluations (0 = end only)")
    save_every: int = option(400, "steps between checkpoints (0 = end only)")
    video_frames: int = option(36, "frames of the orbit video")
    video_scale: int = option(2, "video resolution as a multiple of --resolution")
    video_upscale: int = option(2, "nearest-neighbour upscaling of the video frames")
    fps: int = option(VIDEO_FPS, "orbit video frame rate")
    png_upscale: int = option(4, "nearest-neighbour upscaling of the comparison PNG")
    no_resume: bool = option(False, "refuse to continue from checkpoints in --out")
    runtime: RunSettings = field(default_factory=RunSettings)

    def __post_init__(self) -> None:
        positive = ("steps", "resolution", "views_per_ring", "heldout_views", "n_rays", "n_samples", "width",
                    "depth", "chunk_rays", "video_frames", "video_scale", "video_upscale", "fps", "png_upscale")
        for name in positive:
            if getattr(self, name) < 1:
                raise FaceNerfError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.resolution < 11:
            raise FaceNerfError(f"--resolution {self.resolution} is below the 11-pixel SSIM window; use 16 or more")
        if self.warmup_steps < 0:
            raise FaceNerfError(f"--warmup_steps must be 0 or more, got {self.warmup_steps}")
        if self.lr <= 0 or not 0 < self.lr_decay_rate <= 1:
            raise FaceNerfError("--lr must be > 0 and --lr_decay_rate in (0, 1]")


class TinyNeRF(nn.Module):
    """Frequency-encoded positions -> small MLP -> (density, rgb); view-independent colour.

    Positions are divided by ``scene_bound`` so the scene sits in the unit ball before encoding.
    """

    def __init__(self, cfg: CoreDemoConfig, scene_bound: float):
        super().__init__()
        self.encoding = FrequencyEncoding(3, cfg.n_freqs)
        self.mlp = MLP(self.encoding.out_dim, cfg.width, cfg.depth, 4, activation="relu", init="default")
        self.lr = cfg.lr
        self.scene_bound = scene_bound
        self.render_settings = RenderSettings(n_samples=cfg.n_samples, n_importance=0, chunk_rays=cfg.chunk_rays)

    def field(self, points: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """points [M, 3] world, directions [M, 3] (unused) -> density [M] >= 0, rgb [M, 3] in [0, 1]."""
        raw = self.mlp(self.encoding(points / self.scene_bound))   # [M, 4]
        density = nn.functional.softplus(raw[:, 0] - 1.0) * 10.0
        return density, torch.sigmoid(raw[:, 1:])

    def param_groups(self) -> dict[str, list[dict]]:
        return {"main": [{"params": list(self.parameters()), "lr": self.lr, "name": "field"}]}

    def training_step(self, batch: dict, step: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """batch: ``{"rays": RayBundle of R rays, "rgb": [R, 3]}``; MSE photometric loss."""
        settings = replace(self.render_settings, perturb=True)
        out = render_rays(batch["rays"], self.field, None, settings)
        loss = ((out["rgb"] - batch["rgb"]) ** 2).mean()
        return {"main": loss}, {"psnr": -10.0 * torch.log10(loss.detach().clamp_min(1e-10))}

    def render(self, K: Intrinsics, pose: Tensor, near: float, far: float) -> Tensor:
        """Full image ``[H, W, 3]`` for one camera-to-world ``pose`` [4, 4], without gradients."""
        rays = image_rays(K, pose, near, far).to(next(self.parameters()).device)
        out = render_image(rays, self.field, None, self.render_settings, K.height, K.width)
        return out["rgb"].clamp(0.0, 1.0)


@dataclass
class DemoData:
    """Ground truth for the demo. Images are ``[V, H, W, 3]`` float in [0, 1]."""

    K: Intrinsics
    near: float
    far: float
    train_poses: Tensor        # [V_train, 4, 4]
    train_images: Tensor       # [V_train, H, W, 3]
    heldout_poses: Tensor      # [V_test, 4, 4]
    heldout_images: Tensor     # [V_test, H, W, 3]
    ray_origins: Tensor        # [V_train * H * W, 3] every training pixel's ray
    ray_directions: Tensor     # [V_train * H * W, 3]
    ray_rgb: Tensor            # [V_train * H * W, 3]


def ring_poses(views_per_ring: int, pitches: tuple[float, ...], radius: float, yaw_offset: float = 0.0) -> Tensor:
    """Rings of cameras looking at the origin, one ring per pitch: ``[len(pitches) * views, 4, 4]``."""
    span = (-180.0 + yaw_offset, 180.0 + yaw_offset)
    return torch.cat([orbit_poses(views_per_ring, radius, pitch, span) for pitch in pitches])


def make_demo_data(scene: Scene, resolution: int, views_per_ring: int, heldout_views: int,
                   radius: float = 4.0, fov_deg: float = 40.0) -> DemoData:
    """Render training rings (pitch 10 and 40 degrees) and held-out views between them (pitch 25,
    yaws half-way between training yaws)."""
    K = Intrinsics.from_fov_x(resolution, resolution, math.radians(fov_deg))
    near, far = radius - scene.bound, radius + scene.bound
    train_poses = ring_poses(views_per_ring, (10.0, 40.0), radius)
    heldout_poses = ring_poses(heldout_views, (25.0,), radius, yaw_offset=180.0 / views_per_ring)
    train_images = render_views(scene, K, train_poses)
    heldout_images = render_views(scene, K, heldout_poses)
    bundles = [image_rays(K, pose, near, far) for pose in train_poses]
    return DemoData(K, near, far, train_poses, train_images, heldout_poses, heldout_images,
                    torch.cat([b.origins for b in bundles]), torch.cat([b.directions for b in bundles]),
                    train_images.reshape(-1, 3))


class RandomRayBatches:
    """``batches(step)``: ``n_rays`` training pixels drawn at random, reproducibly per step."""

    def __init__(self, data: DemoData, n_rays: int, seed: int):
        self.data, self.n_rays, self.seed = data, n_rays, seed

    def __call__(self, step: int) -> dict:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        index = torch.randint(0, self.data.ray_rgb.shape[0], (self.n_rays,), generator=generator)  # [R]
        n = index.numel()
        rays = RayBundle(self.data.ray_origins[index], self.data.ray_directions[index],
                         torch.full((n, 1), self.data.near), torch.full((n, 1), self.data.far))
        return {"rays": rays, "rgb": self.data.ray_rgb[index]}


def mean_colour_baseline(data: DemoData) -> float:
    """PSNR on the held-out views of predicting the training images' mean colour everywhere."""
    mean = data.train_images.reshape(-1, 3).mean(dim=0)                  # [3]
    return float(psnr(mean.expand_as(data.heldout_images), data.heldout_images))


def evaluate_heldout(model: TinyNeRF, data: DemoData) -> dict:
    """Render every held-out view; PSNR/SSIM over all of them and GT|prediction of the first."""
    preds = torch.stack([model.render(data.K, pose, data.near, data.far).cpu() for pose in data.heldout_poses])
    target = data.heldout_images
    per_view = [float(psnr(p, t)) for p, t in zip(preds, target)]
    scalars = {"psnr": float(psnr(preds, target)), "ssim": float(ssim(preds.permute(0, 3, 1, 2),
                                                                      target.permute(0, 3, 1, 2)))}
    image = torch.cat([target[0], preds[0]], dim=1)                       # [H, 2W, 3]
    return {"scalars": scalars, "images": {"heldout_gt_pred": image}, "preds": preds, "per_view": per_view}


def comparison_grid(targets: Tensor, preds: Tensor, upscale: int) -> np.ndarray:
    """Rows of ``GT | prediction | 4x abs error`` per view, nearest-upscaled: ``[V*H*u, 3*W*u, 3]``."""
    error = ((preds - targets).abs() * 4.0).clamp(0, 1)
    rows = [torch.cat([t, p, e], dim=1) for t, p, e in zip(targets, preds, error)]
    grid = torch.cat(rows, dim=0).numpy()
    return np.repeat(np.repeat(grid, upscale, axis=0), upscale, axis=1)


def orbit_frames(model: TinyNeRF, scene: Scene, data: DemoData, n_frames: int, scale: int,
                 upscale: int = 1, progress: bool = False) -> list[np.ndarray]:
    """Frames ``[H*s*u, 2*W*s*u, 3]`` of a 360-degree orbit at pitch 25: ground truth | prediction,
    rendered at ``scale`` times the training resolution and nearest-upscaled by ``upscale``."""
    K = data.K.scaled(scale)
    poses = ring_poses(n_frames, (25.0,), float(data.train_poses[0, :3, 3].norm()))
    truths = render_views(scene, K, poses)
    from tqdm import tqdm

    frames = []
    for gt, pose in tqdm(list(zip(truths, poses)), desc="orbit video", unit="frame", disable=None if progress else True):
        frame = torch.cat([gt, model.render(K, pose, data.near, data.far).cpu()], dim=1).numpy()
        frames.append(np.repeat(np.repeat(frame, upscale, axis=0), upscale, axis=1))
    return frames


def run_core_demo(demo: CoreDemoConfig, device: torch.device, out_dir: Path) -> dict:
    """Render the scene, train the tiny NeRF with the Trainer, evaluate held-out views, and
    write ``metrics.json``, ``heldout_gt_vs_pred.png`` and ``orbit.mp4`` into ``out_dir``."""
    from facenerf.engine.trainer import Trainer
    from facenerf.io import write_image, write_json, write_video

    start = time.time()
    scene = default_scene()
    data = make_demo_data(scene, demo.resolution, demo.views_per_ring, demo.heldout_views)
    model = TinyNeRF(demo, scene.bound)
    cfg = TrainerConfig(out_dir=out_dir, max_steps=demo.steps, lr_decay_steps=demo.steps,
                        lr_decay_rate=demo.lr_decay_rate, warmup_steps=demo.warmup_steps, log_every=demo.log_every,
                        eval_every=demo.eval_every, save_every=demo.save_every, amp=demo.runtime.amp,
                        progress=demo.runtime.progress, resume=not demo.no_resume)
    trainer = Trainer(model, RandomRayBatches(data, demo.n_rays, demo.runtime.seed), cfg, device, to_dict(demo),
                      evaluate=lambda m, step: evaluate_heldout(m, data), model_name=MODEL_NAME)
    train_start = time.time()
    result = trainer.fit()
    train_seconds = time.time() - train_start
    model.eval()
    with torch.no_grad():
        final = evaluate_heldout(model, data)
        frames = orbit_frames(model, scene, data, demo.video_frames, demo.video_scale, demo.video_upscale,
                              progress=demo.runtime.progress)
    outputs = {
        "comparison_png": write_image(out_dir / "heldout_gt_vs_pred.png",
                                      comparison_grid(data.heldout_images, final["preds"], demo.png_upscale)),
        "orbit_mp4": write_video(out_dir / "orbit.mp4", frames, fps=demo.fps),
    }
    summary = {
        "heldout_psnr": final["scalars"]["psnr"], "heldout_ssim": final["scalars"]["ssim"],
        "heldout_psnr_per_view": final["per_view"], "mean_colour_baseline_psnr": mean_colour_baseline(data),
        "steps": result["step"], "resumed_from": result["resumed_from"], "train_seconds": round(train_seconds, 2),
        "wall_seconds": round(time.time() - start, 2), "device": str(device),
        "resolution": demo.resolution, "train_views": len(data.train_poses), "heldout_views": len(data.heldout_poses),
    }
    outputs["metrics_json"] = out_dir / "metrics.json"
    write_json(outputs["metrics_json"], summary, indent=2)
    outputs.update(checkpoint=result.get("checkpoint"), train_log=result["log"],
                   tensorboard=out_dir / "tensorboard")
    return {"summary": summary, "outputs": {k: str(v) for k, v in outputs.items()}}
