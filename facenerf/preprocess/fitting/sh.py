"""Second-order spherical-harmonics (SH) lighting of a Lambertian surface.

Nine coefficients in the reference's (Deep Portrait Relighting's) basis order::

    1, Y, Z, X, YX, YZ, 3Z^2-1, XZ, X^2-Y^2

Each basis function is the real orthonormal SH ``Y_lm`` multiplied by the Lambertian
cosine-lobe factor of its band (pi, 2*pi/3, pi/4 for bands 0, 1, 2), so that
``shading(n) = sh_basis(n) @ coeffs`` is the irradiance a unit-albedo surface with normal ``n``
receives.

Frame. The coefficients live in the reference's SH frame, tied to the image: ``x`` points to
the image right, ``y`` away from the viewer (into the image) and ``z`` up. Our camera normals
use the OpenGL camera frame (``X`` right, ``Y`` up, ``Z`` toward the viewer), so
``(x, y, z)_sh = (X, -Z, Y)_cam``; :func:`camera_to_sh_frame` does the conversion. In this frame
the reference's target lighting :data:`FCSP_LIGHT` is a soft frontal light: a normal facing the
camera receives 0.97, normals facing the image right/left 0.74/0.90, up/down 0.72/0.68.
"""

from __future__ import annotations

import math

import numpy as np

SH_ORDER = ("1", "Y", "Z", "X", "YX", "YZ", "3Z^2-1", "XZ", "X^2-Y^2")

# Target lighting of the reference pipeline (``fcspLight.npy``, reference section 7), SH frame above.
FCSP_LIGHT = np.array(
    [0.851587, -0.219817, 0.022953, -0.077285, -0.052715, -0.012940, -0.111137, 0.001326, 0.092522],
    dtype=np.float64,
)

_BAND = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)  # Lambertian factor per band
_C0 = 0.5 / math.sqrt(math.pi)          # Y_00
_C1 = math.sqrt(3.0) / (2.0 * math.sqrt(math.pi))   # Y_1m / coordinate
_C2 = math.sqrt(15.0) / (2.0 * math.sqrt(math.pi))  # xy, yz, xz terms
_C20 = math.sqrt(5.0) / (4.0 * math.sqrt(math.pi))  # 3z^2 - 1 term
_C22 = math.sqrt(15.0) / (4.0 * math.sqrt(math.pi))  # x^2 - y^2 term


def camera_to_sh_frame(normals_cam: np.ndarray) -> np.ndarray:
    """OpenGL camera-frame normals ``[..., 3]`` (X right, Y up, Z to viewer) -> SH frame ``[..., 3]``."""
    normals_cam = np.asarray(normals_cam, dtype=np.float64)
    return np.stack([normals_cam[..., 0], -normals_cam[..., 2], normals_cam[..., 1]], axis=-1)


def sh_basis(normals_sh: np.ndarray) -> np.ndarray:
    """Irradiance basis for unit normals ``[N, 3]`` in the SH frame -> ``[N, 9]`` (order :data:`SH_ORDER`)."""
    n = np.asarray(normals_sh, dtype=np.float64).reshape(-1, 3)
    x, y, z = n[:, 0], n[:, 1], n[:, 2]
    basis = np.empty((n.shape[0], 9), dtype=np.float64)
    basis[:, 0] = _C0 * _BAND[0]
    basis[:, 1] = _C1 * y * _BAND[1]
    basis[:, 2] = _C1 * z * _BAND[1]
    basis[:, 3] = _C1 * x * _BAND[1]
    basis[:, 4] = _C2 * y * x * _BAND[2]
    basis[:, 5] = _C2 * y * z * _BAND[2]
    basis[:, 6] = _C20 * (3.0 * z * z - 1.0) * _BAND[2]
    basis[:, 7] = _C2 * x * z * _BAND[2]
    basis[:, 8] = _C22 * (x * x - y * y) * _BAND[2]
    return basis


def shading(normals_sh: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """Irradiance ``[...]`` for normals ``[..., 3]`` (SH frame) under lighting ``coeffs`` ``[9]``."""
    normals_sh = np.asarray(normals_sh, dtype=np.float64)
    flat = sh_basis(normals_sh.reshape(-1, 3)) @ np.asarray(coeffs, dtype=np.float64).reshape(9)
    return flat.reshape(normals_sh.shape[:-1])


def fit_sh(intensity: np.ndarray, normals_sh: np.ndarray, prior: np.ndarray | None = None,
           strength: float = 1e-3, iterations: int = 4, huber: float = 1.5) -> np.ndarray:
    """Least-squares SH lighting ``[9]`` such that ``intensity ~= sh_basis(normals) @ coeffs``.

    Args:
        intensity: ``[N]`` observed linear intensity (albedo is absorbed into the coefficients,
            i.e. the result is ``albedo * lighting`` for a constant albedo).
        normals_sh: ``[N, 3]`` unit normals in the SH frame.
        prior: ``[9]`` lighting whose *shape* is preferred where the data cannot decide (only the
            part of ``coeffs`` orthogonal to ``prior`` is penalised, so the overall scale is
            free). Without a prior the band-1 and band-2 terms are shrunk towards zero.
            Over a face seen from the front the constant, depth (``Y``), ``3Z^2-1`` and
            ``X^2-Y^2`` terms are nearly indistinguishable; the prior settles that trade-off.
        strength: penalty weight relative to the data term, with every basis function scaled to
            unit RMS over the samples (so one strength means the same for every term).
        iterations: reweighting rounds (Huber weights) that down-weight outliers such as
            eyebrows, cast shadows and specular highlights; 1 = plain least squares.
        huber: Huber threshold in units of the residuals' median absolute deviation.

    Raises ``ValueError`` with fewer than 9 samples.
    """
    b = np.asarray(intensity, dtype=np.float64).reshape(-1)
    a = sh_basis(normals_sh)
    if a.shape[0] < 9:
        raise ValueError(f"fit_sh needs at least 9 samples, got {a.shape[0]}")
    col = np.sqrt(np.mean(a * a, axis=0)) + 1e-12  # standardise columns: one strength for all terms
    a_std = a / col
    if prior is None:
        proj = np.diag([0.0] + [1.0] * 8)
    else:
        p = (np.asarray(prior, dtype=np.float64).reshape(9) * col).reshape(9, 1)
        proj = np.eye(9) - (p @ p.T) / float(np.sum(p * p))
    weights = np.ones_like(b)
    coeffs_std = np.zeros(9)
    for _ in range(max(1, iterations)):
        aw = a_std * weights[:, None]
        penalty = strength * float(np.sum(weights)) * (proj.T @ proj)
        coeffs_std = np.linalg.solve(aw.T @ a_std + penalty, aw.T @ b)
        residual = b - a_std @ coeffs_std
        scale = 1.4826 * float(np.median(np.abs(residual))) + 1e-12
        r = np.abs(residual) / (huber * scale)
        weights = np.where(r <= 1.0, 1.0, 1.0 / np.maximum(r, 1e-12))
    return coeffs_std / col


def sh_relative_error(estimate: np.ndarray, truth: np.ndarray, scale_invariant: bool = False) -> float:
    """``|estimate - truth| / |truth|``; with ``scale_invariant`` the estimate is first rescaled
    by the least-squares factor (albedo and exposure make the overall scale unobservable)."""
    est = np.asarray(estimate, dtype=np.float64).reshape(9)
    ref = np.asarray(truth, dtype=np.float64).reshape(9)
    if scale_invariant:
        est = est * float(est @ ref) / max(float(est @ est), 1e-300)
    return float(np.linalg.norm(est - ref) / max(np.linalg.norm(ref), 1e-300))


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear radiance (same shape, float32)."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(image: np.ndarray) -> np.ndarray:
    """Linear radiance -> sRGB-encoded values in [0, 1] (clipped, float32)."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.where(image <= 0.0031308, image * 12.92, 1.055 * image ** (1.0 / 2.4) - 0.055).astype(np.float32)
