"""A hand-held camera: ``process.py --stabilise`` against no stabilisation, on a synthetic clip.

The clip is the end-to-end benchmark's 300-frame 256² talking head (``data/e2e_gt``, written by
``benchmarks/video_end_to_end.py --regenerate all`` or
``python -m facenerf.tools.talking_head --out data/e2e_gt --frames 300 --size 256 --test_num 30``),
filmed by a still camera. Its frames are shaken as a hand-held camera shakes them: a smooth
turn of up to ``--angle`` degrees about the image centre, ``--zoom`` of zoom and ``--shift``
pixels of shift, each a sum of slow sines (0.2 to 1.5 Hz), none at the first frame. Then:

* ``still``: ``process.py`` on the original clip (what a tripod gives);
* ``shaken``: ``process.py`` on the shaken clip;
* ``stabilised``: ``process.py --stabilise`` on the shaken clip.

Reported for each: the background plate's change across its sample frames (``masks``' measure:
a still camera gives under 0.004) and how far their background corners move (the camera shift
behind the camera-moved note, over 1 px), the head masks' IoU with the true head and the landmarks'
mean error (the truth moved by the shake for ``shaken``, whose frames keep it), the notes, and
(``--train``, on by default) the held-out PSNR of a head trained by ``main_nerf.py`` on each
dataset (``configs/blendshape_tiny.txt --downscale 4``, 6 epochs, the same seed), scored on
its own dataset's held-out frames as ``--test`` scores it. For ``stabilised``, the error of the
maps found against the true shake (pixels, at the frame's corners).

Command (exact):  python benchmarks/video_shake.py
Writes ``benchmarks/results/video_shake_cpu.{json,md}``; datasets and heads go to ``--work``.
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
from facenerf.io import write_text  # noqa: E402


def shakes(n: int, size: int, angle: float, zoom: float, shift: float, seed: int = 0) -> np.ndarray:
    """``[n, 2, 3]`` hand-held shakes (frame of a still camera -> shaken frame), identity at frame 0."""
    import cv2

    rng = np.random.default_rng(seed)
    t = np.arange(n) / 25.0

    def wobble(amplitude: float) -> np.ndarray:
        freqs, phases = rng.uniform(0.2, 1.5, 3), rng.uniform(0, 2 * np.pi, 3)
        value = sum(np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, phases)) / 3.0
        return amplitude * (value - value[0])

    angles, zooms, dx, dy = wobble(angle), 1.0 + wobble(zoom), wobble(shift), wobble(shift)
    out = np.empty((n, 2, 3))
    for i in range(n):
        out[i] = cv2.getRotationMatrix2D((size / 2, size / 2), angles[i], zooms[i])
        out[i, :, 2] += [dx[i], dy[i]]
    return out


def shaken_clip(video: Path, maps: np.ndarray, out: Path) -> Path:
    import cv2
    import imageio.v3 as iio

    from facenerf.io import write_video

    frames = iio.imread(video)
    size = (frames.shape[2], frames.shape[1])
    moved = [cv2.warpAffine(f, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             for f, m in zip(frames, maps)]
    return write_video(out, moved, fps=25)


def run(args: list[str]) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise FaceNerfError(f"{' '.join(args[:2])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def mask_and_landmark_errors(dataset: Path, truth: Path, maps: np.ndarray | None, frames: int = 30) -> dict:
    """Head-mask IoU and landmark error against the truth (moved by ``maps`` when given)."""
    import cv2
    import imageio.v3 as iio

    ids = [f["img_id"] for f in json.loads((dataset / "transforms_all.json").read_text())["frames"]]
    chosen = np.asarray(ids)[np.linspace(0, len(ids) - 1, min(frames, len(ids))).astype(int)]
    true_lms = np.load(truth / "landmarks_2d.npy")
    ious, errors = [], []
    for i in chosen:
        head = iio.imread(truth / "labels" / f"{i}.png") == 1
        lms = true_lms[i]
        if maps is not None:
            size = (head.shape[1], head.shape[0])
            head = cv2.warpAffine(head.astype(np.uint8), maps[i], size, flags=cv2.INTER_NEAREST) > 0
            lms = lms @ maps[i][:, :2].T + maps[i][:, 2]
        ours = iio.imread(dataset / "head_masks" / f"{i}.png") > 127
        ious.append((ours & head).sum() / max((ours | head).sum(), 1))
        errors.append(np.linalg.norm(np.loadtxt(dataset / "ori_imgs" / f"{i}.lms") - lms, axis=1).mean())
    return {"head_iou": round(float(np.mean(ious)), 4), "landmark_error_px": round(float(np.mean(errors)), 3)}


def map_errors(found: np.ndarray, true: np.ndarray, size: int) -> dict:
    """How far the found maps (shaken -> first frame) put the frame's corners from where the true
    shake says they belong (pixels)."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    errors = []
    for shake, back in zip(true, found):
        on_frame = corners @ shake[:, :2].T + shake[:, 2]
        errors.append(np.abs(on_frame @ back[:, :2].T + back[:, 2] - corners).max())
    return {"median_px": round(float(np.median(errors)), 3), "max_px": round(float(np.max(errors)), 3)}


def train_psnr(dataset: Path, workspace: Path) -> float:
    shutil.rmtree(workspace, ignore_errors=True)
    common = [str(dataset), "--workspace", str(workspace), "-c", "configs/blendshape_tiny.txt", "--downscale", "4",
              "--progress", "false"]
    run(["main_nerf.py", *common])
    run(["main_nerf.py", *common, "--test", "--orbit_frames", "4"])
    return round(float(json.loads((workspace / "results" / "metrics.json").read_text())["psnr"]), 3)


def markdown(result: dict, argv: list[str]) -> str:
    rows = []
    for name, r in result["runs"].items():
        rows.append(f"| {name} | {r['plate_change']:.4f} | {r['camera_shift_px']:.3f} | {r['head_iou']:.3f} | "
                    f"{r['landmark_error_px']:.2f} | "
                    f"{r.get('heldout_psnr', float('nan')):.2f} | {'; '.join(r['notes']) or '-'} |")
    maps = result["runs"]["stabilised"]["map_error"]
    return "\n".join([
        f"# Hand-held shake: `process.py --stabilise` against none, {result['device']}", "",
        f"`python benchmarks/video_shake.py {' '.join(argv)}`", "",
        f"The {result['frames']}-frame {result['size']}² synthetic talking head `{result['clip']}` shaken by up to "
        f"{result['angle']}° of turn, {100 * result['zoom']:.0f}% of zoom and {result['shift']} px of shift (the "
        f"largest corner displacement is {result['largest_shake_px']:.1f} px). Heads: "
        "`configs/blendshape_tiny.txt --downscale 4`, 6 epochs, the same seed, scored on their own dataset's "
        "held-out frames.", "",
        "| dataset | plate change | camera shift (px) | head-mask IoU | landmark error (px) | held-out PSNR (dB) | notes |",
        "|---|---:|---:|---:|---:|---:|---|", *rows, "",
        f"Stabilisation maps against the true shake, at the frame's corners: median {maps['median_px']} px, "
        f"largest {maps['max_px']} px.", ""])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="benchmarks/video_shake.py", description=__doc__.splitlines()[0])
    parser.add_argument("--gt", default=str(ROOT / "data" / "e2e_gt"))
    parser.add_argument("--angle", type=float, default=1.0)
    parser.add_argument("--zoom", type=float, default=0.01)
    parser.add_argument("--shift", type=float, default=6.0)
    parser.add_argument("--train", type=lambda v: v.lower() in ("1", "true", "yes"), default=True)
    parser.add_argument("--work", default=str(ROOT / "data" / "video_shake"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    gt, work = Path(args.gt), Path(args.work)
    video = gt / f"{gt.name}.mp4"
    if not video.is_file() or not (gt / "ground_truth" / "landmarks_2d.npy").is_file():
        raise FaceNerfError(f"{gt} holds no talking-head clip with its ground truth; make it with "
                            "python benchmarks/video_end_to_end.py --regenerate all")
    from facenerf.runtime import cpu_model

    info = json.loads((gt / "ground_truth" / "info.json").read_text())
    n_frames, size = int(info["frames"]), int(info["size"])
    maps = shakes(n_frames, size, args.angle, args.zoom, args.shift)
    shaky = shaken_clip(video, maps, work / "vids" / "shaky.mp4")
    runs = {"still": (video, [], None), "shaken": (shaky, [], maps), "stabilised": (shaky, ["--stabilise", "true"], None)}
    result = {"device": f"{cpu_model()} ({os.cpu_count()} cores)", "clip": str(video), "frames": n_frames,
              "size": size, "angle": args.angle, "zoom": args.zoom, "shift": args.shift,
              "largest_shake_px": round(float(np.abs(np.einsum("nij,cj->nci", maps, np.array(
                  [[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], float)) - np.array(
                  [[0, 0], [size, 0], [0, size], [size, size]], float)).max()), 2), "runs": {}}
    for name, (clip, flags, truth_maps) in runs.items():
        data = work / name
        shutil.rmtree(data, ignore_errors=True)
        run(["data_utils/process.py", str(clip), "--out", str(data), "--test_num", "30", "--preview", "false",
             "--progress", "false", *flags])
        report = json.loads((data / "report.json").read_text())
        with np.load(data / "track" / "plate.npz") as plate:
            entry = {"plate_change": round(float(plate["change"]), 5),
                     "camera_shift_px": round(float(plate["camera_shift"]), 3), "notes": report["notes"],
                     **mask_and_landmark_errors(data, gt / "ground_truth", truth_maps)}
        if name == "stabilised":
            held = json.loads((data / "track" / "frames.json").read_text())["stabilised"]
            entry["map_error"] = map_errors(np.asarray(held["transforms"]), maps, size)
        if args.train:
            entry["heldout_psnr"] = train_psnr(data, work / f"head_{name}")
        result["runs"][name] = entry
    out = Path(args.out)
    write_text(out / "video_shake_cpu.json", json.dumps(result, indent=1) + "\n")
    write_text(out / "video_shake_cpu.md", markdown(result, argv))
    print(markdown(result, argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
