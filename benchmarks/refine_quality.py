"""Acceptance run for the RefineNet: does a short CPU training run improve held-out renders?

Synthetic degraded-vs-sharp pairs (Gaussian blur, 2x down/up-sampling, noise; see
``facenerf.data.synthetic.degraded_pairs.Degradation``) stand in for (coarse NeRF render, ground truth). Training
sources: procedural textures and the colour photos shipped with scikit-image (a dev
dependency) except ``astronaut``; held out: crops of ``astronaut`` (a face) and unseen
procedural textures. Training goes through the same ``train_refine`` + shared Trainer as
``trainingDataPreprocess/train.py``. Reported: PSNR/SSIM of the degraded input, of an
unsharp-mask baseline and of the refined output against the sharp image, on the held-out pairs.

Usage:  .venv/bin/python benchmarks/refine_quality.py [--steps 2000] [--threads 1]
Writes benchmarks/results/refine_quality_<device>.json and docs/refine_before_after.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facenerf.data.pair_batches import PairDataset  # noqa: E402
from facenerf.data.pairs import scan_pairs, write_pairs  # noqa: E402
from facenerf.data.synthetic.degraded_pairs import Degradation, degraded_pair_items, procedural_image  # noqa: E402
from facenerf.engine.checkpoint import CheckpointManager, load_checkpoint  # noqa: E402
from facenerf.io import write_image, write_text  # noqa: E402
from facenerf.metrics import psnr, ssim  # noqa: E402
from facenerf.models.refine.model import RefineConfig, RefineModel  # noqa: E402
from facenerf.models.refine.training import (PairEvaluator, RefineLocation, RefineRunConfig,  # noqa: E402
                                             RefineTrainSettings, train_refine)
from facenerf.runtime import RunSettings  # noqa: E402

TRAIN_PHOTOS = ("chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "colorwheel")
NET = RefineConfig(ngf=16, n_downsample_global=2, n_blocks_global=3, ndf=16, lr=5e-4)  # configs/refine_tiny.txt


def photo_sources(names) -> list[tuple[str, np.ndarray]]:
    """scikit-image sample photos as float ``[H, W, 3]``; an empty list without scikit-image."""
    try:
        import skimage.data
    except ImportError:
        print("scikit-image not installed: procedural sources only")
        return []
    return [(name, getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255.0) for name in names]


def make_datasets(root: Path, size: int, seed: int, spec: Degradation) -> None:
    """``root/train`` and ``root/heldout``, each with train_A (degraded) / train_B (sharp)."""
    rng = np.random.default_rng(seed)
    train = photo_sources(TRAIN_PHOTOS) + [(f"proc{i:04d}", procedural_image(2 * size, rng)) for i in range(150)]
    heldout = photo_sources(["astronaut"]) + [(f"heldproc{i:02d}", procedural_image(2 * size, rng)) for i in range(8)]
    crops = {name: (40 if not name.startswith(("proc", "heldproc")) else 2) for name, _ in train + heldout}
    for subset, sources in (("train", train), ("heldout", heldout)):
        items = (item for name, image in sources
                 for item in degraded_pair_items([(name, image)], size, crops[name], rng, spec))
        print(write_pairs(root / subset, items).summary())


def unsharp(images: torch.Tensor, amount: float = 1.0, sigma: float = 1.0) -> torch.Tensor:
    """Unsharp masking ``x + amount * (x - blur(x))`` of ``[N, 3, H, W]`` in [0, 1] (a non-learned baseline)."""
    import cv2

    out = []
    for image in images.permute(0, 2, 3, 1).numpy():
        blurred = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        out.append(np.clip(image + amount * (image - blurred), 0, 1))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def figure(renders, refined, targets, indices, path: Path, zoom: int = 3) -> None:
    """Rows of [degraded | refined | sharp] for ``indices``, enlarged ``zoom`` times (nearest)."""
    import cv2

    rows = []
    for i in indices:
        tiles = [t[i].permute(1, 2, 0).clamp(0, 1).numpy() for t in (renders, refined, targets)]
        tiles = [cv2.resize(t, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST) for t in tiles]
        gap = np.ones((tiles[0].shape[0], 4, 3), np.float32)
        rows.append(np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1))
    header = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    width = (rows[0].shape[1] - 8) // 3
    for k, label in enumerate(("degraded input", "refined", "ground truth")):
        cv2.putText(header, label, (k * (width + 4) + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    spacer = np.ones((4, rows[0].shape[1], 3), np.float32)
    body = [r for row in rows for r in (row, spacer)][:-1]
    write_image(path, np.concatenate([header.astype(np.float32) / 255.0] + body, axis=0))


def evaluate(run_dir: Path, heldout_root: Path, size: int, figure_path: Path) -> dict:
    """Metrics of input / unsharp / refined on the held-out pairs, and the before/after figure."""
    scan = scan_pairs(heldout_root / "train_A", heldout_root / "train_B")
    evaluator = PairEvaluator(PairDataset(scan.pairs, (size, size)))
    payload = load_checkpoint(CheckpointManager(run_dir / "checkpoints").latest())
    model = RefineModel(RefineRunConfig.from_checkpoint(payload["config"]).net)
    model.load_state_dict(payload["model_state"])
    refined = evaluator.refine_all(model.eval())
    renders, targets = evaluator.renders, evaluator.targets
    sharpened = unsharp(renders)
    faces = [i for i, p in enumerate(scan.pairs) if p.group == "astronaut"]
    result = {"n_heldout": len(scan.pairs), "n_heldout_face": len(faces)}
    for label, images in (("input", renders), ("unsharp", sharpened), ("refined", refined)):
        result[f"psnr_{label}"] = float(psnr(images, targets))
        result[f"ssim_{label}"] = float(ssim(images, targets))
        if faces:
            result[f"face_psnr_{label}"] = float(psnr(images[faces], targets[faces]))
            result[f"face_ssim_{label}"] = float(ssim(images[faces], targets[faces]))
    shown = (faces[:4] if faces else []) + [i for i in range(len(scan.pairs)) if i not in faces][:2]
    figure(renders, refined, targets, shown, figure_path)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--work", default="outputs/refine_quality", help="scratch folder for pairs and the run")
    parser.add_argument("--figure", default=str(ROOT / "docs" / "refine_before_after.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work)
    spec = Degradation()
    if not (work / "heldout" / "train_A").is_dir():
        make_datasets(work, args.size, 0, spec)
    run_dir = work / "run"
    settings = RefineTrainSettings(location=RefineLocation(name=run_dir.name, checkpoints_dir=str(run_dir.parent)),
                                   dataroot=str(work / "train"), load_size=args.size, batch_size=4,
                                   max_steps=args.steps, cache=True, val_fraction=0.0, log_every=100,
                                   save_every=500, eval_every=0)
    start = time.perf_counter()
    train_refine(RefineRunConfig(NET, settings, RunSettings(device="cpu")), torch.device("cpu"))
    seconds = time.perf_counter() - start
    result = evaluate(run_dir, work / "heldout", args.size, Path(args.figure))
    result.update(steps=args.steps, batch_size=4, size=args.size, train_seconds=round(seconds, 1),
                  degradation=asdict(spec), network=NET.to_dict(),
                  device="cpu", cpu=platform.processor() or platform.machine(), threads=args.threads,
                  torch=torch.__version__, load_average_1min=os.getloadavg()[0])
    out = ROOT / "benchmarks" / "results" / "refine_quality_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("network", "degradation")}, indent=2))
    print(f"wrote {out} and {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
