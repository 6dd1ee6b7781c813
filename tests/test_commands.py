"""Every command's options: built from typed configs, listed only where read, defaults shown once,
booleans in every spelling, and the original code's config keys still accepted."""

from __future__ import annotations

import argparse
import re

import pytest

from commands import PARSERS, ROOT, build
from facenerf.cli import bool_type, parse_args
from facenerf.config import option_key, option_spec
from facenerf.errors import FaceNerfError


def _help_entries(parser) -> dict[str, str]:
    """``--flag -> its help text`` as ``--help`` prints it (one entry per listed option)."""
    formatter = parser._get_formatter()
    entries = {}
    for action in parser._actions:
        if action.help is argparse.SUPPRESS or not action.option_strings:
            continue
        entries[action.option_strings[-1]] = " ".join(formatter._expand_help(action).split()) \
            if action.help else ""
    return entries


@pytest.mark.parametrize("label", sorted(PARSERS))
def test_help_shows_each_default_once_and_no_footer(label):
    parser = build(label)
    text = parser.format_help()
    assert "http" not in text and "goo.gl" not in text and "Args that start with" not in text
    for flag, entry in _help_entries(parser).items():
        assert entry.lower().count("default") <= 1, f"{label} {flag}: {entry}"
        assert "(default: None)" not in entry and "(default: )" not in entry, f"{label} {flag}: {entry}"


@pytest.mark.parametrize("label", sorted(PARSERS))
def test_every_boolean_option_takes_the_bare_flag_and_true_false(label):
    parser = build(label)
    for action in parser._actions:
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            pytest.fail(f"{label} {action.option_strings}: use a true|false option, not store_true")
        if action.type is bool_type:
            assert action.nargs == "?" and action.const is True, f"{label} {action.option_strings}"


def test_boolean_spellings_on_the_command_line_and_in_config_files(tmp_path):
    parser = build("run_train.py")
    assert parse_args(parser, []).white_bkgd is False
    assert parse_args(parser, ["--white_bkgd"]).white_bkgd is True  # the original code's bare flag
    assert parse_args(parser, ["--white_bkgd", "false"]).white_bkgd is False
    assert parse_args(parser, ["--white_bkgd=yes", "--N_rand", "8"]).white_bkgd is True
    config = tmp_path / "c.txt"
    for text, value in (("true", True), ("False", False), ("on", True), ("0", False)):
        config.write_text(f"white_bkgd = {text}\n")
        assert parse_args(parser, ["-c", str(config)]).white_bkgd is value
    config.write_text("white_bkgd = true\n")
    assert parse_args(parser, ["-c", str(config), "--white_bkgd", "false"]).white_bkgd is False  # CLI wins
    with pytest.raises(FaceNerfError, match="expected true or false"):
        parse_args(parser, ["--white_bkgd", "maybe"])


def test_fit_help_lists_fitting_options_not_the_training_keys():
    text = build("run_fit.py").format_help()
    listed = set(re.findall(r"^\s+(--\w+)", text, re.MULTILINE))
    assert {"--filePath", "--num_iterations", "--lm_share", "--renderType", "--ckpt", "--near", "--datadir"} <= listed
    training_only = {"--N_iters", "--lrate", "--i_weights", "--netwidth", "--tex_channels", "--precrop_iters",
                     "--use_viewdirs", "--no_batching", "--num_workers", "--compile", "--landmark_share",
                     "--half_res", "--image_scale", "--landmarks", "--testskip", "--scale"}
    assert not listed & training_only
    assert "train on" not in text   # the data keys fitting reads are described for what fitting does with them
    assert len(listed) < len(set(re.findall(r"^\s+(--\w+)", build("run_train.py").format_help(), re.MULTILINE))) + 40


def test_checkpoint_keys_default_to_the_run_and_say_so():
    parser = build("run_fit.py")
    by_dest = {a.dest: a for a in parser._actions}
    for key in ("near", "far", "N_samples", "N_importance", "white_bkgd", "chunk", "datadir", "person_num"):
        assert by_dest[key].default is None and "(default: the training run's)" in by_dest[key].help


def test_the_original_config_keys_are_accepted_by_the_commands_that_read_training_configs(tmp_path):
    original = ROOT / "configs" / "exp_mofanerf.txt"
    for label in ("run_train.py", "run_fit.py", "trainingDataPreprocess/make_pairs.py"):
        args = parse_args(build(label), ["-c", str(original)])
        assert args.N_importance == 64 and args.use_viewdirs is True and args.netchunk == 196608
    legacy = tmp_path / "old_fit.txt"
    legacy.write_text("landmark_share = 0.4\nlandmark_sigma = 0.02\n")  # the earlier name of lm_share / lm_sigma
    args = parse_args(build("run_fit.py"), ["-c", str(legacy)])
    assert (args.lm_share, args.lm_sigma) == (0.4, 0.02)
    with pytest.raises(FaceNerfError, match="use_viewdirs = false is not supported"):
        from facenerf.models.mofanerf.options import run_config_from_args

        run_config_from_args(parse_args(build("run_train.py"), ["--use_viewdirs", "false"]))


def _typed_defaults() -> dict[str, object]:
    """``config key -> default`` over every typed config a command is built from."""
    from dataclasses import MISSING, fields, is_dataclass

    from facenerf.config import field_types
    from facenerf.data.synthetic.degraded_pairs import DegradedPairs
    from facenerf.data.synthetic.talking_head import TalkingHeadSettings
    from facenerf.data.synthetic.writer import GeneratorSettings
    from facenerf.demos.tiny_nerf import CoreDemoConfig
    from facenerf.fitting.config import FitCommand
    from facenerf.models.blendshape.config import BlendShapeRunConfig, BlendShapeTestSettings
    from facenerf.models.blendshape.expression_check import JawCheck
    from facenerf.models.mofanerf.config import MoFaNeRFRunConfig
    from facenerf.models.mofanerf.refine_pairs import PairPlan
    from facenerf.models.refine.inference import RefineTestSettings
    from facenerf.models.refine.training import RefineRunConfig
    from facenerf.preprocess.fitting.pipeline import PreprocessSettings
    from facenerf.preprocess.training.align import AlignOptions
    from facenerf.preprocess.training.contact_sheet import ContactSheet
    from facenerf.preprocess.training.multiview import RenderOptions
    from facenerf.preprocess.video.pipeline import ProcessSettings

    seen: dict[str, set] = {}

    def walk(cls):
        types = field_types(cls)
        for f in fields(cls):
            if is_dataclass(types[f.name]):
                walk(types[f.name])
            elif option_spec(f) is not None and f.default is not MISSING:
                seen.setdefault(option_key(f), set()).add((cls.__name__, f.default))

    for cls in (DegradedPairs, GeneratorSettings, CoreDemoConfig, FitCommand, MoFaNeRFRunConfig, PairPlan,
                RefineTestSettings, RefineRunConfig, PreprocessSettings, AlignOptions, ContactSheet, RenderOptions,
                TalkingHeadSettings, ProcessSettings, BlendShapeRunConfig, BlendShapeTestSettings, JawCheck):
        walk(cls)
    return seen


# keys two commands use for two different things (each command's own, documented in its --help)
DIFFERENT_IDEAS = {
    "eval_every", "log_every", "save_every",  # cadences of different runs
    "expressions",   # which expressions to generate / which to interpolate through
    "frames",        # frames of a fit's orbit video / of a synthetic talking-head clip
    "texture_size",  # albedo size of the FaceScape-format generator / of the talking-head speaker
    "upsample",      # dlib's HOG up-sampling: 1 for photos / chosen from the frame size for videos (None)
    "focal",         # the wild-photo camera's focal length at 512 px / a video's focal length (None: estimated)
    "load_size",     # RefineNet training size / test size (0 = the training one)
    "lr",            # learning rate of the demo NeRF / of the RefineNet
    "out", "size", "resolution",  # each tool's output and image size
    "pixel_center",  # the convention render.py renders with (0.5) / the one training assumes (None: the data's)
    "scale",         # the degraded pairs' downscale / the original MoFaNeRF's camera-translation divisor /
                     # NeRFBlendShape's pose-translation scale (None: auto)
}


def test_one_setting_has_one_default():
    """A key several typed configs define (one idea: chunk, fps, keep_last, ...) has the same default in
    each, taken from one constant or dataclass; only keys listed above name different things."""
    doubled = {key: sorted(owners) for key, owners in _typed_defaults().items()
               if len({value for _, value in owners}) > 1 and key not in DIFFERENT_IDEAS}
    assert doubled == {}


@pytest.mark.parametrize("label", sorted(PARSERS))
def test_parser_defaults_are_the_typed_configs(label):
    """A flag built from a typed field shows that field's default (or None where the run supplies it)."""
    seen = _typed_defaults()
    parser = build(label)
    for action in parser._actions:
        values = {value for _, value in seen.get(action.dest, set())}
        if values and action.help is not argparse.SUPPRESS and action.default is not None:
            assert action.default in values, f"{label} --{action.dest}: {action.default!r} not in {values}"
