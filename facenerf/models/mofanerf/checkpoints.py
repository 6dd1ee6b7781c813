"""Load a trained MoFaNeRF from either checkpoint format, with the run configuration it was trained with.

* facenerf checkpoints (``checkpoints/step_XXXXXXXX.pt``, written by training) store the run's
  :class:`~facenerf.models.mofanerf.config.MoFaNeRFRunConfig` (older ones: the flat option
  dict plus ``model_config``) and load without any training config.
* The original code's ``.tar`` files (the released pretrained model) are recognised by their
  keys (:data:`~facenerf.models.mofanerf.official.OFFICIAL_KEYS`) and imported with
  :mod:`facenerf.models.mofanerf.official`; their sizes come from the tensor shapes and every
  other setting keeps its default (the released model's).

:func:`load_run` is what fitting, rendering and RefineNet pair-making call: the model, the
run config with the user's explicit overrides applied, and notes on what came from where.
Files are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from facenerf.core.renderer import RenderSettings
from facenerf.engine.checkpoint import CheckpointManager, check_compatible, load_checkpoint, make_payload, \
    save_checkpoint
from facenerf.engine.trainer import CHECKPOINT_DIR
from facenerf.errors import FaceNerfError
from facenerf.io import load_weights_file
from facenerf.models.mofanerf.config import (MoFaNeRFConfig, MoFaNeRFRunConfig, RunOverrides, RunSource,
                                             check_model_overrides, describe_mismatch, render_differences,
                                             taken_from_run)
from facenerf.models.mofanerf.model import MODEL_NAME, MoFaNeRF
from facenerf.models.mofanerf.official import OFFICIAL_KEYS, import_official, is_official_layout, read_official_file


def _load_ours(payload: dict, where: str, expect: MoFaNeRFConfig | None,
               **model_kwargs) -> tuple[MoFaNeRF, MoFaNeRFRunConfig]:
    if payload["model"] != MODEL_NAME:
        raise FaceNerfError(f"{where} holds a '{payload['model']}' model, not '{MODEL_NAME}'; "
                            "pass a MoFaNeRF checkpoint")
    run = MoFaNeRFRunConfig.from_checkpoint(payload["config"], where)
    if expect is not None:
        message = describe_mismatch(expect, run.model, where)
        if message:
            raise FaceNerfError(message)
    model = MoFaNeRF(run.model, **model_kwargs)
    state = MoFaNeRF.upgrade_state_dict(payload["model_state"])
    check_compatible(model, state, where)
    model.load_state_dict(state)
    return model, run


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
        "run": MoFaNeRFRunConfig | None}`` (None for an original ``.tar``, which stores no run).
    """
    try:
        payload = load_checkpoint(path, map_location="cpu")
    except FaceNerfError as ours_error:
        data = _original_or_none(path)
        if data is None:
            raise ours_error
        model, step = import_official(data, expect=expect, where=str(path), **model_kwargs)  # names missing keys
        return model, {"format": "official", "step": step, "run": None}
    model, run = _load_ours(payload, str(path), expect, **model_kwargs)
    return model, {"format": "facenerf", "step": int(payload["step"]), "run": run}


def _original_or_none(path: str | Path) -> dict | None:
    """The file's dict when it holds any of the original code's checkpoint keys, else None
    (errors reading the file are left to the caller's own message)."""
    try:
        data = load_weights_file(path, "MoFaNeRF checkpoint")
    except FaceNerfError:
        return None
    return data if isinstance(data, dict) and any(key in data for key in OFFICIAL_KEYS) else None


def save_mofanerf(path: str | Path, model: MoFaNeRF, step: int = 0, run: MoFaNeRFRunConfig | None = None) -> Path:
    """Write ``model`` as a self-describing facenerf checkpoint (no optimiser state).

    ``run`` is the run config to store (default: the defaults with the model's sizes).
    """
    run = replace(run or MoFaNeRFRunConfig(), model=model.cfg)
    return save_checkpoint(path, make_payload(MODEL_NAME, run.to_dict(), step, model.state_dict()))


def is_official_file(path: str | Path) -> bool:
    """True when ``path`` reads as an original MoFaNeRF checkpoint."""
    try:
        return is_official_layout(read_official_file(path))
    except FaceNerfError:
        return False


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
        return save_mofanerf(target, model, step=info["step"], run=info["run"])
    from facenerf.models.mofanerf.official import export_official

    return save_torch(target, export_official(model, info["step"]), "checkpoint")


# ----------------------------------------------------------------------------- a trained run

def original_run_folder(source: RunSource) -> Path:
    """Where the original code keeps a run's ``.tar`` files: ``basedir/<expname>_0to<person_num>``
    (``logs/mofanerf_0to300`` for the released model)."""
    person_num = source.overrides.data.get("person_num", MoFaNeRFRunConfig().data.person_num)
    return Path(source.location.basedir) / f"{source.location.expname}_0to{person_num}"


def newest_original_file(folder: Path) -> Path | None:
    """The file the original code would load from ``folder``: the last name, sorted, containing 'tar'."""
    if not folder.is_dir():
        return None
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and "tar" in p.name)
    return folder / names[-1] if names else None


def locate_checkpoint(source: RunSource) -> Path:
    """``ckpt``, else ``ft_path``, else the newest ``basedir/expname/checkpoints/step_*.pt``, else the
    original code's newest ``.tar`` in ``basedir/<expname>_0to<person_num>`` (:func:`original_run_folder`)."""
    where = source.location
    for flag, value in (("--ckpt", source.ckpt), ("--ft_path", where.ft_path)):
        if value:
            if not Path(value).is_file():
                raise FaceNerfError(f"checkpoint not found: {value} (check {flag})")
            return Path(value)
    folder = Path(where.basedir) / where.expname / CHECKPOINT_DIR
    latest = CheckpointManager(folder).latest() or newest_original_file(original_run_folder(source))
    if latest is None:
        raise FaceNerfError(f"no checkpoint in {folder} (nor an original .tar in {original_run_folder(source)}): "
                            "train first (run_train.py -c <config>) or pass --ckpt")
    return latest


@dataclass
class LoadedRun:
    """A trained MoFaNeRF with the settings to use it."""

    model: MoFaNeRF
    checkpoint: Path
    step: int
    run: MoFaNeRFRunConfig  # the training run's config with the user's overrides applied
    trained: MoFaNeRFRunConfig | None  # as the checkpoint stores it (None: an original .tar)
    notes: list[str] = field(default_factory=list)  # what came from the checkpoint, what differs

    @property
    def render_settings(self) -> RenderSettings:
        """Deterministic (test-mode) renderer settings of the run."""
        return self.run.render.settings(training=False)


def load_source(source: RunSource) -> LoadedRun:
    """:func:`load_run` on the checkpoint that ``source`` names."""
    return load_run(locate_checkpoint(source), source.overrides)


def load_run(path: str | Path, overrides: RunOverrides | None = None) -> LoadedRun:
    """Load a checkpoint and the run it belongs to, then apply the user's ``overrides``.

    The model is built from the checkpoint's own sizes; an architecture size in
    ``overrides.model`` must equal the checkpoint's (one FaceNerfError line naming every
    difference). Render, data and sampling keys in ``overrides`` replace the run's values. An
    original ``.tar`` stores no run: the defaults (the released model's) fill everything but
    the sizes. The model's own render settings follow the resolved run.
    """
    overrides = overrides or RunOverrides()
    model, info = load_mofanerf(path)
    trained = info["run"]
    base = trained or MoFaNeRFRunConfig(model=model.cfg)
    run = replace(base.with_overrides(overrides), model=model.cfg)
    check_model_overrides(model.cfg, overrides, run.render.N_importance, str(path))
    model.train_settings, model.eval_settings = run.render.settings(training=True), run.render.settings()
    notes = []
    if trained is not None:
        taken = taken_from_run(trained, overrides)
        if taken:
            listed = ", ".join(f"{k} {v}" for k, v in taken.items())
            notes.append(f"from the training run of {path}: {listed} "
                         "(set them in the config or on the command line to override)")
        diffs = render_differences(trained, overrides)
        if diffs:
            notes.append(f"rendering with {', '.join(diffs)} from {path}; set them as in training for faithful renders")
    return LoadedRun(model, Path(path), int(info["step"]), run, trained, notes)
