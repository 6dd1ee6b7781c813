"""Procedural faces: exact ray casting of the ellipsoid union, expressions, dataset layout."""

import math

import torch

from facenerf.core.cameras import Intrinsics
from facenerf.preprocess.training.rig import mofanerf_pose
from facenerf.demos.procedural_faces import (EXPRESSION_PARAMS, FaceIdentity, make_dataset, render_face,
                                             sample_identity)

PERSON = FaceIdentity(head=(1.5, 2.0, 1.8), nose=1.0, skin=(0.8, 0.6, 0.5), hair=(0.2, 0.1, 0.05),
                      lips=(0.8, 0.3, 0.3), iris=(0.2, 0.3, 0.6))


def test_frontal_silhouette_matches_the_head_and_ear_ellipsoids():
    K = Intrinsics(33, 33, 80.0, 80.0, 16.0, 16.0)
    image, mask = render_face(PERSON, EXPRESSION_PARAMS["neutral"], K, mofanerf_pose(0.0, 0.0), 8.0, 26.0)
    assert image.shape == (33, 33, 3) and mask.shape == (33, 33)
    assert mask[16, 16] and not mask[0, 0]  # the face is in the middle, the corners are background
    assert float(image[~mask].abs().max()) == 0.0  # black background
    # silhouette width at the centre row: the ears reach x = +-(0.96 a + 0.2), at distance ~16
    cols = torch.nonzero(mask[16]).squeeze(-1)
    half_width_px = (int(cols.max()) - int(cols.min()) + 1) / 2
    expected = 80.0 * (1.5 * 0.96 + 0.2) / 16.0  # ears reach x = 0.96 a + 0.2
    assert abs(half_width_px - expected) <= 1.5


def test_expressions_change_the_mouth_and_eyes_only():
    K = Intrinsics(64, 64, 160.0, 160.0, 32.0, 32.0)
    c2w = mofanerf_pose(0.0, 0.0)
    neutral, m0 = render_face(PERSON, EXPRESSION_PARAMS["neutral"], K, c2w)
    opened, m1 = render_face(PERSON, EXPRESSION_PARAMS["mouth_open"], K, c2w)
    closed, _ = render_face(PERSON, EXPRESSION_PARAMS["eyes_closed"], K, c2w)
    changed = (opened - neutral).abs().amax(-1) > 0.05
    rows = torch.nonzero(changed)[:, 0]
    assert changed.any() and rows.float().mean() > 32  # the mouth and chin: the lower half
    assert m1.sum() > m0.sum()  # the chin drops: a larger silhouette
    eyes = (closed - neutral).abs().amax(-1) > 0.05
    assert eyes.any() and torch.nonzero(eyes)[:, 0].float().mean() < 32  # the eyes: the upper half


def test_dataset_layout_and_determinism():
    a = make_dataset(2, 2, 16, shape_dim=5, texture_dim=7, seed=3)
    b = make_dataset(2, 2, 16, shape_dim=5, texture_dim=7, seed=3)
    n = 2 * 2 * 26
    assert a.images.shape == (n, 16, 16, 3) and a.masks.shape == (n, 16, 16) and a.poses.shape == (n, 4, 4)
    assert a.shape_codes.shape == (2, 5) and a.texture_codes.shape == (2, 7)
    assert int(a.heldout.sum()) == 2 * 2 * 6 and torch.equal(a.images, b.images)
    assert torch.equal(a.identity.unique(), torch.tensor([0, 1])) and torch.equal(a.expression.unique(), torch.tensor([0, 1]))
    assert not torch.equal(a.images[a.identity == 0], a.images[a.identity == 1])
    gen = torch.Generator().manual_seed(0)
    heads = [sample_identity(gen).head for _ in range(20)]
    assert all(abs(h[1] / 2.0 - 1) <= 0.08 + 1e-9 for h in heads) and len(set(heads)) == 20
    assert math.isclose(a.K.fx, 1200.0 * 16 / 512)
