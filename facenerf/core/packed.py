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

CPU_POINT_CHUNK = 1 << 12  # points per field call on a CPU: a [4096, 256]-float activation stays in the
# caches; measured on the tiny model, 2^12-point calls cost half as much per point as 2^18-point ones
DensityEntry = Callable[[Tensor], tuple[Tensor, Tensor]]  # points [K, 3] -> (sigma [K], features [K, F])


class Rows:
    """Rows ``rows[order]`` of a tensor, gathered only when indexed (avoids copying wide features).

    ``lease``: the rows live in a pooled buffer (:func:`lease_rows`); :meth:`release` hands it
    back once the rows are no longer needed, after which indexing raises instead of reading rows
    that a later pass may have overwritten.
    """

    def __init__(self, rows: Tensor, order: Tensor | None = None, lease: Tensor | None = None):
        self.rows, self.order, self.lease = rows, order, lease

    def __getitem__(self, index: Tensor) -> Tensor:
        if self.rows is None:
            raise RuntimeError("these rows were released to the buffer pool; index them before release()")
        rows = index if self.order is None else self.order[index]
        return self.rows.index_select(0, rows)  # index_select: several times faster than rows[...] on a CPU

    def release(self) -> None:
        """Return a pooled buffer for reuse (no-op otherwise); the rows become unreadable."""
        if self.lease is not None:
            return_rows(self.lease)
            self.rows = self.order = self.lease = None


def point_chunk(points: Tensor) -> int:
    """Points per field call: :data:`CPU_POINT_CHUNK` on a CPU, everything at once elsewhere."""
    return CPU_POINT_CHUNK if points.device.type == "cpu" else max(points.shape[0], 1)


def chunked_density(density: DensityEntry, points: Tensor) -> tuple[Tensor, Tensor]:
    """``density`` on points [K, 3] in :func:`point_chunk` pieces -> (sigma [K], features [K, F])."""
    step = point_chunk(points)
    if points.shape[0] <= step:
        sigma, features = density(points)
        return sigma.reshape(-1), features
    parts = [density(part) for part in points.split(step)]
    return torch.cat([s.reshape(-1) for s, _ in parts]), torch.cat([f for _, f in parts])


def sample_ranks(ray_indices: Tensor, n_rays: int) -> Tensor:
    """Position of every sample within its ray's run (0 for the first), [M] -> [M]."""
    return torch.arange(ray_indices.shape[0], device=ray_indices.device) - vr.ray_starts(ray_indices, n_rays)


_POOL: dict[tuple, Tensor] = {}  # (device, dtype, width) -> an idle feature buffer of gradient-free passes


def lease_rows(rows: int, width: int, like: Tensor) -> tuple[Tensor, Tensor | None]:
    """``(rows [rows, width], lease)``: on a CPU a buffer taken out of a pool kept between
    gradient-free passes (a fresh one per pass costs page faults: tens of milliseconds for a 128^2
    image's features), ``lease`` being the whole buffer to hand back with :func:`return_rows`.
    While leased nobody else gets it, so nested or concurrent passes never share rows; an
    unreturned lease only costs a fresh buffer next time. Elsewhere a fresh tensor, lease None."""
    if like.device.type != "cpu":
        return like.new_empty(rows, width), None
    buf = _POOL.pop((str(like.device), like.dtype, width), None)
    if buf is None or buf.shape[0] < rows:
        buf = like.new_empty(max(rows, 1), width)
    return buf[:rows], buf


def return_rows(buf: Tensor) -> None:
    """Hand a buffer from :func:`lease_rows` back to the pool (the larger one is kept)."""
    key = (str(buf.device), buf.dtype, buf.shape[-1])
    held = _POOL.get(key)
    if held is None or held.shape[0] < buf.shape[0]:
        _POOL[key] = buf


class _Collected:
    """Densities and features of the samples evaluated among M candidates, chunk by chunk, in
    evaluation order: without autograd copied into contiguous buffers (the features into a
    :func:`lease_rows` buffer), with it kept as chunks and concatenated once at the end.
    ``keep_features=False`` drops the features (density-only passes)."""

    def __init__(self, m: int, buffered: bool, keep_features: bool = True):
        self.m, self.buffered, self.keep_features = m, buffered, keep_features
        self.picked: list[Tensor] = []
        self.sigmas: list[Tensor] = []
        self.feats: list[Tensor] = []
        self.count = 0
        self.sigma: Tensor | None = None
        self.features: Tensor | None = None
        self.lease: Tensor | None = None

    def add(self, sel: Tensor, sigma: Tensor, features: Tensor) -> None:
        features = features if self.keep_features else features[:, :0]
        self.picked.append(sel)
        if not self.buffered:
            self.sigmas.append(sigma)
            self.feats.append(features)
            return
        if self.sigma is None:
            self.sigma = sigma.new_empty(self.m)
            self.features, self.lease = lease_rows(self.m, features.shape[-1], features)
        n = sel.shape[0]
        self.sigma[self.count:self.count + n] = sigma
        self.features[self.count:self.count + n] = features
        self.count += n

    def result(self, like: Tensor) -> tuple[Tensor, Tensor, Rows]:
        """``(index [K] increasing, sigma [K], features)`` as :func:`evaluate_front_to_back` returns."""
        if not self.picked:
            empty = like.new_zeros(0)
            return empty.long(), empty, Rows(like.new_zeros(0, 0))
        picked = torch.cat(self.picked)  # [K] candidate index of each evaluation
        k = picked.shape[0]
        position = torch.empty(self.m, dtype=torch.long, device=picked.device)
        position.index_copy_(0, picked, torch.arange(k, device=picked.device))
        done = torch.zeros(self.m, dtype=torch.bool, device=picked.device).index_fill_(0, picked, True)
        index = torch.nonzero(done).squeeze(-1)
        order = position.index_select(0, index)  # evaluation position of each sorted sample
        if self.buffered:
            return index, self.sigma[:k].index_select(0, order), Rows(self.features, order, self.lease)
        return index, torch.cat(self.sigmas).index_select(0, order), Rows(torch.cat(self.feats), order)


def round_numbers(ray_indices: Tensor, n_rays: int, per_round: int, first_round: Tensor | None = None) -> Tensor:
    """The front-to-back round of every packed sample [M]: ``per_round`` samples of each ray per
    round; with ``first_round`` [n_rays] a ray's first ``first_round[r]`` samples all go to round
    0 and the following ones to rounds 1, 2, ... in groups of ``per_round``."""
    rank = sample_ranks(ray_indices, n_rays)  # [M]
    if first_round is None:
        return torch.div(rank, per_round, rounding_mode="floor")
    later = rank - first_round.index_select(0, ray_indices)  # [M] < 0 inside the first round
    after = 1 + torch.div(later.clamp_min(0), per_round, rounding_mode="floor")
    return torch.where(later < 0, torch.zeros_like(later), after)


def evaluate_front_to_back(density: DensityEntry, points: Tensor, ray_indices: Tensor, deltas: Tensor,
                           n_rays: int, stop_eps: float, per_round: int,
                           keep_features: bool = True, first_round: Tensor | None = None
                           ) -> tuple[Tensor, Tensor, Rows]:
    """Evaluate ``density`` on packed samples, front to back, skipping what lies behind opaque matter.

    Args:
        points: [M, 3] sample positions; ray_indices: [M] sorted; deltas: [M] segment lengths.
        stop_eps: a ray stops being evaluated once its transmittance is below this (0: never).
        per_round: samples per ray per round (<= 0: everything in one call).
        keep_features: False for a density-only pass (``features`` then has no columns).
        first_round: [n_rays] samples of each ray evaluated together in the first round (e.g.
            those in front of where a cheaper pass stopped), the rest in rounds of ``per_round``.
            Which samples run changes, not the result: samples behind a stop get zero weight.
    Returns:
        ``(index [K], sigma [K], features)``: the evaluated samples (indices into the M
        samples, increasing) with their density; ``features[j]`` gathers the feature rows [.., F]
        of the evaluated samples ``j`` (a :class:`Rows`, so wide features are copied only where used;
        call its ``release()`` when done with them, so the next gradient-free pass reuses the buffer).
    """
    m = points.shape[0]
    if m == 0:
        empty = points.new_zeros(0)
        return empty.long(), empty, Rows(points.new_zeros(0, 0))
    if stop_eps <= 0 or per_round <= 0:
        sigma, features = chunked_density(density, points)
        return torch.arange(m, device=points.device), sigma, Rows(features)
    round_of = round_numbers(ray_indices, n_rays, per_round, first_round)  # [M]
    by_round = torch.argsort(round_of, stable=True)  # samples grouped by round, packed order inside
    ends = torch.cumsum(torch.bincount(round_of), dim=0).tolist()
    # the samples' rays, points and optical-depth factors in round order (contiguous per round)
    rays_r, points_r = ray_indices.index_select(0, by_round), points.index_select(0, by_round)
    deltas_r = deltas.index_select(0, by_round).float()
    log_t = torch.zeros(n_rays, dtype=torch.float32, device=points.device)  # log transmittance so far
    log_stop = math.log(stop_eps)
    collected = _Collected(m, buffered=not torch.is_grad_enabled(), keep_features=keep_features)
    start = 0
    for end in ends:
        alive = log_t > log_stop  # [n_rays]
        local = torch.nonzero(alive.index_select(0, rays_r[start:end])).squeeze(-1) + start  # [K_r]
        start = end
        if local.numel() == 0:
            if not bool(alive.any()):
                break
            continue
        for part in local.split(point_chunk(local)):
            sigma, features = density(points_r.index_select(0, part))
            sigma = sigma.reshape(-1)
            depth = sigma.detach().float().clamp_min(0) * deltas_r.index_select(0, part)
            log_t.index_add_(0, rays_r.index_select(0, part), depth, alpha=-1.0)
            collected.add(by_round.index_select(0, part), sigma, features)
    return collected.result(points)


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
        slots = ray_indices * n_columns + columns  # [K] flat slots of the dense layout
        dense = alpha.new_zeros(n_rays * n_columns).index_put((slots,), alpha).view(n_rays, n_columns)
        trans = vr.transmittance(dense).reshape(-1).index_select(0, slots)
    else:
        trans = vr.transmittance_packed(alpha, ray_indices, n_rays)
    weights = alpha * trans
    if stop_eps > 0:
        weights = torch.where(trans.detach() < stop_eps, torch.zeros_like(weights), weights)
    return weights


def interpolation_plan(ray_indices: Tensor, t: Tensor, n_rays: int, stride: int
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Which of V packed samples (sorted by ray, in depth order) get their colour evaluated and how
    the others interpolate it.

    Every ``stride``-th sample of each ray's run is evaluated, and its last one; a sample in
    between takes the colour linearly interpolated in depth between the evaluated samples
    before and after it. Returns ``(evaluated [V] bool, before [V], after [V], fraction [V])``:
    sample ``j`` gets ``c[before] + fraction * (c[after] - c[before])`` (``before = after = j``
    where ``j`` is evaluated).
    """
    v = ray_indices.shape[0]
    positions = torch.arange(v, device=t.device)
    rank = sample_ranks(ray_indices, n_rays)  # [V]
    last = torch.ones_like(rank, dtype=torch.bool)
    last[:-1] = ray_indices[1:] != ray_indices[:-1]
    evaluated = (rank % stride == 0) | last
    mark = torch.where(evaluated, positions, torch.zeros_like(positions))
    before = torch.cummax(mark, dim=0).values  # last evaluated position at or before j (same ray)
    after_mark = torch.where(evaluated, positions, torch.full_like(positions, v - 1))
    after = torch.flip(torch.cummin(torch.flip(after_mark, [0]), dim=0).values, [0])
    span = (t[after] - t[before]).clamp_min(1e-12)
    fraction = torch.where(evaluated, torch.zeros_like(t), ((t - t[before]) / span).clamp(0.0, 1.0))
    return evaluated, before, after, fraction


def visible_colours(field: Field, features: Rows, directions: Tensor, rows: Tensor, ray_indices: Tensor,
                    t: Tensor, n_rays: int, stride: int = 1) -> Tensor:
    """Colours [V, 3] of the visible samples ``rows`` [V] (indices into ``features``; sorted by
    ray, in depth order, with their ``ray_indices`` [V], depths ``t`` [V] and unit ``directions``
    [V, 3]). ``stride`` > 1 evaluates the colour entry on every ``stride``-th sample of each ray
    (and its last) and interpolates the rest in depth (:func:`interpolation_plan`)."""
    if stride > 1:
        evaluated, before, after, fraction = interpolation_plan(ray_indices, t, n_rays, stride)
        picked = torch.nonzero(evaluated).squeeze(-1)
    else:
        picked = torch.arange(rows.shape[0], device=rows.device)
    step = point_chunk(picked)
    values = torch.cat([field.colour(features[rows.index_select(0, part)], directions.index_select(0, part))
                        for part in picked.split(step)])
    if stride <= 1:
        return values
    full = values.new_zeros(rows.shape[0], values.shape[-1]).index_put((picked,), values)
    return full[before] + fraction[:, None].to(values.dtype) * (full[after] - full[before])


def _filled(rgb: Tensor, opacity: Tensor, shown: Tensor, stop_eps: float) -> tuple[Tensor, Tensor]:
    """``rgb`` [R, 3] of the visible weight ``shown`` [R] scaled to the whole ``opacity`` [R], and,
    on rays whose transmittance fell below ``stop_eps``, to 1 (what lies behind absorbs the rest)."""
    target = opacity
    if stop_eps > 0:
        target = torch.where(1.0 - opacity.detach() < stop_eps, torch.ones_like(opacity), opacity)
    return rgb * (target.detach() / shown.clamp_min(1e-12)).clamp_min(1.0)[:, None], target


def composite_samples(field: Field, points: Tensor, directions: Tensor | Rows, ray_indices: Tensor, deltas: Tensor,
                      t: Tensor, n_rays: int, *, stop_eps: float = 0.0, per_round: int = 0,
                      min_weight: float | None = None, colour: bool = True,
                      columns: Tensor | None = None, n_columns: int = 0, colour_stride: int = 1,
                      fill_colour: bool = False, first_round: Tensor | None = None) -> dict[str, Tensor]:
    """Render packed samples of ``n_rays`` rays with ``field``.

    Args:
        points, directions: [M, 3] positions and unit view directions (``directions`` may be a
            :class:`Rows`, gathered only where colour is evaluated); ray_indices: [M] sorted;
        deltas: [M] segment lengths (world units); t: [M] depths (for the depth output).
        stop_eps: early ray termination threshold on the transmittance (0: off).
        per_round: front-to-back rounds of :func:`evaluate_front_to_back` (<= 0: one round).
        min_weight: colour evaluated only where the weight exceeds it (None: at every sample).
        colour: False skips the colour entry entirely (density-only pass).
        columns, n_columns: each sample's slot in a dense ``[n_rays, n_columns]`` layout, when the
            samples come from one (see :func:`terminated_weights`).
        colour_stride: > 1 evaluates colour on every ``colour_stride``-th visible sample of a ray
            and interpolates the others in depth (:func:`visible_colours`).
        fill_colour: the weight of samples below ``min_weight`` takes the ray's mean visible
            colour instead of black (their colours are alike along a ray), and so does the
            transmittance left where a ray stopped (``opacity`` becomes 1 there).
        first_round: [n_rays] leading samples of each ray in the first front-to-back round
            (:func:`evaluate_front_to_back`).
    Returns:
        per ray: ``rgb`` [R, 3] (no background; zeros without colour), ``depth`` [R],
        ``opacity`` [R] (the weight sum), ``n_evaluated`` [R] (density evaluations),
        ``skipped_weight`` [R] (weight whose colour was not evaluated); packed over the
        evaluated samples: ``index`` [K] (into the M inputs), ``weights`` [K], ``ray_indices`` [K].
    """
    index, sigma, features = evaluate_front_to_back(field.density, points, ray_indices, deltas, n_rays,
                                                    stop_eps, per_round, keep_features=colour,
                                                    first_round=first_round)
    ridx = ray_indices.index_select(0, index)
    weights = terminated_weights(sigma.to(deltas.dtype), deltas.index_select(0, index), ridx, n_rays, stop_eps,
                                 None if columns is None else columns.index_select(0, index), n_columns)  # [K]
    opacity = vr.accumulate_packed(weights, None, ridx, n_rays)
    rgb = points.new_zeros(n_rays, 3)
    shown = opacity.detach()
    if colour:
        visible = torch.ones_like(weights, dtype=torch.bool) if min_weight is None else weights.detach() > min_weight
        vis = torch.nonzero(visible).squeeze(-1)
        if vis.numel():
            shown_at, ridx_v, w_v = index.index_select(0, vis), ridx.index_select(0, vis), weights.index_select(0, vis)
            values = visible_colours(field, features, directions[shown_at], vis, ridx_v, t.index_select(0, shown_at),
                                     n_rays, colour_stride).to(weights.dtype)  # [V, 3]
            rgb = vr.accumulate_packed(w_v, values, ridx_v, n_rays)
            shown = vr.accumulate_packed(w_v.detach(), None, ridx_v, n_rays)
            if fill_colour:
                rgb, opacity = _filled(rgb, opacity, shown, stop_eps)
        else:
            shown = torch.zeros_like(shown)
    features.release()  # colours evaluated: a pooled feature buffer goes back for the next pass
    return {
        "rgb": rgb, "depth": vr.accumulate_packed(weights, t.index_select(0, index), ridx, n_rays), "opacity": opacity,
        "n_evaluated": torch.bincount(ridx, minlength=n_rays).to(deltas.dtype),
        "skipped_weight": (opacity.detach() - shown).clamp_min(0.0),
        "index": index, "weights": weights, "ray_indices": ridx,
    }
