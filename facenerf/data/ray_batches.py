"""Pixel samplers for ray batches: uniform, centre crop ("precrop"), landmark-guided, mask-weighted,
square patches.

Every sampler returns integer pixel coordinates ``xy [n, 2]`` = (column, row) as ``int64``
inside the image (``0 <= x < width``, ``0 <= y < height``), drawn with one vectorised call from
a ``torch.Generator`` (no Python loop over samples). :func:`sample_pixels` combines them the way
MoFaNeRF trains: a share of the rays lands near projected facial landmarks (Gaussian offsets,
sigma = 2.5% of the image height), the rest is uniform over the image, or over its central crop
during the first ``precrop_iters`` steps.

Compared with the original sampler (reference §11.3): landmark pixels are rounded to the
nearest pixel (not floored), offsets are clipped to the image so no index can leave it,
landmarks that project outside the image are ignored, and (x, y) order is explicit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from facenerf.config import option
from facenerf.errors import FaceNerfError


@dataclass(frozen=True)
class LandmarkSampling:
    """How many rays go around the projected facial landmarks, and how far they spread.

    Training and fitting both draw their landmark rays with :func:`landmark_pixels` under these
    two keys (``lm_share`` 0.6 ~ the original's 612 of 1024 rays).
    """

    lm_share: float = option(0.6, "share of rays drawn around projected landmarks", aliases=("landmark_share",))
    lm_sigma: float = option(0.025, "landmark spread as a fraction of image height (0.025 = 12.8 px at 512)",
                             aliases=("landmark_sigma",))

    def __post_init__(self) -> None:
        if not 0.0 <= self.lm_share <= 1.0:
            raise FaceNerfError(f"lm_share must lie in [0, 1], got {self.lm_share}")
        if self.lm_sigma < 0:
            raise FaceNerfError(f"lm_sigma must be 0 or more, got {self.lm_sigma}")

    def count(self, n_rays: int) -> int:
        """Landmark rays among ``n_rays``."""
        return int(round(self.lm_share * n_rays))


EXPRESSION_LANDMARKS = slice(36, 68)  # eyes (36-47) and mouth (48-67) in the iBUG order


@dataclass(frozen=True)
class PixelSamplerConfig:
    """How one training frame's ``n_rays`` pixels are chosen.

    Attributes:
        n_rays: pixels per frame (the seed's ``N_rand``).
        landmarks: the share of landmark-guided rays and their spread.
        mask_share: fraction of ``n_rays`` drawn from the foreground mask (0 = off).
        expression_weight: how many times more landmark rays each mouth and eye landmark
            (36-67, the places expressions change) gets than the others (1 = all alike, as the
            original).
        precrop_iters: for steps below this, uniform pixels come from the central crop.
        precrop_frac: side of that crop as a fraction of the image.
    """

    n_rays: int = option(1024, "rays per step (per process)", key="N_rand")
    landmarks: LandmarkSampling = field(default_factory=LandmarkSampling)
    mask_share: float = option(0.0, "share of rays drawn from non-black pixels")
    expression_weight: float = option(1.0, "landmark rays per mouth/eye landmark relative to the others "
                                           "(1 = alike, as the original)", key="lm_expression_weight")
    precrop_iters: int = option(500, "steps that sample the central crop only")
    precrop_frac: float = option(0.5, "side of that crop as a fraction")

    def __post_init__(self) -> None:
        if self.n_rays <= 0:
            raise FaceNerfError(f"N_rand must be positive, got {self.n_rays}")
        if not 0.0 <= self.mask_share <= 1.0:
            raise FaceNerfError(f"mask_share must lie in [0, 1], got {self.mask_share}")
        if self.landmarks.lm_share + self.mask_share > 1.0:
            raise FaceNerfError("lm_share + mask_share must not exceed 1")
        if not 0.0 < self.precrop_frac <= 1.0:
            raise FaceNerfError(f"precrop_frac must lie in (0, 1], got {self.precrop_frac}")
        if self.expression_weight <= 0.0:
            raise FaceNerfError(f"lm_expression_weight must be positive, got {self.expression_weight}")

    def landmark_weights(self, n_landmarks: int) -> Tensor | None:
        """``[n_landmarks]`` weights of the 68 iBUG landmarks (None: all alike)."""
        if self.expression_weight == 1.0 or n_landmarks != 68:
            return None
        weights = torch.ones(68)
        weights[EXPRESSION_LANDMARKS] = self.expression_weight
        return weights


def precrop_region(height: int, width: int, frac: float) -> tuple[int, int, int, int]:
    """Central crop ``(x0, y0, x1, y1)`` (ends exclusive) covering ``frac`` of each side (>= 1 px)."""
    crop_w = max(1, int(round(width * frac)))
    crop_h = max(1, int(round(height * frac)))
    x0, y0 = (width - crop_w) // 2, (height - crop_h) // 2
    return x0, y0, x0 + crop_w, y0 + crop_h


def uniform_pixels(n: int, height: int, width: int, generator: torch.Generator | None = None,
                   region: tuple[int, int, int, int] | None = None) -> Tensor:
    """``n`` distinct pixels uniformly from ``region`` (default: the whole image) -> ``[n, 2]``.

    When ``n`` exceeds the region's pixel count, pixels repeat (sampling with replacement).
    """
    x0, y0, x1, y1 = region if region is not None else (0, 0, width, height)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"region {region} is empty or outside a {width}x{height} image")
    rw, count = x1 - x0, (x1 - x0) * (y1 - y0)
    if n <= count:
        flat = torch.randperm(count, generator=generator)[:n]
    else:
        flat = torch.randint(count, (n,), generator=generator)
    return torch.stack([flat % rw + x0, flat // rw + y0], dim=-1)


def _allocate(weights: Tensor, n: int) -> Tensor:
    """Indices ``[n]`` of landmarks, each repeated in proportion to ``weights [L]`` (largest remainders)."""
    share = weights / weights.sum() * n
    counts = share.floor().long()
    left = n - int(counts.sum())
    if left > 0:
        counts[torch.argsort(share - counts, descending=True)[:left]] += 1
    return torch.repeat_interleave(torch.arange(len(weights)), counts)


def landmark_pixels(landmarks_xy: Tensor, n: int, sigma_px: float, height: int, width: int,
                    generator: torch.Generator | None = None, weights: Tensor | None = None) -> Tensor:
    """``n`` pixels scattered around landmarks -> ``[n, 2]`` (possibly fewer, see below).

    Args:
        landmarks_xy: ``[L, 2]`` projected landmarks (x, y) in pixels (float).
        n: number of pixels; landmark ``i % L_in`` serves sample ``i``, so each in-image landmark
            gets ``n // L_in`` or one more; with ``weights [L]`` the in-image landmarks share the
            ``n`` samples in proportion to their weights instead.
        sigma_px: standard deviation of the isotropic Gaussian offset in pixels.
    Returns:
        ``[n, 2]`` int64 pixels rounded to the nearest integer and clipped into the image, or
        ``[0, 2]`` when no landmark lies inside the image.
    """
    lm = torch.as_tensor(landmarks_xy, dtype=torch.float32).reshape(-1, 2)
    inside = (lm[:, 0] >= 0) & (lm[:, 0] <= width - 1) & (lm[:, 1] >= 0) & (lm[:, 1] <= height - 1)
    inside &= torch.isfinite(lm).all(dim=-1)
    lm = lm[inside]
    if n <= 0 or lm.shape[0] == 0:
        return torch.zeros((0, 2), dtype=torch.long)
    if weights is None:
        centres = lm[torch.arange(n) % lm.shape[0]]  # [n, 2]
    else:
        centres = lm[_allocate(torch.as_tensor(weights, dtype=torch.float32).reshape(-1)[inside], n)]
    offsets = torch.randn((n, 2), generator=generator) * float(sigma_px)
    xy = torch.round(centres + offsets)
    xy[:, 0].clamp_(0, width - 1)
    xy[:, 1].clamp_(0, height - 1)
    return xy.long()


def weighted_pixels(weights: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` pixels drawn with probability proportional to ``weights [H, W]`` (>= 0) -> ``[n, 2]``.

    Distinct pixels while enough have positive weight, with replacement otherwise; ``[0, 2]``
    when every weight is zero.
    """
    w = torch.as_tensor(weights, dtype=torch.float32)
    height, width = w.shape
    flat_w = w.reshape(-1).clamp_min(0)
    positive = int((flat_w > 0).sum())
    if n <= 0 or positive == 0:
        return torch.zeros((0, 2), dtype=torch.long)
    flat = torch.multinomial(flat_w, n, replacement=n > positive, generator=generator)
    return torch.stack([flat % width, flat // width], dim=-1)


def sample_pixels(cfg: PixelSamplerConfig, height: int, width: int, step: int = 0,
                  landmarks_xy: Tensor | None = None, mask: Tensor | None = None,
                  generator: torch.Generator | None = None) -> Tensor:
    """Exactly ``cfg.n_rays`` pixels of one frame -> ``int64 [n_rays, 2]`` (x, y).

    Landmark rays come first (``round(lm_share * n_rays)``, none without landmarks), then
    mask rays (``round(mask_share * n_rays)``, none without a mask or foreground), then uniform
    rays fill the rest - from the central crop while ``step < precrop_iters``.
    """
    parts = []
    if landmarks_xy is not None and cfg.landmarks.lm_share > 0:
        n_lm = cfg.landmarks.count(cfg.n_rays)
        parts.append(landmark_pixels(landmarks_xy, n_lm, cfg.landmarks.lm_sigma * height, height, width, generator,
                                     cfg.landmark_weights(len(landmarks_xy))))
    if mask is not None and cfg.mask_share > 0:
        n_mask = int(round(cfg.mask_share * cfg.n_rays))
        parts.append(weighted_pixels(mask, n_mask, generator))
    taken = sum(int(p.shape[0]) for p in parts)
    region = precrop_region(height, width, cfg.precrop_frac) if step < cfg.precrop_iters else None
    parts.append(uniform_pixels(cfg.n_rays - taken, height, width, generator, region))
    return torch.cat(parts, dim=0)


def patch_pixels(n_patches: int, patch_size: int, height: int, width: int,
                 generator: torch.Generator | None = None, region: tuple[int, int, int, int] | None = None,
                 stride: int = 1) -> Tensor:
    """``n_patches`` square patches of ``patch_size``^2 pixels -> ``int64 [n_patches * P * P, 2]`` (x, y).

    Pixels are row-major inside a patch and patches follow one another, so
    ``xy.view(n_patches, P, P, 2)`` (and the gathered colours ``.view(n_patches, P, P, C)``)
    are images for a patch loss. Neighbouring patch pixels are ``stride`` pixels apart.
    Each patch's top-left corner is uniform over the positions that keep the whole patch
    inside ``region`` = ``(x0, y0, x1, y1)`` (ends exclusive, clipped to the image), e.g. a
    mouth or face rectangle; when the patch does not fit the region it is placed anywhere in
    the image instead (NeRFBlendShape's fallback). The patch must fit the image.
    """
    span = (patch_size - 1) * stride + 1  # pixels covered along each side
    if patch_size < 1 or stride < 1 or span > width or span > height:
        raise ValueError(f"a {patch_size}x{patch_size} patch with stride {stride} does not fit a {width}x{height} image")
    x0, y0, x1, y1 = (0, 0, width, height) if region is None else region
    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))
    if x1 - x0 < span or y1 - y0 < span:
        x0, y0, x1, y1 = 0, 0, width, height
    cx = torch.randint(x0, x1 - span + 1, (n_patches,), generator=generator)  # [n] top-left corners
    cy = torch.randint(y0, y1 - span + 1, (n_patches,), generator=generator)
    offsets = torch.arange(patch_size) * stride  # [P]
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")  # [P, P], row-major
    xy = torch.stack([cx[:, None, None] + ox, cy[:, None, None] + oy], dim=-1)  # [n, P, P, 2]
    return xy.reshape(-1, 2)


def gather_pixels(image: Tensor, xy: Tensor) -> Tensor:
    """Colours of ``image [H, W, C]`` at ``xy [n, 2]`` (x, y) -> ``[n, C]``."""
    height, width = image.shape[:2]
    flat = xy[:, 1].long() * width + xy[:, 0].long()
    return image.reshape(height * width, -1)[flat]
