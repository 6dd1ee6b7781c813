"""Code statistics: Gaussian mean/std of the shape and texture codes over the training identities.

They play the role of the original ``configs/texShpDistribution.npy`` (reference §1.11):

* ``shape_mean/std [S]``: over the training identities' rows of the shape-code file (beta);
* ``texture_mean/std [T]``: over the texture encoder's codes of their neutral UV maps (alpha).

Fitting starts from the means and uses the stds in its Gaussian priors; random generation and
``swap random`` draw from them. The statistics depend on the trained texture encoder, so they
are computed once per checkpoint with :func:`compute_code_statistics` and stored next to it as a
small ``torch.save`` file of tensors and primitives (``code_stats.pt``), reloaded with
``weights_only=True``. The file names the checkpoint step it was computed for; a file from
another step is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor

from facenerf.errors import FaceNerfError

STATS_FORMAT = "facenerf-code-stats"
STATS_VERSION = 1
STATS_FILENAME = "code_stats.pt"


@dataclass
class CodeStatistics:
    """Diagonal Gaussian statistics of the codes (each tensor ``[dim]`` float32)."""

    shape_mean: Tensor  # [S]
    shape_std: Tensor  # [S]
    texture_mean: Tensor  # [T]
    texture_std: Tensor  # [T]
    n_identities: int
    step: int = -1  # checkpoint step the statistics belong to (-1 = unknown)

    def to_dict(self) -> dict:
        return {"format": STATS_FORMAT, "version": STATS_VERSION, "n_identities": int(self.n_identities),
                "step": int(self.step), "shape_mean": self.shape_mean.float().cpu(),
                "shape_std": self.shape_std.float().cpu(), "texture_mean": self.texture_mean.float().cpu(),
                "texture_std": self.texture_std.float().cpu()}

    def save(self, path: str | Path) -> Path:
        """Write atomically (see :func:`facenerf.engine.checkpoint.save_checkpoint`)."""
        from facenerf.engine.checkpoint import save_checkpoint

        return save_checkpoint(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CodeStatistics":
        """Read a file written by :meth:`save`, or the original ``texShpDistribution.npy``.

        FaceNerfError when the file is missing or neither of the two.
        """
        if Path(path).suffix.lower() == ".npy":
            return cls.from_original(path)
        data = _load_tensor_file(path, "code statistics")
        if not isinstance(data, dict) or data.get("format") != STATS_FORMAT:
            raise FaceNerfError(f"{path} is not a facenerf code-statistics file; delete it to recompute "
                                "or pass the right file with --code_stats")
        if int(data.get("version", 0)) > STATS_VERSION:
            raise FaceNerfError(f"{path} has code-statistics version {data['version']}, newer than this "
                                "facenerf understands; upgrade facenerf")
        return cls(data["shape_mean"], data["shape_std"], data["texture_mean"], data["texture_std"],
                   int(data["n_identities"]), int(data.get("step", -1)))

    @classmethod
    def from_original(cls, path: str | Path) -> "CodeStatistics":
        """The original repository's ``configs/texShpDistribution.npy`` (reference §1.11)."""
        from facenerf.fitting.inputs import read_npy_object

        fix = "pass configs/texShpDistribution.npy of the original code or a code_stats.pt"
        record = read_npy_object(path, "code statistics", fix)
        keys = ("shape_mean", "shape_std", "texture_mean", "texture_std")
        if not isinstance(record, dict) or any(k not in record for k in keys):
            raise FaceNerfError(f"{path} does not hold {', '.join(keys)}; {fix}")
        vals = [torch.as_tensor(record[k], dtype=torch.float32).reshape(-1) for k in keys]
        return cls(vals[0], vals[1].clamp_min(1e-6), vals[2], vals[3].clamp_min(1e-6), n_identities=0)

    def check_sizes(self, shape_dim: int, texture_dim: int, where: str) -> None:
        """FaceNerfError unless the code sizes match the model's."""
        if self.shape_mean.numel() != shape_dim or self.texture_mean.numel() != texture_dim:
            raise FaceNerfError(f"code statistics {where} are for codes of size {self.shape_mean.numel()}/"
                                f"{self.texture_mean.numel()} but the model uses {shape_dim}/{texture_dim}; "
                                "delete the file to recompute it for this checkpoint")

    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
               ) -> tuple[Tensor, Tensor]:
        """``n`` random codes ``(shape [n, S], texture [n, T])`` from the Gaussians (std x ``temperature``)."""
        z_s = torch.randn((n, self.shape_mean.numel()), generator=generator)
        z_t = torch.randn((n, self.texture_mean.numel()), generator=generator)
        return (self.shape_mean + temperature * self.shape_std * z_s,
                self.texture_mean + temperature * self.texture_std * z_t)


def _load_tensor_file(path: str | Path, what: str):
    from facenerf.io import load_weights_file

    return load_weights_file(path, f"{what} file", fix="delete it and run again")


def floored_std(values: Tensor) -> Tensor:
    """Per-dimension population std of ``values [N, D]``, floored at 10% of its median (and 1e-6).

    The floor keeps a Gaussian prior finite along dimensions that barely vary over a few
    training identities.
    """
    std = values.std(dim=0, unbiased=False)
    floor = 0.1 * std.median() + 1e-6
    return torch.maximum(std, floor)


@torch.no_grad()
def compute_code_statistics(model, shape_codes: Tensor, uv_maps: Iterable[Tensor], step: int = -1
                            ) -> CodeStatistics:
    """Statistics over the training identities.

    Args:
        model: a MoFaNeRF (its texture encoder turns UV maps into alpha).
        shape_codes: ``[N, S]`` beta of the N training identities.
        uv_maps: N tensors ``[1, 3, s, s]`` in [0, 1] (neutral UV maps at the encoder's size), in
            the same order.
        step: the checkpoint step, stored in the file.
    """
    shape_codes = torch.as_tensor(shape_codes, dtype=torch.float32)
    if shape_codes.dim() != 2 or shape_codes.shape[0] < 2:
        raise FaceNerfError(f"code statistics need at least 2 training identities, got {shape_codes.shape[0]}; "
                            "train on more identities or pass --code_stats")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    textures = torch.cat([model.texture_code(uv.to(device)).float().cpu() for uv in uv_maps])  # [N, T]
    model.train(was_training)
    if textures.shape[0] != shape_codes.shape[0]:
        raise FaceNerfError(f"got {textures.shape[0]} UV maps for {shape_codes.shape[0]} shape codes; "
                            "every training identity needs its neutral UV map")
    return CodeStatistics(shape_codes.mean(0), floored_std(shape_codes), textures.mean(0), floored_std(textures),
                          int(shape_codes.shape[0]), int(step))
