"""Settings a fit takes from its checkpoint: the architecture, and what the training run fixed.

A facenerf checkpoint stores its architecture (``config["model_config"]``) and the training
run's resolved options; an original ``.tar`` gives the architecture from its tensor shapes
(and no training options). ``run_fit.py`` builds the model from the checkpoint's sizes, so a
fit config needs no architecture keys, and takes the ray bounds, sample counts and training
data of the run from the checkpoint too.

Keys the user set (on the command line or in the ``-c`` file, see :func:`explicit_keys`) are
never overridden: an architecture key that disagrees with the checkpoint is one error line
naming the key, the config's value and the checkpoint's; a render key that differs from the
training run's value is kept, with a note.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Collection, Sequence

from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.config import MoFaNeRFConfig, parse_int_list

# option key (the seed's names, as in config files) -> MoFaNeRFConfig field
ARCH_KEYS: dict[str, str] = {
    "multires": "multires", "multires_views": "multires_views", "netdepth": "netdepth", "netwidth": "netwidth",
    "netdepth_fine": "netdepth_fine", "netwidth_fine": "netwidth_fine", "xyz_depth": "xyz_depth", "skip": "skip",
    "input_ch_shapeCodes": "shape_dim", "input_ch_textureCodes": "texture_dim", "input_ch_expCodes": "exp_dim",
    "n_expressions": "n_expressions", "ism_width": "ism_width", "ism_depth": "ism_depth", "tex_size": "tex_size",
    "tex_channels": "tex_channels", "tex_hidden": "tex_hidden", "tex_decoder_depth": "tex_decoder_depth",
    "tex_logstd_head": "tex_logstd_head",
}
# renderer settings the training run fixed; renders match training only with the same values
RENDER_KEYS = ("near", "far", "N_samples", "N_importance", "white_bkgd", "lindisp", "pixel_center")
# where the training identities are (code statistics, RefineNet pairs)
DATA_KEYS = ("datadir", "shape_codes", "landmarks", "uv_dir", "person_num", "half_res", "image_scale")
TRAINED_KEYS = RENDER_KEYS + DATA_KEYS
_FINE_KEYS = ("netdepth_fine", "netwidth_fine")


def explicit_keys(build_parser: Callable[[], argparse.ArgumentParser], args: argparse.Namespace,
                  argv: Sequence[str] | None = None) -> frozenset[str]:
    """Names of the options in ``args`` that ``argv`` or its ``-c`` file set (not left at their defaults).

    ``build_parser`` must build the parser ``args`` came from; it is parsed once more with every
    default replaced by a marker, so a key counts as set even when its value equals the default.
    ``argv`` defaults to ``sys.argv[1:]``, as in :func:`facenerf.config.parse_args`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    probe = build_parser()
    unset = object()
    probe.set_defaults(**{key: unset for key in vars(args) if key != "config"})
    values, _ = probe.parse_known_args(argv)
    return frozenset(key for key, value in vars(values).items() if value is not unset and key != "config")


def option_value(key: str, cfg: MoFaNeRFConfig):
    """The checkpoint's size ``key`` written as the option would be (``tex_channels`` as ``"16,32"``)."""
    value = getattr(cfg, ARCH_KEYS[key])
    return ",".join(str(c) for c in value) if key == "tex_channels" else value


def _comparable(key: str, value):
    if key == "tex_channels":
        return parse_int_list(value, "tex_channels")
    if key == "tex_logstd_head":
        return bool(value)
    return int(value)


def _shown(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def _asks_for_fine(args: argparse.Namespace, cfg: MoFaNeRFConfig, explicit: Collection[str]) -> bool:
    """Whether the user's fine-network keys (checkpoint values where unset) describe a fine network.

    As in training (:meth:`MoFaNeRFConfig.from_args`), ``N_importance = 0`` means no fine network.
    """
    sizes = [int(getattr(args, k)) if k in explicit else getattr(cfg, ARCH_KEYS[k]) for k in _FINE_KEYS]
    return min(sizes) > 0 and int(args.N_importance) > 0


def architecture_mismatches(args: argparse.Namespace, explicit: Collection[str], cfg: MoFaNeRFConfig) -> list[str]:
    """``"key: config A vs checkpoint B"`` for every architecture key the user set to another value.

    A checkpoint without a fine network matches any fine-network sizes that ask for none.
    """
    diffs = []
    for key in ARCH_KEYS:
        if key not in explicit:
            continue
        ours, theirs = _comparable(key, getattr(args, key)), _comparable(key, option_value(key, cfg))
        if key in _FINE_KEYS and not cfg.has_fine:
            if _asks_for_fine(args, cfg, explicit):
                diffs.append(f"{key}: config {_shown(ours)} vs checkpoint {_shown(theirs)} (no fine network)")
        elif ours != theirs:
            diffs.append(f"{key}: config {_shown(ours)} vs checkpoint {_shown(theirs)}")
    return diffs


def check_architecture(args: argparse.Namespace, explicit: Collection[str], cfg: MoFaNeRFConfig, where: str) -> None:
    """One FaceNerfError naming every architecture key set by the user that the checkpoint contradicts."""
    diffs = architecture_mismatches(args, explicit, cfg)
    if diffs:
        raise FaceNerfError(f"model sizes in the config do not match {where} ({'; '.join(diffs)}); "
                            "remove those keys (the model is built from the checkpoint's sizes) or pass the "
                            "checkpoint they belong to with --ckpt")


def adopt_architecture(args: argparse.Namespace, explicit: Collection[str], cfg: MoFaNeRFConfig) -> None:
    """Write the checkpoint's sizes into ``args`` for every architecture key the user left unset."""
    for key in ARCH_KEYS:
        if key not in explicit:
            setattr(args, key, option_value(key, cfg))


def adopt_trained_settings(args: argparse.Namespace, explicit: Collection[str], trained: dict) -> dict:
    """Copy the training run's render and data settings into ``args`` where the user left them unset.

    ``trained`` is the checkpoint's stored training config (empty for an original ``.tar``).
    Returns ``{key: value}`` of the settings that changed.
    """
    taken = {}
    for key in TRAINED_KEYS:
        if key in explicit or trained.get(key) is None or not hasattr(args, key):
            continue
        if not _same(getattr(args, key), trained[key]):
            taken[key] = trained[key]
        setattr(args, key, trained[key])
    return taken


def render_differences(args: argparse.Namespace, trained: dict) -> list[str]:
    """``"near 10.0 (trained with 12.0)"`` for each render setting that differs from the training run's."""
    return [f"{key} {getattr(args, key)} (trained with {trained[key]})" for key in RENDER_KEYS
            if trained.get(key) is not None and hasattr(args, key) and not _same(getattr(args, key), trained[key])]


def _same(a, b) -> bool:
    if isinstance(a, (bool, int, float)) and isinstance(b, (bool, int, float)):
        return float(a) == float(b)
    return a == b
