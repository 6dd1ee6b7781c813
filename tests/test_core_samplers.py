"""Samplers: exact deterministic linspace, stratified bins, MoFaNeRF importance sampling."""

import pytest
import torch

from facenerf.core.samplers import importance_samples, sample_pdf, stratified_samples


def _bounds(n_rays=3):
    near = torch.tensor([[8.0], [2.0], [0.5]])[:n_rays]
    far = torch.tensor([[26.0], [6.0], [1.5]])[:n_rays]
    return near, far


def test_deterministic_stratified_is_linspace():
    near, far = _bounds()
    t = stratified_samples(near, far, 64, perturb=False)
    assert t.shape == (3, 64)
    for r in range(3):
        assert torch.allclose(t[r], torch.linspace(float(near[r]), float(far[r]), 64), atol=1e-5)
    assert t[0, 0] == 8.0 and t[0, -1] == 26.0


def test_perturbed_samples_stay_in_their_bins_and_are_seeded():
    near, far = _bounds()
    base = stratified_samples(near, far, 16, perturb=False)
    mids = 0.5 * (base[:, 1:] + base[:, :-1])
    lower = torch.cat([base[:, :1], mids], dim=-1)
    upper = torch.cat([mids, base[:, -1:]], dim=-1)
    t = stratified_samples(near, far, 16, perturb=True, generator=torch.Generator().manual_seed(3))
    assert ((t >= lower) & (t <= upper)).all()
    assert not torch.allclose(t, base)
    again = stratified_samples(near, far, 16, perturb=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(t, again)


def test_lindisp_is_linear_in_disparity():
    near, far = _bounds()
    t = stratified_samples(near, far, 5, perturb=False, lindisp=True)
    disparity = 1.0 / t
    steps = disparity[:, 1:] - disparity[:, :-1]
    assert torch.allclose(steps, steps[:, :1].expand_as(steps), atol=1e-6)


def test_importance_samples_concentrate_in_a_delta_bin():
    near, far = _bounds(2)
    t = stratified_samples(near, far, 32, perturb=False)
    weights = torch.zeros(2, 32)
    weights[0, 10] = 1.0
    weights[1, 25] = 1.0
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    new = importance_samples(t, weights, 64, deterministic=True)
    assert new.shape == (2, 64)
    for r, j in ((0, 10), (1, 25)):
        inner = new[r, 1:-1]  # u = 0 and u = 1 land on the outermost bin edges by construction
        assert ((inner >= mids[r, j - 1]) & (inner <= mids[r, j])).all()
    random_new = importance_samples(t, weights, 200, deterministic=False, generator=torch.Generator().manual_seed(0))
    in_bin = (random_new[0] >= mids[0, 9]) & (random_new[0] <= mids[0, 10])
    assert in_bin.float().mean() > 0.98


def test_uniform_weights_give_evenly_spaced_deterministic_samples():
    near, far = _bounds(1)
    t = stratified_samples(near, far, 10, perturb=False)
    mids = 0.5 * (t[:, 1:] + t[:, :-1])
    new = importance_samples(t, torch.ones(1, 10), 7, deterministic=True)
    assert torch.allclose(new[0], torch.linspace(float(mids[0, 0]), float(mids[0, -1]), 7), atol=1e-5)


def test_importance_samples_are_detached():
    near, far = _bounds(1)
    t = stratified_samples(near, far, 8, perturb=False).requires_grad_(True)
    weights = torch.rand(1, 8, requires_grad=True)
    assert not importance_samples(t, weights, 4, deterministic=True).requires_grad
    with pytest.raises(ValueError):
        importance_samples(t[:, :2], weights[:, :2], 4, deterministic=True)


def test_sample_pdf_inverse_cdf_on_two_bins():
    bins = torch.tensor([[0.0, 1.0, 3.0]])
    weights = torch.tensor([[1.0, 3.0]])  # cdf: 0, 0.25, 1
    samples = sample_pdf(bins, weights, 5, deterministic=True)  # u = 0, .25, .5, .75, 1
    assert torch.allclose(samples[0], torch.tensor([0.0, 1.0, 1.0 + 2 / 3, 1.0 + 4 / 3, 3.0]), atol=1e-6)
