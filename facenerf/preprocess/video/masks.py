"""Weights-free head / neck / torso masks and a clean background plate for a fixed-camera video.

1. **Plate.** On a sample of frames, the wild-photo segmentation
   (:func:`facenerf.preprocess.fitting.segment.segment_face`: GrabCut seeded by the landmarks,
   refined by skin and hair colour models) marks the person: its regions attached to the face
   or the bottom edge (a green cushion on a shelf is not hair or clothing). Each pixel of the plate is the
   median of that pixel over the sample frames where it is not covered (with a margin). Pixels
   the person never uncovers are in-painted from their surroundings and remembered, with the
   share of sample frames in which they were covered.
2. **Person.** In every frame, pixels that differ from the plate, plus the never-uncovered
   pixels that are usually covered, form the person after a morphological clean-up; only
   regions touching the face or the bottom edge (the torso) are kept.
3. **Parts.** The landmarks split the person: above the chin's height, and inside the face
   outline widened by a tenth (which takes in the underside of the jaw), is the head; below,
   skin-coloured pixels in the neck strip are the neck and the rest is the torso.

The torso layer (``torso_imgs``) is the frame's neck and torso pixels with their mask as alpha;
what the head hides of them is not in-painted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenerf.preprocess.fitting.segment import FaceFrame, ColourModel, segment_face, skin_sample_mask, to_lab

BACKGROUND, HEAD, NECK, TORSO = 0, 1, 2, 3


@dataclass(frozen=True)
class MaskSettings:
    samples: int = 24            # frames segmented with GrabCut for the plate
    threshold: float = 0.09      # colour difference (max over RGB, in [0, 1]) that counts as person
    skin_threshold: float = 5.0  # Mahalanobis distance to the face's skin colour for the neck
    neck_length: float = 1.2     # neck strip below the chin, in face heights
    chin_line: float = 0.0       # head / neck split, in face heights above the chin (outside the face)
    face_margin: float = 0.1     # the face polygon (always head) widened by this share of its size


def _fill(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(polygon).astype(np.int32)), 1)
    return mask.astype(bool)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


@dataclass
class Plate:
    image: np.ndarray         # [H, W, 3] float32 background
    known: np.ndarray         # [H, W] bool, seen uncovered in some sample frame
    covered: np.ndarray       # [H, W] float32 share of sample frames in which the pixel was person


def background_plate(images: list[np.ndarray], landmarks: list[np.ndarray], margin: float = 0.02) -> Plate:
    """The plate from sample frames ``images`` (float ``[H, W, 3]``) and their landmarks ``[68, 2]``."""
    import cv2

    height, width = images[0].shape[:2]
    radius = max(1, int(round(margin * max(height, width))))
    stack = np.full((len(images), height, width, 3), np.nan, np.float32)
    covered = np.zeros((height, width), np.float32)
    for n, (image, lms) in enumerate(zip(images, landmarks)):
        person = _attached(segment_face(image, lms).labels > 0, FaceFrame.from_landmarks(lms))
        covered += person
        free = ~_dilate(person, radius)
        stack[n][free] = image[free]
    known = np.isfinite(stack[..., 0]).any(axis=0)
    plate = np.zeros((height, width, 3), np.float32)
    if known.any():
        plate[known] = np.nanmedian(stack[:, known], axis=0)
    if (~known).any() and known.any():
        plate8 = (np.clip(plate, 0, 1) * 255 + 0.5).astype(np.uint8)
        plate8 = cv2.inpaint(plate8, (~known).astype(np.uint8), max(3, radius), cv2.INPAINT_TELEA)
        plate = plate8.astype(np.float32) / 255.0
    return Plate(plate, known, covered / max(len(images), 1))


def person_mask(image: np.ndarray, plate: Plate, frame: FaceFrame, settings: MaskSettings) -> np.ndarray:
    """``[H, W]`` bool: pixels of the person (differ from the plate, cleaned, attached to face or torso)."""
    import cv2

    shape = image.shape[:2]
    blur = lambda x: cv2.GaussianBlur(x, (0, 0), 0.8)
    differs = np.abs(blur(image) - blur(plate.image)).max(axis=-1) > settings.threshold
    mask = (differs & plate.known) | (~plate.known & (plate.covered > 0.5))
    mask |= _fill(shape, frame.face_polygon())
    k = max(1, round(0.006 * max(shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    return _fill_holes(_attached(mask > 0, frame))


def _attached(mask: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """The connected regions of ``mask [H, W]`` that touch the face or the bottom edge (the torso);
    a detached region (an object in the room) is not the person."""
    import cv2

    _, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    anchor = _fill(mask.shape, frame.face_polygon())
    anchor[-1, :] = True
    keep = np.unique(comp[anchor & mask])
    return np.isin(comp, keep[keep > 0])


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill regions enclosed by ``mask`` (not connected to the image border)."""
    from scipy.ndimage import binary_fill_holes

    return binary_fill_holes(mask)


def split_parts(image: np.ndarray, person: np.ndarray, frame: FaceFrame, settings: MaskSettings) -> np.ndarray:
    """``[H, W]`` uint8 labels: head above the jaw line, skin-coloured neck strip, torso below."""
    shape = person.shape
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    height = frame.height_above_chin(xx, yy)
    lower = (height < settings.chin_line) & ~_fill(shape, frame.face_polygon(lift=0.2, shrink=-settings.face_margin))
    labels = np.zeros(shape, np.uint8)
    labels[person & ~lower] = HEAD
    below = person & lower
    if below.any():
        lab = to_lab(image)
        neck_strip = _dilate(_fill(shape, frame.neck_polygon(settings.neck_length)), max(1, int(0.04 * frame.width)))
        candidates = below & neck_strip
        skin = np.zeros(shape, bool)
        try:
            model = ColourModel(lab[skin_sample_mask(shape, frame)])
            skin[candidates] = model.distance(lab[candidates]) < settings.skin_threshold
        except (ValueError, np.linalg.LinAlgError):
            skin = candidates
        labels[below] = TORSO
        labels[candidates & skin] = NECK
    return labels


def frame_labels(image: np.ndarray, landmarks: np.ndarray, plate: Plate, settings: MaskSettings) -> np.ndarray:
    """Head / neck / torso labels ``[H, W]`` of one frame."""
    frame = FaceFrame.from_landmarks(landmarks)
    return split_parts(image, person_mask(image, plate, frame, settings), frame, settings)


def torso_layer(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` straight RGBA: the frame's neck and torso, alpha = their mask."""
    alpha = ((labels == NECK) | (labels == TORSO)).astype(np.float32)[..., None]
    return np.concatenate([image * alpha, alpha], axis=-1)
