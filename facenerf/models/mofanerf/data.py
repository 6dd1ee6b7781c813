"""MoFaNeRF's training data, built from a run config (shared by training, fitting and pair-making).

:func:`build_data` reads the run's multi-view renders with
:func:`facenerf.data.mofanerf_dataset.load_mofanerf_sources` and wraps them in
:class:`~facenerf.data.mofanerf_dataset.MoFaNeRFData` with the run's sampling rules, ray
bounds and texture size. UV maps are cached under ``<run folder>/uv_cache``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from facenerf.data.mofanerf_dataset import MoFaNeRFData, load_mofanerf_sources
from facenerf.models.mofanerf.config import MoFaNeRFRunConfig


def run_dir(run: MoFaNeRFRunConfig) -> Path:
    """``basedir/expname``: the run's folder."""
    return Path(run.train.basedir) / run.train.expname


def build_data(run: MoFaNeRFRunConfig, folder: Path | None = None) -> MoFaNeRFData:
    """The streamed training data of ``run``; ``folder`` (default: the run's) holds the UV cache."""
    data = run.data
    frames, identities = load_mofanerf_sources(data.datadir, data.selection, run.model.shape_dim,
                                               run.model.n_expressions, data.shape_codes, data.landmarks, data.uv_dir)
    folder = run_dir(run) if folder is None else Path(folder)
    return MoFaNeRFData(frames, identities, run.sampling, near=run.render.near, far=run.render.far,
                        tex_size=run.model.tex_size, image_scale=data.resize, uv_cache_dir=folder / "uv_cache",
                        uv_cache=data.uv_cache, seed=run.runtime.seed, skip_bad_images=data.skip_bad_images,
                        pixel_center=run.render.pixel_center)


def training_identities(run: MoFaNeRFRunConfig, folder: Path | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Shape codes ``[N, S]`` and neutral UV maps ``[1, 3, s, s]`` of the run's training identities."""
    data = build_data(run, folder)
    shapes = torch.stack([torch.as_tensor(p.shape_code, dtype=torch.float32) for p in data.identities])
    return shapes, [data.uv(i) for i in range(len(data.identities))]
