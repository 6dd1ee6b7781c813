"""Self-describing training checkpoints: atomic writes, safe loading, clear errors.

A checkpoint is one ``torch.save`` file holding a plain dict (the *payload*)::

    {"format": "facenerf-checkpoint", "version": 1, "model": "<model name>",
     "config": {...resolved config, primitives only...}, "step": <completed steps>,
     "model_state": state_dict, "optimizer_state": {optimiser name: state_dict},
     "scaler_state": state_dict | None, "extra": {...}}

It is loaded with ``torch.load(..., weights_only=True)`` only, so opening a file never runs
code from it. Files are written to a temporary file in the destination folder and moved into
place with ``os.replace``: a crash or a full disk mid-write never damages the newest
complete checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from facenerf.errors import FaceNerfError
from facenerf.io import load_weights_file

CHECKPOINT_FORMAT = "facenerf-checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "model", "config", "step", "model_state")
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def make_payload(model_name: str, config: Mapping[str, Any], step: int, model_state: Mapping,
                 optimizer_state: Mapping[str, Mapping] | None = None, scaler_state: Mapping | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict:
    """Assemble a payload dict in the documented layout (see the module docstring)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": str(model_name),
        "config": dict(config),
        "step": int(step),
        "model_state": dict(model_state),
        "optimizer_state": dict(optimizer_state or {}),
        "scaler_state": scaler_state,
        "extra": dict(extra or {}),
    }


def save_checkpoint(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (see :func:`facenerf.io.atomic_write`), with an fsync.

    If writing fails the temporary file is removed and any previous file at ``path`` is left
    untouched. Raises :class:`~facenerf.errors.OutputError` (disk full, read-only folder, ...).
    """
    from facenerf.io import save_torch

    return save_torch(path, dict(payload), "checkpoint", durable=True)


def _check_payload(path: Path, payload: Any) -> None:
    """Raise a one-line :class:`FaceNerfError` unless ``payload`` is a loadable facenerf checkpoint."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise FaceNerfError(f"{path} is not a facenerf checkpoint (no '{CHECKPOINT_FORMAT}' format tag); "
                            "pass a file written by facenerf training")
    version = payload.get("version")
    if not isinstance(version, int):
        raise FaceNerfError(f"checkpoint {path} has no valid format version; it is damaged, "
                            "use an earlier checkpoint")
    if version > CHECKPOINT_VERSION:
        raise FaceNerfError(f"checkpoint {path} has format version {version}, newer than this facenerf "
                            f"understands ({CHECKPOINT_VERSION}); upgrade facenerf to load it")
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise FaceNerfError(f"checkpoint {path} is incomplete (missing {', '.join(missing)}); "
                            "use an earlier checkpoint")


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Load and validate a checkpoint payload (``torch.load(..., weights_only=True)``).

    Raises :class:`FaceNerfError` for a missing file, a corrupt or truncated file, a file that
    is not a facenerf checkpoint, or a format version newer than this code.
    """
    file = Path(path)
    if not file.is_file():
        raise FaceNerfError(f"checkpoint not found: {file} (check the path)")
    payload = load_weights_file(file, "checkpoint", map_location)
    _check_payload(file, payload)
    payload.setdefault("optimizer_state", {})
    payload.setdefault("scaler_state", None)
    payload.setdefault("extra", {})
    return payload


def _likely_cause(missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    if any(k.startswith("module.") for k in unexpected) or any(k.startswith("module.") for k in missing):
        return "a 'module.' prefix from a DataParallel/DDP wrapper differs; save and load the bare model"
    if shapes and not missing and not unexpected:
        return "model sizes in the config (code sizes, layer widths, grid sizes) differ from the checkpoint"
    return "the checkpoint was written by a different model or model configuration"


def check_compatible(model: nn.Module, state_dict: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise :class:`FaceNerfError` unless ``state_dict`` matches ``model``'s keys and shapes.

    The message names ``where`` (usually the checkpoint path), the first few missing,
    unexpected and mis-shaped entries, and the likely cause.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and hasattr(state_dict[k], "shape") and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            parts.append(f"{label}: {', '.join(items[:3])}{more}")
    raise FaceNerfError(f"{where} does not match the model ({'; '.join(parts)}); likely cause: "
                        f"{_likely_cause(missing, unexpected, shapes)}")


def load_model_weights(model: nn.Module, path: str | Path, expected_model: str | None = None,
                       map_location: Any = "cpu") -> dict:
    """Load a checkpoint's ``model_state`` into ``model`` after checking it fits; return the payload.

    ``expected_model``, when given, must equal the payload's model name.
    """
    payload = load_checkpoint(path, map_location=map_location)
    if expected_model is not None and payload["model"] != expected_model:
        raise FaceNerfError(f"{path} holds a '{payload['model']}' model, not '{expected_model}'; "
                            "pass a checkpoint trained for this model")
    check_compatible(model, payload["model_state"], str(path))
    model.load_state_dict(payload["model_state"])
    return payload


class CheckpointManager:
    """Numbered checkpoints ``step_00001234.pt`` in one folder, keeping the newest ``keep_last``.

    ``keep_last <= 0`` keeps every checkpoint.
    """

    def __init__(self, directory: str | Path, keep_last: int = 3):
        self.directory = Path(directory)
        self.keep_last = int(keep_last)

    def path_for(self, step: int) -> Path:
        return self.directory / f"step_{int(step):08d}.pt"

    def checkpoints(self) -> list[tuple[int, Path]]:
        """All checkpoint files as ``(step, path)``, oldest first (temporary and set-aside files ignored)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            match = _STEP_FILE.match(path.name)
            if match and path.is_file():
                found.append((int(match.group(1)), path))
        return sorted(found)

    def latest(self) -> Path | None:
        """The newest checkpoint's path, or ``None`` when there is none."""
        found = self.checkpoints()
        return found[-1][1] if found else None

    def save(self, step: int, payload: Mapping[str, Any]) -> Path:
        """Write the checkpoint for ``step`` atomically, then prune older ones (never this one)."""
        path = save_checkpoint(self.path_for(step), payload)
        self.prune(keep=path)
        return path

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Delete checkpoints older than ``keep`` beyond the newest ``keep_last``; return the deleted paths.

        ``keep`` (default: the newest checkpoint) is the one just written: it is never deleted,
        and neither is any checkpoint of a later step (pruning only ever removes older progress).
        """
        if self.keep_last <= 0:
            return []
        found = self.checkpoints()
        keep = Path(keep) if keep is not None else (found[-1][1] if found else None)
        if keep is None:
            return []
        keep_step = next((step for step, path in found if path == keep), None)
        if keep_step is None:
            return []
        older = [path for step, path in found if step < keep_step]
        stale = older[:max(len(older) - (self.keep_last - 1), 0)]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def set_aside(self, path: Path) -> Path:
        """Rename an unreadable checkpoint to ``<name>.corrupt`` (numbered if taken); return the new path."""
        target = path.with_name(path.name + ".corrupt")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.corrupt{n}")
        try:
            path.rename(target)
        except FileNotFoundError:  # another process (data-parallel rank) moved it first
            pass
        except OSError as err:
            raise FaceNerfError(f"cannot move unreadable checkpoint {path} aside: {err.strerror or err}; "
                                "move or delete it by hand") from err
        return target

    def clean_temporaries(self) -> list[Path]:
        """Remove temporary files left by checkpoint writes that were killed; return them."""
        from facenerf.io import remove_stale_temporaries

        return remove_stale_temporaries(self.directory)

    def load_latest(self, map_location: Any = "cpu", warn=print) -> dict | None:
        """Load the newest readable checkpoint; ``None`` if the folder holds none.

        Each unreadable checkpoint met on the way is moved aside (:meth:`set_aside`) with a
        note through ``warn``, so that it is never resumed from or ranked again. When every
        checkpoint is unreadable this raises :class:`FaceNerfError` (after moving them aside),
        so a run never silently starts over.
        """
        found = self.checkpoints()
        for _, path in reversed(found):
            try:
                payload = load_checkpoint(path, map_location=map_location)
            except FaceNerfError as err:
                if "newer than this facenerf" in str(err):
                    raise
                moved = self.set_aside(path)
                warn(f"note: unreadable checkpoint moved aside to {moved.name}: {err}")
                continue
            payload["path"] = str(path)
            return payload
        if found:
            raise FaceNerfError(f"no checkpoint in {self.directory} can be read (moved aside as *.corrupt); "
                                "run again to start from scratch there, or restore a good checkpoint")
        return None
