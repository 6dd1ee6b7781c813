"""Weights-free head / neck / torso masks and a clean background plate for a fixed-camera video.

1. **Plate.** On a sample of frames, the wild-photo segmentation
   (:func:`facenerf.preprocess.fitting.segment.segment_face`: GrabCut seeded by the landmarks,
   refined by skin and hair colour models) marks the person: its regions attached to the face
   or the bottom edge (a green cushion on a shelf is not hair or clothing). Each pixel of the plate is the
   median of that pixel over the sample frames where it is not covered (with a margin). Pixels
   the person never uncovers are in-painted from their surroundings and remembered, with the
   share of sample frames in which they were covered. Only inside the person's motion hull,
   though (:func:`motion_hull`: the region its moving outline and the frame's lower edge enclose
   over the sample frames): outside it, what GrabCut called person in every sample never
   changes, so it is background seen in every frame (a photo's person-coloured parts next to a
   speaker), and the plate takes its median.
2. **Person.** In every frame, pixels that differ from the plate (in-painted pixels included),
   plus the never-uncovered pixels that are usually covered, form the person after a
   morphological clean-up; only regions touching the face or the bottom edge (the torso) are
   kept.
3. **Parts.** The head ends at a cut fixed to the head, not to the image: a plane a little below
   the neutral chin that rises towards the nape, across a neck cylinder (:func:`neck_cut`). It is
   posed with each frame's tracked head and projected (:func:`below_cut`), so the under-chin
   strip is head or neck alike in every frame, however the head nods or turns. Everything inside
   the face outline widened by a tenth (the chin, even with the jaw open) stays head. Below the
   cut, skin-coloured pixels in the neck strip are the neck and the rest is the torso. Without
   poses, a line through the chin across the face's up direction stands in for the cut.

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
    cut_below: float = 0.1       # head / neck cut at the throat, below the neutral chin, in jaw widths (~12 mm)
    cut_tilt: float = 25.0       # the cut plane rises from the throat towards the nape (degrees)
    neck_radius: float = 0.45    # neck cylinder radius, in jaw widths (~55 mm: neck breadth ~110 mm)
    neck_behind: float = 0.9     # neck axis behind the chin, in jaw widths (throat ~55 mm behind it)


def _fill(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    import cv2

    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(polygon).astype(np.int32)), 1)
    return mask.astype(bool)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def motion_hull(images: list[np.ndarray], landmarks: list[np.ndarray], floor: float = 0.02,
                close: float = 0.01, body: float = 0.9) -> np.ndarray | None:
    """``[H, W]`` bool: the region that the pixels changing over ``images`` (float ``[H, W, 3]``
    frames spread over the clip; landmarks ``[68, 2]`` each) enclose together with the frame's
    lower edge, and with its side edges below the lowest chin; ``None`` where that region does not
    hold the face and the body below it (``body``: the share of the face polygon, and of the
    jaw-wide column from half a face height under the chin to the lower edge, that must be
    inside), as when a still torso's outline barely moves, or when part of the head's outline
    never changes (dark hair on a dark wall) and leaves the outline open.

    A pixel changes when its standard deviation over the frames (blurred a little, largest over
    RGB) exceeds ``floor`` and four times the 25th percentile of all pixels' (the noise); gaps in
    the outline up to ``close`` of the image size are closed.
    """
    import cv2
    from scipy.ndimage import binary_fill_holes

    height, width = images[0].shape[:2]
    mean = np.zeros((height, width, 3), np.float64)
    square = np.zeros((height, width, 3), np.float64)
    for image in images:
        blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.8)
        mean += blurred
        square += np.square(blurred, dtype=np.float64)
    mean /= len(images)
    std = np.sqrt(np.maximum(square / len(images) - mean ** 2, 0.0)).max(axis=-1)   # [H, W]
    moved = std > max(floor, 4.0 * float(np.percentile(std, 25)))
    k = max(1, int(round(close * max(height, width))))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    wall = cv2.morphologyEx(moved.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    frames = [FaceFrame.from_landmarks(lms) for lms in landmarks]
    chin = int(np.clip(max(f.chin[1] for f in frames), 0, height - 1))
    wall[-1, :] = True
    wall[chin:, 0] = wall[chin:, -1] = True
    hull = binary_fill_holes(wall)
    hull[-1, :] = hull[-2, :]                       # the edges closed the outline; they are not in it
    hull[chin:, 0], hull[chin:, -1] = hull[chin:, 1], hull[chin:, -2]
    face_height = float(np.median([f.height for f in frames]))
    middle = np.median(np.stack(landmarks), axis=0)                                 # [68, 2]
    face = _fill((height, width), FaceFrame.from_landmarks(middle).face_polygon())
    if face.any() and hull[face].mean() < body:   # an open outline: the face is not enclosed
        return None
    left, right = (int(np.clip(round(x), 0, width)) for x in sorted(middle[[4, 12], 0]))
    top = int(np.clip(round(chin + 0.5 * face_height), 0, height))
    column = hull[top:, left:right]   # empty where the chin is near the lower edge
    if column.size and column.mean() < body:
        return None
    return hull


@dataclass
class Plate:
    image: np.ndarray         # [H, W, 3] float32 background
    known: np.ndarray         # [H, W] bool, seen uncovered in some sample frame
    covered: np.ndarray       # [H, W] float32 share of sample frames in which the pixel was person
    change: float = 0.0       # median over the background of its standard deviation across the samples
    camera_shift: float = 0.0  # px: how far the background moves across the samples (a turning camera)


# a still camera's background changes by under 0.004 (noise, compression) on the clips measured; a
# moving camera or background gives several times more: the plate is then a blur
MOVING_BACKGROUND = 0.012
# the background corners of a still camera's samples moved by at most 0.023 px on the clips measured
# (benchmarks/results/video_shake_cpu.md: 0.011 px still, 0.137 px after --stabilise, 9.4 px for a
# hand-held shake of up to 9.7 px, whose change above was only 0.0088 yet cost 4 dB held out; 5 to 6 px
# for panned photos)
MOVING_CAMERA_PX = 1.0


def background_change(stack: np.ndarray) -> float:
    """Median, over pixels seen uncovered in 3 or more sample frames, of their standard deviation
    across those frames (largest over RGB); ``stack`` [S, H, W, 3] holds NaN where covered."""
    seen = np.isfinite(stack[..., 0]).sum(axis=0) >= 3           # [H, W]
    if not seen.any():
        return 0.0
    return float(np.median(np.nanstd(stack[:, seen], axis=0).max(axis=-1)))


def background_plate(images: list[np.ndarray], landmarks: list[np.ndarray], margin: float = 0.02) -> Plate:
    """The plate from sample frames ``images`` (float ``[H, W, 3]``) and their landmarks ``[68, 2]``."""
    import cv2

    height, width = images[0].shape[:2]
    radius = max(1, int(round(margin * max(height, width))))
    stack = np.full((len(images), height, width, 3), np.nan, np.float32)
    covered = np.zeros((height, width), np.float32)
    first_person = None
    for n, (image, lms) in enumerate(zip(images, landmarks)):
        person = person_region(image, lms)
        first_person = person if first_person is None else first_person
        covered += person
        free = ~_dilate(person, radius)
        stack[n][free] = image[free]
    known = np.isfinite(stack[..., 0]).any(axis=0)
    plate = np.zeros((height, width, 3), np.float32)
    if known.any():
        plate[known] = np.nanmedian(stack[:, known], axis=0)
    hull = motion_hull(images, landmarks)
    if hull is not None:   # still pixels GrabCut always took for the person, outside its moving outline
        still = ~known & ~hull
        plate[still] = np.median(np.stack([image[still] for image in images]), axis=0)
        known |= still
        covered[still] = 0.0
    if (~known).any() and known.any():
        plate8 = (np.clip(plate, 0, 1) * 255 + 0.5).astype(np.uint8)
        plate8 = cv2.inpaint(plate8, (~known).astype(np.uint8), max(3, radius), cv2.INPAINT_TELEA)
        plate = plate8.astype(np.float32) / 255.0
    return Plate(plate, known, covered / max(len(images), 1), background_change(stack),
                 camera_shift(images, first_person))


def camera_shift(images: list[np.ndarray], first_person: np.ndarray | None) -> float:
    """How far (px, at the frame's corners) the background of ``images`` moves from the first
    one's (outside its person ``first_person`` [H, W]): ~0 for a still camera."""
    from facenerf.preprocess.video.stabilise import SPEAKER_MARGIN, background_motion

    if len(images) < 2:
        return 0.0
    speaker = None if first_person is None else dilated(first_person, SPEAKER_MARGIN)
    found = background_motion(images, speaker)
    height, width = images[0].shape[:2]
    return found.largest_shift(width, height)


def person_mask(image: np.ndarray, plate: Plate, frame: FaceFrame, settings: MaskSettings) -> np.ndarray:
    """``[H, W]`` bool: pixels of the person (differ from the plate, cleaned, attached to face or torso).

    Pixels the sample frames never showed uncovered count as person where they were usually
    covered: the in-painted plate there is a guess, and near the neck it takes the skin's colour.
    Where they were mostly uncovered (the margin kept round the person, e.g. just above a head
    that barely moves) the in-painting spans a few pixels and is close, so there too a pixel
    that differs from it is person.
    """
    import cv2

    shape = image.shape[:2]
    blur = lambda x: cv2.GaussianBlur(x, (0, 0), 0.8)
    differs = np.abs(blur(image) - blur(plate.image)).max(axis=-1) > settings.threshold
    mask = differs | (~plate.known & (plate.covered > 0.5))
    mask |= _fill(shape, frame.face_polygon())
    k = max(1, round(0.006 * max(shape)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2)
    return _fill_holes(_attached(mask > 0, frame))


def person_region(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: the person that GrabCut finds around the face of ``landmarks [68, 2]``
    (:func:`segment_face`), the parts of it attached to the face or the frame's lower edge."""
    return _attached(segment_face(image, landmarks).labels > 0, FaceFrame.from_landmarks(landmarks))


def dilated(mask: np.ndarray, fraction: float) -> np.ndarray:
    """``mask`` grown by ``fraction`` of the frame's larger side (at least one pixel)."""
    return _dilate(mask, max(1, int(round(fraction * max(mask.shape)))))


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


def neck_cut(template: np.ndarray, settings: MaskSettings, n: int = 33) -> np.ndarray:
    """``[n, 3]`` head-frame points (template units) of the head / neck cut, left to right.

    The front half of a vertical neck cylinder (``neck_radius`` jaw widths, its axis
    ``neck_behind`` jaw widths behind the chin) cut by a plane ``cut_below`` jaw widths below the
    chin at the throat, rising by ``cut_tilt`` towards the nape. ``template [68, 3]`` is the
    neutral landmark template of the head frame (y up, z out of the face).
    """
    width = float(np.linalg.norm(template[16] - template[0]))
    chin = template[8]
    radius, axis_z = settings.neck_radius * width, chin[2] - settings.neck_behind * width
    angle = np.linspace(-np.pi / 2, np.pi / 2, n)                                 # [n] round the neck
    z = axis_z + radius * np.cos(angle)
    y = chin[1] - settings.cut_below * width + (axis_z + radius - z) * np.tan(np.radians(settings.cut_tilt))
    return np.stack([chin[0] + radius * np.sin(angle), y, z], axis=1)


def project_cut(points: np.ndarray, rvec: np.ndarray, tvec: np.ndarray, kmat: np.ndarray) -> np.ndarray:
    """``[n, 2]`` pixels of head-frame ``points [n, 3]`` under the OpenCV head -> camera pose."""
    import cv2

    pixels, _ = cv2.projectPoints(np.asarray(points, np.float64), np.asarray(rvec, np.float64),
                                  np.asarray(tvec, np.float64), np.asarray(kmat, np.float64), None)
    return pixels.reshape(-1, 2)


def frame_cut(head, i: int, width: int, height: int, settings: MaskSettings) -> np.ndarray:
    """``[n, 2]`` pixels of the neck cut in frame ``i`` of a tracked clip (``head``: a
    :class:`~facenerf.preprocess.video.tracking.HeadTrack`; frames ``width`` x ``height``)."""
    from facenerf.preprocess.video.headpose import camera_matrix

    return project_cut(neck_cut(head.template, settings), head.rvecs[i], head.tvecs[i],
                       camera_matrix(head.focal, width, height))


def below_cut(shape: tuple[int, int], cut: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels below the projected cut ``[n, 2]`` (x, y), and beside it below the
    straight line that continues its ends (the shoulders' side of the image)."""
    import cv2

    along = cut[-1] - cut[0]
    along /= max(np.linalg.norm(along), 1e-9)
    if along[0] < 0:
        cut, along = cut[::-1], -along
    down = np.array([-along[1], along[0]])                      # image y grows downwards
    far = 4.0 * max(shape)
    left, right = cut[0] - far * along, cut[-1] + far * along
    polygon = np.concatenate([[left], cut, [right, right + far * down, left + far * down]])
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


def split_parts(image: np.ndarray, person: np.ndarray, frame: FaceFrame, settings: MaskSettings,
                cut: np.ndarray | None = None) -> np.ndarray:
    """``[H, W]`` uint8 labels: head above the cut (``cut [n, 2]``, see :func:`below_cut`; None: the
    chin line), skin-coloured neck strip and torso below it."""
    shape = person.shape
    if cut is None:
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
        lower = frame.height_above_chin(xx, yy) < settings.chin_line
    else:
        lower = below_cut(shape, cut)
    lower &= ~_fill(shape, frame.face_polygon(lift=0.2, shrink=-settings.face_margin))
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


def frame_labels(image: np.ndarray, landmarks: np.ndarray, plate: Plate, settings: MaskSettings,
                 cut: np.ndarray | None = None) -> np.ndarray:
    """Head / neck / torso labels ``[H, W]`` of one frame (``cut [n, 2]``: the projected neck cut)."""
    frame = FaceFrame.from_landmarks(landmarks)
    return split_parts(image, person_mask(image, plate, frame, settings), frame, settings, cut)


def torso_layer(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[H, W, 4]`` straight RGBA: the frame's neck and torso, alpha = their mask."""
    alpha = ((labels == NECK) | (labels == TORSO)).astype(np.float32)[..., None]
    return np.concatenate([image * alpha, alpha], axis=-1)
