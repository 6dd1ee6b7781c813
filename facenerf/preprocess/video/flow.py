"""Landmarks followed by optical flow where dlib's shape model holds them back or drags them along.

dlib's brow points sit on the brow's outline as its model expects it, and barely move when the
brows rise or fall. Its stable points (nose, eye corners: :data:`~.headpose.RIGID`, which the
pose is solved from) move the other way: they shift with the brows and the mouth although the
skin under them does not, and every such shift turns the solved head. Measured on the synthetic
talking heads, frames with lowered brows moved the nose bridge by up to 3 px at 256², and the
head poses of those frames by up to 8 degrees.

Both have texture that pyramidal Lucas-Kanade flow follows well (brow hair and edges, the eye
corners' contrast, the nose's shading). :func:`follow_landmarks` picks one reference frame (the
kept frame whose landmark shape is closest to the clip's median shape once head motion is
removed), predicts where its points are in every other frame from the head's image motion (the
similarity between the two frames' stable landmarks), and lets the flow from the reference move
them from there. A point is kept only when the flow back to the reference returns within
``max_return`` of where it started (forward-backward check); in a frame where fewer than half
of a group's points pass, that group keeps dlib's points.

Followed points keep the reference frame's placement: if dlib put the nose bridge 2 px too
high there, it is 2 px too high in every frame. That offset is the same in every frame, so the
poses stay consistent with each other, which is what a NeRF trained on them needs.

The eyelids and lips are not followed: a blink or an opening mouth hides their texture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facenerf.io import read_image
from facenerf.preprocess.video.headpose import RIGID

BROWS = np.arange(17, 27)  # dlib's 68-point brow indices (right brow 17-21, left 22-26)
GROUPS = {"brows": BROWS, "stable": RIGID}


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[2, 3]`` least-squares similarity (rotation, uniform scale, translation) taking ``src`` to ``dst``."""
    cs, cd = src.mean(0), dst.mean(0)
    a, b = src - cs, dst - cd
    norm = (a ** 2).sum()
    c = (a * b).sum() / norm
    s = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / norm
    rot = np.array([[c, -s], [s, c]])
    return np.concatenate([rot, (cd - rot @ cs)[:, None]], axis=1)


def reference_frame(landmarks: np.ndarray, keep: np.ndarray) -> int:
    """The kept frame of ``landmarks [N, 68, 2]`` nearest the median shape after head motion is removed."""
    index = np.flatnonzero(keep)
    base = landmarks[index[0]]
    aligned = np.stack([landmarks[i] @ m[:, :2].T + m[:, 2]
                        for i in index for m in [_similarity(landmarks[i][RIGID], base[RIGID])]])
    median = np.median(aligned, axis=0)
    return int(index[np.argmin(np.linalg.norm(aligned - median, axis=-1).mean(axis=1))])


def _grey(path: Path) -> np.ndarray:
    return np.ascontiguousarray((read_image(path).mean(axis=-1) * 255).round().astype(np.uint8))


class _Flow:
    """Forward-backward checked LK flow from one reference image (points ``[P, 1, 2]`` float32)."""

    def __init__(self, ref_image: np.ndarray, face_width: float, max_return: float):
        import cv2

        side = int(max(11, round(face_width / 7))) | 1
        self.ref_image = ref_image
        self.tolerance = max_return * face_width / 100.0
        self.options = dict(winSize=(side, side), maxLevel=3, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
                            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))

    def __call__(self, image: np.ndarray, start: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(moved [P, 2], good [P] bool)`` of the reference points ``start`` in ``image``."""
        import cv2

        moved, ok, _ = cv2.calcOpticalFlowPyrLK(self.ref_image, image, start, guess.copy(), **self.options)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(image, self.ref_image, moved, start.copy(), **self.options)
        good = (ok.ravel() > 0) & (ok_back.ravel() > 0) & \
            (np.linalg.norm((back - start).reshape(-1, 2), axis=1) < self.tolerance)
        return moved.reshape(-1, 2), good


def follow_landmarks(paths: list[Path], landmarks: np.ndarray, keep: np.ndarray,
                     groups: dict[str, np.ndarray] | None = None, max_return: float = 0.5,
                     progress: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(landmarks [N, 68, 2] with the groups' points followed by flow, {group: followed [N] bool})``.

    ``groups`` maps a name to landmark indices (default :data:`GROUPS`: brows and the stable
    points). ``max_return`` is the forward-backward tolerance in pixels at a 100-pixel-wide
    face (it scales with the face). Frames not kept, and groups whose flow fails in a frame,
    are unchanged.
    """
    from tqdm import tqdm

    groups = GROUPS if groups is None else groups
    out = landmarks.copy()
    followed = {name: np.zeros(len(landmarks), dtype=bool) for name in groups}
    if not keep.any() or not groups:
        return out, followed
    ref = reference_frame(landmarks, keep)
    index = np.concatenate(list(groups.values()))
    flow = _Flow(_grey(paths[ref]), float(np.ptp(landmarks[ref][:, 0])), max_return)
    start = landmarks[ref][index].astype(np.float32).reshape(-1, 1, 2)
    for i in tqdm(np.flatnonzero(keep), desc="landmark flow", unit="frame", disable=None if progress else True):
        m = _similarity(landmarks[ref][RIGID], landmarks[i][RIGID])
        guess = (start.reshape(-1, 2) @ m[:, :2].T + m[:, 2]).astype(np.float32)
        moved, good = flow(_grey(paths[i]), start, guess.reshape(-1, 1, 2))
        offset = 0
        for name, points in groups.items():
            part = slice(offset, offset + len(points))
            offset += len(points)
            if good[part].sum() * 2 < len(points):
                continue
            out[i, points] = np.where(good[part, None], moved[part], guess[part])
            followed[name][i] = True
    return out, followed
