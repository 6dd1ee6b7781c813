"""Weights-free face segmentation: landmark-seeded GrabCut refined by skin and hair colour models.

Everything is placed relative to the 68 landmarks of the aligned photo:

* **sure foreground**: the face polygon (jaw contour pulled slightly inwards, brows lifted by a
  fifth of the face height), which is face skin, features or fringe;
* **probable foreground**: an ellipse around the face that holds the hair and ears, and a neck
  strip under the jaw (width of the lower jaw, ``neck_length`` face heights long);
* **sure background**: the canvas border, canvas outside the photo, and everything below the
  jaw line outside the neck strip (shoulders and clothing: the training renders show only the
  clipped head), and the neck strip below its end;
* **probable background**: the rest.

GrabCut then separates head from background with colour mixtures learned from those seeds.
Its result is refined with two Gaussian colour models in CIE Lab: skin (sampled on the cheeks
and nose, away from eyes, brows and mouth) and hair (non-skin foreground above the brows).
Foreground pixels under the jaw line must look like skin to count as neck (a collar or scarf
does not); foreground pixels that match neither skin nor hair are returned to the background.

Labels (:data:`LABEL_NAMES`, colours :data:`PALETTE` as written to ``mask/<name>.png``):
0 background (black), 1 face (red), 2 hair (blue), 3 neck (cyan), 4 clothing (green). The kept
region — what ``segRes`` shows — is face + hair + neck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenerf.config import option

BACKGROUND, FACE, HAIR, NECK, CLOTH = 0, 1, 2, 3, 4
LABEL_NAMES = ("background", "face", "hair", "neck", "cloth")
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255], [0, 255, 255], [0, 255, 0]], dtype=np.uint8)
KEEP_LABELS = (FACE, HAIR, NECK)

JAW, BROWS, NOSE = np.arange(0, 17), np.arange(17, 27), np.arange(27, 36)
RIGHT_EYE, LEFT_EYE, MOUTH = np.arange(36, 42), np.arange(42, 48), np.arange(48, 60)


@dataclass(frozen=True)
class SegmentSettings:
    """Tuning of :func:`segment_face` (all lengths relative to the face)."""

    work_size: int = option(256, "resolution GrabCut works at", key="grabcut_size")
    iterations: int = 4         # GrabCut iterations
    neck_length: float = option(0.4, "neck kept below the chin (face heights)")
    skin_threshold: float = 3.5  # Mahalanobis distance under which a colour counts as skin
    hair_threshold: float = 4.0  # same for hair
    seed: int = option(0, "seed for repeatable segmentation (GrabCut's k-means)")


@dataclass
class Segmentation:
    labels: np.ndarray  # [S, S] uint8 label per pixel (see LABEL_NAMES)

    @property
    def keep(self) -> np.ndarray:
        """``[S, S]`` bool: pixels kept in the segmented image (face, hair, neck)."""
        return np.isin(self.labels, KEEP_LABELS)


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """``[S, S]`` labels -> ``[S, S, 3]`` uint8 colour-coded mask (:data:`PALETTE`)."""
    return PALETTE[np.clip(np.asarray(labels, dtype=np.int64), 0, len(PALETTE) - 1)]


@dataclass(frozen=True)
class FaceFrame:
    """Landmark-derived geometry of one face (pixels of the image the landmarks belong to)."""

    landmarks: np.ndarray  # [68, 2] (x, y)
    chin: np.ndarray       # [2]
    brow: np.ndarray       # [2] centre of the brows
    up: np.ndarray         # [2] unit vector chin -> brows
    right: np.ndarray      # [2] unit vector to the image right, orthogonal to ``up``
    height: float          # brows-to-chin distance
    width: float           # jaw width (landmark 0 to 16)

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> "FaceFrame":
        lm = np.asarray(landmarks, dtype=np.float64)
        chin, brow = lm[8], lm[BROWS].mean(axis=0)
        up = (brow - chin) / max(np.linalg.norm(brow - chin), 1e-9)
        right = np.array([-up[1], up[0]])
        if right @ (lm[16] - lm[0]) < 0:
            right = -right
        return cls(lm, chin, brow, up, right, float(np.linalg.norm(brow - chin)),
                   float(np.linalg.norm(lm[16] - lm[0])))

    def height_above_chin(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Signed distance along ``up`` from the chin, in face heights, per pixel."""
        return ((xx - self.chin[0]) * self.up[0] + (yy - self.chin[1]) * self.up[1]) / self.height

    def face_polygon(self, lift: float = 0.2, shrink: float = 0.06) -> np.ndarray:
        """``[27, 2]`` jaw (pulled ``shrink`` towards the face centre) + brows lifted by ``lift`` heights."""
        centre = self.landmarks[np.r_[JAW, BROWS]].mean(axis=0)
        jaw = self.landmarks[JAW] + shrink * (centre - self.landmarks[JAW])
        brows = self.landmarks[BROWS][::-1] + lift * self.height * self.up
        return np.concatenate([jaw, brows])

    def neck_polygon(self, length: float) -> np.ndarray:
        """``[4, 2]`` strip from the lower jaw (landmarks 4 and 12) down ``length`` heights below the chin."""
        left, right = self.landmarks[4], self.landmarks[12]
        inset = 0.08 * (right - left)
        bottom = -length * self.height * self.up
        drop_l = (self.chin - left) @ (-self.up) * (-self.up)
        drop_r = (self.chin - right) @ (-self.up) * (-self.up)
        return np.array([left + inset, right - inset, right - inset + drop_r + bottom,
                         left + inset + drop_l + bottom])


def _fill(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: the convex hull of ``polygon`` ``[N, 2]`` (x, y) filled."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(polygon).astype(np.int32)), 1)
    return mask.astype(bool)


def _head_ellipse(shape: tuple[int, int], frame: FaceFrame) -> np.ndarray:
    """Probable head region: an ellipse around the face reaching about one face height above the brows."""
    import cv2

    mask = np.zeros(shape, dtype=np.uint8)
    centre = frame.brow + 0.15 * frame.height * frame.up
    axes = (int(round(0.8 * frame.width)), int(round(1.0 * frame.height)))
    angle = float(np.degrees(np.arctan2(frame.right[1], frame.right[0])))
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), axes, angle, 0, 360, 1, -1)
    return mask.astype(bool)


def seed_mask(shape: tuple[int, int], frame: FaceFrame, inside: np.ndarray, neck_length: float) -> np.ndarray:
    """GrabCut initial mask ``[H, W]`` uint8 (GC_BGD / GC_FGD / GC_PR_BGD / GC_PR_FGD), see module docs."""
    import cv2

    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    height = frame.height_above_chin(xx, yy)
    face = _fill(shape, frame.face_polygon())
    neck = _fill(shape, frame.neck_polygon(neck_length))
    below_jaw = (height < 0.15) & ~_fill(shape, frame.face_polygon(lift=0.2, shrink=-0.05))
    mask = np.full(shape, cv2.GC_PR_BGD, dtype=np.uint8)
    mask[_head_ellipse(shape, frame)] = cv2.GC_PR_FGD
    mask[below_jaw] = cv2.GC_BGD
    mask[below_jaw & neck] = cv2.GC_PR_FGD
    mask[face] = cv2.GC_FGD
    border = max(2, shape[0] // 128)
    edge = np.zeros(shape, dtype=bool)
    edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = True, True, True, True
    mask[edge | ~inside] = cv2.GC_BGD
    return mask


def _grabcut(image: np.ndarray, mask: np.ndarray, iterations: int, seed: int) -> np.ndarray:
    """Run GrabCut from ``mask``; return the foreground ``[H, W]`` float32 (1 = foreground).

    If GrabCut cannot start (too few pixels of one kind to model), the seed regions are returned.
    """
    import cv2

    rgb8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    work = mask.copy()
    has_fg = np.isin(work, (cv2.GC_FGD, cv2.GC_PR_FGD)).any()
    has_bg = np.isin(work, (cv2.GC_BGD, cv2.GC_PR_BGD)).any()
    if has_fg and has_bg:
        cv2.setRNGSeed(int(seed))
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(np.ascontiguousarray(rgb8[..., ::-1]), work, None, bgd, fgd, max(1, iterations),
                        cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            work = mask.copy()
    return np.isin(work, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)


class ColourModel:
    """A Gaussian colour model in CIE Lab fitted robustly (the 80% most typical samples)."""

    def __init__(self, samples: np.ndarray):
        samples = np.asarray(samples, dtype=np.float64).reshape(-1, 3)
        if len(samples) < 20:
            raise ValueError("too few colour samples")
        mean, cov = samples.mean(axis=0), np.cov(samples.T) + np.eye(3)
        for _ in range(2):
            dist = self._distance(samples, mean, cov)
            core = samples[dist <= np.quantile(dist, 0.8)]
            mean, cov = core.mean(axis=0), np.cov(core.T) + np.eye(3)
        self.mean, self.cov = mean, cov

    @staticmethod
    def _distance(lab: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
        diff = lab - mean
        return np.sqrt(np.einsum("ni,ij,nj->n", diff, np.linalg.inv(cov), diff))

    def distance(self, lab: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of Lab colours ``[..., 3]`` -> ``[...]``."""
        lab = np.asarray(lab, dtype=np.float64)
        return self._distance(lab.reshape(-1, 3), self.mean, self.cov).reshape(lab.shape[:-1])


def to_lab(image: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` float RGB in [0, 1] -> CIE Lab (L in [0, 100])."""
    import cv2

    return cv2.cvtColor(np.clip(image, 0.0, 1.0).astype(np.float32), cv2.COLOR_RGB2Lab)


def skin_sample_mask(shape: tuple[int, int], frame: FaceFrame) -> np.ndarray:
    """Cheeks, nose and lower forehead: inside the face, away from eyes, brows and mouth."""
    import cv2

    lm = frame.landmarks
    region = _fill(shape, frame.face_polygon(lift=0.1, shrink=0.15))
    grow = max(3, int(round(0.06 * frame.height)))
    features = np.zeros(shape, dtype=np.uint8)
    for part in (RIGHT_EYE, LEFT_EYE, MOUTH, BROWS[:5], BROWS[5:]):
        cv2.fillConvexPoly(features, cv2.convexHull(np.round(lm[part]).astype(np.int32)), 1)
    features = cv2.dilate(features, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)).astype(bool)
    return region & ~features


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a float ``[h, w]`` mask to ``shape`` with smooth edges, threshold at 0.5 -> bool."""
    import cv2

    if mask.shape == shape:
        return mask > 0.5
    big = cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    sigma = 0.5 * shape[0] / mask.shape[0]
    return cv2.GaussianBlur(big, (0, 0), sigma) > 0.5


def _components_touching(mask: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """The connected components of ``mask`` that overlap ``anchor``."""
    import cv2

    count, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    hits = np.unique(comp[anchor & mask])
    return np.isin(comp, hits[hits > 0])


def _background_palette(lab: np.ndarray, sample: np.ndarray, k: int = 4) -> np.ndarray | None:
    """``[k, 3]`` Lab cluster centres of the background sample, or None if it is too small."""
    import cv2

    pixels = lab[sample].astype(np.float32)
    if len(pixels) < 10 * k:
        return None
    pixels = pixels[:: max(1, len(pixels) // 5000)]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, _, centres = cv2.kmeans(pixels, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return centres


def _palette_distance(lab: np.ndarray, centres: np.ndarray | None) -> np.ndarray:
    """Lab distance ``[...]`` of each colour to the nearest palette centre (inf without a palette)."""
    if centres is None:
        return np.full(lab.shape[:-1], np.inf)
    flat = lab.reshape(-1, 1, 3) - centres[None]
    return np.min(np.linalg.norm(flat, axis=-1), axis=1).reshape(lab.shape[:-1])


def label_pixels(image: np.ndarray, foreground: np.ndarray, frame: FaceFrame, inside: np.ndarray,
                 settings: SegmentSettings) -> np.ndarray:
    """Split the head foreground into face / hair / neck and label clothing (see module docs).

    Args:
        image: ``[H, W, 3]`` aligned photo; foreground / inside: ``[H, W]`` bool.
    Returns ``[H, W]`` uint8 labels.
    """
    shape = foreground.shape
    lab = to_lab(image)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    height = frame.height_above_chin(xx, yy)
    face = _fill(shape, frame.face_polygon())
    lower = (height < 0.15) & ~_fill(shape, frame.face_polygon(lift=0.2, shrink=-0.05))
    try:
        d_skin = ColourModel(lab[skin_sample_mask(shape, frame) & inside]).distance(lab)
    except (ValueError, np.linalg.LinAlgError):
        d_skin = np.zeros(shape)
    skin_like = d_skin < settings.skin_threshold
    d_background = _palette_distance(lab, _background_palette(lab, inside & ~foreground & (height > 0.5)))
    upper = foreground & ~lower
    labels = np.zeros(shape, dtype=np.uint8)
    labels[upper] = HAIR
    labels[upper & (skin_like | face)] = FACE
    hair_sample = upper & ~face & ~skin_like & (height > 1.0)
    if hair_sample.sum() >= 50:
        d_hair = ColourModel(lab[hair_sample]).distance(lab)
        stray = upper & ~face & ~skin_like & (d_hair > settings.hair_threshold) & (d_background < 10.0)
        labels[stray] = BACKGROUND
    neck_like = d_skin < 1.5 * settings.skin_threshold
    labels[foreground & lower & neck_like] = NECK
    labels[foreground & lower & ~neck_like] = CLOTH
    _label_clothing(labels, lower & inside & ~foreground & (d_background > 15.0))
    return labels


def _label_clothing(labels: np.ndarray, candidates: np.ndarray) -> None:
    """Mark clothing candidates as clothing after removing specks (in place)."""
    import cv2

    cloth = cv2.morphologyEx(candidates.astype(np.uint8), cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    labels[cloth.astype(bool) & (labels == BACKGROUND)] = CLOTH


def segment_face(image: np.ndarray, landmarks: np.ndarray, inside: np.ndarray | None = None,
                 settings: SegmentSettings = SegmentSettings()) -> Segmentation:
    """Segment the head of an aligned photo (see the module docstring for the method).

    Args:
        image: ``[H, W, 3]`` float RGB in [0, 1] (usually the 512^2 aligned photo).
        landmarks: ``[68, 2]`` (x, y) landmarks in ``image``.
        inside: ``[H, W]`` bool, pixels that come from the photo (default: all).
    """
    import cv2

    shape = image.shape[:2]
    inside = np.ones(shape, dtype=bool) if inside is None else np.asarray(inside, dtype=bool)
    scale = min(1.0, settings.work_size / max(shape))
    small_shape = (max(8, int(round(shape[0] * scale))), max(8, int(round(shape[1] * scale))))
    small = cv2.resize(image.astype(np.float32), small_shape[::-1], interpolation=cv2.INTER_AREA)
    small_inside = cv2.resize(inside.astype(np.uint8), small_shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    factor = np.array([small_shape[1] / shape[1], small_shape[0] / shape[0]])
    small_frame = FaceFrame.from_landmarks(np.asarray(landmarks) * factor)
    seeds = seed_mask(small_shape, small_frame, small_inside, settings.neck_length)
    foreground = _resize_mask(_grabcut(small, seeds, settings.iterations, settings.seed), shape)
    frame = FaceFrame.from_landmarks(landmarks)
    face = _fill(shape, frame.face_polygon())
    foreground = _components_touching((foreground | face) & inside, face)
    return Segmentation(label_pixels(image, foreground, frame, inside, settings))
