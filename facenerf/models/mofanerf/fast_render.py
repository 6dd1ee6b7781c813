"""Inference rendering that skips the colour branch where it cannot show.

The released renderer evaluates the whole MLP (density and colour) at all 64 + 128 samples of
every ray. At inference only two things matter: the coarse network's *density* (its colour is
never shown; it only steers the importance samples) and, for the fine network, the colour of
samples whose compositing weight is visible. This path therefore

1. evaluates the coarse network's density branch only (64 samples),
2. evaluates the fine network's density branch at all 128 samples and composites the weights,
3. evaluates the fine colour branch only where ``weight > min_weight``.

With ``min_weight = 0`` the image equals the dense render (up to float rounding); with
``min_weight > 0`` the colour dropped per ray is at most the sum of the skipped weights
(returned as ``skipped_weight``), which for a trained face is tiny: background rays have
near-zero weights everywhere and a surface hit concentrates the weight on a few samples.
It uses the shared samplers and compositing functions of :mod:`facenerf.core`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from facenerf.core import volume_rendering as vr
from facenerf.core.rays import RayBundle
from facenerf.core.renderer import RenderSettings, unit_directions
from facenerf.core.samplers import importance_samples, stratified_samples


def _weights(model_net, model, rays: RayBundle, t: Tensor, codes, settings: RenderSettings,
             keep_features: bool) -> tuple[Tensor, Tensor | None]:
    """Compositing weights ``[R, S]`` of ``model_net``'s density at depths ``t``; optionally the
    density features ``[R*S, W]`` for the colour branch."""
    n_rays, n_samples = t.shape
    points = rays.origins[:, None, :] + rays.directions[:, None, :] * t[..., None]  # [R, S, 3]
    feature = model_net.density_feature(model.pe_xyz(points.reshape(-1, 3)), codes.expression, codes.shape)
    sigma = torch.relu(model_net.density_head(feature).squeeze(-1)).view(n_rays, n_samples).float()
    deltas = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], settings.last_delta)], dim=-1)
    if settings.scale_deltas_by_direction_norm:
        deltas = deltas * rays.directions.norm(dim=-1, keepdim=True)
    weights = vr.weights_from_alpha(vr.alpha_from_density(sigma, deltas))
    return weights, (feature if keep_features else None)


@torch.no_grad()
def render_rays_visible(model, rays: RayBundle, codes, settings: RenderSettings, min_weight: float = 1e-4) -> dict:
    """Deterministic render of ``rays`` (see the module docstring).

    Returns ``rgb [R, 3]``, ``depth [R]``, ``opacity [R]`` and ``skipped_weight [R]`` (the
    compositing weight whose colour was not evaluated).
    """
    t = stratified_samples(rays.near, rays.far, settings.n_samples, False, settings.lindisp)
    net = model.coarse
    if settings.n_importance > 0:
        coarse_weights, _ = _weights(model.coarse, model, rays, t, codes, settings, keep_features=False)
        t_new = importance_samples(t, coarse_weights, settings.n_importance, deterministic=True)
        t, _ = torch.sort(torch.cat([t, t_new], dim=-1), dim=-1)
        net = model.fine if model.fine is not None else model.coarse
    weights, feature = _weights(net, model, rays, t, codes, settings, keep_features=True)  # [R, S]
    flat = weights.reshape(-1)
    visible = torch.nonzero(flat > min_weight).squeeze(-1)  # [K] sample indices
    ray_of = torch.div(visible, t.shape[1], rounding_mode="floor")  # [K]
    dirs = unit_directions(rays.directions)[ray_of]  # [K, 3]
    rgb = torch.sigmoid(net.raw_colour(feature[visible], model.pe_dir(dirs), codes.texture).float())  # [K, 3]
    colour = torch.zeros_like(rays.origins, dtype=rgb.dtype).index_add_(0, ray_of, flat[visible, None] * rgb)
    opacity = vr.accumulate(weights)
    return {
        "rgb": vr.composite_background(colour, opacity, settings.background),
        "depth": vr.accumulate(weights, t),
        "opacity": opacity,
        "skipped_weight": opacity - torch.zeros_like(opacity).index_add_(0, ray_of, flat[visible]),
    }
