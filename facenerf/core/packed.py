"""Packed evaluation and compositing of samples grouped by ray, with early ray termination.

Samples of many rays live in flat tensors with ``ray_indices [M]`` (non-decreasing: all samples
of a ray are contiguous and in depth order). :func:`evaluate_front_to_back` calls a field's
density entry in rounds - the next ``per_round`` samples of every ray that is still
transparent enough - so samples behind an opaque surface are never evaluated.
:func:`composite_samples` turns densities into weights (stopping each ray once its
transmittance falls below ``stop_eps``), evaluates colour only where a weight is visible and
composites per ray. Both are differentiable with respect to the field; the decisions (which
samples run) are made on detached values.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from facenerf.core import volume_rendering as vr
from facenerf.core.fields import Field

CPU_POINT_CHUNK = 1 << 15  # points per colour call on a CPU (wider batches fall out of the caches)
DensityEntry = Callable[[Tensor], tuple[Tensor, Tensor]]  # points [K, 3] -> (sigma [K], features [K, F])


class Rows:
    """Rows ``rows[order]`` of a tensor, gathered only when indexed (avoids copying wide features)."""

    def __init__(self, rows: Tensor, order: Tensor | None = None):
        self.rows, self.order = rows, order

    def __getitem__(self, index: Tensor) -> Tensor:
        return self.rows[index] if self.order is None else self.rows[self.order[index]]


def sample_ranks(ray_indices: Tensor, n_rays: int) -> Tensor:
    """Position of every sample within its ray's run (0 for the first), [M] -> [M]."""
    return torch.arange(ray_indices.shape[0], device=ray_indices.device) - vr.ray_starts(ray_indices, n_rays)


def evaluate_front_to_back(density: DensityEntry, points: Tensor, ray_indices: Tensor, deltas: Tensor,
                           n_rays: int, stop_eps: float, per_round: int) -> tuple[Tensor, Tensor, Rows]:
    """Evaluate ``density`` on packed samples, front to back, skipping what lies behind opaque matter.

    Args:
        points: [M, 3] sample positions; ray_indices: [M] sorted; deltas: [M] segment lengths.
        stop_eps: a ray stops being evaluated once its transmittance is below this (0: never).
        per_round: samples per ray per round (<= 0: everything in one call).
    Returns:
        ``(index [K], sigma [K], features)``: the evaluated samples (indices into the M
        samples, increasing) with their density; ``features[j]`` gathers the feature rows [.., F]
        of the evaluated samples ``j`` (a :class:`Rows`, so wide features are copied only where used).
    """
    m = points.shape[0]
    if m == 0:
        empty = points.new_zeros(0)
        return empty.long(), empty, Rows(points.new_zeros(0, 0))
    if stop_eps <= 0 or per_round <= 0:
        sigma, features = density(points)
        return torch.arange(m, device=points.device), sigma.reshape(m), Rows(features)
    round_of = torch.div(sample_ranks(ray_indices, n_rays), per_round, rounding_mode="floor")  # [M]
    by_round = torch.argsort(round_of, stable=True)  # samples grouped by round, packed order inside
    ends = torch.cumsum(torch.bincount(round_of), dim=0).tolist()
    log_t = torch.zeros(n_rays, dtype=torch.float32, device=points.device)  # log transmittance so far
    log_stop = math.log(stop_eps)
    picked, sigmas, feats = [], [], []
    start = 0
    for end in ends:
        alive = log_t > log_stop  # [n_rays]
        candidates = by_round[start:end]
        start = end
        sel = candidates[alive[ray_indices[candidates]]]  # [K_r]
        if sel.numel() == 0:
            if not bool(alive.any()):
                break
            continue
        sigma, features = density(points[sel])
        sigma = sigma.reshape(-1)
        log_t.index_add_(0, ray_indices[sel], -(sigma.detach().float().clamp_min(0) * deltas[sel].float()))
        picked.append(sel)
        sigmas.append(sigma)
        feats.append(features)
    if not picked:
        empty = points.new_zeros(0)
        return empty.long(), empty, Rows(points.new_zeros(0, 0))
    index = torch.cat(picked)
    order = torch.argsort(index)
    return index[order], torch.cat(sigmas)[order], Rows(torch.cat(feats), order)


def terminated_weights(sigma: Tensor, deltas: Tensor, ray_indices: Tensor, n_rays: int, stop_eps: float,
                       columns: Tensor | None = None, n_columns: int = 0) -> Tensor:
    """Packed compositing weights [K] (``alpha * T`` with the MoFaNeRF/NeRF ``1e-10`` term), zero
    where the transmittance in front of a sample is below ``stop_eps``.

    With ``columns`` [K] (each sample's slot in a dense ``[n_rays, n_columns]`` layout, as in the
    hierarchical pass) the transmittance is the dense cumulative product of that layout
    (skipped slots count as transparent); otherwise the packed float64 log-sum of
    :func:`~facenerf.core.volume_rendering.transmittance_packed`.
    """
    alpha = vr.alpha_from_density(torch.relu(sigma), deltas)
    if columns is not None:
        dense = alpha.new_zeros(n_rays, n_columns).index_put((ray_indices, columns), alpha)
        trans = vr.transmittance(dense)[ray_indices, columns]
    else:
        trans = vr.transmittance_packed(alpha, ray_indices, n_rays)
    weights = alpha * trans
    if stop_eps > 0:
        weights = torch.where(trans.detach() < stop_eps, torch.zeros_like(weights), weights)
    return weights


def composite_samples(field: Field, points: Tensor, directions: Tensor, ray_indices: Tensor, deltas: Tensor,
                      t: Tensor, n_rays: int, *, stop_eps: float = 0.0, per_round: int = 0,
                      min_weight: float | None = None, colour: bool = True,
                      columns: Tensor | None = None, n_columns: int = 0) -> dict[str, Tensor]:
    """Render packed samples of ``n_rays`` rays with ``field``.

    Args:
        points, directions: [M, 3] positions and unit view directions; ray_indices: [M] sorted;
        deltas: [M] segment lengths (world units); t: [M] depths (for the depth output).
        stop_eps: early ray termination threshold on the transmittance (0: off).
        per_round: front-to-back rounds of :func:`evaluate_front_to_back` (<= 0: one round).
        min_weight: colour evaluated only where the weight exceeds it (None: at every sample).
        colour: False skips the colour entry entirely (density-only pass).
        columns, n_columns: each sample's slot in a dense ``[n_rays, n_columns]`` layout, when the
            samples come from one (see :func:`terminated_weights`).
    Returns:
        per ray: ``rgb`` [R, 3] (no background; zeros without colour), ``depth`` [R],
        ``opacity`` [R] (the weight sum), ``n_evaluated`` [R] (density evaluations),
        ``skipped_weight`` [R] (weight whose colour was not evaluated); packed over the
        evaluated samples: ``index`` [K] (into the M inputs), ``weights`` [K], ``ray_indices`` [K].
    """
    index, sigma, features = evaluate_front_to_back(field.density, points, ray_indices, deltas, n_rays,
                                                    stop_eps, per_round)
    ridx = ray_indices[index]
    weights = terminated_weights(sigma.to(deltas.dtype), deltas[index], ridx, n_rays, stop_eps,
                                 None if columns is None else columns[index], n_columns)  # [K]
    opacity = vr.accumulate_packed(weights, None, ridx, n_rays)
    rgb = points.new_zeros(n_rays, 3)
    shown = opacity.detach()
    if colour:
        visible = torch.ones_like(weights, dtype=torch.bool) if min_weight is None else weights.detach() > min_weight
        vis = torch.nonzero(visible).squeeze(-1)
        if vis.numel():
            step = CPU_POINT_CHUNK if points.device.type == "cpu" else vis.numel()
            values = torch.cat([field.colour(features[part], directions[index[part]]).to(weights.dtype)
                                for part in vis.split(step)])  # [V, 3]
            rgb = vr.accumulate_packed(weights[vis], values, ridx[vis], n_rays)
            shown = vr.accumulate_packed(weights[vis].detach(), None, ridx[vis], n_rays)
        else:
            shown = torch.zeros_like(shown)
    return {
        "rgb": rgb, "depth": vr.accumulate_packed(weights, t[index], ridx, n_rays), "opacity": opacity,
        "n_evaluated": torch.bincount(ridx, minlength=n_rays).to(deltas.dtype),
        "skipped_weight": (opacity.detach() - shown).clamp_min(0.0),
        "index": index, "weights": weights, "ray_indices": ridx,
    }
