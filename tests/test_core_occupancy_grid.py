"""Occupancy grid: sphere occupancy, EMA/threshold, bitfield in state_dict, marching."""

import math

import torch

from facenerf.core.cameras import Intrinsics, orbit_pose
from facenerf.core.occupancy_grid import OccupancyGrid, pack_bits, unpack_bits
from facenerf.core.rays import RayBundle, image_rays

RADIUS = 0.55


def sphere_density(points):
    return 10.0 * (points.norm(dim=-1) < RADIUS).float()


def _centre_distance(grid):
    return grid.cell_centers().norm(dim=-1).reshape([grid.resolution] * 3)


def test_sphere_grid_marks_the_cells_inside():
    grid = OccupancyGrid(resolution=16)
    assert grid.occupied().all()  # fresh grid: nothing skipped yet
    grid.update(sphere_density, jitter=False)
    assert torch.equal(grid.occupied(), _centre_distance(grid) < RADIUS)
    jittered = OccupancyGrid(resolution=16)
    jittered.update(sphere_density, jitter=True, generator=torch.Generator().manual_seed(0))
    half_diag = math.sqrt(3) * float(jittered.cell_size[0]) / 2
    dist = _centre_distance(jittered)
    occupied = jittered.occupied()
    assert occupied[dist < RADIUS - half_diag].all()
    assert not occupied[dist > RADIUS + half_diag].any()


def test_decay_threshold_and_dilation():
    grid = OccupancyGrid(resolution=8)
    grid.update(sphere_density, jitter=False)
    inside = grid.occupied().clone()
    grid.update(lambda p: torch.zeros(p.shape[0]), decay=0.5, jitter=False)
    assert torch.allclose(grid.density[inside.reshape(-1)], torch.full((int(inside.sum()),), 5.0))
    assert torch.equal(grid.occupied(), inside)  # decayed but still above the threshold
    faint = OccupancyGrid(resolution=8)
    faint.update(lambda p: sphere_density(p) + 0.005, threshold=0.01, jitter=False)
    assert torch.equal(faint.occupied(), inside)  # 0.005 haze is below the threshold
    faint.update(lambda p: torch.zeros(p.shape[0]), decay=1e-4, threshold=0.01, jitter=False)
    # cutoff = min(threshold, mean): in a nearly empty grid the denser-than-average cells stay
    assert torch.equal(faint.occupied(), inside)
    faint.update(lambda p: torch.zeros(p.shape[0]), decay=0.0, threshold=0.01, jitter=False)
    assert not faint.occupied().any()
    dilated = OccupancyGrid(resolution=8)
    dilated.update(sphere_density, jitter=False, dilation=1)
    grown = torch.nn.functional.max_pool3d(inside.float()[None, None], 3, 1, 1)[0, 0] > 0
    assert torch.equal(dilated.occupied(), grown)


def test_bitfield_packing_and_state_dict_round_trip():
    mask = torch.rand(64) > 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.shape == (8,)
    assert torch.equal(unpack_bits(packed), mask)
    assert int(pack_bits(torch.tensor([True] + [False] * 7))[0]) == 1  # cell 8n + b -> bit b
    grid = OccupancyGrid(aabb=(-1, -0.5, -1, 1, 0.5, 1), resolution=8)
    grid.update(sphere_density, jitter=False)
    state = grid.state_dict()
    assert {"aabb", "density", "bitfield", "mean_density"} <= set(state)
    assert state["bitfield"].dtype == torch.uint8 and state["bitfield"].numel() == 8**3 // 8
    fresh = OccupancyGrid(resolution=8)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.occupied(), grid.occupied())
    assert torch.equal(fresh.aabb, grid.aabb)


def _rays():
    K = Intrinsics(12, 12, 14.0, 14.0, 6.0, 6.0)
    return image_rays(K, orbit_pose(20.0, 35.0, radius=3.0), near=1.0, far=5.0)


def test_march_covers_the_box_in_a_fresh_grid():
    grid = OccupancyGrid(resolution=8)
    rays = _rays()
    for perturb in (False, True):
        samples = grid.march(rays, step_size=0.05, perturb=perturb, generator=torch.Generator().manual_seed(1))
        assert (samples.ray_indices[1:] >= samples.ray_indices[:-1]).all()
        assert (samples.t_ends > samples.t_starts).all()
        assert (samples.t_ends - samples.t_starts <= 0.05 + 1e-6).all()
        lengths = torch.zeros(len(rays)).index_add(0, samples.ray_indices, samples.t_ends - samples.t_starts)
        # every ray's part inside the box is covered exactly once
        t_lo = ((grid.aabb[:3] - rays.origins) / rays.directions)
        t_hi = ((grid.aabb[3:] - rays.origins) / rays.directions)
        t_in = torch.minimum(t_lo, t_hi).amax(-1).clamp_min(1.0)
        t_out = torch.maximum(t_lo, t_hi).amin(-1).clamp_max(5.0)
        assert torch.allclose(lengths, (t_out - t_in).clamp_min(0), atol=1e-4)


def test_march_samples_only_in_occupied_cells():
    grid = OccupancyGrid(resolution=16)
    grid.update(sphere_density, jitter=False)
    rays = _rays()
    samples = grid.march(rays, step_size=0.02)
    assert len(samples) > 0
    mids = rays.origins[samples.ray_indices] + rays.directions[samples.ray_indices] * samples.t_mids[:, None]
    assert grid.query(mids).all()
    assert (mids.norm(dim=-1) < RADIUS + math.sqrt(3) * 2 / 16).all()
    dense = OccupancyGrid(resolution=16).march(rays, step_size=0.02)
    assert len(samples) < 0.5 * len(dense)  # empty space is skipped


def test_march_respects_near_far_and_misses():
    grid = OccupancyGrid(resolution=8)
    rays = RayBundle(
        origins=torch.tensor([[0.0, 0.0, 3.0], [5.0, 5.0, 5.0]]),
        directions=torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]]),
        near=torch.tensor([[2.5], [0.0]]),
        far=torch.tensor([[3.5], [9.0]]),
    )
    samples = grid.march(rays, step_size=0.1)
    assert (samples.ray_indices == 0).all()  # the second ray misses the box
    assert float(samples.t_starts.min()) == 2.5 and abs(float(samples.t_ends.max()) - 3.5) < 1e-6
