"""Weights-free relighting: estimate the photo's SH lighting from the posed 3D template, re-shade.

Our method (it replaces the reference's learned relighting network, whose weights are not
available):

1. The template head mesh is rasterised with the estimated camera pose, giving a surface
   normal under every face pixel (:mod:`.raster`); the normal map is low-passed because only
   the template's broad shape matches the person.
2. The photo is linearised (sRGB -> linear) and its luminance on skin pixels is modelled as
   ``albedo * irradiance(normal)`` with second-order SH irradiance (:mod:`.sh`) and a constant
   skin albedo; a robust least-squares fit gives 9 coefficients (albedo absorbed).
3. Every pixel is re-shaded: ``out = image * shading_target / shading_estimated`` in linear
   light, where the target is the reference's fixed lighting :data:`~.sh.FCSP_LIGHT`. The ratio
   is normalised so the mean skin brightness is unchanged, clamped to
   ``[1 / max_ratio, max_ratio]`` and, outside the template's silhouette (hair, neck), filled
   in smoothly from the nearby face values.

The result keeps the person's albedo and colour and only replaces the low-frequency shading,
so strong side light becomes the soft frontal light of the training renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facenerf.preprocess.fitting import sh

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # linear-light luminance weights
MIN_FIT_PIXELS = 50


@dataclass(frozen=True)
class RelightSettings:
    target: tuple[float, ...] = tuple(float(v) for v in sh.FCSP_LIGHT)  # 9 SH coefficients
    prior_strength: float = 3e-3  # pull of the fit towards the target's shape where the data is ambiguous
    max_ratio: float = 2.5       # clamp on the per-pixel shading ratio (and its inverse)
    fill_sigma: float = 0.06     # smoothing scale (fraction of the image side) for the ratio fill-in
    normal_sigma: float = 0.02   # low-pass of the template normals (fraction of the image side); 0 = off


@dataclass
class RelightResult:
    image: np.ndarray                  # [H, W, 3] float32 relit sRGB image in [0, 1]
    sh_estimated: np.ndarray           # [9] estimated lighting (times the mean skin albedo)
    ratio: np.ndarray                  # [H, W] float32 shading ratio that was applied
    fit_pixels: int                    # number of skin pixels used for the fit
    notes: list[str] = field(default_factory=list)


def estimate_lighting(image: np.ndarray, normals_cam: np.ndarray, sample: np.ndarray,
                      prior: np.ndarray | None = None, strength: float = 1e-3) -> np.ndarray:
    """SH lighting ``[9]`` of an sRGB image from camera-frame normals on the ``sample`` pixels.

    Args:
        image: ``[H, W, 3]`` sRGB float in [0, 1].
        normals_cam: ``[H, W, 3]`` unit normals in the OpenGL camera frame.
        sample: ``[H, W]`` bool pixels to fit (skin with a valid normal).
        prior, strength: see :func:`facenerf.preprocess.fitting.sh.fit_sh`.
    """
    lum = sh.srgb_to_linear(image) @ LUMA
    return sh.fit_sh(lum[sample], sh.camera_to_sh_frame(normals_cam[sample]), prior=prior, strength=strength)


def smooth_normals(normals_cam: np.ndarray, covered: np.ndarray, sigma: float) -> np.ndarray:
    """Low-pass the normal map inside ``covered`` (normalised Gaussian convolution, renormalised).

    The template's fine geometry (nose ridge, eye sockets, lips) does not match the person in
    the photo; only its broad shape does, so the re-shading uses smoothed normals.
    """
    import cv2

    if sigma <= 0:
        return normals_cam
    weight = covered.astype(np.float32)
    blurred = cv2.GaussianBlur(normals_cam.astype(np.float32) * weight[..., None], (0, 0), sigma)
    blurred /= np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-6)[..., None]
    length = np.linalg.norm(blurred, axis=-1, keepdims=True)
    return np.where(covered[..., None], blurred / np.maximum(length, 1e-6), 0.0).astype(np.float32)


def _fill_outside(ratio: np.ndarray, known: np.ndarray, sigma: float) -> np.ndarray:
    """Extend ``ratio`` from ``known`` pixels to the rest by normalised Gaussian smoothing."""
    import cv2

    weight = known.astype(np.float32)
    num = cv2.GaussianBlur(ratio.astype(np.float32) * weight, (0, 0), sigma)
    den = cv2.GaussianBlur(weight, (0, 0), sigma)
    filled = np.where(den > 1e-4, num / np.maximum(den, 1e-4), 1.0)
    return np.where(known, ratio, filled).astype(np.float32)


def shading_ratio(normals_cam: np.ndarray, covered: np.ndarray, coeffs: np.ndarray, sample: np.ndarray,
                  settings: RelightSettings) -> np.ndarray:
    """Per-pixel ``shading_target / shading_estimated`` ``[H, W]`` (normalised, clamped, filled)."""
    import cv2

    normals_sh = sh.camera_to_sh_frame(normals_cam)
    est = sh.shading(normals_sh, coeffs)
    tgt = sh.shading(normals_sh, np.asarray(settings.target, dtype=np.float64))
    floor = 0.1 * float(np.percentile(est[sample], 95))
    ratio = np.where(covered, np.maximum(tgt, 1e-3) / np.maximum(est, max(floor, 1e-6)), 1.0)
    ratio = ratio / float(np.mean(ratio[sample]))
    ratio = np.clip(ratio, 1.0 / settings.max_ratio, settings.max_ratio)
    sigma = max(1.0, settings.fill_sigma * max(ratio.shape))
    ratio = _fill_outside(ratio, covered, sigma)
    return cv2.GaussianBlur(ratio, (0, 0), max(1.0, ratio.shape[0] / 256.0))


def relight_image(image: np.ndarray, normals_cam: np.ndarray, covered: np.ndarray, skin: np.ndarray,
                  settings: RelightSettings = RelightSettings()) -> RelightResult:
    """Re-shade ``image`` from its estimated lighting to ``settings.target`` (see module docs).

    Args:
        image: ``[H, W, 3]`` sRGB float in [0, 1] (the aligned photo).
        normals_cam: ``[H, W, 3]`` template normals (OpenGL camera frame); covered: ``[H, W]`` bool.
        skin: ``[H, W]`` bool skin pixels usable for the lighting fit.

    With too few usable skin pixels the image is returned unchanged with a note.
    """
    normals_cam = smooth_normals(normals_cam, covered, settings.normal_sigma * max(image.shape[:2]))
    lum = sh.srgb_to_linear(image) @ LUMA
    sample = skin & covered & (lum > 0.005) & (lum < 0.97) & (normals_cam[..., 2] > 0.05)
    count = int(sample.sum())
    if count < MIN_FIT_PIXELS:
        note = f"relighting skipped: only {count} skin pixels under the template (need {MIN_FIT_PIXELS})"
        return RelightResult(image.astype(np.float32), np.full(9, np.nan), np.ones(image.shape[:2], np.float32),
                             count, [note])
    target = np.asarray(settings.target, dtype=np.float64)
    coeffs = estimate_lighting(image, normals_cam, sample, prior=target, strength=settings.prior_strength)
    ratio = shading_ratio(normals_cam, covered, coeffs, sample, settings)
    relit = sh.linear_to_srgb(sh.srgb_to_linear(image) * ratio[..., None])
    return RelightResult(relit, coeffs, ratio, count)
