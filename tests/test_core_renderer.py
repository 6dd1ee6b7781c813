"""Renderer: MoFaNeRF compositing rules, hierarchical sampling, chunking, marching path."""

import math

import pytest
import torch

from facenerf.core.cameras import Intrinsics, orbit_pose
from facenerf.core.encodings import FrequencyEncoding
from facenerf.core.mlp import MLP
from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.rays import RayBundle, image_rays
from facenerf.core.renderer import (
    MarchSettings,
    RenderSettings,
    render_image,
    render_image_marched,
    render_rays,
    render_rays_marched,
)


def constant_field(sigma, colour=(0.2, 0.4, 0.6)):
    def field(points, dirs):
        n = points.shape[0]
        return torch.full((n,), sigma, dtype=points.dtype), torch.tensor(colour, dtype=points.dtype).expand(n, 3)
    return field


def _axis_rays(direction_norm=1.0, near=2.0, far=6.0):
    return RayBundle(
        origins=torch.tensor([[0.0, 0.0, 4.0]], dtype=torch.float64),
        directions=torch.tensor([[0.0, 0.0, -direction_norm]], dtype=torch.float64),
        near=torch.tensor([[near]], dtype=torch.float64),
        far=torch.tensor([[far]], dtype=torch.float64),
    )


@pytest.mark.parametrize("norm, scale", [(1.0, True), (2.0, True), (2.0, False)])
def test_constant_density_matches_closed_form(norm, scale):
    sigma = 0.3
    settings = RenderSettings(n_samples=33, n_importance=0, last_delta=0.0, scale_deltas_by_direction_norm=scale)
    out = render_rays(_axis_rays(norm), constant_field(sigma), None, settings)
    length = 4.0 * (norm if scale else 1.0)
    assert float(out["opacity"][0]) == pytest.approx(1 - math.exp(-sigma * length), rel=1e-7)
    assert torch.allclose(out["rgb"][0], (1 - math.exp(-sigma * length)) * torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64))


def test_mofanerf_last_delta_and_background():
    out = render_rays(_axis_rays(), constant_field(1e-3), None, RenderSettings(n_samples=8, n_importance=0))
    assert float(out["opacity"][0]) == pytest.approx(1.0)  # last segment is 1e10 long
    assert torch.allclose(out["rgb"][0], torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64))
    empty = constant_field(0.0)
    assert torch.equal(render_rays(_axis_rays(), empty, None, RenderSettings(n_samples=8, n_importance=0))["rgb"],
                       torch.zeros(1, 3, dtype=torch.float64))  # black background by default
    white = RenderSettings(n_samples=8, n_importance=0, background=(1.0, 1.0, 1.0))
    assert torch.allclose(render_rays(_axis_rays(), empty, None, white)["rgb"], torch.ones(1, 3, dtype=torch.float64))


def slab_field(points, dirs):
    """A dense slab -0.15 < z < 0.05: the axis ray enters it at t = 3.95, between coarse samples."""
    z = points[:, 2]
    density = 50.0 * ((z > -0.15) & (z < 0.05)).to(points.dtype)
    return density, torch.full_like(points, 0.5)


def test_hierarchical_sampling_refines_the_surface():
    settings = RenderSettings(n_samples=16, n_importance=32)
    fine_calls = []

    def fine(points, dirs):
        fine_calls.append(points.shape[0])
        return slab_field(points, dirs)

    out = render_rays(_axis_rays(), slab_field, fine, settings)
    assert fine_calls == [48]
    assert {"rgb_coarse", "depth_coarse", "opacity_coarse", "weights_coarse"} <= set(out)
    assert out["t"].shape == (1, 48) and (out["t"][:, 1:] >= out["t"][:, :-1]).all()
    # the only coarse hit is t = 4.133; its bin between coarse midpoints is [4.0, 4.267]
    in_bin = ((out["t"] > 4.0 - 1e-9) & (out["t"] < 4.0 + 4.0 / 15 + 1e-9)).sum()
    assert in_bin >= 30 + 1  # 30 of the 32 importance samples (all but u = 0 and u = 1) + the hit
    coarse_error = abs(float(out["depth_coarse"][0]) - 3.95)
    fine_error = abs(float(out["depth"][0]) - 3.95)
    assert coarse_error > 0.15 and fine_error < 0.5 * coarse_error


def _mlp_field(seed=0):
    torch.manual_seed(seed)
    pe, pe_dir = FrequencyEncoding(3, 4), FrequencyEncoding(3, 2)
    net = MLP(pe.out_dim + pe_dir.out_dim, 32, 2, 4, skips=(1,))

    def field(points, dirs):
        raw = net(torch.cat([pe(points), pe_dir(dirs)], dim=-1))
        return torch.relu(raw[:, 0]), torch.sigmoid(raw[:, 1:])

    return field, net


def test_render_image_chunked_equals_unchunked():
    field, _ = _mlp_field()
    K = Intrinsics(8, 6, 9.0, 9.0, 4.0, 3.0)
    rays = image_rays(K, orbit_pose(10.0, 20.0, radius=3.0), 1.0, 5.0)
    settings = RenderSettings(n_samples=12, n_importance=8, chunk_rays=7)
    chunked = render_image(rays, field, None, settings, K.height, K.width)
    with torch.no_grad():
        whole = render_rays(rays, field, None, settings)
    assert chunked["rgb"].shape == (6, 8, 3) and chunked["weights"].shape == (6, 8, 20)
    for key in ("rgb", "depth", "opacity", "rgb_coarse"):
        assert torch.allclose(chunked[key].reshape(whole[key].shape), whole[key], atol=1e-6, rtol=0)
    assert not chunked["rgb"].requires_grad
    with pytest.raises(ValueError):
        render_image(rays, field, None, settings, 5, 5)


def test_render_rays_is_differentiable():
    field, net = _mlp_field()
    rays = image_rays(Intrinsics(4, 4, 5.0, 5.0, 2.0, 2.0), orbit_pose(0, 0, 3.0), 1.0, 5.0)
    out = render_rays(rays, field, field, RenderSettings(n_samples=8, n_importance=4, perturb=True),
                      generator=torch.Generator().manual_seed(0))
    (out["rgb"].sum() + out["rgb_coarse"].sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_bad_field_output_is_reported():
    def broken(points, dirs):
        return torch.zeros(points.shape[0]), torch.zeros(points.shape[0], 4)

    with pytest.raises(ValueError, match="field returned"):
        render_rays(_axis_rays(), broken, None, RenderSettings(n_samples=4, n_importance=0))


def soft_ball(points, dirs):
    """Density 8 * (1 - r / 0.6) inside radius 0.6, colour from position."""
    r = points.norm(dim=-1)
    return 8.0 * (1 - r / 0.6).clamp_min(0.0), torch.sigmoid(3 * points)


def test_marching_render_matches_dense_render():
    K = Intrinsics(16, 16, 20.0, 20.0, 8.0, 8.0)
    rays = image_rays(K, orbit_pose(-15.0, 40.0, radius=3.0), 1.0, 5.0)
    grid = OccupancyGrid(resolution=16)
    grid.update(lambda p: soft_ball(p, None)[0], jitter=False, dilation=1)
    marched = render_image_marched(rays, soft_ball, grid, MarchSettings(step_size=0.005, chunk_rays=100), 16, 16)
    dense = render_image(rays, soft_ball, None, RenderSettings(n_samples=800, n_importance=0, last_delta=0.0), 16, 16)
    assert float(dense["opacity"].max()) > 0.9 and float(dense["opacity"].min()) == 0.0
    assert torch.allclose(marched["rgb"], dense["rgb"], atol=5e-3)
    assert torch.allclose(marched["opacity"], dense["opacity"], atol=5e-3)
    hit = dense["opacity"] > 0.5
    rel_depth = marched["depth"][hit] / marched["opacity"][hit] - dense["depth"][hit] / dense["opacity"][hit]
    assert float(rel_depth.abs().max()) < 0.01
    assert float(marched["n_samples"].mean()) < 0.5 * 800 * 0.6  # far fewer field evaluations


def test_marching_render_is_differentiable_and_handles_empty_batches():
    field, net = _mlp_field(1)
    grid = OccupancyGrid(resolution=8)
    rays = image_rays(Intrinsics(4, 4, 5.0, 5.0, 2.0, 2.0), orbit_pose(0, 0, 3.0), 1.0, 5.0)
    out = render_rays_marched(rays, field, grid, MarchSettings(step_size=0.1, perturb=True),
                              generator=torch.Generator().manual_seed(0))
    out["rgb"].sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    away = RayBundle(rays.origins[:2] + 10, rays.directions[:2], rays.near[:2], rays.far[:2])
    empty = render_rays_marched(away, field, grid, MarchSettings(step_size=0.1, background=(1.0, 1.0, 1.0)))
    assert torch.equal(empty["rgb"], torch.ones(2, 3)) and torch.equal(empty["n_samples"], torch.zeros(2))
