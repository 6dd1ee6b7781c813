"""Command-line / config-file options of ``main_nerf.py`` (the seed's flag names and spellings).

The seed's command lines parse unchanged, e.g. ::

    main_nerf.py data/DATASET --workspace W --test_fps 25 --network blend4_noamb --use_patch_loss
        --patch_size 32 --train_epoch 15 --downscale 1 --cuda_ray --preload 2 --test_num 500
        --expr_dim 46 --update_extra_interval 1000 --fp16 [--torso --head_ckpt PATH] [--test]

Boolean flags work bare (``--cuda_ray``), with a value (``--cuda_ray false``) and in ``-c``
files (``cuda_ray = true``). This module only turns the parsed options into the typed configs of
:mod:`facenerf.models.blendshape.config`.
"""

from __future__ import annotations

import argparse

from facenerf.cli import add_options, from_namespace, make_parser
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.config import (BlendShapeConfig, BlendShapeDataConfig, BlendShapeRunConfig,
                                               BlendShapeSceneConfig, BlendShapeTestSettings, BlendShapeTrainSettings)
from facenerf.models.blendshape.torso import TorsoConfig
from facenerf.runtime import RunSettings


def build_parser():
    """The ``main_nerf.py`` parser."""
    parser = make_parser("NeRFBlendShape: train a personalised, expression-driven head NeRF on a talking-head "
                         "dataset, or test it (--test).", prog="main_nerf.py")
    parser.add_argument("path", metavar="DATASET", help="dataset folder, e.g. data/talk (transforms_train.json + "
                        "expr.npy layout, or the release's transforms.json)")
    add_options(parser, BlendShapeDataConfig, "data", skip=("path",))
    add_options(parser, BlendShapeConfig, "head model (defaults: the release's sizes)")
    add_options(parser, BlendShapeSceneConfig, "box, cameras and ray marching")
    add_options(parser, BlendShapeTrainSettings, "training")
    add_options(parser, TorsoConfig, "torso net (--torso)")
    add_options(parser, BlendShapeTestSettings, "testing")
    add_options(parser, RunSettings, "runtime", skip=("amp",))
    return parser


def run_config_from_args(args: argparse.Namespace) -> BlendShapeRunConfig:
    """The typed run config (``--fp16`` stands for the ``amp`` setting of other commands)."""
    return from_namespace(BlendShapeRunConfig, args, data=from_namespace(BlendShapeDataConfig, args, path=args.path))


def testing_from_args(args: argparse.Namespace) -> BlendShapeTestSettings:
    return from_namespace(BlendShapeTestSettings, args)


def check_modes(run: BlendShapeRunConfig) -> None:
    """One line for flag combinations that cannot work."""
    if run.train.torso and not run.train.head_ckpt:
        raise FaceNerfError("--torso needs --head_ckpt PATH: train the head first (the same command without "
                            "--torso), then pass its checkpoint, e.g. --head_ckpt W/checkpoints/step_00001000.pt")
    if run.train.head_ckpt and not run.train.torso:
        raise FaceNerfError("--head_ckpt is only read with --torso; add --torso to train the torso behind that head")
