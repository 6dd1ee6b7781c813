"""The trainable NeRFBlendShape head: field + occupancy grid + losses, driven by the engine's Trainer.

:class:`NeRFBlendShape` contributes what the one training loop asks of a model
(``docs/architecture.md``, Engine): ``param_groups`` (hash tables; MLPs with weight decay),
``training_step`` (marched render of the step's rays of one frame, then the losses of
:mod:`facenerf.models.blendshape.losses` by phase: photometric L1 always, the mask loss during
the first ``mask_until`` of the steps, the patch loss from ``patch_from`` on when enabled, the
sparsity regulariser always) and ``on_step_end`` (expression-aware occupancy-grid updates every
``update_extra_interval`` steps with ``--cuda_ray``). The occupancy grid's buffers ride in the
checkpoint. Without ``--cuda_ray`` the grid stays all-occupied, so every marching step inside
the box is sampled (the straightforward reference).

**Torso mode** (``--torso --head_ckpt``): the model also holds the 2-D
:class:`~facenerf.models.blendshape.torso.TorsoNet` (one code per training frame); the head is
frozen and only the torso trains, on its own target - the torso over the background against the
torso layer (``torso_imgs``) over the same background - with its occupancy refreshed from the
step's frame every ``update_extra_interval`` steps. Renders put the head over the torso over the
background (:func:`~facenerf.models.blendshape.torso.composite`), the torso with frame 0's code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facenerf.core.cameras import Intrinsics
from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.rays import image_rays
from facenerf.core.renderer import (DEFAULT_CHUNK_RAYS, MarchSettings, auto_chunk_rays, render_image_marched,
                                    render_rays_marched)
from facenerf.metrics import mse_to_psnr
from facenerf.models.blendshape.config import BlendShapeRunConfig
from facenerf.models.blendshape.field import BlendShapeField
from facenerf.models.blendshape.losses import PatchLoss, mask_l1, photometric_l1, sparsity_l1
from facenerf.models.blendshape.torso import TorsoNet, pixel_coords, pose_vector, torso_loss, torso_over_background

MODEL_NAME = "nerfblendshape"
TRAIN_STOP_EPS = 1e-4   # rays stop once their transmittance is below this (training, reference §2.2)
TEST_STOP_EPS = 1e-2    # ... and at inference
RENDER_SAMPLES_PER_RAY = 64  # field evaluations per ray budgeted when sizing a GPU render call (renders take ~5)


@dataclass(frozen=True)
class LossSchedule:
    """Which loss terms are active at a step (fractions of ``total_steps``)."""

    total_steps: int
    mask_until: float
    patch_from: float
    use_patch: bool

    def mask_active(self, step: int) -> bool:
        return step < self.mask_until * self.total_steps

    def patch_active(self, step: int) -> bool:
        return self.use_patch and step >= self.patch_from * self.total_steps


class NeRFBlendShape(nn.Module):
    """The head model (see the module docstring).

    Args:
        run: the resolved run config (``expr_dim`` and ``bound`` set).
        expr_max, expr_min: ``[K]`` training-set coefficient range.
        total_steps: training length (for the loss phases; 1 when only rendering).
    """

    def __init__(self, run: BlendShapeRunConfig, expr_max: Tensor, expr_min: Tensor, total_steps: int = 1,
                 torso_frames: int = 0):
        super().__init__()
        self.run = run
        self.field = BlendShapeField(run.model, run.scene.bound, expr_max, expr_min)
        self.grid = OccupancyGrid(self.field.aabb, run.scene.grid_size)
        t = run.train
        self.schedule = LossSchedule(max(int(total_steps), 1), t.mask_until, t.patch_from, t.use_patch_loss)
        self.patch_loss: PatchLoss | None = None  # set by training when the patch loss is used
        self.torso = TorsoNet(run.torso, torso_frames) if t.torso else None
        self._torso_pose: tuple[Tensor, int] | None = None  # (pose [6], frame) of the last torso step
        if self.torso is not None:
            self.field.requires_grad_(False)  # torso mode: the head is frozen

    @property
    def expr_dim(self) -> int:
        return self.field.expr_dim

    def march_settings(self, training: bool) -> MarchSettings:
        """Marching of training batches and of image renders. A GPU renders as many rays per call
        as its free memory allows (a whole 512^2 frame on a large one): each call costs a few
        hundred kernel launches whatever its size, so small chunks would cap the frame rate."""
        chunk = DEFAULT_CHUNK_RAYS
        device = self.grid.density.device
        if not training and device.type == "cuda":
            width = max(self.run.model.hidden_dim, self.run.model.hidden_dim_color, self.field.meta.out_dim)
            chunk = auto_chunk_rays(device, RENDER_SAMPLES_PER_RAY, width)
        return MarchSettings(step_size=self.run.scene.step_size, perturb=training, chunk_rays=chunk,
                             early_stop_eps=TRAIN_STOP_EPS if training else TEST_STOP_EPS)

    # ------------------------------------------------------------------ engine interface
    def param_groups(self) -> dict[str, list[dict]]:
        if self.torso is not None:
            return {"main": self.torso.param_groups()}
        lr = self.run.train.lr
        mlps = [p for name, p in self.field.named_parameters() if name != "tables"]
        return {"main": [{"params": [self.field.tables], "lr": lr, "name": "tables"},
                         {"params": mlps, "lr": lr, "weight_decay": self.run.train.weight_decay, "name": "mlps"}]}

    def torso_step(self, batch: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Torso mode: the torso over the background against the torso layer over the same background."""
        alpha, rgb = self.torso(batch["coords"], batch["pose"], batch["frame"])
        bg, target = batch["background"], batch["rgba"]
        out = torso_loss(rgb, alpha, target, bg, self.run.torso.entropy_weight)
        self._torso_pose = (batch["pose"].detach(), int(batch["frame"]))
        with torch.no_grad():
            mse = ((torso_over_background(rgb, alpha, bg) - torso_over_background(target[:, :3], target[:, 3:], bg))
                   ** 2).mean()
        return {"main": out["loss"]}, {"psnr": mse_to_psnr(mse), "entropy": out["entropy"].detach()}

    def training_step(self, batch: dict, step: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        if self.torso is not None:
            return self.torso_step(batch)
        head = self.field.bind(batch["coefficients"])
        out = render_rays_marched(batch["rays"], head, self.grid, self.march_settings(training=True))
        opacity = out["opacity"]
        rgb = out["rgb"] + (1.0 - opacity)[:, None] * batch["background"]  # [N, 3] over bc.jpg
        n, target, t = batch["n_random"], batch["rgb"], self.run.train
        l1 = photometric_l1(rgb[:n], target[:n])
        total = l1
        scalars = {"psnr": mse_to_psnr(((rgb[:n] - target[:n]) ** 2).mean().detach()),  # one-element tensors,
                   "samples_per_ray": out["n_samples"][:n].float().mean()}  # copied to the host together
        if self.schedule.mask_active(step) and t.lambda_mask > 0:
            mask = mask_l1(opacity[:n], batch["mask"][:n])
            total = total + t.lambda_mask * mask
            scalars["mask"] = mask.detach()
        if batch["patch"] > 0:
            side = batch["patch"]
            pred, gt = rgb[n:].reshape(-1, side, side, 3), target[n:].reshape(-1, side, side, 3)
            perceptual = (self.patch_loss or PatchLoss())(pred, gt)
            total = total + t.lambda_patch * perceptual + t.lambda_patch_l1 * photometric_l1(pred, gt)
            scalars["patch"] = perceptual.detach()
        if t.lambda_reg > 0:
            reg = sparsity_l1(self.field.expression_tables())
            total = total + t.lambda_reg * reg
            scalars["reg"] = reg.detach()
        return {"main": total}, scalars

    def on_step_end(self, step: int, scalars: Mapping[str, float] | None = None) -> None:
        scene = self.run.scene
        if not (scene.update_extra_interval > 0 and (step + 1) % scene.update_extra_interval == 0):
            return
        if self.torso is not None:
            if self._torso_pose is not None:  # the torso's occupancy from the step's (random) training frame
                self.torso.update_occupancy(*self._torso_pose)
        elif scene.cuda_ray:
            self.update_grid(step)

    def update_grid(self, step: int | None = None) -> None:
        """One expression-aware occupancy-grid update (``step`` None: every cell)."""
        scene = self.run.scene
        self.grid.update(self.field.expression_density_fn(), step=step, decay=scene.grid_decay,
                         threshold=scene.density_thresh, warmup_steps=scene.grid_warmup)

    # ------------------------------------------------------------------ rendering
    @torch.no_grad()
    def render_view(self, pose: Tensor, expression: Tensor, K: Intrinsics, near: float, far: float,
                    pixel_center: float, background: Tensor) -> dict[str, Tensor]:
        """A whole image: pose [4, 4] camera-to-head, raw coefficients [K], background [H, W, 3]
        -> ``rgb`` [H, W, 3] over the background, ``opacity`` [H, W], ``depth`` [H, W]."""
        device = self.field.tables.device
        pose = pose.to(device).float()
        rays = image_rays(K, pose, near, far, pixel_center)
        head = self.field.bind(expression.to(device).float())
        out = render_image_marched(rays, head, self.grid, self.march_settings(training=False), K.height, K.width)
        bg = background.to(device).float()  # [H, W, 3]
        if self.torso is not None:  # head over torso over background
            alpha, rgb = self.torso.render(pixel_coords(K.height, K.width, device), pose_vector(pose))
            bg = torso_over_background(rgb, alpha, bg.reshape(-1, 3)).reshape(bg.shape)
        return {"rgb": out["rgb"] + (1.0 - out["opacity"])[..., None] * bg, "opacity": out["opacity"],
                "depth": out["depth"]}
