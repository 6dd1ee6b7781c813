"""The fit-result file: everything a fit found, in a versioned, safely loadable file.

Layout (``torch.save`` of a dict of tensors and primitives; loaded with ``weights_only=True``)::

    {"format": "facenerf-fit", "version": 1,
     "shape": [S], "expression": [E] (before ISM), "texture": [T],
     "pose": {"parametrisation": "axis_angle" | "6d", "rotation": [3] | [6], "translation": [3],
              "initial_c2w": [4, 4], "c2w": [4, 4]},
     "gain": [1] or [3],
     "iteration": completed iterations, "iterations": planned iterations,
     "intrinsics": {"width", "height", "fx", "fy", "cx", "cy"}, "near": float, "far": float,
     "history": {"iteration": [...], "loss": [...], "photometric": [...], "psnr": [...], ...},
     "config": {fit options}, "checkpoint": str, "target": str, "model_config": {...},
     "optimizer_state": Adam state dict (for resuming)}

``iteration`` is the number of iterations actually completed when the file was written, so a
fit that was stopped early resumes where it stopped (the original stored the requested count,
reference §11.19). ``c2w`` is stored for readers in other tools; this code rebuilds it from
the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from facenerf.core.cameras import Intrinsics
from facenerf.errors import FaceNerfError
from facenerf.fitting.pose import apply_correction, rotation_from_params
from facenerf.io import load_weights_file

FIT_FORMAT = "facenerf-fit"
FIT_VERSION = 1
FIT_FILENAME = "fit.pt"


def intrinsics_to_dict(K: Intrinsics) -> dict:
    return {"width": int(K.width), "height": int(K.height), "fx": float(K.fx), "fy": float(K.fy),
            "cx": float(K.cx), "cy": float(K.cy)}


@dataclass
class FitResult:
    """A fitted face: codes, camera, colour gain and how far the fit got."""

    shape: Tensor  # [S] beta
    expression: Tensor  # [E] epsilon before ISM
    texture: Tensor  # [T] alpha
    rotation: Tensor  # [3] or [6] pose-correction rotation parameters
    translation: Tensor  # [3] pose-correction shift, scene units
    initial_c2w: Tensor  # [4, 4] camera-to-world from the input
    gain: Tensor  # [1] or [3] multiplies the rendered colour
    intrinsics: Intrinsics  # of the full-size target
    near: float
    far: float
    iteration: int = 0  # completed iterations
    iterations: int = 0  # planned iterations
    pose_parametrisation: str = "axis_angle"
    history: dict[str, list[float]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    checkpoint: str = ""
    target: str = ""
    model_config: dict = field(default_factory=dict)
    optimizer_state: dict | None = None

    @property
    def complete(self) -> bool:
        return self.iteration >= self.iterations

    def c2w(self) -> Tensor:
        """The fitted camera-to-world pose ``[4, 4]``."""
        rot = rotation_from_params(self.rotation.float(), self.pose_parametrisation)
        return apply_correction(self.initial_c2w.float(), rot, self.translation.float())

    def to_dict(self) -> dict:
        return {
            "format": FIT_FORMAT, "version": FIT_VERSION,
            "shape": self.shape.detach().float().cpu(), "expression": self.expression.detach().float().cpu(),
            "texture": self.texture.detach().float().cpu(),
            "pose": {"parametrisation": self.pose_parametrisation, "rotation": self.rotation.detach().float().cpu(),
                     "translation": self.translation.detach().float().cpu(),
                     "initial_c2w": self.initial_c2w.detach().float().cpu(), "c2w": self.c2w().detach().cpu()},
            "gain": self.gain.detach().float().cpu(), "iteration": int(self.iteration),
            "iterations": int(self.iterations), "intrinsics": intrinsics_to_dict(self.intrinsics),
            "near": float(self.near), "far": float(self.far),
            "history": {k: [float(v) for v in vals] for k, vals in self.history.items()},
            "config": dict(self.config), "checkpoint": str(self.checkpoint), "target": str(self.target),
            "model_config": dict(self.model_config), "optimizer_state": self.optimizer_state,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically: an interrupted write never damages the previous file."""
        from facenerf.engine.checkpoint import save_checkpoint

        return save_checkpoint(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, where: str = "fit file") -> "FitResult":
        try:
            pose, k = data["pose"], data["intrinsics"]
            return cls(
                shape=data["shape"], expression=data["expression"], texture=data["texture"],
                rotation=pose["rotation"], translation=pose["translation"], initial_c2w=pose["initial_c2w"],
                gain=data["gain"], intrinsics=Intrinsics(int(k["width"]), int(k["height"]), float(k["fx"]),
                                                         float(k["fy"]), float(k["cx"]), float(k["cy"])),
                near=float(data["near"]), far=float(data["far"]), iteration=int(data["iteration"]),
                iterations=int(data["iterations"]), pose_parametrisation=str(pose["parametrisation"]),
                history={k: list(v) for k, v in data.get("history", {}).items()},
                config=dict(data.get("config", {})), checkpoint=str(data.get("checkpoint", "")),
                target=str(data.get("target", "")), model_config=dict(data.get("model_config", {})),
                optimizer_state=data.get("optimizer_state"))
        except (KeyError, TypeError, ValueError) as err:
            raise FaceNerfError(f"{where} is incomplete or damaged (missing {err}); fit the image again") from err

    @classmethod
    def load(cls, path: str | Path) -> "FitResult":
        """Read a fit file (``weights_only=True``); one-line FaceNerfError for every problem."""
        file = Path(path)
        if not file.is_file():
            raise FaceNerfError(f"fit file not found: {file} (run run_fit.py in fitting mode first, "
                                "or pass the fit file with --fitFile)")
        data = load_weights_file(file, "fit file", fix="fit the image again")
        if not isinstance(data, dict) or data.get("format") != FIT_FORMAT:
            raise FaceNerfError(f"{file} is not a facenerf fit file (no '{FIT_FORMAT}' tag); pass the "
                                f"{FIT_FILENAME} written by run_fit.py")
        if not isinstance(data.get("version"), int) or data["version"] > FIT_VERSION:
            raise FaceNerfError(f"{file} has fit-file version {data.get('version')}, which this facenerf "
                                f"(version {FIT_VERSION}) cannot read; upgrade facenerf")
        return cls.from_dict(data, str(file))
