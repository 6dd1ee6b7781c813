"""Rays -> samples -> field -> compositing: the one hierarchical pass, the marched renderer and
chunked image rendering.

Fields follow :mod:`facenerf.core.fields` (``density(points) -> (sigma, features)`` and
``colour(features, directions) -> rgb``); a plain ``(points, dirs) -> (sigma, rgb)`` function
is accepted too. Fields never see rays.

* :func:`render_rays` - the coarse -> importance -> fine pass of NeRF/MoFaNeRF, with options
  (:class:`RenderSettings`): whether the coarse colour is wanted (training) or the coarse pass
  only places the importance samples (density only, no gradients: fitting, inference); an
  occupancy grid that skips empty space (rays that meet no occupied cell are background,
  samples in empty cells are never evaluated); early ray termination; colour only where the
  compositing weight is visible. With none of the accelerations it is the dense reference
  computation of the original ([R, S] samples, a 1e10-long last segment, segment lengths
  scaled by the ray direction's norm).
* :func:`render_rays_marched` - occupancy-grid marching (NeRFBlendShape / instant-ngp style):
  packed samples in occupied cells only, front to back with early termination; returns the
  packed weights and the per-ray weight sum.
* :func:`render_chunked` / :func:`render_image` / :func:`render_image_marched` - whole images
  in ray chunks without gradients; :func:`auto_chunk_rays` sizes chunks to the device.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from facenerf.core import volume_rendering as vr
from facenerf.core.fields import Field, FieldFn, as_field, evaluate, evaluate_density
from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.packed import Rows, composite_samples
from facenerf.core.rays import RayBundle
from facenerf.core.samplers import importance_samples, merge_sorted, stratified_samples

__all__ = ["FieldFn", "RenderSettings", "MarchSettings", "render_rays", "render_rays_marched", "render_chunked",
           "render_image", "render_image_marched", "composite_dense", "unit_directions", "auto_chunk_rays",
           "PACKED_OUTPUTS", "DEFAULT_CHUNK_RAYS"]

# outputs of render_rays_marched with one entry per evaluated sample (not per ray)
PACKED_OUTPUTS = ("weights", "ray_indices", "t_mids")
DEFAULT_CHUNK_RAYS = 16384  # rays per forward pass when rendering whole images


@dataclass
class RenderSettings:
    """Options of :func:`render_rays`. The sample counts have no default: each model's config
    states its own (MoFaNeRF: 64 + 64). The accelerations are off by default (the reference
    computation)."""

    n_samples: int  # coarse depths per ray
    n_importance: int  # extra fine depths per ray (0 = no fine pass)
    perturb: bool = False  # stratified jitter + random inverse-CDF samples (training)
    lindisp: bool = False  # sample linearly in disparity instead of depth
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    chunk_rays: int = DEFAULT_CHUNK_RAYS  # rays per forward pass in render_image (0: sized to the device)
    last_delta: float = 1e10  # length of the last segment of every ray
    scale_deltas_by_direction_norm: bool = True  # segment lengths in world units
    coarse_colour: bool = True  # False: the coarse pass is density-only and gradient-free
    min_weight: float | None = None  # colour only where the weight exceeds this (None: every sample)
    early_stop_eps: float = 0.0  # a ray stops once its transmittance falls below this (0: never)
    samples_per_round: int = 16  # front-to-back round size of early termination
    colour_stride: int = 1  # > 1: colour on every n-th visible sample of a ray, interpolated between
    fill_colour: bool = False  # weight below min_weight takes the ray's mean visible colour (not black)
    coarse_needs_fine_grid: bool = False  # coarse samples only where both grids are occupied
    coarse_first_round: bool = False  # the fine pass's first front-to-back round: every sample of a ray
    # up to the depth of its last coarse sample with weight (the image does not change)

    @property
    def accelerated(self) -> bool:
        """Whether the packed path (termination or visible-only colour) is asked for."""
        return self.early_stop_eps > 0 or self.min_weight is not None


@dataclass
class MarchSettings:
    """Options of the occupancy-grid marching renderer."""

    step_size: float  # segment length in ray-parameter units
    perturb: bool = False  # random per-ray lattice shift (training)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    chunk_rays: int = DEFAULT_CHUNK_RAYS
    scale_deltas_by_direction_norm: bool = True
    max_steps: int | None = None  # cap on segments per ray
    early_stop_eps: float = 1e-4  # stop a ray once its transmittance is below this (0: never)
    samples_per_round: int = 32  # front-to-back round size (<= 0: all samples in one call)
    min_weight: float | None = None  # colour only where the weight exceeds this (None: all)


def unit_directions(directions: Tensor) -> Tensor:
    """Normalise ray directions [N, 3] to unit length."""
    return directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def auto_chunk_rays(device: torch.device | str, samples_per_ray: int, width: int = 256,
                    memory_fraction: float = 0.25) -> int:
    """Rays per chunk for an image render on ``device``.

    CUDA: as many rays as fit ``memory_fraction`` of the free memory, counting about
    ``8 * width`` floats of activations per sample. CPU: about 2^18 samples per chunk (cache
    friendly, bounded memory). Clamped to [256, 2^20] and rounded down to a multiple of 256.
    """
    device = torch.device(device)
    per_ray_floats = max(samples_per_ray, 1) * max(width, 1) * 8
    if device.type == "cuda":
        from facenerf.runtime import available_memory

        rays = int(available_memory(device) * memory_fraction / (4 * per_ray_floats))
    else:
        rays = (1 << 18) // max(samples_per_ray, 1)
    return max(256, min(1 << 20, rays // 256 * 256))


def _deltas(t: Tensor, rays: RayBundle, settings: RenderSettings) -> Tensor:
    """Segment lengths [R, S]: ``t[k+1] - t[k]``, the last one ``last_delta``, times |d| if asked."""
    deltas = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], settings.last_delta)], dim=-1)
    if settings.scale_deltas_by_direction_norm:
        deltas = deltas * rays.directions.norm(dim=-1, keepdim=True)
    return deltas


def _points(rays: RayBundle, t: Tensor) -> Tensor:
    return rays.origins[:, None, :] + rays.directions[:, None, :] * t[..., None]  # [R, S, 3]


def composite_dense(
    t: Tensor, density: Tensor, rgb: Tensor, rays: RayBundle, settings: RenderSettings
) -> dict[str, Tensor]:
    """Composite samples at depths t [R, S] with density [R, S] and rgb [R, S, 3].

    Segment ``k`` spans ``t[k+1] - t[k]`` (``settings.last_delta`` for the last one), times
    ``|direction|`` when ``scale_deltas_by_direction_norm``. Density is clamped at 0.
    Returns rgb [R, 3] (over the background), depth [R] = sum w t, opacity [R], weights [R, S].
    """
    alpha = vr.alpha_from_density(torch.relu(density), _deltas(t, rays, settings))
    weights = vr.weights_from_alpha(alpha)
    opacity = vr.accumulate(weights)
    colour = vr.composite_background(vr.accumulate(weights, rgb), opacity, settings.background)
    return {"rgb": colour, "depth": vr.accumulate(weights, t), "opacity": opacity, "weights": weights}


def _dense_pass(t: Tensor, rays: RayBundle, field: Field, settings: RenderSettings, colour: bool) -> dict[str, Tensor]:
    """Every sample at depths t [R, S] evaluated; ``colour=False`` returns only the weights."""
    n_rays, n_samples = t.shape
    points = _points(rays, t).reshape(-1, 3)
    if not colour:
        sigma, _ = evaluate_density(field, points)
        alpha = vr.alpha_from_density(torch.relu(sigma.view(n_rays, n_samples).to(t.dtype)), _deltas(t, rays, settings))
        return {"weights": vr.weights_from_alpha(alpha)}
    dirs = unit_directions(rays.directions)[:, None, :].expand(n_rays, n_samples, 3).reshape(-1, 3)
    sigma, rgb = evaluate(field, points, dirs)
    out = composite_dense(t, sigma.view(n_rays, n_samples).to(t.dtype), rgb.view(n_rays, n_samples, 3).to(t.dtype),
                          rays, settings)
    out["t"] = t
    out["n_evaluated"] = torch.full_like(t[:, 0], float(n_samples))
    return out


def _packed_pass(t: Tensor, keep: Tensor, rays: RayBundle, field: Field, settings: RenderSettings,
                 colour: bool, first_round: Tensor | None = None) -> dict[str, Tensor]:
    """Samples at depths t [R, S] where ``keep`` [R, S] evaluated front to back (packed); the
    first ``first_round`` [R] kept samples of each ray in the first round.

    Returns the per-ray outputs of :func:`~facenerf.core.packed.composite_samples` (colour
    without background) and ``weights`` [R, S] (zero where not evaluated or terminated).
    """
    n_rays, n_columns = t.shape
    flat = torch.nonzero(keep.reshape(-1)).squeeze(-1)  # [M] row-major: grouped by ray, in depth order
    ridx = torch.div(flat, n_columns, rounding_mode="floor")
    t_k = t.reshape(-1).index_select(0, flat)
    points = torch.addcmul(rays.origins.index_select(0, ridx), rays.directions.index_select(0, ridx), t_k[:, None])
    dirs = Rows(unit_directions(rays.directions), ridx)  # gathered only where colour is evaluated
    deltas = _deltas(t, rays, settings).reshape(-1).index_select(0, flat)
    out = composite_samples(field, points, dirs, ridx, deltas, t_k, n_rays,
                            stop_eps=settings.early_stop_eps, per_round=settings.samples_per_round,
                            min_weight=settings.min_weight, colour=colour, columns=flat - ridx * n_columns,
                            n_columns=n_columns, colour_stride=settings.colour_stride, fill_colour=settings.fill_colour,
                            first_round=first_round)
    index = out.pop("index")
    weights = t.new_zeros(n_rays * n_columns).index_put((flat.index_select(0, index),), out.pop("weights"))
    out.pop("ray_indices")
    out["weights"] = weights.view(n_rays, n_columns)
    return out


def _scatter_rays(out: dict[str, Tensor], rows: Tensor, n_rays: int, background) -> dict[str, Tensor]:
    """Per-ray outputs of the active rays ``rows`` [Ra] (indices) spread to all ``n_rays`` rays;
    the others see the background, with zero opacity, depth and evaluations. rgb gets the
    background blended."""
    full = {key: value.new_zeros((n_rays,) + tuple(value.shape[1:])).index_put((rows,), value)
            for key, value in out.items()}
    for suffix in ("", "_coarse"):
        if "rgb" + suffix in full:
            full["rgb" + suffix] = vr.composite_background(full["rgb" + suffix], full["opacity" + suffix], background)
    return full


def _occupied(grid: OccupancyGrid | None, rays: RayBundle, t: Tensor) -> Tensor:
    """Whether the samples at depths t [R, S] lie in occupied cells (all True without a grid)."""
    if grid is None:
        return torch.ones_like(t, dtype=torch.bool)
    return grid.query_along(rays.origins, rays.directions, t)


def _first_round_to_coarse_stop(t_coarse: Tensor, weights: Tensor, t_all: Tensor, keep: Tensor) -> Tensor:
    """Per ray [R]: how many of the fine pass's kept samples (depths ``t_all`` [R, S + I] where
    ``keep``) lie at or in front of the last coarse depth (``t_coarse`` [R, S]) with a nonzero
    coarse weight (``weights`` [R, S]); 0 for a ray without any. Where the coarse transmittance
    ran out, the fine one mostly has too, so these samples make one front-to-back round."""
    weighted = weights.detach() > 0  # [R, S]
    columns = torch.arange(t_coarse.shape[1], device=t_coarse.device)
    last = torch.where(weighted, columns, torch.zeros_like(columns)).amax(dim=1, keepdim=True)  # [R, 1]
    stop = t_coarse.gather(1, last)  # [R, 1] depth of the last weighted coarse sample
    count = (keep & (t_all <= stop)).sum(dim=1)
    return torch.where(weighted.any(dim=1), count, torch.zeros_like(count))


def _render_packed(t: Tensor, rays: RayBundle, coarse: Field, fine: Field | None, settings: RenderSettings,
                   grid: OccupancyGrid | None, fine_grid: OccupancyGrid | None, generator) -> dict[str, Tensor]:
    """The hierarchical pass with empty-space skipping, early termination and visible-only colour."""
    n_rays = len(rays)
    final = settings.n_importance <= 0
    fine_grid = fine_grid if fine_grid is not None else grid
    decisive = grid if final else fine_grid  # the grid of the pass that makes the image
    # rays that meet no occupied cell are background; one index of the others (one device sync)
    active = torch.arange(n_rays, device=t.device) if decisive is None else \
        torch.nonzero(decisive.ray_meets_box(rays)).squeeze(-1)  # [Ra]
    rays_a, t_a = rays[active], t.index_select(0, active)
    grad = contextlib.nullcontext() if (final or settings.coarse_colour) else torch.no_grad()
    with grad:
        keep = _occupied(grid, rays_a, t_a)
        if settings.coarse_needs_fine_grid and not final and fine_grid is not grid:
            keep &= _occupied(fine_grid, rays_a, t_a)
        coarse_out = _packed_pass(t_a, keep, rays_a, coarse, settings, colour=final or settings.coarse_colour)
    if final:
        return _scatter_rays(coarse_out, active, n_rays, settings.background)
    t_new = importance_samples(t_a, coarse_out["weights"], settings.n_importance, not settings.perturb, generator)
    if settings.perturb:  # random inverse-CDF draws come unsorted
        t_new, _ = torch.sort(t_new, dim=-1)
    t_all = merge_sorted(t_a, t_new)  # [Ra, S + I], the depths of the reference's sort
    keep = _occupied(fine_grid, rays_a, t_all)
    first = _first_round_to_coarse_stop(t_a, coarse_out["weights"], t_all, keep) if settings.coarse_first_round \
        else None
    out = _packed_pass(t_all, keep, rays_a, fine if fine is not None else coarse, settings, colour=True,
                       first_round=first)
    n_coarse = coarse_out.pop("n_evaluated")
    if settings.coarse_colour:
        out.update({f"{key}_coarse": coarse_out[key] for key in ("rgb", "depth", "opacity")})
    out["n_evaluated"] = out["n_evaluated"] + n_coarse
    return _scatter_rays(out, active, n_rays, settings.background)


def render_rays(
    rays: RayBundle,
    coarse: Field | FieldFn,
    fine: Field | FieldFn | None,
    settings: RenderSettings,
    generator: torch.Generator | None = None,
    grid: OccupancyGrid | None = None,
    fine_grid: OccupancyGrid | None = None,
) -> dict[str, Tensor]:
    """Render a ray batch with the coarse -> importance -> fine pass (differentiable).

    Coarse depths are stratified between near and far; with ``settings.n_importance > 0`` a
    fine pass evaluates them merged with importance samples drawn from the coarse weights
    (``fine``, or ``coarse`` when ``fine`` is None). ``settings.coarse_colour`` keeps the coarse
    colour (returned as ``rgb_coarse``, ``depth_coarse``, ``opacity_coarse``); without it the
    coarse pass evaluates density only, without gradients (the importance depths are detached
    anyway, so the fine result and its gradients are the same).

    Returns per ray ``rgb`` [R, 3] (over the background), ``depth`` [R], ``opacity`` [R] (the
    weight sum), ``n_evaluated`` [R] (density evaluations, both passes) and the final pass's
    ``weights`` [R, S] (zero where a sample was skipped or terminated). The dense reference
    path (no ``grid``, no ``early_stop_eps``, ``min_weight`` None) also returns the final
    depths ``t`` [R, S] (and ``weights_coarse``); the accelerated path returns
    ``skipped_weight`` [R] (weight whose colour was not evaluated).
    Empty-space skipping: coarse samples in empty cells of ``grid`` (the coarse field's
    occupancy) and fine samples in empty cells of ``fine_grid`` (the fine field's; default
    ``grid``) are not evaluated (density taken as 0), and rays that meet no occupied cell of the
    grid of the final pass are pure background, without any field call.
    """
    coarse_f, fine_f = as_field(coarse), (as_field(fine) if fine is not None else None)
    t = stratified_samples(rays.near, rays.far, settings.n_samples, settings.perturb, settings.lindisp, generator)
    if grid is not None or fine_grid is not None or settings.accelerated:
        return _render_packed(t, rays, coarse_f, fine_f, settings, grid, fine_grid, generator)
    final = settings.n_importance <= 0
    grad = contextlib.nullcontext() if (final or settings.coarse_colour) else torch.no_grad()
    with grad:
        coarse_out = _dense_pass(t, rays, coarse_f, settings, colour=final or settings.coarse_colour)
    if final:
        return coarse_out
    t_new = importance_samples(t, coarse_out["weights"], settings.n_importance, not settings.perturb, generator)
    t_all, _ = torch.sort(torch.cat([t, t_new], dim=-1), dim=-1)
    out = _dense_pass(t_all, rays, fine_f if fine_f is not None else coarse_f, settings, colour=True)
    out["n_evaluated"] = out["n_evaluated"] + t.shape[1]
    if settings.coarse_colour:
        out.update({f"{key}_coarse": coarse_out[key] for key in ("rgb", "depth", "opacity", "weights")})
    return out


def render_rays_marched(
    rays: RayBundle,
    field: Field | FieldFn,
    grid: OccupancyGrid,
    settings: MarchSettings,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Render a ray batch by occupancy-grid marching (differentiable w.r.t. the field).

    Samples are segment midpoints in occupied cells (:meth:`OccupancyGrid.march`), evaluated
    front to back; a ray stops once its transmittance is below ``settings.early_stop_eps``.
    Returns per ray ``rgb`` [R, 3] (over the background), ``depth`` [R] = sum w t_mid,
    ``opacity`` [R] (the per-ray weight sum) and ``n_samples`` [R] (density evaluations), and
    per evaluated sample ``weights`` [K], ``ray_indices`` [K] and ``t_mids`` [K].
    """
    field = as_field(field)
    samples = grid.march(rays, settings.step_size, settings.perturb, generator, settings.max_steps)
    ridx, t_mid = samples.ray_indices, samples.t_mids  # [M]
    deltas = samples.t_ends - samples.t_starts
    if settings.scale_deltas_by_direction_norm:
        deltas = deltas * rays.directions.norm(dim=-1)[ridx]
    points = rays.origins[ridx] + rays.directions[ridx] * t_mid[:, None]  # [M, 3]
    out = composite_samples(field, points, unit_directions(rays.directions)[ridx], ridx, deltas, t_mid, len(rays),
                            stop_eps=settings.early_stop_eps, per_round=settings.samples_per_round,
                            min_weight=settings.min_weight)
    index = out.pop("index")
    return {
        "rgb": vr.composite_background(out["rgb"], out["opacity"], settings.background),
        "depth": out["depth"], "opacity": out["opacity"], "n_samples": out["n_evaluated"],
        "skipped_weight": out["skipped_weight"],
        "weights": out["weights"], "ray_indices": out["ray_indices"], "t_mids": t_mid[index],
    }


def render_chunked(
    render_fn: Callable[[RayBundle], dict[str, Tensor]],
    rays: RayBundle,
    chunk_rays: int,
    height: int,
    width: int,
    progress: bool = False,
    skip: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """Run ``render_fn`` over ``rays`` in chunks without gradients and reshape to an image.

    Every output with one row per ray becomes ``[height, width, ...]``; keys in ``skip``
    (per-sample outputs) are dropped.
    """
    if len(rays) != height * width:
        raise ValueError(f"got {len(rays)} rays for a {height}x{width} image")
    parts: dict[str, list[Tensor]] = {}
    chunk_rays = max(int(chunk_rays), 1)
    with torch.no_grad():
        for start in tqdm(range(0, len(rays), chunk_rays), desc="render", unit="chunk", disable=None if progress else True,
                          leave=False):
            out = render_fn(rays[start : start + chunk_rays])
            for key, value in out.items():
                if key not in skip:
                    parts.setdefault(key, []).append(value)
    return {key: torch.cat(vals).reshape(height, width, *vals[0].shape[1:]) for key, vals in parts.items()}


def _chunk(settings_chunk: int, rays: RayBundle, samples_per_ray: int) -> int:
    return settings_chunk if settings_chunk > 0 else auto_chunk_rays(rays.device, samples_per_ray)


def render_image(
    rays: RayBundle,
    coarse: Field | FieldFn,
    fine: Field | FieldFn | None,
    settings: RenderSettings,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
    grid: OccupancyGrid | None = None,
    fine_grid: OccupancyGrid | None = None,
) -> dict[str, Tensor]:
    """:func:`render_rays` over an image's ``height * width`` rays (row-major), chunked by
    ``settings.chunk_rays`` (0: :func:`auto_chunk_rays`), without gradients -> ``[H, W, ...]``."""
    chunk = _chunk(settings.chunk_rays, rays, 2 * settings.n_samples + settings.n_importance)
    return render_chunked(lambda part: render_rays(part, coarse, fine, settings, generator, grid, fine_grid),
                          rays, chunk, height, width, progress)


def render_image_marched(
    rays: RayBundle,
    field: Field | FieldFn,
    grid: OccupancyGrid,
    settings: MarchSettings,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """:func:`render_rays_marched` over an image's rays, chunked, without gradients -> [H, W, ...]
    (the per-sample outputs are left out)."""
    return render_chunked(lambda part: render_rays_marched(part, field, grid, settings, generator),
                          rays, _chunk(settings.chunk_rays, rays, 128), height, width, progress, skip=PACKED_OUTPUTS)
