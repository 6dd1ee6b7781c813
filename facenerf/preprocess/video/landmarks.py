"""Per-frame dlib landmarks for a video: detection, short gaps carried over, temporal smoothing.

Every frame is searched with dlib's HOG detector (:mod:`facenerf.preprocess.fitting.detect`),
first inside a window around the previous frame's face (fast), then over the whole frame. A
run of at most ``max_gap`` frames without a detection (a blink of the detector, motion blur)
is carried over: the face box is interpolated between the frames around the gap and the
68-point predictor runs inside it. Longer runs are frames **without a face**: they are dropped
from the dataset and counted, never given a guessed label. The kept landmarks are smoothed over
time with a Gaussian inside each run of consecutive kept frames, after the brows and the stable
points are followed by optical flow (dlib's brow points barely move when the brows do, and its
nose and eye corners move with the brows and mouth; see :mod:`.flow`).

Measured and not used: stretching the grey levels of a dark, low-contrast face (a standard
deviation of 0.10 on the second synthetic speaker, ``--subject 4 --seed 5``, against 0.13 on
the benchmark clip) to 0.18 before the predictor runs. It cut that speaker's lip errors (after
removing each point's constant offset) from 1.95 to 1.33 px (outer) and 2.09 to 1.51 px
(inner) at 256 px, but made its brows and stable points noisier (1.29 to 1.52 px before flow),
which doubled the rotation error left after the constant offset (0.58 to 0.99 degrees mean,
3.2 to 7.6 max) and lowered the head-mask IoU from 0.954 to 0.922.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError
from facenerf.io import read_image, write_npz
from facenerf.preprocess.video.flow import CORNER_WINDOW

ROI_SCALE = 2.6  # side of the search window around the previous face, in face-box sides
REACQUIRE = 50   # frames without the face after which a face anywhere in the frame is taken
SAME_FACE_SIZE = 1.6   # a detection near a recent face is that face when their sizes differ by less
SAME_FACE_SHIFT = 1.0  # than this factor and their centres by less than this many face sizes


@dataclass
class LandmarkTrack:
    """Landmarks of every frame of a clip (``N`` frames)."""

    raw: np.ndarray        # [N, 68, 2] (x, y) as dlib found them (detected or carried); NaN on dropped frames
    landmarks: np.ndarray  # [N, 68, 2] brows and stable points followed by flow (unless turned off), smoothed; NaN on dropped frames
    detected: np.ndarray   # [N] bool, dlib found the face in this frame
    carried: np.ndarray    # [N] bool, filled through a short miss
    boxes: np.ndarray      # [N, 4] (left, top, right, bottom); NaN on dropped frames
    scores: np.ndarray     # [N] detector score; NaN where not detected

    @property
    def valid(self) -> np.ndarray:
        """[N] bool: frames that have landmarks (detected or carried); the rest are dropped."""
        return self.detected | self.carried

    def save(self, path: Path) -> None:
        write_npz(path, raw=self.raw, landmarks=self.landmarks, detected=self.detected,
                        carried=self.carried, boxes=self.boxes, scores=self.scores)

    @classmethod
    def load(cls, path: Path) -> "LandmarkTrack":
        with np.load(path, allow_pickle=False) as data:
            return cls(**{key: data[key] for key in ("raw", "landmarks", "detected", "carried", "boxes", "scores")})


def choose_upsample(width: int, height: int) -> int:
    """HOG up-sampling for a frame size: faces in frames under 320 px need one step."""
    return 0 if min(width, height) >= 320 else 1


class VideoFaceDetector:
    """dlib detection that searches near the previous face first."""

    def __init__(self, upsample: int, predictor: str | Path | None = None):
        from facenerf.preprocess.fitting.detect import LandmarkDetector

        self.detector = LandmarkDetector(predictor_path=predictor, upsample=upsample, max_side=4096)

    def detect(self, image: np.ndarray, previous: np.ndarray | None, recent: bool = True):
        """``(box [4], score, landmarks [68, 2])`` of the face in ``image``, or None. With a
        ``previous`` box [4] seen ``recent``-ly, only near it (the tracked speaker, not a face
        behind them); otherwise the largest confident face anywhere in the frame."""
        tracked = previous is not None and np.isfinite(previous).all()
        if tracked:
            found = self._in_window(image, previous)
            if found is not None and (not recent or same_face(found[0], previous)):
                return found
        try:
            face = self.detector.detect(image)
        except FaceNerfError:
            return None
        if tracked and recent and not same_face(np.array(face.box), previous):
            return None
        return np.array(face.box), face.score, face.landmarks

    def _in_window(self, image: np.ndarray, box: np.ndarray):
        height, width = image.shape[:2]
        centre = 0.5 * (box[:2] + box[2:])
        half = 0.5 * ROI_SCALE * max(box[2] - box[0], box[3] - box[1])
        x0, y0 = (max(0, int(centre[i] - half)) for i in (0, 1))
        x1, y1 = min(width, int(centre[0] + half)), min(height, int(centre[1] + half))
        if x1 - x0 < 32 or y1 - y0 < 32:
            return None
        try:
            face = self.detector.detect(image[y0:y1, x0:x1])
        except FaceNerfError:
            return None
        offset = np.array([x0, y0], dtype=np.float64)
        return np.array(face.box) + np.tile(offset, 2), face.score, face.landmarks + offset

    def in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return self.detector.landmarks_in_box(image, tuple(box))


def same_face(box: np.ndarray, previous: np.ndarray) -> bool:
    """Whether detection ``box`` [4] (left, top, right, bottom) can be the face of ``previous`` [4]
    a few frames on: a like size, nearby (see :data:`SAME_FACE_SIZE`, :data:`SAME_FACE_SHIFT`)."""
    size, before = (float(max(b[2] - b[0], b[3] - b[1])) for b in (box, previous))
    shift = float(np.linalg.norm(0.5 * (box[:2] + box[2:]) - 0.5 * (previous[:2] + previous[2:])))
    return max(size, before) < SAME_FACE_SIZE * min(size, before) and shift < SAME_FACE_SHIFT * before


def detect_frames(paths: list[Path], detector: VideoFaceDetector, progress: bool = True):
    """``(raw [N, 68, 2], boxes [N, 4], scores [N], detected [N])`` with NaN where no face was found."""
    from tqdm import tqdm

    n = len(paths)
    raw, boxes = np.full((n, 68, 2), np.nan), np.full((n, 4), np.nan)
    scores, detected = np.full(n, np.nan), np.zeros(n, dtype=bool)
    previous, missed = None, 0
    for i, path in enumerate(tqdm(paths, desc="landmarks", unit="frame", disable=None if progress else True)):
        found = detector.detect(read_image(path), previous, recent=missed < REACQUIRE)
        if found is not None:
            boxes[i], scores[i], raw[i] = found
            detected[i] = True
        previous = boxes[i] if found is not None else previous
        missed = 0 if found is not None else missed + 1
    return raw, boxes, scores, detected


def gap_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the runs where ``mask`` is False (``stop`` exclusive)."""
    runs, start = [], None
    for i, value in enumerate(np.append(np.asarray(mask, dtype=bool), True)):
        if not value and start is None:
            start = i
        elif value and start is not None:
            runs.append((start, i))
            start = None
    return runs


def face_similarity(a: np.ndarray, b: np.ndarray, box: np.ndarray, size: int = 32) -> float:
    """Normalised cross-correlation of the grey face crops ``box`` of two frames (1 = identical)."""
    import cv2

    height, width = a.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return 0.0
    crops = [cv2.resize(img[y0:y1, x0:x1].mean(axis=-1).astype(np.float32), (size, size)) for img in (a, b)]
    crops = [c - c.mean() for c in crops]
    norm = float(np.linalg.norm(crops[0]) * np.linalg.norm(crops[1]))
    return float((crops[0] * crops[1]).sum() / norm) if norm > 1e-9 else 0.0


def carry_gaps(paths: list[Path], detector, raw: np.ndarray, boxes: np.ndarray, detected: np.ndarray,
               max_gap: int, min_similarity: float = 0.5) -> np.ndarray:
    """Fill runs of at most ``max_gap`` missed frames in place; returns ``carried [N]``.

    The face box is interpolated between the detections around the run (or held at a clip
    end) and the predictor runs inside it, but only in frames whose crop still looks like the
    nearest detected face (:func:`face_similarity` at least ``min_similarity``): a frame where
    the face is really gone stays dropped.
    """
    n = len(paths)
    carried = np.zeros(n, dtype=bool)
    for start, stop in gap_runs(detected):
        if stop - start > max_gap or not detected.any():
            continue
        anchor = start - 1 if start > 0 else stop
        before = boxes[start - 1] if start > 0 else boxes[stop]
        after = boxes[stop] if stop < n else boxes[start - 1]
        reference = read_image(paths[anchor])
        for i in range(start, stop):
            w = (i - start + 1) / (stop - start + 1)
            box = (1 - w) * before + w * after
            image = read_image(paths[i])
            if face_similarity(image, reference, box) < min_similarity:
                continue
            boxes[i], raw[i], carried[i] = box, detector.in_box(image, box), True
    return carried


def _extent(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """``(centre [2], size)`` of the bounding square of ``landmarks [68, 2]``."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    return 0.5 * (lo + hi), float(max(hi - lo))


def _box_relation(box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``[3]`` (scale, dx, dy): a detection ``box [4]`` relative to its ``landmarks [68, 2]``' extent."""
    centre, size = _extent(landmarks)
    return np.r_[max(box[2] - box[0], box[3] - box[1]) / size, (0.5 * (box[:2] + box[2:]) - centre) / size]


def _box_from(landmarks: np.ndarray, relation: np.ndarray) -> np.ndarray:
    """``[4]`` detection-style box around ``landmarks [68, 2]`` (the inverse of :func:`_box_relation`)."""
    centre, size = _extent(landmarks)
    centre = centre + relation[1:] * size
    return np.r_[centre - 0.5 * relation[0] * size, centre + 0.5 * relation[0] * size]


def follow_gaps(paths: list[Path], detector, raw: np.ndarray, boxes: np.ndarray, valid: np.ndarray,
                max_follow: int, min_similarity: float = 0.5) -> np.ndarray:
    """Bridge misses of at most ``max_follow`` frames that :func:`carry_gaps` left; returns
    ``followed [N]`` and fills ``raw`` and ``boxes`` in place.

    The detector can miss a face for longer than interpolating its box is safe. Here the face is
    followed from the frame before the miss (after it, at the clip's start): each frame's box
    comes from the previous frame's landmarks and the predictor runs inside it. Following stops
    at the first frame whose crop no longer looks like the previous frame's
    (:func:`face_similarity` below ``min_similarity``) or whose face changes size by more than a
    quarter: a frame where the face is really gone stays dropped.
    """
    n = len(paths)
    followed = np.zeros(n, dtype=bool)
    for start, stop in gap_runs(valid):
        if stop - start > max_follow or (start == 0 and stop == n):
            continue
        anchor, order = (start - 1, range(start, stop)) if start > 0 else (stop, range(stop - 1, start - 1, -1))
        relation, size = _box_relation(boxes[anchor], raw[anchor]), _extent(raw[anchor])[1]
        previous, before = anchor, read_image(paths[anchor])
        for i in order:
            box = _box_from(raw[previous], relation)
            image = read_image(paths[i])
            if face_similarity(image, before, box) < min_similarity:
                break
            landmarks = detector.in_box(image, box)
            if not 0.8 < _extent(landmarks)[1] / size < 1.25:
                break
            raw[i], boxes[i], followed[i] = landmarks, box, True
            previous, before = i, image
    return followed


def smooth_runs(values: np.ndarray, keep: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time (axis 0) inside each run of kept frames; NaN elsewhere."""
    from scipy.ndimage import gaussian_filter1d

    out = np.full_like(values, np.nan, dtype=np.float64)
    for start, stop in gap_runs(~np.asarray(keep, dtype=bool)):
        segment = values[start:stop].astype(np.float64)
        out[start:stop] = gaussian_filter1d(segment, sigma, axis=0, mode="nearest") if sigma > 0 else segment
    return out


def track_landmarks(paths: list[Path], upsample: int, max_gap: int = 5, sigma: float = 0.7,
                    predictor: str | Path | None = None, progress: bool = True,
                    flow: tuple[str, ...] = ("brows", "stable"), max_follow: int = 50,
                    corner_window: float = CORNER_WINDOW) -> LandmarkTrack:
    """Detect, carry (short misses: :func:`carry_gaps`; longer ones up to ``max_follow`` frames:
    :func:`follow_gaps`) and smooth the landmarks of the frames ``paths`` (in time order); the
    ``flow`` groups (:data:`facenerf.preprocess.video.flow.GROUPS`) are followed by optical flow,
    in a window ``corner_window`` of the face wide at the outer eye corners."""
    from facenerf.preprocess.video.flow import GROUPS, follow_landmarks

    detector = VideoFaceDetector(upsample, predictor)
    raw, boxes, scores, detected = detect_frames(paths, detector, progress)
    carried = carry_gaps(paths, detector, raw, boxes, detected, max_gap)
    carried |= follow_gaps(paths, detector, raw, boxes, detected | carried, max_follow)
    valid = detected | carried
    groups = {name: GROUPS[name] for name in flow}
    followed = follow_landmarks(paths, raw, valid, groups, corner_window=corner_window, progress=progress)[0] \
        if groups else raw
    return LandmarkTrack(raw=raw, landmarks=smooth_runs(followed, valid, sigma), detected=detected, carried=carried,
                         boxes=boxes, scores=scores)
