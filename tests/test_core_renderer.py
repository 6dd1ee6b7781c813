"""Renderer: MoFaNeRF compositing rules, hierarchical sampling, chunking, marching path."""

import math

import pytest
import torch
from devices import DEVICES

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


@pytest.mark.parametrize("device", DEVICES)
def test_marching_render_matches_dense_render(device):
    K = Intrinsics(16, 16, 20.0, 20.0, 8.0, 8.0)
    rays = image_rays(K, orbit_pose(-15.0, 40.0, radius=3.0), 1.0, 5.0).to(device)
    grid = OccupancyGrid(resolution=16).to(device)
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


@pytest.mark.parametrize("device", DEVICES)
def test_marching_render_is_differentiable_and_handles_empty_batches(device):
    field, net = _mlp_field(1)
    net.to(device)
    grid = OccupancyGrid(resolution=8).to(device)
    rays = image_rays(Intrinsics(4, 4, 5.0, 5.0, 2.0, 2.0), orbit_pose(0, 0, 3.0), 1.0, 5.0).to(device)
    out = render_rays_marched(rays, field, grid, MarchSettings(step_size=0.1, perturb=True),
                              generator=torch.Generator().manual_seed(0))
    out["rgb"].sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    away = RayBundle(rays.origins[:2] + 10, rays.directions[:2], rays.near[:2], rays.far[:2])
    empty = render_rays_marched(away, field, grid, MarchSettings(step_size=0.1, background=(1.0, 1.0, 1.0)))
    assert torch.equal(empty["rgb"].cpu(), torch.ones(2, 3)) and torch.equal(empty["n_samples"].cpu(), torch.zeros(2))


# ----------------------------------------------------------------------------- the unified pass
def _loop_composite(t, sigma, rgb, direction_norm):
    """Independent front-to-back compositing of one ray (Python loop): rgb [3], opacity, depth, weights."""
    trans, colour, opacity, depth, weights = 1.0, torch.zeros(3, dtype=t.dtype), 0.0, 0.0, []
    for k in range(t.shape[0]):
        delta = (t[k + 1] - t[k] if k + 1 < t.shape[0] else torch.tensor(1e10, dtype=t.dtype)) * direction_norm
        alpha = 1.0 - torch.exp(-torch.relu(sigma[k]) * delta)
        w = alpha * trans
        colour, opacity, depth = colour + w * rgb[k], opacity + w, depth + w * t[k]
        weights.append(w)
        trans = trans * (1.0 - alpha + 1e-10)
    return colour, opacity, depth, torch.stack(weights)


def reference_two_pass(rays, coarse, fine, n_samples, n_importance):
    """The coarse -> importance -> fine pass written out ray by ray (deterministic)."""
    from facenerf.core.samplers import importance_samples

    out = {"rgb": [], "opacity": [], "depth": [], "rgb_coarse": []}
    for i in range(len(rays)):
        o, d = rays.origins[i], rays.directions[i]
        t = torch.linspace(float(rays.near[i]), float(rays.far[i]), n_samples, dtype=o.dtype)
        unit = (d / d.norm()).expand(n_samples, 3)
        sigma, rgb = coarse(o + t[:, None] * d, unit)
        c_rgb, _, _, weights = _loop_composite(t, sigma, rgb, d.norm())
        t_new = importance_samples(t[None], weights[None], n_importance, True)[0]
        t_all, _ = torch.sort(torch.cat([t, t_new]))
        sigma, rgb = fine(o + t_all[:, None] * d, (d / d.norm()).expand(t_all.shape[0], 3))
        f_rgb, opacity, depth, _ = _loop_composite(t_all, sigma, rgb, d.norm())
        for key, value in zip(("rgb", "opacity", "depth", "rgb_coarse"), (f_rgb, opacity, depth, c_rgb)):
            out[key].append(value)
    return {key: torch.stack(values) for key, values in out.items()}


class TwoEntryField(torch.nn.Module):
    """A field with the protocol's two entries: density (+ features) from positions, colour from
    the features and the view direction."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.pe, self.pe_dir = FrequencyEncoding(3, 4), FrequencyEncoding(3, 2)
        self.trunk = MLP(self.pe.out_dim, 32, 2, 17)
        self.head = MLP(16 + self.pe_dir.out_dim, 16, 1, 3)
        with torch.no_grad():
            self.trunk.layers[-1].bias[0] += 1.0  # visible density

    def density(self, points):
        out = self.trunk(self.pe(points))
        return torch.relu(out[:, 0]), out[:, 1:]

    def colour(self, features, directions):
        return torch.sigmoid(self.head(torch.cat([features, self.pe_dir(directions)], -1)))

    def forward(self, points, directions):
        sigma, features = self.density(points)
        return sigma, self.colour(features, directions)


def test_unified_pass_equals_the_two_pass_reference_in_every_mode():
    from dataclasses import replace

    coarse, fine = TwoEntryField(3), TwoEntryField(4)
    fine_net = fine
    rays = image_rays(Intrinsics(5, 4, 6.0, 6.0, 2.5, 2.0), orbit_pose(10.0, -30.0, radius=3.0), 1.0, 5.0)
    base = RenderSettings(n_samples=12, n_importance=10)
    ref = reference_two_pass(rays, coarse, fine, 12, 10)
    training = render_rays(rays, coarse, fine, base)  # coarse colour kept (training)
    fitting = render_rays(rays, coarse, fine, replace(base, coarse_colour=False))  # density-only coarse
    packed = render_rays(rays, coarse, fine, replace(base, coarse_colour=False, min_weight=0.0))
    for out in (training, fitting, packed):
        for key in ("rgb", "opacity", "depth"):
            torch.testing.assert_close(out[key], ref[key], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(training["rgb_coarse"], ref["rgb_coarse"], atol=1e-5, rtol=1e-5)
    assert "rgb_coarse" not in fitting and float(training["n_evaluated"][0]) == 12 + 22
    grads = [torch.autograd.grad(out["rgb"].square().sum(), list(fine_net.parameters()))
             for out in (render_rays(rays, coarse, fine, base),
                         render_rays(rays, coarse, fine, replace(base, coarse_colour=False, min_weight=0.0)))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_early_termination_changes_nothing_above_the_threshold():
    sigma, eps = 3.0, 1e-3
    base = RenderSettings(n_samples=33, n_importance=0, last_delta=0.0)
    dense = render_rays(_axis_rays(), constant_field(sigma), None, base)
    calls = []

    def counted(points, dirs):
        calls.append(points.shape[0])
        return constant_field(sigma)(points, dirs)

    from dataclasses import replace

    stopped = render_rays(_axis_rays(), counted, None, replace(base, early_stop_eps=eps, samples_per_round=4))
    # closed form: T_k = exp(-sigma * 0.125 * k) (1 + 1e-10)^k; the first sample with T_k < eps is k = 19
    t_k = torch.exp(-sigma * 0.125 * torch.arange(33, dtype=torch.float64))
    above = t_k >= eps
    assert int(above.sum()) == 19
    torch.testing.assert_close(stopped["weights"][0, above], dense["weights"][0, above], rtol=1e-12, atol=0)
    assert float(stopped["weights"][0, ~above].abs().max()) == 0.0
    lost = float(dense["opacity"][0] - stopped["opacity"][0])
    assert 0 < lost <= eps and lost == pytest.approx(float(t_k[19] - t_k[32]), rel=1e-6)  # last sample: alpha 0
    assert (stopped["rgb"][0] - dense["rgb"][0]).abs().max() <= eps * 0.6
    # five density rounds of 4 samples reach sample 19, then one colour call on those 20 samples
    # (a function field's colour entry calls the function again); samples 20..32 never run
    assert calls == [4, 4, 4, 4, 4, 20] and float(stopped["n_evaluated"][0]) == 20
    same = render_rays(_axis_rays(), constant_field(sigma), None, replace(base, early_stop_eps=1e-12))
    torch.testing.assert_close(same["rgb"], dense["rgb"], rtol=1e-12, atol=1e-12)


def test_grid_skipping_rays_without_occupied_cells_are_background():
    grid = OccupancyGrid(resolution=16)
    grid.rebuild(lambda p: soft_ball(p, None)[0], dilation=1)
    K = Intrinsics(10, 10, 6.0, 6.0, 5.0, 5.0)
    rays = image_rays(K, orbit_pose(0.0, 0.0, radius=3.0), 1.0, 5.0)
    settings = RenderSettings(n_samples=64, n_importance=32, coarse_colour=False, background=(0.0, 0.5, 1.0))
    dense = render_rays(rays, soft_ball, None, settings)
    fast = render_rays(rays, soft_ball, None, settings, grid=grid)
    torch.testing.assert_close(fast["rgb"], dense["rgb"], atol=1e-6, rtol=0)  # the ball lies inside occupied cells
    skipped = fast["n_evaluated"] == 0  # rays that met no occupied cell: background without a field call
    assert skipped.any() and (dense["opacity"][skipped] == 0).all()
    torch.testing.assert_close(fast["rgb"][skipped], torch.tensor([0.0, 0.5, 1.0]).expand(int(skipped.sum()), 3))
    assert float(fast["n_evaluated"].sum()) < 0.3 * float(dense["n_evaluated"].sum())
    empty = OccupancyGrid(resolution=4)
    empty.rebuild(lambda p: torch.zeros(p.shape[0]))
    none = render_rays(rays, soft_ball, None, settings, grid=empty)  # no active ray at all
    assert float(none["n_evaluated"].sum()) == 0 and torch.equal(none["opacity"], torch.zeros(len(rays)))


def test_marched_renderer_returns_weights_and_their_per_ray_sum():
    grid = OccupancyGrid(resolution=16)
    grid.rebuild(lambda p: soft_ball(p, None)[0], dilation=1)
    rays = image_rays(Intrinsics(6, 6, 8.0, 8.0, 3.0, 3.0), orbit_pose(0.0, 0.0, radius=3.0), 1.0, 5.0)
    out = render_rays_marched(rays, soft_ball, grid, MarchSettings(step_size=0.01, early_stop_eps=0.0))
    stopped = render_rays_marched(rays, soft_ball, grid, MarchSettings(step_size=0.01, early_stop_eps=0.05))
    sums = torch.zeros(len(rays)).index_add(0, out["ray_indices"], out["weights"])
    torch.testing.assert_close(sums, out["opacity"])
    assert out["weights"].shape == out["t_mids"].shape == out["ray_indices"].shape
    assert (stopped["opacity"] <= out["opacity"] + 1e-6).all() and (out["opacity"] - stopped["opacity"]).max() <= 0.05
    assert float(stopped["n_samples"].sum()) < float(out["n_samples"].sum())


def test_interpolation_plan_evaluates_every_other_sample_and_each_rays_last():
    from facenerf.core.packed import interpolation_plan

    rays = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2])
    t = torch.tensor([0.0, 1.0, 2.0, 4.0, 5.0, 0.0, 3.0, 7.0])
    evaluated, before, after, fraction = interpolation_plan(rays, t, 3, stride=2)
    assert evaluated.tolist() == [True, False, True, False, True, True, True, True]
    assert before.tolist() == [0, 0, 2, 2, 4, 5, 6, 7] and after.tolist() == [0, 2, 2, 4, 4, 5, 6, 7]
    torch.testing.assert_close(fraction, torch.tensor([0.0, 0.5, 0.0, 2.0 / 3.0, 0.0, 0.0, 0.0, 0.0]))


def _depth_coloured_field(calls):
    """Density 0.4 everywhere, colour linear in z (so linear in depth along the axis ray)."""
    def field(points, dirs):
        calls.append(points.shape[0])
        z = points[:, 2:3]
        return torch.full_like(z[:, 0], 0.4), torch.cat([0.5 + 0.1 * z, 0.3 - 0.05 * z, 0.2 + 0.0 * z], dim=-1)
    return field


def test_colour_stride_interpolates_colour_exactly_where_it_is_linear_in_depth():
    from dataclasses import replace

    base = RenderSettings(n_samples=33, n_importance=0, last_delta=0.0, min_weight=0.0)
    full_calls, strided_calls = [], []
    full = render_rays(_axis_rays(), _depth_coloured_field(full_calls), None, base)
    strided = render_rays(_axis_rays(), _depth_coloured_field(strided_calls), None, replace(base, colour_stride=2))
    torch.testing.assert_close(strided["rgb"], full["rgb"], rtol=0, atol=1e-12)
    # density calls see all 33 samples; colour runs on the 32 with a weight (the last segment is empty),
    # or on 17 of them (every other one and the last)
    assert full_calls == [33, 32] and strided_calls == [33, 17]


def test_fill_colour_gives_skipped_and_terminated_light_the_rays_colour():
    from dataclasses import replace

    base = RenderSettings(n_samples=33, n_importance=0, last_delta=0.0, early_stop_eps=0.05, min_weight=0.04,
                          samples_per_round=4)
    colour = torch.tensor([[0.2, 0.4, 0.6]], dtype=torch.float64)
    plain = render_rays(_axis_rays(), constant_field(3.0), None, base)
    filled = render_rays(_axis_rays(), constant_field(3.0), None, replace(base, fill_colour=True))
    assert float(plain["skipped_weight"][0]) > 0 and float(plain["opacity"][0]) < 1 - 0.04  # dropped: two parts
    assert torch.all(plain["rgb"] < 0.92 * colour)  # about 5% below min_weight, 5% behind the stop
    # a constant colour: the filled render is the colour itself, the ray counted opaque
    torch.testing.assert_close(filled["rgb"], colour, rtol=0, atol=1e-12)
    assert float(filled["opacity"][0]) == 1.0 and float(filled["n_evaluated"][0]) == float(plain["n_evaluated"][0])


def test_coarse_samples_can_be_restricted_to_cells_both_grids_mark():
    from dataclasses import replace

    everywhere = OccupancyGrid(resolution=16)  # a fresh grid marks every cell
    slab = OccupancyGrid(resolution=16)
    slab.rebuild(lambda p: slab_field(p, None)[0], dilation=0)
    coarse_calls = []

    def coarse(points, dirs):
        coarse_calls.append(points.shape[0])
        return slab_field(points, dirs)

    settings = RenderSettings(n_samples=16, n_importance=16, coarse_colour=False, min_weight=0.0)
    render_rays(_axis_rays(), coarse, slab_field, settings, grid=everywhere, fine_grid=slab)
    render_rays(_axis_rays(), coarse, slab_field, replace(settings, coarse_needs_fine_grid=True), grid=everywhere,
                fine_grid=slab)
    t = torch.linspace(2.0, 6.0, 16)
    points = torch.stack([torch.zeros(16), torch.zeros(16), 4.0 - t], -1)  # the coarse samples
    in_box, in_slab = int(everywhere.query(points).sum()), int(slab.query(points).sum())
    assert coarse_calls[0] == in_box and coarse_calls[1] == in_slab and 0 < in_slab < in_box


def test_gradient_free_front_to_back_evaluation_matches_the_autograd_one():
    from facenerf.core.packed import evaluate_front_to_back

    field, _ = _mlp_field(3)
    torch.manual_seed(1)
    rays = torch.sort(torch.randint(0, 40, (600,))).values
    points, deltas = torch.randn(600, 3), torch.rand(600) * 0.5

    def density(p):
        sigma, rgb = field(p, torch.zeros_like(p))
        return 20.0 * sigma, torch.cat([rgb, p], -1)  # a 6-wide feature

    with torch.no_grad():
        index, sigma, features = evaluate_front_to_back(density, points, rays, deltas, 40, 1e-2, 3)
        all_rows = torch.arange(index.shape[0])
        buffered = (index.clone(), sigma.clone(), features[all_rows].clone())
    index, sigma, features = evaluate_front_to_back(density, points, rays, deltas, 40, 1e-2, 3)
    assert torch.equal(buffered[0], index) and index.shape[0] < 600  # some samples lay behind opaque matter
    torch.testing.assert_close(buffered[1], sigma.detach(), rtol=0, atol=0)
    torch.testing.assert_close(buffered[2], features[all_rows].detach(), rtol=0, atol=0)
    torch.testing.assert_close(features[all_rows][:, 3:].detach(), points[index])  # rows follow the samples


def test_merge_sorted_equals_sorting_the_concatenation():
    from facenerf.core.samplers import merge_sorted

    torch.manual_seed(0)
    a = torch.sort(torch.rand(50, 7), dim=-1).values
    b = torch.sort(torch.cat([torch.rand(50, 3), a[:, 3:5]], -1), dim=-1).values  # with ties to a
    torch.testing.assert_close(merge_sorted(a, b), torch.sort(torch.cat([a, b], -1), dim=-1).values, rtol=0, atol=0)


def test_pooled_feature_rows_of_nested_gradient_free_passes_do_not_alias():
    from facenerf.core.packed import evaluate_front_to_back

    torch.manual_seed(2)
    rays = torch.sort(torch.randint(0, 20, (300,))).values
    points, deltas = torch.randn(300, 3), torch.rand(300) * 0.5

    def density(shift):
        return lambda p: (torch.ones(p.shape[0]), p + shift)  # features: the points, shifted

    with torch.no_grad():
        _, _, first = evaluate_front_to_back(density(0.0), points, rays, deltas, 20, 0.0, 0)
        index, _, second = evaluate_front_to_back(density(10.0), points, rays, deltas, 20, 1e-2, 3)
        third_index, _, third = evaluate_front_to_back(density(20.0), points, rays, deltas, 20, 1e-2, 3)
        rows = torch.arange(index.shape[0])
        # a pass still holding its rows keeps them while later passes run (no shared buffer)
        torch.testing.assert_close(second[rows], points[index] + 10.0, rtol=0, atol=0)
        released = {second.lease.data_ptr(), third.lease.data_ptr()}
        assert len(released) == 2
        second.release()
        with pytest.raises(RuntimeError, match="released"):
            second[rows]
        third.release()
        again_index, _, again = evaluate_front_to_back(density(30.0), points, rays, deltas, 20, 1e-2, 3)
        assert again.lease.data_ptr() in released  # a released buffer serves the next pass
        torch.testing.assert_close(again[rows], points[again_index] + 30.0, rtol=0, atol=0)
    torch.testing.assert_close(first[torch.arange(300)], points, rtol=0, atol=0)


def test_round_numbers_with_a_first_round_per_ray():
    from facenerf.core.packed import round_numbers

    rays = torch.tensor([0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    torch.testing.assert_close(round_numbers(rays, 4, 2), torch.tensor([0, 0, 1, 1, 2, 0, 0, 0, 0, 1, 1, 2, 2]))
    first = torch.tensor([3, 0, 1, 7])  # ray 3 has no samples
    torch.testing.assert_close(round_numbers(rays, 4, 2, first), torch.tensor([0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 2, 2, 3]))


def test_first_fine_round_up_to_the_coarse_stop_renders_the_same_image():
    from dataclasses import replace

    # a ball of density 8 around the origin seen along the axis: opaque, so rays stop inside it
    def ball(points, dirs):
        sigma = 8.0 * (points.norm(dim=-1) < 0.8).to(points.dtype)
        return sigma, torch.sigmoid(points + 0.3)

    calls = {False: [], True: []}

    def counted(first):
        def field(points, dirs):
            calls[first].append(points.shape[0])
            return ball(points, dirs)
        return field

    base = RenderSettings(n_samples=24, n_importance=24, coarse_colour=False, early_stop_eps=1e-3, min_weight=0.0,
                          samples_per_round=2)
    rays = _axis_rays()
    out = {first: render_rays(rays, ball, counted(first), replace(base, coarse_first_round=first))
           for first in (False, True)}
    torch.testing.assert_close(out[True]["rgb"], out[False]["rgb"], rtol=0, atol=1e-12)
    torch.testing.assert_close(out[True]["weights"], out[False]["weights"], rtol=0, atol=1e-12)
    assert float(out[False]["opacity"][0]) > 1 - 1e-3  # the ray did stop
    # fewer fine density rounds (the colour call is the last one of each list)
    assert len(calls[True]) < len(calls[False]) and len(calls[True]) <= 4
