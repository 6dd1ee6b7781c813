"""A small vectorised numpy z-buffer: per-pixel normals and depth of a posed triangle mesh.

Used by the weights-free relighting to know the surface orientation under every face pixel.
Normals are smooth (area-weighted vertex normals interpolated with perspective-correct
barycentrics) and expressed in the OpenGL camera frame (X right, Y up, Z toward the viewer).
A pixel ``(x, y)`` is covered when its integer position lies inside a projected triangle
(no half-pixel offset, as everywhere in facenerf).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facenerf.core.cameras import Intrinsics

_MAX_CANDIDATES = 2_000_000  # pixel candidates processed per chunk (bounds memory)


@dataclass
class RasterResult:
    normals: np.ndarray   # [H, W, 3] float32 unit normals, camera frame; zero where not covered
    depth: np.ndarray     # [H, W] float32 distance in front of the camera (scene units); inf where empty
    covered: np.ndarray   # [H, W] bool


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals ``[V, 3]`` for ``vertices [V, 3]``, ``faces [F, 3]``.

    The sign is chosen so that normals point away from the mesh centroid on average, which
    makes the result independent of the faces' winding order for closed, head-like meshes.
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # [F, 3], |n| = 2 * area
    centres = v[f].mean(axis=1)
    if np.sum(np.einsum("ij,ij->i", face_n, centres - v.mean(axis=0))) < 0:
        face_n = -face_n
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, f[:, k], face_n)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(length, 1e-12)


def _to_camera(points: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """World points ``[N, 3]`` -> OpenGL camera frame ``[N, 3]``."""
    return (points - c2w[:3, 3]) @ c2w[:3, :3]


def _candidates(x: np.ndarray, y: np.ndarray, faces: np.ndarray, K: Intrinsics):
    """Integer pixels inside each face's bounding box: (face index [M], px [M], py [M])."""
    fx, fy = x[faces], y[faces]  # [F, 3]
    x0 = np.clip(np.ceil(fx.min(1)), 0, K.width - 1).astype(np.int64)
    x1 = np.clip(np.floor(fx.max(1)), -1, K.width - 1).astype(np.int64)
    y0 = np.clip(np.ceil(fy.min(1)), 0, K.height - 1).astype(np.int64)
    y1 = np.clip(np.floor(fy.max(1)), -1, K.height - 1).astype(np.int64)
    w = np.maximum(x1 - x0 + 1, 0)
    h = np.maximum(y1 - y0 + 1, 0)
    counts = w * h
    face_id = np.repeat(np.arange(len(faces)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    wf = np.maximum(w[face_id], 1)
    return face_id, x0[face_id] + local % wf, y0[face_id] + local // wf


def _barycentric(px, py, ax, ay, bx, by, cx, cy):
    """Barycentric weights [M, 3] of points (px, py) in triangles (a, b, c); NaN-free."""
    det = (by - cy) * (ax - cx) + (cx - bx) * (ay - cy)
    safe = np.where(np.abs(det) < 1e-12, 1e-12, det)
    w0 = ((by - cy) * (px - cx) + (cx - bx) * (py - cy)) / safe
    w1 = ((cy - ay) * (px - cx) + (ax - cx) * (py - cy)) / safe
    return np.stack([w0, w1, 1.0 - w0 - w1], axis=1), np.abs(det) >= 1e-12


def rasterize(vertices: np.ndarray, faces: np.ndarray, c2w: np.ndarray, K: Intrinsics) -> RasterResult:
    """Render depth and smooth normals of a triangle mesh seen by an OpenGL camera.

    Args:
        vertices: ``[V, 3]`` world positions (scene units).
        faces: ``[F, 3]`` vertex indices.
        c2w: ``[4, 4]`` camera-to-world pose, OpenGL convention.
        K: intrinsics; the output is ``K.height x K.width``.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    cam = _to_camera(np.asarray(vertices, dtype=np.float64), c2w)      # [V, 3]
    normals_cam = vertex_normals(vertices, faces) @ c2w[:3, :3]      # [V, 3] rotated into camera
    depth_v = -cam[:, 2]                                             # [V] > 0 in front
    in_front = (depth_v[faces] > 1e-6).all(axis=1)
    faces = faces[in_front]
    safe_depth = np.where(depth_v > 1e-6, depth_v, 1.0)
    x = K.cx + K.fx * cam[:, 0] / safe_depth
    y = K.cy - K.fy * cam[:, 1] / safe_depth
    n_pix = K.width * K.height
    best_depth = np.full(n_pix, np.inf)
    best_normal = np.zeros((n_pix, 3))
    for chunk in _face_chunks(x, y, faces, K):
        _raster_chunk(chunk, x, y, depth_v, normals_cam, K, best_depth, best_normal)
    covered = np.isfinite(best_depth)
    length = np.linalg.norm(best_normal, axis=1, keepdims=True)
    best_normal = np.where(length > 1e-12, best_normal / np.maximum(length, 1e-12), 0.0)
    return RasterResult(
        normals=best_normal.reshape(K.height, K.width, 3).astype(np.float32),
        depth=best_depth.reshape(K.height, K.width).astype(np.float32),
        covered=covered.reshape(K.height, K.width),
    )


def _face_chunks(x, y, faces, K) -> list[np.ndarray]:
    """Split ``faces`` so each chunk has at most about ``_MAX_CANDIDATES`` bounding-box pixels."""
    fx, fy = x[faces], y[faces]
    w = np.clip(fx.max(1), 0, K.width) - np.clip(fx.min(1), 0, K.width) + 2
    h = np.clip(fy.max(1), 0, K.height) - np.clip(fy.min(1), 0, K.height) + 2
    chunk = (np.cumsum(w * h) // _MAX_CANDIDATES).astype(np.int64)
    return np.split(faces, np.flatnonzero(np.diff(chunk)) + 1)


def _raster_chunk(faces, x, y, depth_v, normals_cam, K, best_depth, best_normal) -> None:
    """Rasterise ``faces`` and merge into the running z-buffer (in place)."""
    face_id, px, py = _candidates(x, y, faces, K)
    if face_id.size == 0:
        return
    tri = faces[face_id]  # [M, 3]
    bary, ok = _barycentric(px, py, x[tri[:, 0]], y[tri[:, 0]], x[tri[:, 1]], y[tri[:, 1]],
                            x[tri[:, 2]], y[tri[:, 2]])
    inside = ok & (bary >= -1e-9).all(axis=1)
    tri, bary, px, py = tri[inside], bary[inside], px[inside], py[inside]
    persp = bary / depth_v[tri]                       # perspective-correct weights
    depth = 1.0 / persp.sum(axis=1)                   # [M]
    persp = persp * depth[:, None]
    normal = np.einsum("mk,mkc->mc", persp, normals_cam[tri])  # [M, 3]
    pix = py * K.width + px
    order = np.lexsort((depth, pix))                  # by pixel, nearest first
    pix, depth, normal = pix[order], depth[order], normal[order]
    first = np.ones(len(pix), dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, depth, normal = pix[first], depth[first], normal[first]
    closer = depth < best_depth[pix]
    best_depth[pix[closer]] = depth[closer]
    best_normal[pix[closer]] = normal[closer]
