"""Options of the RefineNet commands; the one place their parsed options become typed configs.

``trainingDataPreprocess/train.py`` -> :class:`~facenerf.models.refine.training.RefineRunConfig`
(network, training settings, run settings; stored in every checkpoint);
``trainingDataPreprocess/test.py`` and ``run_refine.py`` ->
:class:`~facenerf.models.refine.inference.RefineTestSettings` and the run settings they read.

The original trains and runs its RefineNet with pix2pixHD's option parser (75 options in its
base, train and test option files). These commands accept those options, unlisted by ``--help``:

* renamed ones are aliases of our keys (``batchSize`` = ``batch_size``, ``loadSize`` =
  ``load_size``, ``nThreads`` = ``num_workers``, ``print_freq`` = ``log_every``,
  ``save_latest_freq`` = ``save_every``) and ``lr``, ``beta1``, ``netG``, ``ngf``, ``ndf``, ... are
  ours already;
* :data:`DERIVED` ones set our keys with their pix2pixHD meaning (``niter``/``niter_decay`` are
  real options of training, ``gpu_ids`` picks the device, ``no_vgg_loss`` zeroes the VGG weight,
  ``which_epoch``/``results_dir`` choose the weights and the output folder; ``how_many`` is ours);
* :data:`FIXED` ones are accepted at the one value this implementation has (pix2pixHD's default
  in the original's use), any other value stops with one line;
* every other option (:data:`REJECTED`) stops with one line naming what to use instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facenerf.cli import add_options, bool_type, from_namespace, make_parser
from facenerf.errors import FaceNerfError
from facenerf.models.refine.inference import RefineTestSettings
from facenerf.models.refine.model import RefineConfig
from facenerf.models.refine.training import RefineRunConfig, RefineTrainSettings
from facenerf.runtime import RunSettings

PREFIX = "p2p_"

# option -> (type, commands, meaning); applied by apply_pix2pixhd
DERIVED = {
    "gpu_ids": (str, ("train", "test"), "GPU ids: the first picks the device (-1 = CPU)"),
    "fp16": (bool_type, ("train",), "mixed precision (amp = fp16)"),
    "no_ganFeat_loss": (bool_type, ("train",), "lambda_feat = 0"),
    "no_vgg_loss": (bool_type, ("train",), "no VGG loss (lambda_vgg = 0)"),
    "continue_train": (bool_type, ("train",), "resume from the newest checkpoint (always done here)"),
    "tf_log": (bool_type, ("train",), "TensorBoard logging (always on here)"),
    "which_epoch": (str, ("train", "test"), "weights to use: latest, or <checkpoints_dir>/<name>/<N>_net_G.pth"),
    "results_dir": (str, ("test",), "refined images go to <results_dir>/<name>/test_<which_epoch>/images"),
}

# option -> (accepted text values, what to say otherwise); pix2pixHD's defaults as the original used them
FIXED = {
    "label_nc": (("0",), "label maps are not supported: inputs are RGB renders (label_nc 0)"),
    "input_nc": (("3",), "inputs are RGB (3 channels)"),
    "output_nc": (("3",), "outputs are RGB (3 channels)"),
    "norm": (("instance",), "the networks use instance normalisation only"),
    "model": (("pix2pixHD",), "the only model is pix2pixHD's (netG global or local)"),
    "data_type": (("32",), "networks run in fp32; use --amp bf16|fp16 for mixed precision"),
    "resize_or_crop": (("resize",), "pairs are resized to --load_size; cropping is not supported"),
    "phase": (("train", "test"), "phase is train (train.py) or test (test.py, run_refine.py)"),
    "pool_size": (("0",), "no image pool: the discriminator sees the current fakes (pool_size 0)"),
    "aspect_ratio": (("1", "1.0"), "results keep their size; use --load_size for the network size"),
    "max_dataset_size": (("inf",), "every pair is used; move pairs out of --dataroot to use fewer"),
    "fineSize": (None, ""),          # any value: unused with resize_or_crop = resize, as in the original
    "local_rank": (None, ""),        # any value: torchrun's rank argument
    "verbose": (None, ""),           # any value: nothing extra is printed
    "serial_batches": (("false", "0"), "pairs are always drawn in random order"),
    "use_dropout": (("false", "0"), "the generator has no dropout"),
}

# option -> our equivalent (the message after "not supported: ")
REJECTED = {
    "no_flip": "use --flip true|false (the original's --no_flip turned flipping on)",
    "no_instance": "instance maps are not supported (label_nc 0 renders only)",
    "instance_feat": "the feature encoder is not supported (label_nc 0 renders only)",
    "label_feat": "the feature encoder is not supported (label_nc 0 renders only)",
    "feat_num": "the feature encoder is not supported (label_nc 0 renders only)",
    "load_features": "the feature encoder is not supported (label_nc 0 renders only)",
    "n_downsample_E": "the feature encoder is not supported (label_nc 0 renders only)",
    "nef": "the feature encoder is not supported (label_nc 0 renders only)",
    "n_clusters": "the feature encoder is not supported (label_nc 0 renders only)",
    "cluster_path": "the feature encoder is not supported (label_nc 0 renders only)",
    "use_encoded_image": "the feature encoder is not supported (label_nc 0 renders only)",
    "niter_fix_global": "netG local trains all its layers from the start; use --netG global",
    "no_lsgan": "the GAN loss is LSGAN only; --lambda_gan 0 turns it off",
    "display_freq": "validation images are written every --eval_every steps",
    "display_winsize": "validation images are written at --load_size; view them in TensorBoard",
    "no_html": "no HTML pages are written; images go to TensorBoard and <checkpoints_dir>/<name>",
    "debug": "use --max_steps 1 --eval_every 1 for a quick check",
    "save_epoch_freq": "checkpoints are saved every --save_every steps (--keep_last of them)",
    "load_pretrain": "a rerun resumes from <checkpoints_dir>/<name>; copy a checkpoint there to start from it",
    "ntest": "use --how_many",
    "result_folder": "use --out_folder",
    "export_onnx": "ONNX export is not supported; the generator is a plain torch module",
    "engine": "TensorRT engines are not supported; --device picks CPU or CUDA",
    "onnx": "ONNX runtimes are not supported; --device picks CPU or CUDA",
}

# on test.py / run_refine.py only: training and generator options (the weights fix the sizes)
TEST_REJECTED = {
    **{key: "the training schedule belongs to trainingDataPreprocess/train.py"
       for key in ("niter", "niter_decay", "lr", "beta1", "lambda_feat", "num_D", "n_layers_D", "ndf")},
    **{key: "the generator's sizes come from its weights" for key in ("netG", "ngf", "n_downsample_global",
                                                                       "n_blocks_global", "n_blocks_local",
                                                                       "n_local_enhancers")},
    "dataroot": "pass the renders with --nerf_folder (no ground truth is needed)",
    "gt_folder": "pass the renders with --nerf_folder (no ground truth is needed)",
}
# on test.py / run_refine.py only: accepted, no effect (the original's test script overrides them too)
TEST_IGNORED = ("batchSize", "nThreads", "no_flip", "serial_batches")


class _Fixed(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        allowed, message = FIXED[self.dest[len(PREFIX):]]
        text = "true" if values is None else str(values)
        if allowed is not None and text.lower() not in [a.lower() for a in allowed]:
            raise FaceNerfError(f"{option_string} {text} (pix2pixHD) is not supported: {message}")
        setattr(namespace, self.dest, text)


class _Rejected(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        key = self.dest[len(PREFIX):]
        reason = REJECTED.get(key) or TEST_REJECTED.get(key) or f"{key} is read only by the other RefineNet command"
        raise FaceNerfError(f"{option_string} (pix2pixHD) is not supported here: {reason}")


def add_pix2pixhd_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Accept the original's pix2pixHD options on a RefineNet parser (``command``: train or test), unlisted."""
    hidden = {"help": argparse.SUPPRESS, "default": None}
    for key, (kind, commands, _) in DERIVED.items():
        extra = {"nargs": "?", "const": True} if kind is bool_type else {}
        if command in commands:
            parser.add_argument(f"--{key}", dest=PREFIX + key, type=kind, **extra, **hidden)
        else:
            parser.add_argument(f"--{key}", dest=PREFIX + key, action=_Rejected, nargs="?", **hidden)
    for key in FIXED:
        if not (command == "test" and key in TEST_IGNORED):
            parser.add_argument(f"--{key}", dest=PREFIX + key, action=_Fixed, nargs="?", **hidden)
    for key in REJECTED:
        if not (command == "test" and key in TEST_IGNORED):
            parser.add_argument(f"--{key}", dest=PREFIX + key, action=_Rejected, nargs="?", **hidden)
    if command == "test":
        for key in TEST_REJECTED:
            parser.add_argument(f"--{key}", dest=PREFIX + key, action=_Rejected, nargs="?", **hidden)
        for key in TEST_IGNORED:
            parser.add_argument(f"--{key}", dest=PREFIX + key, nargs="?", **hidden)


def device_from_gpu_ids(text: str) -> str:
    """pix2pixHD's ``--gpu_ids 0,1`` -> ``cuda:0``; ``-1`` -> ``cpu`` (one device is used)."""
    try:
        first = int(str(text).split(",")[0])
    except ValueError as err:
        raise FaceNerfError(f"--gpu_ids {text}: expected comma-separated integers, e.g. 0 or -1 for the CPU") from err
    return "cpu" if first < 0 else f"cuda:{first}"


def apply_pix2pixhd(args: argparse.Namespace) -> argparse.Namespace:
    """Set our keys from the pix2pixHD options given (see :data:`DERIVED`)."""
    given = {key: getattr(args, PREFIX + key, None) for key in DERIVED}
    if given["gpu_ids"] is not None:
        args.device = device_from_gpu_ids(given["gpu_ids"])
    if given["fp16"]:
        args.amp = "fp16"
    if given["no_ganFeat_loss"]:
        args.lambda_feat = 0.0
    if given["no_vgg_loss"]:
        args.lambda_vgg, args.vgg_weights = 0.0, None
    return args


def which_epoch(args: argparse.Namespace) -> str:
    """``--which_epoch`` (default ``latest``)."""
    return getattr(args, PREFIX + "which_epoch", None) or "latest"


def results_dir(args: argparse.Namespace) -> str | None:
    return getattr(args, PREFIX + "results_dir", None)


# ----------------------------------------------------------------------------- the commands' parsers

def build_train_parser():
    """The ``trainingDataPreprocess/train.py`` parser."""
    parser = make_parser("Train the RefineNet on render / ground-truth pairs.", prog="trainingDataPreprocess/train.py")
    add_options(parser, RefineTrainSettings, "data and schedule")
    add_options(parser, RefineConfig, "networks and losses")
    add_options(parser, RunSettings, "run")
    add_pix2pixhd_options(parser, "train")
    return parser


def run_config_from_args(args: argparse.Namespace) -> RefineRunConfig:
    """The typed run; pix2pixHD's ``--which_epoch`` must be ``latest`` (a rerun resumes from the newest checkpoint)."""
    if which_epoch(args) != "latest":
        raise FaceNerfError(f"--which_epoch {which_epoch(args)}: training resumes from the newest checkpoint of "
                            f"{Path(args.checkpoints_dir) / args.name}; move later checkpoints away to resume earlier")
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
