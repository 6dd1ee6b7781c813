"""Image-quality metrics in torch: PSNR, SSIM, and LPIPS when its weights are on disk.

Images are in [0, 1], either one image ``[H, W, 3]`` or a batch ``[B, 3, H, W]``.
With ``reduction="mean"`` a batch gives the mean of the per-image values; ``"none"`` gives
``[B]``. A single ``[H, W, 3]`` image always gives a scalar.

SSIM follows Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, population statistics, averaged over the "valid" region (pixels whose whole window
lies inside the image) and over channels. This equals ``skimage.metrics.structural_similarity``
with ``gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1``.

LPIPS (AlexNet variant) needs weights that cannot be downloaded here; it is computed only when
a weights file is given (see :func:`load_lpips`), otherwise :func:`lpips_availability` says why
it is unavailable and :func:`image_metrics` reports ``lpips = None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facenerf.errors import FaceNerfError
from facenerf.io import load_weights_file


def _as_batch(image: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``[H, W, 3]`` -> ``([1, 3, H, W], True)``; ``[B, 3, H, W]`` -> ``(same, False)``."""
    if image.ndim == 3 and image.shape[-1] in (1, 3):
        return image.permute(2, 0, 1).unsqueeze(0), True
    if image.ndim == 4:
        return image, False
    raise ValueError(f"expected an image [H, W, 3] or a batch [B, 3, H, W], got shape {tuple(image.shape)}")


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise FaceNerfError(f"image sizes differ: prediction {tuple(pred.shape)} vs target "
                            f"{tuple(target.shape)}; resize one to match before comparing")


def _reduce(values: torch.Tensor, single: bool, reduction: str) -> torch.Tensor:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', not {reduction!r}")
    if single:
        return values[0]
    return values.mean() if reduction == "mean" else values


def mse_to_psnr(mse: torch.Tensor | float, max_val: float = 1.0) -> torch.Tensor:
    """``10 * log10(max_val^2 / mse)``; ``mse = 0`` gives ``inf``."""
    mse = torch.as_tensor(mse)
    return 10.0 * torch.log10(max_val ** 2 / mse)


def psnr(pred: torch.Tensor, target: torch.Tensor, max_val: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Peak signal-to-noise ratio in dB.

    ``[H, W, 3]`` (or any non-batch shape such as ``[N, 3]`` ray colours): one value from the
    MSE over all elements. ``[B, 3, H, W]``: per-image PSNR, then ``reduction``.
    """
    _check_pair(pred, target)
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    diff2 = (pred.to(dtype) - target.to(dtype)) ** 2  # same shape as pred
    if pred.ndim == 4:
        return _reduce(mse_to_psnr(diff2.flatten(1).mean(dim=1), max_val), False, reduction)
    return mse_to_psnr(diff2.mean(), max_val)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian ``[size]`` centred on the middle tap."""
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2.0
    window = torch.exp(-(coords ** 2) / (2.0 * sigma ** 2))
    return (window / window.sum()).to(dtype)


def _blur_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Depthwise 2-D Gaussian filter (outer product of ``window``), 'valid' region only:
    ``[B, C, H, W] -> [B, C, H-k+1, W-k+1]``. One direct convolution: on CPUs it beats two 1-D passes."""
    channels, k = x.shape[1], window.numel()
    kernel = (window[:, None] * window[None, :]).expand(channels, 1, k, k)  # [C, 1, k, k]
    return F.conv2d(x, kernel, groups=channels)


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, reduction: str = "mean",
         window_size: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (see the module docstring); differentiable.

    Always computed in fp32 (or fp64), also under autocast: the variances are differences of
    blurred squares, which an fp16/bf16 convolution cancels away (bf16 took a 16 px patch's
    SSIM from 0.96 to 0.80).
    """
    _check_pair(pred, target)
    x, single = _as_batch(pred)
    y, _ = _as_batch(target)
    if min(x.shape[-2:]) < window_size:
        raise FaceNerfError(f"image of {x.shape[-1]}x{x.shape[-2]} pixels is smaller than the "
                            f"{window_size}x{window_size} SSIM window; compare larger images")
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    window = gaussian_window(window_size, sigma, dtype=dtype, device=x.device)
    with torch.autocast(x.device.type, enabled=False):
        stats = _blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)  # [B, 5C, h, w]
    mu_x, mu_y, xx, yy, xy = stats.chunk(5, dim=1)                              # each [B, C, h, w]
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return _reduce(ssim_map.flatten(1).mean(dim=1), single, reduction)


# ---------------------------------------------------------------------------------- LPIPS
_ALEX_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
_ALEX_INDICES = (0, 3, 6, 8, 10)   # torchvision ``alexnet.features`` indices of the conv layers
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """LPIPS distance with an AlexNet backbone: lower is more similar, 0 for identical images.

    State dict keys: ``features.{0,3,6,8,10}.{weight,bias}`` (torchvision AlexNet layout) and
    ``lin{0..4}.model.1.weight`` (the LPIPS linear heads, ``[1, C, 1, 1]``).
    """

    def __init__(self):
        super().__init__()
        self.features = nn.ModuleDict({
            str(i): nn.Conv2d(cin, cout, k, stride=s, padding=p)
            for i, (cin, cout, k, s, p) in zip(_ALEX_INDICES, _ALEX_CONVS)
        })
        for i, (_, cout, *_rest) in enumerate(_ALEX_CONVS):
            head = nn.Sequential(nn.Identity(), nn.Conv2d(cout, 1, 1, bias=False))
            self.add_module(f"lin{i}", nn.ModuleDict({"model": head}))
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs LPIPS compares, for ``x`` ``[B, 3, H, W]`` already scaled."""
        taps = []
        for i, index in enumerate(_ALEX_INDICES):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(self.features[str(index)](x))
            taps.append(x)
        return taps

    def forward(self, pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Inputs in [0, 1] (``[H, W, 3]`` or ``[B, 3, H, W]``); returns a scalar or ``[B]``."""
        _check_pair(pred, target)
        x, single = _as_batch(pred.float())
        y, _ = _as_batch(target.float())
        x = (x * 2 - 1 - self.shift) / self.scale
        y = (y * 2 - 1 - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device)
        for i, (fx, fy) in enumerate(zip(self._taps(x), self._taps(y))):
            fx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            fy = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            head = getattr(self, f"lin{i}")["model"]
            total = total + head((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return _reduce(total, single, reduction)


def _normalise_lpips_keys(state: dict) -> dict:
    """Accept the lpips package layout (``net.sliceK.N.*``) and torchvision's (``features.N.*``)."""
    result = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "net" and len(parts) >= 3 and parts[1].startswith("slice"):
            key = ".".join(["features"] + parts[2:])
        if key.startswith(("features.", "lin")):
            result[key] = value
    return result


def lpips_availability(weights: str | Path | Sequence[str | Path] | None) -> tuple[bool, str]:
    """``(True, "")`` when every given weights file exists, else ``(False, reason)``."""
    if not weights:
        return False, "unavailable: no LPIPS weights file given (pass one to enable LPIPS)"
    paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        return False, f"unavailable: LPIPS weights file not found: {missing[0]}"
    return True, ""


def load_lpips(weights: str | Path | Sequence[str | Path], device: str | torch.device = "cpu") -> LPIPS:
    """Build :class:`LPIPS` from one combined weights file, or a backbone file plus a heads file.

    Raises :class:`FaceNerfError` if a file is missing or unreadable or weights are missing.
    """
    ok, reason = lpips_availability(weights)
    if not ok:
        raise FaceNerfError(f"LPIPS {reason}; check the path")
    paths = [weights] if isinstance(weights, (str, Path)) else list(weights)
    state = {}
    for path in paths:
        loaded = load_weights_file(path, "LPIPS weights", fix="pass a plain state-dict file")
        if not isinstance(loaded, dict):
            raise FaceNerfError(f"LPIPS weights {path} is not a state dict; pass a plain state-dict file")
        state.update(_normalise_lpips_keys(loaded))
    model = LPIPS()
    missing = [key for key in model.state_dict() if key not in state]
    if missing:
        raise FaceNerfError(f"LPIPS weights lack {', '.join(missing[:3])}; pass the AlexNet backbone "
                            "and the LPIPS linear heads")
    model.load_state_dict(state)
    return model.requires_grad_(False).to(device).eval()


def image_metrics(pred: torch.Tensor, target: torch.Tensor, lpips_model: LPIPS | None = None) -> dict:
    """``{"psnr", "ssim", "lpips"}`` as floats for one image or the mean over a batch (``lpips`` None if no model)."""
    with torch.no_grad():
        result = {"psnr": float(psnr(pred, target)), "ssim": float(ssim(pred, target))}
        result["lpips"] = float(lpips_model(pred, target)) if lpips_model is not None else None
    return result
