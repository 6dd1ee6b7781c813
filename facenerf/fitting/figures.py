"""Figures of a fit: the loss curve (matplotlib, Agg backend) and image strips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facenerf.errors import FaceNerfError


def loss_curve(path: str | Path, history: dict[str, list[float]], level_starts: list[int] | None = None,
               title: str = "") -> Path:
    """Write the loss (log scale) and sampled-ray PSNR over iterations as a PNG.

    ``history`` holds equal-length lists ``iteration``, ``loss``, ``photometric`` and ``psnr``
    (and ``psnr_full``, the PSNR on fixed full-resolution pixels, when recorded); vertical lines
    mark the start of each resolution level.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = history.get("iteration", [])
    if not its:
        raise FaceNerfError(f"no iterations recorded for {path}; run at least --log_every iterations")
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    ax_loss.semilogy(its, history["loss"], label="total")
    ax_loss.semilogy(its, history["photometric"], label="photometric", alpha=0.8)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("loss")
    ax_loss.legend(loc="upper right", fontsize=8)
    ax_psnr.plot(its, history["psnr"], color="tab:green", alpha=0.6, label="sampled rays (current level)")
    full = history.get("psnr_full", [])
    if len(full) == len(its):
        ax_psnr.plot(its, full, color="tab:red", label="fixed full-resolution pixels")
    ax_psnr.legend(loc="lower right", fontsize=8)
    ax_psnr.set_xlabel("iteration")
    ax_psnr.set_ylabel("PSNR (dB)")
    for ax in (ax_loss, ax_psnr):
        ax.grid(True, alpha=0.3)
        for start in (level_starts or [])[1:]:
            ax.axvline(start, color="grey", linestyle="--", linewidth=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from facenerf.io import write_figure

    try:
        return write_figure(path, fig)
    finally:
        plt.close(fig)


def _stack(images: list[Tensor | np.ndarray], gap: int, axis: int) -> np.ndarray:
    """``[H, W, 3]`` images joined along ``axis`` (1 = side by side, 0 = rows) with white gaps."""
    arrays = [np.asarray(i.detach().cpu() if isinstance(i, Tensor) else i, dtype=np.float32) for i in images]
    shape = list(arrays[0].shape)
    shape[axis] = gap
    spacer = np.ones(shape, dtype=np.float32)
    parts = [part for k, a in enumerate(arrays) for part in ((spacer, a) if k else (a,))]
    return np.concatenate(parts, axis=axis)


def hstack(images: list[Tensor | np.ndarray], gap: int = 2) -> np.ndarray:
    """Images ``[H, W, 3]`` (same height) side by side with a white gap -> ``[H, W', 3]`` float."""
    return _stack(images, gap, axis=1)


def vstack(images: list[Tensor | np.ndarray], gap: int = 2) -> np.ndarray:
    """Rows of equal width stacked with a white gap -> ``[H', W, 3]`` float."""
    return _stack(images, gap, axis=0)


def error_map(render: Tensor, target: Tensor) -> Tensor:
    """Absolute error ``|render - target|`` averaged over channels, x4, as a grey ``[H, W, 3]`` image."""
    err = (render.float() - target.float()).abs().mean(-1, keepdim=True) * 4.0
    return err.clamp(0, 1).expand(-1, -1, 3)


def grid(images: list[Tensor], columns: int) -> np.ndarray:
    """Equal-size images in rows of ``columns`` (the last row padded with white)."""
    blank = torch.ones_like(images[0])
    rows = []
    for start in range(0, len(images), columns):
        row = list(images[start:start + columns])
        row += [blank] * (columns - len(row))
        rows.append(hstack(row))
    return vstack(rows)
