"""Hand-held clips (``process.py --stabilise``): every frame warped onto the first frame's background.

NeRFBlendShape composites the head over one background plate, so it needs a still camera. A
hand-held camera mostly turns; a turn moves every point of the picture by the same projective
map whatever its depth, so warping each frame by the map that holds its background still
gives the frames of a camera that stayed where it was at the first frame (the head's own
motion is kept: the tracker then finds it relative to that camera).

For each frame, corners of the first frame's background (outside the speaker as GrabCut finds
them in the first frame, with a margin) are followed into the frame by pyramidal Lucas-Kanade
flow and checked by following them back; a similarity (rotation, uniform scale, shift) fitted
to the survivors with RANSAC maps the frame onto the first one. A frame with too few
survivors keeps the previous frame's map. Camera *movement* (walking, a dolly) shows the near
and the far at different shifts and is not undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAX_CORNERS = 400       # background corners followed from the first frame
MIN_INLIERS = 12        # fewer agreeing corners: the frame keeps the previous frame's map
RANSAC_PX = 1.0         # corners farther than this from the fitted map are outliers
ROUND_TRIP_PX = 0.5     # a corner followed there and back must land this close to where it started
STILL_PX = 0.1          # a frame whose map moves no corner this far is left as it is
SPEAKER_MARGIN = 0.03   # the first frame's person is grown by this fraction of the frame before corners are taken


@dataclass
class Stabilisation:
    """Per-frame maps onto the first frame: ``transforms [N, 2, 3]`` (frame pixel -> first frame
    pixel, similarity), ``inliers [N]`` (corners agreeing with each map; -1: the previous map
    was kept)."""

    transforms: np.ndarray
    inliers: np.ndarray

    def largest_shift(self, width: int, height: int) -> float:
        """The farthest any frame corner moves, in pixels."""
        return float(corner_shifts(self.transforms, width, height).max()) if len(self.transforms) else 0.0

    def kept_previous(self) -> int:
        return int((self.inliers < 0).sum())


def corner_shifts(transforms: np.ndarray, width: int, height: int) -> np.ndarray:
    """``[N]`` the farthest each map of ``transforms [N, 2, 3]`` moves one of the frame's corners (px)."""
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    moved = np.einsum("nij,cj->nci", np.asarray(transforms, dtype=np.float64).reshape(-1, 2, 3), corners)
    return np.abs(moved - corners[None, :, :2]).max(axis=(1, 2))


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def frame_map(reference: np.ndarray, corners: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray | None, int]:
    """``(map [2, 3] frame -> reference, inliers)`` from ``corners [C, 1, 2]`` of the grey
    ``reference`` followed into the grey ``frame``; ``(None, count)`` with too few agreeing corners."""
    import cv2

    lk = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    there, found, _ = cv2.calcOpticalFlowPyrLK(reference, frame, corners, None, **lk)
    back, returned, _ = cv2.calcOpticalFlowPyrLK(frame, reference, there, None, **lk)
    good = (found[:, 0] == 1) & (returned[:, 0] == 1) & (np.linalg.norm(back - corners, axis=2)[:, 0] < ROUND_TRIP_PX)
    if good.sum() < MIN_INLIERS:
        return None, int(good.sum())
    warp, inlier = cv2.estimateAffinePartial2D(there[good], corners[good], method=cv2.RANSAC,
                                               ransacReprojThreshold=RANSAC_PX, maxIters=2000, confidence=0.999)
    count = int(inlier.sum()) if inlier is not None else 0
    return (warp, count) if warp is not None and count >= MIN_INLIERS else (None, count)


def frame_maps(frames, speaker: np.ndarray | None = None):
    """For each of ``frames`` (an iterable of ``[H, W, 3]`` images, the first one the reference):
    ``(image, map [2, 3] onto the first frame, inliers)``, from the first frame's background:
    outside ``speaker`` ``[H, W]`` bool (its person, grown by a margin; None: the whole frame,
    RANSAC alone sorting it out). A frame with too few agreeing corners keeps the previous map
    (inliers -1); the first frame gets the identity and its corner count."""
    import cv2

    reference = corners = None
    previous = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    for image in frames:
        grey = _grey(image)
        if reference is None:
            reference = grey
            region = None if speaker is None else np.where(speaker, 0, 255).astype(np.uint8)
            corners = cv2.goodFeaturesToTrack(grey, MAX_CORNERS, 0.005, 5, mask=region)
            yield image, previous, 0 if corners is None else len(corners)
            continue
        warp, count = frame_map(reference, corners, grey) if corners is not None else (None, 0)
        previous = warp if warp is not None else previous
        yield image, previous, count if warp is not None else -1


def _collected(maps: list[tuple[np.ndarray, int]]) -> Stabilisation:
    return Stabilisation(np.asarray([m for m, _ in maps], dtype=np.float64).reshape(-1, 2, 3),
                         np.asarray([n for _, n in maps]))


def background_motion(frames, speaker: np.ndarray | None = None) -> Stabilisation:
    """The maps of ``frames`` onto the first frame (:func:`frame_maps`)."""
    return _collected([(warp, count) for _, warp, count in frame_maps(frames, speaker)])


def stabilise_frames(folder: Path, n_frames: int, speaker: np.ndarray | None, quality: int,
                     progress: bool = True) -> Stabilisation:
    """Warp ``folder/<i>.jpg`` (i < ``n_frames``) onto frame 0's background (outside ``speaker``,
    see :func:`frame_maps`), in place and in one pass (each file read once and replaced
    atomically; a frame whose map moves it by under ``STILL_PX`` is left as it is); returns the
    maps. The edges a warp uncovers repeat the nearest pixels."""
    import cv2
    from tqdm import tqdm

    from facenerf.io import read_image, write_image

    paths = [folder / f"{i}.jpg" for i in range(n_frames)]
    maps = []
    for path, (image, warp, count) in zip(paths, frame_maps((read_image(p) for p in tqdm(
            paths, desc="stabilise", unit="frame", disable=None if progress else True)), speaker)):
        maps.append((warp, count))
        height, width = image.shape[:2]
        if corner_shifts(warp, width, height)[0] >= STILL_PX:  # else as good as still: no second resampling
            write_image(path, cv2.warpAffine(image, warp, (width, height), flags=cv2.INTER_LINEAR,
                                             borderMode=cv2.BORDER_REPLICATE), quality)
    return _collected(maps)
