"""Does a trained MoFaNeRF show expressions? The mouth-region expression-difference ratio.

For a training identity, one camera and an edited expression ``e``, the ground truth changes
between neutral and ``e`` by the image difference ``dG = GT(e) - GT(neutral)`` over the mouth
region, and the model's renders of the same two faces by ``dR = R(e) - R(neutral)``. The ratio
is the part of the true change that the renders reproduce, ``<dR, dG> / <dG, dG>`` (the
least-squares factor of ``dR`` along ``dG``): 1 for a model that reproduces the change, 0 for one
that renders every expression alike, lower with blur or a change in the wrong place. Unlike a
ratio of magnitudes, render noise that has nothing to do with the expression does not raise it
(the magnitude ratio ``|dR| / |dG|`` is kept alongside). The mouth region is the box around
the 20 mouth landmarks (48-67) of both frames, padded by half its size, so a jaw that drops
stays inside it.

Renders of an under-trained NeRF also carry streak and grid artefacts (the axis-aligned
positional encoding's unfitted high frequencies). :func:`skin_artefacts` measures them where the
ground truth is smooth: the mean absolute Laplacian of the render over smooth skin, next to the
truth's (equal for a clean render, larger with artefacts).

``python -m facenerf.tools.expression_check -c configs/mofanerf_tiny.txt`` prints the ratios for
the training identities and the artefact measure on held-out views, and writes a strip (rows
ground truth | ours, columns neutral and the edited expressions) of one identity
(:class:`ExpressionCheck` holds its options).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from facenerf.config import option

MOUTH = slice(48, 68)       # iBUG mouth landmarks
BOX_PAD = 0.5               # padding of the mouth box, fraction of its larger side
MIN_TRUTH_CHANGE = 2e-3     # RMS difference below this: the expression does not change the view


@dataclass(frozen=True)
class ExpressionCheck:
    """What ``python -m facenerf.tools.expression_check`` measures and draws."""

    check_expressions: str = option("smile,mouth_stretch,jaw_left", "comma list of edited expressions to compare "
                                                                     "with neutral")
    strip: str = option("", "write the ground truth | ours strip of one identity to this PNG")
    strip_identity: int = option(0, "index of the training identity in the strip (0-based)")
    strip_expressions: str = option("smile,mouth_stretch", "expressions in the strip after neutral")


@dataclass
class ExpressionDifference:
    """The mouth-region change of one (identity, expression) against neutral."""

    identity: str
    expression: int
    truth: float      # RMS of dG over the box, colour in [0, 1]
    rendered: float   # RMS of dR over the box
    ratio: float      # <dR, dG> / <dG, dG>
    box: tuple[int, int, int, int]   # x0, y0, x1, y1 (ends exclusive)

    @property
    def magnitude_ratio(self) -> float:
        return self.rendered / max(self.truth, 1e-12)


def mouth_box(landmarks: Sequence[np.ndarray], height: int, width: int, pad: float = BOX_PAD) -> tuple[int, int, int, int]:
    """Box ``(x0, y0, x1, y1)`` around the finite mouth landmarks of every ``[68, 2]`` array, padded."""
    points = np.concatenate([np.asarray(lm, dtype=np.float64)[MOUTH] for lm in landmarks])
    points = points[np.isfinite(points).all(axis=1)]
    if len(points) == 0:
        raise ValueError("no visible mouth landmark")
    lo, hi = points.min(axis=0), points.max(axis=0)
    margin = pad * float((hi - lo).max()) + 1.0
    x0, y0 = np.floor(lo - margin).astype(int)
    x1, y1 = np.ceil(hi + margin).astype(int) + 1
    box = max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)
    if box[0] >= box[2] or box[1] >= box[3]:
        raise ValueError("the mouth lies outside the image")
    return box


def paired_frames(data, person: int, expression: int, neutral: int = 0) -> tuple[int, int] | None:
    """``(neutral frame, expression frame)`` of ``person`` seen by the same camera, the most frontal one."""
    frames = data.frames
    mine = np.flatnonzero(frames.identity == person)
    edited = mine[frames.expression[mine] == expression]
    plain = mine[frames.expression[mine] == neutral]
    best, best_cos = None, -2.0
    for e in edited:
        same = plain[np.abs(frames.c2w[plain] - frames.c2w[e]).reshape(len(plain), -1).max(axis=1) < 1e-5]
        if len(same) == 0:
            continue
        centre = frames.c2w[e, :3, 3]
        cosine = float(centre[2] / max(np.linalg.norm(centre), 1e-9))
        if cosine > best_cos:
            best, best_cos = (int(same[0]), int(e)), cosine
    return best


def _frame_landmarks(data, frame: int) -> np.ndarray:
    xy = data.landmarks_xy(frame)
    if xy is None:
        raise ValueError(f"frame {frame} has no landmarks")
    return xy.numpy()


def difference_ratio(truth_neutral: Tensor, truth: Tensor, ours_neutral: Tensor, ours: Tensor,
                     box: tuple[int, int, int, int]) -> tuple[float, float, float]:
    """``(RMS of dG, RMS of dR, <dR, dG> / <dG, dG>)`` over ``box`` of images ``[H, W, 3]``."""
    x0, y0, x1, y1 = box
    region = (slice(y0, y1), slice(x0, x1))
    d_truth = (truth[region] - truth_neutral[region]).double()
    d_ours = (ours[region] - ours_neutral[region]).double()
    ratio = float((d_ours * d_truth).sum()) / max(float((d_truth ** 2).sum()), 1e-12)
    return float(d_truth.pow(2).mean().sqrt()), float(d_ours.pow(2).mean().sqrt()), ratio


@torch.no_grad()
def expression_difference(model, data, person: int, expression: int, neutral: int = 0
                          ) -> tuple[ExpressionDifference, dict[str, Tensor]] | None:
    """The mouth-region change of ``person`` from ``neutral`` to ``expression`` (None without a shared view).

    Returns the measurement and the four images ``{"truth_neutral", "truth", "ours_neutral",
    "ours"}`` (``float32 [H, W, 3]`` at the training resolution).
    """
    from facenerf.models.mofanerf.evaluation import render_frame

    pair = paired_frames(data, person, expression, neutral)
    if pair is None:
        return None
    try:
        x0, y0, x1, y1 = mouth_box([_frame_landmarks(data, f) for f in pair], data.K.height, data.K.width)
    except ValueError:
        return None  # no landmarks, or the mouth is out of view
    (ours_n, truth_n), (ours_e, truth_e) = (render_frame(model, data, f) for f in pair)
    truth, rendered, ratio = difference_ratio(truth_n, truth_e, ours_n, ours_e, (x0, y0, x1, y1))
    result = ExpressionDifference(data.identities[person].identity, expression, truth, rendered, ratio,
                                  (x0, y0, x1, y1))
    return result, {"truth_neutral": truth_n, "truth": truth_e, "ours_neutral": ours_n, "ours": ours_e}


def expression_ratios(model, data, expressions: Sequence[int], people: Sequence[int] | None = None
                      ) -> dict[int, list[ExpressionDifference]]:
    """Measurements per expression over ``people`` (default: every training identity)."""
    people = range(len(data.identities)) if people is None else people
    out: dict[int, list[ExpressionDifference]] = {}
    for expression in expressions:
        for person in people:
            measured = expression_difference(model, data, person, expression)
            if measured is not None and measured[0].truth > MIN_TRUTH_CHANGE:
                out.setdefault(expression, []).append(measured[0])
    return out


def summarise(ratios: dict[int, list[ExpressionDifference]], names: Sequence[str]) -> str:
    """One line: the mean ratio per expression and over all of them (magnitude ratios in brackets)."""
    parts, every, magnitudes = [], [], []
    for expression, items in ratios.items():
        values, sizes = [m.ratio for m in items], [m.magnitude_ratio for m in items]
        every += values
        magnitudes += sizes
        parts.append(f"{names[expression]} {np.mean(values):.2f} ({np.mean(sizes):.2f})")
    if not every:
        return "expression-difference ratio: no expression changes the mouth region in the data"
    return (f"expression-difference ratio, mouth region, training identities (ours / ground truth, magnitude "
            f"ratio in brackets): {', '.join(parts)}; mean {np.mean(every):.2f} ({np.mean(magnitudes):.2f})")


SMOOTH_LAPLACIAN = 0.01   # a pixel is smooth skin when the blurred truth's |Laplacian| is below this


def skin_artefacts(render: Tensor, truth: Tensor) -> tuple[float, float]:
    """Mean ``|Laplacian|`` of ``render`` and of ``truth`` (``[H, W, 3]``) over the truth's smooth skin.

    Smooth skin: foreground pixels at least 2 px inside the silhouette where the truth, blurred
    by 3 x 3, has ``|Laplacian| < SMOOTH_LAPLACIAN``. Returns ``(nan, nan)`` when there is none.
    """
    import cv2

    grey_r = render.float().mean(-1).numpy().astype(np.float32)
    grey_t = truth.float().mean(-1).numpy().astype(np.float32)
    inside = cv2.erode(((grey_t > 0.02) * 1).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    smooth = inside & (np.abs(cv2.Laplacian(cv2.GaussianBlur(grey_t, (3, 3), 0), cv2.CV_32F)) < SMOOTH_LAPLACIAN)
    if not smooth.any():
        return float("nan"), float("nan")
    return (float(np.abs(cv2.Laplacian(grey_r, cv2.CV_32F))[smooth].mean()),
            float(np.abs(cv2.Laplacian(grey_t, cv2.CV_32F))[smooth].mean()))


@torch.no_grad()
def artefact_summary(model, data, n_frames: int = 8) -> str:
    """One line: :func:`skin_artefacts` averaged over ``n_frames`` held-out views."""
    from facenerf.models.mofanerf.evaluation import render_frame

    pairs = [skin_artefacts(*render_frame(model, data, f)) for f in data.validation_frames(n_frames)]
    ours, truth = (float(np.nanmean([p[i] for p in pairs])) for i in (0, 1))
    return (f"streak/grid artefacts on smooth skin of {len(pairs)} held-out views (mean |Laplacian|): ours "
            f"{ours:.4f}, ground truth {truth:.4f} (x{ours / max(truth, 1e-12):.2f})")


def crop_up(image: Tensor, box: tuple[int, int, int, int], size: int, spread: float = 2.2,
            smallest: int = 8) -> np.ndarray:
    """The square crop (``spread`` x the larger side of ``box``, at least ``smallest`` pixels) around
    ``box``'s centre, raised by a sixth of its side to cover the lower face, enlarged to ``size`` (nearest)."""
    import cv2

    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    side = min(max(int(round(spread * max(x1 - x0, y1 - y0))), smallest), h, w)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2 - side // 6
    left, top = min(max(cx - side // 2, 0), w - side), min(max(cy - side // 2, 0), h - side)
    crop = image[top:top + side, left:left + side].float().cpu().numpy()
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_NEAREST)


def label(image: np.ndarray, text: str) -> np.ndarray:
    """``image [H, W, 3]`` float with ``text`` written in its top-left corner."""
    import cv2

    canvas = np.ascontiguousarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    cv2.putText(canvas, text, (4, 14), cv2.FONT_HERSHEY_PLAIN, 0.9, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def expression_strip(model, data, person: int, expressions: Sequence[int], names: Sequence[str],
                     tile: int = 160) -> np.ndarray:
    """Rows ground truth | ours, columns neutral then ``expressions``, cropped to the face: ``[H, W, 3]``."""
    from facenerf.fitting.figures import hstack, vstack

    columns, box = [], None
    for expression in expressions:
        measured = expression_difference(model, data, person, expression)
        if measured is None:
            continue
        result, images = measured
        box = box or result.box
        if not columns:
            columns.append(("neutral", images["truth_neutral"], images["ours_neutral"]))
        columns.append((names[expression], images["truth"], images["ours"]))
    if not columns:
        raise ValueError("no expression shares a camera with neutral")
    top = [label(crop_up(truth, box, tile), f"{name}: truth") for name, truth, _ in columns]
    bottom = [label(crop_up(ours, box, tile), f"{name}: ours") for name, _, ours in columns]
    return vstack([hstack(top), hstack(bottom)])
