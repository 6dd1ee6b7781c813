"""Pose correction of the fit: rotation parametrisations, rigidity, gradients, composition."""

from __future__ import annotations

import math

import pytest
import torch

from facenerf.fitting.pose import (PoseCorrection, apply_correction, axis_angle_to_matrix, matrix_to_axis_angle,
                                   rotation_6d_to_matrix)
from facenerf.fitting.views import camera_angles, views_around_fit
from facenerf.preprocess.training.rig import mofanerf_pose


def _rz(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_rodrigues_matches_known_rotations_and_round_trips():
    torch.testing.assert_close(axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.7])), _rz(0.7), atol=1e-6, rtol=0)
    torch.testing.assert_close(axis_angle_to_matrix(torch.zeros(3)), torch.eye(3))
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        w = torch.randn(3, generator=gen)
        w = w / w.norm() * torch.rand(1, generator=gen) * 3.0
        rot = axis_angle_to_matrix(w)
        torch.testing.assert_close(rot @ rot.T, torch.eye(3), atol=1e-5, rtol=0)
        assert torch.linalg.det(rot) == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(matrix_to_axis_angle(rot), w, atol=1e-4, rtol=0)


def test_rodrigues_gradient_is_finite_at_zero_and_matches_skew():
    w = torch.zeros(3, requires_grad=True)
    rot = axis_angle_to_matrix(w)
    # d R / d w_z at 0 is the generator of rotations about z
    grad = torch.autograd.grad(rot[1, 0], w)[0]
    torch.testing.assert_close(grad, torch.tensor([0.0, 0.0, 1.0]))
    small = torch.tensor([1e-6, -2e-6, 3e-6], requires_grad=True)
    g = torch.autograd.grad(axis_angle_to_matrix(small).sum(), small)[0]
    assert torch.isfinite(g).all()


def test_6d_representation_is_orthonormalised():
    r6 = torch.tensor([2.0, 0.1, 0.0, 0.3, 1.5, 0.2])
    rot = rotation_6d_to_matrix(r6)
    torch.testing.assert_close(rot @ rot.T, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.linalg.det(rot) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(rot[:, 0], r6[:3] / r6[:3].norm())


@pytest.mark.parametrize("param", ["axis_angle", "6d"])
def test_correction_starts_at_identity_and_stays_rigid_after_updates(param):
    c2w = mofanerf_pose(15.0, -30.0)
    pose = PoseCorrection(c2w, param)
    torch.testing.assert_close(pose(), c2w)
    with torch.no_grad():
        pose.rotation.add_(torch.linspace(-0.4, 0.5, pose.rotation.numel()))
        pose.translation.add_(torch.tensor([0.1, -0.2, 0.3]))
    out = pose()
    rot = out[:3, :3]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert pose.angle_deg() > 1.0


def test_correction_rotates_the_camera_about_the_world_origin():
    c2w = mofanerf_pose(0.0, 0.0, radius=16.0)
    rot = axis_angle_to_matrix(torch.tensor([0.0, math.radians(30.0), 0.0]))
    moved = apply_correction(c2w, rot, torch.zeros(3))
    pitch, yaw, radius = camera_angles(moved)
    assert radius == pytest.approx(16.0, abs=1e-4)
    assert yaw == pytest.approx(30.0, abs=1e-3) and pitch == pytest.approx(0.0, abs=1e-3)
    # the camera still looks at the origin: the optical axis (-Z) points from the centre to 0
    forward = -moved[:3, 2]
    torch.testing.assert_close(forward, -moved[:3, 3] / 16.0, atol=1e-5, rtol=0)


def test_pose_gradient_flows_from_a_loss_on_the_camera_centre():
    pose = PoseCorrection(mofanerf_pose(0.0, 0.0), "axis_angle")
    loss = (pose()[:3, 3] - torch.tensor([1.0, 0.0, 16.0])).square().sum()
    loss.backward()
    assert pose.rotation.grad.abs().sum() > 0 and pose.translation.grad.abs().sum() > 0


def test_camera_angles_and_views_around_a_fit():
    c2w = mofanerf_pose(20.0, 35.0, radius=14.0)
    assert camera_angles(c2w) == pytest.approx((20.0, 35.0, 14.0), abs=1e-4)
    views = views_around_fit(c2w, [-60.0, 0.0, 60.0])
    for view, yaw in zip(views, (-60.0, 0.0, 60.0)):
        assert camera_angles(view) == pytest.approx((20.0, yaw, 14.0), abs=1e-4)
