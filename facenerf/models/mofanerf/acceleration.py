"""Empty-space skipping for MoFaNeRF: an occupancy grid of the coarse density per code set.

MoFaNeRF's released renderer evaluates both networks (density and colour) at 64 + 128 depths
of every ray, although a face fills a small part of the 8..26 depth range and of the image. The
fast path (:class:`SkipSettings`, used by :meth:`MoFaNeRF.render_image` and by fitting)

1. builds an :class:`~facenerf.core.occupancy_grid.OccupancyGrid` over a box around the head
   from the **coarse network's density for the current codes** (density at every cell corner,
   a cell taking its corners' maximum, plus ``dilation`` cells of margin), and (``fine_grid``,
   on by default) one from the fine network's density, cached per code set (:class:`GridCache`;
   a fit refreshes them as its codes move, see :class:`FitGrid`). The coarse network's density
   is looser than the fine one's (it smears density behind and around the head), so the fine
   grid decides which rays and samples matter;
2. keeps the reference's depths, but rays that miss the box around the fine grid's occupied
   cells are background without any network call, coarse samples outside the cells both grids
   mark occupied (``coarse_needs_fine_grid``) and fine samples in empty cells of the fine grid
   are never evaluated;
3. runs the coarse pass density-only without gradients (it only places the importance samples);
4. evaluates front to back in rounds and stops each ray once its transmittance is below
   ``early_stop_eps`` (``coarse_first_round``: the fine pass's first round takes each ray's
   samples up to where its coarse weights end, where the fine transmittance mostly ends too);
   colour only where the compositing weight exceeds ``min_weight``, and
   (``colour_stride``) only on every other such sample of a ray, the ones between taking the
   colour interpolated in depth; with ``fill_colour`` the weight left without colour and the
   light left at termination take the ray's mean colour instead of black.

The grid, termination and weight thresholds drop contributions bounded by them; the colour
interpolation and fill replace colours by their neighbours' along the ray. The image agrees with
the reference render to the PSNR that ``benchmarks/mofanerf_render.py`` measures
(``benchmarks/mofanerf_skip_sweep.py`` varies each option). Fits, whose gradients flow
through the render, use stricter thresholds and no fill (the ``fit_*`` options).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from facenerf.core.occupancy_grid import OccupancyGrid
from facenerf.core.packed import point_chunk
from facenerf.core.renderer import RenderSettings
from facenerf.core.scene_box import cube_aabb


@dataclass(frozen=True)
class SkipSettings:
    """Options of MoFaNeRF's fast path (see the module docstring)."""

    bound: float = 4.0  # grid box = [-bound, bound]^3 world units (1 = 50 mm): a real-size head and its
    # clipped neck reach 3.05 units below and 2.7 in front of the TU origin; 4 leaves about 50 mm
    resolution: int = 64  # cells per axis (0.125 units = 6.25 mm at the default bound)
    threshold: float = 0.3  # renders: density below which a cell is empty (1 / world unit): a 0.35-unit
    # coarse segment (8 units / 23) of it has opacity 0.1, a fine one less
    fit_threshold: float = 0.1  # fitting: the grids' density threshold (below the renders' 0.3: the codes
    # move between refreshes; 1e-3 evaluated 8% more samples in the tiny fit for the same held-out PSNR)
    dilation: int = 0  # margin of occupied cells around the density found (the cell maximum over its
    # corners already encloses the surface; one cell of margin cost 25% more samples for 0.1 dB)
    early_stop_eps: float = 3e-2  # renders: stop a ray once its transmittance is below this; the light
    # left is filled with the ray's colour (fill_colour)
    min_weight: float = 1e-2  # renders: fine colour only where the compositing weight exceeds this
    fit_early_stop_eps: float = 1e-3  # fitting (gradients flow): stricter than renders, no fill; the
    # held-out PSNR of the tiny fit moved by 0.01 dB from torch-ngp's training threshold 1e-4
    fit_min_weight: float = 3e-3  # fitting: colour only where the weight exceeds this (no fill: the
    # rest is dropped); 1e-3 gave the tiny fit the same held-out PSNR within 0.03 dB
    fit_resolution: int = 32  # fitting: a coarser grid, cheap to refresh as the codes move
    fit_fine_grid: bool = True  # fitting: a fine-density grid too (refreshed with the coarse one; the fine
    # pass then skips the empty cells of the fine density: 37 instead of 40 samples per ray in the tiny fit)
    fit_samples_per_round: int = 8  # fitting: front-to-back round size (fewer, larger calls than renders)
    samples_per_round: int = 2  # renders: front-to-back round size of early termination (smaller rounds
    # evaluate fewer samples behind the stop; 2 was faster than 4 in three sweeps)
    chunk_rays: int = 0  # rays per chunk of an image render (0: sized to the device)
    fine_grid: bool = True  # a second grid from the fine network's density (rays, fine samples)
    colour_stride: int = 2  # renders: colour on every n-th visible sample of a ray, interpolated between
    fill_colour: bool = True  # renders: weight below min_weight and the light left at termination take
    # the ray's mean visible colour (not black)
    coarse_needs_fine_grid: bool = False  # coarse samples only in cells both grids mark occupied (measured:
    # fewer coarse samples, as many fine ones, and a second grid lookup: no faster)
    fit_colour_stride: int = 3  # fitting: colour_stride of the loss's render (interpolated colours pass
    # their gradients to the evaluated neighbours; 3 against 2 moved the tiny fit's held-out PSNR by 0.02 dB)
    fit_fill_colour: bool = False  # fitting: fill_colour of the loss's render
    coarse_first_round: bool = True  # the fine pass's first front-to-back round takes each ray's samples up to
    # the depth where its coarse weights end, then rounds of samples_per_round follow (fewer rounds and
    # fewer samples behind the stop; the same image, as samples behind a stop get no weight)

    def render_settings(self, base: RenderSettings, fitting: bool = False) -> RenderSettings:
        """``base`` with the fast path's options (coarse density-only, termination, visible colour);
        ``fitting`` takes the stricter thresholds used while gradients flow."""
        return replace(base, coarse_colour=False, samples_per_round=self.samples_per_round,
                       min_weight=self.fit_min_weight if fitting else self.min_weight,
                       early_stop_eps=self.fit_early_stop_eps if fitting else self.early_stop_eps,
                       chunk_rays=self.chunk_rays if self.chunk_rays > 0 else 0,
                       colour_stride=self.fit_colour_stride if fitting else self.colour_stride,
                       fill_colour=self.fit_fill_colour if fitting else self.fill_colour,
                       coarse_needs_fine_grid=self.coarse_needs_fine_grid,
                       coarse_first_round=self.coarse_first_round)

    def for_fitting(self) -> "SkipSettings":
        """The settings a fit uses: its grid resolution, grids and thresholds."""
        return replace(self, resolution=self.fit_resolution, fine_grid=self.fit_fine_grid,
                       samples_per_round=self.fit_samples_per_round, threshold=self.fit_threshold)

    def new_grid(self, device) -> OccupancyGrid:
        return OccupancyGrid(cube_aabb(self.bound), self.resolution).to(device)


def network_density(model, codes, network):
    """The density callback of one network for one face: points [M, 3] -> sigma [M]."""
    field = model.field(codes, network)
    return lambda points: field.density(points)[0]


def build_grid(model, codes, settings: SkipSettings, network=None, grid: OccupancyGrid | None = None,
               decay: float = 0.0) -> OccupancyGrid:
    """A grid marking where ``network``'s (default: the coarse one's) density for ``codes``
    exceeds ``settings.threshold``.

    With an existing ``grid`` and ``decay`` > 0 the new densities are merged as
    ``max(decay * old, new)`` (cells occupied by recent codes stay occupied for a while).
    """
    grid = grid if grid is not None else settings.new_grid(codes.shape.device)
    network = network if network is not None else model.coarse
    with torch.no_grad():
        grid.rebuild(network_density(model, codes, network), threshold=settings.threshold,
                     dilation=settings.dilation, decay=decay, chunk=point_chunk(grid.density))
    return grid


def build_grids(model, codes, settings: SkipSettings, grids: tuple | None = None,
                decay: float = 0.0) -> tuple[OccupancyGrid, OccupancyGrid | None]:
    """``(coarse grid, fine grid or None)`` for ``codes``; ``grids`` are updated in place when given."""
    old_coarse, old_fine = grids if grids is not None else (None, None)
    coarse = build_grid(model, codes, settings, model.coarse, old_coarse, decay)
    if not settings.fine_grid or model.fine is None:
        return coarse, None
    return coarse, build_grid(model, codes, settings, model.fine, old_fine, decay)


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
        self._grids: OrderedDict[tuple, tuple] = OrderedDict()
        self.builds = 0

    def grids(self, model, codes, settings: SkipSettings) -> tuple[OccupancyGrid, OccupancyGrid | None]:
        """``(coarse grid, fine grid or None)`` of ``codes``, built on the first request."""
        weights = tuple((id(p), p._version) for p in model.parameters())
        key = (_digest(codes.shape, codes.expression), weights, settings)
        if key in self._grids:
            self._grids.move_to_end(key)
            return self._grids[key]
        grids = build_grids(model, codes, settings)
        self.builds += 1
        self._grids[key] = grids
        while len(self._grids) > self.max_entries:
            self._grids.popitem(last=False)
        return grids

    def clear(self) -> None:
        self._grids.clear()


class FitGrid:
    """The occupancy grid(s) of a fit, whose codes change every iteration.

    The first call builds them like :func:`build_grids` (``settings.for_fitting()``: the coarse
    and (``fit_fine_grid``) fine networks' grids at a lower resolution). Every ``refresh_every``
    iterations, when the density codes moved, they are refreshed with the torch-ngp update
    (:meth:`~facenerf.core.occupancy_grid.OccupancyGrid.update`: a quarter of the cells at
    random plus a quarter of the occupied ones, ``density = max(decay * old, new)``), so cells
    the face occupied a moment ago stay occupied while their density fades.
    """

    def __init__(self, settings: SkipSettings, refresh_every: int = 25, decay: float = 0.5, seed: int = 0):
        self.settings, self.refresh_every, self.decay = settings.for_fitting(), refresh_every, decay
        self.generator = torch.Generator().manual_seed(seed)
        self._grids: tuple | None = None
        self._built_at = -1
        self._digest = ""
        self.builds = 0

    def grids(self, model, codes, iteration: int) -> tuple[OccupancyGrid, OccupancyGrid | None]:
        """``(coarse grid, fine grid or None)`` for the fit's current ``codes`` at ``iteration``."""
        if self._grids is None:
            self._grids = build_grids(model, codes, self.settings)
            self._digest, self._built_at, self.builds = _digest(codes.shape, codes.expression), iteration, 1
        elif iteration - self._built_at >= self.refresh_every:
            digest = _digest(codes.shape, codes.expression)
            if digest != self._digest:
                networks = (model.coarse, model.fine)
                for grid, network in zip(self._grids, networks):
                    if grid is not None:
                        grid.update(network_density(model, codes, network), step=iteration, decay=self.decay,
                                    threshold=self.settings.threshold, warmup_steps=0, dilation=self.settings.dilation,
                                    generator=self.generator, chunk=point_chunk(grid.density))
                self._digest = digest
                self.builds += 1
            self._built_at = iteration
        return self._grids
