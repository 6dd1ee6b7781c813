"""Do the head's renders follow a coefficient? Closed vs open jaw on held-out frames.

Among the held-out frames, the one with the smallest value of a coefficient (``jaw_open`` by
default) is the *closed* frame, and the one with the largest value inside the training range
is the *open* frame (the model clamps larger values to that range, so a frame beyond it would
ask for a change no head trained on these frames can show). Over the mouth region - the union
of both frames' ``lip_rect`` grown by its own size, else the lower middle of the head mask - the
ground truth changes by ``dG = GT(open) - GT(closed)`` and the renders by ``dR = R(open) -
R(closed)``. The ratio ``<dR, dG> / <dG, dG>`` (:func:`facenerf.models.mofanerf.expression_check.
difference_ratio`) is the share of the true change the renders reproduce (1 = all of it, 0 = none;
render noise unrelated to the change does not raise it); the magnitude ratio ``|dR| / |dG|`` is
reported next to it. The two frames also differ by a little head motion, in the truth and in the
renders alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from facenerf.config import option
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.data import HeadData
from facenerf.models.mofanerf.expression_check import crop_up, difference_ratio, label


@dataclass(frozen=True)
class JawCheck:
    """What ``python -m facenerf.tools.blendshape_check`` measures and draws."""

    coefficient: str = option("jaw_open", "coefficient compared between its smallest and largest held-out value "
                                          "(a name of expr_names.txt, or a 0-based index)")
    strip: str = option("", "write the ground truth | render strip of the closed and open frames to this PNG")
    tile: int = option(192, "side of each tile of the strip in pixels")


@dataclass
class JawMeasure:
    """The mouth-region change between the closed and the open held-out frame."""

    coefficient: str
    closed: int             # index into the held-out frames
    open: int
    closed_value: float
    open_value: float
    truth: float            # RMS of dG over the box
    rendered: float         # RMS of dR over the box
    ratio: float            # <dR, dG> / <dG, dG>
    box: tuple[int, int, int, int]

    @property
    def magnitude_ratio(self) -> float:
        return self.rendered / max(self.truth, 1e-12)

    def summary(self, data: HeadData) -> str:
        ids = [data.val.dataset.frames[i].img_id for i in (self.closed, self.open)]
        return (f"{self.coefficient}: held-out frame {ids[0]} ({self.closed_value:.2f}) vs {ids[1]} "
                f"({self.open_value:.2f}): mouth-region change reproduced {self.ratio:.2f} (<dR, dG> / <dG, dG>), "
                f"magnitude {self.magnitude_ratio:.2f} (|dR| / |dG|; truth RMS {self.truth:.4f})")


def coefficient_index(spec: str, names: list[str] | None, k: int) -> tuple[int, str]:
    """``(index, name)`` of a coefficient given by name or 0-based index."""
    if spec.isdigit() and int(spec) < k:
        return int(spec), names[int(spec)] if names else f"coefficient {spec}"
    if names and spec in names:
        return names.index(spec), spec
    known = f"names: {', '.join(names)}" if names else "the dataset has no expr_names.txt"
    raise FaceNerfError(f"unknown coefficient '{spec}': give a 0-based index below {k} or a name ({known})")


MIN_CHANGE = 0.05  # the smallest closed-to-open change worth comparing, as a share of max(training range, 1)


def pick_frames(values: Tensor, limit: float, min_change: float) -> tuple[int, int]:
    """``(closed, open)``: the smallest value, and the largest one not above ``limit`` (the training
    maximum); they must differ by ``min_change`` at least."""
    closed = int(torch.argmin(values))
    inside = torch.where(values <= limit + 1e-6, values, torch.full_like(values, -float("inf")))
    opened = int(torch.argmax(inside)) if bool(torch.isfinite(inside).any()) else int(torch.argmax(values))
    if opened == closed or float(values[opened] - values[closed]) < min_change:
        raise FaceNerfError(f"the held-out frames barely vary in this coefficient ({float(values[closed]):.3f} to "
                            f"{float(values[opened]):.3f}, under {min_change:.3f}); hold out more frames "
                            "(--test_num) or check another coefficient")
    return closed, opened


def frame_pair(data: HeadData, index: int) -> tuple[int, int]:
    """``(closed, open)`` held-out frames of coefficient ``index``, at least :data:`MIN_CHANGE` of its
    training range apart, or of 1 (a fully open jaw) when the range is smaller (a clip that never
    opens the jaw)."""
    low, high = float(data.expr_min[index]), float(data.expr_max[index])
    return pick_frames(data.val.coefficients[:, index], high, MIN_CHANGE * max(high - low, 1.0))


def mouth_box(data: HeadData, frames: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` around the mouth of both frames at the training resolution."""
    K = data.intrinsics
    factor = K.width / data.val.dataset.intrinsics.width
    rects = [data.val.dataset.frames[i].lip_rect for i in frames]
    if all(r is not None for r in rects):
        x0 = min(r[0] for r in rects) * factor
        y0 = min(r[1] for r in rects) * factor
        x1 = max(r[0] + r[2] for r in rects) * factor
        y1 = max(r[1] + r[3] for r in rects) * factor
        pad_x, pad_y = max(x1 - x0, 2.0), max(y1 - y0, 2.0)
        x0, y0, x1, y1 = x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y
    else:  # the lower middle of the head mask
        ys, xs = torch.nonzero(data.val.mask(frames[1]) > 0.5, as_tuple=True)
        if ys.numel() == 0:
            raise FaceNerfError("the open frame's head mask is empty; check the masks of the held-out frames")
        left, right, top, bottom = float(xs.min()), float(xs.max()) + 1, float(ys.min()), float(ys.max()) + 1
        x0, x1 = left + 0.25 * (right - left), right - 0.25 * (right - left)
        y0, y1 = top + 0.6 * (bottom - top), bottom
    box = (int(np.floor(max(x0, 0))), int(np.floor(max(y0, 0))), int(np.ceil(min(x1, K.width))),
           int(np.ceil(min(y1, K.height))))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise FaceNerfError(f"the mouth box {box} is outside the image; check the lip_rect entries")
    return box


def measure(data: HeadData, truths: list[Tensor], renders: list[Tensor], spec: str = "jaw_open") -> JawMeasure:
    """The closed/open comparison from the held-out truths and renders (lists of ``[H, W, 3]``)."""
    index, name = coefficient_index(spec, data.val.dataset.expression_names, data.expr_dim)
    closed, opened = frame_pair(data, index)
    box = mouth_box(data, (closed, opened))
    truth, rendered, ratio = difference_ratio(truths[closed], truths[opened], renders[closed], renders[opened], box)
    values = data.val.coefficients[:, index]
    return JawMeasure(name, closed, opened, float(values[closed]), float(values[opened]), truth, rendered, ratio, box)


def jaw_strip(result: JawMeasure, truths: list[Tensor], renders: list[Tensor], tile: int = 192) -> np.ndarray:
    """Columns closed | open, each ground truth | render side by side, cropped to the lower face: [H, W, 3]."""
    from facenerf.fitting.figures import hstack

    tiles = []
    for i, state, value in ((result.closed, "closed", result.closed_value), (result.open, "open", result.open_value)):
        tiles += [label(crop_up(truths[i], result.box, tile, 1.4, 16), f"truth {state} {value:.2f}"),
                  label(crop_up(renders[i], result.box, tile, 1.4, 16), f"ours {state}")]
    return hstack(tiles, gap=4)
