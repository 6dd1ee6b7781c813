"""Volume-rendering compositing as small pure functions.

Dense layout: per-ray samples in ``[R, S]`` tensors. Packed layout: all samples of all rays
in one ``[M]`` tensor with ``ray_indices`` [M] (sorted, non-decreasing) naming each sample's
ray, as produced by occupancy-grid marching. Quantities along a ray, in sample order:

* ``alpha_k = 1 - exp(-sigma_k * delta_k)``
* ``T_k = prod_{j<k} (1 - alpha_j + eps)`` (transmittance before sample k; ``eps`` = 1e-10
  reproduces MoFaNeRF/NeRF, 0 gives the exact product)
* ``w_k = alpha_k * T_k``; colour ``sum_k w_k c_k``; opacity ``sum_k w_k``.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_EPS = 1e-10
# Smallest factor kept inside the packed log-space product; exp(log(1e-30)) is 0 for any use.
_MIN_FACTOR = 1e-30


def alpha_from_density(sigma: Tensor, deltas: Tensor) -> Tensor:
    """Opacity of each segment: ``1 - exp(-sigma * delta)``; any matching shapes ([R, S] or [M])."""
    return 1.0 - torch.exp(-sigma * deltas)


def transmittance(alpha: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """Dense exclusive transmittance ``T_k = prod_{j<k}(1 - alpha_j + eps)``: alpha [R, S] -> [R, S]."""
    keep = 1.0 - alpha + eps
    ones = torch.ones_like(alpha[..., :1])
    return torch.cumprod(torch.cat([ones, keep[..., :-1]], dim=-1), dim=-1)


def weights_from_alpha(alpha: Tensor, eps: float = DEFAULT_EPS) -> Tensor:
    """Dense compositing weights ``alpha_k * T_k``: alpha [R, S] -> [R, S]."""
    return alpha * transmittance(alpha, eps)


def accumulate(weights: Tensor, values: Tensor | None = None) -> Tensor:
    """Dense weighted sum along samples.

    weights [R, S]; values [R, S, C] -> [R, C], values [R, S] -> [R], ``None`` -> opacity [R].
    """
    if values is None:
        return weights.sum(dim=-1)
    if values.dim() == weights.dim():
        return (weights * values).sum(dim=-1)
    return (weights.unsqueeze(-1) * values).sum(dim=-2)


def composite_background(rgb: Tensor, opacity: Tensor, background: Tensor | float | tuple) -> Tensor:
    """Blend accumulated colour over a background: ``rgb + (1 - opacity) * background``.

    rgb [R, 3]; opacity [R]; background a scalar, an RGB triple or per-ray colours [R, 3].
    """
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    return rgb + (1.0 - opacity).unsqueeze(-1) * bg


def ray_starts(ray_indices: Tensor, n_rays: int) -> Tensor:
    """Index of the first packed sample of each ray's run, [M] -> per-sample [M] (sorted input)."""
    counts = torch.bincount(ray_indices, minlength=n_rays)  # [n_rays]
    first = torch.cumsum(counts, dim=0) - counts  # [n_rays]
    return first[ray_indices]


def transmittance_packed(
    alpha: Tensor, ray_indices: Tensor, n_rays: int, eps: float = DEFAULT_EPS
) -> Tensor:
    """Packed exclusive transmittance per ray: alpha [M] -> T [M].

    Computed as a per-ray exclusive cumulative sum of ``log(1 - alpha + eps)`` in float64
    (so long packed buffers keep full precision), restarted at each ray's first sample.
    """
    if alpha.numel() == 0:
        return alpha.clone()
    log_keep = torch.log((1.0 - alpha.double() + eps).clamp_min(_MIN_FACTOR))  # [M]
    inclusive = torch.cumsum(log_keep, dim=0)
    exclusive = inclusive - log_keep
    start = ray_starts(ray_indices, n_rays)
    return torch.exp(exclusive - exclusive[start]).to(alpha.dtype)


def weights_from_alpha_packed(
    alpha: Tensor, ray_indices: Tensor, n_rays: int, eps: float = DEFAULT_EPS
) -> Tensor:
    """Packed compositing weights ``alpha * T``: alpha [M] -> [M]."""
    return alpha * transmittance_packed(alpha, ray_indices, n_rays, eps)


def accumulate_packed(
    weights: Tensor, values: Tensor | None, ray_indices: Tensor, n_rays: int
) -> Tensor:
    """Packed weighted sum per ray.

    weights [M]; values [M, C] -> [n_rays, C], values [M] -> [n_rays], ``None`` -> opacity
    [n_rays]. Rays without samples get zeros.
    """
    if values is None:
        values_w = weights
    elif values.dim() == 1:
        values_w = weights * values
    else:
        values_w = weights.unsqueeze(-1) * values
    out = values_w.new_zeros((n_rays,) + tuple(values_w.shape[1:]))
    return out.index_add(0, ray_indices, values_w)
