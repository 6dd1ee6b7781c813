"""Compositing functions: closed forms for constant density, dense vs packed agreement."""

import math

import torch

from facenerf.core import volume_rendering as vr


def test_constant_density_closed_form():
    sigma, length, n = 0.7, 3.0, 50
    deltas = torch.full((1, n), length / n, dtype=torch.float64)
    alpha = vr.alpha_from_density(torch.full_like(deltas, sigma), deltas)
    trans = vr.transmittance(alpha, eps=0.0)
    k = torch.arange(n, dtype=torch.float64)
    assert torch.allclose(trans[0], torch.exp(-sigma * length / n * k))
    weights = vr.weights_from_alpha(alpha, eps=0.0)
    opacity = vr.accumulate(weights)
    assert math.isclose(float(opacity), 1 - math.exp(-sigma * length), rel_tol=1e-12)
    # the remaining transmittance after the last sample
    assert math.isclose(float(1 - opacity), math.exp(-sigma * length), rel_tol=1e-10)
    # the MoFaNeRF eps changes nothing measurable
    assert torch.allclose(vr.weights_from_alpha(alpha), weights, atol=1e-8)


def test_accumulate_shapes_and_background():
    weights = torch.tensor([[0.2, 0.3, 0.1], [0.0, 0.0, 0.0]])
    rgb = torch.ones(2, 3, 3) * torch.tensor([1.0, 0.5, 0.0])
    colour = vr.accumulate(weights, rgb)
    assert torch.allclose(colour[0], 0.6 * torch.tensor([1.0, 0.5, 0.0]))
    depth = vr.accumulate(weights, torch.tensor([[1.0, 2.0, 3.0]] * 2))
    assert torch.allclose(depth, torch.tensor([0.2 + 0.6 + 0.3, 0.0]))
    opacity = vr.accumulate(weights)
    white = vr.composite_background(colour, opacity, (1.0, 1.0, 1.0))
    assert torch.allclose(white[1], torch.ones(3))
    assert torch.allclose(white[0], colour[0] + 0.4)
    per_ray = vr.composite_background(colour, opacity, torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.4, 0.6]]))
    assert torch.allclose(per_ray[1], torch.tensor([0.2, 0.4, 0.6]))


def _pack(values, counts):
    rows = [values[r, :c] for r, c in enumerate(counts)]
    ray_indices = torch.cat([torch.full((c,), r, dtype=torch.long) for r, c in enumerate(counts)])
    return torch.cat(rows), ray_indices


def test_packed_matches_dense_values_and_gradients():
    gen = torch.Generator().manual_seed(0)
    counts = [5, 0, 3, 8, 1]
    sigma = torch.rand(5, 8, generator=gen, dtype=torch.float64) * 3
    deltas = torch.rand(5, 8, generator=gen, dtype=torch.float64) * 0.5
    mask = torch.arange(8)[None] < torch.tensor(counts)[:, None]
    rgb = torch.rand(5, 8, 3, generator=gen, dtype=torch.float64)

    sigma_d = (sigma * mask).requires_grad_(True)
    w_dense = vr.weights_from_alpha(vr.alpha_from_density(sigma_d, deltas))
    colour_dense = vr.accumulate(w_dense, rgb)

    sigma_p, ray_indices = _pack(sigma, counts)
    sigma_p.requires_grad_(True)
    deltas_p, _ = _pack(deltas, counts)
    rgb_p, _ = _pack(rgb, counts)
    alpha_p = vr.alpha_from_density(sigma_p, deltas_p)
    w_packed = vr.weights_from_alpha_packed(alpha_p, ray_indices, 5)
    colour_packed = vr.accumulate_packed(w_packed, rgb_p, ray_indices, 5)

    assert torch.allclose(_pack(w_dense, counts)[0], w_packed, atol=1e-12)
    assert torch.allclose(colour_dense, colour_packed, atol=1e-12)
    assert torch.allclose(vr.accumulate(w_dense), vr.accumulate_packed(w_packed, None, ray_indices, 5))
    depth_p = vr.accumulate_packed(w_packed, deltas_p, ray_indices, 5)
    assert torch.allclose(depth_p, vr.accumulate(w_dense, deltas))
    assert torch.equal(colour_packed[1], torch.zeros(3, dtype=torch.float64))

    colour_dense.sum().backward()
    colour_packed.sum().backward()
    assert torch.allclose(_pack(sigma_d.grad, counts)[0], sigma_p.grad, atol=1e-12)


def test_packed_transmittance_stays_exact_after_many_opaque_rays():
    # 500 nearly opaque rays of 64 samples before the ray we check: a float32 running sum
    # of log-transmittance would have lost the last ray's precision.
    n_before, per_ray = 500, 64
    alpha = torch.cat([torch.full((n_before * per_ray,), 0.9999), torch.tensor([0.1, 0.2, 0.3])])
    ray_indices = torch.cat([torch.arange(n_before).repeat_interleave(per_ray), torch.full((3,), n_before)])
    trans = vr.transmittance_packed(alpha, ray_indices, n_before + 1)
    assert trans.dtype == torch.float32
    assert torch.allclose(trans[-3:], torch.tensor([1.0, 0.9, 0.72]), rtol=1e-6)
    assert torch.allclose(trans[:2], torch.tensor([1.0, 1e-4]), rtol=1e-3)


def test_packed_with_no_samples():
    empty = torch.zeros(0)
    idx = torch.zeros(0, dtype=torch.long)
    w = vr.weights_from_alpha_packed(empty, idx, 3)
    assert w.shape == (0,)
    assert torch.equal(vr.accumulate_packed(w, torch.zeros(0, 3), idx, 3), torch.zeros(3, 3))
