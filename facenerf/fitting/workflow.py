"""What ``run_fit.py`` does, as functions: load the trained model and its code statistics, and
run the fitting mode end to end (the other modes are in :mod:`facenerf.fitting.modes`).

The checkpoint is ``--ckpt``, else ``--ft_path``, else the newest
``basedir/expname/checkpoints/step_*.pt``. The model is built from the checkpoint's own sizes,
and the run's render and data settings fill the keys the user left unset
(:mod:`facenerf.fitting.from_checkpoint`); architecture keys the user did set must match the
checkpoint (one error line otherwise). Code statistics come from ``--code_stats``, else
``code_stats.pt`` beside the checkpoint (recomputed when it belongs to another step), else they
are computed from the training identities named by the checkpoint's stored training config
(``--datadir`` and the other data keys override it when given) and saved there.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import torch

from facenerf.config import config_to_dict, ensure_writable_dir
from facenerf.errors import FaceNerfError
from facenerf.fitting.fitter import Fitter, FitSettings
from facenerf.fitting.from_checkpoint import (ARCH_KEYS, DATA_KEYS, adopt_architecture, adopt_trained_settings,
                                              check_architecture, render_differences)
from facenerf.fitting.inputs import FitTarget, load_target, sibling_views
from facenerf.fitting.objective import FitWeights
from facenerf.fitting.options import float_list
from facenerf.fitting.result import FIT_FILENAME, FitResult
from facenerf.fitting.schedule import FitSchedule
from facenerf.fitting.stats import STATS_FILENAME, CodeStatistics, compute_code_statistics
from facenerf.fitting.figures import error_map, hstack, loss_curve, vstack
from facenerf.fitting.views import FaceState, corrected_pose, heldout_psnr, intrinsics_at
from facenerf.io import write_image
from facenerf.metrics import psnr

PREVIEW_ITERATIONS = (0, 100, 200, 300, 500, 1000, 1500, 2000)  # the original's progress renders


@dataclass
class LoadedModel:
    """A frozen-able MoFaNeRF with where it came from."""

    model: object  # MoFaNeRF
    checkpoint: Path
    step: int
    config: dict  # the checkpoint's stored training config
    render_settings: object  # RenderSettings for test-mode renders


# ----------------------------------------------------------------------------- model and statistics

def locate_checkpoint(args) -> Path:
    """The checkpoint to fit with (see the module docstring)."""
    from facenerf.engine.checkpoint import CheckpointManager
    from facenerf.engine.trainer import CHECKPOINT_DIR

    for flag, value in (("--ckpt", args.ckpt), ("--ft_path", args.ft_path)):
        if value:
            if not Path(value).is_file():
                raise FaceNerfError(f"checkpoint not found: {value} (check {flag})")
            return Path(value)
    folder = Path(args.basedir) / args.expname / CHECKPOINT_DIR
    latest = CheckpointManager(folder).latest()
    if latest is None:
        raise FaceNerfError(f"no checkpoint in {folder}: train first (run_train.py -c <config>) or pass --ckpt")
    return latest


def load_model(args, device: torch.device, explicit: Collection[str] | None = None) -> LoadedModel:
    """Load the checkpoint and build the model from its own sizes.

    ``explicit`` names the options the user set (:func:`~facenerf.fitting.from_checkpoint.explicit_keys`).
    Every architecture key not among them, and every render/data setting the training run fixed
    (near/far, sample counts, background, datadir, person_num, ...), is written into ``args`` from
    the checkpoint, so the renders, the code statistics and the saved fit config all use the
    run's values. An architecture key the user set must equal the checkpoint's (one error line
    otherwise); a render setting the user set wins, with a note. ``explicit=None`` treats every
    key of ``args`` as set by the caller: nothing is taken over, the whole architecture is checked.
    """
    from facenerf.models.mofanerf.checkpoints import load_mofanerf
    from facenerf.models.mofanerf.training import render_settings

    path = locate_checkpoint(args)
    keys = frozenset(vars(args)) if explicit is None else frozenset(explicit)
    model, info = load_mofanerf(path)
    trained = dict(info["config"])
    taken = adopt_trained_settings(args, keys, trained)
    check_architecture(args, keys, model.cfg, str(path))
    adopt_architecture(args, keys, model.cfg)
    model.train_settings, model.eval_settings = render_settings(args)
    if taken:
        listed = ", ".join(f"{k} {v}" for k, v in taken.items())
        print(f"note: from the training run of {path}: {listed} "
              "(set them in the config or on the command line to override)")
    _note_render_differences(args, trained, path)
    return LoadedModel(model.to(device), path, int(info["step"]), trained, model.eval_settings)


def _note_render_differences(args, trained: dict, path: Path) -> None:
    """Say when the user's ray bounds or sample counts differ from the ones the checkpoint was trained with."""
    diffs = render_differences(args, trained)
    if diffs:
        print(f"note: rendering with {', '.join(diffs)} from {path}; set them as in training for faithful renders")


def _training_identities(config: dict, run_dir: Path) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Shape codes ``[N, S]`` and neutral UV maps of the run's training identities (as training read them)."""
    from facenerf.models.mofanerf.options import build_train_parser
    from facenerf.models.mofanerf.training import build_data

    defaults = vars(build_train_parser().parse_args([]))
    data = build_data(argparse.Namespace(**{**defaults, **config}), run_dir)
    shapes = torch.stack([torch.as_tensor(p.shape_code, dtype=torch.float32) for p in data.identities])
    return shapes, [data.uv(i) for i in range(len(data.identities))]


def _data_config(args, loaded: LoadedModel) -> dict:
    """The training run's config with the fit's data and architecture keys on top.

    After :func:`load_model` those keys hold the run's values unless the user set them (a moved
    ``datadir``, say), and the checkpoint's sizes; an original ``.tar`` stores no run config.
    """
    return {**loaded.config, **{key: getattr(args, key) for key in (*DATA_KEYS, *ARCH_KEYS)}}


def load_code_statistics(args, loaded: LoadedModel) -> CodeStatistics:
    """Code statistics for ``loaded`` (see the module docstring for where they come from)."""
    cfg = loaded.model.cfg
    if args.code_stats:
        stats = CodeStatistics.load(args.code_stats)
        stats.check_sizes(cfg.shape_dim, cfg.texture_dim, args.code_stats)
        return stats
    file = loaded.checkpoint.parent / STATS_FILENAME
    if file.is_file():
        stats = CodeStatistics.load(file)
        if stats.step == loaded.step:
            stats.check_sizes(cfg.shape_dim, cfg.texture_dim, str(file))
            return stats
    try:
        shapes, uvs = _training_identities(_data_config(args, loaded), loaded.checkpoint.parent.parent)
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


# ----------------------------------------------------------------------------- settings and paths

def expression_index(text: str | int, n_expressions: int) -> int:
    """A learned expression by name (FaceScape order, e.g. ``smile``) or index; FaceNerfError if absent."""
    from facenerf.data.synthetic import EXPRESSIONS

    value = str(text).strip()
    if value.lstrip("-").isdigit():
        index = int(value)
    elif value in EXPRESSIONS:
        index = EXPRESSIONS.index(value)
    else:
        raise FaceNerfError(f"unknown expression {value!r}: use an index 0..{n_expressions - 1} or one of "
                            f"{', '.join(EXPRESSIONS[:n_expressions])}")
    if not 0 <= index < n_expressions:
        raise FaceNerfError(f"expression {value!r} (index {index}) is not among the model's {n_expressions} "
                            "learned expressions")
    return index


def expression_name(index: int) -> str:
    from facenerf.data.synthetic import EXPRESSIONS

    return EXPRESSIONS[index] if index < len(EXPRESSIONS) else f"expression{index}"


def fit_settings(args, n_expressions: int) -> FitSettings:
    """:class:`FitSettings` from the command-line options."""
    rates = {"shape": args.lr_shape, "expression": args.lr_expression, "texture": args.lr_texture,
             "rotation": args.lr_rotation, "translation": args.lr_translation, "gain": args.lr_gain}
    schedule = FitSchedule(args.num_iterations, float_list(args.fit_scales, "fit_scales"),
                           float_list(args.fit_level_starts, "fit_level_starts"), rates, args.lr_final_ratio)
    weights = FitWeights(args.photometric, args.prior_shape, args.prior_texture, args.prior_expression,
                         args.prior_gain)
    return FitSettings(schedule=schedule, weights=weights, n_rays=args.fit_rays or args.N_rand,
                       landmark_share=args.landmark_share, landmark_sigma=args.landmark_sigma,
                       band_frac=args.mask_band, pose_parametrisation=args.pose_param, optimise_pose=args.fit_pose,
                       gain_mode=args.gain, init_expression=expression_index(args.init_expression, n_expressions),
                       amp=args.amp, fast_render=args.fast_render, progress=args.progress, seed=args.seed)


def fit_pixel_center(args) -> float:
    """The training images' pixel convention (from the checkpoint); 0 when the checkpoint does not
    record one (earlier facenerf runs and the original code cast rays without an offset)."""
    value = getattr(args, "pixel_center", "auto")
    return 0.0 if value in ("auto", None) else float(value)


def fit_dir(args) -> Path:
    """Folder of a fit: ``--fit_out``, else ``<image folder>/../fitting/<folder>_<name>`` (the original's)."""
    if args.fit_out:
        return Path(args.fit_out)
    if args.filePath:
        image = Path(args.filePath)
        return image.parent.parent / "fitting" / f"{image.parent.name}_{image.stem}"
    return Path(args.fitFile).parent


def fit_file(args) -> Path:
    return Path(args.fitFile) if args.fitFile else fit_dir(args) / FIT_FILENAME


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


def run_fitting(args, loaded: LoadedModel, stats: CodeStatistics, device: torch.device) -> dict:
    """Fit ``--filePath`` and write every output of the fitting mode; returns a summary dict."""
    target = load_target(args.filePath, args.posePath or None, args.fit_size, args.focal, args.near, args.far,
                         fit_pixel_center(args))
    settings = fit_settings(args, loaded.model.cfg.n_expressions)
    out = ensure_writable_dir(fit_dir(args))
    fitter = Fitter(loaded.model, target, stats, settings, loaded.render_settings, device)
    start = starting_state(fitter)
    path = fit_file(args)
    if args.is_load_par:
        previous = FitResult.load(path)
        _check_resumable(previous, target, path)
        fitter.resume(previous)
    write_image(out / "target.png", target.image)
    config = {**config_to_dict(args), "fit_notes": list(target.notes)}

    def save(f: Fitter) -> None:
        f.result(config, str(loaded.checkpoint), loaded.model.cfg.to_dict()).save(path)

    def on_iteration(f: Fitter) -> None:
        if args.save_every > 0 and f.iteration % args.save_every == 0:
            save(f)
        if _preview_due(f.iteration, args.preview_every, settings.schedule.iterations):
            _preview(f, out, min(args.size, target.K.width))

    if fitter.iteration == 0:
        _preview(fitter, out, min(args.size, target.K.width))
    fitter.run(on_iteration)
    save(fitter)
    summary = _write_results(fitter, out, path)
    views = sibling_views(target, args.eval_views)
    if views:
        summary.update(_heldout(fitter, start, views, loaded, out, args.amp))
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


def _heldout(fitter: Fitter, start: FaceState, views, loaded: LoadedModel, out: Path, amp: str) -> dict:
    """PSNR of the start and of the fit on held-out views (fit's pose correction applied); heldout.png."""
    result = fitter.result()
    before = heldout_psnr(loaded.model, start, views, loaded.render_settings, amp)[0]
    moved = [(image, corrected_pose(result, c2w), K) for image, c2w, K in views]
    after, renders = heldout_psnr(loaded.model, FaceState.from_fit(result), moved, loaded.render_settings, amp)
    write_image(out / "heldout.png", vstack([hstack([image, render]) for (image, _, _), render in zip(views, renders)]))
    return {"psnr_heldout": after, "psnr_heldout_start": before, "heldout_views": len(views)}
