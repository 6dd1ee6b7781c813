"""Similarity alignment of a photo to the 68-landmark template of the training renders.

A similarity transform (uniform scale, rotation, translation; no reflection) is estimated by
least squares (Umeyama's closed form) from the detected landmarks to the template
landmarks, and the photo is resampled into a square canvas of the template's size with black
outside the photo. Transforms are ``[2, 3]`` matrices ``M`` acting on pixel coordinates
``(x, y)``: ``dst = M[:, :2] @ src + M[:, 2]``.
"""

from __future__ import annotations

import numpy as np

from facenerf.errors import FaceNerfError


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping ``src [N, 2]`` onto ``dst [N, 2]`` -> ``M [2, 3]``.

    Minimises ``sum |s R src_i + t - dst_i|^2`` over scale ``s > 0``, rotation ``R`` (det +1)
    and translation ``t``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"similarity_transform needs two equal [N>=2, 2] arrays, got {src.shape}, {dst.shape}")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = float((sc ** 2).sum()) / len(src)
    if var_s < 1e-12:
        raise ValueError("similarity_transform: source points coincide")
    cov = dc.T @ sc / len(src)  # [2, 2]
    u, sig, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d)) / var_s
    if scale <= 1e-9 * np.sqrt(float((dc ** 2).sum()) / len(dst) / var_s):
        raise ValueError("no proper similarity fits (points look mirrored or collapsed)")
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply ``M [2, 3]`` to points ``[N, 2]`` (x, y)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_transform(matrix: np.ndarray) -> np.ndarray:
    """Inverse of an invertible ``[2, 3]`` affine map."""
    lin = np.linalg.inv(matrix[:, :2])
    return np.concatenate([lin, -(lin @ matrix[:, 2])[:, None]], axis=1)


def transform_scale(matrix: np.ndarray) -> float:
    """The uniform scale factor of a similarity ``[2, 3]``."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``image [H, W, 3]`` through ``M`` into a ``size x size`` canvas.

    Returns ``(warped [size, size, 3] float32, inside [size, size] bool)`` where ``inside``
    marks canvas pixels that come from within the photo (the rest is black). When the map
    shrinks the photo by more than 2x, the photo is first reduced with area averaging so the
    result does not alias.
    """
    import cv2

    image = np.asarray(image, dtype=np.float32)
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = transform_scale(matrix)
    if scale < 0.5:
        factor = min(1.0, 2.0 * scale)
        small = (max(1, int(round(image.shape[1] * factor))), max(1, int(round(image.shape[0] * factor))))
        fx, fy = small[0] / image.shape[1], small[1] / image.shape[0]
        image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
        matrix = matrix @ np.array([[1.0 / fx, 0.0, 0.0], [0.0, 1.0 / fy, 0.0], [0.0, 0.0, 1.0]])
    flags = cv2.INTER_CUBIC if scale > 1.0 else cv2.INTER_LINEAR
    warped = cv2.warpAffine(image, matrix, (size, size), flags=flags,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0))
    ones = np.ones(image.shape[:2], dtype=np.float32)
    inside = cv2.warpAffine(ones, matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) > 0.5
    return np.clip(warped, 0.0, 1.0).astype(np.float32), inside


def align_to_template(image: np.ndarray, landmarks: np.ndarray, template_2d: np.ndarray,
                      size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Align a photo so its landmarks best match ``template_2d`` in a ``size x size`` canvas.

    Args:
        image: ``[H, W, 3]`` float photo.
        landmarks: ``[68, 2]`` (x, y) landmarks detected in ``image``.
        template_2d: ``[68, 2]`` (x, y) template landmarks in canvas pixels.

    Returns ``(aligned [size, size, 3], inside [size, size] bool, M [2, 3], landmarks in the
    canvas [68, 2])``. Raises :class:`FaceNerfError` when the landmarks are degenerate.
    """
    try:
        matrix = similarity_transform(landmarks, template_2d)
    except ValueError as err:
        raise FaceNerfError(f"face landmarks are degenerate ({err}); use a sharper, larger face") from err
    aligned, inside = warp_image(image, matrix, size)
    return aligned, inside, matrix, transform_points(landmarks, matrix)
