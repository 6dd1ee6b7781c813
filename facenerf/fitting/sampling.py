"""Where the fit looks: the resolution pyramid and the rays of each step.

A fit works coarse-to-fine (reference §6): level ``k`` is the target resized by
``scales[k]`` (area average), its foreground mask resized (nearest) and its landmarks mapped
to the smaller grid. The level's intrinsics (:func:`level_intrinsics`) scale the focal length
and move the principal point so that the ray of a small pixel passes through the centre of
the block of full-size pixels it averages (the original scaled the principal point alone,
which shifts every coarse level by ``(1/scale - 1) / 2`` full-size pixels).

Each step draws ``n_rays`` distinct pixels of the current level (:func:`sample_fit_pixels`):

1. ``lm_share`` of them scattered around the 68 landmarks (isotropic Gaussian, ``lm_sigma`` x
   image height; training's sampler), rounded to the nearest pixel and clipped to the image
   (never an index outside it, reference §11.3/§11.20), duplicates removed;
2. the rest drawn without replacement from the *sampling region*: the foreground mask grown
   by ``band`` pixels, so the silhouette edge and a thin background ring are constrained too.

Unlike the original, which kept only landmark samples on non-black pixels, the region comes
from the mask (the preprocessing's label map or the render's alpha), not from a test for
exact black, and the samples are distinct pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.data.ray_batches import LandmarkSampling, landmark_pixels


@dataclass
class FitLevel:
    """One resolution level of the target."""

    scale: float  # resize factor w.r.t. the full target
    image: Tensor  # [h, w, 3] float in [0, 1]
    mask: Tensor  # [h, w] bool, foreground
    region: Tensor  # [h, w] bool, where uniform rays are drawn (mask grown by the band)
    landmarks_xy: Tensor | None  # [68, 2] (x, y) pixels at this level, or None
    K: Intrinsics  # intrinsics at this level


def resize_image_tensor(image: Tensor, height: int, width: int) -> Tensor:
    """``[H, W, C]`` float -> ``[height, width, C]`` (area average when shrinking, bilinear else)."""
    x = image.permute(2, 0, 1)[None]
    mode = "area" if height <= image.shape[0] and width <= image.shape[1] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(height, width), mode=mode, **kwargs)[0].permute(1, 2, 0).contiguous()


def grow_mask(mask: Tensor, pixels: int) -> Tensor:
    """Binary dilation of ``mask [H, W]`` by a square of radius ``pixels`` (0 = unchanged)."""
    if pixels <= 0:
        return mask.clone()
    x = mask.float()[None, None]
    return F.max_pool2d(x, kernel_size=2 * pixels + 1, stride=1, padding=pixels)[0, 0] > 0.5


def level_intrinsics(K: Intrinsics, scale: float) -> Intrinsics:
    """Intrinsics of the image resized by ``scale`` (pixel ``j`` <-> full-size ``(j + 0.5) / scale - 0.5``)."""
    if scale == 1.0:
        return K
    small = K.scaled(scale)
    return Intrinsics(small.width, small.height, small.fx, small.fy,
                      (K.cx + 0.5) * small.width / K.width - 0.5, (K.cy + 0.5) * small.height / K.height - 0.5)


def to_level_pixels(xy: Tensor, K: Intrinsics, K_level: Intrinsics) -> Tensor:
    """Full-size pixel coordinates ``[N, 2]`` -> the level's pixel grid (same rule as :func:`level_intrinsics`)."""
    factor = xy.new_tensor([K_level.width / K.width, K_level.height / K.height])
    return (xy + 0.5) * factor - 0.5


def build_levels(image: Tensor, mask: Tensor, landmarks_xy: Tensor | None, K: Intrinsics,
                 scales: tuple[float, ...], band_frac: float = 0.03) -> list[FitLevel]:
    """The pyramid of the target, one :class:`FitLevel` per entry of ``scales``.

    Args:
        image: ``[H, W, 3]`` target; mask: ``[H, W]`` bool foreground; landmarks_xy: ``[68, 2]``.
        K: intrinsics of the full-size target.
        band_frac: width of the background ring around the mask, as a fraction of the height.
    """
    levels = []
    for scale in scales:
        K_s = level_intrinsics(K, scale)
        img = image if scale == 1.0 else resize_image_tensor(image, K_s.height, K_s.width)
        msk = mask if scale == 1.0 else F.interpolate(mask.float()[None, None], size=(K_s.height, K_s.width),
                                                      mode="nearest")[0, 0] > 0.5
        lm = None if landmarks_xy is None else to_level_pixels(landmarks_xy.float(), K, K_s)
        band = int(round(band_frac * K_s.height))
        levels.append(FitLevel(scale, img, msk, grow_mask(msk, band), lm, K_s))
    return levels


def sample_fit_pixels(level: FitLevel, n_rays: int, landmarks: LandmarkSampling,
                      generator: torch.Generator | None = None) -> Tensor:
    """``[N, 2]`` int64 distinct pixels (x, y) of one step, ``N = min(n_rays, available)``.

    See the module docstring for the two parts; landmark pixels come first. The landmark part is
    training's sampler (:func:`facenerf.data.ray_batches.landmark_pixels`) with repeats removed.
    """
    height, width = level.image.shape[:2]
    taken = torch.zeros(0, dtype=torch.long)
    if level.landmarks_xy is not None and landmarks.lm_share > 0:
        xy = landmark_pixels(level.landmarks_xy, landmarks.count(n_rays), landmarks.lm_sigma * height, height, width,
                             generator)  # [n, 2]
        taken = torch.unique(xy[:, 1] * width + xy[:, 0])
    free = level.region.reshape(-1).clone()
    free[taken] = False
    pool = torch.nonzero(free).squeeze(-1)  # [P] flat indices still available
    n_rest = min(n_rays - taken.shape[0], pool.shape[0])
    rest = pool[torch.randperm(pool.shape[0], generator=generator)[:n_rest]]
    flat = torch.cat([taken, rest])
    return torch.stack([flat % width, flat // width], dim=-1)


def mask_from_labels(label_rgb: np.ndarray) -> np.ndarray:
    """Foreground of a colour-coded label map (``mask/<name>.png`` of the wild preprocessing).

    Face (red), hair (blue) and neck (cyan) are foreground; background (black) and clothing
    (green) are not. ``label_rgb`` is ``[H, W, 3]`` float in [0, 1]; returns ``[H, W]`` bool.
    """
    r, g, b = (label_rgb[..., i] > 0.5 for i in range(3))
    background = ~r & ~g & ~b
    cloth = ~r & g & ~b
    return ~(background | cloth)


def mask_from_image(image: np.ndarray, threshold: float = 2.0 / 255.0) -> np.ndarray:
    """Foreground of an image on a black background: any channel above ``threshold`` -> ``[H, W]`` bool.

    Isolated specks (single pixels with no foreground neighbour) are dropped.
    """
    fg = (image.max(axis=-1) > threshold)
    t = torch.from_numpy(fg.astype(np.float32))[None, None]
    neighbours = F.conv2d(t, torch.ones(1, 1, 3, 3), padding=1)[0, 0].numpy() - fg
    return fg & (neighbours > 0)
