"""Cameras: orbit poses (worked examples), look_at, orbits, OpenCV/OpenGL, projection."""

import math

import pytest
import torch

from facenerf.core.cameras import (
    Intrinsics,
    look_at,
    opencv_to_opengl,
    opengl_to_opencv,
    orbit_pose,
    orbit_poses,
    project_points,
)
from facenerf.core.rays import pixel_rays


def _assert_rotation(c2w):
    rot = c2w[:3, :3].double()
    assert torch.allclose(rot.T @ rot, torch.eye(3, dtype=torch.float64), atol=1e-6)
    assert torch.det(rot) == pytest.approx(1.0, abs=1e-6)


def _looks_at_origin(c2w):
    forward = -c2w[:3, 2]  # OpenGL camera looks along -Z
    to_origin = -c2w[:3, 3] / c2w[:3, 3].norm()
    return torch.allclose(forward, to_origin, atol=1e-5)


@pytest.mark.parametrize(
    "pitch, yaw, centre",
    [
        (0, 0, (0.0, 0.0, 16.0)),  # file 0_10 (yaw index 10 -> 0 deg)
        (-30, 45, (9.80, -8.00, 9.80)),  # file -30_15
        (45, -90, (-11.31, 11.31, 0.0)),  # file 45_0
    ],
)
def test_orbit_pose_worked_examples(pitch, yaw, centre):
    c2w = orbit_pose(pitch, yaw, 16.0)
    assert c2w.shape == (4, 4) and c2w.dtype == torch.float32
    assert torch.allclose(c2w[:3, 3], torch.tensor(centre), atol=5e-3)
    assert torch.equal(c2w[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    _assert_rotation(c2w)
    assert _looks_at_origin(c2w)


def test_orbit_pose_is_inverse_of_documented_extrinsics():
    pitch, yaw = 15.0, -27.0
    p, y = math.radians(pitch), math.radians(yaw)
    rx = torch.tensor([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = torch.tensor([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    w2c = torch.eye(4)
    w2c[:3, :3] = rx @ ry
    w2c[:3, 3] = torch.tensor([0.0, 0.0, -7.0])
    c2w = orbit_pose(pitch, yaw, radius=7.0)
    assert torch.allclose(c2w @ w2c, torch.eye(4), atol=1e-5)
    assert c2w[1, 3] > 0  # positive pitch puts the camera above the head


def test_look_at_points_camera_at_target_with_up():
    eye, target = torch.tensor([3.0, 2.0, 5.0]), torch.tensor([0.5, -0.2, 0.1])
    c2w = look_at(eye, target)
    _assert_rotation(c2w)
    forward = (target - eye) / (target - eye).norm()
    assert torch.allclose(-c2w[:3, 2], forward, atol=1e-6)
    assert torch.allclose(c2w[:3, 3], eye)
    assert c2w[1, 1] > 0  # camera +Y leans toward world +Y
    assert abs(float(c2w[:3, 0] @ torch.tensor([0.0, 1.0, 0.0]))) < 1e-6  # no roll


def test_look_at_straight_down_is_still_a_rotation():
    c2w = look_at((0.0, 5.0, 0.0), (0.0, 0.0, 0.0))
    _assert_rotation(c2w)
    assert torch.allclose(-c2w[:3, 2], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)


def test_look_at_matches_orbit_pose_for_a_frontal_view():
    assert torch.allclose(look_at((0.0, 0.0, 16.0)), orbit_pose(0, 0, 16.0), atol=1e-6)


def test_orbit_poses_full_circle_and_partial_range():
    poses = orbit_poses(8, radius=4.0, pitch_deg=10.0)
    assert poses.shape == (8, 4, 4)
    assert torch.allclose(poses[:, :3, 3].norm(dim=-1), torch.full((8,), 4.0), atol=1e-5)
    assert all(_looks_at_origin(p) for p in poses)
    assert not torch.allclose(poses[0], poses[-1], atol=1e-3)  # end point left out
    assert torch.allclose(poses[0], orbit_pose(10.0, -180.0, 4.0))
    assert torch.allclose(poses[4], orbit_pose(10.0, 0.0, 4.0), atol=1e-6)
    part = orbit_poses(3, radius=2.0, yaw_range_deg=(-30.0, 30.0))
    assert torch.allclose(part[0], orbit_pose(0.0, -30.0, 2.0))
    assert torch.allclose(part[2], orbit_pose(0.0, 30.0, 2.0))


def test_opencv_opengl_round_trip_and_meaning():
    c2w_gl = orbit_pose(20.0, 35.0, 5.0)
    c2w_cv = opengl_to_opencv(c2w_gl)
    assert torch.allclose(opencv_to_opengl(c2w_cv), c2w_gl)
    assert torch.allclose(c2w_cv[:3, 2], -c2w_gl[:3, 2])  # OpenCV +Z = OpenGL -Z (forward)
    assert torch.allclose(c2w_cv[:3, 1], -c2w_gl[:3, 1])  # OpenCV +Y = down
    assert torch.allclose(c2w_cv[:3, 3], c2w_gl[:3, 3])
    batch = torch.stack([c2w_gl, c2w_gl])
    assert torch.allclose(opengl_to_opencv(batch)[1], c2w_cv)


def test_intrinsics_scaled_matrix_and_fov():
    K = Intrinsics(512, 512, 1200.0, 1200.0, 256.0, 256.0)
    half = K.scaled(0.5)
    assert (half.width, half.height, half.fx, half.cx, half.cy) == (256, 256, 600.0, 128.0, 128.0)
    assert torch.equal(K.matrix(), torch.tensor([[1200.0, 0, 256], [0, 1200, 256], [0, 0, 1]]))
    from_fov = Intrinsics.from_fov_x(512, 512, 2 * math.atan(256 / 1200))
    assert from_fov.fx == pytest.approx(1200.0) and from_fov.cy == 256.0


def test_project_points_inverts_pixel_rays():
    K = Intrinsics(64, 48, 70.0, 65.0, 31.0, 22.5)
    c2w = orbit_pose(-12.0, 33.0, radius=6.0)
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(20, 3, generator=gen) * 2 - 1
    xy, depth = project_points(points, c2w, K, return_depth=True)
    assert (depth > 0).all()
    rays = pixel_rays(K, c2w, xy, near=1.0, far=10.0)
    hit = rays.origins + rays.directions * depth[:, None]  # direction has camera z = -1
    assert torch.allclose(hit, points, atol=1e-4)


def test_project_points_frontal_axes():
    K = Intrinsics(64, 64, 100.0, 100.0, 32.0, 32.0)
    pts = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    xy = project_points(pts, orbit_pose(0, 0, radius=10.0), K)
    assert torch.allclose(xy[0], torch.tensor([32.0, 32.0]))
    assert torch.allclose(xy[1], torch.tensor([42.0, 32.0]))  # +X (subject's left) -> image right
    assert torch.allclose(xy[2], torch.tensor([32.0, 22.0]))  # +Y (up) -> smaller row
