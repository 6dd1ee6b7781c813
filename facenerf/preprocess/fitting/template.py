"""The 3D face template and the MoFaNeRF camera rig the wild-photo preprocessing aligns to.

The template is the mean synthetic head of :mod:`facenerf.data.synthetic`: its 68 canonical
3D landmarks and its triangle mesh, converted from millimetres (FaceScape TU frame) to scene
units (1 unit = 50 mm). Projecting the 3D landmarks with the frontal training camera (pitch 0,
yaw 0, radius 16, focal 1200 px at 512 x 512, principal point at the centre) gives the 2D
landmark template that photos are aligned to, so an aligned photo is framed like a frontal
training render.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenerf.core.cameras import Intrinsics, project_points
from facenerf.preprocess.training.rig import BASE_RESOLUTION, RADIUS, mofanerf_pose, rig_intrinsics  # noqa: F401

MM_PER_UNIT = 50.0           # 1 scene unit = 50 mm


def frontal_c2w(radius: float = RADIUS) -> np.ndarray:
    """``[4, 4]`` OpenGL camera-to-world pose of the frontal training view (camera at (0, 0, radius))."""
    return mofanerf_pose(0.0, 0.0, radius).double().numpy()


@dataclass(frozen=True)
class FaceTemplate:
    """3D template in scene units plus its frontal 2D projection for one image size."""

    landmarks_3d: np.ndarray  # [68, 3] scene units, TU frame
    vertices: np.ndarray      # [V, 3] scene units, TU frame
    faces: np.ndarray         # [F, 3] int64 vertex indices
    image_size: int           # side of the aligned square image (pixels)

    @property
    def intrinsics(self) -> Intrinsics:
        return rig_intrinsics(self.image_size)

    @property
    def landmarks_2d(self) -> np.ndarray:
        """``[68, 2]`` (x, y) pixels: the 3D landmarks seen by the frontal training camera."""
        xy = project_points(np.asarray(self.landmarks_3d, dtype=np.float64), frontal_c2w(), self.intrinsics)
        return np.asarray(xy, dtype=np.float64)

    @classmethod
    def from_millimetres(cls, landmarks_mm: np.ndarray, vertices_mm: np.ndarray, faces: np.ndarray,
                         image_size: int = BASE_RESOLUTION) -> "FaceTemplate":
        """Build from TU-frame millimetre arrays ``[68, 3]``, ``[V, 3]`` and faces ``[F, 3]``."""
        landmarks_mm = np.asarray(landmarks_mm, dtype=np.float64)
        if landmarks_mm.shape != (68, 3):
            raise ValueError(f"template landmarks must be [68, 3], got {landmarks_mm.shape}")
        return cls(
            landmarks_3d=landmarks_mm / MM_PER_UNIT,
            vertices=np.asarray(vertices_mm, dtype=np.float64) / MM_PER_UNIT,
            faces=np.asarray(faces, dtype=np.int64),
            image_size=int(image_size),
        )


def load_template(image_size: int = BASE_RESOLUTION) -> FaceTemplate:
    """The mean synthetic head (:func:`facenerf.data.synthetic.canonical_landmarks_3d`, ``mean_head_mesh``)."""
    from facenerf.data.synthetic import canonical_landmarks_3d, mean_head_mesh

    vertices, faces = mean_head_mesh()
    return FaceTemplate.from_millimetres(canonical_landmarks_3d(), vertices, faces, image_size)
