"""Load a trained MoFaNeRF from either checkpoint format; save one in ours.

* facenerf checkpoints (``checkpoints/step_XXXXXXXX.pt``, written by training) carry the
  architecture in ``config["model_config"]`` and load without the training config.
* The original code's ``.tar`` files (the released pretrained model) are recognised by their
  keys and imported with :mod:`facenerf.models.mofanerf.official`.

Both are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facenerf.engine.checkpoint import check_compatible, load_checkpoint, make_payload, save_checkpoint
from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.config import MoFaNeRFConfig, describe_mismatch
from facenerf.models.mofanerf.model import MODEL_NAME, MoFaNeRF
from facenerf.models.mofanerf.official import import_official, is_official_layout, read_official_file


def model_config_from_payload(config: dict, where: str) -> MoFaNeRFConfig:
    """The architecture stored in a facenerf checkpoint's config."""
    if isinstance(config.get("model_config"), dict):
        return MoFaNeRFConfig.from_dict(config["model_config"])
    try:
        return MoFaNeRFConfig.from_args(argparse.Namespace(**config))
    except AttributeError as err:
        raise FaceNerfError(f"{where} stores no MoFaNeRF architecture ({err}); "
                            "it was not written by MoFaNeRF training") from err


def _load_ours(payload: dict, where: str, expect: MoFaNeRFConfig | None, **model_kwargs) -> MoFaNeRF:
    if payload["model"] != MODEL_NAME:
        raise FaceNerfError(f"{where} holds a '{payload['model']}' model, not '{MODEL_NAME}'; "
                            "pass a MoFaNeRF checkpoint")
    cfg = model_config_from_payload(payload["config"], where)
    if expect is not None:
        message = describe_mismatch(expect, cfg, where)
        if message:
            raise FaceNerfError(message)
    model = MoFaNeRF(cfg, **model_kwargs)
    check_compatible(model, payload["model_state"], where)
    model.load_state_dict(payload["model_state"])
    return model


def load_mofanerf(path: str | Path, expect: MoFaNeRFConfig | None = None,
                  **model_kwargs) -> tuple[MoFaNeRF, dict[str, Any]]:
    """Load a MoFaNeRF (CPU) from a facenerf checkpoint or an original ``.tar``.

    Args:
        path: checkpoint file.
        expect: sizes the caller's config asks for; a mismatch raises one FaceNerfError naming
            both values of every differing size.
        model_kwargs: passed to :class:`MoFaNeRF` (``lrate``, render settings).
    Returns:
        ``(model, info)`` with ``info = {"format": "facenerf" | "official", "step": int,
        "config": dict}``.
    """
    try:
        payload = load_checkpoint(path, map_location="cpu")
    except FaceNerfError as ours_error:
        data = _official_or_none(path)
        if data is None:
            raise ours_error
        model, step = import_official(data, expect=expect, where=str(path), **model_kwargs)
        return model, {"format": "official", "step": step, "config": {"model_config": model.cfg.to_dict()}}
    model = _load_ours(payload, str(path), expect, **model_kwargs)
    return model, {"format": "facenerf", "step": int(payload["step"]), "config": payload["config"]}


def _official_or_none(path: str | Path) -> dict | None:
    """The file's dict when it has the original layout, else None (errors left to the caller)."""
    try:
        return read_official_file(path)
    except FaceNerfError:
        return None


def save_mofanerf(path: str | Path, model: MoFaNeRF, step: int = 0, config: dict | None = None) -> Path:
    """Write ``model`` as a self-describing facenerf checkpoint (no optimiser state)."""
    full = {**(config or {}), "model_config": model.cfg.to_dict()}
    return save_checkpoint(path, make_payload(MODEL_NAME, full, step, model.state_dict()))


def is_official_file(path: str | Path) -> bool:
    """True when ``path`` reads as an original MoFaNeRF checkpoint."""
    return is_official_layout(_official_or_none(path))


def _check_target(source: Path, target: Path) -> None:
    """One-line errors for a target that would replace the source or cannot be a file."""
    if target.resolve() == source.resolve() or (target.exists() and source.exists() and target.samefile(source)):
        raise FaceNerfError(f"target {target} is the source file; write the converted checkpoint to another "
                            "file (the converter never replaces its input)")
    if target.is_dir():
        raise FaceNerfError(f"target {target} is a folder; pass a file name such as {target / 'mofanerf.pt'}")


def convert(source: str | Path, target: str | Path, to_official: bool = False) -> Path:
    """Convert a checkpoint: original ``.tar`` -> facenerf ``.pt`` (default), or back.

    The target is written atomically; it may not be the source file.
    """
    from facenerf.io import save_torch

    source, target = Path(source), Path(target)
    _check_target(source, target)
    model, info = load_mofanerf(source)
    if not to_official:
        return save_mofanerf(target, model, step=info["step"])
    from facenerf.models.mofanerf.official import export_official

    return save_torch(target, export_official(model, info["step"]), "checkpoint")


def main(argv: list[str] | None = None) -> int:
    """``python -m facenerf.models.mofanerf.checkpoints SRC DST [--to_official]``."""
    from facenerf.config import make_parser, parse_args

    parser = make_parser("Convert a MoFaNeRF checkpoint between the original .tar layout and facenerf's .pt.",
                         prog="python -m facenerf.models.mofanerf.checkpoints")
    parser.add_argument("source", help="checkpoint to read (original .tar or facenerf .pt)")
    parser.add_argument("target", help="file to write")
    parser.add_argument("--to_official", action="store_true", help="write the original code's layout instead")
    args = parse_args(parser, argv)
    path = convert(args.source, args.target, args.to_official)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from facenerf.errors import run_cli

    run_cli(main)
