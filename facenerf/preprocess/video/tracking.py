"""Head pose and expression coefficients of a whole clip from its landmarks.

Two passes over the kept frames:

1. focal length (:func:`headpose.estimate_focal` on a sample of frames) and per-frame PnP on
   the stable landmarks (:data:`headpose.RIGID`) against the mean template, then a first
   coefficient fit (:func:`expressions.fit_frame`);
2. the template personalised from the most neutral frames (:func:`expressions.personalise`),
   then its stable points, the focal length and the poses of a sample of frames refined
   together by bundle adjustment (:func:`bundle.adjust`; the template's depth becomes the
   speaker's, kept near the mean by a weak prior, and re-anchored to the mean head frame);
   poses again for every frame, smoothed over time, coefficients fitted again and smoothed
   over time, then clipped to [0, 1]. Without the bundle adjustment (``bundle_frames=0``) the
   focal length is searched again against the personalised template.

The head frame is the procedural head's (scene units, 1 = 50 mm), so the camera-to-head poses
can be compared directly with the synthetic talking heads' ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.io import write_npz
from facenerf.preprocess.video import bundle as ba
from facenerf.preprocess.video import expressions as ex
from facenerf.preprocess.video import headpose as hp
from facenerf.preprocess.video.landmarks import smooth_runs

MM_PER_UNIT = 50.0


@dataclass
class HeadTrack:
    """Pose and expression of every frame (``N`` frames; NaN / 0 on dropped frames)."""

    focal: float                 # pixels, the whole clip
    rvecs: np.ndarray            # [N, 3] OpenCV head -> camera rotation vectors
    tvecs: np.ndarray            # [N, 3] OpenCV head -> camera translations (scene units)
    c2w: np.ndarray              # [N, 4, 4] camera-to-head, OpenGL, scene units
    rmse: np.ndarray             # [N] PnP reprojection error (pixels) on the stable landmarks
    coefficients: np.ndarray     # [N, K] smoothed, in [0, 1]
    template: np.ndarray         # [68, 3] personalised neutral landmarks (head frame, units)

    def save(self, path: Path) -> None:
        write_npz(path, focal=np.array(self.focal), rvecs=self.rvecs, tvecs=self.tvecs, c2w=self.c2w,
                        rmse=self.rmse, coefficients=self.coefficients, template=self.template)

    @classmethod
    def load(cls, path: Path) -> "HeadTrack":
        with np.load(path, allow_pickle=False) as data:
            values = {key: data[key] for key in ("rvecs", "tvecs", "c2w", "rmse", "coefficients", "template")}
            return cls(focal=float(data["focal"]), **values)


def landmark_model() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(neutral [68, 3], deltas [K, 68, 3])`` in scene units and the blendshape names."""
    from facenerf.data.synthetic import blendshapes as bs
    from facenerf.data.synthetic.identity import head_topology

    neutral, deltas = bs.landmark_basis(head_topology())
    return neutral / MM_PER_UNIT, deltas / MM_PER_UNIT, bs.BLENDSHAPES


def _poses(landmarks, keep, template, kmat):
    n = len(landmarks)
    rvecs, tvecs, rmse = np.full((n, 3), np.nan), np.full((n, 3), np.nan), np.full(n, np.nan)
    guess = None
    for i in np.flatnonzero(keep):
        rvecs[i], tvecs[i], rmse[i] = hp.solve_pose(landmarks[i][hp.RIGID], template[hp.RIGID], kmat, guess)
        guess = (rvecs[i], tvecs[i])
    return rvecs, tvecs, rmse


def _coefficients(landmarks, keep, rvecs, tvecs, kmat, template, deltas, bar=None):
    out = np.zeros((len(landmarks), len(deltas)))
    previous = None
    for i in np.flatnonzero(keep):
        out[i] = previous = ex.fit_frame(landmarks[i], rvecs[i], tvecs[i], kmat, template, deltas, start=previous)
        if bar is not None:
            bar.update(1)
    return out


def _focal(landmarks, keep, template, width, height, fixed, samples=40):
    if fixed:
        return float(fixed)
    index = np.flatnonzero(keep)
    chosen = index[np.linspace(0, len(index) - 1, min(samples, len(index))).astype(int)]
    return hp.estimate_focal([(landmarks[i][hp.RIGID], template[hp.RIGID]) for i in chosen], width, height)


def _sample(keep, count):
    index = np.flatnonzero(keep)
    return np.unique(index[np.linspace(0, len(index) - 1, min(count, len(index))).astype(int)])


def _bundle(landmarks, keep, template, neutral, focal, width, height, fixed, frames, prior):
    """Template (stable points refined, anchored to ``neutral``) and focal length after bundle adjustment."""
    chosen = _sample(keep, frames)
    kmat = hp.camera_matrix(focal, width, height)
    rvecs, tvecs, _ = _poses(landmarks, np.isin(np.arange(len(keep)), chosen), template, kmat)
    result = ba.adjust(landmarks[chosen][:, hp.RIGID], template[hp.RIGID], template[hp.RIGID], rvecs[chosen],
                       tvecs[chosen], focal, width, height, fixed_focal=bool(fixed) or bool(__import__('os').environ.get('BA_FIXF')), prior=prior, relief=float(__import__('os').environ.get('BA_RELIEF', 1e6)))
    refined = template.copy()
    refined[hp.RIGID] = result.template
    if __import__('os').environ.get('BA_POSEGAUGE'):
        from scipy.spatial.transform import Rotation
        q = (Rotation.from_rotvec(rvecs[chosen]).inv() * Rotation.from_rotvec(result.rvecs)).mean().as_matrix()
        pts = result.template - result.template.mean(0)
        old = template[hp.RIGID]
        scale = np.sqrt(((old - old.mean(0)) ** 2).sum() / (pts ** 2).sum())
        refined[hp.RIGID] = pts @ q.T * scale + old.mean(0)
        return refined, result.focal
    if __import__('os').environ.get('BA_DESHEAR'):
        points = template[hp.RIGID]
        design = np.c_[np.ones(len(points)), points[:, :2]]
        shear, *_ = np.linalg.lstsq(design, result.template[:, 2] - points[:, 2], rcond=None)
        refined[hp.RIGID, 2] -= design[:, 1:] @ shear[1:]
    return ex.anchor(refined, neutral), result.focal


def track_head(landmarks: np.ndarray, keep: np.ndarray, width: int, height: int, focal: float | None = None,
               smooth_pose: float = 1.0, smooth_expression: float = 0.7, progress: bool = True,
               bundle_frames: int = int(__import__('os').environ.get('BA_FRAMES', 80)), bundle_prior: float = 0.1) -> HeadTrack:
    """Poses and coefficients of the kept frames of a clip (``landmarks [N, 68, 2]``, ``keep [N]``).

    ``bundle_frames``: kept frames (spread over the clip) of the bundle adjustment, 0 for none;
    ``bundle_prior``: standard deviation (scene units) of its template points around the
    personalised template.
    """
    from tqdm import tqdm

    neutral, deltas, _ = landmark_model()
    smooth_pose = float(__import__('os').environ.get('BA_SMOOTH', smooth_pose))
    with tqdm(total=2 * int(keep.sum()), desc="pose + expressions", unit="frame",
              disable=None if progress else True) as bar:
        f = _focal(landmarks, keep, neutral, width, height, focal)
        kmat = hp.camera_matrix(f, width, height)
        rvecs, tvecs, _ = _poses(landmarks, keep, neutral, kmat)
        first = _coefficients(landmarks, keep, rvecs, tvecs, kmat, neutral, deltas, bar)
        template = ex.personalise(landmarks, rvecs, tvecs, kmat, neutral, first, keep)
        f = _focal(landmarks, keep, template, width, height, focal)
        if bundle_frames > 0:
            template, f = _bundle(landmarks, keep, template, neutral, f, width, height, focal, bundle_frames,
                                  bundle_prior)
            import os
            if os.environ.get("BA_REPERS"):
                kmat = hp.camera_matrix(f, width, height)
                rvecs, tvecs, _ = _poses(landmarks, keep, template, kmat)
                first = _coefficients(landmarks, keep, rvecs, tvecs, kmat, template, deltas)
                template = ex.anchor(ex.personalise(landmarks, rvecs, tvecs, kmat, template, first, keep), neutral)
        kmat = hp.camera_matrix(f, width, height)
        rvecs, tvecs, rmse = _poses(landmarks, keep, template, kmat)
        rvecs, tvecs = hp.smooth_poses(rvecs, tvecs, keep, smooth_pose)
        raw = _coefficients(landmarks, keep, rvecs, tvecs, kmat, template, deltas, bar)
    coefficients = np.clip(np.nan_to_num(smooth_runs(raw, keep, smooth_expression)), 0.0, 1.0)
    c2w = np.full((len(landmarks), 4, 4), np.nan)
    for i in np.flatnonzero(keep):
        c2w[i] = hp.camera_to_head(rvecs[i], tvecs[i])
    return HeadTrack(f, rvecs, tvecs, c2w, rmse, coefficients, template)


def head_box(margin: float = 0.1) -> np.ndarray:
    """``[6]`` box (min xyz, max xyz; scene units) of the procedural head without its neck.

    Covers the neutral face and the fully open jaw, padded by ``margin`` of its size for
    identity differences: the ``aabb`` hint of the transforms files.
    """
    from facenerf.data.synthetic import blendshapes as bs
    from facenerf.data.synthetic.identity import head_topology
    from facenerf.data.synthetic import head as sh
    from facenerf.data.synthetic.talking_scene import neck_vertices

    topology = head_topology(2000)
    chart = topology.vertex_chart()
    shape = sh.ShapeParams.from_z(np.zeros(sh.N_SHAPE_PARAMS))
    coefficients = np.zeros(len(bs.BLENDSHAPES))
    neutral = bs.head_vertices(topology, shape, coefficients, chart)
    coefficients[bs.BLENDSHAPES.index("jaw_open")] = 1.0
    opened = bs.head_vertices(topology, shape, coefficients, chart)
    head = ~neck_vertices(neutral, chart[0])
    points = np.concatenate([neutral[head], opened[head]]) / MM_PER_UNIT
    lo, hi = points.min(0), points.max(0)
    pad = margin * (hi - lo)
    return np.concatenate([lo - pad, hi + pad])
