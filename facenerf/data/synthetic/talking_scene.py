"""The scene of a synthetic talking-head video: webcam, head, torso, background, rendering.

Frames (all in scene units, 1 unit = 50 mm, like every facenerf scene):

* **Head frame** = the FaceScape TU frame of the procedural head scaled by 1/50 (+Y up, face
  toward +Z). NeRFBlendShape datasets give the camera in this frame, frame by frame.
* **World frame** = the webcam's room. The head-to-world pose is
  ``T(shift) @ T(pivot) @ R @ T(-pivot)`` with ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``
  (right-handed rotations about the head's axes) and the pivot at the base of the skull, so the
  neck's lower end stays close to the torso. The torso follows the head's shift and a third of
  its rotation about its own centre.
* **Camera** = a fixed camera 630 mm in front of the head, level, looking along -Z (OpenGL),
  focal length 1.5 image widths (a 37 degree field of view, like a square crop of webcam or
  phone footage), principal point at the centre.

Shading is Lambertian with a fixed light in the head frame (so the head's appearance does not
change with its pose), baked into vertex colours and multiplied with the albedo texture.
Rendering uses pyrender offscreen (call
:func:`facenerf.preprocess.training.gl.select_gl_platform` first) in three passes: colour with
alpha, a label pass (head / neck / torso) and the torso layer alone (neck and torso, no head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenerf.core.cameras import Intrinsics
from facenerf.data.synthetic import head as sh
from facenerf.preprocess.fitting.raster import vertex_normals

MM_PER_UNIT = 50.0
CAMERA_DISTANCE = 630.0 / MM_PER_UNIT       # webcam to the head origin (units)
FOCAL = 1.5                                 # focal length in image widths (37 degree field of view)
CAMERA_HEIGHT = -60.0 / MM_PER_UNIT         # webcam height relative to the head origin (units)
HEAD_PIVOT = np.array([0.0, -100.0, -15.0]) / MM_PER_UNIT
TORSO_CENTRE = np.array([0.0, -245.0, -15.0]) / MM_PER_UNIT
TORSO_FOLLOW = 1.0 / 3.0                     # share of the head rotation the torso follows
LIGHT = np.array([-0.35, 0.45, 0.82]) / np.linalg.norm([-0.35, 0.45, 0.82])  # head frame
AMBIENT = 0.55
BACKGROUND, HEAD, NECK, TORSO = 0, 1, 2, 3  # label values
LABEL_NAMES = ("background", "head", "neck", "torso")
SHIRTS = np.array([[0.15, 0.25, 0.55], [0.45, 0.47, 0.5], [0.18, 0.4, 0.25], [0.55, 0.12, 0.14],
                   [0.85, 0.85, 0.82], [0.1, 0.1, 0.12]])


def webcam(size: int) -> tuple[Intrinsics, np.ndarray]:
    """Intrinsics of a ``size``-pixel square frame and the camera-to-world pose ``[4, 4]``."""
    K = Intrinsics(size, size, FOCAL * size, FOCAL * size, size / 2.0, size / 2.0)
    c2w = np.eye(4)
    c2w[:3, 3] = [0.0, CAMERA_HEIGHT, CAMERA_DISTANCE]
    return K, c2w


def rotation(euler_deg: np.ndarray) -> np.ndarray:
    """``[3, 3]`` ``Rz(roll) @ Ry(yaw) @ Rx(pitch)`` for ``euler_deg = (pitch, yaw, roll)``."""
    p, y, r = np.radians(np.asarray(euler_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _rigid(rot: np.ndarray, pivot: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``[4, 4]`` = T(shift) @ T(pivot) @ R @ T(-pivot)."""
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = pivot - rot @ pivot + shift
    return out


def head_pose(euler_deg: np.ndarray, shift_mm: np.ndarray) -> np.ndarray:
    """Head-to-world ``[4, 4]`` (scene units) for one frame's angles and shift."""
    return _rigid(rotation(euler_deg), HEAD_PIVOT, np.asarray(shift_mm) / MM_PER_UNIT)


def torso_pose(euler_deg: np.ndarray, shift_mm: np.ndarray) -> np.ndarray:
    """Torso-to-world ``[4, 4]``: the head's shift and :data:`TORSO_FOLLOW` of its rotation."""
    return _rigid(rotation(TORSO_FOLLOW * np.asarray(euler_deg)), TORSO_CENTRE, np.asarray(shift_mm) / MM_PER_UNIT)


def transform(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Apply a ``[4, 4]`` pose to points ``[N, 3]``."""
    return points @ pose[:3, :3].T + pose[:3, 3]


def shading(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-vertex Lambertian shade ``[V]`` in [AMBIENT, 1] for the fixed head-frame light."""
    return AMBIENT + (1.0 - AMBIENT) * np.clip(vertex_normals(vertices, faces) @ LIGHT, 0.0, 1.0)


def neck_vertices(neutral_mm: np.ndarray, az: np.ndarray) -> np.ndarray:
    """``[V]`` bool: vertices of the neck, below a cut under the chin that rises toward the nape."""
    back = 0.5 * (1.0 - np.cos(az))
    return neutral_mm[:, 1] < -88.0 + 20.0 * back


@dataclass(frozen=True)
class Torso:
    """A shoulders-and-chest superellipsoid (mm, torso frame centred at the origin)."""

    vertices: np.ndarray   # [M, 3] mm, relative to TORSO_CENTRE
    faces: np.ndarray      # [G, 3] int64, counter-clockwise from outside
    colour: np.ndarray     # [M, 3] float shaded shirt colour

    @classmethod
    def make(cls, rng: np.random.Generator, n: int = 28) -> "Torso":
        theta, phi = np.meshgrid(np.linspace(0.0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False),
                                 indexing="ij")
        d = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta), np.sin(theta) * np.cos(phi)], -1).reshape(-1, 3)
        power = 3.0
        r = (np.abs(d) ** power).sum(1) ** (-1.0 / power)
        vertices = d * r[:, None] * np.array([180.0, 110.0, 95.0])
        i, j = np.meshgrid(np.arange(n - 1), np.arange(2 * n), indexing="ij")
        a, b = i * 2 * n + j, i * 2 * n + (j + 1) % (2 * n)
        faces = np.concatenate([np.stack([a, b, a + 2 * n], -1).reshape(-1, 3),
                                np.stack([b, b + 2 * n, a + 2 * n], -1).reshape(-1, 3)]).astype(np.int64)
        shirt = SHIRTS[rng.integers(len(SHIRTS))] * rng.uniform(0.85, 1.1)
        stripes = 1.0 + 0.06 * np.sign(np.sin(vertices[:, 0] / 9.0))
        colour = shirt[None] * stripes[:, None] * shading(vertices, faces)[:, None]
        return cls(vertices, faces, colour)


def background_image(size: int, rng: np.random.Generator) -> np.ndarray:
    """A static room behind the subject, float32 ``[size, size, 3]`` in [0, 1].

    A lit wall with a vertical gradient, a window, a picture frame, a shelf and a door edge,
    drawn in relative coordinates so any resolution shows the same room.
    """
    import cv2

    s = size / 512.0
    yy = np.linspace(0.0, 1.0, size)[:, None, None]
    wall = rng.uniform(0.45, 0.8, 3)
    image = np.broadcast_to(wall * (1.05 - 0.3 * yy), (size, size, 3)).copy()
    image[:, :, :] *= (1.0 + 0.08 * np.linspace(-1, 1, size))[None, :, None]

    def rect(x0, y0, x1, y1, colour, thickness=-1):
        cv2.rectangle(image, (int(x0 * s), int(y0 * s)), (int(x1 * s), int(y1 * s)), tuple(float(c) for c in colour),
                      thickness if thickness < 0 else max(1, int(thickness * s)))

    wx = rng.uniform(20, 60)
    rect(wx, 40, wx + 110, 200, np.clip(wall + 0.35, 0, 1))
    rect(wx, 40, wx + 110, 200, wall * 0.5, 6)
    px = rng.uniform(360, 420)
    rect(px, 70, px + 80, 160, rng.uniform(0.1, 0.9, 3))
    rect(px, 70, px + 80, 160, (0.25, 0.18, 0.1), 5)
    rect(0, 300, 150, 312, (0.35, 0.24, 0.15))
    rect(470, 0, 512, 512, wall * 0.7)
    cv2.circle(image, (int(60 * s), int(280 * s)), max(1, int(22 * s)), (0.2, 0.45, 0.2), -1)
    noise = rng.normal(0.0, 0.01, (size, size, 1))
    return np.clip(image + noise, 0.0, 1.0).astype(np.float32)


@dataclass
class FrameLayers:
    """One rendered frame before compositing over the background (uint8 ``[S, S, ...]``)."""

    rgba: np.ndarray        # [S, S, 4] head + neck + torso, premultiplied colour, alpha
    labels: np.ndarray      # [S, S] uint8: 0 background, 1 head, 2 neck, 3 torso
    torso_rgba: np.ndarray  # [S, S, 4] neck + torso without the head, premultiplied

    def composite(self, background: np.ndarray) -> np.ndarray:
        """The video frame: float32 ``[S, S, 3]`` = layers over ``background``."""
        return composite(self.rgba, background)

    def torso_straight(self) -> np.ndarray:
        """The torso layer as float32 ``[S, S, 4]`` straight (not premultiplied) RGBA."""
        alpha = self.torso_rgba[..., 3:].astype(np.float32) / 255.0
        colour = self.torso_rgba[..., :3].astype(np.float32) / 255.0 / np.maximum(alpha, 1e-3)
        return np.concatenate([np.clip(colour, 0.0, 1.0) * (alpha > 0), alpha], axis=-1)


def composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Premultiplied uint8 ``[S, S, 4]`` over a float ``[S, S, 3]`` background -> float32."""
    colour = rgba[..., :3].astype(np.float32) / 255.0
    alpha = rgba[..., 3:].astype(np.float32) / 255.0
    return np.clip(colour + (1.0 - alpha) * background, 0.0, 1.0)


class TalkingHeadRenderer:
    """Offscreen pyrender passes for one head topology, texture and torso at a fixed size.

    Args:
        K: intrinsics (square frame); camera_c2w: ``[4, 4]`` webcam pose (OpenGL, world).
        topology: the head grid; texture: uint8 ``[T, T, 3]`` albedo in its UV atlas.
        neck: ``[V]`` bool neck vertices (:func:`neck_vertices`); torso: the torso mesh.
    """

    def __init__(self, K: Intrinsics, camera_c2w: np.ndarray, topology: sh.HeadTopology,
                 texture: np.ndarray, neck: np.ndarray, torso: Torso):
        import pyrender

        self._pr = pyrender
        self.K = K
        faces = topology.faces()
        uv, face_uv = topology.uv_layout()
        pairs = np.stack([faces.ravel(), face_uv.ravel()], axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        self.faces = faces
        self._corner_vertex = unique[:, 0]                      # [N] head vertex of each corner
        self._uv = uv[unique[:, 1]].astype(np.float32)          # [N, 2]
        self._tri = inverse.reshape(-1, 3).astype(np.uint32)    # [F, 3] corners
        corner_neck = neck[self._corner_vertex]
        self._neck_tri = self._tri[corner_neck[self._tri].all(axis=1)]
        self._label_colour = np.where(corner_neck[:, None], [[0.0, 1.0, 0.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]])
        self.torso = torso
        self._textured = pyrender.MetallicRoughnessMaterial(
            baseColorTexture=pyrender.Texture(source=texture, source_channels="RGB"),
            baseColorFactor=np.ones(4, np.float32), metallicFactor=0.0, roughnessFactor=1.0, doubleSided=True)
        self._plain = pyrender.MetallicRoughnessMaterial(baseColorFactor=np.ones(4, np.float32), metallicFactor=0.0,
                                                         roughnessFactor=1.0, doubleSided=True)
        self._camera = pyrender.IntrinsicsCamera(K.fx, K.fy, K.cx + 0.5, K.cy + 0.5, znear=0.5, zfar=100.0)
        self._camera_c2w = np.asarray(camera_c2w, dtype=np.float64)
        self._renderer = pyrender.OffscreenRenderer(K.width, K.height)

    def _primitive(self, positions, triangles, colour, textured: bool):
        rgba = np.concatenate([colour, np.ones((len(colour), 1))], 1) if colour.shape[1] == 3 else colour
        return self._pr.Primitive(positions=positions.astype(np.float32), indices=triangles,
                                  texcoord_0=self._uv if textured else None, color_0=rgba.astype(np.float32),
                                  material=self._textured if textured else self._plain)

    def _draw(self, primitives) -> np.ndarray:
        pr = self._pr
        scene = pr.Scene(bg_color=np.zeros(4, np.float32), ambient_light=np.ones(3, np.float32))
        scene.add(pr.Mesh(primitives))
        scene.add(self._camera, pose=self._camera_c2w)
        colour, _ = self._renderer.render(scene, flags=pr.RenderFlags.FLAT | pr.RenderFlags.RGBA)
        return np.ascontiguousarray(colour)

    def render(self, head_world: np.ndarray, head_shade: np.ndarray, torso_world: np.ndarray) -> FrameLayers:
        """Render one frame from head vertices ``[V, 3]`` and torso vertices ``[M, 3]`` (world units).

        ``head_shade [V]`` multiplies the albedo (see :func:`shading`).
        """
        corners = head_world[self._corner_vertex]
        shade = np.repeat(head_shade[self._corner_vertex, None], 3, axis=1)
        torso_tri = self.torso.faces.astype(np.uint32)
        red = np.tile([1.0, 0.0, 0.0], (len(torso_world), 1))

        def body(colour):   # a primitive binds to one scene, so every pass gets its own
            return self._primitive(torso_world, torso_tri, colour, textured=False)

        rgba = self._draw([self._primitive(corners, self._tri, shade, True), body(self.torso.colour)])
        torso_rgba = self._draw([self._primitive(corners, self._neck_tri, shade, True), body(self.torso.colour)])
        coded = self._draw([self._primitive(corners, self._tri, self._label_colour, False), body(red)])
        labels = np.zeros(coded.shape[:2], np.uint8)
        covered = coded[..., 3] >= 128
        channel = np.argmax(coded[..., :3], axis=-1)           # 0 red torso, 1 green neck, 2 blue head
        labels[covered] = np.array([TORSO, NECK, HEAD], np.uint8)[channel[covered]]
        return FrameLayers(rgba, labels, torso_rgba)

    def close(self) -> None:
        self._renderer.delete()
