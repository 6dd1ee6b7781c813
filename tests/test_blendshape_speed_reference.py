"""The dense reference of benchmarks/blendshape_speed.py computes what the marched renderer computes."""

import importlib.util
from pathlib import Path

import torch

from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.rays import RayBundle
from facenerf.core.renderer import MarchSettings, render_rays_marched

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "blendshape_speed.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("blendshape_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ball(points, directions):
    """A ball of radius 0.5 with density 8, coloured by position; empty elsewhere."""
    sigma = 8.0 * (points.norm(dim=-1) < 0.5).float()
    return sigma, (points * 0.5 + 0.5).clamp(0, 1)


def rays(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    origins = torch.tensor([0.0, 0.0, 3.0]).expand(n, 3) + 0.2 * torch.randn(n, 3, generator=gen)
    targets = 0.9 * (torch.rand(n, 3, generator=gen) * 2 - 1)  # some rays miss the ball, a few the box
    directions = targets - origins
    return RayBundle(origins, directions, torch.full((n, 1), 0.1), torch.full((n, 1), 10.0))


def test_dense_reference_equals_marching_without_grid_or_termination():
    bench = load_benchmark()
    grid = OccupancyGrid((-1, -1, -1, 1, 1, 1), 8)  # fresh: every cell occupied
    settings = MarchSettings(step_size=0.05, early_stop_eps=0.0, background=(0.2, 0.3, 0.4))
    bundle = rays()
    ours = render_rays_marched(bundle, ball, grid, settings)
    ref = bench.dense_reference(bundle, ball, grid, settings)
    assert torch.allclose(ref["rgb"], ours["rgb"], atol=1e-5)
    assert torch.allclose(ref["opacity"], ours["opacity"], atol=1e-5)
    assert torch.equal(ref["n_samples"], ours["n_samples"].float())
    assert float(ours["opacity"].max()) > 0.9 and float(ours["opacity"].min()) < 1e-6  # hits and misses


def test_dense_reference_misses_the_box():
    bench = load_benchmark()
    grid = OccupancyGrid((-1, -1, -1, 1, 1, 1), 8)
    away = RayBundle(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[0.0, 1.0, 0.0]]), torch.full((1, 1), 0.1),
                     torch.full((1, 1), 10.0))
    out = bench.dense_reference(away, ball, grid, MarchSettings(step_size=0.05, background=(1.0, 1.0, 1.0)))
    assert float(out["n_samples"][0]) == 0 and torch.allclose(out["rgb"], torch.ones(1, 3))
