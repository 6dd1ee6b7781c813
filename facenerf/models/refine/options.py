"""Options of the RefineNet commands; the one place their parsed options become typed configs.

``trainingDataPreprocess/train.py`` -> :class:`~facenerf.models.refine.training.RefineRunConfig`
(network, training settings, run settings; stored in every checkpoint);
``trainingDataPreprocess/test.py`` -> :class:`~facenerf.models.refine.inference.RefineTestSettings`
and the run settings it reads.
"""

from __future__ import annotations

import argparse

from facenerf.cli import add_options, from_namespace, make_parser
from facenerf.models.refine.inference import RefineTestSettings
from facenerf.models.refine.model import RefineConfig
from facenerf.models.refine.training import RefineRunConfig, RefineTrainSettings
from facenerf.runtime import RunSettings


def build_train_parser():
    """The ``trainingDataPreprocess/train.py`` parser."""
    parser = make_parser("Train the RefineNet on render / ground-truth pairs.", prog="trainingDataPreprocess/train.py")
    add_options(parser, RefineTrainSettings, "data and schedule")
    add_options(parser, RefineConfig, "networks and losses")
    add_options(parser, RunSettings, "run")
    return parser


def run_config_from_args(args: argparse.Namespace) -> RefineRunConfig:
    return from_namespace(RefineRunConfig, args)


def build_test_parser():
    """The ``trainingDataPreprocess/test.py`` parser."""
    parser = make_parser("Refine every image of a folder with a trained RefineNet.",
                         prog="trainingDataPreprocess/test.py")
    add_options(parser, RefineTestSettings)
    add_options(parser, RunSettings, only=("device", "progress"))
    return parser


def test_settings_from_args(args: argparse.Namespace) -> tuple[RefineTestSettings, RunSettings]:
    return from_namespace(RefineTestSettings, args), from_namespace(RunSettings, args)
