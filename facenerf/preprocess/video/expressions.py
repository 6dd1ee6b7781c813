"""Expression coefficients from landmarks with a linear blendshape basis (no private tracker).

The basis is the procedural head's (:func:`facenerf.data.synthetic.blendshapes.landmark_basis`):
3D landmarks ``L(c) = neutral + sum_k c_k deltas[k]`` in the head frame. For one frame with a
known pose, the coefficients minimise the weighted image distance between the projected
``L(c)`` and the detected landmarks (residuals measured in eye-distance units, so the weights
do not depend on the resolution) plus a small ridge term, under ``0 <= c <= 1``: a few
Gauss-Newton steps, each a bounded linear least-squares problem (``scipy.optimize.lsq_linear``).
The tracker fits the basis after :func:`confine`: each blendshape moves only the landmark
regions it visibly moves, so an error of the detector in one region (a closed eye's outline)
cannot be explained by a blendshape of another (a smile, through its slight squint).
:func:`personalise` adapts the neutral template to the speaker from the frames that look most
neutral, so identity differences (a wider mouth, higher brows) do not read as expressions.
"""

from __future__ import annotations

import numpy as np

# weight per landmark: the jaw outline is a silhouette (least reliable), the nose barely moves
LANDMARK_WEIGHTS = np.concatenate([np.full(17, 0.3), np.full(10, 1.0), np.full(9, 0.5), np.full(12, 1.5),
                                   np.full(12, 1.0), np.full(8, 1.2)])
# dlib's 68 points in regions: jaw outline, brows, nose, eyes, mouth
REGIONS = (np.r_[0:17], np.r_[17:27], np.r_[27:36], np.r_[36:48], np.r_[48:68])
REGION_SHARE = 0.085  # see confine()
RIDGE = 1e-2          # see fit_frame()


def _camera_points(points: np.ndarray, rvec: np.ndarray, tvec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    rot, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
    return points @ rot.T + np.asarray(tvec).reshape(3), rot


def project(points: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, kmat: np.ndarray) -> np.ndarray:
    """Head-frame points ``[L, 3]`` -> pixels ``[L, 2]`` (OpenCV pinhole, no distortion)."""
    cam, _ = _camera_points(points, rvec, tvec)
    return cam[:, :2] / cam[:, 2:] * kmat[[0, 1], [0, 1]] + kmat[:2, 2]


def _jacobian(cam: np.ndarray, rot: np.ndarray, deltas: np.ndarray, kmat: np.ndarray) -> np.ndarray:
    """``[2 L, K]`` derivative of the projected landmarks w.r.t. the coefficients."""
    d_cam = np.einsum("kla,ba->klb", deltas, rot)                  # [K, L, 3] camera-frame change
    z = cam[None, :, 2]
    dx = kmat[0, 0] * (d_cam[..., 0] * z - cam[None, :, 0] * d_cam[..., 2]) / z ** 2
    dy = kmat[1, 1] * (d_cam[..., 1] * z - cam[None, :, 1] * d_cam[..., 2]) / z ** 2
    return np.stack([dx, dy], axis=-1).reshape(len(deltas), -1).T  # [L*2, K]


def confine(deltas: np.ndarray, share: float = REGION_SHARE) -> np.ndarray:
    """``deltas [K, 68, 3]`` with each blendshape's motion kept only in the regions it really moves.

    A region (:data:`REGIONS`) is kept for blendshape ``k`` when its landmarks' mean
    displacement is at least ``share`` of that of the region ``k`` moves most. The smile's
    squint moves the eyes by 7.1% of its mouth motion; left in the basis, it lets an eye outline
    that no eye blendshape explains (dlib puts a closed eye's outline too high, more so on a
    dark, low-contrast face) be explained by a smile whose mouth motion a frown and a pucker
    cancel. On the second synthetic speaker (``--subject 4 --seed 5``) that took the smile's
    correlation with the truth from 0.99 (true landmarks) to 0.02 (dlib's). The default share
    drops every cross-region motion of 7.1% or less and keeps those of 9.6% or more (the
    funnel's jaw and brows, which tell it from the pucker): on dlib's landmarks of four
    synthetic speakers it gave a mean correlation over the coefficients of 0.50-0.73 against
    0.48-0.74 with a share of 0.25 (which also cuts those) and 0.38-0.68 without confining.
    """
    out = np.array(deltas, dtype=np.float64, copy=True)
    for k in range(len(out)):
        size = np.array([np.linalg.norm(out[k, region], axis=1).mean() for region in REGIONS])
        for region, moved in zip(REGIONS, size):
            if moved < share * size.max():
                out[k, region] = 0.0
    return out


def fit_frame(observed: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, kmat: np.ndarray,
              neutral: np.ndarray, deltas: np.ndarray, ridge: float = RIDGE, steps: int = 3,
              start: np.ndarray | None = None) -> np.ndarray:
    """Coefficients ``[K]`` in [0, 1] for one frame's landmarks ``observed [68, 2]``.

    ``ridge`` pulls every coefficient towards 0 (residuals are in eye-distance units). Nearly
    opposite blendshapes (smile and frown, stretch and pucker) can otherwise both rise to
    explain a few pixels of landmark noise. With the confined basis, 0.01 rather than 0.003
    raised the mean correlation with the truth on dlib's landmarks of four synthetic speakers
    (0.50-0.73 against 0.48-0.71); on the exact landmarks of two of them, the confined fit with
    0.01 gives 0.91-0.93 against 0.94 for the whole basis with 0.001.
    """
    from scipy.optimize import lsq_linear

    k = len(deltas)
    c = np.zeros(k) if start is None else np.clip(np.asarray(start, dtype=np.float64), 0, 1)
    scale = 1.0 / max(np.linalg.norm(observed[45] - observed[36]), 1e-6)   # eye-corner distance
    w = np.repeat(LANDMARK_WEIGHTS, 2) * scale
    for _ in range(steps):
        points = neutral + np.tensordot(c, deltas, axes=1)
        cam, rot = _camera_points(points, rvec, tvec)
        predicted = cam[:, :2] / cam[:, 2:] * kmat[[0, 1], [0, 1]] + kmat[:2, 2]
        jac = _jacobian(cam, rot, deltas, kmat)
        residual = (observed - predicted).reshape(-1)
        a = np.concatenate([jac * w[:, None], np.sqrt(ridge) * np.eye(k)])
        b = np.concatenate([(residual + jac @ c) * w, np.zeros(k)])
        c = np.clip(lsq_linear(a, b, bounds=(0.0, 1.0), method="bvls").x, 0.0, 1.0)
    return c


def personalise(landmarks: np.ndarray, rvecs: np.ndarray, tvecs: np.ndarray, kmat: np.ndarray,
                neutral: np.ndarray, coefficients: np.ndarray, keep: np.ndarray, share: float = 0.15) -> np.ndarray:
    """A neutral template ``[68, 3]`` adapted to the speaker.

    On the ``share`` of kept frames with the weakest expression (smallest coefficient sum), the
    image residual of the *neutral* template is lifted back into the head frame (at each
    landmark's depth, perpendicular to the view) and averaged; the result is added to
    ``neutral``. Depth differences cannot be seen and stay the template's.
    """
    index = np.flatnonzero(keep)
    energy = coefficients[index].sum(axis=1)
    chosen = index[np.argsort(energy)[: max(1, int(round(share * len(index))))]]
    offsets = []
    for i in chosen:
        cam, rot = _camera_points(neutral, rvecs[i], tvecs[i])
        predicted = cam[:, :2] / cam[:, 2:] * kmat[[0, 1], [0, 1]] + kmat[:2, 2]
        residual = landmarks[i] - predicted
        lifted = np.concatenate([residual * cam[:, 2:] / kmat[[0, 1], [0, 1]], np.zeros((68, 1))], axis=1)
        offsets.append(lifted @ rot)                                  # camera -> head frame
    return anchor(neutral + np.mean(offsets, axis=0), neutral)


def anchor(template: np.ndarray, reference: np.ndarray, indices: np.ndarray | None = None) -> np.ndarray:
    """``template [L, 3]`` moved by the similarity that best aligns it to ``reference`` on ``indices``.

    Keeps a personalised template in the reference's head frame: its shape may change, its
    position, orientation and size may not (they belong to the pose and the focal length).
    """
    from facenerf.preprocess.video.headpose import RIGID

    idx = RIGID if indices is None else indices
    a, b = template[idx], reference[idx]
    ca, cb = a.mean(0), b.mean(0)
    u, sig, vt = np.linalg.svd((a - ca).T @ (b - cb))
    d = np.sign(np.linalg.det(u @ vt))
    rot = (u @ np.diag([1.0, 1.0, d]) @ vt).T
    scale = (sig * [1.0, 1.0, d]).sum() / ((a - ca) ** 2).sum()
    return (template - ca) @ rot.T * scale + cb
