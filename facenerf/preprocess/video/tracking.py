"""Head pose and expression coefficients of a whole clip from its landmarks.

Two passes over the kept frames:

1. focal length (:func:`headpose.estimate_focal` on a sample of frames) and per-frame PnP on
   the stable landmarks (:data:`headpose.RIGID`) against the mean template, then a first
   coefficient fit (:func:`expressions.fit_frame`, basis confined by :func:`expressions.confine`);
2. the template personalised from the most neutral frames (:func:`expressions.personalise`),
   focal length and poses again, poses smoothed over time, coefficients fitted again and
   smoothed over time, then clipped to [0, 1].

The head frame is the procedural head's (scene units, 1 = 50 mm), so the camera-to-head poses
can be compared directly with the synthetic talking heads' ground truth.

Measured and not used: a bundle adjustment of the stable points (with depth), the focal length
and the poses of 80 frames (robust loss, weak prior towards the personalised template). On the
end-to-end benchmark's clip it raised the held-out PSNR from 35.68 to 36.38 dB, but on a second
synthetic speaker (``--subject 4 --seed 5``) it lowered it from 31.72 to 31.50 dB, with the
rotation error left after the constant offset up from 1.73 to 5.61 degrees and the focal
length 443 px (true 384, PnP search 280): with head turns under about 8 degrees the template's
depth and the focal length are barely observable, and the freed points absorb dlib's
expression-dependent landmark offsets instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.io import write_npz
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


def track_head(landmarks: np.ndarray, keep: np.ndarray, width: int, height: int, focal: float | None = None,
               smooth_pose: float = 1.0, smooth_expression: float = 0.7, progress: bool = True) -> HeadTrack:
    """Poses and coefficients of the kept frames of a clip (``landmarks [N, 68, 2]``, ``keep [N]``)."""
    from tqdm import tqdm

    neutral, deltas, _ = landmark_model()
    deltas = ex.confine(deltas)
    with tqdm(total=2 * int(keep.sum()), desc="pose + expressions", unit="frame",
              disable=None if progress else True) as bar:
        f = _focal(landmarks, keep, neutral, width, height, focal)
        kmat = hp.camera_matrix(f, width, height)
        rvecs, tvecs, _ = _poses(landmarks, keep, neutral, kmat)
        first = _coefficients(landmarks, keep, rvecs, tvecs, kmat, neutral, deltas, bar)
        template = ex.personalise(landmarks, rvecs, tvecs, kmat, neutral, first, keep)
        f = _focal(landmarks, keep, template, width, height, focal)
        kmat = hp.camera_matrix(f, width, height)
        rvecs, tvecs, rmse = _poses(landmarks, keep, template, kmat)
        rvecs, tvecs = hp.smooth_poses(rvecs, tvecs, keep, smooth_pose)
        raw = _coefficients(landmarks, keep, rvecs, tvecs, kmat, template, deltas, bar)
    coefficients = np.clip(np.nan_to_num(smooth_runs(raw, keep, smooth_expression)), 0.0, 1.0)
    c2w = np.full((len(landmarks), 4, 4), np.nan)
    for i in np.flatnonzero(keep):
        c2w[i] = hp.camera_to_head(rvecs[i], tvecs[i])
    return HeadTrack(f, rvecs, tvecs, c2w, rmse, coefficients, template)


SILHOUETTE_FRAMES = 40  # head masks read to measure the head's outline (spread over the clip)


def silhouette_extent(masks, poses: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray | None:
    """``[4]`` (x min, y min, x max, y max; scene units) of the head masks' outline in the head's
    coronal plane (z = 0 of the head frame), the median over frames, or None without a usable mask.

    ``masks``: ``[H, W]`` bool per frame; ``poses [N, 4, 4]`` camera-to-head (OpenGL: the camera
    looks down its -z). Each mask pixel's ray through its centre meets the plane; rays within 30
    degrees of parallel to it (more than 60 from its normal) are left out: a profile view says
    little about the outline there.
    The outline includes what the masks hold beyond the face: hair above and beside the head.
    """
    rows = []
    for mask, c2w in zip(masks, poses):
        v, u = np.nonzero(mask)
        if len(u) == 0:
            continue
        camera = np.stack([(u + 0.5 - cx) / focal, -(v + 0.5 - cy) / focal, -np.ones(len(u))], 1)  # [P, 3]
        dirs = camera @ np.asarray(c2w, dtype=np.float64)[:3, :3].T
        origin = np.asarray(c2w, dtype=np.float64)[:3, 3]
        facing = np.abs(dirs[:, 2]) > 0.5 * np.linalg.norm(dirs, axis=1)
        if not facing.any():
            continue
        t = -origin[2] / dirs[facing, 2]
        points = origin[:2] + t[:, None] * dirs[facing, :2]  # [P, 2] x, y in the plane z = 0
        rows.append(np.concatenate([points.min(0), points.max(0)]))
    return np.median(np.stack(rows), axis=0) if rows else None


def scene_box(procedural: np.ndarray, outline: np.ndarray | None) -> np.ndarray:
    """``[6]`` box holding the procedural head's padded ``procedural`` box and, in x and y, the head
    masks' ``outline`` (:func:`silhouette_extent`): hair or a head beyond the procedural one's
    padding. The training cube adds its own margin around the box (``AUTO_BOUND_MARGIN``)."""
    box = np.asarray(procedural, dtype=np.float64).copy()
    if outline is not None:
        box[:2] = np.minimum(box[:2], outline[:2])
        box[3:5] = np.maximum(box[3:5], outline[2:])
    return box


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
