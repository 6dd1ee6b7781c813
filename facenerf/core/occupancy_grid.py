"""Occupancy grid over an axis-aligned box, maintained from a density callback, and ray marching
that emits samples only inside occupied cells.

The grid keeps its state in registered buffers, so it rides in a model's ``state_dict``:
``density`` [R^3] (running max-decay density per cell), ``bitfield`` [R^3 / 8] uint8 (bit
``b`` of byte ``n`` is cell ``8n + b``), ``aabb`` [6] and ``mean_density`` []. Cells are
numbered ``(i * R + j) * R + k`` for the cell at index (i, j, k) along (x, y, z); the box maps
to the unit cube through :mod:`facenerf.core.scene_box`.

Maintenance follows torch-ngp / instant-ngp: :meth:`OccupancyGrid.update` evaluates the
density callback at one jittered point per chosen cell and sets
``density = max(decay * density, new)`` there; for the first ``warmup_steps`` updates every
cell is chosen, afterwards a quarter of the cells at random plus as many random occupied
cells. A cell is occupied when its density exceeds ``min(threshold, mean density)``.
:meth:`OccupancyGrid.rebuild` is the deterministic, conservative alternative for a frozen
field: density at every cell corner, each cell taking the maximum of its eight corners.
The callback is any ``points [M, 3] -> sigma [M]``; a model supplies e.g. an
expression-aware one (the maximum over expression bases).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facenerf.core import volume_rendering as vr
from facenerf.core.fields import DensityFn
from facenerf.core.rays import RayBundle
from facenerf.core.samplers import uniform
from facenerf.core.scene_box import as_aabb, ray_box_intersect, to_unit_cube

__all__ = ["DensityFn", "OccupancyGrid", "PackedSamples", "pack_bits", "unpack_bits", "ray_aabb_intersect"]

ray_aabb_intersect = ray_box_intersect  # the slab test lives in scene_box


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

    def select(self, keep: Tensor) -> "PackedSamples":
        """The samples where ``keep`` [M] (bool) is true, order kept."""
        return PackedSamples(self.ray_indices[keep], self.t_starts[keep], self.t_ends[keep], self.n_rays)


def pack_bits(mask: Tensor) -> Tensor:
    """Bool [K] (K divisible by 8) -> uint8 [K / 8]; bit ``b`` of byte ``n`` holds ``mask[8n + b]``."""
    weights = (2 ** torch.arange(8, device=mask.device)).to(torch.uint8)  # [8]
    return (mask.reshape(-1, 8).to(torch.uint8) * weights).sum(dim=-1, dtype=torch.uint8)


def unpack_bits(bitfield: Tensor) -> Tensor:
    """uint8 [K / 8] -> bool [K], inverse of :func:`pack_bits`."""
    shifts = torch.arange(8, device=bitfield.device, dtype=torch.uint8)
    return ((bitfield[:, None] >> shifts) & 1).bool().reshape(-1)


def _dilate(mask: Tensor, resolution: int, cells: int) -> Tensor:
    """Grow a flat cell mask [R^3] by ``cells`` cells in every direction (a cubic max filter)."""
    vol = mask.float().reshape(1, 1, resolution, resolution, resolution)
    return F.max_pool3d(vol, 2 * cells + 1, stride=1, padding=cells).reshape(-1) > 0


class OccupancyGrid(nn.Module):
    """A ``resolution``^3 occupancy grid over ``aabb`` = (xmin, ymin, zmin, xmax, ymax, zmax).

    A fresh grid marks every cell occupied (nothing is skipped until the first update).
    """

    def __init__(self, aabb: Sequence[float] | Tensor = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0), resolution: int = 128):
        super().__init__()
        if resolution < 2 or resolution % 2:
            raise ValueError(f"occupancy grid resolution must be even and >= 2, got {resolution}")
        self.resolution = resolution
        n_cells = resolution**3
        self.register_buffer("aabb", as_aabb(aabb))
        self.register_buffer("density", torch.zeros(n_cells))
        self.register_buffer("bitfield", torch.full((n_cells // 8,), 255, dtype=torch.uint8))
        self.register_buffer("mean_density", torch.zeros(()))

    @property
    def n_cells(self) -> int:
        return self.resolution**3

    @property
    def cell_size(self) -> Tensor:
        """Edge lengths of one cell [3]."""
        return (self.aabb[3:] - self.aabb[:3]) / self.resolution

    def _cell_ijk(self, cells: Tensor) -> Tensor:
        """Flat cell indices [N] -> integer (i, j, k) [N, 3]."""
        r = self.resolution
        return torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1)

    def cell_centers(self, cells: Tensor | None = None) -> Tensor:
        """World positions of cell centres [N, 3] (all cells in cell order when ``cells`` is None)."""
        if cells is None:
            cells = torch.arange(self.n_cells, device=self.aabb.device)
        return self.aabb[:3] + (self._cell_ijk(cells).float() + 0.5) * self.cell_size

    def occupied(self) -> Tensor:
        """Occupancy of every cell as a bool [R, R, R] volume indexed [i, j, k] (x, y, z)."""
        r = self.resolution
        return unpack_bits(self.bitfield).reshape(r, r, r)

    def occupied_fraction(self) -> float:
        """Share of occupied cells, in [0, 1]."""
        return float(unpack_bits(self.bitfield).float().mean())

    def cell_index(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Flat cell index [N] of points [N, 3] and whether each point lies inside the box [N]."""
        lo, hi = self.aabb[:3].to(points.dtype), self.aabb[3:].to(points.dtype)
        return self._flat_cells((points - lo) * (self.resolution / (hi - lo)))

    def _flat_cells(self, cells: Tensor) -> tuple[Tensor, Tensor]:
        """Points in cell units [..., 3] (the box spans [0, R]^3; modified in place) -> flat cell
        index [...] and whether each point lies inside the box [...]."""
        r = self.resolution
        inside = (cells.amin(dim=-1) >= 0) & (cells.amax(dim=-1) <= r)
        # floor of the clamped coordinates, flattened elementwise in float (exact: R^3 < 2^24 for
        # R <= 256; a matmul would run in bf16 under autocast)
        ijk = cells.clamp_(0, r - 1).floor_()
        flat = ((ijk[..., 0] * r + ijk[..., 1]) * r + ijk[..., 2]).long()
        return flat, inside

    def query_along(self, origins: Tensor, directions: Tensor, t: Tensor) -> Tensor:
        """Whether the points ``origins + t * directions`` (rays [R, 3], depths t [R, S]) fall in
        occupied cells -> bool [R, S] (outside the box: False); as :meth:`query`, without
        materialising the world points."""
        lo, hi = self.aabb[:3].to(t.dtype), self.aabb[3:].to(t.dtype)
        scale = self.resolution / (hi - lo)  # [3]
        start, step = (origins - lo) * scale, directions * scale  # [R, 3] in cell units
        cells = torch.addcmul(start[:, None, :], step[:, None, :], t[..., None])  # [R, S, 3]
        flat, inside = self._flat_cells(cells)
        return self.occupancy_mask()[flat] & inside

    def occupancy_mask(self) -> Tensor:
        """Occupancy of every cell as a flat bool [R^3], unpacked once per state of the bitfield."""
        key = (self.bitfield.data_ptr(), self.bitfield._version, str(self.bitfield.device))
        cached = self.__dict__.get("_mask_cache")
        if cached is None or cached[0] != key:
            cached = (key, unpack_bits(self.bitfield))
            self.__dict__["_mask_cache"] = cached
        return cached[1]

    def query(self, points: Tensor) -> Tensor:
        """Whether points [N, 3] fall in occupied cells -> bool [N] (outside the box: False)."""
        flat, inside = self.cell_index(points)
        return self.occupancy_mask()[flat] & inside

    def occupied_box(self) -> Tensor | None:
        """The smallest box ``aabb [6]`` enclosing every occupied cell, or None when none is."""
        cells = torch.nonzero(self.occupancy_mask()).squeeze(-1)
        if cells.numel() == 0:
            return None
        ijk = self._cell_ijk(cells)
        lo = self.aabb[:3] + ijk.amin(dim=0).float() * self.cell_size
        hi = self.aabb[:3] + (ijk.amax(dim=0) + 1).float() * self.cell_size
        return torch.cat([lo, hi])

    def ray_meets_box(self, rays: RayBundle) -> Tensor:
        """Whether each ray [N], between its near and far, meets :meth:`occupied_box` (a slab test:
        every ray through an occupied cell passes; others may too)."""
        box = self.occupied_box()
        if box is None:
            return torch.zeros(len(rays), dtype=torch.bool, device=rays.origins.device)
        t_min, t_max = ray_box_intersect(rays.origins, rays.directions, box)
        return (t_min <= t_max) & (t_max >= rays.near[:, 0]) & (t_min <= rays.far[:, 0])

    # ------------------------------------------------------------------ maintenance
    def _chosen_cells(self, step: int | None, warmup_steps: int, generator) -> Tensor:
        """All cells during warm-up (or ``step`` None), else R^3/4 random cells + R^3/4 random occupied ones."""
        device = self.aabb.device
        if step is None or step < warmup_steps:
            return torch.arange(self.n_cells, device=device)
        n = self.n_cells // 4
        gen_device = generator.device if generator is not None else device
        random_cells = torch.randint(self.n_cells, (n,), generator=generator, device=gen_device).to(device)
        occupied = torch.nonzero(unpack_bits(self.bitfield)).squeeze(-1)
        if occupied.numel():
            pick = torch.randint(occupied.numel(), (n,), generator=generator, device=gen_device).to(device)
            random_cells = torch.cat([random_cells, occupied[pick]])
        return torch.unique(random_cells)

    def _refresh_bitfield(self, threshold: float, dilation: int) -> None:
        self.mean_density.copy_(self.density.mean())
        mask = self.density > torch.clamp(self.mean_density, max=threshold)
        if dilation > 0:
            mask = _dilate(mask, self.resolution, dilation)
        self.bitfield.copy_(pack_bits(mask))

    @torch.no_grad()
    def update(
        self,
        density_fn: DensityFn,
        step: int | None = None,
        decay: float = 0.95,
        threshold: float = 0.01,
        warmup_steps: int = 256,
        jitter: bool = True,
        dilation: int = 0,
        chunk: int = 65536,
        generator: torch.Generator | None = None,
    ) -> None:
        """One torch-ngp update (see the module docstring) and a fresh bitfield.

        ``step`` counts the updates' training steps: below ``warmup_steps`` (or when None) every
        cell is evaluated, afterwards the partial random subset. Each chosen cell's density
        becomes ``max(decay * old, density_fn(p))`` with ``p`` the cell centre, uniformly
        jittered inside the cell when ``jitter``; other cells keep theirs. A cell is occupied
        when its density exceeds ``min(threshold, mean density)``; ``dilation`` > 0 then also
        marks the cells within that many cells (a safety margin for thin structures).
        """
        cells = self._chosen_cells(step, warmup_steps, generator)
        points = self.cell_centers(cells)
        if jitter:
            points = points + (uniform(points.shape, points, generator) - 0.5) * self.cell_size
        fresh = torch.cat([density_fn(part).reshape(-1).float() for part in points.split(chunk)])
        self.density[cells] = torch.maximum(self.density[cells] * decay, fresh.clamp_min(0.0))
        self._refresh_bitfield(threshold, dilation)

    def maybe_update(self, step: int, density_fn: DensityFn, every: int = 16, **kwargs) -> bool:
        """:meth:`update` on every ``every``-th step (``kwargs`` as for it); whether it ran."""
        if every <= 0 or step % every:
            return False
        self.update(density_fn, step=step, **kwargs)
        return True

    @torch.no_grad()
    def rebuild(self, density_fn: DensityFn, threshold: float = 0.01, dilation: int = 1,
                chunk: int = 65536, decay: float = 0.0) -> None:
        """Deterministic conservative update for a frozen field: density at all (R+1)^3 cell
        corners, each cell taking the maximum of its 8 corners, combined as
        ``max(decay * old, new)`` (``decay = 0`` replaces the grid). Occupied above
        ``min(threshold, mean)``, then dilated by ``dilation`` cells.
        """
        r = self.resolution
        axis = torch.linspace(0.0, 1.0, r + 1, device=self.aabb.device)
        unit = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)
        corners = self.aabb[:3] + unit * (self.aabb[3:] - self.aabb[:3])  # [(R+1)^3, 3]
        values = torch.cat([density_fn(part).reshape(-1).float() for part in corners.split(chunk)])
        cells = F.max_pool3d(values.reshape(1, 1, r + 1, r + 1, r + 1), 2, stride=1).reshape(-1)
        self.density.copy_(torch.maximum(self.density * decay, cells.clamp_min(0.0)))
        self._refresh_bitfield(threshold, dilation)

    # ------------------------------------------------------------------ marching
    def _lattice(self, rays: RayBundle, step_size: float, perturb: bool, generator, max_steps):
        """Segments of length ``step_size`` covering each ray's part inside the box and its
        near/far: ``(starts [N, K], ends [N, K])``, or None when no ray crosses the box."""
        n_rays = len(rays)
        t_min, t_max = ray_box_intersect(rays.origins, rays.directions, self.aabb)
        t_in = torch.maximum(t_min, rays.near[:, 0])  # [N]
        t_out = torch.minimum(t_max, rays.far[:, 0])  # [N]
        span = (t_out - t_in).clamp_min(0.0)
        n_steps = int(math.ceil(float(span.max()) / step_size)) + 1 if n_rays else 0
        if max_steps is not None:
            n_steps = min(n_steps, max_steps)
        if n_steps < 1 or not bool((span > 0).any()):
            return None
        shift = uniform((n_rays, 1), t_in, generator) if perturb else torch.ones_like(t_in[:, None])
        k = torch.arange(n_steps + 1, device=t_in.device, dtype=t_in.dtype)  # [K+1]
        edges = t_in[:, None] + (k[None, :] + shift - 1.0) * step_size  # [N, K+1]
        edges = torch.minimum(torch.maximum(edges, t_in[:, None]), t_out[:, None])
        return edges[:, :-1], edges[:, 1:]

    @torch.no_grad()
    def march(
        self,
        rays: RayBundle,
        step_size: float,
        perturb: bool = False,
        generator: torch.Generator | None = None,
        max_steps: int | None = None,
        density_fn: DensityFn | None = None,
        early_stop_eps: float = 0.0,
        alpha_threshold: float = 0.0,
        scale_deltas_by_direction_norm: bool = True,
    ) -> PackedSamples:
        """Cut each ray's part inside the box (and within its near/far) into segments of length
        ``step_size`` (in ray-parameter units) and keep those whose midpoint is in an occupied
        cell. Empty cells therefore cost no field evaluations.

        Without ``perturb`` segment edges are ``t_entry + k * step_size``; with it the lattice is
        shifted by a random fraction of a step per ray (the first segment is shortened so the
        whole interval stays covered). ``max_steps`` caps the segments per ray.

        With a ``density_fn`` (nerfacc's ``sigma_fn``) the kept samples are also pruned without
        gradients: a sample goes when the transmittance in front of it is below
        ``early_stop_eps`` or its opacity ``1 - exp(-sigma * delta)`` is below
        ``alpha_threshold`` (``delta`` times ``|direction|`` when
        ``scale_deltas_by_direction_norm``, as the renderer composites).
        """
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        lattice = self._lattice(rays, step_size, perturb, generator, max_steps)
        if lattice is None:
            empty = rays.origins.new_zeros(0)
            return PackedSamples(empty.long(), empty, empty, len(rays))
        starts, ends = lattice  # [N, K]
        mids = 0.5 * (starts + ends)
        points = rays.origins[:, None, :] + rays.directions[:, None, :] * mids[..., None]  # [N, K, 3]
        keep = (ends > starts) & self.query(points.reshape(-1, 3)).reshape(starts.shape)
        ray_idx, _ = torch.nonzero(keep, as_tuple=True)
        samples = PackedSamples(ray_idx, starts[keep], ends[keep], len(rays))
        if density_fn is None or len(samples) == 0:
            return samples
        sigma = density_fn(points[keep]).reshape(-1).float()
        deltas = samples.t_ends - samples.t_starts
        if scale_deltas_by_direction_norm:
            deltas = deltas * rays.directions.norm(dim=-1)[ray_idx]
        alpha = vr.alpha_from_density(sigma.clamp_min(0.0), deltas.float())
        trans = vr.transmittance_packed(alpha, ray_idx, len(rays), eps=0.0)
        return samples.select((trans >= early_stop_eps) & (alpha >= alpha_threshold))

    @torch.no_grad()
    def ray_bounds(self, rays: RayBundle, step_size: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Where each ray meets occupied cells: ``(t_first [N], t_last [N], hit [N] bool)``.

        Marches at ``step_size`` (default: half the smallest cell edge, in the units of an
        unnormalised direction of length 1 - pass a step for other direction lengths). The
        bounds are segment edges, so they enclose every occupied cell the lattice touched.
        Rays that meet none get ``hit = False`` and ``t_first = t_last = near``.
        """
        if step_size is None:
            length = rays.directions.norm(dim=-1).max().clamp_min(1e-12) if len(rays) else 1.0
            step_size = float(self.cell_size.min()) * 0.5 / float(length)
        samples = self.march(rays, step_size)
        near = rays.near[:, 0]
        hit = torch.zeros(len(rays), dtype=torch.bool, device=near.device)
        hit[samples.ray_indices] = True
        t_first = near.clone().scatter_reduce(0, samples.ray_indices, samples.t_starts, "amin", include_self=False)
        t_last = near.clone().scatter_reduce(0, samples.ray_indices, samples.t_ends, "amax", include_self=False)
        return t_first, t_last, hit
