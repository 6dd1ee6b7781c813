"""Mesh export of a fitted face: density grid -> marching tetrahedra -> vertex colours -> OBJ.

1. The density of the face's field (the fine network when the model has one, else the coarse)
   is sampled on a ``resolution^3`` grid over the box and blurred with a Gaussian of ``smooth``
   voxels (NeRF densities are noisy; 0 keeps the raw field).
2. :func:`facenerf.fitting.mesh.marching_tetrahedra` extracts the surface ``density = level``.
3. Each vertex gets the colour the model renders along its normal: a short ray starts
   ``offset`` outside the surface and looks back along ``-normal`` through it (near 0,
   far ``2 * offset``), composited with the usual renderer, times the fit's colour gain.
4. The OBJ stores positions (scaled, e.g. to millimetres) with ``v x y z r g b`` colours; a
   shaded preview PNG of the geometry seen from the fitted camera is written beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from facenerf.core.rays import RayBundle
from facenerf.fitting.mesh import marching_tetrahedra, sample_grid, smooth_grid, vertex_normals, write_obj
from facenerf.fitting.views import FaceState
from facenerf.io import write_image


HEAD_BOX_MARGIN = 0.15  # of the mean head's size on each side: real heads vary by a few per cent


def head_box(margin: float = HEAD_BOX_MARGIN) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The meshing box: the real-size mean head's bounding box (TU frame) grown by ``margin`` of its
    size on each side, in scene units -> ``(min [3], max [3])``.

    The rig sees no head from behind, so the density there is unconstrained; a box sized to the
    head keeps that region out of the mesh instead of cutting it flat at an arbitrary depth.
    """
    from facenerf.data.synthetic import mean_head_mesh

    vertices, _ = mean_head_mesh(1500)
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    pad = margin * (hi - lo)
    return tuple(float(v) / 50.0 for v in lo - pad), tuple(float(v) / 50.0 for v in hi + pad)


def density_function(model, codes) -> Callable[[Tensor], Tensor]:
    """``points [M, 3] -> density [M] >= 0`` of one face (fine network when present)."""
    network = model.fine if model.fine is not None else model.coarse

    def density(points: Tensor) -> Tensor:
        return torch.relu(network.raw_density(model.pe_xyz(points), codes.expression, codes.shape))

    return density


@torch.no_grad()
def surface_colours(model, codes, vertices: Tensor, normals: Tensor, offset: float, settings) -> Tensor:
    """Colour ``[V, 3]`` seen along each vertex normal (see the module docstring), ``settings.chunk_rays`` at a time."""
    device = next(model.parameters()).device
    colours = []
    chunk = settings.chunk_rays
    for start in range(0, vertices.shape[0], chunk):
        p = vertices[start:start + chunk].to(device)
        n = normals[start:start + chunk].to(device)
        count = p.shape[0]
        rays = RayBundle(p + offset * n, -n, torch.zeros(count, 1, device=device),
                         torch.full((count, 1), 2.0 * offset, device=device))
        colours.append(model.render_rays(rays, codes, settings)["rgb"].float().cpu())
    return torch.cat(colours) if colours else torch.zeros(0, 3)


def shaded_preview(vertices: Tensor, faces: Tensor, c2w: Tensor, K, size: int = 256) -> np.ndarray:
    """Grey Lambert shading (light at the camera) of the mesh from the fitted camera and from
    60 degrees to its side, side by side at ``size`` px -> ``[size, 2 * size + 2, 3]``."""
    from facenerf.fitting.figures import hstack
    from facenerf.fitting.views import camera_angles, intrinsics_at
    from facenerf.preprocess.fitting.raster import rasterize
    from facenerf.preprocess.training.rig import mofanerf_pose

    K = intrinsics_at(K, size)
    pitch, yaw, radius = camera_angles(c2w)
    images = []
    for pose in (c2w, mofanerf_pose(pitch, yaw + 60.0, radius)):
        raster = rasterize(vertices.numpy(), faces.numpy(), pose.numpy(), K)
        shade = 0.15 + 0.85 * np.clip(raster.normals[..., 2], 0.0, 1.0)
        images.append(np.where(raster.covered[..., None], shade[..., None], 0.0).repeat(3, axis=-1))
    return hstack([i.astype(np.float32) for i in images])


def extract_face_mesh(model, face: FaceState, bbox_min, bbox_max, resolution: int, level: float, path: Path,
                      scale: float, settings, smooth: float) -> list[Path]:
    """Write ``path`` (OBJ with vertex colours) and ``<path>.png`` (shaded preview); return both paths.

    The density grid is evaluated ``settings.chunk_rays`` points at a time.
    """
    device = next(model.parameters()).device
    codes = model.face_codes(face.shape.to(device)[None], expression=face.expression.to(device)[None],
                             texture=face.texture.to(device)[None])
    values = smooth_grid(sample_grid(density_function(model, codes), bbox_min, bbox_max, resolution,
                                     settings.chunk_rays, device), smooth)
    vertices, faces = marching_tetrahedra(values, bbox_min, bbox_max, level)
    normals = vertex_normals(vertices, faces) if faces.shape[0] else vertices
    voxel = float(max(b - a for a, b in zip(bbox_min, bbox_max))) / (resolution - 1)
    colours = surface_colours(model, codes, vertices, normals, 2.0 * voxel, settings)
    colours = (colours * face.gain.reshape(1, -1)).clamp(0, 1)
    obj = write_obj(path, vertices, faces, colours, scale)
    preview = write_image(Path(path).with_suffix(".png"), shaded_preview(vertices, faces, face.c2w, face.K))
    return [obj, preview]
