"""Camera pose refinement during fitting: a rigid correction of the initial camera-to-world pose.

The pose is never a free 4x4 matrix (reference §11.16): the fit optimises a rotation and a
translation that are applied to the initial pose ``c2w_0`` in the world frame::

    c2w = [[R(w), t], [0, 1]] @ c2w_0

so the camera rotates about the world origin (the centre of the head in the MoFaNeRF scene
frame) and shifts by ``t`` world units. The result is always a rigid transform: ``R(w)`` is a
rotation for every parameter value. Two rotation parametrisations are offered:

* ``"axis_angle"`` - a rotation vector ``w [3]`` (direction = axis, norm = angle in radians),
  mapped with Rodrigues' formula; ``w = 0`` is the identity.
* ``"6d"`` - the first two columns of the matrix ``[6]`` (Zhou et al., CVPR 2019),
  orthonormalised by Gram-Schmidt; continuous everywhere, identity at ``(1,0,0, 0,1,0)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

POSE_PARAMETRISATIONS = ("axis_angle", "6d")
_SMALL_ANGLE = 1e-4


def skew(v: Tensor) -> Tensor:
    """Cross-product matrix ``[v]_x`` of ``v [3]`` -> ``[3, 3]`` (``[v]_x u = v x u``)."""
    zero = v.new_zeros(())
    return torch.stack([
        torch.stack([zero, -v[2], v[1]]),
        torch.stack([v[2], zero, -v[0]]),
        torch.stack([-v[1], v[0], zero]),
    ])


def axis_angle_to_matrix(rotvec: Tensor) -> Tensor:
    """Rodrigues' formula: rotation vector ``[3]`` -> rotation matrix ``[3, 3]``.

    ``R = I + A [w]_x + B [w]_x^2`` with ``A = sin(theta) / theta`` and
    ``B = (1 - cos(theta)) / theta^2``; below ``theta = 1e-4`` their Taylor series are used so
    the value and the gradient stay finite at ``w = 0``.
    """
    theta_sq = (rotvec * rotvec).sum()
    small = theta_sq < _SMALL_ANGLE ** 2
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
    a = torch.where(small, 1.0 - theta_sq / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta_sq / 24.0, (1.0 - torch.cos(theta)) / (theta * theta))
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """Inverse of :func:`axis_angle_to_matrix` for angles below pi: ``[3, 3]`` -> ``[3]``."""
    rot = rot.double()
    cos = ((torch.diagonal(rot).sum() - 1.0) / 2.0).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    vee = torch.stack([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    if theta < 1e-8:
        return (0.5 * vee).float()
    return (theta / (2.0 * torch.sin(theta)) * vee).float()


def rotation_6d_to_matrix(r6: Tensor) -> Tensor:
    """Continuous 6-D representation ``[6]`` (two columns) -> rotation matrix ``[3, 3]``."""
    a1, a2 = r6[:3], r6[3:]
    b1 = a1 / a1.norm().clamp_min(1e-12)
    a2 = a2 - (b1 * a2).sum() * b1
    b2 = a2 / a2.norm().clamp_min(1e-12)
    b3 = torch.linalg.cross(b1, b2)
    return torch.stack([b1, b2, b3], dim=1)


def identity_rotation_params(parametrisation: str) -> Tensor:
    """The parameter vector of the identity rotation: ``[3]`` zeros or ``[6]`` two unit columns."""
    if parametrisation == "axis_angle":
        return torch.zeros(3)
    if parametrisation == "6d":
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    raise ValueError(f"unknown pose parametrisation {parametrisation!r}; use one of {POSE_PARAMETRISATIONS}")


def rotation_from_params(params: Tensor, parametrisation: str) -> Tensor:
    """Rotation matrix ``[3, 3]`` from a parameter vector of either parametrisation."""
    if parametrisation == "axis_angle":
        return axis_angle_to_matrix(params)
    if parametrisation == "6d":
        return rotation_6d_to_matrix(params)
    raise ValueError(f"unknown pose parametrisation {parametrisation!r}; use one of {POSE_PARAMETRISATIONS}")


def apply_correction(c2w_0: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """``[[R, t], [0, 1]] @ c2w_0``: rotate about the world origin, then shift; ``[4, 4]``."""
    rot0, centre0 = c2w_0[:3, :3], c2w_0[:3, 3]
    top = torch.cat([rotation @ rot0, (rotation @ centre0 + translation)[:, None]], dim=1)  # [3, 4]
    bottom = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=top.dtype, device=top.device)
    return torch.cat([top, bottom], dim=0)


class PoseCorrection(nn.Module):
    """Learnable rigid correction of one initial camera pose.

    Args:
        c2w_0: ``[4, 4]`` initial camera-to-world pose (OpenGL), kept as a buffer.
        parametrisation: ``"axis_angle"`` or ``"6d"`` (see the module docstring).
    Parameters:
        rotation: ``[3]`` or ``[6]`` rotation parameters (identity at start).
        translation: ``[3]`` world-frame shift in scene units (zero at start).
    """

    def __init__(self, c2w_0: Tensor, parametrisation: str = "axis_angle"):
        super().__init__()
        if parametrisation not in POSE_PARAMETRISATIONS:
            raise ValueError(f"unknown pose parametrisation {parametrisation!r}; use one of {POSE_PARAMETRISATIONS}")
        self.parametrisation = parametrisation
        self.register_buffer("c2w_0", torch.as_tensor(c2w_0, dtype=torch.float32).clone())
        self.rotation = nn.Parameter(identity_rotation_params(parametrisation))
        self.translation = nn.Parameter(torch.zeros(3))

    def rotation_matrix(self) -> Tensor:
        """The correction's rotation ``[3, 3]``."""
        return rotation_from_params(self.rotation, self.parametrisation)

    def forward(self) -> Tensor:
        """The corrected camera-to-world pose ``[4, 4]`` (differentiable)."""
        return apply_correction(self.c2w_0, self.rotation_matrix(), self.translation)

    def angle_deg(self) -> float:
        """Size of the rotation correction in degrees."""
        rot = self.rotation_matrix().detach().double()
        cos = ((torch.diagonal(rot).sum() - 1.0) / 2.0).clamp(-1.0, 1.0)
        return float(torch.rad2deg(torch.arccos(cos)))
