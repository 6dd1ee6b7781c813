"""Marching tetrahedra on analytic fields, and OBJ export."""

from __future__ import annotations

import math

import pytest
import torch

from facenerf.errors import FaceNerfError
from facenerf.fitting.mesh import (grid_points, marching_tetrahedra, sample_grid, signed_volume, surface_area,
                                   vertex_normals, write_obj)


def _edge_counts(faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    directed = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected, counts = torch.unique(torch.sort(directed, dim=1).values, dim=0, return_counts=True)
    _, directed_counts = torch.unique(directed, dim=0, return_counts=True)
    return counts, directed_counts, undirected.shape[0]


def test_sphere_is_closed_oriented_and_accurate():
    r, res = 0.7, 33
    lo, hi = [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]
    values = r - grid_points(lo, hi, res).norm(dim=-1)  # inside positive
    vertices, faces = marching_tetrahedra(values, lo, hi, 0.0)
    radii = vertices.norm(dim=-1)
    spacing = 2.0 / (res - 1)
    assert (radii - r).abs().max() < 0.05 * spacing + 0.01  # linear interpolation of an exact distance
    assert surface_area(vertices, faces) == pytest.approx(4 * math.pi * r * r, rel=0.01)
    assert signed_volume(vertices, faces) == pytest.approx(4 / 3 * math.pi * r ** 3, rel=0.01)  # outward normals
    counts, directed_counts, n_edges = _edge_counts(faces)
    assert counts.min() == 2 and counts.max() == 2  # watertight, manifold
    assert directed_counts.max() == 1  # consistently oriented
    assert vertices.shape[0] - n_edges + faces.shape[0] == 2  # Euler characteristic of a sphere
    normals = vertex_normals(vertices, faces)
    assert (normals * vertices / radii[:, None]).sum(-1).min() > 0.9  # normals point outwards


def test_off_centre_ellipsoid_and_level_value():
    lo, hi = [-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]
    p = grid_points(lo, hi, 29)
    centre = torch.tensor([0.2, -0.1, 0.05])
    axes = torch.tensor([0.6, 0.4, 0.5])
    field = 5.0 - 5.0 * ((p - centre) / axes).square().sum(-1)  # level 0 at the ellipsoid
    vertices, faces = marching_tetrahedra(field + 3.0, lo, hi, 3.0)
    on = ((vertices - centre) / axes).square().sum(-1)
    assert (on - 1.0).abs().max() < 0.1
    assert signed_volume(vertices, faces) == pytest.approx(4 / 3 * math.pi * float(axes.prod()), rel=0.02)


def test_empty_and_full_fields_give_no_surface(tmp_path):
    values = torch.zeros(5, 5, 5)
    v, f = marching_tetrahedra(values, [0, 0, 0], [1, 1, 1], 1.0)
    assert v.shape == (0, 3) and f.shape == (0, 3)
    with pytest.raises(FaceNerfError, match="empty"):
        write_obj(tmp_path / "x.obj", v, f)


def test_sample_grid_matches_direct_evaluation_in_chunks():
    fn = lambda x: x[:, 0] * 2 + x[:, 1] - x[:, 2] ** 2  # noqa: E731
    grid = sample_grid(fn, [-1, -2, 0], [1, 2, 3], 6, chunk=17)
    direct = fn(grid_points([-1, -2, 0], [1, 2, 3], 6).reshape(-1, 3)).reshape(6, 6, 6)
    torch.testing.assert_close(grid, direct)


def test_obj_has_vertex_colours_and_one_based_faces(tmp_path):
    values = 0.6 - grid_points([-1] * 3, [1] * 3, 9).norm(dim=-1)
    vertices, faces = marching_tetrahedra(values, [-1] * 3, [1] * 3, 0.0)
    colours = torch.rand(vertices.shape[0], 3)
    path = write_obj(tmp_path / "m.obj", vertices, faces, colours, scale=50.0)
    lines = path.read_text().splitlines()
    v_lines = [l for l in lines if l.startswith("v ")]
    f_lines = [l for l in lines if l.startswith("f ")]
    assert len(v_lines) == vertices.shape[0] and len(f_lines) == faces.shape[0]
    first = [float(x) for x in v_lines[0].split()[1:]]
    assert first[:3] == pytest.approx((vertices[0] * 50).tolist(), abs=1e-4)
    assert first[3:] == pytest.approx(colours[0].tolist(), abs=1e-4)
    indices = [int(x) for l in f_lines for x in l.split()[1:]]
    assert min(indices) == 1 and max(indices) == vertices.shape[0]


def test_smoothing_keeps_mass_and_constants_and_shrinks_noise():
    from facenerf.fitting.mesh import smooth_grid

    impulse = torch.zeros(9, 9, 9)
    impulse[4, 4, 4] = 1.0
    blurred = smooth_grid(impulse, 1.0)
    assert float(blurred.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(blurred[4, 4, 3]) == pytest.approx(float(blurred[3, 4, 4]))  # isotropic
    constant = torch.full((5, 6, 7), 2.0)
    torch.testing.assert_close(smooth_grid(constant, 1.5), constant)
    noise = torch.randn(16, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(smooth_grid(noise, 1.0).std()) < 0.5 * float(noise.std())
    assert smooth_grid(noise, 0.0) is noise
