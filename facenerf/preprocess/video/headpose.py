"""Head pose of every frame by PnP against a 3D landmark template, with one focal length per clip.

The template is the procedural head's 68 landmarks in its head frame (scene units, 1 = 50 mm;
see :mod:`facenerf.data.synthetic.blendshapes`), optionally personalised and deformed by the
frame's expression. The camera is a pinhole with square pixels and the principal point at the
image centre; its focal length is unknown for a user's video, so it is chosen once for the
whole clip as the one that best explains the landmarks of a sample of frames (a search over a
log-spaced grid refined by a parabola). Poses are returned in OpenCV form (``rvec``, ``tvec``:
head frame -> camera) and converted to the dataset's camera-to-head OpenGL matrices by
:func:`camera_to_head`.
"""

from __future__ import annotations

import numpy as np

from facenerf.errors import FaceNerfError

# landmarks that expressions move least and that mark fixed points of the head: nose bridge and
# base, eye corners. The jaw outline is left out: a landmark detector puts it on the face's
# silhouette, which slides over the head as it turns, so no template vertex follows it.
RIGID = np.r_[27:36, 36, 39, 42, 45]


def camera_matrix(focal: float, width: int, height: int) -> np.ndarray:
    """``[3, 3]`` pinhole matrix, principal point at the image centre (no half-pixel offset)."""
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def _frontal_guess(points_3d: np.ndarray, points_2d: np.ndarray, kmat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A camera in front of the face (OpenCV: head +Y up -> image down) at the distance the landmarks' spread implies."""
    import cv2

    spread_3d = np.ptp(points_3d[:, :2], axis=0).mean()
    spread_2d = np.ptp(points_2d, axis=0).mean()
    depth = kmat[0, 0] * spread_3d / max(spread_2d, 1e-6)
    centre = (points_2d.mean(0) - kmat[:2, 2]) * depth / kmat[0, 0]
    rvec, _ = cv2.Rodrigues(np.diag([1.0, -1.0, -1.0]))
    return rvec.reshape(3), np.array([centre[0], centre[1], depth])


def solve_pose(points_2d: np.ndarray, points_3d: np.ndarray, kmat: np.ndarray,
               guess: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """``(rvec [3], tvec [3], rmse px)`` of the head frame -> OpenCV camera transform."""
    import cv2

    obj = np.ascontiguousarray(points_3d, dtype=np.float64)
    img = np.ascontiguousarray(points_2d, dtype=np.float64)
    rvec, tvec = guess if guess is not None else _frontal_guess(obj, img, kmat)
    rvec, tvec = rvec.reshape(3, 1).astype(np.float64).copy(), tvec.reshape(3, 1).astype(np.float64).copy()
    ok, rvec, tvec = cv2.solvePnP(obj, img, kmat, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if ok:
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, kmat, None, rvec, tvec)
    if not ok or float(tvec[2, 0]) <= 0:
        rvec, tvec = (g.reshape(3, 1) for g in _frontal_guess(obj, img, kmat))
    projected, _ = cv2.projectPoints(obj, rvec, tvec, kmat, None)
    rmse = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - img) ** 2, axis=1))))
    return rvec.reshape(3), tvec.reshape(3), rmse


def _total_error(focal: float, frames: list[tuple[np.ndarray, np.ndarray]], width: int, height: int) -> float:
    kmat = camera_matrix(focal, width, height)
    return float(np.mean([solve_pose(p2, p3, kmat)[2] ** 2 for p2, p3 in frames]))


FOCAL_RANGE = (1.0, 3.0)  # focal lengths searched, in image sides (RAD-NeRF searches 600-1400 px at 512)


def estimate_focal(frames: list[tuple[np.ndarray, np.ndarray]], width: int, height: int,
                   low: float = FOCAL_RANGE[0], high: float = FOCAL_RANGE[1], steps: int = 13,
                   tolerance: float = 0.05) -> float:
    """One focal length (pixels) for a clip, from ``frames`` = ``[(points_2d [L, 2], points_3d [L, 3])]``.

    The mean squared reprojection error is evaluated on a log grid over
    ``[low, high] x max(width, height)``. With small head motion it is nearly flat in the focal
    length (a nearer, wider camera looks almost the same), so among the focal lengths within
    ``tolerance`` of the best error the middle one (in log scale) is returned; a sharp minimum
    is returned as it is. The range is what talking-head footage uses: square crops of webcam
    or phone video, about 53 down to 19 degrees across.
    """
    if not frames:
        raise FaceNerfError("no frame with a face to estimate the focal length from")
    grid = np.geomspace(low, high, steps) * max(width, height)
    errors = np.array([_total_error(f, frames, width, height) for f in grid])
    near_best = np.flatnonzero(errors <= errors.min() * (1.0 + tolerance))
    return float(np.exp(np.median(np.log(grid[near_best]))))


def camera_to_head(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """OpenCV head -> camera ``(rvec, tvec)`` -> ``[4, 4]`` camera-to-head pose (OpenGL)."""
    import cv2

    rot, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64).reshape(3, 1))
    c2w = np.eye(4)
    c2w[:3, :3] = rot.T @ np.diag([1.0, -1.0, -1.0])     # OpenCV camera axes -> OpenGL
    c2w[:3, 3] = -rot.T @ np.asarray(tvec, dtype=np.float64).reshape(3)
    return c2w


def smooth_poses(rvecs: np.ndarray, tvecs: np.ndarray, keep: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Smooth rotations (as rotation vectors relative to the clip's mean) and translations over time."""
    from scipy.spatial.transform import Rotation

    from facenerf.preprocess.video.landmarks import smooth_runs

    if sigma <= 0 or not keep.any():
        return rvecs, tvecs
    rotations = Rotation.from_rotvec(np.where(keep[:, None], rvecs, 0.0))
    mean = Rotation.from_rotvec(rvecs[keep]).mean()
    relative = (mean.inv() * rotations).as_rotvec()
    smoothed = smooth_runs(relative, keep, sigma)
    out_r = np.where(keep[:, None], (mean * Rotation.from_rotvec(np.nan_to_num(smoothed))).as_rotvec(), np.nan)
    return out_r, smooth_runs(tvecs, keep, sigma)
