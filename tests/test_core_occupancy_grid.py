"""Occupancy grid: sphere occupancy, EMA/threshold, bitfield in state_dict, marching."""

import math

import pytest
import torch
from devices import DEVICES

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


@pytest.mark.parametrize("device", DEVICES)
def test_march_covers_the_box_in_a_fresh_grid(device):
    grid = OccupancyGrid(resolution=8).to(device)
    rays = _rays().to(device)
    for perturb in (False, True):
        samples = grid.march(rays, step_size=0.05, perturb=perturb, generator=torch.Generator().manual_seed(1))
        assert (samples.ray_indices[1:] >= samples.ray_indices[:-1]).all()
        assert (samples.t_ends > samples.t_starts).all()
        assert (samples.t_ends - samples.t_starts <= 0.05 + 1e-6).all()
        lengths = torch.zeros(len(rays), device=device).index_add(0, samples.ray_indices,
                                                                   samples.t_ends - samples.t_starts)
        # every ray's part inside the box is covered exactly once
        t_lo = ((grid.aabb[:3] - rays.origins) / rays.directions)
        t_hi = ((grid.aabb[3:] - rays.origins) / rays.directions)
        t_in = torch.minimum(t_lo, t_hi).amax(-1).clamp_min(1.0)
        t_out = torch.maximum(t_lo, t_hi).amin(-1).clamp_max(5.0)
        assert torch.allclose(lengths, (t_out - t_in).clamp_min(0), atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_march_samples_only_in_occupied_cells(device):
    grid = OccupancyGrid(resolution=16).to(device)
    grid.update(sphere_density, jitter=False)
    rays = _rays().to(device)
    samples = grid.march(rays, step_size=0.02)
    assert len(samples) > 0
    mids = rays.origins[samples.ray_indices] + rays.directions[samples.ray_indices] * samples.t_mids[:, None]
    assert grid.query(mids).all()
    assert (mids.norm(dim=-1) < RADIUS + math.sqrt(3) * 2 / 16).all()
    dense = OccupancyGrid(resolution=16).to(device).march(rays, step_size=0.02)
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


class CountingDensity:
    """sphere_density that records how many points it was asked for."""

    def __init__(self, scale=1.0):
        self.calls, self.scale = [], scale

    def __call__(self, points):
        self.calls.append(points.shape[0])
        return self.scale * sphere_density(points)


def test_torch_ngp_schedule_warmup_then_partial_updates_with_ema():
    grid = OccupancyGrid(resolution=16)
    n = grid.n_cells
    dens = CountingDensity()
    gen = torch.Generator().manual_seed(0)
    for step in range(3):  # warm-up: every cell, every time
        grid.update(dens, step=step, warmup_steps=3, generator=gen, jitter=False)
    assert dens.calls == [n, n, n]
    inside = grid.occupied().reshape(-1).clone()
    assert torch.equal(inside, (_centre_distance(grid) < RADIUS).reshape(-1))
    before = grid.density.clone()
    zero = CountingDensity(scale=0.0)
    grid.update(zero, step=3, warmup_steps=3, generator=gen, decay=0.5)
    evaluated = sum(zero.calls)
    assert n // 4 < evaluated <= n // 2  # a quarter at random + a quarter of occupied (duplicates merged)
    decayed = grid.density != before
    assert torch.allclose(grid.density[decayed], 0.5 * before[decayed])  # EMA only where evaluated
    assert int((decayed & inside).sum()) > 0.5 * int(inside.sum())  # occupied cells are favoured
    assert torch.equal(grid.density[~decayed], before[~decayed])
    ran = [grid.maybe_update(step, dens, every=4, warmup_steps=0, generator=gen) for step in range(9)]
    assert ran == [True, False, False, False, True, False, False, False, True]


def test_rebuild_keeps_thin_shells_between_cell_centres():
    def shell(points):  # density only within 0.02 of the plane x = 0: between the cell centres at +-1/16
        return 5.0 * (points[:, 0].abs() < 0.02).float()

    centre_grid = OccupancyGrid(resolution=16)
    centre_grid.update(shell, jitter=False)
    assert not centre_grid.occupied().any()  # centre sampling misses the shell
    grid = OccupancyGrid(resolution=16)
    grid.rebuild(shell, dilation=0)
    occupied = grid.occupied()
    assert occupied[7:9].all() and not occupied[:7].any() and not occupied[9:].any()  # the two cells at x = 0
    grid.rebuild(lambda p: torch.zeros(p.shape[0]), dilation=0, decay=0.5)
    assert torch.equal(grid.occupied(), occupied)  # merged with the decayed old density


def test_ray_bounds_enclose_the_occupied_ball():
    grid = OccupancyGrid(resolution=32)
    grid.rebuild(sphere_density, dilation=1)  # conservative: every cell touching the ball, plus one
    rays = _rays()
    t_first, t_last, hit = grid.ray_bounds(rays)
    o, d = rays.origins, rays.directions
    b = (o * d).sum(-1)
    disc = b * b - (d * d).sum(-1) * ((o * o).sum(-1) - RADIUS**2)
    true_hit = disc > 0
    assert hit[true_hit].all()
    root = disc.clamp_min(0).sqrt()
    entry, exit_ = (-b - root) / (d * d).sum(-1), (-b + root) / (d * d).sum(-1)
    cell = math.sqrt(3) * 2 / 32 / float(d.norm(dim=-1).min())
    both = hit & true_hit
    assert (t_first[both] <= entry[both] + 1e-4).all() and (t_first[both] >= entry[both] - 3 * cell).all()
    assert (t_last[both] >= exit_[both] - 1e-4).all() and (t_last[both] <= exit_[both] + 3 * cell).all()
    assert torch.equal(t_first[~hit], rays.near[~hit, 0])


def test_march_with_a_density_callback_prunes_behind_opaque_matter():
    grid = OccupancyGrid(resolution=8)  # fresh: everything occupied
    rays = RayBundle(origins=torch.tensor([[0.0, 0.0, 3.0]]), directions=torch.tensor([[0.0, 0.0, -1.0]]),
                     near=torch.tensor([[2.0]]), far=torch.tensor([[4.0]]))

    def slab(points):  # opaque for z < 0.5, empty in front
        return 100.0 * (points[:, 2] < 0.5).float()

    everything = grid.march(rays, step_size=0.05)
    pruned = grid.march(rays, step_size=0.05, density_fn=slab, early_stop_eps=1e-4)
    assert len(everything) == 40
    z_mid = 3.0 - pruned.t_mids
    # kept: the empty samples in front and the slab's first samples, until transmittance < 1e-4
    # (each slab sample lets exp(-100 * 0.05) = 0.0067 through: two samples reach 4.5e-5)
    assert (z_mid > 0.5).sum() == 10 and (z_mid < 0.5).sum() == 2
    opaque_only = grid.march(rays, step_size=0.05, density_fn=slab, alpha_threshold=0.5)
    assert ((3.0 - opaque_only.t_mids) < 0.5).all() and len(opaque_only) == 30


def test_query_along_rays_and_the_occupied_box_test():
    grid = OccupancyGrid(resolution=16)
    grid.update(sphere_density, jitter=False)
    rays = _rays()
    t = torch.linspace(1.0, 5.0, 40).expand(len(rays), 40).contiguous()
    points = rays.origins[:, None, :] + rays.directions[:, None, :] * t[..., None]
    along = grid.query_along(rays.origins, rays.directions, t)
    assert torch.equal(along, grid.query(points.reshape(-1, 3)).view(t.shape)) and along.any()
    box = grid.occupied_box()
    assert (box[:3] <= -RADIUS + 0.2).all() and (box[3:] >= RADIUS - 0.2).all() and (box[3:] <= 1.0).all()
    meets = grid.ray_meets_box(rays)
    assert meets[along.any(dim=1)].all() and not meets.all()  # every ray through an occupied cell passes
    empty = OccupancyGrid(resolution=4)
    empty.rebuild(lambda p: torch.zeros(p.shape[0]))
    assert empty.occupied_box() is None and not empty.ray_meets_box(rays).any()
