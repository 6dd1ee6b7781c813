"""Tall hair: the scene box grown to the head masks' outline against the procedural head's box.

``data_utils/process.py`` writes the head box (``aabb``) from which ``main_nerf.py`` sizes its
scene cube. The box is the procedural head's, grown to the outline the head masks show in the
head's coronal plane. This script shows what the growth is for, on a portrait made outside the
project:

1. the portrait's hair (its top ``--hair_rows`` rows) is stretched ``--hair_stretch`` times in
   height, a plain wall is put above it, and the picture sways gently for ``--frames`` frames
   (a clip of a person with tall hair);
2. ``process.py`` turns the clip into a dataset (the box grows, with a note);
3. two heads train with ``configs/blendshape_tiny.txt`` at ``--downscale``, the same seed and
   steps: one in the grown box's cube (the default), one in the procedural box's cube
   (``--bound`` = 1.1 x its largest coordinate, the cube every clip got before);
4. ``main_nerf.py --test`` scores both on the held-out frames.

Command (exact), with the StyleGAN portraits of the shared data (any frontal portrait works):

    python benchmarks/hair_box.py --portrait ../shared/data/faces/2.png

Writes ``benchmarks/results/hair_box_cpu.{json,md}`` (``--out``) and, in ``--work`` with the
workspaces, ``hair_box.png``: a held-out frame, truth beside render, for each cube (it shows
the portrait, so it stays with the portrait's licence, out of the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facenerf.errors import FaceNerfError, run_cli  # noqa: E402
from facenerf.io import write_image, write_text  # noqa: E402

WIDTH = 320  # clip width in pixels (the height follows the portrait)


def tall_hair_clip(portrait: Path, out: Path, frames: int, hair_rows: float, stretch: float) -> Path:
    """An MP4 of ``portrait`` with its top ``hair_rows`` (fraction of the height) stretched
    ``stretch`` times, a wall above, swaying by a few pixels."""
    import cv2

    from facenerf.io import read_image, write_video

    image = (read_image(portrait) * 255).round().astype(np.uint8)  # [H, W, 3]
    size = image.shape[1]
    cut = int(hair_rows * image.shape[0])
    hair = cv2.resize(image[:cut], (size, int(cut * stretch)), interpolation=cv2.INTER_CUBIC)
    wall = np.empty((size // 6, size, 3), np.uint8)
    wall[:] = np.median(image[: size // 25, -size // 5:].reshape(-1, 3), axis=0)
    tall = np.concatenate([wall, hair, image[cut:]], axis=0)
    height = int(tall.shape[0] * WIDTH / size) // 16 * 16
    tall = cv2.resize(tall, (WIDTH, height), interpolation=cv2.INTER_AREA)
    clip = []
    for i in range(frames):
        s = 1.0 + 0.01 * np.sin(2 * np.pi * i / 60)
        dx, dy = 4 * np.sin(2 * np.pi * i / 45), 2 * np.sin(2 * np.pi * i / 30)
        warp = np.float32([[s, 0, dx + (1 - s) * WIDTH / 2], [0, s, dy + (1 - s) * height / 2]])
        clip.append(cv2.warpAffine(tall, warp, (WIDTH, height), borderMode=cv2.BORDER_REPLICATE))
    return write_video(out, np.stack(clip), fps=25)


def run(args: list[str]) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise FaceNerfError(f"{' '.join(args[:2])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def train_and_test(data: Path, workspace: Path, downscale: int, epochs: int, bound: float | None) -> dict:
    shutil.rmtree(workspace, ignore_errors=True)
    common = [str(data), "--workspace", str(workspace), "-c", "configs/blendshape_tiny.txt", "--downscale",
              str(downscale), "--progress", "false"] + (["--bound", f"{bound:.4f}"] if bound else [])
    run(["main_nerf.py", *common, "--train_epoch", str(epochs)])
    run(["main_nerf.py", *common, "--test", "--orbit_frames", "4"])
    return json.loads((workspace / "results" / "metrics.json").read_text())


def comparison(workspaces: list[Path], frame: int) -> np.ndarray:
    """One held-out frame, truth | render, per workspace, stacked."""
    import imageio.v3 as iio

    return np.concatenate([iio.imread(w / "results" / "reenact_vs_gt.mp4")[frame] for w in workspaces], axis=0)


def markdown(result: dict, argv: list[str]) -> str:
    rows = [f"| {name} | {r['bound']:.3f} ({r['bound'] * 50:.0f} mm) | {r['psnr']:.2f} | {r['ssim']:.3f} | "
            f"{r['head_psnr']:.2f} |" for name, r in result["heads"].items()]
    box = result["box"]
    return "\n".join([
        f"# Tall hair: the scene box grown to the head masks against the procedural head's box, {result['device']}",
        "",
        f"`python benchmarks/hair_box.py {' '.join(argv)}`", "",
        f"A {result['frames']}-frame clip of `{result['portrait']}` with its hair stretched {result['stretch']}x "
        f"in height. `process.py` grew the head box's top from {box['procedural_top']:.3f} to "
        f"{box['grown_top']:.3f} scene units ({box['procedural_top'] * 50:.0f} to {box['grown_top'] * 50:.0f} mm "
        "above the head origin). Both heads: `configs/blendshape_tiny.txt`, "
        f"`--downscale {result['downscale']}`, `--train_epoch {result['epochs']}`, the same seed; scored by "
        f"`main_nerf.py --test` on {result['held_out']} held-out frames (mean-image baseline "
        f"{result['baseline_psnr']:.2f} dB, {result['baseline_head_psnr']:.2f} dB inside the head mask).", "",
        "| scene cube | half-side, scene units | held-out PSNR (dB) | SSIM | head-mask PSNR (dB) |",
        "|---|---:|---:|---:|---:|", *rows, "",
        f"`{result['picture']}` (not committed: it shows the portrait): a held-out frame, truth | render; top: "
        "the procedural box's cube, the hair cut flat at its top; bottom: the grown box's.", ""])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="benchmarks/hair_box.py", description=__doc__.splitlines()[0])
    parser.add_argument("--portrait", required=True, help="a frontal portrait photo")
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--hair_rows", type=float, default=0.29, help="top fraction of the portrait holding the hair")
    parser.add_argument("--hair_stretch", type=float, default=2.0)
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--work", default=str(ROOT / "data" / "hair_box"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    portrait, work = Path(args.portrait), Path(args.work)
    if not portrait.is_file():
        raise FaceNerfError(f"--portrait not found: {portrait} (give a frontal portrait photo)")
    from facenerf.preprocess.video.tracking import head_box

    video = tall_hair_clip(portrait, work / "vids" / "tall_hair.mp4", args.frames, args.hair_rows, args.hair_stretch)
    data = work / "tall_hair"
    shutil.rmtree(data, ignore_errors=True)
    run(["data_utils/process.py", str(video), "--out", str(data), "--preview", "false", "--progress", "false"])
    grown = np.array(json.loads((data / "transforms_all.json").read_text())["aabb"])
    procedural = head_box()
    cubes = {"procedural head's box": 1.1 * float(np.abs(procedural).max()),
             "grown to the head masks (default)": 1.1 * float(np.abs(grown).max())}
    heads, spaces = {}, []
    for i, (name, bound) in enumerate(cubes.items()):
        spaces.append(work / f"head_{i}")
        metrics = train_and_test(data, spaces[-1], args.downscale, args.epochs, bound if i == 0 else None)
        heads[name] = {"bound": bound, **{k: metrics[k] for k in ("psnr", "ssim", "head_psnr")}}
    from facenerf.runtime import cpu_model

    result = {"device": f"{cpu_model()} ({os.cpu_count()} cores)", "portrait": str(portrait), "frames": args.frames, "stretch": args.hair_stretch,
              "downscale": args.downscale, "epochs": args.epochs, "held_out": metrics["n_frames"],
              "baseline_psnr": metrics["baseline_psnr"], "baseline_head_psnr": metrics["baseline_head_psnr"],
              "picture": str(work / "hair_box.png"), "box": {"procedural_top": float(procedural[4]), "grown_top": float(grown[4]),
                      "grown": grown.tolist()}, "heads": heads}
    out = Path(args.out)
    write_text(out / "hair_box_cpu.json", json.dumps(result, indent=1) + "\n")
    write_text(out / "hair_box_cpu.md", markdown(result, argv))
    write_image(work / "hair_box.png", comparison(spaces, frame=2) / 255.0)
    print(markdown(result, argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
