"""Command-line / config-file options of the MoFaNeRF commands (the seed's key names are kept).

This is the only place that turns their parsed options into typed configs:

* ``run_train.py``: :func:`build_train_parser` lists every field of
  :class:`~facenerf.models.mofanerf.config.MoFaNeRFRunConfig`, and :func:`run_config_from_args`
  builds the run config.
* Commands that load a trained run (``run_fit.py``, ``trainingDataPreprocess/make_pairs.py``):
  :func:`add_trained_run_options` adds the checkpoint location and the render and data keys,
  which default to the run's own values, and :func:`overrides_from_args` collects the keys the
  user set. Those commands also accept every training key (so ``-c configs/exp_mofanerf.txt``
  works, as with the original code) without listing them: model sizes must then equal the
  checkpoint's, other training keys are ignored.

Keys of the original ``configs/exp_mofanerf.txt`` that have no effect here (``no_batching``,
``use_viewdirs``, ``dataset_type``, ...) are accepted so the seed's config files load unchanged;
values that would ask for unsupported behaviour raise one clear error line.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from facenerf.cli import add_options, bool_type, from_namespace, make_parser, set_options
from facenerf.data.ray_batches import PixelSamplerConfig
from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.config import (DATA_OVERRIDES, RENDER_OVERRIDES, MoFaNeRFConfig, MoFaNeRFDataConfig,
                                             MoFaNeRFRenderConfig, MoFaNeRFRunConfig, MoFaNeRFTrainSettings,
                                             RunOverrides, RunSource, without_unused_fine)
from facenerf.runtime import RunSettings

# the original parser's keys with no role here: accepted, value checked where it matters
LEGACY_KEYS = {
    "no_batching": (bool_type, True), "use_viewdirs": (bool_type, True), "dataset_type": (str, "blender"),
    "i_embed": (int, 0), "raw_noise_std": (float, 0.0), "render_only": (bool_type, False),
    "render_test": (bool_type, False), "render_factor": (int, 0), "i_img": (int, 500), "i_video": (int, 50000),
    "no_ndc": (bool_type, True), "spherify": (bool_type, False), "factor": (int, 8), "llffhold": (int, 8),
    "shape": (str, "greek"), "output_ch": (int, 5), "netchunk": (int, 0),
}


def _add_legacy_options(parser, defaults: bool = True) -> None:
    for key, (kind, default) in LEGACY_KEYS.items():
        extra = {"nargs": "?", "const": True} if kind is bool_type else {}
        parser.add_argument(f"--{key}", type=kind, default=default if defaults else None,
                            help=argparse.SUPPRESS, **extra)


def build_train_parser():
    """The ``run_train.py`` parser (``-c configs/exp_mofanerf.txt``)."""
    parser = make_parser("Train MoFaNeRF on FaceScape-format multi-view renders.", prog="run_train.py")
    add_options(parser, MoFaNeRFConfig, "model (defaults reproduce the released model)")
    add_options(parser, MoFaNeRFDataConfig, "data")
    add_options(parser, PixelSamplerConfig, "rays per step")
    add_options(parser, MoFaNeRFRenderConfig, "rendering")
    group = add_options(parser, MoFaNeRFTrainSettings, "optimisation and run control")
    add_options(group, RunSettings)
    _add_legacy_options(parser)
    return parser


def check_legacy_keys(args: argparse.Namespace) -> None:
    """One-line FaceNerfError for original keys whose value asks for something this implementation does not do."""
    if args.use_viewdirs is False:
        raise FaceNerfError("use_viewdirs = false is not supported: MoFaNeRF always uses view directions")
    if args.no_batching is False:
        raise FaceNerfError("no_batching = false is not supported: rays are drawn from one frame per step")
    if args.raw_noise_std:
        raise FaceNerfError("raw_noise_std must be 0 (the released model trains without density noise)")
    if args.dataset_type not in (None, "blender", "facescape"):
        raise FaceNerfError(f"dataset_type = {args.dataset_type} is not supported: use blender (FaceScape renders)")
    if args.i_embed:
        raise FaceNerfError("i_embed must be 0 (positional encoding)")


def run_config_from_args(args: argparse.Namespace) -> MoFaNeRFRunConfig:
    """The typed run config of ``run_train.py`` (``N_importance = 0`` trains no fine network)."""
    check_legacy_keys(args)
    if args.render_only or args.render_test:
        raise FaceNerfError("render_only / render_test are not supported: run_train.py only trains (held-out renders "
                            "every i_testset steps); render a trained model with run_fit.py (see --renderType)")
    run = from_namespace(MoFaNeRFRunConfig, args)
    return replace(run, model=without_unused_fine(run.model, run.render))


# ----------------------------------------------------------------------------- loading a trained run

def add_trained_run_options(parser, data_keys: tuple[str, ...] = DATA_OVERRIDES) -> None:
    """Checkpoint location, and the render/data keys that default to the trained run's values.

    ``data_keys`` are the data keys the command reads (listed by ``--help``; the others of
    :data:`DATA_OVERRIDES` are accepted unlisted). Also accepts, unlisted, every other training
    key and the original code's keys; call it after adding the command's own
    :class:`~facenerf.runtime.RunSettings` keys.
    """
    group = add_options(parser, RunSource, "the trained run (render and data keys default to the checkpoint's)",
                        only=("ckpt", "expname", "basedir"))
    add_options(group, MoFaNeRFRenderConfig, only=RENDER_OVERRIDES, unset="the training run's")
    add_options(group, MoFaNeRFDataConfig, only=data_keys, unset="the training run's")
    add_options(group, MoFaNeRFDataConfig, only=DATA_OVERRIDES, unset="the training run's", hidden=True,
                skip_existing=True)
    add_options(parser, MoFaNeRFRunConfig, hidden=True, unset="", skip_existing=True)
    _add_legacy_options(parser, defaults=False)


SAMPLING_OVERRIDES = ("n_rays",)


def override_keys() -> set[str]:
    """Config keys of the trained run that :func:`overrides_from_args` reads (model sizes, render,
    data and sampling keys); a loading command's other training keys do nothing."""
    from dataclasses import fields

    from facenerf.config import option_key

    sampling = {option_key(f) for f in fields(PixelSamplerConfig) if f.name in SAMPLING_OVERRIDES}
    return {option_key(f) for f in fields(MoFaNeRFConfig)} | set(RENDER_OVERRIDES) | set(DATA_OVERRIDES) | sampling


def overrides_from_args(args: argparse.Namespace) -> RunOverrides:
    """The model, render, data and sampling keys the user set (on the command line or with ``-c``)."""
    check_legacy_keys(args)
    render = {k: v for k, v in set_options(MoFaNeRFRenderConfig, args).items() if k in RENDER_OVERRIDES}
    data = {k: v for k, v in set_options(MoFaNeRFDataConfig, args).items() if k in DATA_OVERRIDES}
    sampling = {k: v for k, v in set_options(PixelSamplerConfig, args).items() if k in SAMPLING_OVERRIDES}
    return RunOverrides(model=set_options(MoFaNeRFConfig, args), render=render, data=data, sampling=sampling)


def source_from_args(args: argparse.Namespace) -> RunSource:
    """The trained run to load (``ckpt`` / ``basedir`` / ``expname`` / ``ft_path``) and the user's overrides."""
    return from_namespace(RunSource, args, overrides=overrides_from_args(args))
