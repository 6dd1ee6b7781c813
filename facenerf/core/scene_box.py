"""The scene's axis-aligned bounding box and its map to the unit cube - the one place it is done.

A box is a tensor ``aabb [6] = (xmin, ymin, zmin, xmax, ymax, zmax)`` in world units. Grid
encodings and the occupancy grid work in the unit cube: :func:`to_unit_cube` maps the box onto
``[0, 1]^3`` (points outside the box land outside ``[0, 1]^3``, where hash encodings return
zeros), :func:`from_unit_cube` maps back. NeRFBlendShape's cube of half-side ``bound`` is
``cube_aabb(bound)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def cube_aabb(bound: float, device=None) -> Tensor:
    """The cube ``[-bound, bound]^3`` as ``aabb [6]`` (float32)."""
    if bound <= 0:
        raise ValueError(f"box half-side must be positive, got {bound}")
    return torch.tensor([-bound] * 3 + [bound] * 3, dtype=torch.float32, device=device)


def as_aabb(aabb: Sequence[float] | Tensor) -> Tensor:
    """A checked float32 ``aabb [6]`` tensor (min < max on every axis)."""
    box = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
    if not bool((box[3:] > box[:3]).all()):
        raise ValueError(f"a box needs min < max on every axis, got {box.tolist()}")
    return box


def to_unit_cube(points: Tensor, aabb: Tensor) -> Tensor:
    """World points [N, 3] -> box coordinates [N, 3]: the box maps onto [0, 1]^3."""
    lo, hi = aabb[:3].to(points.dtype), aabb[3:].to(points.dtype)
    return (points - lo) / (hi - lo)


def from_unit_cube(unit: Tensor, aabb: Tensor) -> Tensor:
    """Box coordinates [N, 3] in [0, 1]^3 -> world points [N, 3] (inverse of :func:`to_unit_cube`)."""
    lo, hi = aabb[:3].to(unit.dtype), aabb[3:].to(unit.dtype)
    return lo + unit * (hi - lo)


def inside(points: Tensor, aabb: Tensor) -> Tensor:
    """Whether points [N, 3] lie in the closed box -> bool [N]."""
    unit = to_unit_cube(points, aabb)
    return ((unit >= 0) & (unit <= 1)).all(dim=-1)


def ray_box_intersect(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Slab test: entry and exit ray parameters ``(t_min [N], t_max [N])``; a miss has t_min > t_max.

    ``directions`` need not be unit length; t is in units of the direction vector.
    """
    lo, hi = aabb[:3].to(origins.dtype), aabb[3:].to(origins.dtype)
    tiny = torch.full_like(directions, 1e-12)
    safe = torch.where(directions.abs() < 1e-12, torch.where(directions < 0, -tiny, tiny), directions)
    t0 = (lo - origins) / safe
    t1 = (hi - origins) / safe
    return torch.minimum(t0, t1).amax(dim=-1), torch.maximum(t0, t1).amin(dim=-1)
