"""Rendering one textured mesh on the MoFaNeRF rig with pyrender (headless, unlit).

Call :func:`facenerf.preprocess.training.gl.select_gl_platform` before anything imports
pyrender; :class:`ViewRenderer` imports it lazily.

Images are the texture colour only (pyrender's FLAT mode) on a black background with back faces
culled, as in the original ``render.py``. ``pixel_center`` says which ray each pixel shows:
with 0.5 (the original renderer) the principal point handed to OpenGL is the rig's, and pixel
``(i, j)`` shows the ray through ``(i + 0.5, j + 0.5)``; with 0 it is moved by half a pixel, and
pixel ``(i, j)`` shows the ray through ``(i, j)``. Stored intrinsics keep ``c = size / 2`` and
the camera files record the convention (``pixel_center``), which training reads back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facenerf.data.meshio import read_obj, texture_path, unwelded_arrays
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training import rig

VISIBILITY_TOLERANCE = 0.08  # scene units (4 mm) between a landmark's depth and the depth map


@dataclass
class RenderMesh:
    """GPU-ready arrays of one textured mesh (scene units = mm / 50)."""

    positions: np.ndarray   # [N, 3] float32, one row per distinct (v, vt) pair
    uv: np.ndarray          # [N, 2] float32, OBJ convention (v = 0 at the image bottom)
    triangles: np.ndarray   # [F, 3] uint32
    texture: np.ndarray     # [H, W, 3] uint8, row 0 = top of the image


def read_texture(path: Path) -> np.ndarray:
    """Texture image as uint8 [H, W, 3]; FaceNerfError when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            return np.ascontiguousarray(np.asarray(handle.convert("RGB")))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise FaceNerfError(f"cannot read texture {path}: {err.__class__.__name__}; restore the image") from err


def load_render_mesh(obj_path: str | Path) -> RenderMesh:
    """Read an OBJ with its MTL texture (``Kd 0 0 0`` is ignored: the texture is the colour)."""
    mesh = read_obj(obj_path)
    if mesh.face_uv is None:
        raise FaceNerfError(f"mesh {obj_path} has no texture coordinates (vt); export it with UVs")
    texture = read_texture(texture_path(obj_path, mesh))
    positions, uv, triangles = unwelded_arrays(mesh)
    return RenderMesh((positions * rig.MESH_SCALE).astype(np.float32), uv.astype(np.float32),
                      triangles.astype(np.uint32), texture)


PIXEL_CENTERS = (0.0, 0.5)


def check_pixel_center(value: float) -> float:
    """``value`` as a float if it is 0 or 0.5, else FaceNerfError."""
    if float(value) not in PIXEL_CENTERS:
        raise FaceNerfError(f"pixel_center must be 0 or 0.5, got {value} (0.5: pixel (i, j) shows the ray "
                            "through (i + 0.5, j + 0.5), as the original render.py; 0: through (i, j))")
    return float(value)


class ViewRenderer:
    """One offscreen pyrender context at a fixed square resolution; reuse it for many meshes.

    Back faces are culled, as in the original renderer; ``double_sided`` draws them too, so
    that looking into an open boundary (the neck cut, a scan's holes) shows the textured inside
    of the surface instead of the background. ``pixel_center`` (0.5 or 0) is the ray each pixel
    shows (module docstring).
    """

    def __init__(self, resolution: int, double_sided: bool = False, pixel_center: float = 0.5):
        import pyrender

        self._pyrender = pyrender
        self.resolution = int(resolution)
        self.intrinsics = rig.rig_intrinsics(self.resolution)
        self.double_sided = double_sided
        self.pixel_center = check_pixel_center(pixel_center)
        self._renderer = pyrender.OffscreenRenderer(self.resolution, self.resolution)

    def _scene(self, mesh: RenderMesh):
        pr = self._pyrender
        material = pr.MetallicRoughnessMaterial(
            baseColorTexture=pr.Texture(source=mesh.texture, source_channels="RGB"),
            baseColorFactor=np.ones(4, dtype=np.float32), metallicFactor=0.0, roughnessFactor=1.0,
            doubleSided=self.double_sided)
        primitive = pr.Primitive(positions=mesh.positions, indices=mesh.triangles,
                                 texcoord_0=mesh.uv, material=material)
        scene = pr.Scene(bg_color=np.zeros(4, dtype=np.float32), ambient_light=np.ones(3, dtype=np.float32))
        scene.add(pr.Mesh([primitive]))
        K, shift = self.intrinsics, 0.5 - self.pixel_center  # OpenGL samples pixel i at i + 0.5
        camera = pr.IntrinsicsCamera(K.fx, K.fy, K.cx + shift, K.cy + shift, znear=0.1, zfar=1000.0)
        return scene, scene.add(camera, pose=np.eye(4))

    def render(self, mesh: RenderMesh, views: list[rig.View], depth_only: set[str] = frozenset()):
        """Yield ``(view, rgb uint8 [H, W, 3] or None, depth float32 [H, W])`` per view.

        ``depth`` is the distance along the viewing axis (0 on the background). Views named in
        ``depth_only`` get no colour image (used when resuming to recompute visibility).
        """
        flags = self._pyrender.RenderFlags
        scene, camera_node = self._scene(mesh)
        for view in views:
            scene.set_pose(camera_node, view.c2w())
            if view.name in depth_only:
                depth = self._renderer.render(scene, flags=flags.DEPTH_ONLY)
                yield view, None, np.asarray(depth, dtype=np.float32)
            else:
                colour, depth = self._renderer.render(scene, flags=flags.FLAT)
                yield view, np.ascontiguousarray(colour[..., :3]), np.asarray(depth, dtype=np.float32)

    def close(self) -> None:
        self._renderer.delete()


def project_landmarks(landmarks_mm: np.ndarray, view: rig.View, resolution: int,
                      depth: np.ndarray | None = None, pixel_center: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions ``(x, y)`` [68, 2] of 3D landmarks (mm, TU frame) and visibility [68].

    Positions are pixel coordinates of an image rendered with ``pixel_center``: a landmark that
    projects to ``u`` lies at ``u - pixel_center``, so rounding gives the pixel that shows it. A
    landmark is visible when it lies inside the image, in front of the camera and, if a depth
    map is given, within :data:`VISIBILITY_TOLERANCE` of the rendered surface at its pixel or
    one of the 8 neighbouring pixels.
    """
    import torch

    from facenerf.core.cameras import project_points

    K = rig.rig_intrinsics(resolution)
    points = torch.as_tensor(landmarks_mm * rig.MESH_SCALE, dtype=torch.float64)
    xy, z = project_points(points, torch.as_tensor(view.c2w()), K, return_depth=True)
    xy, z = xy.numpy() - float(pixel_center), z.numpy()
    col, row = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
    visible = (z > 0) & (col >= 0) & (col < K.width) & (row >= 0) & (row < K.height)
    if depth is not None:
        near_surface = np.zeros_like(visible)
        for dy in (-1, 0, 1):          # 3 x 3 neighbourhood: grazing surfaces and pixel rounding
            for dx in (-1, 0, 1):
                surface = depth[np.clip(row + dy, 0, K.height - 1), np.clip(col + dx, 0, K.width - 1)]
                near_surface |= (surface > 0) & (np.abs(surface - z) < VISIBILITY_TOLERANCE)
        visible &= near_surface
    return xy, visible


@dataclass(frozen=True)
class RenderJob:
    """Render one (identity, expression) mesh into ``out_dir`` (``multiViewImages/{id}/{name}``)."""

    identity: str
    expression: int                 # 0-based expression index
    obj_path: Path
    out_dir: Path
    landmarks_mm: np.ndarray | None = None   # [68, 3] TU frame, or None
    landmark_indices: np.ndarray | None = None  # [68] vertex indices to read them from (TU models), or None


@dataclass
class JobResult:
    identity: str
    expression: int
    obj_path: str
    rendered: int = 0
    skipped: int = 0
    error: str | None = None
    frames: list[dict] = field(default_factory=list)
