"""Depth samplers along rays: stratified and importance (inverse-CDF) sampling.

Both follow the NeRF / MoFaNeRF rules exactly so that a deterministic render reproduces the
original: deterministic stratified depths are the plain ``linspace(near, far, n)``, and the
deterministic importance sampler uses evenly spaced CDF values ``linspace(0, 1, n)``.
Occupancy-grid marching lives in :mod:`facenerf.core.occupancy_grid`.
"""

from __future__ import annotations

import torch
from torch import Tensor

PDF_WEIGHT_PADDING = 1e-5  # added to the coarse weights before normalising (MoFaNeRF rule)


def uniform(shape, like: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """U[0, 1) samples shaped ``shape`` on ``like``'s device/dtype, drawn from ``generator``.

    The generator may live on another device (e.g. a CPU generator for CUDA tensors).
    """
    gen_device = generator.device if generator is not None else like.device
    u = torch.rand(shape, generator=generator, device=gen_device, dtype=like.dtype)
    return u.to(like.device)


def stratified_samples(
    near: Tensor,
    far: Tensor,
    n: int,
    perturb: bool,
    lindisp: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``n`` depths per ray between ``near`` [R, 1] and ``far`` [R, 1] -> t [R, n], sorted.

    Without ``perturb`` the depths are exactly ``linspace`` (in depth, or in disparity with
    ``lindisp``). With ``perturb`` each depth is drawn uniformly inside its bin, the bins being
    bounded by the midpoints of the deterministic depths (and by near/far at the ends).
    """
    steps = torch.linspace(0.0, 1.0, n, dtype=near.dtype, device=near.device)  # [n]
    if lindisp:
        t = 1.0 / (1.0 / near * (1.0 - steps) + 1.0 / far * steps)
    else:
        t = near * (1.0 - steps) + far * steps  # [R, n]
    if perturb and n > 1:
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        upper = torch.cat([mids, t[:, -1:]], dim=-1)
        lower = torch.cat([t[:, :1], mids], dim=-1)
        t = lower + (upper - lower) * uniform(t.shape, t, generator)
    return t


def sample_pdf(
    bins: Tensor, weights: Tensor, n: int, deterministic: bool, generator: torch.Generator | None = None
) -> Tensor:
    """Inverse-CDF samples from a piecewise-constant PDF.

    ``bins`` [R, B+1] are bin edges, ``weights`` [R, B] non-negative bin masses (normalised
    here). Returns [R, n] samples (detached). ``deterministic`` uses ``u = linspace(0, 1, n)``.
    """
    bins, weights = bins.detach(), weights.detach()
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # [R, B+1]
    if deterministic:
        u = torch.linspace(0.0, 1.0, n, dtype=cdf.dtype, device=cdf.device).expand(cdf.shape[0], n)
    else:
        u = uniform((cdf.shape[0], n), cdf, generator)
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True)  # [R, n]
    below = (idx - 1).clamp_min(0)
    above = idx.clamp_max(cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(1, below), cdf.gather(1, above)
    bin_lo, bin_hi = bins.gather(1, below), bins.gather(1, above)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    frac = (u - cdf_lo) / denom
    return bin_lo + frac * (bin_hi - bin_lo)


def importance_samples(
    t: Tensor,
    weights: Tensor,
    n: int,
    deterministic: bool,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``n`` extra depths per ray drawn from coarse compositing weights -> [R, n] (detached).

    MoFaNeRF rule: bin edges are the midpoints of the coarse depths ``t`` [R, S]; the PDF is
    ``weights[:, 1:-1] + 1e-5`` (the interior samples, one per bin between two midpoints).
    The returned depths are unsorted; merge them with ``t`` and sort before rendering.
    """
    if t.shape[-1] < 3:
        raise ValueError("importance sampling needs at least 3 coarse samples per ray")
    bins = 0.5 * (t[:, 1:] + t[:, :-1])  # [R, S-1]
    pdf_weights = weights[:, 1:-1] + PDF_WEIGHT_PADDING  # [R, S-2]
    return sample_pdf(bins, pdf_weights, n, deterministic, generator)


def merge_sorted(a: Tensor, b: Tensor) -> Tensor:
    """Rows of ``a`` [R, A] and ``b`` [R, B], each sorted, merged into sorted rows [R, A + B] (the
    values of ``torch.sort(torch.cat([a, b], -1))``, found with two searches instead of a sort)."""
    a, b = a.contiguous(), b.contiguous()
    pos_a = torch.arange(a.shape[-1], device=a.device) + torch.searchsorted(b, a, right=False)  # b's before a
    pos_b = torch.arange(b.shape[-1], device=b.device) + torch.searchsorted(a, b, right=True)  # a's up to b
    out = a.new_empty(a.shape[0], a.shape[-1] + b.shape[-1])
    return out.scatter_(1, pos_a, a).scatter_(1, pos_b, b)
