"""Occupancy grid over an axis-aligned box, updated from a density callback, and ray marching
that emits samples only inside occupied cells.

The grid keeps its state in registered buffers, so it rides in a model's ``state_dict``:
``density`` [R^3] (running max-decay density per cell), ``bitfield`` [R^3 / 8] uint8 (bit
``b`` of byte ``n`` is cell ``8n + b``) and ``aabb`` [6]. Cells are numbered
``(i * R + j) * R + k`` for the cell at index (i, j, k) along (x, y, z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facenerf.core.rays import RayBundle
from facenerf.core.samplers import uniform

DensityFn = Callable[[Tensor], Tensor]  # points [M, 3] world -> density [M] >= 0


@dataclass
class PackedSamples:
    """Samples of many rays in one flat buffer, grouped by ray in ray order."""

    ray_indices: Tensor  # [M] int64, non-decreasing
    t_starts: Tensor  # [M] segment start along the (unnormalised) ray direction
    t_ends: Tensor  # [M] segment end
    n_rays: int

    def __len__(self) -> int:
        return int(self.ray_indices.shape[0])

    @property
    def t_mids(self) -> Tensor:
        """Segment midpoints [M], where the field is evaluated."""
        return 0.5 * (self.t_starts + self.t_ends)


def pack_bits(mask: Tensor) -> Tensor:
    """Bool [K] (K divisible by 8) -> uint8 [K / 8]; bit ``b`` of byte ``n`` holds ``mask[8n + b]``."""
    weights = (2 ** torch.arange(8, device=mask.device)).to(torch.uint8)  # [8]
    return (mask.reshape(-1, 8).to(torch.uint8) * weights).sum(dim=-1, dtype=torch.uint8)


def unpack_bits(bitfield: Tensor) -> Tensor:
    """uint8 [K / 8] -> bool [K], inverse of :func:`pack_bits`."""
    shifts = torch.arange(8, device=bitfield.device, dtype=torch.uint8)
    return ((bitfield[:, None] >> shifts) & 1).bool().reshape(-1)


def ray_aabb_intersect(origins: Tensor, directions: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor]:
    """Slab test: entry and exit ray parameters (t_min [N], t_max [N]); no hit -> t_min > t_max."""
    lo, hi = aabb[:3], aabb[3:]
    tiny = torch.full_like(directions, 1e-12)
    safe = torch.where(directions.abs() < 1e-12, torch.where(directions < 0, -tiny, tiny), directions)
    t0 = (lo - origins) / safe
    t1 = (hi - origins) / safe
    t_min = torch.minimum(t0, t1).amax(dim=-1)
    t_max = torch.maximum(t0, t1).amin(dim=-1)
    return t_min, t_max


class OccupancyGrid(nn.Module):
    """A ``resolution``^3 occupancy grid over ``aabb`` = (xmin, ymin, zmin, xmax, ymax, zmax).

    A fresh grid marks every cell occupied (nothing is skipped until the first update).
    """

    def __init__(self, aabb: Sequence[float] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), resolution: int = 128):
        super().__init__()
        if resolution < 2 or resolution % 2:
            raise ValueError(f"occupancy grid resolution must be even and >= 2, got {resolution}")
        aabb_t = torch.as_tensor(aabb, dtype=torch.float32).reshape(6)
        if not bool((aabb_t[3:] > aabb_t[:3]).all()):
            raise ValueError(f"occupancy grid box needs min < max on every axis, got {aabb}")
        self.resolution = resolution
        n_cells = resolution**3
        self.register_buffer("aabb", aabb_t)
        self.register_buffer("density", torch.zeros(n_cells))
        self.register_buffer("bitfield", torch.full((n_cells // 8,), 255, dtype=torch.uint8))
        self.register_buffer("mean_density", torch.zeros(()))

    @property
    def cell_size(self) -> Tensor:
        """Edge lengths of one cell [3]."""
        return (self.aabb[3:] - self.aabb[:3]) / self.resolution

    def cell_centers(self) -> Tensor:
        """World positions of all cell centres in cell order, [R^3, 3]."""
        r = self.resolution
        idx = torch.arange(r, device=self.aabb.device, dtype=torch.float32)
        grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), dim=-1).reshape(-1, 3)
        return self.aabb[:3] + (grid + 0.5) * self.cell_size

    def occupied(self) -> Tensor:
        """Occupancy of every cell as a bool [R, R, R] volume indexed [i, j, k] (x, y, z)."""
        r = self.resolution
        return unpack_bits(self.bitfield).reshape(r, r, r)

    def cell_index(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Flat cell index [N] of points [N, 3] and whether each point lies inside the box [N]."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        inside = ((points >= lo) & (points <= hi)).all(dim=-1)
        ijk = ((points - lo) / self.cell_size).floor().long().clamp(0, self.resolution - 1)
        flat = (ijk[:, 0] * self.resolution + ijk[:, 1]) * self.resolution + ijk[:, 2]
        return flat, inside

    def query(self, points: Tensor) -> Tensor:
        """Whether points [N, 3] fall in occupied cells -> bool [N] (outside the box: False)."""
        flat, inside = self.cell_index(points)
        bits = (self.bitfield[flat >> 3] >> (flat & 7).to(torch.uint8)) & 1
        return bits.bool() & inside

    @torch.no_grad()
    def update(
        self,
        density_fn: DensityFn,
        decay: float = 0.95,
        threshold: float = 0.01,
        jitter: bool = True,
        dilation: int = 0,
        chunk: int = 65536,
        generator: torch.Generator | None = None,
    ) -> None:
        """Re-evaluate every cell and refresh the bitfield.

        Each cell's density becomes ``max(decay * old, density_fn(p))`` with ``p`` the cell
        centre (uniformly jittered inside the cell when ``jitter``). A cell is occupied when its
        density exceeds ``min(threshold, mean density)``; ``dilation`` > 0 then also marks the
        cells within that many cells (a max filter), a safety margin for thin structures.
        """
        points = self.cell_centers()
        if jitter:
            points = points + (uniform(points.shape, points, generator) - 0.5) * self.cell_size
        fresh = torch.cat([density_fn(part).reshape(-1).float() for part in points.split(chunk)])
        self.density.copy_(torch.maximum(self.density * decay, fresh.clamp_min(0.0)))
        self.mean_density.copy_(self.density.mean())
        cutoff = torch.clamp(self.mean_density, max=threshold)
        mask = self.density > cutoff
        if dilation > 0:
            r = self.resolution
            vol = mask.float().reshape(1, 1, r, r, r)
            mask = F.max_pool3d(vol, 2 * dilation + 1, stride=1, padding=dilation).reshape(-1) > 0
        self.bitfield.copy_(pack_bits(mask))

    @torch.no_grad()
    def march(
        self,
        rays: RayBundle,
        step_size: float,
        perturb: bool = False,
        generator: torch.Generator | None = None,
        max_steps: int | None = None,
    ) -> PackedSamples:
        """Cut each ray's part inside the box (and within its near/far) into segments of length
        ``step_size`` (in ray-parameter units) and keep those whose midpoint is in an occupied
        cell. Empty cells therefore cost no field evaluations.

        Without ``perturb`` segment edges are ``t_entry + k * step_size``; with it the lattice is
        shifted by a random fraction of a step per ray (the first segment is shortened so the
        whole interval stays covered). ``max_steps`` caps the segments per ray.
        """
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        n_rays = len(rays)
        t_min, t_max = ray_aabb_intersect(rays.origins, rays.directions, self.aabb.to(rays.origins.dtype))
        t_in = torch.maximum(t_min, rays.near[:, 0])  # [N]
        t_out = torch.minimum(t_max, rays.far[:, 0])  # [N]
        span = (t_out - t_in).clamp_min(0.0)
        n_steps = int(math.ceil(float(span.max()) / step_size)) + 1 if n_rays else 0
        if max_steps is not None:
            n_steps = min(n_steps, max_steps)
        if n_steps < 1 or not bool((span > 0).any()):
            empty = rays.origins.new_zeros(0)
            return PackedSamples(empty.long(), empty, empty, n_rays)
        shift = uniform((n_rays, 1), t_in, generator) if perturb else torch.ones_like(t_in[:, None])
        k = torch.arange(n_steps + 1, device=t_in.device, dtype=t_in.dtype)  # [K+1]
        edges = t_in[:, None] + (k[None, :] + shift - 1.0) * step_size  # [N, K+1]
        edges = torch.minimum(torch.maximum(edges, t_in[:, None]), t_out[:, None])
        starts, ends = edges[:, :-1], edges[:, 1:]  # [N, K]
        mids = 0.5 * (starts + ends)
        points = rays.origins[:, None, :] + rays.directions[:, None, :] * mids[..., None]  # [N, K, 3]
        keep = (ends > starts) & self.query(points.reshape(-1, 3)).reshape(starts.shape)
        ray_idx, _ = torch.nonzero(keep, as_tuple=True)
        return PackedSamples(ray_idx, starts[keep], ends[keep], n_rays)
