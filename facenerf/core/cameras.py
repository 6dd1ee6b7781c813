"""Pinhole intrinsics, camera-to-world poses and projection.

Conventions (see docs/architecture.md): poses are camera-to-world 4x4 matrices in the
OpenGL convention (the camera looks along -Z, +Y is up, +X right) unless a name ends in
``_cv`` (OpenCV: +Z forward, +Y down). A pixel coordinate is ``(x, y)`` = (column, row)
with pixel (0, 0) at integer coordinate (0, 0); no half-pixel offset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

# Flips the camera's Y and Z axes: OpenCV <-> OpenGL (the map is its own inverse).
_CV_GL_FLIP = (1.0, -1.0, -1.0, 1.0)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for a ``width`` x ``height`` image."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov_x(cls, width: int, height: int, fov_x_rad: float) -> "Intrinsics":
        """Square pixels, centred principal point, focal from the horizontal field of view.

        ``focal = 0.5 * width / tan(0.5 * fov_x)`` (the ``camera_angle_x`` rule of NeRF
        transforms files).
        """
        focal = 0.5 * width / math.tan(0.5 * fov_x_rad)
        return cls(width, height, focal, focal, 0.5 * width, 0.5 * height)

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics for the image resized by ``factor`` (focal lengths and centre scale too)."""
        return Intrinsics(
            width=int(round(self.width * factor)),
            height=int(round(self.height * factor)),
            fx=self.fx * factor,
            fy=self.fy * factor,
            cx=self.cx * factor,
            cy=self.cy * factor,
        )

    def matrix(self) -> Tensor:
        """The 3x3 calibration matrix ``K`` (float32)."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]],
            dtype=torch.float32,
        )


def _rot_x(deg: float) -> Tensor:
    """[3, 3] rotation about +X (``[[1, 0, 0], [0, c, -s], [0, s, c]]``), float64."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)


def _rot_y(deg: float) -> Tensor:
    """[3, 3] rotation about +Y (``[[c, 0, -s], [0, 1, 0], [s, 0, c]]``), float64."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]], dtype=torch.float64)


def orbit_pose(pitch_deg: float, yaw_deg: float, radius: float) -> Tensor:
    """Camera-to-world pose [4, 4] float32 (OpenGL) on a sphere of ``radius`` looking at the origin.

    World-to-camera rotation ``R = Rx(pitch) @ Ry(yaw)`` with
    ``Ry(t) = [[cos t, 0, -sin t], [0, 1, 0], [sin t, 0, cos t]]`` and
    ``Rx(p) = [[1, 0, 0], [0, cos p, -sin p], [0, sin p, cos p]]``; translation
    ``t = (0, 0, -radius)``; the returned matrix is ``[R^T | -R^T t]``. The camera centre is
    ``R^T (0, 0, radius)``: (0, 0, radius) at pitch = yaw = 0, positive pitch puts the camera above
    the origin (+Y), and the camera always looks at the origin.
    """
    rot = _rot_x(pitch_deg) @ _rot_y(yaw_deg)  # [3, 3] world -> camera
    trans = torch.tensor([0.0, 0.0, -float(radius)], dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = rot.T
    c2w[:3, 3] = -rot.T @ trans
    return c2w.float()


def look_at(
    eye: Sequence[float] | Tensor,
    target: Sequence[float] | Tensor = (0.0, 0.0, 0.0),
    up: Sequence[float] | Tensor = (0.0, 1.0, 0.0),
) -> Tensor:
    """OpenGL camera-to-world pose at ``eye`` looking at ``target``, [4, 4] float32.

    The camera's +Y axis is as close to ``up`` as possible. When ``up`` is (nearly) parallel
    to the viewing direction another world axis is used as ``up`` instead, so straight-down
    and straight-up views still give a valid rotation.
    """
    eye_t = torch.as_tensor(eye, dtype=torch.float64).reshape(3)
    target_t = torch.as_tensor(target, dtype=torch.float64).reshape(3)
    up_t = torch.as_tensor(up, dtype=torch.float64).reshape(3)
    forward = target_t - eye_t
    norm = forward.norm()
    if norm < 1e-12:
        raise ValueError("look_at: eye and target coincide; move the camera away from the target")
    forward = forward / norm
    right = torch.linalg.cross(forward, up_t)
    if right.norm() < 1e-6 * max(float(up_t.norm()), 1e-12):
        # ``up`` is parallel to the view direction: use the world axis least aligned with it.
        alt = torch.zeros(3, dtype=torch.float64)
        alt[int(torch.argmin(forward.abs()))] = 1.0
        right = torch.linalg.cross(forward, alt)
    right = right / right.norm()
    true_up = torch.linalg.cross(right, forward)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, eye_t
    return c2w.float()


def orbit_poses(
    n: int,
    radius: float,
    pitch_deg: float = 0.0,
    yaw_range_deg: tuple[float, float] = (-180.0, 180.0),
) -> Tensor:
    """``n`` poses on a circle around the +Y axis looking at the origin, [n, 4, 4] float32.

    Poses follow :func:`orbit_pose` (same pitch/yaw meaning). Yaws are evenly spaced over
    ``yaw_range_deg``; a full 360-degree range leaves out the end point so a looping video
    does not repeat its first frame.
    """
    if n < 1:
        raise ValueError(f"orbit_poses needs n >= 1, got {n}")
    start, end = float(yaw_range_deg[0]), float(yaw_range_deg[1])
    full_circle = abs(abs(end - start) - 360.0) < 1e-9
    steps = n if full_circle else max(n - 1, 1)
    yaws = [start + (end - start) * i / steps for i in range(n)]
    return torch.stack([orbit_pose(pitch_deg, yaw, radius) for yaw in yaws])


def opencv_to_opengl(c2w_cv: Tensor) -> Tensor:
    """Convert camera-to-world pose(s) [..., 4, 4] from OpenCV to OpenGL axes."""
    c2w_cv = torch.as_tensor(c2w_cv)
    flip = torch.tensor(_CV_GL_FLIP, dtype=c2w_cv.dtype, device=c2w_cv.device)
    return c2w_cv * flip  # scales columns: camera Y and Z axes change sign


def opengl_to_opencv(c2w_gl: Tensor) -> Tensor:
    """Convert camera-to-world pose(s) [..., 4, 4] from OpenGL to OpenCV axes."""
    return opencv_to_opengl(c2w_gl)


def world_to_camera(points: Tensor, c2w: Tensor) -> Tensor:
    """World points [N, 3] expressed in the camera frame of ``c2w`` [4, 4] -> [N, 3]."""
    c2w = torch.as_tensor(c2w, dtype=points.dtype, device=points.device)
    rot, centre = c2w[:3, :3], c2w[:3, 3]
    return (points - centre) @ rot  # row-vector form of R^T (p - c)


def project_points(
    points: Tensor, c2w: Tensor, K: Intrinsics, return_depth: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Project world points [N, 3] into pixel coordinates (x, y) [N, 2] of an OpenGL camera.

    Inverse of the ray convention of :mod:`facenerf.core.rays`:
    ``x = cx + fx * X / (-Z)``, ``y = cy - fy * Y / (-Z)`` for camera-space ``(X, Y, Z)``.
    With ``return_depth`` also returns the depth in front of the camera ``-Z`` [N]
    (negative for points behind it, whose pixel coordinates are meaningless).
    """
    points = torch.as_tensor(points)
    if not points.is_floating_point():
        points = points.float()
    cam = world_to_camera(points, c2w)  # [N, 3]
    depth = -cam[:, 2]  # [N]
    x = K.cx + K.fx * cam[:, 0] / depth
    y = K.cy - K.fy * cam[:, 1] / depth
    xy = torch.stack([x, y], dim=-1)  # [N, 2]
    return (xy, depth) if return_depth else xy
