"""The fit loop: one trained MoFaNeRF (frozen), one image, free codes + camera + colour gain.

Stages of :class:`Fitter`:

1. **prepare** - freeze the network (``eval()``, ``requires_grad = False``), build the
   resolution pyramid of the target, initialise the variables deterministically (beta and
   alpha at the code-statistics means, eps at a learned code, identity pose correction, gain 1)
   and one Adam parameter group per variable;
2. **step** - pick the level of this iteration, draw its rays (landmarks + mask, distinct
   pixels; the generator is seeded by ``(seed, iteration)`` so a resumed fit draws the same
   rays), render them through the frozen network with the current codes and pose, evaluate
   :func:`~facenerf.fitting.objective.fit_loss`, take one Adam step with this iteration's
   learning rates. The fast path (``fast_render``, the default) renders with the model's
   empty-space skipping (:mod:`facenerf.models.mofanerf.acceleration`): occupancy grids of
   the coarse and fine densities for the current codes, refreshed every ``grid_refresh`` iterations as the
   codes move (:class:`~facenerf.models.mofanerf.acceleration.FitGrid`), a gradient-free
   density-only coarse pass, early ray termination and colour only where it is visible.
   ``fast_render = False`` is the straightforward reference: both passes dense, with colour;
3. **run** - loop to the planned iteration count with a progress bar, recording the loss, the
   PSNR of the sampled rays and the PSNR on a fixed set of pixels of the finest level
   (``psnr_full``) every ``log_every`` iterations and calling ``on_iteration(fitter)`` after every
   step (the caller writes fit files and previews there). The sampled-ray PSNR of a coarse level
   is measured against that level's blurred image, so it falls at every switch to a finer level
   even when the fit improves; ``psnr_full`` uses the same pixels throughout and shows whether it
   does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from facenerf.config import option
from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import image_rays, pixel_rays
from facenerf.core.renderer import RenderSettings
from facenerf.data.ray_batches import LandmarkSampling
from facenerf.errors import FaceNerfError
from facenerf.fitting.inputs import FitTarget
from facenerf.fitting.objective import GAIN_MODES, FitVariables, FitWeights, fit_loss
from facenerf.fitting.pose import POSE_PARAMETRISATIONS
from facenerf.fitting.result import FitResult
from facenerf.fitting.sampling import build_levels, sample_fit_pixels
from facenerf.fitting.schedule import FitSchedule
from facenerf.fitting.stats import CodeStatistics
from facenerf.metrics import mse_to_psnr
from facenerf.models.mofanerf.acceleration import FitGrid
from facenerf.models.mofanerf.expressions import expression_index
from facenerf.runtime import RunSettings, autocast, host_floats

HISTORY_KEYS = ("iteration", "level", "loss", "photometric", "psnr", "psnr_full", "shape_prior", "texture_prior",
                "expression_prior", "gain_prior")
EVAL_RAYS = 1024  # fixed full-resolution pixels of psnr_full


@dataclass(frozen=True)
class FitSettings:
    """Everything that controls a fit besides the model, the image and the run settings."""

    schedule: FitSchedule = field(default_factory=FitSchedule)
    weights: FitWeights = field(default_factory=FitWeights)
    n_rays: int = option(0, "rays per iteration (0 = the training run's N_rand)", key="fit_rays")
    landmarks: LandmarkSampling = field(default_factory=LandmarkSampling)
    band_frac: float = option(0.03, "background ring sampled around the mask, fraction of the image height",
                              key="mask_band")
    pose_parametrisation: str = option("axis_angle", "rotation parametrisation of the pose correction",
                                       key="pose_param", choices=POSE_PARAMETRISATIONS)
    optimise_pose: bool = option(True, "refine the camera pose", key="fit_pose")
    gain_mode: str = option("rgb", "colour gain on the render: per channel, one value, or off", key="gain",
                            choices=GAIN_MODES)
    init_expression: str = option("neutral", "learned expression eps starts from (name or index)")
    fast_render: bool = option(True, "empty-space skipping (coarse- and fine-density occupancy grids), "
                                     "density-only coarse pass, early ray termination; "
                                     "false = the straightforward dense reference")
    grid_refresh: int = option(25, "iterations between occupancy-grid refreshes of the fast path")
    log_every: int = 10  # record the history every N iterations

    def __post_init__(self) -> None:
        if self.n_rays < 0:
            raise FaceNerfError(f"--fit_rays must be 0 or more, got {self.n_rays}")


def freeze(model) -> None:
    """Put ``model`` in eval mode and stop gradients to every network weight."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


class Fitter:
    """Fits ``model`` to ``target``; see the module docstring for the stages."""

    def __init__(self, model, target: FitTarget, stats: CodeStatistics, settings: FitSettings,
                 render_settings: RenderSettings, device: torch.device | str = "cpu",
                 run: RunSettings | None = None):
        if settings.n_rays < 1:
            raise FaceNerfError("the fit needs rays: set --fit_rays (or the run's N_rand) to at least 1")
        self.model, self.target, self.stats, self.settings = model, target, stats, settings
        self.runtime = run or RunSettings()
        self.device = torch.device(device)
        self.render_settings = replace(render_settings, perturb=False)
        self.fit_grid = FitGrid(model.skip_settings, settings.grid_refresh, seed=self.runtime.seed)
        self.fast_settings = model.skip_settings.for_fitting().render_settings(self.render_settings, fitting=True)
        # psnr_full renders without gradients: the render thresholds and front-to-back rounds
        self.monitor_settings = model.skip_settings.render_settings(self.render_settings)
        freeze(model)
        self.model.to(self.device)
        self.levels = build_levels(target.image, target.mask, target.landmarks_xy, target.K,
                                   settings.schedule.scales, settings.band_frac)
        self.learned = model.expression_codes.detach().to(self.device)  # [K, E]
        init_eps = self.learned[expression_index(settings.init_expression, self.learned.shape[0])]
        self.variables = FitVariables(stats, init_eps.cpu(), target.c2w, settings.pose_parametrisation,
                                      settings.gain_mode).to(self.device)
        self.stats_device = _stats_to(stats, self.device)
        self.optimizer = torch.optim.Adam(self._param_groups())
        self.iteration = 0
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.last_scalars: dict[str, float] = {}
        self._eval_xy: Tensor | None = None  # [E, 2] pixels of psnr_full

    def _param_groups(self) -> list[dict]:
        frozen = set() if self.settings.optimise_pose else {"rotation", "translation"}
        if self.settings.gain_mode == "none":
            frozen.add("gain")
        groups = []
        for name, params in self.variables.groups().items():
            if name in frozen:
                for p in params:
                    p.requires_grad_(False)
                continue
            groups.append({"params": params, "lr": self.settings.schedule.lr(name, 0), "name": name})
        return groups

    # ------------------------------------------------------------------ state
    def codes(self):
        """The model's :class:`FaceCodes` for the current variables (differentiable)."""
        v = self.variables
        return self.model.face_codes(v.shape[None], expression=v.expression[None], texture=v.texture[None])

    def resume(self, result: FitResult) -> None:
        """Continue from a fit file: variables, optimiser state, history and iteration."""
        self.variables.load_values(result.shape, result.expression, result.texture, result.rotation,
                                   result.translation, result.gain)
        if result.optimizer_state:
            self.optimizer.load_state_dict(result.optimizer_state)
        self.history = {k: list(result.history.get(k, [])) for k in HISTORY_KEYS}
        self.iteration = int(result.iteration)

    def result(self, config: dict | None = None, checkpoint: str = "", model_config: dict | None = None) -> FitResult:
        """The current state as a :class:`FitResult`."""
        v = self.variables
        return FitResult(shape=v.shape.detach().cpu(), expression=v.expression.detach().cpu(),
                         texture=v.texture.detach().cpu(), rotation=v.pose.rotation.detach().cpu(),
                         translation=v.pose.translation.detach().cpu(), initial_c2w=self.target.c2w.cpu(),
                         gain=v.gain().detach().cpu(), intrinsics=self.target.K, near=self.target.near,
                         far=self.target.far, iteration=self.iteration,
                         iterations=self.settings.schedule.iterations,
                         pose_parametrisation=v.pose.parametrisation, history=self.history,
                         config=dict(config or {}), checkpoint=checkpoint, target=str(self.target.path),
                         model_config=dict(model_config or {}), optimizer_state=self.optimizer.state_dict())

    # ------------------------------------------------------------------ one iteration
    def _set_learning_rates(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.schedule.lr(group["name"], self.iteration)

    def _rays_and_targets(self, level_index: int):
        level = self.levels[level_index]
        generator = torch.Generator().manual_seed(self.runtime.seed * 1_000_003 + self.iteration)
        xy = sample_fit_pixels(level, self.settings.n_rays, self.settings.landmarks, generator)  # [N, 2]
        colours = level.image[xy[:, 1], xy[:, 0]].to(self.device)  # [N, 3]
        c2w = self.variables.pose()
        rays = pixel_rays(level.K, c2w, xy.to(self.device, torch.float32), self.target.near, self.target.far)
        return rays, colours

    def _eval_pixels(self) -> Tensor:
        """``[E, 2]`` fixed full-resolution pixels (landmarks + mask) of ``psnr_full``, drawn once."""
        if self._eval_xy is None:
            generator = torch.Generator().manual_seed(self.runtime.seed * 7_919 + 17)
            self._eval_xy = sample_fit_pixels(self.levels[-1], EVAL_RAYS, self.settings.landmarks, generator)
        return self._eval_xy

    @torch.no_grad()
    def psnr_full(self) -> float:
        """PSNR of the current fit on the fixed full-resolution pixels (the same at every level)."""
        level, xy = self.levels[-1], self._eval_pixels()
        rays = pixel_rays(level.K, self.variables.pose(), xy.to(self.device, torch.float32),
                          self.target.near, self.target.far)
        with autocast(self.device, self.runtime.amp):
            pred = self.render_rays(rays, self.codes(), monitor=True)["rgb"]
        shown = pred.float() * self.variables.gain()
        mse = ((shown - level.image[xy[:, 1], xy[:, 0]].to(self.device)) ** 2).mean()
        return float(mse_to_psnr(mse.clamp_min(1e-10)))

    def step(self) -> dict[str, float]:
        """One optimisation step; returns the scalars of this iteration."""
        self._set_learning_rates()
        level = self.settings.schedule.level(self.iteration)
        rays, target = self._rays_and_targets(level)
        with autocast(self.device, self.runtime.amp):
            codes = self.codes()
            out = self.render_rays(rays, codes)
            pred = out["rgb"]
        loss, terms = fit_loss(pred.float(), target, self.variables, self.stats_device, self.learned,
                               self.settings.weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        scalars = host_floats({"level": level, "loss": loss.detach(),  # one transfer from the device
                               "psnr": mse_to_psnr(terms["mse"].detach().clamp_min(1e-10)),
                               "samples_per_ray": out["n_evaluated"].float().mean(),
                               **{k: v.detach() for k, v in terms.items() if k != "mse"}})
        self.iteration += 1
        self.last_scalars = scalars
        return scalars

    def render_rays(self, rays, codes, monitor: bool = False) -> dict:
        """The loss's render of ``rays``: the fast path or the dense reference (``fast_render``);
        ``monitor``: a gradient-free render for ``psnr_full`` (the fast path's render thresholds)."""
        if not self.settings.fast_render:
            return self.model.render_rays(rays, codes, self.render_settings)
        grids = self.fit_grid.grids(self.model, codes, self.iteration)
        return self.model.render_rays(rays, codes, self.monitor_settings if monitor else self.fast_settings,
                                      grids=grids)

    def _record(self, scalars: dict[str, float]) -> None:
        self.history["iteration"].append(float(self.iteration))
        for key in HISTORY_KEYS[1:]:
            self.history[key].append(scalars[key])

    def run(self, on_iteration: Callable[["Fitter"], None] | None = None, stop_at: int | None = None) -> None:
        """Iterate until the planned count (or ``stop_at``); ``on_iteration(fitter)`` follows every step."""
        end = min(self.settings.schedule.iterations, stop_at if stop_at is not None else 1 << 62)
        bar = tqdm(total=end, initial=self.iteration, desc="fit", unit="it", disable=None if self.runtime.progress else True)
        with bar:
            while self.iteration < end:
                scalars = self.step()
                if self.iteration % self.settings.log_every == 0 or self.iteration == end:
                    scalars["psnr_full"] = self.psnr_full()
                    self._record(scalars)
                    bar.set_postfix(loss=f"{scalars['loss']:.4f}", psnr=f"{scalars['psnr']:.2f}",
                                    level=int(scalars["level"]))
                bar.update(1)
                if on_iteration is not None:
                    on_iteration(self)

    # ------------------------------------------------------------------ renders
    @torch.no_grad()
    def render(self, c2w: Tensor | None = None, K: Intrinsics | None = None, with_gain: bool = True) -> Tensor:
        """The current fit rendered at ``c2w`` (default: the fitted camera) -> ``[H, W, 3]`` CPU."""
        K = K or self.target.K
        c2w = self.variables.pose() if c2w is None else c2w.to(self.device)
        rays = image_rays(K, c2w, self.target.near, self.target.far)
        with autocast(self.device, self.runtime.amp):
            rgb = self.model.render_image(rays, self.codes(), K.height, K.width, self.render_settings,
                                          fast=self.settings.fast_render)["rgb"]
        if with_gain:
            rgb = rgb.float() * self.variables.gain()
        return rgb.float().clamp(0, 1).cpu()


def _stats_to(stats: CodeStatistics, device: torch.device) -> CodeStatistics:
    return CodeStatistics(stats.shape_mean.to(device), stats.shape_std.to(device), stats.texture_mean.to(device),
                          stats.texture_std.to(device), stats.n_identities, stats.step)
