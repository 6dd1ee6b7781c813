"""RefineNet training pairs from a trained MoFaNeRF: its render of a training view next to the
ground-truth image (reference §8, ``render_refine_trainSet.py`` + ``prepare_refineNet_trainSet.py``).

For every training identity, ``n_expressions`` of its expressions and ``n_views`` of their
training views are drawn (seeded, without replacement). Each view is rendered with the
identity's true codes (beta from the shape-code file, alpha from the texture encoder on its
UV map, the learned expression code) at ``render_scale`` times the image size - the "coarse
synthesis" - and upsampled (bicubic) to the ground truth's size. Pairs are written with
:func:`facenerf.data.pairs.write_pairs` as ``{out}/train_A/{id}/{expression}/{N}.png`` (render)
and ``{out}/train_B/...`` (ground truth), ``N = 0 .. n_views - 1``; ``{out}/pairs_index.txt``
lists the source image of each pair. A view whose image cannot be read is reported and
skipped; the rest are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from facenerf.config import option
from facenerf.data.pairs import WriteSummary, write_pairs
from facenerf.errors import FaceNerfError
from facenerf.io import read_image, resize_image, write_text


@dataclass(frozen=True)
class PairPlan:
    """How many pairs per identity and at what render size."""

    n_expressions: int = option(10, "expressions drawn per identity", key="pair_expressions")
    n_views: int = option(8, "training views drawn per expression", key="pair_views")
    render_scale: float = option(0.5, "render size as a fraction of the image size")

    def __post_init__(self) -> None:
        if self.n_expressions < 1 or self.n_views < 1 or not 0 < self.render_scale <= 1:
            raise FaceNerfError("--pair_expressions and --pair_views must be positive and --render_scale in (0, 1]")


def choose_frames(frames, identity: int, plan: PairPlan, rng: np.random.Generator) -> list[tuple[int, list[int]]]:
    """``[(expression, [frame indices])]`` drawn for one identity (training frames only)."""
    held = frames.is_test if frames.is_val is None else frames.is_test | frames.is_val
    mine = np.flatnonzero((frames.identity == identity) & ~held)
    expressions = np.unique(frames.expression[mine])
    chosen = rng.choice(expressions, size=min(plan.n_expressions, len(expressions)), replace=False)
    out = []
    for expression in sorted(int(e) for e in chosen):
        pool = mine[frames.expression[mine] == expression]
        picks = rng.choice(pool, size=min(plan.n_views, len(pool)), replace=False)
        out.append((expression, [int(p) for p in picks]))
    return out


@torch.no_grad()
def render_training_view(model, data, frame: int, scale: float) -> torch.Tensor:
    """MoFaNeRF render ``[h, w, 3]`` (CPU) of training ``frame`` with its identity's true codes."""
    device = next(model.parameters()).device
    rays, K = data.frame_rays(frame, scale)
    person = int(data.frames.identity[frame])
    shape = torch.as_tensor(np.asarray(data.identities[person].shape_code, np.float32), device=device)
    codes = model.face_codes(shape, expression_index=int(data.frames.expression[frame]),
                             uv=data.uv(person).to(device))
    return model.render_image(rays.to(device), codes, K.height, K.width)["rgb"].float().clamp(0, 1).cpu()


def pair_items(model, data, plan: PairPlan, names: Callable[[int], str], report: Callable[[str], None],
               index: list[str], seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(relative path, render, ground truth)`` for every chosen view (drawn with ``seed``);
    unreadable views are reported."""
    rng = np.random.default_rng(seed)
    for person in range(len(data.identities)):
        pid = data.identities[person].identity
        for expression, frames in choose_frames(data.frames, person, plan, rng):
            for n, frame in enumerate(frames):
                rel = f"{pid}/{names(expression)}/{n}"
                try:
                    truth = read_image(data.frames.image_paths[frame])
                except FaceNerfError as err:
                    report(f"skipping pair {rel}: {err}")
                    continue
                render = render_training_view(model, data, frame, plan.render_scale * truth.shape[1] / data.K.width)
                upsampled = resize_image(render.numpy(), (truth.shape[1], truth.shape[0]))
                index.append(f"{rel}.png {data.frames.image_paths[frame]}")
                yield rel, upsampled, truth


def make_refine_pairs(model, data, out_root: str | Path, plan: PairPlan, names: Callable[[int], str],
                      report: Callable[[str], None] = print, progress: bool = True, seed: int = 0) -> WriteSummary:
    """Render and write the pairs (see the module docstring); returns write_pairs' summary."""
    from tqdm.auto import tqdm

    model.eval()
    index: list[str] = []
    items = tqdm(pair_items(model, data, plan, names, report, index, seed), desc="pairs", unit="pair",
                 disable=None if progress else True)
    summary = write_pairs(out_root, items, report=report)
    header = "# pair -> ground-truth source image\n"
    write_text(Path(out_root) / "pairs_index.txt", header + "\n".join(index) + "\n", "pair index")
    return summary
