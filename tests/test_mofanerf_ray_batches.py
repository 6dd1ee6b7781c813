"""Pixel samplers: counts, bounds, distributions, precrop and the fixes to the original (§11.3)."""

from __future__ import annotations

import pytest
import torch

from facenerf.data.ray_batches import (LandmarkSampling, PixelSamplerConfig, gather_pixels, landmark_pixels,
                                       patch_pixels, precrop_region, sample_pixels, uniform_pixels,
                                       weighted_pixels)
from facenerf.errors import FaceNerfError


def _inside(xy, h, w):
    return bool(((xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)).all())


def test_uniform_pixels_are_distinct_and_cover_the_region():
    gen = torch.Generator().manual_seed(0)
    xy = uniform_pixels(12 * 10, 10, 12, gen)  # every pixel once
    assert xy.dtype == torch.long and _inside(xy, 10, 12)
    assert len({(int(x), int(y)) for x, y in xy}) == 120
    region = (3, 2, 7, 5)
    xy = uniform_pixels(500, 10, 12, gen, region)  # more than the region holds: repeats allowed
    assert xy.shape == (500, 2)
    assert xy[:, 0].min() == 3 and xy[:, 0].max() == 6 and xy[:, 1].min() == 2 and xy[:, 1].max() == 4


def test_precrop_region_is_central():
    assert precrop_region(64, 64, 0.5) == (16, 16, 48, 48)
    assert precrop_region(512, 512, 0.5) == (128, 128, 384, 384)
    assert precrop_region(5, 7, 0.01) == (3, 2, 4, 3)  # never empty


def test_landmark_pixels_round_to_nearest_and_stay_inside():
    gen = torch.Generator().manual_seed(1)
    # a landmark at (10.6, 20.4) with no spread rounds to (11, 20): the original floored
    xy = landmark_pixels(torch.tensor([[10.6, 20.4]]), 5, 0.0, 64, 64, gen)
    assert (xy == torch.tensor([11, 20])).all()
    # landmarks on the border with a huge spread: everything clipped into the image
    corners = torch.tensor([[0.0, 0.0], [63.0, 63.0], [0.0, 63.0]])
    xy = landmark_pixels(corners, 3000, 40.0, 64, 64, gen)
    assert xy.shape == (3000, 2) and _inside(xy, 64, 64)
    # samples are spread evenly over landmarks and centred on them
    lms = torch.tensor([[20.0, 30.0], [45.0, 12.0]])
    xy = landmark_pixels(lms, 4000, 2.0, 64, 64, gen).float()
    torch.testing.assert_close(xy[0::2].mean(0), lms[0], atol=0.15, rtol=0)
    torch.testing.assert_close(xy[1::2].mean(0), lms[1], atol=0.15, rtol=0)
    assert abs(float(xy[0::2, 0].std()) - 2.0) < 0.15


def test_landmarks_outside_the_image_are_ignored():
    gen = torch.Generator().manual_seed(2)
    lms = torch.tensor([[-5.0, 10.0], [10.0, 70.0], [30.0, 31.0], [float("nan"), 3.0]])
    xy = landmark_pixels(lms, 50, 0.0, 64, 64, gen)
    assert (xy == torch.tensor([30, 31])).all()
    assert landmark_pixels(lms[:2], 50, 1.0, 64, 64, gen).shape == (0, 2)


def test_weighted_pixels_follow_the_mask():
    gen = torch.Generator().manual_seed(3)
    mask = torch.zeros(16, 16)
    mask[4:8, 10:14] = 1.0
    xy = weighted_pixels(mask, 16, gen)
    assert ((xy[:, 0] >= 10) & (xy[:, 0] < 14) & (xy[:, 1] >= 4) & (xy[:, 1] < 8)).all()
    assert len({(int(x), int(y)) for x, y in xy}) == 16  # distinct while possible
    assert weighted_pixels(torch.zeros(4, 4), 8, gen).shape == (0, 2)


def test_sample_pixels_mixes_landmark_and_uniform_rays_with_precrop():
    gen = torch.Generator().manual_seed(4)
    cfg = PixelSamplerConfig(n_rays=100, landmarks=LandmarkSampling(lm_share=0.6, lm_sigma=0.0), precrop_iters=10,
                             precrop_frac=0.5)
    lms = torch.tensor([[2.0, 3.0]])
    early = sample_pixels(cfg, 64, 64, step=0, landmarks_xy=lms, generator=gen)
    assert early.shape == (100, 2) and _inside(early, 64, 64)
    assert (early[:60] == torch.tensor([2, 3])).all()
    uniform = early[60:]
    assert ((uniform >= 16) & (uniform < 48)).all()  # central crop during warm-up
    late = sample_pixels(cfg, 64, 64, step=10, landmarks_xy=lms, generator=gen)[60:]
    assert not ((late >= 16) & (late < 48)).all()
    no_lm = sample_pixels(cfg, 64, 64, step=50, landmarks_xy=torch.tensor([[-9.0, -9.0]]), generator=gen)
    assert no_lm.shape == (100, 2)  # invisible landmarks: uniform rays fill the batch


def test_sampler_config_validation_and_gather():
    with pytest.raises(FaceNerfError, match="lm_share \\+ mask_share"):
        PixelSamplerConfig(landmarks=LandmarkSampling(lm_share=0.8), mask_share=0.5)
    with pytest.raises(FaceNerfError, match="lm_share must lie in"):
        LandmarkSampling(lm_share=1.5)
    image = torch.arange(5 * 4 * 3, dtype=torch.float32).reshape(5, 4, 3)  # H=5, W=4
    xy = torch.tensor([[3, 0], [0, 4], [2, 2]])
    torch.testing.assert_close(gather_pixels(image, xy), torch.stack([image[0, 3], image[4, 0], image[2, 2]]))


def test_mouth_and_eye_landmarks_get_more_rays_when_weighted():
    gen = torch.Generator().manual_seed(0)
    lms = torch.stack([torch.arange(68.0) % 8 * 7 + 4, torch.arange(68.0) // 8 * 7 + 4], dim=-1)
    cfg = PixelSamplerConfig(n_rays=1000, landmarks=LandmarkSampling(1.0, 0.0), expression_weight=3.0)
    xy = sample_pixels(cfg, 64, 64, landmarks_xy=lms, generator=gen)
    hits = torch.zeros(68)
    for i, point in enumerate(lms.round().long()):
        hits[i] = ((xy == point).all(dim=-1)).sum()
    # 36 landmarks of weight 1 and 32 of weight 3: 1000 rays -> about 7.4 and 22.1 each
    assert hits.sum() == 1000
    assert abs(hits[:36].mean() - 1000 / 132) < 0.5 and abs(hits[36:].mean() - 3000 / 132) < 0.5
    assert hits.max() - hits[36:].min() <= 1 and hits[:36].max() - hits[:36].min() <= 1
    plain = sample_pixels(PixelSamplerConfig(n_rays=680, landmarks=LandmarkSampling(1.0, 0.0)), 64, 64,
                          landmarks_xy=lms, generator=gen)
    assert all(((plain == p).all(dim=-1)).sum() == 10 for p in lms.round().long())   # the original: alike


def test_patch_pixels_are_contiguous_squares_inside_the_region():
    gen = torch.Generator().manual_seed(0)
    xy = patch_pixels(5, 4, 20, 30, gen, region=(10, 2, 18, 12))
    patches = xy.view(5, 4, 4, 2)
    assert xy.dtype == torch.int64 and xy.shape == (80, 2)
    # row-major squares: x grows along a row, y down the columns, by one pixel
    assert (patches[:, :, 1:, 0] - patches[:, :, :-1, 0] == 1).all() and (patches[:, :, 1:, 1] == patches[:, :, :1, 1]).all()
    assert (patches[:, 1:, :, 1] - patches[:, :-1, :, 1] == 1).all()
    assert (xy[:, 0] >= 10).all() and (xy[:, 0] < 18).all() and (xy[:, 1] >= 2).all() and (xy[:, 1] < 12).all()
    image = torch.arange(20 * 30, dtype=torch.float32).reshape(20, 30, 1)
    colours = gather_pixels(image, xy).view(5, 4, 4)
    torch.testing.assert_close(colours[:, 0, 1] - colours[:, 0, 0], torch.ones(5))  # next column
    torch.testing.assert_close(colours[:, 1, 0] - colours[:, 0, 0], torch.full((5,), 30.0))  # next row


def test_patch_pixels_stride_fallback_and_errors():
    gen = torch.Generator().manual_seed(1)
    strided = patch_pixels(3, 3, 16, 16, gen, stride=2).view(3, 3, 3, 2)
    assert (strided[:, :, 1:, 0] - strided[:, :, :-1, 0] == 2).all()
    # a region smaller than the patch: patches land anywhere in the image instead
    xy = patch_pixels(50, 4, 16, 16, gen, region=(0, 0, 3, 3))
    assert xy.min() >= 0 and xy.max() <= 15 and (xy.view(50, 16, 2)[:, 0] > 0).any()
    with pytest.raises(ValueError):
        patch_pixels(1, 8, 6, 20)
