"""Cameras for novel views of a fit, rendering a fitted face, and held-out evaluation.

Novel views look at the world origin (the head). By default they are the original
``run_fit.py``'s (:func:`original_view`: pitch 0, radius 16, the original's yaw sign, so our
``fitRes_60.png`` is the original's). The other convention orbits at the *fitted* camera's
distance and pitch: :func:`camera_angles` reads ``(pitch, yaw, radius)`` from a camera-to-world
pose in the convention of :func:`facenerf.preprocess.training.rig.mofanerf_pose` (camera centre
``radius * (sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))``), and
:func:`views_around_fit` places cameras at given yaws with that pitch and radius. Intrinsics of
a render at ``size`` pixels keep the fitted image's field of view (:func:`intrinsics_at`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.core.rays import image_rays
from facenerf.fitting.pose import apply_correction, rotation_from_params
from facenerf.fitting.result import FitResult
from facenerf.metrics import psnr
from facenerf.preprocess.training.rig import RADIUS, mofanerf_pose
from facenerf.runtime import autocast


def camera_angles(c2w: Tensor) -> tuple[float, float, float]:
    """``(pitch_deg, yaw_deg, radius)`` of the camera centre of ``c2w [4, 4]`` around the origin."""
    x, y, z = (float(v) for v in c2w[:3, 3])
    radius = math.sqrt(x * x + y * y + z * z)
    if radius < 1e-9:
        return 0.0, 0.0, 0.0
    return math.degrees(math.asin(max(-1.0, min(1.0, y / radius)))), math.degrees(math.atan2(x, z)), radius


def views_around_fit(c2w: Tensor, yaws_deg: list[float]) -> list[Tensor]:
    """Cameras ``[4, 4]`` looking at the origin at ``yaws_deg`` with the fitted pitch and radius."""
    pitch, _, radius = camera_angles(c2w)
    return [mofanerf_pose(pitch, yaw, radius) for yaw in yaws_deg]


def original_view(yaw_deg: float, pitch_deg: float = 0.0, radius: float = RADIUS) -> Tensor:
    """The original ``run_fit.py``'s novel-view camera ``[4, 4]`` for its ``yaw`` (``fitRes_<yaw>.png``).

    The original rotates the camera about +Y by ``-yaw``, so a positive yaw puts it on the
    subject's right (-X): its view ``yaw`` is our rig camera at ``-yaw``. Its ``pitch`` (always
    0 there) tilts the camera below the head for positive values, also the opposite of ours.
    """
    return mofanerf_pose(-pitch_deg, -yaw_deg, radius)


def novel_views(c2w: Tensor, yaws_deg: list[float], convention: str) -> list[Tensor]:
    """The rendering mode's cameras: :func:`original_view` at pitch 0 and radius 16 (``original``),
    or :func:`views_around_fit` (``fitted``)."""
    if convention == "original":
        return [original_view(yaw) for yaw in yaws_deg]
    return views_around_fit(c2w, yaws_deg)


def intrinsics_at(K: Intrinsics, size: int) -> Intrinsics:
    """``K`` rescaled so that its width is ``size`` pixels (same field of view and image centre)."""
    from facenerf.fitting.sampling import level_intrinsics

    return K if size == K.width else level_intrinsics(K, size / K.width)


@dataclass
class FaceState:
    """What a render of one face needs: raw codes (eps before ISM), colour gain and camera."""

    shape: Tensor  # [S]
    expression: Tensor  # [E]
    texture: Tensor  # [T]
    gain: Tensor  # [1] or [3]
    c2w: Tensor  # [4, 4]
    K: Intrinsics
    near: float
    far: float

    @classmethod
    def from_fit(cls, fit: FitResult) -> "FaceState":
        return cls(fit.shape.float(), fit.expression.float(), fit.texture.float(), fit.gain.float(),
                   fit.c2w(), fit.intrinsics, fit.near, fit.far)

    def lerp(self, other: "FaceState", w: float) -> "FaceState":
        """Linear blend of codes, gain and camera angles (``w = 0`` is self, 1 is other)."""
        def mix(a: Tensor, b: Tensor) -> Tensor:
            return (1.0 - w) * a + w * b

        (p0, y0, r0), (p1, y1, r1) = camera_angles(self.c2w), camera_angles(other.c2w)
        c2w = mofanerf_pose(p0 + w * (p1 - p0), y0 + w * (y1 - y0), r0 + w * (r1 - r0))
        gain = mix(self.gain.expand(3), other.gain.expand(3))
        return FaceState(mix(self.shape, other.shape), mix(self.expression, other.expression),
                         mix(self.texture, other.texture), gain, c2w, self.K, self.near, self.far)


@torch.no_grad()
def render_face(model, face: FaceState, c2w: Tensor | None = None, K: Intrinsics | None = None,
                settings=None, amp: str = "none", with_gain: bool = True, fast: bool = True) -> Tensor:
    """Render ``face`` (at its own camera unless ``c2w``/``K`` are given) -> ``[H, W, 3]`` CPU in [0, 1];
    ``fast=False`` renders with the straightforward reference path."""
    device = next(model.parameters()).device
    K = K or face.K
    pose = (face.c2w if c2w is None else c2w).to(device)
    codes = model.face_codes(face.shape.to(device)[None], expression=face.expression.to(device)[None],
                             texture=face.texture.to(device)[None])
    rays = image_rays(K, pose, face.near, face.far)
    with autocast(device, amp):
        rgb = model.render_image(rays, codes, K.height, K.width, settings, fast=fast)["rgb"].float()
    if with_gain:
        rgb = rgb * face.gain.to(device)
    return rgb.clamp(0, 1).cpu()


def corrected_pose(fit: FitResult, c2w: Tensor) -> Tensor:
    """Apply the fit's world-frame pose correction to another camera of the same scene."""
    rot = rotation_from_params(fit.rotation.float(), fit.pose_parametrisation)
    return apply_correction(c2w.float(), rot, fit.translation.float())


def heldout_psnr(model, face: FaceState, views: list[tuple[Tensor, Tensor, Intrinsics]], settings=None,
                 amp: str = "none", fast: bool = True) -> tuple[float, list[Tensor]]:
    """Mean PSNR of ``face`` rendered at held-out ``views`` ``(image [H, W, 3], c2w, K)``; also the renders."""
    renders, scores = [], []
    for image, c2w, K in views:
        render = render_face(model, face, c2w, K, settings, amp, fast=fast)
        renders.append(render)
        scores.append(float(psnr(render, image.float())))
    return (sum(scores) / len(scores) if scores else float("nan")), renders
