"""Rays -> samples -> field callback -> compositing, for whole images in ray chunks.

A field is any callable ``field(points [M, 3], directions [M, 3] unit) -> (density [M] >= 0,
rgb [M, 3] in [0, 1])``; it applies its own activations and never sees rays. Conditioning
(codes, expressions) is bound into the callable by the model (e.g. a closure or a module
method).

Two paths:

* :func:`render_rays` - NeRF/MoFaNeRF hierarchical sampling: stratified coarse depths, then
  optional importance samples for a fine field; dense [R, S] compositing with a huge last
  segment (1e10) and segment lengths scaled by the ray direction's norm.
* :func:`render_rays_marched` - occupancy-grid marching for grid scenes: packed samples only
  in occupied cells, packed compositing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor
from tqdm import tqdm

from facenerf.core import volume_rendering as vr
from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.rays import RayBundle
from facenerf.core.samplers import importance_samples, stratified_samples

FieldFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
DEFAULT_CHUNK_RAYS = 16384  # rays per forward pass when rendering whole images


@dataclass
class RenderSettings:
    """Settings of the hierarchical (coarse + fine) renderer. The sample counts have no default:
    each model's config states its own (MoFaNeRF: 64 + 64)."""

    n_samples: int  # coarse depths per ray
    n_importance: int  # extra fine depths per ray (0 = no fine pass)
    perturb: bool = False  # stratified jitter + random inverse-CDF samples (training)
    lindisp: bool = False  # sample linearly in disparity instead of depth
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    chunk_rays: int = DEFAULT_CHUNK_RAYS  # rays per forward pass in render_image
    last_delta: float = 1e10  # length of the last segment of every ray
    scale_deltas_by_direction_norm: bool = True  # segment lengths in world units


@dataclass
class MarchSettings:
    """Settings of the occupancy-grid marching renderer."""

    step_size: float  # segment length in ray-parameter units
    perturb: bool = False  # random per-ray lattice shift (training)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    chunk_rays: int = DEFAULT_CHUNK_RAYS
    scale_deltas_by_direction_norm: bool = True
    max_steps: int | None = None  # cap on segments per ray


def unit_directions(directions: Tensor) -> Tensor:
    """Normalise ray directions [N, 3] to unit length."""
    return directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _run_field(field: FieldFn, points: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """Call the field on flat points [M, 3] / unit dirs [M, 3]; returns density [M], rgb [M, 3]."""
    density, rgb = field(points, dirs)
    m = points.shape[0]
    if density.numel() != m or rgb.shape != (m, 3):
        raise ValueError(
            f"field returned density {tuple(density.shape)} and rgb {tuple(rgb.shape)} for {m} points; "
            "expected [M] and [M, 3]"
        )
    return density.reshape(m), rgb


def composite_dense(
    t: Tensor, density: Tensor, rgb: Tensor, rays: RayBundle, settings: RenderSettings
) -> dict[str, Tensor]:
    """Composite samples at depths t [R, S] with density [R, S] and rgb [R, S, 3].

    Segment ``k`` spans ``t[k+1] - t[k]`` (``settings.last_delta`` for the last one), times
    ``|direction|`` when ``scale_deltas_by_direction_norm``. Density is clamped at 0.
    Returns rgb [R, 3] (over the background), depth [R] = sum w t, opacity [R], weights [R, S].
    """
    deltas = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], settings.last_delta)], dim=-1)
    if settings.scale_deltas_by_direction_norm:
        deltas = deltas * rays.directions.norm(dim=-1, keepdim=True)
    alpha = vr.alpha_from_density(torch.relu(density), deltas)
    weights = vr.weights_from_alpha(alpha)
    opacity = vr.accumulate(weights)
    colour = vr.composite_background(vr.accumulate(weights, rgb), opacity, settings.background)
    return {"rgb": colour, "depth": vr.accumulate(weights, t), "opacity": opacity, "weights": weights}


def _render_at(t: Tensor, rays: RayBundle, field: FieldFn, settings: RenderSettings) -> dict[str, Tensor]:
    """Evaluate ``field`` at depths t [R, S] along ``rays`` and composite."""
    n_rays, n_samples = t.shape
    points = rays.origins[:, None, :] + rays.directions[:, None, :] * t[..., None]  # [R, S, 3]
    dirs = unit_directions(rays.directions)[:, None, :].expand(n_rays, n_samples, 3)  # [R, S, 3]
    density, rgb = _run_field(field, points.reshape(-1, 3), dirs.reshape(-1, 3))
    out = composite_dense(t, density.view(n_rays, n_samples), rgb.view(n_rays, n_samples, 3), rays, settings)
    out["t"] = t
    return out


def render_rays(
    rays: RayBundle,
    coarse: FieldFn,
    fine: FieldFn | None,
    settings: RenderSettings,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Render a ray batch with hierarchical sampling (differentiable).

    Returns ``rgb`` [R, 3], ``depth`` [R], ``opacity`` [R], ``weights`` [R, S] and ``t`` [R, S]
    of the final pass. With ``settings.n_importance > 0`` a fine pass evaluates the coarse
    depths merged with importance samples (sorted) using ``fine`` (or ``coarse`` when
    ``fine`` is None), and the coarse pass is also returned as ``rgb_coarse``,
    ``depth_coarse``, ``opacity_coarse`` and ``weights_coarse``.
    """
    t = stratified_samples(rays.near, rays.far, settings.n_samples, settings.perturb, settings.lindisp, generator)
    coarse_out = _render_at(t, rays, coarse, settings)
    if settings.n_importance <= 0:
        return coarse_out
    t_new = importance_samples(
        t, coarse_out["weights"], settings.n_importance, not settings.perturb, generator
    )
    t_all, _ = torch.sort(torch.cat([t, t_new], dim=-1), dim=-1)
    out = _render_at(t_all, rays, fine if fine is not None else coarse, settings)
    for key in ("rgb", "depth", "opacity", "weights"):
        out[f"{key}_coarse"] = coarse_out[key]
    return out


def render_rays_marched(
    rays: RayBundle,
    field: FieldFn,
    grid: OccupancyGrid,
    settings: MarchSettings,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Render a ray batch by occupancy-grid marching (differentiable w.r.t. the field).

    The field is evaluated at segment midpoints inside occupied cells only. Returns ``rgb``
    [R, 3] (over the background), ``depth`` [R] = sum w t_mid, ``opacity`` [R] and
    ``n_samples`` [R] (segments evaluated per ray).
    """
    samples = grid.march(rays, settings.step_size, settings.perturb, generator, settings.max_steps)
    ridx, n_rays = samples.ray_indices, len(rays)
    t_mid = samples.t_mids  # [M]
    deltas = samples.t_ends - samples.t_starts  # [M]
    if settings.scale_deltas_by_direction_norm:
        deltas = deltas * rays.directions.norm(dim=-1)[ridx]
    points = rays.origins[ridx] + rays.directions[ridx] * t_mid[:, None]  # [M, 3]
    dirs = unit_directions(rays.directions)[ridx]  # [M, 3]
    if len(samples) > 0:
        density, rgb = _run_field(field, points, dirs)
    else:
        density, rgb = points.new_zeros(0), points.new_zeros(0, 3)
    alpha = vr.alpha_from_density(torch.relu(density), deltas)
    weights = vr.weights_from_alpha_packed(alpha, ridx, n_rays)
    opacity = vr.accumulate_packed(weights, None, ridx, n_rays)
    colour = vr.accumulate_packed(weights, rgb, ridx, n_rays)
    return {
        "rgb": vr.composite_background(colour, opacity, settings.background),
        "depth": vr.accumulate_packed(weights, t_mid, ridx, n_rays),
        "opacity": opacity,
        "n_samples": torch.bincount(ridx, minlength=n_rays).to(t_mid.dtype),
    }


def render_chunked(
    render_fn: Callable[[RayBundle], dict[str, Tensor]],
    rays: RayBundle,
    chunk_rays: int,
    height: int,
    width: int,
    progress: bool = False,
) -> dict[str, Tensor]:
    """Run ``render_fn`` over ``rays`` in chunks without gradients and reshape to an image.

    Every output with one row per ray becomes ``[height, width, ...]``.
    """
    if len(rays) != height * width:
        raise ValueError(f"got {len(rays)} rays for a {height}x{width} image")
    parts: dict[str, list[Tensor]] = {}
    starts = range(0, len(rays), max(int(chunk_rays), 1))
    with torch.no_grad():
        for start in tqdm(starts, desc="render", unit="chunk", disable=not progress, leave=False):
            out = render_fn(rays[start : start + chunk_rays])
            for key, value in out.items():
                parts.setdefault(key, []).append(value)
    return {key: torch.cat(vals).reshape(height, width, *vals[0].shape[1:]) for key, vals in parts.items()}


def render_image(
    rays: RayBundle,
    coarse: FieldFn,
    fine: FieldFn | None,
    settings: RenderSettings,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """:func:`render_rays` over an image's ``height * width`` rays (row-major), chunked by
    ``settings.chunk_rays``, without gradients. Outputs are ``[H, W, ...]`` (rgb [H, W, 3])."""
    return render_chunked(
        lambda chunk: render_rays(chunk, coarse, fine, settings, generator),
        rays, settings.chunk_rays, height, width, progress,
    )


def render_image_marched(
    rays: RayBundle,
    field: FieldFn,
    grid: OccupancyGrid,
    settings: MarchSettings,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> dict[str, Tensor]:
    """:func:`render_rays_marched` over an image's rays, chunked, without gradients -> [H, W, ...]."""
    return render_chunked(
        lambda chunk: render_rays_marched(chunk, field, grid, settings, generator),
        rays, settings.chunk_rays, height, width, progress,
    )
