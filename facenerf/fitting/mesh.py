"""Surface extraction from a density field: vectorised marching tetrahedra and OBJ export.

:func:`marching_tetrahedra` splits every grid cube into six tetrahedra that share the cube's
main diagonal (the Freudenthal/Kuhn split, which matches across neighbouring cubes, so the
surface has no cracks) and places one vertex on every tetrahedron edge whose end values lie
on different sides of ``level``, by linear interpolation. Vertices on a shared grid edge are
merged, so a closed level set gives a closed, consistently oriented triangle mesh whose
normals point from the inside (``value > level``) to the outside. Only cubes that straddle
the level are processed, and every step is a tensor operation (no Python loop over cells).

:func:`write_obj` writes the mesh with optional per-vertex colours (``v x y z r g b``).
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from facenerf.errors import FaceNerfError

# Corner k of a cube is at offset (k & 1, (k >> 1) & 1, (k >> 2) & 1) along (x, y, z).
_CORNER_OFFSETS = torch.tensor([[k & 1, (k >> 1) & 1, (k >> 2) & 1] for k in range(8)])
# Six tetrahedra per cube, each a monotone path 000 -> 111 adding one axis per step.
_TETS = torch.tensor([[0, 1 << a, (1 << a) | (1 << b), 7] for a, b, _ in itertools.permutations(range(3))])
_TET_EDGES = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])


def _edge_id(a: int, b: int) -> int:
    return [tuple(e) for e in _TET_EDGES.tolist()].index((min(a, b), max(a, b)))


def _case_table() -> Tensor:
    """``[16, 2, 3]`` tetrahedron edge indices of up to two triangles per inside-pattern (-1 = none).

    Bit ``i`` of the case is set when tetrahedron vertex ``i`` is inside. Orientation is fixed
    later from the geometry, so only the cyclic order of a quad's corners matters here.
    """
    table = torch.full((16, 2, 3), -1, dtype=torch.long)
    for case in range(1, 15):
        inside = [i for i in range(4) if case >> i & 1]
        outside = [i for i in range(4) if not case >> i & 1]
        if len(inside) in (1, 3):
            lone = inside[0] if len(inside) == 1 else outside[0]
            others = [i for i in range(4) if i != lone]
            table[case, 0] = torch.tensor([_edge_id(lone, o) for o in others])
        else:
            (a, b), (c, d) = inside, outside
            ac, ad, bd, bc = _edge_id(a, c), _edge_id(a, d), _edge_id(b, d), _edge_id(b, c)
            table[case, 0] = torch.tensor([ac, ad, bd])
            table[case, 1] = torch.tensor([ac, bd, bc])
    return table


_CASES = _case_table()


def _active_cubes(values: Tensor, level: float) -> Tensor:
    """Integer corner-000 coordinates ``[C, 3]`` of the cubes whose corners straddle ``level``."""
    nx, ny, nz = (s - 1 for s in values.shape)
    corners = torch.stack([values[ox:ox + nx, oy:oy + ny, oz:oz + nz]
                           for ox, oy, oz in _CORNER_OFFSETS.tolist()], dim=-1)  # [nx, ny, nz, 8]
    inside = corners > level
    return torch.nonzero(inside.any(-1) & ~inside.all(-1))


def marching_tetrahedra(values: Tensor, bbox_min, bbox_max, level: float = 0.0) -> tuple[Tensor, Tensor]:
    """Triangle mesh of the level set ``values == level`` on a regular grid.

    Args:
        values: ``[X, Y, Z]`` samples at the grid vertices (``X, Y, Z >= 2``); ``values > level``
            is inside.
        bbox_min, bbox_max: world positions ``[3]`` of grid vertices (0, 0, 0) and (X-1, Y-1, Z-1).
        level: iso-value.
    Returns:
        ``(vertices [V, 3] float32 world units, faces [F, 3] int64)``, faces counter-clockwise
        seen from outside (normals point towards decreasing values). Empty tensors when the
        level set does not cross the grid.
    """
    values = torch.as_tensor(values, dtype=torch.float32).cpu()
    if values.dim() != 3 or min(values.shape) < 2:
        raise ValueError(f"values must be a [X, Y, Z] grid with every side >= 2, got {tuple(values.shape)}")
    lo = torch.as_tensor(bbox_min, dtype=torch.float32).reshape(3)
    hi = torch.as_tensor(bbox_max, dtype=torch.float32).reshape(3)
    sizes = torch.tensor(values.shape)
    cubes = _active_cubes(values, level)  # [C, 3]
    empty = (torch.zeros((0, 3)), torch.zeros((0, 3), dtype=torch.long))
    if cubes.shape[0] == 0:
        return empty
    corner_ijk = cubes[:, None, :] + _CORNER_OFFSETS[None]  # [C, 8, 3]
    tet_ijk = corner_ijk[:, _TETS].reshape(-1, 4, 3)  # [C*6, 4, 3]
    flat = (tet_ijk[..., 0] * sizes[1] + tet_ijk[..., 1]) * sizes[2] + tet_ijk[..., 2]  # [T, 4]
    tet_val = values.reshape(-1)[flat]  # [T, 4]
    case = ((tet_val > level).long() * torch.tensor([1, 2, 4, 8])).sum(-1)  # [T]
    keep = (case > 0) & (case < 15)
    flat, tet_val, case, tet_ijk = flat[keep], tet_val[keep], case[keep], tet_ijk[keep]
    # one candidate vertex per (tetrahedron, edge); merge equal grid edges afterwards
    ea, eb = flat[:, _TET_EDGES[:, 0]], flat[:, _TET_EDGES[:, 1]]  # [T, 6]
    key = torch.minimum(ea, eb) * flat.new_tensor(values.numel()) + torch.maximum(ea, eb)
    tri_edges = _CASES[case]  # [T, 2, 3]
    valid = tri_edges[:, :, 0] >= 0  # [T, 2]
    tet_index = torch.arange(case.shape[0])[:, None].expand(-1, 2)[valid]  # [F]
    tri_edges = tri_edges[valid]  # [F, 3]
    tri_keys = key[tet_index[:, None], tri_edges]  # [F, 3]
    unique_keys, faces = torch.unique(tri_keys, return_inverse=True)
    vertices = _edge_vertices(unique_keys, values, lo, hi, sizes, level)
    faces = _orient(faces, vertices, tet_ijk[tet_index], tet_val[tet_index], lo, hi, sizes, level)
    return vertices, faces


def _grid_to_world(ijk: Tensor, lo: Tensor, hi: Tensor, sizes: Tensor) -> Tensor:
    return lo + ijk.float() * (hi - lo) / (sizes - 1).float()


def _edge_vertices(keys: Tensor, values: Tensor, lo, hi, sizes, level: float) -> Tensor:
    """Interpolated crossing point of every merged grid edge ``keys [V]`` -> ``[V, 3]``."""
    n = values.numel()
    a, b = keys // n, keys % n

    def ijk(flat: Tensor) -> Tensor:
        return torch.stack([flat // (sizes[1] * sizes[2]), (flat // sizes[2]) % sizes[1], flat % sizes[2]], -1)

    va, vb = values.reshape(-1)[a], values.reshape(-1)[b]
    t = ((level - va) / (vb - va)).clamp(0.0, 1.0)[:, None]
    pa, pb = _grid_to_world(ijk(a), lo, hi, sizes), _grid_to_world(ijk(b), lo, hi, sizes)
    return pa + t * (pb - pa)


def _orient(faces: Tensor, vertices: Tensor, tet_ijk: Tensor, tet_val: Tensor, lo, hi, sizes,
            level: float) -> Tensor:
    """Flip triangles whose normal points from the outside corners to the inside ones."""
    tri = vertices[faces]  # [F, 3, 3]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    corners = _grid_to_world(tet_ijk, lo, hi, sizes)  # [F, 4, 3]
    inside = (tet_val > level).float()[..., None]  # [F, 4, 1]
    centre_in = (corners * inside).sum(1) / inside.sum(1)
    centre_out = (corners * (1 - inside)).sum(1) / (1 - inside).sum(1)
    flip = (normal * (centre_out - centre_in)).sum(-1) < 0
    faces = faces.clone()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


# ----------------------------------------------------------------------------- grids and meshes

def grid_points(bbox_min, bbox_max, resolution: int) -> Tensor:
    """World positions of a ``resolution^3`` vertex grid, ``[R, R, R, 3]`` (x, y, z index order)."""
    lo = torch.as_tensor(bbox_min, dtype=torch.float32).reshape(3)
    hi = torch.as_tensor(bbox_max, dtype=torch.float32).reshape(3)
    axes = [torch.linspace(float(lo[i]), float(hi[i]), resolution) for i in range(3)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def sample_grid(fn: Callable[[Tensor], Tensor], bbox_min, bbox_max, resolution: int,
                chunk: int = 65536, device: torch.device | str = "cpu") -> Tensor:
    """``fn(points [M, 3]) -> [M]`` on a ``resolution^3`` vertex grid, in chunks, no grad -> ``[R, R, R]`` (CPU)."""
    points = grid_points(bbox_min, bbox_max, resolution).reshape(-1, 3)
    out = torch.empty(points.shape[0])
    with torch.no_grad():
        for start in range(0, points.shape[0], chunk):
            out[start:start + chunk] = fn(points[start:start + chunk].to(device)).float().cpu()
    return out.reshape(resolution, resolution, resolution)


def smooth_grid(values: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of a ``[X, Y, Z]`` grid (``sigma`` in voxels; 0 = unchanged), edges replicated."""
    if sigma <= 0:
        return values
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = values.float()[None, None]  # [1, 1, X, Y, Z]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        x = F.conv3d(F.pad(x, pad, mode="replicate"), kernel.reshape(shape))
    return x[0, 0]


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """Unit area-weighted vertex normals ``[V, 3]`` of a mesh."""
    tri = vertices[faces]
    face_n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # [F, 3], |n| = 2 area
    normals = torch.zeros_like(vertices).index_add_(0, faces.reshape(-1), face_n.repeat_interleave(3, 0))
    return normals / normals.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def surface_area(vertices: Tensor, faces: Tensor) -> float:
    """Total triangle area."""
    tri = vertices[faces].double()
    return float(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1).sum() / 2)


def signed_volume(vertices: Tensor, faces: Tensor) -> float:
    """Enclosed volume (positive for a closed mesh with outward normals)."""
    tri = vertices[faces].double()
    return float((tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def write_obj(path: str | Path, vertices: Tensor, faces: Tensor, colours: Tensor | None = None,
              scale: float = 1.0) -> Path:
    """Write a Wavefront OBJ; ``colours [V, 3]`` in [0, 1] go on the ``v`` lines (MeshLab/Blender style).

    ``scale`` multiplies the coordinates (e.g. 50 to write millimetres from scene units).
    """
    if faces.shape[0] == 0:
        raise FaceNerfError(f"the mesh for {path} is empty: no surface crosses the density level inside "
                            "the box; lower --mesh_level or enlarge --mesh_bbox")
    from facenerf.io import write_text

    file = Path(path)
    v = vertices.detach().double().cpu().numpy() * scale
    f = faces.detach().cpu().numpy() + 1
    if colours is not None:
        v = np.concatenate([v, np.clip(colours.detach().double().cpu().numpy(), 0.0, 1.0)], axis=1)
        v_lines = "\n".join("v " + " ".join(f"{x:.5f}" for x in row) for row in v)
    else:
        v_lines = "\n".join(f"v {x:.5f} {y:.5f} {z:.5f}" for x, y, z in v)
    f_lines = "\n".join(f"f {a} {b} {c}" for a, b, c in f)
    return write_text(file, f"# facenerf mesh: {len(v)} vertices, {len(f)} faces\n{v_lines}\n{f_lines}\n", "mesh")
