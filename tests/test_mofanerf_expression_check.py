"""The expression check: mouth box, difference ratio against analytic cases, artefact measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facenerf.models.mofanerf import expression_check as ec


def test_mouth_box_covers_both_frames_mouths_with_padding_and_stays_inside():
    a = np.full((68, 2), np.nan)
    a[48:68] = [[20.0, 40.0]] * 10 + [[30.0, 44.0]] * 10
    b = a.copy()
    b[57] = [25.0, 50.0]                       # the jaw drops in the other frame
    x0, y0, x1, y1 = ec.mouth_box([a, b], 64, 64)
    assert x0 <= 20 - 5 and x1 >= 31 + 5 and y0 <= 40 - 5 and y1 >= 51 + 5
    assert ec.mouth_box([a * 1.4], 64, 64)[3] == 64                 # clipped to the image
    with pytest.raises(ValueError, match="outside the image"):
        ec.mouth_box([a * 3.0], 64, 64)


def test_ratio_is_the_share_of_the_true_change_that_the_renders_reproduce():
    gen = torch.Generator().manual_seed(0)
    truth = torch.rand(16, 16, 3, generator=gen) * 0.3
    change = torch.zeros(16, 16, 3)
    change[6:10, 4:12] = 0.4                    # the mouth opens
    noise = torch.randn(16, 16, 3, generator=gen) * 0.05

    box = (0, 0, 16, 16)

    def ratio(ours_change):
        return ec.difference_ratio(truth, truth + change, truth, truth + ours_change, box)[2]

    assert ratio(change) == pytest.approx(1.0) and ratio(0.5 * change) == pytest.approx(0.5)
    assert ratio(torch.zeros_like(change)) == 0.0
    assert abs(ratio(noise)) < 0.1                              # unrelated noise does not count ...
    truth_rms, ours_rms, _ = ec.difference_ratio(truth, truth + change, truth, truth + noise, box)
    assert ours_rms / truth_rms > 0.2                            # ... though its magnitude would
    shifted = torch.roll(change, shifts=4, dims=1)              # the change in the wrong place
    assert ratio(shifted) < 0.6


def test_skin_artefacts_see_a_grid_on_smooth_skin_but_not_a_blur():
    y, x = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    face = ((x - 24) ** 2 / 400 + (y - 24) ** 2 / 500 < 1).float()
    truth = (0.6 * face)[..., None].expand(48, 48, 3).contiguous()
    grid = truth + 0.05 * face[..., None] * torch.cos(np.pi * x)[..., None]     # 2-px vertical streaks
    ours, clean = ec.skin_artefacts(grid, truth)
    assert clean < 1e-6 and ours > 0.1
    blurred, _ = ec.skin_artefacts(truth * 0.97, truth)
    assert blurred < 1e-3
