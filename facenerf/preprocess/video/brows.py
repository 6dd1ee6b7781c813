"""Eyebrows followed by optical flow: dlib's brow points sit on the brow's outline as its model
expects it, and barely move when the brows rise or fall.

The brows carry texture (hair, their edge against the skin) that pyramidal Lucas-Kanade flow
follows well. :func:`follow_brows` picks one reference frame (the kept frame whose landmark
shape is closest to the clip's median shape once head motion is removed), predicts where its
brow points are in every other frame from the head's image motion (the similarity between the
two frames' stable landmarks, :data:`~facenerf.preprocess.video.headpose.RIGID`), and lets the
flow from the reference move them from there. A point is kept only when the flow back to the
reference returns within ``max_return`` of where it started (forward-backward check); where
fewer than half of a frame's brow points pass, that frame keeps dlib's brows.

The eyelids are not followed: a blink hides their texture, and the flow loses them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facenerf.io import read_image

BROWS = np.arange(17, 27)  # dlib's 68-point brow indices (right brow 17-21, left 22-26)


def _stable() -> np.ndarray:
    from facenerf.preprocess.video.headpose import RIGID

    return RIGID


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
                        for i in index for m in [_similarity(landmarks[i][_stable()], base[_stable()])]])
    median = np.median(aligned, axis=0)
    return int(index[np.argmin(np.linalg.norm(aligned - median, axis=-1).mean(axis=1))])


def _grey(path: Path) -> np.ndarray:
    return np.ascontiguousarray((read_image(path).mean(axis=-1) * 255).round().astype(np.uint8))


def follow_brows(paths: list[Path], landmarks: np.ndarray, keep: np.ndarray, max_return: float = 0.5,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks [N, 68, 2] with the brows followed by flow, followed [N] bool)``.

    ``max_return`` is the forward-backward tolerance in pixels at a 100-pixel-wide face (it
    scales with the face). Frames not kept, and frames where the flow fails, are unchanged.
    """
    import cv2
    from tqdm import tqdm

    out, followed = landmarks.copy(), np.zeros(len(landmarks), dtype=bool)
    if not keep.any():
        return out, followed
    ref = reference_frame(landmarks, keep)
    width = float(np.ptp(landmarks[ref][:, 0]))
    side = int(max(11, round(width / 7))) | 1
    flow = dict(winSize=(side, side), maxLevel=3,
                criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    ref_image, start = _grey(paths[ref]), landmarks[ref][BROWS].astype(np.float32).reshape(-1, 1, 2)
    tolerance = max_return * width / 100.0
    for i in tqdm(np.flatnonzero(keep), desc="brows", unit="frame", disable=None if progress else True):
        m = _similarity(landmarks[ref][_stable()], landmarks[i][_stable()])
        guess = (start.reshape(-1, 2) @ m[:, :2].T + m[:, 2]).astype(np.float32).reshape(-1, 1, 2)
        image = _grey(paths[i])
        moved, ok, _ = cv2.calcOpticalFlowPyrLK(ref_image, image, start, guess.copy(),
                                                flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **flow)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(image, ref_image, moved, start.copy(),
                                                    flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **flow)
        good = (ok.ravel() > 0) & (ok_back.ravel() > 0) & \
            (np.linalg.norm((back - start).reshape(-1, 2), axis=1) < tolerance)
        if good.sum() * 2 < len(BROWS):
            continue
        out[i, BROWS] = np.where(good[:, None], moved.reshape(-1, 2), guess.reshape(-1, 2))
        followed[i] = True
    return out, followed
