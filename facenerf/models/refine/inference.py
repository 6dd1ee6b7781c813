"""Refining folders of renders with a trained RefineNet generator.

Output location: the images of ``<folder>`` are written to the sibling folder
``<folder>_refined`` (``renders/`` and ``renders`` both give ``renders_refined/``), one PNG per
input with the same stem. The input folder is never written to.

Weights: the newest facenerf checkpoint of ``<checkpoints_dir>/<name>/checkpoints``, or the
original code's pix2pixHD generator file ``<checkpoints_dir>/<name>/<which_epoch>_net_G.pth``
(a plain state dict, e.g. the released ``logs/refine/facescape/latest_net_G.pth``) when the run
has no facenerf checkpoint or ``--which_epoch`` names an epoch (:func:`resolve_generator`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from facenerf.config import option
from facenerf.engine.checkpoint import CheckpointManager, check_compatible, load_checkpoint
from facenerf.engine.trainer import CHECKPOINT_DIR
from facenerf.errors import FaceNerfError, OutputError
from facenerf.io import list_images, read_image, resize_image, write_image
from facenerf.models.refine.model import MODEL_NAME, RefineModel, generator_from_config, generator_state
from facenerf.models.refine.training import RefineLocation, RefineRunConfig

REFINED_SUFFIX = "_refined"


def refined_folder_for(nerf_folder: str | Path) -> Path:
    """``<nerf_folder>_refined`` beside ``nerf_folder``, independent of a trailing slash."""
    folder = Path(nerf_folder)
    if folder.name in ("", ".", ".."):
        folder = folder.resolve()
    return folder.with_name(folder.name + REFINED_SUFFIX)


def find_checkpoint(checkpoints_dir: str | Path, name: str, checkpoint: str | Path | None = None) -> Path:
    """``checkpoint`` if given, else the newest ``<checkpoints_dir>/<name>/checkpoints/step_*.pt``."""
    if checkpoint:
        return Path(checkpoint)
    folder = Path(checkpoints_dir) / name / CHECKPOINT_DIR
    latest = CheckpointManager(folder).latest()
    if latest is None:
        raise FaceNerfError(f"no RefineNet checkpoint in {folder}: train one with trainingDataPreprocess/train.py "
                            f"--name {name}, or pass --checkpoint PATH")
    return latest


@dataclass(frozen=True)
class RefineTestSettings:
    """What ``trainingDataPreprocess/test.py`` refines, with which run's generator, into where."""

    nerf_folder: str = option(help="folder of renders to refine")
    location: RefineLocation = field(default_factory=RefineLocation)
    checkpoint: str = option("", "explicit checkpoint file; empty = the newest of the run")
    out_folder: str = option("", "output folder; empty = <nerf_folder>_refined")
    load_size: int = option(0, "network input size; 0 = the training load_size", aliases=("loadSize",))
    how_many: int = option(0, "refine at most this many images (in name order); 0 = all")

    def __post_init__(self) -> None:
        if self.load_size < 0:
            raise FaceNerfError(f"--load_size must be >= 0 (got {self.load_size})")
        if self.how_many < 0:
            raise FaceNerfError(f"--how_many must be >= 0 (got {self.how_many})")


ORIGINAL_SIZE = 512   # the original RefineNet's loadSize


def original_generator_file(checkpoints_dir: str | Path, name: str, epoch: str = "latest") -> Path:
    """Where pix2pixHD keeps a generator: ``<checkpoints_dir>/<name>/<epoch>_net_G.pth``."""
    return Path(checkpoints_dir) / name / f"{epoch}_net_G.pth"


def load_original_generator(path: str | Path, device: torch.device) -> nn.Module:
    """The original code's pix2pixHD global generator (a plain state dict; sizes read from its shapes)."""
    from facenerf.io import load_weights_file
    from facenerf.models.refine.networks import GlobalGenerator

    fix = "pass the original latest_net_G.pth, or train with trainingDataPreprocess/train.py"
    state = load_weights_file(path, "pix2pixHD generator weights", fix=fix)
    if not isinstance(state, dict):
        raise FaceNerfError(f"{path} holds no state dict; {fix}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    blocks = sorted({int(k.split(".")[1]) for k in state if ".conv_block." in k})
    first = state.get("model.1.weight")
    if first is None or not blocks or (blocks[0] - 4) % 3:
        raise FaceNerfError(f"{path} is not a pix2pixHD global generator (no model.1 / residual blocks); {fix}")
    generator = GlobalGenerator(3, 3, int(first.shape[0]), (blocks[0] - 4) // 3, len(blocks), residual=False)
    check_compatible(generator, state, str(path))
    generator.load_state_dict(state)
    return generator.to(device).eval()


def resolve_generator(settings: RefineTestSettings, epoch: str, device: torch.device
                      ) -> tuple[nn.Module, int, Path]:
    """The generator to refine with, its input size and the file it came from.

    ``--checkpoint`` if given; else, for ``epoch`` "latest", the newest facenerf checkpoint of the
    run, or the original's ``latest_net_G.pth`` when the run has none; for a numbered ``epoch``
    the original's ``<epoch>_net_G.pth``.
    """
    where = settings.location
    original = original_generator_file(where.checkpoints_dir, where.name, epoch)
    ours = CheckpointManager(Path(where.checkpoints_dir) / where.name / CHECKPOINT_DIR).latest()
    if not settings.checkpoint and (epoch != "latest" or ours is None) and original.is_file():
        return load_original_generator(original, device), settings.load_size or ORIGINAL_SIZE, original
    if epoch != "latest" and not settings.checkpoint:
        raise FaceNerfError(f"--which_epoch {epoch}: no {original}; facenerf checkpoints are kept by step, pass "
                            f"--checkpoint {Path(where.checkpoints_dir) / where.name / CHECKPOINT_DIR}/step_*.pt")
    checkpoint = find_checkpoint(where.checkpoints_dir, where.name, settings.checkpoint or None)
    generator, run = load_refine_generator(checkpoint, device)
    return generator, settings.load_size or run.train.load_size, checkpoint


def _refine_payload(path: str | Path) -> dict:
    payload = load_checkpoint(path, map_location="cpu")
    if payload["model"] != MODEL_NAME:
        raise FaceNerfError(f"{path} holds a '{payload['model']}' model, not a RefineNet; "
                            "pass a checkpoint written by trainingDataPreprocess/train.py")
    return payload


def load_refine(path: str | Path) -> tuple[RefineModel, dict]:
    """The whole trained :class:`RefineModel` (CPU) and ``{"step", "run": RefineRunConfig}``."""
    payload = _refine_payload(path)
    run = RefineRunConfig.from_checkpoint(payload["config"], str(path))
    model = RefineModel(replace(run.net, vgg_weights=None))  # the perceptual loss is for training only
    check_compatible(model, payload["model_state"], str(path))
    model.load_state_dict(payload["model_state"])
    return model, {"format": "facenerf", "step": int(payload["step"]), "run": run}


def load_refine_generator(path: str | Path, device: torch.device) -> tuple[nn.Module, RefineRunConfig]:
    """The trained generator (eval mode, on ``device``) and the run config stored in the checkpoint."""
    payload = _refine_payload(path)
    run = RefineRunConfig.from_checkpoint(payload["config"], str(path))
    generator = generator_from_config(run.net)
    state = generator_state(payload["model_state"])
    check_compatible(generator, state, str(path))
    generator.load_state_dict(state)
    return generator.to(device).eval(), run


@torch.no_grad()
def refine_image(generator: nn.Module, image: np.ndarray, size: int | None, device: torch.device,
                 restore_size: bool = True) -> np.ndarray:
    """Refine ``[H, W, 3]`` float [0, 1]: resize to ``size x size`` (None: keep), run G, resize back
    (``restore_size=False`` keeps the network's size, as the original run_refine.py)."""
    height, width = image.shape[:2]
    net_input = resize_image(image, (size, size)) if size else image
    x = torch.from_numpy(np.ascontiguousarray(net_input.transpose(2, 0, 1))).float()[None].to(device)
    y = ((generator(x * 2.0 - 1.0) + 1.0) * 0.5).clamp(0, 1)  # [1, 3, size, size]
    out = y[0].permute(1, 2, 0).cpu().numpy()
    if restore_size and out.shape[:2] != (height, width):
        return resize_image(out, (width, height))
    return out


@dataclass
class RefineSummary:
    out_folder: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"refined {len(self.written)} images into {self.out_folder}; skipped {len(self.skipped)}"


def _output_names(paths: list[Path]) -> dict[Path, str]:
    """``stem.png`` per input, or ``name.png`` (suffix kept) where two inputs share a stem."""
    stems = [p.stem for p in paths]
    return {p: (p.stem if stems.count(p.stem) == 1 else p.name) + ".png" for p in paths}


def refine_folder(generator: nn.Module, nerf_folder: str | Path, size: int | None, device: torch.device,
                  out_folder: str | Path | None = None, progress: bool = True,
                  report: Callable[[str], None] = print, how_many: int = 0,
                  restore_size: bool = True) -> RefineSummary:
    """Refine every image directly inside ``nerf_folder`` (the first ``how_many`` in name order when
    ``how_many > 0``) into ``out_folder`` (default: sibling ``_refined``).

    Unreadable images are reported and skipped; the rest are written.
    """
    from tqdm import tqdm

    source = Path(nerf_folder)
    paths = list_images(source)
    if not paths:
        raise FaceNerfError(f"no images (.png/.jpg) in {source}: pass the folder holding the renders")
    if how_many > 0:
        paths = sorted(paths)[:how_many]
    out = Path(out_folder) if out_folder else refined_folder_for(source)
    if out.resolve() == source.resolve():
        raise FaceNerfError(f"output folder {out} is the input folder; choose another --out_folder")
    result = RefineSummary(out)
    names = _output_names(paths)
    for path in tqdm(paths, desc="refine", disable=None if progress else True, dynamic_ncols=True):
        try:
            refined = refine_image(generator, read_image(path), size, device, restore_size)
            result.written.append(write_image(out / names[path], refined))
        except OutputError:
            raise   # full disk, read-only folder: every further image would fail the same way
        except FaceNerfError as err:
            result.skipped.append((path, str(err)))
            report(f"skipping {path}: {err}")
    return result
