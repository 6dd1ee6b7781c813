"""Fitting rays: resolution pyramid geometry, distinct in-image pixels, masks; the schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facenerf.core.cameras import Intrinsics, project_points
from facenerf.core.rays import pixel_rays
from facenerf.data.ray_batches import LandmarkSampling, landmark_pixels
from facenerf.errors import FaceNerfError
from facenerf.fitting.sampling import (build_levels, grow_mask, level_intrinsics, mask_from_image, mask_from_labels,
                                       sample_fit_pixels, to_level_pixels)
from facenerf.fitting.schedule import FitSchedule
from facenerf.preprocess.training.rig import mofanerf_pose

K = Intrinsics(32, 32, 75.0, 75.0, 16.0, 16.0)


def test_small_pixel_ray_passes_through_the_centre_of_its_block():
    c2w = mofanerf_pose(10.0, 20.0)
    for scale in (0.5, 0.25):
        small = level_intrinsics(K, scale)
        block = int(round(1 / scale))
        assert (small.width, small.height) == (32 // block, 32 // block)
        ray = pixel_rays(small, c2w, torch.tensor([[3.0, 5.0]]), 8.0, 26.0)
        point = ray.origins + ray.directions * 16.0
        full = project_points(point, c2w, K)[0]
        centre = torch.tensor([3 * block + (block - 1) / 2, 5 * block + (block - 1) / 2])
        torch.testing.assert_close(full, centre, atol=1e-3, rtol=0)
        torch.testing.assert_close(to_level_pixels(centre[None], K, small)[0], torch.tensor([3.0, 5.0]))


def _level(mask_box=(8, 24), landmarks=None):
    image = torch.zeros(32, 32, 3)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[mask_box[0]:mask_box[1], mask_box[0]:mask_box[1]] = True
    image[mask] = 0.5
    return build_levels(image, mask, landmarks, K, (0.5, 1.0), band_frac=1 / 32)


def test_levels_resize_image_mask_and_landmarks():
    lm = torch.tensor([[10.0, 12.0], [20.0, 21.0]])
    half, full = _level(landmarks=lm)
    assert half.image.shape == (16, 16, 3) and half.mask.shape == (16, 16)
    assert int(half.mask.sum()) == 64 and int(full.mask.sum()) == 256
    assert int(full.region.sum()) == 18 * 18  # grown by one pixel each side
    torch.testing.assert_close(half.landmarks_xy, (lm + 0.5) * 0.5 - 0.5)


def test_pixels_are_distinct_inside_the_image_and_the_region():
    lm = torch.tensor([[0.0, 0.0], [31.0, 31.0], [16.0, 16.0], [np.nan, 3.0], [100.0, 5.0]])
    level = _level(landmarks=lm)[1]
    xy = sample_fit_pixels(level, 200, LandmarkSampling(0.5, 0.1), torch.Generator().manual_seed(0))
    assert xy.shape == (200, 2) and xy.dtype == torch.long
    assert xy.min() >= 0 and xy.max() <= 31
    flat = xy[:, 1] * 32 + xy[:, 0]
    assert torch.unique(flat).numel() == 200
    rest = xy[torch.arange(200) >= 100]  # after the landmark part every pixel comes from the region
    assert level.region[rest[:, 1], rest[:, 0]].all()


def test_landmark_rays_are_the_training_samplers_without_repeats():
    lm = torch.tensor([[4.0, 5.0], [20.0, 9.0], [12.0, 27.0]])
    level = _level(landmarks=lm)[1]
    share = LandmarkSampling(lm_share=0.25, lm_sigma=0.01)
    xy = sample_fit_pixels(level, 80, share, torch.Generator().manual_seed(5))
    training = landmark_pixels(lm, 20, 0.01 * 32, 32, 32, torch.Generator().manual_seed(5))  # the same draws
    expected = torch.unique(training[:, 1] * 32 + training[:, 0])
    got = xy[:expected.numel(), 1] * 32 + xy[:expected.numel(), 0]
    assert torch.equal(got, expected) and expected.numel() < 20  # repeats removed


def test_fewer_rays_when_the_region_is_small_and_deterministic_per_seed():
    level = _level(mask_box=(15, 17))[1]
    xy = sample_fit_pixels(level, 500, LandmarkSampling(0.0, 0.0), torch.Generator().manual_seed(1))
    assert xy.shape[0] == int(level.region.sum())
    a = sample_fit_pixels(_level()[1], 50, LandmarkSampling(0.0, 0.0), torch.Generator().manual_seed(3))
    b = sample_fit_pixels(_level()[1], 50, LandmarkSampling(0.0, 0.0), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_masks_from_labels_and_from_image():
    labels = np.zeros((4, 5, 3), np.float32)
    labels[0, 0] = (1, 0, 0)  # face
    labels[0, 1] = (0, 0, 1)  # hair
    labels[0, 2] = (0, 1, 1)  # neck
    labels[0, 3] = (0, 1, 0)  # cloth
    expected = np.zeros((4, 5), bool)
    expected[0, :3] = True
    assert np.array_equal(mask_from_labels(labels), expected)
    image = np.zeros((6, 6, 3), np.float32)
    image[1:4, 1:4] = 0.3
    image[5, 5] = 0.9  # isolated speck
    mask = mask_from_image(image)
    assert mask[1:4, 1:4].all() and not mask[5, 5] and int(mask.sum()) == 9
    assert int(grow_mask(torch.from_numpy(mask), 1).sum()) == 25


def test_schedule_levels_and_independent_smooth_learning_rates():
    s = FitSchedule(iterations=2000)
    assert s.level_starts() == [0, 600, 1000]
    assert [s.level(i) for i in (0, 599, 600, 999, 1000, 1999)] == [0, 0, 1, 1, 2, 2]
    assert s.lr("texture", 0) == pytest.approx(2e-3)
    assert s.lr("texture", 2000) == pytest.approx(2e-4)
    assert s.lr("expression", 1600) / s.lr("texture", 1600) == pytest.approx(2.0)  # no common reset
    rates = [s.lr("shape", i) for i in range(0, 2001, 50)]
    assert all(b < a for a, b in zip(rates, rates[1:]))
    with pytest.raises(FaceNerfError, match="fit_level_starts"):
        FitSchedule(iterations=10, scales=(0.5, 1.0), starts=(0.0, 1.2))
    with pytest.raises(FaceNerfError, match="num_iterations"):
        FitSchedule(iterations=0)
