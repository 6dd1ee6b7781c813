"""End to end: a NeRFBlendShape head trained on ``data_utils/process.py``'s output vs on the ground truth.

Inputs (git-ignored; ``--regenerate all`` writes both, ``--regenerate process`` only ours):

* the ground-truth dataset ``--gt`` (default ``data/e2e_gt``), a synthetic talking head
  rendered with its true poses, focal length, coefficients and masks:
  ``python -m facenerf.tools.talking_head --out data/e2e_gt --frames 300 --size 256 --test_num 30``;
* our dataset ``--proc`` (default ``data/e2e_proc``), made from that clip's MP4 alone:
  ``python data_utils/process.py data/e2e_gt/e2e_gt.mp4 --out data/e2e_proc --test_num 30``.

Every head is trained from scratch by ``main_nerf.py``'s own functions, with the same config
(``configs/blendshape_tiny.txt``), ``--downscale`` (4: 64 x 64), seed and number of steps
(6 epochs of the 270 training frames). It is scored on the 30 held-out frames (the clip's
last second, never trained on), matched between the datasets by ``img_id``.

Protocol. The two datasets' targets differ. Each head image (``head_imgs``) is the frame's
head over the background plate, cut out by that dataset's own head mask, and ours also went
through the MP4's compression. So every head is scored twice:

1. **own target**: what ``main_nerf.py --test`` reports, its held-out renders against its own
   dataset's held-out head images (PSNR and SSIM over the image, PSNR inside its own mask);
2. **common target**: the ground truth's held-out head images (true head over the true
   background, straight from the renderer). Each head renders the held-out frame with its
   own tracked pose and coefficients. The render's head layer (``rgb - (1 - opacity) bg``) is
   put over the true background, so a head is charged only for what it draws, not for its
   dataset's background plate. Scores: PSNR and SSIM over the image; PSNR inside the true head
   mask (*head*: the background does not count, and any part of the true head a model leaves
   out does); PSNR inside both the true and the model's own head mask (*both*: appearance
   where the two datasets agree that there is head, so a different head/neck boundary does not
   count). For the ground-truth head the common target is its own target, a check of the
   protocol.

The baseline is the ground truth's mean training image, scored in the same way.

Diagnosis (``--ablations``, on by default): five more heads, each trained on the ground-truth
dataset with one thing taken from ours, scored on the common target. The things are our
poses and focal length (``transforms_*.json``), our expression coefficients (``expr*.npy``),
our images, masks and background plate (``head_imgs/``, ``head_masks/``, ``parsing/``,
``bc.jpg``), the poses our tracker finds from our landmarks at the *true* focal length, and
the poses it finds from the *true* landmarks (the tracker without the landmark detector's
errors). The drop each causes says where the end-to-end gap comes from. ``--repeat`` (on by
default) trains the two main heads again with another seed, for the spread between runs.
The tracking is also compared with the truth (:func:`facenerf.preprocess.video.evaluate.compare`),
including the rotation error left after removing the one constant rotation between the two
head frames, which a NeRF cannot see.

Usage:  .venv/bin/python benchmarks/video_end_to_end.py [--regenerate {process,all}] [--no-ablations]
Writes benchmarks/results/video_end_to_end_cpu.json and .md; workspaces go to --work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from video_process import device_name  # noqa: E402  (benchmarks/ is the script's folder)

HYBRIDS = {  # component of our dataset -> the entries copied over the ground truth's
    "poses": ("transforms_all.json", "transforms_train.json", "transforms_val.json"),
    "expressions": ("expr.npy", "expr_max.npy", "expr_min.npy", "expr_names.txt"),
    "images": ("head_imgs", "head_masks", "parsing", "bc.jpg"),
}


def regenerate(what: str, gt: Path, proc: Path, frames: int, size: int, test_num: int) -> None:
    """``all``: render the synthetic clip with its dataset; then (``all``, ``process``) run
    ``data_utils/process.py`` on its MP4 from scratch."""
    python = sys.executable
    if what == "all":
        shutil.rmtree(gt, ignore_errors=True)
        subprocess.run([python, "-m", "facenerf.tools.talking_head", "--out", str(gt), "--frames", str(frames),
                        "--size", str(size), "--test_num", str(test_num), "--progress", "false"], check=True, cwd=ROOT)
    shutil.rmtree(proc, ignore_errors=True)
    subprocess.run([python, "data_utils/process.py", str(gt / f"{gt.name}.mp4"), "--out", str(proc), "--test_num",
                    str(test_num), "--progress", "false"], check=True, cwd=ROOT)


def hybrid(gt: Path, proc: Path, component: str, out: Path) -> Path:
    """A dataset folder of links: the ground truth's entries, with ``component``'s taken from ``proc``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for entry in sorted(gt.iterdir()):
        source = proc / entry.name if entry.name in HYBRIDS[component] else entry
        (out / entry.name).symlink_to(source.resolve())
    return out


def tracked_poses(gt: Path, landmarks, valid, out: Path, focal: float | None = None) -> Path:
    """The ground-truth dataset with the poses our tracker finds from ``landmarks [N, 68, 2]``.

    The tracker, focal-length estimate and smoothing of ``process.py`` (its default settings),
    or the focal length ``focal`` (pixels). Frames where ``valid [N]`` is false are left out.
    """
    import numpy as np

    from facenerf.preprocess.video.pipeline import write_head_transforms
    from facenerf.preprocess.video.tracking import track_head

    hybrid(gt, gt, "poses", out)
    for name in HYBRIDS["poses"]:
        (out / name).unlink()
    header = json.loads((gt / "transforms_all.json").read_text())
    n_test = len(json.loads((gt / "transforms_val.json").read_text())["frames"])
    head = track_head(landmarks, valid, header["w"], header["h"], focal, progress=False)
    write_head_transforms(out, head, landmarks, np.flatnonzero(valid), n_test, float(header.get("fps", 25)),
                          header["w"], header["h"])
    return out


def pose_hybrids(gt: Path, proc: Path, work: Path) -> dict[str, Path]:
    """Poses our tracker finds from the true landmarks, and from ours at the true focal length."""
    import numpy as np

    from facenerf.preprocess.video.landmarks import LandmarkTrack

    truth = np.load(gt / "ground_truth" / "landmarks_2d.npy")          # [N, 68, 2]
    ours = LandmarkTrack.load(proc / "track" / "landmarks.npz")
    focal = json.loads((gt / "ground_truth" / "info.json").read_text())["intrinsics"]["fx"]
    return {"truth_with_true_landmark_poses": tracked_poses(gt, truth, np.ones(len(truth), bool),
                                                            work / "hybrids" / "true_landmark_poses"),
            "truth_with_our_poses_true_focal": tracked_poses(gt, ours.landmarks, ours.valid,
                                                             work / "hybrids" / "our_poses_true_focal", focal)}


def cli_run(data: Path, workspace: Path, args, seed: int = 0):
    """The run config ``main_nerf.py DATA --workspace W -c CONFIG --downscale D --seed S`` parses to."""
    from facenerf.cli import parse_args
    from facenerf.models.blendshape.options import build_parser, run_config_from_args

    argv = [str(data), "--workspace", str(workspace), "-c", args.config, "--downscale", str(args.downscale),
            "--seed", str(seed), "--progress", "false"]
    return run_config_from_args(parse_args(build_parser(), argv))


def train(data: Path, workspace: Path, args, seed: int = 0) -> dict:
    """Train one head from scratch in ``workspace`` (emptied first); seconds and steps."""
    from facenerf.models.blendshape.training import train_head

    shutil.rmtree(workspace, ignore_errors=True)
    start = time.perf_counter()
    summary = train_head(cli_run(data, workspace, args, seed), say=lambda line: print(f"  {line}"))
    return {"seconds": round(time.perf_counter() - start, 1), "steps": int(summary["step"]),
            "n_train": summary["n_train"], "n_val": summary["n_val"]}


def head_layer(model, data, i: int):
    """``(premultiplied head rgb [H, W, 3], opacity [H, W])`` of held-out frame ``i`` of ``data``."""
    out = model.render_view(data.val.poses[i], data.val.coefficients[i], data.intrinsics, data.near, data.far,
                            data.pixel_center, data.background)
    opacity = out["opacity"].float().cpu()
    return out["rgb"].float().cpu() - (1.0 - opacity)[..., None] * data.background.cpu(), opacity


def common_scores(tested, common) -> dict:
    """Held-out renders of ``tested`` over the true background against the true head images."""
    import numpy as np
    import torch

    from facenerf.metrics import psnr, ssim

    truth_of = {f.img_id: j for j, f in enumerate(common.data.val.dataset.frames)}
    background = common.data.background.cpu()
    rows = []
    with torch.no_grad():
        for i, frame in enumerate(tested.data.val.dataset.frames):
            j = truth_of.get(frame.img_id)
            if j is None:
                continue
            truth, head = common.data.val.image(j).float().cpu(), common.data.val.mask(j).cpu() > 0.5
            both = head & (tested.data.val.mask(i).cpu() > 0.5)
            rgb, opacity = head_layer(tested.model, tested.data, i)
            if rgb.shape != truth.shape:
                raise SystemExit(f"renders are {tuple(rgb.shape)} but the true images {tuple(truth.shape)}: "
                                 "both datasets need the same frame size")
            render = (rgb + (1.0 - opacity)[..., None] * background).clamp(0, 1)
            rows.append({"img_id": frame.img_id, "psnr": float(psnr(render, truth)), "ssim": float(ssim(render, truth)),
                         "head_psnr": float(psnr(render[head], truth[head])),
                         "both_psnr": float(psnr(render[both], truth[both]))})
    return {key: float(np.mean([r[key] for r in rows])) for key in ("psnr", "ssim", "head_psnr", "both_psnr")} | {
        "frames": len(rows)}


def baseline_scores(common) -> dict:
    """The ground truth's mean training image against its held-out head images."""
    import numpy as np

    from facenerf.metrics import psnr, ssim
    from facenerf.models.blendshape.testing import mean_image_baseline

    mean = mean_image_baseline(common.data)
    rows = []
    for j in range(len(common.data.val)):
        truth, head = common.data.val.image(j).float().cpu(), common.data.val.mask(j).cpu() > 0.5
        rows.append((float(psnr(mean, truth)), float(ssim(mean, truth)), float(psnr(mean[head], truth[head]))))
    scores = dict(zip(("psnr", "ssim", "head_psnr"), (float(v) for v in np.mean(rows, axis=0))))
    return scores | {"both_psnr": scores["head_psnr"]}       # the mean image's own mask is the true one


def score(data: Path, workspace: Path, args, common=None, seed: int = 0) -> tuple[dict, object]:
    """Own-target and common-target scores of a trained workspace (and the loaded head)."""
    import torch

    from facenerf.models.blendshape.testing import held_out_metrics, load_tested_head

    tested = load_tested_head(cli_run(data, workspace, args, seed), "")
    with torch.no_grad():
        _, _, own = held_out_metrics(tested.model, tested.data)
    own = {k: own[k] for k in ("psnr", "ssim", "head_psnr", "baseline_psnr", "baseline_head_psnr")}
    return {"own": own, "common": common_scores(tested, common or tested)}, tested


def video_noise(gt: Path, proc: Path, downscale: float, ids) -> dict:
    """PSNR of our frames (decoded from the MP4) against the renderer's, at the training resolution."""
    import numpy as np
    import torch

    from facenerf.io import read_image
    from facenerf.metrics import psnr

    size = None
    values = []
    for i in ids:
        truth = read_image(gt / "ori_imgs" / f"{i}.jpg")
        size = size or (round(truth.shape[1] / downscale), round(truth.shape[0] / downscale))
        a, b = (torch.from_numpy(read_image(p, size)) for p in (gt / "ori_imgs" / f"{i}.jpg",
                                                               proc / "ori_imgs" / f"{i}.jpg"))
        values.append(float(psnr(b, a)))
    return {"psnr": float(np.mean(values)), "frames": len(values)}


def tracking_accuracy(gt: Path, proc: Path) -> dict:
    """Poses, focal length, coefficients and masks of our dataset against the truth."""
    from facenerf.preprocess.video.evaluate import compare

    accuracy = compare(proc, gt / "ground_truth", mask_frames=50)
    header = json.loads((proc / "transforms_train.json").read_text())
    info = json.loads((gt / "ground_truth" / "info.json").read_text())
    accuracy["focal_px"] = {"ours": round(float(header["fx"]), 1), "true": float(info["intrinsics"]["fx"])}
    return accuracy


def run(args) -> dict:
    gt, proc, work = Path(args.gt), Path(args.proc), Path(args.work)
    if args.regenerate != "none":
        regenerate(args.regenerate, gt, proc, args.frames, args.size, args.test_num)
    for folder in (gt, proc):
        if not (folder / "transforms_train.json").is_file():
            raise SystemExit(f"{folder} is not a dataset; run with --regenerate (see the module docstring)")
    load_before = os.getloadavg()[0]
    sets = {"ground_truth": (gt, 0), "process": (proc, 0)}
    if args.repeat:
        sets.update({"ground_truth_seed1": (gt, 1), "process_seed1": (proc, 1)})
    if args.ablations:
        sets.update({f"truth_with_our_{name}": (hybrid(gt, proc, name, work / "hybrids" / name), 0) for name in HYBRIDS})
        sets.update({name: (folder, 0) for name, folder in pose_hybrids(gt, proc, work).items()})
    info = json.loads((gt / "ground_truth" / "info.json").read_text())
    result = {"device": device_name(), "config": args.config, "downscale": args.downscale,
              "clip": {k: info[k] for k in ("frames", "size", "test_num")}, "models": {}}
    for name, (data, seed) in sets.items():
        print(f"training on {name} ({data}, seed {seed})", flush=True)
        result["models"][name] = {"training": train(data, work / name, args, seed)}
    common = None
    for name, (data, seed) in sets.items():
        scores, tested = score(data, work / name, args, common, seed)
        common = common or tested             # the ground truth's head and data come first
        result["models"][name].update(scores)
    result["baseline"] = baseline_scores(common)
    result["image_size"] = [common.data.intrinsics.width, common.data.intrinsics.height]
    result["video_vs_render"] = video_noise(gt, proc, args.downscale,
                                            [f.img_id for f in common.data.val.dataset.frames])
    result["tracking"] = tracking_accuracy(gt, proc)
    result["load_average"] = [load_before, os.getloadavg()[0]]
    models = result["models"]
    result["drops"] = {}
    for name, model in models.items():       # against the ground-truth head of the same seed
        reference = models["ground_truth_seed1" if name.endswith("_seed1") else "ground_truth"]["common"]
        if not name.startswith("ground_truth"):
            result["drops"][name] = {key: round(model["common"][key] - reference[key], 3) for key in METRICS}
    return result


LABELS = {"ground_truth": "ground-truth dataset", "process": "**`process.py` dataset (ours)**",
          "truth_with_our_poses": "truth + our poses and focal length",
          "truth_with_our_expressions": "truth + our coefficients",
          "truth_with_our_images": "truth + our images, masks and plate",
          "truth_with_true_landmark_poses": "truth + poses our tracker finds from the true landmarks",
          "truth_with_our_poses_true_focal": "truth + our poses, tracked at the true focal length",
          "ground_truth_seed1": "ground-truth dataset, seed 1", "process_seed1": "`process.py` dataset, seed 1"}
METRICS = ("psnr", "head_psnr", "both_psnr")


def _row(name: str, model: dict) -> str:
    own, com, t = model["own"], model["common"], model["training"]
    return (f"| {LABELS.get(name, name)} | {own['psnr']:.2f} | {own['ssim']:.3f} | {own['head_psnr']:.2f} | "
            f"{com['psnr']:.2f} | {com['ssim']:.3f} | {com['head_psnr']:.2f} | {com['both_psnr']:.2f} | "
            f"{t['seconds']:.0f} |")


def _tracking_lines(result: dict) -> list[str]:
    trk, (w, h) = result["tracking"], result["image_size"]
    rot = trk["rotation_error_deg"]
    lines = ["## Our dataset against the truth", "",
             f"- focal length {trk['focal_px']['ours']:.0f} px (true {trk['focal_px']['true']:.0f} px)",
             f"- head rotation error: mean {rot['mean']:.2f}°, max {rot['max']:.2f}°; after removing the one constant "
             f"rotation between the two head frames: mean {rot['aligned_mean']:.2f}°, max {rot['aligned_max']:.2f}°",
             f"- landmark error {trk['landmark_error_px']:.2f} px (at {result['clip']['size']}²); head-mask IoU "
             f"{trk['head_mask_iou']:.3f}; person-mask IoU {trk['person_mask_iou']:.3f}; true neck "
             f"called background {100 * trk['neck_missed']:.1f}%",
             f"- our video frames (decoded from the MP4) against the rendered frames at {w}×{h}: "
             f"{result['video_vs_render']['psnr']:.2f} dB", "",
             "| coefficient | correlation with the truth |", "|---|---:|"]
    return lines + [f"| {k} | {'(constant)' if r is None else f'{r:+.3f}'} |" for k, r in trk["correlation"].items()]


def write_results(result: dict, stem: Path) -> None:
    from facenerf.io import write_json, write_text

    write_json(stem.with_suffix(".json"), result, indent=1)
    models, base, clip = result["models"], result["baseline"], result["clip"]
    w, h = result["image_size"]
    steps = models["ground_truth"]["training"]["steps"]
    lines = [f"# `data_utils/process.py` then `main_nerf.py`, against training on the ground truth, {result['device']}",
             "", f"A {clip['frames']}-frame {clip['size']}² synthetic talking head (`python -m "
             f"facenerf.tools.talking_head`), its last {clip['test_num']} frames held out. Every head: "
             f"`{result['config']}`, `--downscale {result['downscale']:g}` ({w}×{h}), the same seed, {steps} steps. "
             f"1-minute load average {result['load_average'][0]:.1f} before and {result['load_average'][1]:.1f} after "
             "(a shared machine: the training times are noisy).", "",
             "- **own**: held-out renders against the model's own dataset's held-out head images (what "
             "`main_nerf.py --test` prints; the datasets' targets differ).",
             "- **common**: every head's held-out renders (its own tracked poses and coefficients), its head layer over "
             "the true background, against the ground truth's held-out head images. *head*: PSNR inside the true head "
             "mask; *both*: inside the true and the model's own head mask (its dataset's head/neck boundary does not "
             "count).", "- rows `truth + ...`: heads trained on the ground-truth dataset with one thing replaced.", "",
             "| trained on | own PSNR | own SSIM | own head PSNR | common PSNR | common SSIM | common head PSNR | "
             "common both PSNR | train s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [_row(name, model) for name, model in models.items()]
    lines += [f"| mean training image (baseline) | | | | {base['psnr']:.2f} | {base['ssim']:.3f} | "
              f"{base['head_psnr']:.2f} | {base['both_psnr']:.2f} | |", "",
              "Change on the common target against the ground-truth head (PSNR / head / both, dB):", ""]
    lines += [f"- {LABELS.get(name, name)}: " + " / ".join(f"{drop[k]:+.2f}" for k in METRICS)
              for name, drop in result["drops"].items()]
    lines += ["", *_tracking_lines(result)]
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", default="data/e2e_gt", help="the ground-truth dataset (talking_head output)")
    parser.add_argument("--proc", default="data/e2e_proc", help="process.py's dataset of the same clip")
    parser.add_argument("--regenerate", choices=("none", "process", "all"), default="none",
                        help="first rerun process.py (process), or also render the clip (all)")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--test_num", type=int, default=30)
    parser.add_argument("--config", default="configs/blendshape_tiny.txt")
    parser.add_argument("--downscale", type=float, default=4.0)
    parser.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the heads on the ground truth with one thing of ours")
    parser.add_argument("--repeat", action=argparse.BooleanOptionalAction, default=True,
                        help="train both main heads again with seed 1 (the spread between runs)")
    parser.add_argument("--work", default="logs/video_end_to_end", help="workspaces and hybrid datasets (replaced)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video_end_to_end_cpu"))
    args = parser.parse_args()
    os.chdir(ROOT)
    result = run(args)
    write_results(result, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
