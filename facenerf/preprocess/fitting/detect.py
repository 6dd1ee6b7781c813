"""Face detection and 68-point landmarks with dlib.

The HOG frontal-face detector runs first (``upsample`` controls how small a face it finds);
when several faces are found the largest of those scoring at least half the best score is kept
(the subject; a smaller face behind it, such as a poster, can score higher, and a weak false
positive stays out). Optionally the CNN (MMOD)
detector is tried when HOG finds nothing. Landmarks come from dlib's 68-point shape
predictor (iBUG order: 0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth) as
``(x, y)`` pixel coordinates.

The dlib model files ship in the ``face_recognition_models`` package; they are located with
``importlib.util.find_spec`` without importing that package (its ``__init__`` needs an old
setuptools). A user can also pass explicit paths.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.errors import FaceNerfError

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
MODELS_PACKAGE = "face_recognition_models"


def model_file(name: str, override: str | Path | None = None, flag: str = "--predictor") -> Path:
    """Path of a dlib model file: ``override`` when given, else the copy in ``face_recognition_models``.

    Raises :class:`FaceNerfError` naming the package to install or the flag to pass.
    """
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FaceNerfError(f"dlib model file not found: {path} (pass an existing file to {flag})")
        return path
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise FaceNerfError(f"dlib model file {name} not found: pip install face_recognition_models==0.3.0 "
                        f"or pass its path with {flag}")


@dataclass(frozen=True)
class FaceDetection:
    """One detected face."""

    box: tuple[float, float, float, float]  # (left, top, right, bottom) pixels
    score: float                            # detector confidence (HOG margin or MMOD confidence)
    landmarks: np.ndarray                   # [68, 2] float64 (x, y) pixels
    detector: str                           # "hog" or "cnn"


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] or uint8 -> contiguous uint8 RGB (what dlib expects)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3])


class LandmarkDetector:
    """dlib face detector + 68-point predictor.

    Args:
        predictor_path: 68-point predictor file (default: from ``face_recognition_models``).
        upsample: HOG pyramid up-sampling steps (0 finds faces >= ~80 px, 1 >= ~40 px).
        cnn_fallback: try the CNN (MMOD) detector when HOG finds no face (slow on CPU: ~1.4 s per 512^2).
        cnn_path: MMOD detector file (default: from ``face_recognition_models``).
        max_side: detection runs on a copy whose longer side is at most this many pixels
            (landmarks are still predicted at full resolution).
    """

    def __init__(self, predictor_path: str | Path | None = None, upsample: int = 1,
                 cnn_fallback: bool = False, cnn_path: str | Path | None = None, max_side: int = 1024):
        import dlib

        if upsample < 0:
            raise FaceNerfError(f"--upsample must be >= 0, got {upsample}")
        self.upsample = int(upsample)
        self.max_side = int(max_side)
        self._dlib = dlib
        self._hog = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_file(PREDICTOR_68, predictor_path, "--predictor")))
        self._cnn = None
        if cnn_fallback:
            path = model_file(CNN_DETECTOR, cnn_path, "--cnn_detector")
            self._cnn = dlib.cnn_face_detection_model_v1(str(path))

    def detect(self, image: np.ndarray) -> FaceDetection:
        """The largest confident face in ``image [H, W, 3]`` with its landmarks (:func:`largest`):
        the subject, not a smaller face behind it (a poster, a passer-by) that may score higher.

        Raises :class:`FaceNerfError` when no face is found.
        """
        rgb = to_uint8_rgb(image)
        small, factor = self._detection_copy(rgb)
        found = self._run_hog(small)
        if found is None and self._cnn is not None:
            found = self._run_cnn(small)
        if found is None:
            hint = "" if self._cnn is not None else ", or add --cnn_fallback"
            raise FaceNerfError(f"no face found (HOG upsample {self.upsample}); use a clearer frontal photo, "
                                f"raise --upsample{hint}")
        box, score, kind = found
        box = tuple(float(v) / factor for v in box)
        return FaceDetection(box=box, score=score, landmarks=self.landmarks_in_box(rgb, box), detector=kind)

    def landmarks_in_box(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 landmarks ``[68, 2]`` (x, y) of the face inside ``box`` (left, top, right, bottom)."""
        rgb = to_uint8_rgb(image)
        left, top, right, bottom = (int(round(float(v))) for v in box)
        rect = self._dlib.rectangle(left, top, right, bottom)
        shape = self._predictor(rgb, rect)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)

    def _detection_copy(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """A copy no larger than ``max_side`` and its scale factor relative to ``rgb``."""
        longest = max(rgb.shape[:2])
        if self.max_side <= 0 or longest <= self.max_side:
            return rgb, 1.0
        import cv2

        factor = self.max_side / longest
        size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), factor

    def _run_hog(self, rgb: np.ndarray):
        boxes, scores, _ = self._hog.run(rgb, self.upsample, 0.0)
        if len(boxes) == 0:
            return None
        best = largest([(r.width() * r.height(), s) for r, s in zip(boxes, scores)])
        r = boxes[best]
        return (r.left(), r.top(), r.right(), r.bottom()), float(scores[best]), "hog"

    def _run_cnn(self, rgb: np.ndarray):
        found = self._cnn(rgb, self.upsample)
        if len(found) == 0:
            return None
        best = found[largest([(d.rect.width() * d.rect.height(), d.confidence) for d in found])]
        r = best.rect
        return (r.left(), r.top(), r.right(), r.bottom()), float(best.confidence), "cnn"


CONFIDENT_SHARE = 0.5  # a face competes for "largest" when it scores at least this share of the best


def largest(candidates: list[tuple[float, float]]) -> int:
    """Index of the largest ``(area, score)`` detection among those scoring at least
    :data:`CONFIDENT_SHARE` of the best score (a weak false positive of face size stays out)."""
    best = max(score for _, score in candidates)
    confident = [i for i, (_, score) in enumerate(candidates) if score >= CONFIDENT_SHARE * best]
    return max(confident, key=lambda i: candidates[i])
