"""Head pose from 68 landmarks: perspective-n-point against the 3D landmark template.

The training rig's intrinsics (focal 1200 px at 512 px, centred principal point) are known,
so the full camera pose (rotation and translation, in scene units) follows from matching the
68 detected 2D landmarks to the template's 3D landmarks. OpenCV's iterative solver starts from
the frontal training camera and a Levenberg-Marquardt refinement polishes it. The result is a
camera-to-world matrix in the OpenGL convention used everywhere in facenerf, directly usable
as the initial camera of a fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenerf.core.cameras import Intrinsics, opencv_to_opengl
from facenerf.errors import FaceNerfError
from facenerf.io import write_npy

INNER_LANDMARKS = np.arange(17, 68)  # brows, nose, eyes, mouth: not the pose-dependent jaw contour


@dataclass(frozen=True)
class PoseEstimate:
    c2w: np.ndarray          # [4, 4] camera-to-world, OpenGL convention, scene units
    rmse_px: float           # landmark reprojection RMS error (pixels)


def _frontal_guess(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV (rvec, tvec) of a camera at (0, 0, radius) looking at the origin."""
    import cv2

    rot_cv = np.diag([1.0, -1.0, -1.0])  # world -> OpenCV camera for a camera on +Z
    rvec, _ = cv2.Rodrigues(rot_cv)
    return rvec.reshape(3, 1), np.array([[0.0], [0.0], [radius]])


def _c2w_from_cv(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera (rvec, tvec) -> OpenGL camera-to-world ``[4, 4]``."""
    import cv2

    rot, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64))
    c2w_cv = np.eye(4)
    c2w_cv[:3, :3] = rot.T
    c2w_cv[:3, 3] = -rot.T @ np.asarray(tvec, dtype=np.float64).reshape(3)
    return np.asarray(opencv_to_opengl(c2w_cv), dtype=np.float64)


def estimate_pose(landmarks_xy: np.ndarray, landmarks_3d: np.ndarray, K: Intrinsics,
                  use_contour: bool = True, initial_radius: float = 16.0) -> PoseEstimate:
    """Camera pose that best projects ``landmarks_3d`` onto ``landmarks_xy``.

    Args:
        landmarks_xy: ``[68, 2]`` detected (x, y) pixels in an image with intrinsics ``K``.
        landmarks_3d: ``[68, 3]`` template landmarks in scene units (TU frame / 50).
        K: camera intrinsics of the image.
        use_contour: include the 17 jaw-contour points (they slide along the cheek when the
            head turns, so leaving them out can help for strongly turned faces).
        initial_radius: camera distance of the frontal starting guess (scene units).

    Raises :class:`FaceNerfError` when no pose puts the face in front of the camera.
    """
    import cv2

    keep = np.arange(68) if use_contour else INNER_LANDMARKS
    obj = np.ascontiguousarray(np.asarray(landmarks_3d, dtype=np.float64)[keep])
    img = np.ascontiguousarray(np.asarray(landmarks_xy, dtype=np.float64)[keep])
    kmat = np.asarray(K.matrix(), dtype=np.float64)
    rvec, tvec = _frontal_guess(initial_radius)
    ok, rvec, tvec = cv2.solvePnP(obj, img, kmat, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if ok:
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, kmat, None, rvec, tvec)
    if not ok or float(tvec[2, 0]) <= 0.0:
        raise FaceNerfError("head pose estimation failed (landmarks do not fit a face seen from the front); "
                            "use a clearer, less turned photo")
    projected, _ = cv2.projectPoints(obj, rvec, tvec, kmat, None)
    rmse = float(np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - img) ** 2, axis=1))))
    return PoseEstimate(c2w=_c2w_from_cv(rvec, tvec), rmse_px=rmse)


def rotation_error_deg(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    """Geodesic angle (degrees) between two rotation matrices ``[3, 3]``."""
    rel = np.asarray(rot_a, dtype=np.float64).T @ np.asarray(rot_b, dtype=np.float64)
    cos = np.clip((np.trace(rel) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def save_pose_file(path, c2w: np.ndarray, landmarks_xy: np.ndarray, extra: dict | None = None) -> None:
    """Write ``pose_<name>.npy`` atomically: the fit's input (reference section 6).

    The file is ``np.save`` of a dict ``{"pose": [4, 4] float32 camera-to-world (OpenGL, scene
    units), "kp": [68, 2] int64 (row, col) landmarks, "kp_xy": [68, 2] float32 (x, y)}`` plus
    ``extra`` entries, the layout the original fitting code reads. Read it with
    :func:`facenerf.fitting.inputs.load_pose_file`, which accepts only arrays and plain
    containers and so never runs code from the file.
    """
    xy = np.asarray(landmarks_xy, dtype=np.float64)
    record = {
        "pose": np.asarray(c2w, dtype=np.float32),
        "kp": np.rint(xy[:, ::-1]).astype(np.int64),
        "kp_xy": xy.astype(np.float32),
    }
    record.update(extra or {})
    write_npy(path, record, allow_pickle=True, what="pose file")
