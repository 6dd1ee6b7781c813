"""Empty-space skipping for MoFaNeRF: an occupancy grid of the coarse density per code set.

MoFaNeRF's released renderer evaluates both networks (density and colour) at 64 + 128 depths
of every ray, although a face fills a small part of the 8..26 depth range and of the image. The
fast path (:class:`SkipSettings`, used by :meth:`MoFaNeRF.render_image` and by fitting)

1. builds an :class:`~facenerf.core.occupancy_grid.OccupancyGrid` over a box around the head
   from the **coarse network's density for the current codes** (density at every cell corner,
   a cell taking its corners' maximum, plus one cell of margin), cached per code set
   (:class:`GridCache`; a fit refreshes it as its codes move, see :class:`FitGrid`);
2. keeps the reference's depths, but rays that meet no occupied cell are background without
   any network call, and coarse and fine samples in empty cells are never evaluated;
3. runs the coarse pass density-only without gradients (it only places the importance samples);
4. stops each ray once its transmittance is below ``early_stop_eps`` (front to back, in rounds)
   and evaluates colour only where the compositing weight exceeds ``min_weight``.

Each step drops only contributions bounded by a threshold (density below ``threshold`` in
skipped cells, transmittance below ``early_stop_eps``, weights below ``min_weight``), so the
image agrees with the reference render; ``benchmarks/mofanerf_render.py`` measures by how much.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.renderer import RenderSettings
from facenerf.core.scene_box import cube_aabb


@dataclass(frozen=True)
class SkipSettings:
    """Options of MoFaNeRF's fast path (see the module docstring)."""

    bound: float = 3.2  # grid box = [-bound, bound]^3 world units (1 = 50 mm): the head and neck
    resolution: int = 64  # cells per axis (0.1 units = 5 mm at the default bound)
    threshold: float = 1e-3  # coarse density below which a cell is empty (1 / world unit)
    dilation: int = 1  # margin of occupied cells around the density found
    early_stop_eps: float = 1e-4  # stop a ray once its transmittance is below this
    min_weight: float = 1e-4  # fine colour only where the compositing weight exceeds this
    samples_per_round: int = 16  # front-to-back round size of early termination
    chunk_rays: int = 0  # rays per chunk of an image render (0: sized to the device)

    def render_settings(self, base: RenderSettings) -> RenderSettings:
        """``base`` with the fast path's options (coarse density-only, termination, visible colour)."""
        return replace(base, coarse_colour=False, min_weight=self.min_weight, early_stop_eps=self.early_stop_eps,
                       samples_per_round=self.samples_per_round,
                       chunk_rays=self.chunk_rays if self.chunk_rays > 0 else 0)

    def new_grid(self, device) -> OccupancyGrid:
        return OccupancyGrid(cube_aabb(self.bound), self.resolution).to(device)


def coarse_density(model, codes):
    """The density callback of the coarse network for one face: points [M, 3] -> sigma [M]."""
    field = model.field(codes, model.coarse)
    return lambda points: field.density(points)[0]


def build_grid(model, codes, settings: SkipSettings, grid: OccupancyGrid | None = None,
               decay: float = 0.0) -> OccupancyGrid:
    """A grid marking where the coarse density of ``codes`` exceeds ``settings.threshold``.

    With an existing ``grid`` and ``decay`` > 0 the new densities are merged as
    ``max(decay * old, new)`` (cells occupied by recent codes stay occupied for a while).
    """
    grid = grid if grid is not None else settings.new_grid(codes.shape.device)
    with torch.no_grad():
        grid.rebuild(coarse_density(model, codes), threshold=settings.threshold, dilation=settings.dilation,
                     decay=decay)
    return grid


def _digest(*tensors: Tensor) -> str:
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class GridCache:
    """Occupancy grids keyed by a face's density codes (shape and modulated expression; the
    texture code does not change density) and by the coarse network's weights (their in-place
    version counters), least recently used first out."""

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._grids: OrderedDict[tuple, OccupancyGrid] = OrderedDict()
        self.builds = 0

    def grid(self, model, codes, settings: SkipSettings) -> OccupancyGrid:
        weights = tuple((id(p), p._version) for p in model.coarse.parameters())
        key = (_digest(codes.shape, codes.expression), weights, settings)
        if key in self._grids:
            self._grids.move_to_end(key)
            return self._grids[key]
        grid = build_grid(model, codes, settings)
        self.builds += 1
        self._grids[key] = grid
        while len(self._grids) > self.max_entries:
            self._grids.popitem(last=False)
        return grid

    def clear(self) -> None:
        self._grids.clear()


class FitGrid:
    """The grid of a fit whose codes change every iteration.

    :meth:`grid` rebuilds it when ``refresh_every`` iterations have passed since the last build
    and the density codes moved, merging with ``decay`` so that cells the face occupied a
    moment ago stay occupied while their density fades.
    """

    def __init__(self, settings: SkipSettings, refresh_every: int = 25, decay: float = 0.5):
        self.settings, self.refresh_every, self.decay = settings, refresh_every, decay
        self._grid: OccupancyGrid | None = None
        self._built_at = -1
        self._digest = ""
        self.builds = 0

    def grid(self, model, codes, iteration: int) -> OccupancyGrid:
        due = self._grid is None or iteration - self._built_at >= self.refresh_every
        if due:
            digest = _digest(codes.shape, codes.expression)
            if digest != self._digest:
                self._grid = build_grid(model, codes, self.settings, self._grid,
                                        decay=self.decay if self._grid is not None else 0.0)
                self._digest = digest
                self.builds += 1
            self._built_at = iteration
        return self._grid
