"""What ``run_fit.py`` does, as functions: load the trained run and its code statistics, and
run the fitting mode end to end (the other modes are in :mod:`facenerf.fitting.modes`).

The trained run is loaded with :func:`facenerf.models.mofanerf.checkpoints.load_source`: the
checkpoint is ``--ckpt``, else ``--ft_path``, else the newest
``basedir/expname/checkpoints/step_*.pt``; the model is built from its own sizes and the run's
render and data settings fill the keys the user left unset. Code statistics come from
``--code_stats``, else ``code_stats.pt`` beside the checkpoint (recomputed when it belongs to
another step), else, for an original ``.tar``, the original's ``configs/texShpDistribution.npy``
when it is there, else they are computed from the training identities named by the run's data
settings (``--datadir`` and the other data keys override them when given) and saved there.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from facenerf.config import flat_options, to_dict
from facenerf.errors import FaceNerfError
from facenerf.fitting.config import FitCommand
from facenerf.fitting.figures import error_map, hstack, loss_curve, vstack
from facenerf.fitting.fitter import Fitter, FitSettings
from facenerf.fitting.inputs import FitTarget, load_target, sibling_views
from facenerf.fitting.result import FitResult
from facenerf.fitting.stats import STATS_FILENAME, CodeStatistics, compute_code_statistics
from facenerf.fitting.views import FaceState, corrected_pose, heldout_psnr, intrinsics_at
from facenerf.io import ensure_writable_dir, write_image
from facenerf.metrics import psnr
from facenerf.models.mofanerf.checkpoints import LoadedRun

PREVIEW_ITERATIONS = (0, 100, 200, 300, 500, 1000, 1500, 2000)  # the original's progress renders
ORIGINAL_STATS = "configs/texShpDistribution.npy"   # where the original code keeps its code statistics


# ----------------------------------------------------------------------------- statistics and settings

def load_code_statistics(code_stats: str, loaded: LoadedRun) -> CodeStatistics:
    """Code statistics for ``loaded`` (see the module docstring for where they come from)."""
    from facenerf.models.mofanerf.data import training_identities

    cfg = loaded.model.cfg
    if code_stats:
        stats = CodeStatistics.load(code_stats)
        stats.check_sizes(cfg.shape_dim, cfg.texture_dim, code_stats)
        return stats
    file = loaded.checkpoint.parent / STATS_FILENAME
    if file.is_file():
        stats = CodeStatistics.load(file)
        if stats.step == loaded.step:
            stats.check_sizes(cfg.shape_dim, cfg.texture_dim, str(file))
            return stats
    if loaded.trained is None and Path(ORIGINAL_STATS).is_file():   # an original .tar, as the original fits it
        print(f"note: code statistics from {ORIGINAL_STATS} (the original code's file)")
        stats = CodeStatistics.load(ORIGINAL_STATS)
        stats.check_sizes(cfg.shape_dim, cfg.texture_dim, ORIGINAL_STATS)
        return stats
    try:
        shapes, uvs = training_identities(loaded.run, loaded.checkpoint.parent.parent)
    except FaceNerfError as err:
        raise FaceNerfError(f"cannot compute code statistics from the training data ({err}); pass --code_stats "
                            "(a code_stats.pt, or the original texShpDistribution.npy)") from err
    stats = compute_code_statistics(loaded.model, shapes, uvs, step=loaded.step)
    try:
        stats.save(file)
        print(f"code statistics of {stats.n_identities} training identities saved to {file}")
    except FaceNerfError as err:
        print(f"warning: code statistics not saved ({err})")
    return stats


def fit_settings(settings: FitSettings, loaded: LoadedRun) -> FitSettings:
    """``settings`` with the ray count resolved (``fit_rays = 0``: the run's ``N_rand``)."""
    return settings if settings.n_rays else replace(settings, n_rays=loaded.run.sampling.n_rays)


def resolved_options(cmd: FitCommand, loaded: LoadedRun) -> dict:
    """``{config key: value}`` of the fit as it ran: the command's keys and the run's render, data
    and model keys (what ``fit_config.txt`` holds; ``-c`` accepts it back)."""
    where = cmd.source.location
    values = {"renderType": cmd.render_type, "code_stats": cmd.code_stats, "ckpt": cmd.source.ckpt,
              "basedir": where.basedir, "expname": where.expname, "ft_path": where.ft_path,
              "N_rand": loaded.run.sampling.n_rays}
    for part in (cmd.input, cmd.output, cmd.fit, cmd.modes, cmd.runtime, loaded.run.render, loaded.run.data,
                 loaded.run.model):
        values.update(flat_options(part))
    return values


def fit_pixel_center(loaded: LoadedRun) -> float:
    """The training images' pixel convention (from the checkpoint); 0 when the checkpoint does not
    record one (earlier facenerf runs and the original code cast rays without an offset)."""
    value = loaded.run.render.pixel_center
    return 0.0 if value is None else float(value)


# ----------------------------------------------------------------------------- the fitting mode

def _check_resumable(result: FitResult, target: FitTarget, where: Path) -> None:
    k = result.intrinsics
    if (k.width, k.height) != (target.K.width, target.K.height):
        raise FaceNerfError(f"{where} was fitted at {k.width}x{k.height} but the image is now "
                            f"{target.K.width}x{target.K.height}; use the same --fit_size or start afresh "
                            "(--is_load_par false)")


def _preview_due(iteration: int, every: int, total: int) -> bool:
    if every > 0:
        return iteration % every == 0 or iteration == total
    return iteration in PREVIEW_ITERATIONS or iteration == total


def run_fitting(cmd: FitCommand, loaded: LoadedRun, stats: CodeStatistics, device: torch.device) -> dict:
    """Fit ``--filePath`` and write every output of the fitting mode; returns a summary dict."""
    given, output, render = cmd.input, cmd.output, loaded.run.render
    target = load_target(given.filePath, given.posePath or None, given.fit_size, given.focal, render.near, render.far,
                         fit_pixel_center(loaded))
    settings = fit_settings(cmd.fit, loaded)
    out = ensure_writable_dir(cmd.fit_dir())
    fitter = Fitter(loaded.model, target, stats, settings, loaded.render_settings, device, cmd.runtime)
    start = starting_state(fitter)
    path = cmd.fit_file()
    if output.is_load_par and not path.is_file():
        print(f"note: --is_load_par: no fit file {path} yet; starting a new fit (as the original does)")
    elif output.is_load_par:
        previous = FitResult.load(path)
        _check_resumable(previous, target, path)
        fitter.resume(previous)
    write_image(out / "target.png", target.image)
    config = {**to_dict(cmd), "fit_notes": list(target.notes)}
    preview_size = min(cmd.modes.size, target.K.width)

    def save(f: Fitter) -> None:
        f.result(config, str(loaded.checkpoint), loaded.model.cfg.to_dict()).save(path)

    def on_iteration(f: Fitter) -> None:
        if output.save_every > 0 and f.iteration % output.save_every == 0:
            save(f)
        if _preview_due(f.iteration, output.preview_every, settings.schedule.iterations):
            _preview(f, out, preview_size)

    if fitter.iteration == 0:
        _preview(fitter, out, preview_size)
    fitter.run(on_iteration)
    save(fitter)
    summary = _write_results(fitter, out, path)
    views = sibling_views(target, output.eval_views)
    if views:
        summary.update(_heldout(fitter, start, views, loaded, out, cmd.runtime.amp))
    return summary


def starting_state(fitter: Fitter) -> FaceState:
    """The fit's deterministic start (code means, initial expression, gain 1, input camera)."""
    v = fitter.variables
    return FaceState(fitter.stats.shape_mean.float().cpu(), v.expression.detach().cpu().clone(),
                     fitter.stats.texture_mean.float().cpu(), torch.ones(1), fitter.target.c2w.cpu(),
                     fitter.target.K, fitter.target.near, fitter.target.far)


def _preview(fitter: Fitter, out: Path, size: int) -> None:
    image = fitter.render(K=intrinsics_at(fitter.target.K, size))
    write_image(out / "progress" / f"iter_{fitter.iteration:06d}.png", image)


def _write_results(fitter: Fitter, out: Path, path: Path) -> dict:
    """fitted.png, compare.png (target | fit | error x4) and loss_curve.png; the summary dict."""
    fitted = fitter.render()
    target = fitter.target.image
    write_image(out / "fitted.png", fitted)
    write_image(out / "compare.png", hstack([target, fitted, error_map(fitted, target)]))
    summary = {"fit_file": str(path), "out_dir": str(out), "iteration": fitter.iteration,
               "psnr_image": float(psnr(fitted, target)), "notes": list(fitter.target.notes),
               "psnr_full_by_level": level_progress(fitter.history, fitter.settings.schedule.level_starts())}
    if fitter.history["iteration"]:
        title = f"{fitter.target.name}: {fitter.iteration} iterations, image PSNR {summary['psnr_image']:.2f} dB"
        summary["loss_curve"] = str(loss_curve(out / "loss_curve.png", fitter.history,
                                               fitter.settings.schedule.level_starts(), title))
    return summary


def level_progress(history: dict[str, list[float]], starts: list[int]) -> list[tuple[float, float]]:
    """``(first, last)`` recorded ``psnr_full`` of every resolution level (NaN where none was recorded)."""
    its, full = history.get("iteration", []), history.get("psnr_full", [])
    if len(full) != len(its):
        return []
    bounds = list(starts) + [float("inf")]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        values = [v for i, v in zip(its, full) if lo < i <= hi]
        out.append((values[0], values[-1]) if values else (float("nan"), float("nan")))
    return out


def _heldout(fitter: Fitter, start: FaceState, views, loaded: LoadedRun, out: Path, amp: str) -> dict:
    """PSNR of the start and of the fit on held-out views (fit's pose correction applied); heldout.png."""
    result = fitter.result()
    before = heldout_psnr(loaded.model, start, views, loaded.render_settings, amp)[0]
    moved = [(image, corrected_pose(result, c2w), K) for image, c2w, K in views]
    after, renders = heldout_psnr(loaded.model, FaceState.from_fit(result), moved, loaded.render_settings, amp)
    write_image(out / "heldout.png", vstack([hstack([image, render]) for (image, _, _), render in zip(views, renders)]))
    return {"psnr_heldout": after, "psnr_heldout_start": before, "heldout_views": len(views)}
