"""Procedural faces rendered exactly by ray casting: MoFaNeRF-style training data without files or GL.

A face is a union of ellipsoids in the MoFaNeRF scene frame (world units, 1 = 50 mm, face
towards +Z, head top +Y): a head, a nose, two ears and a chin that drops as the mouth opens.
Its colour is painted by position (skin, hair on the top and back, brows, eyes, lips, a dark
mouth opening) and shaded by a fixed light, on a black background. Identities differ in head
proportions, nose size and colours; expressions open the mouth, close the eyes or raise the
brows. Every pixel is the first hit along its ray, so images are exact for any camera.

:func:`make_dataset` renders identities x expressions x views on the MoFaNeRF camera rig
(:func:`facenerf.preprocess.training.rig.mofanerf_pose`) into tensors, with fixed random shape and texture
codes per identity, for benchmarks that need a trained model on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.preprocess.training.rig import mofanerf_pose
from facenerf.core.rays import image_rays

EXPRESSIONS = ("neutral", "mouth_open", "eyes_closed", "brows_up")
_LIGHT = (0.35, 0.55, 0.76)  # towards the light, world frame


@dataclass(frozen=True)
class FaceIdentity:
    """Proportions (world units) and colours (RGB in [0, 1]) of one procedural person."""

    head: tuple[float, float, float]  # semi-axes of the head ellipsoid
    nose: float  # nose size factor
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    lips: tuple[float, float, float]
    iris: tuple[float, float, float]


@dataclass(frozen=True)
class FaceExpression:
    mouth_open: float = 0.0  # 0..1
    eyes_closed: bool = False
    brow_raise: float = 0.0  # world units


EXPRESSION_PARAMS = {"neutral": FaceExpression(), "mouth_open": FaceExpression(mouth_open=1.0),
                     "eyes_closed": FaceExpression(eyes_closed=True), "brows_up": FaceExpression(brow_raise=0.15)}


def sample_identity(generator: torch.Generator) -> FaceIdentity:
    """A random person (proportions within +-8 %, colours around skin / hair tones)."""
    u = torch.rand(16, generator=generator).tolist()
    head = (1.55 * (0.92 + 0.16 * u[0]), 2.0 * (0.92 + 0.16 * u[1]), 1.85 * (0.92 + 0.16 * u[2]))
    skin = (0.70 + 0.25 * u[3], 0.50 + 0.25 * u[4], 0.40 + 0.20 * u[5])
    hair = (0.05 + 0.45 * u[6], 0.04 + 0.30 * u[7], 0.03 + 0.20 * u[8])
    lips = (0.60 + 0.30 * u[9], 0.20 + 0.20 * u[10], 0.25 + 0.15 * u[11])
    iris = (0.10 + 0.40 * u[12], 0.15 + 0.40 * u[13], 0.15 + 0.50 * u[14])
    return FaceIdentity(head, 0.8 + 0.4 * u[15], skin, hair, lips, iris)


def _ellipsoids(person: FaceIdentity, expr: FaceExpression) -> list[tuple[tuple, tuple]]:
    """(centre, semi-axes) of the head, nose, ears and chin."""
    a, b, c = person.head
    s = person.nose
    return [((0.0, 0.2, 0.0), (a, b, c)),
            ((0.0, -0.15, c * 0.92), (0.28 * s, 0.45 * s, 0.42 * s)),
            ((a * 0.96, 0.05, -0.1), (0.2, 0.5, 0.32)),
            ((-a * 0.96, 0.05, -0.1), (0.2, 0.5, 0.32)),
            ((0.0, -1.25 - 0.35 * expr.mouth_open, 0.75), (0.95, 0.75, 0.95))]


def _hit(origins: Tensor, dirs: Tensor, centre, axes) -> Tensor:
    """Nearest positive ray parameter of a ray-ellipsoid hit [N] (inf on a miss)."""
    c = torch.tensor(centre, dtype=origins.dtype, device=origins.device)
    inv = 1.0 / torch.tensor(axes, dtype=origins.dtype, device=origins.device)
    o, d = (origins - c) * inv, dirs * inv
    qa, qb, qc = (d * d).sum(-1), 2 * (o * d).sum(-1), (o * o).sum(-1) - 1.0
    disc = qb * qb - 4 * qa * qc
    root = disc.clamp_min(0).sqrt()
    t0, t1 = (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)
    t = torch.where(t0 > 1e-6, t0, t1)
    return torch.where((disc > 0) & (t > 1e-6), t, torch.full_like(t, math.inf))


def _paint(p: Tensor, person: FaceIdentity, expr: FaceExpression, part: Tensor) -> Tensor:
    """Albedo [N, 3] at surface points p [N, 3] of parts (0 head, 1 nose, 2-3 ears, 4 chin)."""
    def colour(rgb):
        return torch.tensor(rgb, dtype=p.dtype, device=p.device).expand(p.shape[0], 3)

    x, y, z = p.unbind(-1)
    front = z > 0.3
    albedo = colour(person.skin).clone()
    hair = (part == 0) & ((y > 1.25 + 0.25 * torch.cos(2.5 * x)) | ((z < -0.2) & (y > -0.4)))
    brow = (part == 0) & front & ((y - 0.82 - expr.brow_raise).abs() < 0.07) & (x.abs() > 0.2) & (x.abs() < 0.85)
    eye_d = torch.sqrt((x.abs() - 0.55) ** 2 + ((y - 0.5) / 0.7) ** 2)
    eye = (part == 0) & front & (eye_d < 0.2)
    lips = (part >= 0) & front & (x.abs() < 0.6 - 0.2 * (y + 0.95).abs()) & ((y + 0.95 + 0.12 * expr.mouth_open).abs()
                                                                             < 0.1 + 0.12 * expr.mouth_open)
    gap = lips & ((y + 0.95 + 0.12 * expr.mouth_open).abs() < 0.16 * expr.mouth_open)
    albedo = torch.where(hair[:, None], colour(person.hair), albedo)
    albedo = torch.where(brow[:, None], colour(person.hair), albedo)
    if expr.eyes_closed:
        albedo = torch.where(eye[:, None], colour(tuple(0.85 * v for v in person.skin)), albedo)
    else:
        white = torch.where((eye_d < 0.09)[:, None], colour(person.iris), colour((0.95, 0.95, 0.92)))
        albedo = torch.where(eye[:, None], white, albedo)
    albedo = torch.where(lips[:, None], colour(person.lips), albedo)
    return torch.where(gap[:, None], colour((0.12, 0.03, 0.04)), albedo)


def render_face(person: FaceIdentity, expr: FaceExpression, K: Intrinsics, c2w: Tensor, near: float = 8.0,
                far: float = 26.0, device=None) -> tuple[Tensor, Tensor]:
    """``(image [H, W, 3] in [0, 1], foreground [H, W] bool)`` of one face seen by one camera
    (``c2w [4, 4]``), or ``([V, H, W, 3], [V, H, W])`` for ``c2w [V, 4, 4]``."""
    poses = c2w.float().reshape(-1, 4, 4)
    bundles = [image_rays(K, pose, near, far) for pose in poses]
    origins = torch.cat([b.origins for b in bundles]).to(device or "cpu")
    dirs = torch.cat([b.directions for b in bundles]).to(origins.device)
    hits = torch.stack([_hit(origins, dirs, c, a) for c, a in _ellipsoids(person, expr)], dim=-1)  # [N, 5]
    t, part = hits.min(dim=-1)
    fg = torch.isfinite(t) & (t >= near) & (t <= far)
    p = origins + dirs * torch.where(fg, t, torch.zeros_like(t))[:, None]
    centres = torch.tensor([c for c, _ in _ellipsoids(person, expr)], device=p.device)[part]
    axes = torch.tensor([a for _, a in _ellipsoids(person, expr)], device=p.device)[part]
    normal = (p - centres) / axes**2
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    light = torch.tensor(_LIGHT, device=p.device) / math.sqrt(sum(v * v for v in _LIGHT))
    shade = 0.4 + 0.6 * (normal @ light).clamp_min(0.0)
    rgb = _paint(p, person, expr, part) * shade[:, None] * fg[:, None]
    shape = (K.height, K.width) if c2w.dim() == 2 else (poses.shape[0], K.height, K.width)
    return rgb.clamp(0, 1).reshape(*shape, 3), fg.reshape(shape)


@dataclass
class FaceDataset:
    """Rendered training and held-out views. Images ``[N, H, W, 3]``, masks ``[N, H, W]``,
    poses ``[N, 4, 4]``, and per image its ``identity`` [N] and ``expression`` [N] indices."""

    K: Intrinsics
    near: float
    far: float
    shape_codes: Tensor  # [I, shape_dim]
    texture_codes: Tensor  # [I, texture_dim]
    images: Tensor
    masks: Tensor
    poses: Tensor
    identity: Tensor
    expression: Tensor
    heldout: Tensor  # [N] bool: views kept out of training
    persons: list[FaceIdentity]


TRAIN_VIEWS = tuple((p, y) for p in (-15.0, 0.0, 15.0, 30.0) for y in (-60.0, -30.0, 0.0, 30.0, 60.0))
HELDOUT_VIEWS = ((0.0, -15.0), (0.0, 15.0), (15.0, -45.0), (-15.0, 45.0), (10.0, 0.0), (-10.0, -30.0))


def make_dataset(n_identities: int, n_expressions: int, size: int, shape_dim: int, texture_dim: int,
                 seed: int = 0, near: float = 8.0, far: float = 26.0, device=None) -> FaceDataset:
    """Every identity x expression at :data:`TRAIN_VIEWS` (training) and :data:`HELDOUT_VIEWS`
    (held out), ``size``^2 pixels, MoFaNeRF's 24-degree field of view; codes ~ N(0, 0.5^2)."""
    gen = torch.Generator().manual_seed(seed)
    persons = [sample_identity(gen) for _ in range(n_identities)]
    shape_codes = 0.5 * torch.randn(n_identities, shape_dim, generator=gen)
    texture_codes = 0.5 * torch.randn(n_identities, texture_dim, generator=gen)
    K = Intrinsics(512, 512, 1200.0, 1200.0, 256.0, 256.0).scaled(size / 512)
    views = TRAIN_VIEWS + HELDOUT_VIEWS
    c2ws = torch.stack([mofanerf_pose(pitch, yaw) for pitch, yaw in views])  # [V, 4, 4]
    held_one = torch.tensor([False] * len(TRAIN_VIEWS) + [True] * len(HELDOUT_VIEWS))
    images, masks, ids, exps = [], [], [], []
    for i, person in enumerate(persons):
        for e in range(n_expressions):
            image, mask = render_face(person, EXPRESSION_PARAMS[EXPRESSIONS[e % len(EXPRESSIONS)]], K, c2ws,
                                      near, far, device)
            images.append(image), masks.append(mask)
            ids.append(torch.full((len(views),), i)), exps.append(torch.full((len(views),), e))
    n_sets = n_identities * n_expressions
    return FaceDataset(K, near, far, shape_codes, texture_codes, torch.cat(images), torch.cat(masks),
                       c2ws.repeat(n_sets, 1, 1).to(images[0].device), torch.cat(ids), torch.cat(exps),
                       held_one.repeat(n_sets), persons)
