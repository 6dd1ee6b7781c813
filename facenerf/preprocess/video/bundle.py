"""Bundle adjustment of the rigid landmark template, the focal length and the head poses of a clip.

PnP against a fixed template finds the pose that best explains each frame *given* the
template's depth structure and the focal length; when the speaker's face is deeper or flatter
than the template, the focal-length search compensates (a wider camera exaggerates depth) and
every pose inherits the error. Bundle adjustment instead lets the template's points move in 3D,
and jointly refines them, the one focal length and every sampled frame's pose (``rvec``,
``tvec``) to minimise the reprojection error of the landmarks over many frames at once: the
head's rotations across the clip reveal the depth structure that a single view cannot.

The problem is solved by :func:`scipy.optimize.least_squares` with a robust loss and a sparse
Jacobian pattern (each frame's residuals depend on its own pose, the template and the focal
length only). A weak prior keeps the template near a reference (the anthropometric mean),
which also pins the similarity (position, orientation, size) that reprojection alone leaves
free; the caller re-anchors the result to the reference frame
(:func:`facenerf.preprocess.video.expressions.anchor`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class BundleResult:
    """A refined template, focal length and the poses of the frames used."""

    template: np.ndarray     # [L, 3] the refined points (head frame, scene units)
    focal: float             # pixels
    rvecs: np.ndarray        # [F, 3] OpenCV head -> camera rotation vectors of the frames used
    tvecs: np.ndarray        # [F, 3] translations (scene units)
    rmse: float              # reprojection error (pixels) after the refinement


def rotate(points: np.ndarray, rvecs: np.ndarray) -> np.ndarray:
    """``points [L, 3]`` rotated by each of ``rvecs [F, 3]`` (Rodrigues) -> ``[F, L, 3]``."""
    theta = np.linalg.norm(rvecs, axis=1, keepdims=True)                 # [F, 1]
    axis = rvecs / np.maximum(theta, 1e-12)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]              # [F, 1, 1]
    k = axis[:, None, :]                                                   # [F, 1, 3]
    p = points[None]
    cross = np.cross(np.broadcast_to(k, (len(rvecs), len(points), 3)), p)
    dot = (p * k).sum(-1, keepdims=True)
    return p * cos + cross * sin + k * dot * (1.0 - cos)


def project_many(points: np.ndarray, rvecs: np.ndarray, tvecs: np.ndarray, focal: float,
                 centre: np.ndarray) -> np.ndarray:
    """``points [L, 3]`` seen by ``F`` cameras -> pixels ``[F, L, 2]`` (pinhole, square pixels)."""
    cam = rotate(points, rvecs) + tvecs[:, None, :]
    return cam[..., :2] / cam[..., 2:] * focal + centre


def _sparsity(n_frames: int, n_points: int, fixed_focal: bool):
    from scipy.sparse import lil_matrix

    n_global = (0 if fixed_focal else 1) + 3 * n_points
    rows = 2 * n_points * n_frames + 3 * n_points + 1
    pattern = lil_matrix((rows, n_global + 6 * n_frames), dtype=int)
    for i in range(n_frames):
        block = slice(2 * n_points * i, 2 * n_points * (i + 1))
        pattern[block, :n_global] = 1
        pattern[block, n_global + 6 * i: n_global + 6 * (i + 1)] = 1
    first = 0 if fixed_focal else 1
    for j in range(3 * n_points):                                   # the prior: one point coordinate each
        pattern[2 * n_points * n_frames + j, first + j] = 1
    pattern[-1, first + 2: n_global: 3] = 1                        # the depth relief: every point's depth
    return pattern


def adjust(observed: np.ndarray, template: np.ndarray, reference: np.ndarray, rvecs: np.ndarray,
           tvecs: np.ndarray, focal: float, width: int, height: int, fixed_focal: bool = False,
           prior: float = 0.1, noise: float = 1.0, max_nfev: int = 100, relief: float = 0.02) -> BundleResult:
    """Refine ``template [L, 3]``, ``focal`` and the poses of ``F`` frames from ``observed [F, L, 2]``.

    ``rvecs``, ``tvecs`` ``[F, 3]`` start the poses (PnP against ``template``). ``prior`` is the
    standard deviation (scene units) of the template's points around ``reference [L, 3]``,
    ``noise`` the landmarks' (pixels), which is also the scale of the robust (soft L1) loss.
    With ``fixed_focal`` the focal length is kept as given.
    """
    from scipy.optimize import least_squares

    n_frames, n_points = observed.shape[:2]
    centre = np.array([width / 2.0, height / 2.0])
    reference_relief = np.std(reference[:, 2])
    n_focal = 0 if fixed_focal else 1

    def unpack(x):
        f = focal if fixed_focal else float(np.exp(x[0]))
        points = x[n_focal: n_focal + 3 * n_points].reshape(n_points, 3)
        poses = x[n_focal + 3 * n_points:].reshape(n_frames, 6)
        return f, points, poses[:, :3], poses[:, 3:]

    def residuals(x):
        f, points, r, t = unpack(x)
        image = (project_many(points, r, t, f, centre) - observed).reshape(-1) / noise
        depth = np.std(points[:, 2]) / reference_relief - 1.0
        return np.concatenate([image, (points - reference).reshape(-1) / prior, [depth / relief]])

    start = np.concatenate([[np.log(focal)] if not fixed_focal else [], template.reshape(-1),
                            np.concatenate([rvecs, tvecs], axis=1).reshape(-1)])
    solution = least_squares(residuals, start, jac_sparsity=_sparsity(n_frames, n_points, fixed_focal),
                             loss="soft_l1", f_scale=1.0, x_scale="jac", method="trf", max_nfev=max_nfev)
    f, points, r, t = unpack(solution.x)
    error = project_many(points, r, t, f, centre) - observed
    return BundleResult(points, f, r, t, float(np.sqrt(np.mean(np.sum(error ** 2, axis=-1)))))
