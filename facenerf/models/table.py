"""The model table: a model's name (as its checkpoints store it) -> its run config, model class and loader.

Adding a model means adding one entry here; the engine and the core never name a model. Every
entry's ``config`` has ``from_checkpoint(config_dict, where)`` (the typed run config a
checkpoint stores, older layouts included) and ``load(path) -> (model, info)`` returns the model
on the CPU with ``info["step"]`` and ``info["run"]`` (the run config, None where the file
stores none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from facenerf.errors import FaceNerfError
from facenerf.models.blendshape.checkpoints import load_blendshape
from facenerf.models.blendshape.config import BlendShapeRunConfig
from facenerf.models.blendshape.model import MODEL_NAME as BLENDSHAPE, NeRFBlendShape
from facenerf.models.mofanerf.checkpoints import load_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFRunConfig
from facenerf.models.mofanerf.model import MODEL_NAME as MOFANERF, MoFaNeRF
from facenerf.models.refine.inference import load_refine
from facenerf.models.refine.model import MODEL_NAME as REFINE, RefineModel
from facenerf.models.refine.training import RefineRunConfig


@dataclass(frozen=True)
class ModelEntry:
    """What the toolkit needs to know about one model family."""

    config: type                                           # typed run config stored in checkpoints
    model: type[nn.Module]                                 # the trainable model
    load: Callable[[str | Path], tuple[nn.Module, dict]]   # checkpoint -> (model, info)


MODELS: dict[str, ModelEntry] = {
    MOFANERF: ModelEntry(MoFaNeRFRunConfig, MoFaNeRF, load_mofanerf),
    REFINE: ModelEntry(RefineRunConfig, RefineModel, load_refine),
    BLENDSHAPE: ModelEntry(BlendShapeRunConfig, NeRFBlendShape, load_blendshape),
}


def model_entry(name: str) -> ModelEntry:
    """The table's entry for ``name``; FaceNerfError naming the known models otherwise."""
    if name not in MODELS:
        raise FaceNerfError(f"unknown model '{name}': this facenerf knows {', '.join(sorted(MODELS))}")
    return MODELS[name]


def read_checkpoint_run(path: str | Path) -> tuple[str, int, Any]:
    """``(model name, step, typed run config)`` of a facenerf checkpoint, without building the model."""
    from facenerf.engine.checkpoint import load_checkpoint

    payload = load_checkpoint(path)
    entry = model_entry(payload["model"])
    return payload["model"], int(payload["step"]), entry.config.from_checkpoint(payload["config"], str(path))
