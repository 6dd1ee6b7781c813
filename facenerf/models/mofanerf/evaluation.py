"""Held-out renders of a MoFaNeRF: validation PSNR, comparison strips and identity x expression grids."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from facenerf.data.mofanerf_dataset import MoFaNeRFData
from facenerf.errors import FaceNerfError
from facenerf.io import write_image
from facenerf.metrics import psnr
from facenerf.models.mofanerf.model import MoFaNeRF


def _device(model: MoFaNeRF) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def render_frame(model: MoFaNeRF, data: MoFaNeRFData, frame: int, scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Render ``frame`` with its identity's codes; returns ``(render, ground truth)``, both
    ``float32 [H, W, 3]`` on the CPU at ``scale`` times the training resolution."""
    device = _device(model)
    rays, K = data.frame_rays(frame, scale)
    person = int(data.frames.identity[frame])
    shape = torch.from_numpy(np.asarray(data.identities[person].shape_code, np.float32)).to(device)
    codes = model.face_codes(shape, expression_index=int(data.frames.expression[frame]),
                             uv=data.uv(person).to(device))
    image = model.render_image(rays.to(device), codes, K.height, K.width, fast=False)["rgb"]
    return image.float().clamp(0, 1).cpu(), data.frame_image(frame, K)


def make_evaluator(data: MoFaNeRFData, frames: Sequence[int], out_dir: str | Path, scale: float = 0.5):
    """``evaluate(model, step)`` for the Trainer: renders ``frames`` (held-out views), reports
    their mean PSNR and the mean-colour baseline's, and writes ``val/step_XXXXXXXX.png``
    (rows: ground truth | render). An unreadable view stops training (the trainer saves a
    checkpoint first) unless ``data.skip_bad_images``, which leaves it out."""
    out_dir = Path(out_dir)
    mean_rgb = data.mean_colour()  # [3]

    def evaluate(model: MoFaNeRF, step: int) -> dict:
        rows, scores, baseline = [], [], []
        for frame in frames:
            if not data.readable(frame):
                continue
            try:
                image, truth = render_frame(model, data, frame, scale)
            except FaceNerfError:
                if not data.skip_bad_images:
                    raise
                continue
            scores.append(float(psnr(image, truth)))
            baseline.append(float(psnr(mean_rgb.expand_as(truth).contiguous(), truth)))
            rows.append(torch.cat([truth, image], dim=1))
        if not rows:
            return {}
        strip = torch.cat(rows, dim=0).numpy()
        write_image(out_dir / "val" / f"step_{step:08d}.png", strip)
        return {"scalars": {"psnr": float(np.mean(scores)), "psnr_mean_colour": float(np.mean(baseline))},
                "images": {"val": strip}}

    return evaluate


def frontal_test_frame(data: MoFaNeRFData, identity: int, expression: int) -> int | None:
    """The held-out frame of (identity, expression) whose camera is closest to frontal (+Z)."""
    sel = np.flatnonzero((data.frames.identity == identity) & (data.frames.expression == expression))
    if len(sel) == 0:
        return None
    held = sel[data.frames.is_test[sel]]
    pool = held if len(held) else sel
    centres = data.frames.c2w[pool, :3, 3]
    cosine = centres[:, 2] / np.maximum(np.linalg.norm(centres, axis=1), 1e-9)
    return int(pool[int(np.argmax(cosine))])


@torch.no_grad()
def identity_expression_grid(model: MoFaNeRF, data: MoFaNeRFData, identities: Sequence[int],
                             expressions: Sequence[int], scale: float = 1.0,
                             names: Sequence[str] | None = None) -> tuple[np.ndarray, list[float]]:
    """A grid image: one row per identity, one column pair (ground truth | render) per expression,
    using each (identity, expression)'s most frontal held-out view. Returns ``(image [H, W, 3]
    float, PSNR per rendered cell)``; cells with no frame stay grey."""
    K = data.K.scaled(scale) if scale != 1.0 else data.K
    h, w = K.height, K.width
    header = 14
    grid = np.full((header + h * len(identities), 2 * w * len(expressions), 3), 0.5, np.float32)
    scores = []
    for r, person in enumerate(identities):
        for c, expression in enumerate(expressions):
            frame = frontal_test_frame(data, person, expression)
            if frame is None or not data.readable(frame):
                continue
            try:
                image, truth = render_frame(model, data, frame, scale)
            except FaceNerfError:
                if not data.skip_bad_images:
                    raise
                continue
            scores.append(float(psnr(image, truth)))
            y, x = header + r * h, 2 * c * w
            grid[y:y + h, x:x + w] = truth.numpy()
            grid[y:y + h, x + w:x + 2 * w] = image.numpy()
    _label(grid, expressions, names, 2 * w, header)
    return grid, scores


def _label(grid: np.ndarray, expressions: Sequence[int], names: Sequence[str] | None, cell: int, header: int) -> None:
    """Write 'name: GT | ours' above each column pair (OpenCV's Hershey font)."""
    import cv2

    canvas = np.ascontiguousarray((grid[:header] * 255).astype(np.uint8))
    for c, expression in enumerate(expressions):
        label = names[expression] if names and expression < len(names) else f"exp {expression}"
        cv2.putText(canvas, f"{label[:12]} GT|ours", (c * cell + 2, header - 4), cv2.FONT_HERSHEY_PLAIN,
                    0.7, (255, 255, 255), 1, cv2.LINE_AA)
    grid[:header] = canvas.astype(np.float32) / 255.0
