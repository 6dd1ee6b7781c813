"""Analytic checks of the wild-photo preprocessing maths: similarity alignment, rasteriser, SH."""

import math

import numpy as np
import pytest

from facenerf.core.cameras import Intrinsics
from facenerf.preprocess.fitting import sh
from facenerf.preprocess.fitting.align import (invert_transform, similarity_transform, transform_points,
                                               transform_scale, warp_image)
from facenerf.preprocess.fitting.raster import rasterize, vertex_normals
from facenerf.preprocess.training.rig import mofanerf_pose


def _similarity(scale, angle_deg, tx, ty):
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.concatenate([scale * rot, [[tx], [ty]]], axis=1)


def test_similarity_transform_recovers_known_map():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, size=(68, 2))
    truth = _similarity(1.7, 23.0, 12.0, -5.0)
    est = similarity_transform(src, transform_points(src, truth))
    np.testing.assert_allclose(est, truth, atol=1e-9)
    assert transform_scale(est) == pytest.approx(1.7)
    np.testing.assert_allclose(transform_points(transform_points(src, est), invert_transform(est)), src, atol=1e-9)


def test_similarity_transform_never_reflects():
    src = np.random.default_rng(4).uniform(0, 10, size=(20, 2))
    est = similarity_transform(src, src * np.array([-1.0, 1.0]))
    assert np.linalg.det(est[:, :2]) > 0
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="mirrored"):
        similarity_transform(square, square * np.array([-1.0, 1.0]))


def test_warp_image_moves_a_dot_where_the_transform_says():
    image = np.zeros((40, 60, 3), np.float32)
    image[10, 20] = 1.0
    matrix = _similarity(2.0, 30.0, 10.0, 5.0)
    warped, inside = warp_image(image, matrix, 96)
    expected = transform_points(np.array([[20.0, 10.0]]), matrix)[0]
    y, x = np.unravel_index(np.argmax(warped[..., 0]), warped.shape[:2])
    assert abs(x - expected[0]) <= 1 and abs(y - expected[1]) <= 1
    assert inside[int(expected[1]), int(expected[0])]
    assert not inside[95, 0]  # far outside the photo's footprint


def _sphere(radius=2.0, n=48):
    """UV sphere mesh (outward normals = positions / radius)."""
    theta = np.linspace(0, np.pi, n)
    phi = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = radius * np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    faces = []
    m = 2 * n
    for i in range(n - 1):
        for j in range(m):
            a, b, c, d = i * m + j, i * m + (j + 1) % m, (i + 1) * m + j, (i + 1) * m + (j + 1) % m
            faces += [[a, c, b], [b, c, d]]
    return verts, np.array(faces)


def test_rasterize_sphere_matches_ray_intersection():
    verts, faces = _sphere()
    K = Intrinsics(48, 48, 120.0, 120.0, 24.0, 24.0)
    c2w = mofanerf_pose(15.0, -30.0, 8.0).double().numpy()
    result = rasterize(verts, faces, c2w, K)
    ys, xs = np.nonzero(result.covered)
    assert 300 < len(xs) < 48 * 48
    dirs = np.stack([(xs - K.cx) / K.fx, -(ys - K.cy) / K.fy, -np.ones(len(xs))], 1) @ c2w[:3, :3].T
    unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    origin = c2w[:3, 3]
    b = unit @ origin
    t = -b - np.sqrt(np.maximum(b * b - (origin @ origin - 4.0), 0.0))
    hit = origin + t[:, None] * unit
    normal_cam = (hit / 2.0) @ c2w[:3, :3]
    angle = np.degrees(np.arccos(np.clip(np.sum(normal_cam * result.normals[ys, xs], 1), -1, 1)))
    assert np.median(angle) < 1.0 and np.percentile(angle, 95) < 4.0
    depth_true = t * np.linalg.norm(dirs, axis=1) / np.linalg.norm(dirs, axis=1) * (-(unit @ c2w[:3, 2]))
    assert np.median(np.abs(result.depth[ys, xs] - depth_true)) < 0.02
    assert np.all(result.normals[ys, xs, 2] > -0.2)  # visible side faces the camera


def test_vertex_normals_ignore_winding():
    verts, faces = _sphere(n=12)
    outward = vertex_normals(verts, faces)
    flipped = vertex_normals(verts, faces[:, ::-1])
    np.testing.assert_allclose(outward, flipped, atol=1e-9)
    assert np.mean(np.sum(outward * verts / 2.0, axis=1)) > 0.99


def test_sh_frame_and_basis_constants():
    np.testing.assert_allclose(sh.camera_to_sh_frame(np.array([0.0, 0.0, 1.0])), [0.0, -1.0, 0.0])
    np.testing.assert_allclose(sh.camera_to_sh_frame(np.array([0.0, 1.0, 0.0])), [0.0, 0.0, 1.0])
    # a constant (band-0) light gives irradiance pi * Y00 * c0 everywhere
    normals = np.random.default_rng(1).normal(size=(50, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    coeffs = np.zeros(9)
    coeffs[0] = 1.0
    np.testing.assert_allclose(sh.shading(normals, coeffs), math.pi * 0.5 / math.sqrt(math.pi))
    # band-1 "Z" term is linear in the up component with factor 2pi/3 * sqrt(3)/(2 sqrt(pi))
    basis = sh.sh_basis(np.array([[0.0, 0.0, 1.0]]))
    assert basis[0, 2] == pytest.approx(2 * math.pi / 3 * math.sqrt(3) / (2 * math.sqrt(math.pi)))


def test_sh_basis_is_orthogonal_over_the_sphere():
    count = 20000  # Fibonacci lattice: near-uniform quadrature points on the sphere
    k = np.arange(count) + 0.5
    z = 1 - 2 * k / count
    phi = math.pi * (1 + math.sqrt(5)) * k
    r = np.sqrt(1 - z * z)
    n = np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)
    basis = sh.sh_basis(n)
    gram = basis.T @ basis / count * 4 * math.pi  # integral of products over the sphere
    bands = np.array([math.pi] + [2 * math.pi / 3] * 3 + [math.pi / 4] * 5)
    np.testing.assert_allclose(np.diag(gram), bands ** 2, rtol=1e-3)  # orthonormal Y times band factor
    corr = gram / np.sqrt(np.outer(np.diag(gram), np.diag(gram)))
    assert np.abs(corr - np.eye(9)).max() < 1e-3


def test_target_light_is_a_soft_frontal_light():
    front, side = sh.shading(sh.camera_to_sh_frame(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])), sh.FCSP_LIGHT)
    assert front == pytest.approx(0.967, abs=2e-3)
    assert 0.6 < side < front


def test_fit_sh_recovers_lighting_and_rejects_outliers():
    rng = np.random.default_rng(3)
    n = rng.normal(size=(3000, 3))
    n[:, 1] = -np.abs(n[:, 1])  # visible hemisphere only (y points away from the viewer)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    truth = np.array([0.8, -0.3, 0.2, 0.5, 0.1, -0.05, -0.1, 0.1, 0.05])
    observed = sh.shading(n, truth)
    observed[:150] *= 0.2  # dark outliers (brows, shadows)
    est = sh.fit_sh(observed, n, prior=sh.FCSP_LIGHT, strength=1e-5)
    assert sh.sh_relative_error(est, truth) < 0.03
    assert sh.sh_relative_error(2.0 * truth, truth, scale_invariant=True) < 1e-12


def test_srgb_round_trip():
    values = np.linspace(0, 1, 101, dtype=np.float32)
    np.testing.assert_allclose(sh.linear_to_srgb(sh.srgb_to_linear(values)), values, atol=1e-5)
    assert sh.srgb_to_linear(np.float32(0.5)) == pytest.approx(0.214, abs=1e-3)
