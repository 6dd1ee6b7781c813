"""Losses of NeRFBlendShape training (reference §3.1).

* :func:`photometric_l1` - L1 between rendered and target ray colours (the release's criterion);
* :func:`mask_l1` - the early mask loss: L1 between the rendered opacity (per-ray weight sum)
  and the head mask;
* :func:`sparsity_l1` - the L1 regulariser on the expression tables, ``mean |H_1..K|`` (the mean
  table is not regularised);
* :class:`PatchLoss` - the late patch loss on rendered ``P x P`` patches. The release uses LPIPS
  (VGG) on the patch; here LPIPS (AlexNet, :class:`facenerf.metrics.LPIPS`) is used only when
  its weights file is given and found - nothing is ever downloaded. Without it the patch loss is
  **weights-free** (:func:`structure_loss`): ``(1 - SSIM) + mean |grad pred - grad target|``,
  SSIM with an 11-pixel Gaussian window (7 for patches under 16 pixels) and the gradients as
  horizontal and vertical neighbour differences. Both terms are 0 for a perfect patch; SSIM
  rewards local contrast and structure that an L1 on colours averages away, the gradient term
  rewards sharp edges (lips, teeth, eyelids), which is what the perceptual loss is for.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from facenerf.errors import FaceNerfError
from facenerf.metrics import LPIPS, load_lpips, ssim


def photometric_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean absolute colour error of rays: pred, target [N, 3] -> scalar."""
    return (pred - target.to(pred.dtype)).abs().mean()


def mask_l1(opacity: Tensor, mask: Tensor) -> Tensor:
    """Mean |opacity - mask| of rays: opacity [N] (weight sum), mask [N] in [0, 1] -> scalar."""
    return (opacity - mask.to(opacity.dtype)).abs().mean()


def sparsity_l1(expression_tables: Tensor) -> Tensor:
    """``mean |H_k|`` over the expression tables [K, P, F] -> scalar."""
    return expression_tables.abs().mean()


def image_gradients(images: Tensor) -> tuple[Tensor, Tensor]:
    """Neighbour differences of images [B, H, W, C]: (d/dx [B, H, W-1, C], d/dy [B, H-1, W, C])."""
    return images[:, :, 1:] - images[:, :, :-1], images[:, 1:] - images[:, :-1]


def structure_loss(pred: Tensor, target: Tensor) -> Tensor:
    """The weights-free patch loss: ``(1 - SSIM) + mean |grad pred - grad target|``.

    pred, target: patches [B, P, P, 3] in [0, 1] (P >= 7) -> scalar (0 when they are equal).
    """
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"patches must be [B, P, P, 3] of equal shape, got {tuple(pred.shape)} / {tuple(target.shape)}")
    target = target.to(pred.dtype)
    window = 11 if min(pred.shape[1:3]) >= 16 else 7
    similarity = ssim(pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), window_size=window)
    gx, gy = image_gradients(pred)
    tx, ty = image_gradients(target)
    edges = 0.5 * ((gx - tx).abs().mean() + (gy - ty).abs().mean())
    return (1.0 - similarity) + edges


class PatchLoss:
    """The perceptual term of the patch loss: LPIPS when ``lpips_weights`` names an existing file,
    else :func:`structure_loss`. Not an ``nn.Module``: nothing of it goes into checkpoints."""

    def __init__(self, lpips_weights: str = ""):
        self.lpips: LPIPS | None = None
        if lpips_weights:
            if not Path(lpips_weights).is_file():
                raise FaceNerfError(f"--lpips_weights file not found: {lpips_weights}; give the path of the LPIPS "
                                    "(AlexNet) weights or leave it empty for the weights-free patch loss")
            self.lpips = load_lpips(lpips_weights)

    @property
    def name(self) -> str:
        return "LPIPS (AlexNet)" if self.lpips is not None else "SSIM + gradients (weights-free)"

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        """pred, target: patches [B, P, P, 3] in [0, 1] -> scalar."""
        if self.lpips is None:
            return structure_loss(pred, target)
        if next(self.lpips.parameters()).device != pred.device:
            self.lpips = self.lpips.to(pred.device)
        return self.lpips(pred.permute(0, 3, 1, 2).float(), target.permute(0, 3, 1, 2).float())


LPIPS_MIN_PATCH = 32  # AlexNet's strides and pools leave nothing of smaller patches


def check_patch_size(patch_size: int, height: int, width: int, lpips: bool = False) -> None:
    """One-line error for a patch that cannot fit the training images, the SSIM window or LPIPS."""
    low = LPIPS_MIN_PATCH if lpips else 7
    if patch_size > min(height, width) or patch_size < low:
        need = "LPIPS needs patches of at least 32 pixels; " if lpips and patch_size < low else ""
        raise FaceNerfError(f"--patch_size {patch_size} does not fit the {width}x{height} training images "
                            f"({need}needs {low}..{min(height, width)}); change --patch_size or --downscale")

