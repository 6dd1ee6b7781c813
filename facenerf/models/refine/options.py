"""Options of the RefineNet commands; the one place their parsed options become typed configs.

``trainingDataPreprocess/train.py`` -> :class:`~facenerf.models.refine.training.RefineRunConfig`
(network, training settings, run settings; stored in every checkpoint);
``trainingDataPreprocess/test.py`` and ``run_refine.py`` ->
:class:`~facenerf.models.refine.inference.RefineTestSettings` and the run settings they read.
Each also accepts the original's pix2pixHD options (:mod:`facenerf.models.refine.pix2pixhd`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facenerf.cli import add_options, from_namespace, make_parser
from facenerf.models.refine.inference import RefineTestSettings
from facenerf.models.refine.model import RefineConfig
from facenerf.models.refine.pix2pixhd import add_pix2pixhd_options, apply_pix2pixhd, results_dir, which_epoch
from facenerf.models.refine.training import RefineRunConfig, RefineTrainSettings
from facenerf.runtime import RunSettings


def build_train_parser():
    """The ``trainingDataPreprocess/train.py`` parser."""
    parser = make_parser("Train the RefineNet on render / ground-truth pairs.", prog="trainingDataPreprocess/train.py")
    add_options(parser, RefineTrainSettings, "data and schedule")
    add_options(parser, RefineConfig, "networks and losses")
    add_options(parser, RunSettings, "run")
    add_pix2pixhd_options(parser, "train")
    return parser


def run_config_from_args(args: argparse.Namespace) -> RefineRunConfig:
    return from_namespace(RefineRunConfig, apply_pix2pixhd(args))


def build_test_parser(prog: str = "trainingDataPreprocess/test.py", out_help: str | None = None):
    """The ``trainingDataPreprocess/test.py`` (and ``run_refine.py``) parser."""
    parser = make_parser("Refine every image of a folder with a trained RefineNet.", prog=prog)
    add_options(parser, RefineTestSettings, skip=("out_folder",) if out_help else ())
    if out_help:
        parser.add_argument("--out_folder", default="", help=out_help)
    add_options(parser, RunSettings, only=("device", "progress"))
    add_pix2pixhd_options(parser, "test")
    return parser


def test_settings_from_args(args: argparse.Namespace) -> tuple[RefineTestSettings, RunSettings, str]:
    """The test settings, the run settings and pix2pixHD's ``which_epoch`` (``latest`` unless given).

    pix2pixHD's ``--results_dir DIR`` sets the output folder to ``DIR/<name>/test_<which_epoch>/images``.
    """
    args = apply_pix2pixhd(args)
    epoch = which_epoch(args)
    if results_dir(args) and not args.out_folder:
        args.out_folder = str(Path(results_dir(args)) / args.name / f"test_{epoch}" / "images")
    return from_namespace(RefineTestSettings, args), from_namespace(RunSettings, args), epoch
