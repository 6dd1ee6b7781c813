"""The face template and the MoFaNeRF camera rig that wild photos are aligned to.

Two templates work together:

* the **3D template**: the mean synthetic head of :mod:`facenerf.data.synthetic` (68 canonical
  landmarks and the triangle mesh), built to adult dimensions (eye-centre distance ~63 mm,
  bizygomatic width ~135 mm, nasion-menton ~118 mm; the surveys are cited in
  :mod:`facenerf.data.synthetic.head`), converted from millimetres (FaceScape TU frame) to scene
  units (1 unit = 50 mm). The head pose of a photo is estimated against it.
* the **2D alignment template**: 68 ``(x, y)`` positions in a 512 x 512 image that a photo's
  landmarks are mapped onto, so that the aligned photo is framed like a frontal training view.
  It is derived from the frontal (pitch 0, yaw 0) neutral training views' landmark projections,
  averaged over the training identities (:func:`frontal_landmark_template`); training stores it
  in every checkpoint (config key ``alignment_template``) and ``wildData_preprocess.py
  --template`` reads it from a checkpoint or a rendered dataset (:func:`load_alignment_template`).
  Without one, the default is the rig's frontal projection of the real-size mean head.

For reference, the original code's template (taken from FaceScape renders) has its eye centres
108.7 px apart on an eye line at y ~ 210 and the chin (landmark 8) at y ~ 390 in 512 x 512
(``glob_neutral_tmp_LM``, reference section 7); the default template here is within 5% of these.

Pixel coordinates are those of the training images: rounding gives the pixel that shows a
landmark, and images follow ``pixel_center`` (0.5 for the original ``render.py``, see
:mod:`facenerf.core.rays`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenerf.core.cameras import Intrinsics, project_points
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training.rig import BASE_RESOLUTION, RADIUS, mofanerf_pose, rig_intrinsics  # noqa: F401

MM_PER_UNIT = 50.0           # 1 scene unit = 50 mm
DEFAULT_PIXEL_CENTER = 0.5   # render.py's default (the original renderer)
FRONTAL_COSINE = 0.9998      # a camera within ~1 degree of +Z counts as frontal
TEMPLATE_KEY = "alignment_template"   # checkpoint config entry


def frontal_c2w(radius: float = RADIUS) -> np.ndarray:
    """``[4, 4]`` OpenGL camera-to-world pose of the frontal training view (camera at (0, 0, radius))."""
    return mofanerf_pose(0.0, 0.0, radius).double().numpy()


def rescale_pixels(xy: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """Pixel coordinates ``[N, 2]`` of an image resized from ``from_size`` to ``to_size`` (same content)."""
    return (np.asarray(xy, dtype=np.float64) + 0.5) * (to_size / from_size) - 0.5


@dataclass(frozen=True)
class AlignmentTemplate:
    """68 landmark positions ``[68, 2]`` (x, y) in a 512 x 512 frontal training view."""

    landmarks_512: np.ndarray
    source: str = "rig frontal projection of the real-size mean head"
    identities: int = 0            # training identities averaged (0 = not from data)
    pixel_center: float = DEFAULT_PIXEL_CENTER

    def at(self, size: int) -> np.ndarray:
        """The template in a ``size x size`` image."""
        return rescale_pixels(self.landmarks_512, BASE_RESOLUTION, size)

    def to_config(self) -> dict:
        """JSON-able form stored in checkpoints."""
        return {"landmarks_512": np.round(self.landmarks_512, 4).tolist(), "source": self.source,
                "identities": int(self.identities), "pixel_center": float(self.pixel_center)}

    @classmethod
    def from_config(cls, entry: dict, where: str) -> "AlignmentTemplate":
        try:
            xy = np.asarray(entry["landmarks_512"], dtype=np.float64).reshape(68, 2)
            return cls(xy, str(entry.get("source", where)), int(entry.get("identities", 0)),
                       float(entry.get("pixel_center", DEFAULT_PIXEL_CENTER)))
        except (KeyError, TypeError, ValueError) as err:
            raise FaceNerfError(f"the alignment template in {where} is damaged ({err}); pass the training "
                                "data folder with --template instead") from err


@dataclass(frozen=True)
class FaceTemplate:
    """3D template in scene units plus the 2D alignment template for one image size."""

    landmarks_3d: np.ndarray  # [68, 3] scene units, TU frame
    vertices: np.ndarray      # [V, 3] scene units, TU frame
    faces: np.ndarray         # [F, 3] int64 vertex indices
    image_size: int           # side of the aligned square image (pixels)
    alignment: AlignmentTemplate | None = None   # None: the frontal projection of landmarks_3d

    @property
    def pixel_center(self) -> float:
        return self.alignment.pixel_center if self.alignment is not None else DEFAULT_PIXEL_CENTER

    @property
    def intrinsics(self) -> Intrinsics:
        """The rig camera for pixel coordinates of this template (principal point moved by ``pixel_center``)."""
        K, c = rig_intrinsics(self.image_size), self.pixel_center
        return Intrinsics(K.width, K.height, K.fx, K.fy, K.cx - c, K.cy - c)

    @property
    def landmarks_2d(self) -> np.ndarray:
        """``[68, 2]`` (x, y) pixels the photo's landmarks are aligned to."""
        if self.alignment is not None:
            return self.alignment.at(self.image_size)
        xy = project_points(np.asarray(self.landmarks_3d, dtype=np.float64), frontal_c2w(), self.intrinsics)
        return np.asarray(xy, dtype=np.float64)

    @classmethod
    def from_millimetres(cls, landmarks_mm: np.ndarray, vertices_mm: np.ndarray, faces: np.ndarray,
                         image_size: int = BASE_RESOLUTION, alignment: AlignmentTemplate | None = None
                         ) -> "FaceTemplate":
        """Build from TU-frame millimetre arrays ``[68, 3]``, ``[V, 3]`` and faces ``[F, 3]``."""
        landmarks_mm = np.asarray(landmarks_mm, dtype=np.float64)
        if landmarks_mm.shape != (68, 3):
            raise ValueError(f"template landmarks must be [68, 3], got {landmarks_mm.shape}")
        return cls(
            landmarks_3d=landmarks_mm / MM_PER_UNIT,
            vertices=np.asarray(vertices_mm, dtype=np.float64) / MM_PER_UNIT,
            faces=np.asarray(faces, dtype=np.int64),
            image_size=int(image_size),
            alignment=alignment,
        )


def load_template(image_size: int = BASE_RESOLUTION, alignment: AlignmentTemplate | None = None) -> FaceTemplate:
    """The mean synthetic head (:func:`facenerf.data.synthetic.canonical_landmarks_3d`, ``mean_head_mesh``)
    with ``alignment`` as its 2D template (default: its own frontal projection)."""
    from facenerf.data.synthetic import canonical_landmarks_3d, mean_head_mesh

    vertices, faces = mean_head_mesh()
    return FaceTemplate.from_millimetres(canonical_landmarks_3d(), vertices, faces, image_size, alignment)


# ----------------------------------------------------------------------------- from training data

def frontal_landmark_template(c2w: np.ndarray, landmarks: np.ndarray, identity: np.ndarray, size: int,
                              pixel_center: float, source: str) -> AlignmentTemplate | None:
    """The mean landmark positions over frontal views, each identity's views averaged first.

    Args:
        c2w: ``[F, 4, 4]`` cameras of neutral frames; landmarks: ``[F, 68, 2]`` their landmark
            pixels (NaN = hidden) in ``size x size`` images; identity: ``[F]`` ids.
    A landmark hidden in some views is averaged over the others. Returns None when no view is
    frontal or a landmark is hidden in every frontal view.
    """
    centres = np.asarray(c2w, dtype=np.float64)[:, :3, 3]
    cosine = centres[:, 2] / np.maximum(np.linalg.norm(centres, axis=1), 1e-9)
    lm = np.asarray(landmarks, dtype=np.float64)
    ids = np.asarray(identity)
    frontal = cosine > FRONTAL_COSINE
    people = [lm[frontal & (ids == i)] for i in np.unique(ids[frontal])]
    people = [p for p in people if np.isfinite(p).any()]
    if not people:
        return None
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # all-NaN slices: a landmark hidden for one person
        per_person = np.stack([np.nanmean(p, axis=0) for p in people])      # [P, 68, 2]
        mean = np.nanmean(per_person, axis=0)
    if not np.isfinite(mean).all():
        return None
    return AlignmentTemplate(rescale_pixels(mean, size, BASE_RESOLUTION), source, len(people), float(pixel_center))


def project_frontal(landmarks_3d: list[np.ndarray], K: Intrinsics, pixel_center: float) -> np.ndarray:
    """Mean pixel position ``[68, 2]`` of neutral 3D landmarks ``[68, 3]`` (scene units) in the frontal view."""
    c2w = frontal_c2w()
    xy = [np.asarray(project_points(np.asarray(p, dtype=np.float64), c2w, K), dtype=np.float64) - pixel_center
          for p in landmarks_3d]
    return np.mean(xy, axis=0)


def _neutral_3d(people) -> list[np.ndarray]:
    """The neutral 3D landmarks ``[68, 3]`` of every identity that has them (all finite)."""
    found = [np.asarray(p[0], dtype=np.float64) for p in people if p is not None]
    return [p for p in found if p.shape == (68, 3) and np.isfinite(p).all()]


def template_from_training_data(data) -> AlignmentTemplate | None:
    """The template of a :class:`~facenerf.data.mofanerf_dataset.MoFaNeRFData`.

    The training identities' neutral 3D landmarks projected by the frontal rig camera (every
    landmark, also those the face hides), else the landmarks of their frontal neutral frames.
    """
    people = _neutral_3d([p.landmarks for p in data.identities])
    source = "frontal projection of the training identities' neutral landmarks"
    if people:
        xy = project_frontal(people, data.K, data.pixel_center)
        return AlignmentTemplate(rescale_pixels(xy, data.K.width, BASE_RESOLUTION), source, len(people),
                                 data.stored_pixel_center)
    frames = data.frames
    neutral = np.flatnonzero(frames.expression == 0)
    if len(neutral) == 0:
        return None
    landmarks = []
    for frame in neutral:
        xy = data.landmarks_xy(int(frame))
        landmarks.append(np.full((68, 2), np.nan) if xy is None else xy.numpy())
    return frontal_landmark_template(frames.c2w[neutral], np.stack(landmarks), frames.identity[neutral],
                                     data.K.width, data.stored_pixel_center, "frontal neutral training views")


def template_from_dataset(folder: str | Path) -> AlignmentTemplate:
    """The template of a rendered dataset (a ``multiViewImages`` folder or the data root above it)."""
    from facenerf.data.facescape import parse_multiview

    root = Path(folder)
    if (root / "multiViewImages").is_dir():
        root = root / "multiViewImages"
    dataset = parse_multiview(root, "all", expressions=[0])
    frames = dataset.frames()
    if not frames:
        raise FaceNerfError(f"no neutral frames in {root}; render the neutral expression or pass a checkpoint")
    K, centre = frames[0].intrinsics, frames[0].pixel_center
    people = _neutral_3d([r.landmarks_3d for r in dataset.identities.values()])
    if people:
        xy = project_frontal(people, K, centre)
        return AlignmentTemplate(rescale_pixels(xy, K.width, BASE_RESOLUTION),
                                 f"frontal projection of the neutral landmarks of {root}", len(people), centre)
    frames = [f for f in frames if f.landmarks_2d is not None]
    landmarks = [np.where(f.landmarks_visible[:, None], f.landmarks_2d, np.nan) if f.landmarks_visible is not None
                 else f.landmarks_2d for f in frames]
    template = frontal_landmark_template(np.stack([f.c2w for f in frames]), np.stack(landmarks) if frames else
                                         np.zeros((0, 68, 2)), np.array([f.identity for f in frames]), K.width,
                                         centre, f"frontal neutral views of {root}") if frames else None
    if template is None:
        raise FaceNerfError(f"no 3D landmarks next to {root} and no frontal neutral view with landmarks; "
                            "render the data with this render.py or pass a checkpoint with --template")
    return template


def load_alignment_template(path: str | Path) -> AlignmentTemplate:
    """The template stored in a training checkpoint, or derived from a rendered dataset folder."""
    source = Path(path)
    if source.is_dir():
        return template_from_dataset(source)
    if not source.is_file():
        raise FaceNerfError(f"--template {source} not found: pass a training checkpoint (.pt) or a rendered "
                            "dataset folder (multiViewImages)")
    from facenerf.engine.checkpoint import load_checkpoint

    payload = load_checkpoint(source)
    entry = payload.get("config", {}).get(TEMPLATE_KEY)
    if not entry:
        raise FaceNerfError(f"{source} stores no alignment template (it was trained before templates were "
                            "stored); pass its training data folder with --template instead")
    return AlignmentTemplate.from_config(entry, str(source))
