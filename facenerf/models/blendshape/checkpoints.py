"""Load NeRFBlendShape checkpoints (written by the engine) and check them against a run.

A checkpoint stores the resolved :class:`~facenerf.models.blendshape.config.BlendShapeRunConfig`
(``expr_dim``, ``bound``, ``scale`` filled in) and the model state, whose buffers carry the
training range of the coefficients and the occupancy grid; :func:`load_blendshape` rebuilds the
model from it alone.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from facenerf.engine.checkpoint import CheckpointManager, check_compatible, load_checkpoint
from facenerf.engine.trainer import CHECKPOINT_DIR
from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.config import BlendShapeConfig, BlendShapeRunConfig
from facenerf.models.blendshape.model import MODEL_NAME, NeRFBlendShape

# sizes that must agree between a checkpoint and a run that reuses it (grid_impl may differ)
SIZE_KEYS = tuple(f.name for f in fields(BlendShapeConfig) if f.name not in ("grid_impl",))


def model_from_payload(payload: dict, where: str) -> tuple[NeRFBlendShape, BlendShapeRunConfig]:
    """The model (CPU) and the run config of a checkpoint payload."""
    if payload["model"] != MODEL_NAME:
        raise FaceNerfError(f"{where} holds a '{payload['model']}' model, not a NeRFBlendShape head; "
                            "pass a checkpoint written by main_nerf.py")
    run = BlendShapeRunConfig.from_checkpoint(payload["config"], where)
    state = payload["model_state"]
    try:
        expr_max, expr_min = state["field.expr_max"][1:], state["field.expr_min"][1:]
    except KeyError as err:
        raise FaceNerfError(f"{where} lacks the expression range ({err}); it is incomplete") from err
    codes = state.get("torso.codes")
    model = NeRFBlendShape(run, expr_max, expr_min, torso_frames=0 if codes is None else int(codes.shape[0]))
    check_compatible(model, state, where)
    model.load_state_dict(state)
    return model, run


def load_blendshape(path: str | Path) -> tuple[NeRFBlendShape, dict[str, Any]]:
    """``(model on the CPU, {"step", "run"})`` of a NeRFBlendShape checkpoint file."""
    payload = load_checkpoint(path, map_location="cpu")
    model, run = model_from_payload(payload, str(path))
    return model, {"step": int(payload["step"]), "run": run}


def newest_checkpoint(workspace: str | Path) -> Path | None:
    """The newest checkpoint file of a workspace (None when it has none)."""
    return CheckpointManager(Path(workspace) / CHECKPOINT_DIR).latest()


def size_mismatches(ours: BlendShapeConfig, theirs: BlendShapeConfig) -> list[str]:
    """``"key: A vs B"`` for every model size that differs (ours first)."""
    return [f"{key} {getattr(ours, key)} vs {getattr(theirs, key)}" for key in SIZE_KEYS
            if getattr(ours, key) != getattr(theirs, key)]


def check_expr_dim(expected: int, stored: BlendShapeConfig, where: str, flag: str = "--expr_dim") -> None:
    """One line when a checkpoint's head was trained with another number of coefficients."""
    if stored.expr_dim != expected:
        raise FaceNerfError(f"{where} holds a head trained with {flag} {stored.expr_dim}, but this run uses "
                            f"{expected} coefficients; pass {flag} {stored.expr_dim} (and data with that many), or "
                            "another checkpoint")


def check_workspace(run: BlendShapeRunConfig, where_hint: str = "--workspace") -> Path | None:
    """Before training in ``run.train.workspace``: its newest checkpoint must hold the same head
    (``expr_dim`` and every size); returns that checkpoint (None for a fresh workspace)."""
    latest = newest_checkpoint(run.train.workspace)
    if latest is None:
        return None
    payload = CheckpointManager(latest.parent).load_latest(map_location="cpu")
    if payload is None:
        return None
    if payload["model"] != MODEL_NAME:
        raise FaceNerfError(f"{run.train.workspace} holds checkpoints of a '{payload['model']}' model; choose "
                            f"another {where_hint}")
    stored = BlendShapeRunConfig.from_checkpoint(payload["config"], payload["path"])
    if stored.train.torso != run.train.torso:
        kind, other = ("a head and torso", "a head-only") if stored.train.torso else ("a head-only", "a torso")
        raise FaceNerfError(f"{run.train.workspace} holds {kind} run ({payload['path']}); this is {other} run: "
                            f"choose another {where_hint}")
    check_expr_dim(run.model.expr_dim, stored.model, payload["path"])
    diffs = size_mismatches(run.model, stored.model)
    if abs(stored.scene.bound - run.scene.bound) > 1e-6 * run.scene.bound:
        diffs.append(f"bound {run.scene.bound:g} vs {stored.scene.bound:g}")
    if diffs:
        raise FaceNerfError(f"model sizes differ from the workspace's checkpoint {payload['path']} "
                            f"({'; '.join(diffs)}); use the same sizes to resume or another {where_hint}")
    return Path(payload["path"])
