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

The outer eye corners (:data:`CORNERS`) are followed in a narrower window (``corner_window`` of
the face width, a 5-px side at a 90-px-wide face, against 13 px for the other points) over two
pyramid levels (the prediction is already within a few pixels). A window as wide as the others'
is mostly eye white and iris, and as the head turns the eyeball's surface slides and
foreshortens against the skin at the corner: on a second synthetic speaker (``--subject 4 --seed
5``) the wide window's corner slid up to 8 px with the eye at 5-8 degrees from the reference
frame's pose, and the head rotations' error left after the constant offset was 1.75 degrees
mean (7.3 max); with the narrow window, 0.54 (3.1 max). On the benchmark clip it fell from 0.73
to 0.43 degrees. Where the narrow window fails the forward-backward check, the wide one's
answer is used. Trained on the ground-truth dataset with only these poses swapped in, the second
speaker's held-out PSNR rose from 35.5 to 38.9 dB (mean of two seeds; true poses: 40.9); the
benchmark clip's stayed within the training noise (40.7 and 40.5 dB, mean of four seeds each).

The eyelids and lips are not followed: a blink or an opening mouth hides their texture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError
from facenerf.io import read_image
from facenerf.preprocess.video.headpose import RIGID

BROWS = np.arange(17, 27)  # dlib's 68-point brow indices (right brow 17-21, left 22-26)
GROUPS = {"brows": BROWS, "stable": RIGID}
CORNERS = np.array([36, 45])  # the outer eye corners, followed in a narrower window (see the module docstring)
WINDOW = 1.0 / 7.0            # side of the flow window, as a fraction of the face width
CORNER_WINDOW = 0.055         # the same at the outer eye corners
NARROW_LEVELS = 2             # pyramid levels of the corners' flow (started from dlib's prediction, close by)


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


def window_side(face_width: float, fraction: float, smallest: int) -> int:
    """Odd side (pixels) of a flow window ``fraction`` of the face wide, at least ``smallest``."""
    return int(max(smallest, round(face_width * fraction))) | 1


class _Flow:
    """Forward-backward checked LK flow from one reference image (points ``[P, 1, 2]`` float32)."""

    def __init__(self, ref_image: np.ndarray, side: int, tolerance: float, levels: int = 3):
        import cv2

        self.ref_image = ref_image
        self.tolerance = tolerance
        self.options = dict(winSize=(side, side), maxLevel=levels, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
                            criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))

    def __call__(self, image: np.ndarray, start: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(moved [P, 2], good [P] bool)`` of the reference points ``start`` in ``image``."""
        import cv2

        moved, ok, _ = cv2.calcOpticalFlowPyrLK(self.ref_image, image, start, guess.copy(), **self.options)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(image, self.ref_image, moved, start.copy(), **self.options)
        good = (ok.ravel() > 0) & (ok_back.ravel() > 0) & \
            (np.linalg.norm((back - start).reshape(-1, 2), axis=1) < self.tolerance)
        return moved.reshape(-1, 2), good


class _PointFlow:
    """Flow of the reference points ``start [P, 2]``, the :data:`CORNERS` among them in a narrower window."""

    def __init__(self, ref_image: np.ndarray, start: np.ndarray, index: np.ndarray, face_width: float,
                 max_return: float, corner_window: float):
        tolerance = max_return * face_width / 100.0
        self.start = start.astype(np.float32).reshape(-1, 1, 2)
        self.wide = _Flow(ref_image, window_side(face_width, WINDOW, 11), tolerance)
        self.corners = np.isin(index, CORNERS) if corner_window > 0 else np.zeros(len(index), dtype=bool)
        self.narrow = _Flow(ref_image, window_side(face_width, corner_window, 5), tolerance, NARROW_LEVELS) \
            if self.corners.any() else None

    def __call__(self, image: np.ndarray, guess: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(moved [P, 2], good [P] bool)`` from the predicted positions ``guess [P, 2]``.

        A corner whose narrow window fails the forward-backward check keeps the wide window's answer.
        """
        guess = guess.astype(np.float32).reshape(-1, 1, 2)
        moved, good = self.wide(image, self.start, guess)
        if self.narrow is not None:
            c = self.corners
            near, near_good = self.narrow(image, self.start[c], guess[c])
            moved[c] = np.where(near_good[:, None], near, moved[c])
            good[c] |= near_good
        return moved, good


def follow_landmarks(paths: list[Path], landmarks: np.ndarray, keep: np.ndarray,
                     groups: dict[str, np.ndarray] | None = None, max_return: float = 0.5,
                     corner_window: float = CORNER_WINDOW,
                     progress: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(landmarks [N, 68, 2] with the groups' points followed by flow, {group: followed [N] bool})``.

    ``groups`` maps a name to landmark indices (default :data:`GROUPS`: brows and the stable
    points). ``max_return`` is the forward-backward tolerance in pixels at a 100-pixel-wide
    face (it scales with the face). ``corner_window`` is the side of the flow window at the
    outer eye corners (:data:`CORNERS`) as a fraction of the face width (0: the window of the
    other points, :data:`WINDOW`). Frames not kept, and groups whose flow fails in a frame,
    are unchanged.
    """
    from tqdm import tqdm

    groups = GROUPS if groups is None else groups
    if corner_window < 0:
        raise FaceNerfError(f"corner_window must be >= 0 (a fraction of the face width), not {corner_window}")
    out = landmarks.copy()
    followed = {name: np.zeros(len(landmarks), dtype=bool) for name in groups}
    if not keep.any() or not groups:
        return out, followed
    ref = reference_frame(landmarks, keep)
    index = np.concatenate(list(groups.values()))
    start = landmarks[ref][index]
    flow = _PointFlow(_grey(paths[ref]), start, index, float(np.ptp(landmarks[ref][:, 0])), max_return,
                      corner_window)
    for i in tqdm(np.flatnonzero(keep), desc="landmark flow", unit="frame", disable=None if progress else True):
        m = _similarity(landmarks[ref][RIGID], landmarks[i][RIGID])
        guess = start @ m[:, :2].T + m[:, 2]
        moved, good = flow(_grey(paths[i]), guess)
        offset = 0
        for name, points in groups.items():
            part = slice(offset, offset + len(points))
            offset += len(points)
            if good[part].sum() * 2 < len(points):
                continue
            out[i, points] = np.where(good[part, None], moved[part], guess[part])
            followed[name][i] = True
    return out, followed
