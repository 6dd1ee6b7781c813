"""Time per stage of ``data_utils/process.py`` on a synthetic talking head, and its accuracy.

1. A synthetic clip (default 60 s at 512 x 512, 25 fps) is rendered with its ground truth by
   ``python -m facenerf.tools.talking_head`` (not timed; reused with ``--clip``).
2. The whole pipeline runs on its MP4 from scratch; the seconds of every stage are recorded.
3. The output is compared with the ground truth (:mod:`facenerf.preprocess.video.evaluate`):
   head-rotation error, per-coefficient correlation, landmark error, head-mask IoU.
4. The two slowest per-frame steps are compared with a straightforward reference of the same
   computation on the first ``--reference_frames`` frames, in the same run:
   landmarks - ours searches near the previous face first; the reference runs dlib's detector
   on the whole frame every time; masks - ours differences each frame against the background
   plate; the reference segments every frame with the wild-photo GrabCut segmentation.

Usage:  .venv/bin/python benchmarks/video_process.py [--frames 1500] [--size 512] [--clip DIR]
Writes benchmarks/results/video_process_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facenerf.runtime import cpu_model  # noqa: E402


def device_name() -> str:
    return f"{cpu_model()} ({os.cpu_count()} cores, no GPU)"


def make_clip(folder: Path, frames: int, size: int) -> Path:
    from facenerf.data.synthetic.talking_head import TalkingHeadSettings, generate_talking_head
    from facenerf.preprocess.training.gl import select_gl_platform

    if not (folder / "ground_truth" / "info.json").is_file():
        select_gl_platform()
        generate_talking_head(TalkingHeadSettings(out=folder, frames=frames, size=size, dataset=False, progress=True))
    return folder / f"{folder.name}.mp4"


def reference_landmarks(paths, count: int) -> dict:
    """ms per frame: our windowed search vs whole-frame detection (same detector, same frames)."""
    import numpy as np

    from facenerf.io import read_image
    from facenerf.preprocess.video.landmarks import VideoFaceDetector, choose_upsample

    images = [read_image(p) for p in paths[:count]]
    detector = VideoFaceDetector(choose_upsample(images[0].shape[1], images[0].shape[0]))
    start, previous, ours = time.perf_counter(), None, []
    for image in images:
        found = detector.detect(image, previous)
        previous = found[0] if found is not None else previous
        ours.append(found)
    t_ours = (time.perf_counter() - start) / count
    start, full = time.perf_counter(), []
    for image in images:
        full.append(detector.detect(image, None))
    t_ref = (time.perf_counter() - start) / count
    gap = [np.abs(a[2] - b[2]).max() for a, b in zip(ours, full) if a is not None and b is not None]
    return {"ours_ms": 1000 * t_ours, "reference_ms": 1000 * t_ref, "ratio": t_ref / t_ours,
            "max_landmark_difference_px": float(max(gap)) if gap else None}


def reference_masks(out: Path, paths, truth: Path, count: int) -> dict:
    """ms per frame and head IoU: plate differencing (ours) vs GrabCut segmentation of every frame."""
    import imageio.v3 as iio
    import numpy as np

    from facenerf.io import read_image
    from facenerf.preprocess.fitting.segment import FACE, HAIR, segment_face
    from facenerf.preprocess.video import masks as mk
    from facenerf.preprocess.video.landmarks import LandmarkTrack
    from facenerf.preprocess.video.tracking import HeadTrack

    track = LandmarkTrack.load(out / "track" / "landmarks.npz")
    head = HeadTrack.load(out / "track" / "head.npz")
    settings = mk.MaskSettings()
    with np.load(out / "track" / "plate.npz") as data:
        plate = mk.Plate(data["image"], data["known"], data["covered"])
    index = [i for i in range(count) if track.valid[i]]
    images = {i: read_image(paths[i]) for i in index}
    iou = lambda a, b: float((a & b).sum() / max((a | b).sum(), 1))
    truths = {i: iio.imread(truth / "labels" / f"{i}.png") == 1 for i in index}
    start = time.perf_counter()
    height, width = images[index[0]].shape[:2]
    ours = {i: mk.frame_labels(images[i], track.landmarks[i], plate, settings,
                               mk.frame_cut(head, i, width, height, settings)) == mk.HEAD for i in index}
    t_ours = (time.perf_counter() - start) / len(index)
    start = time.perf_counter()
    ref = {i: np.isin(segment_face(images[i], track.landmarks[i]).labels, (FACE, HAIR)) for i in index}
    t_ref = (time.perf_counter() - start) / len(index)
    return {"ours_ms": 1000 * t_ours, "reference_ms": 1000 * t_ref, "ratio": t_ref / t_ours,
            "ours_head_iou": float(np.mean([iou(ours[i], truths[i]) for i in index])),
            "reference_head_iou": float(np.mean([iou(ref[i], truths[i]) for i in index]))}


def write_results(result: dict, stem: Path) -> None:
    from facenerf.io import write_json, write_text

    write_json(stem.with_suffix(".json"), result, indent=1)
    run, acc = result["process"], result["accuracy"]
    lines = [f"# `data_utils/process.py` on a synthetic talking head, {result['device']}", "",
             f"{result['frames']} frames ({result['frames'] / 25:.0f} s at 25 fps), {result['size']}x{result['size']}, "
             f"rendered by `python -m facenerf.tools.talking_head` with its ground truth. "
             f"The machine is shared with other jobs and busy: 1-minute load average {result['load_before']:.1f} "
             f"before and {result['load_after']:.1f} after the run, so timings are noisy.", "",
             "| stage | seconds | ms per frame |", "|---|---:|---:|"]
    for name, seconds in run["stage_seconds"].items():
        lines.append(f"| {name} | {seconds:.1f} | {1000 * seconds / result['frames']:.1f} |")
    lines += [f"| **total** | **{run['total_seconds']:.1f}** | {1000 * run['total_seconds'] / result['frames']:.1f} |",
              "", f"Frames kept {run['kept']} of {run['frames']} (carried {run['carried']}, dropped {run['dropped']}); "
              f"focal length {run['focal_px']:.0f} px estimated (true {result['true_focal_px']:.0f} px).", "",
              "## Against the ground truth", "",
              f"- head rotation error: mean {acc['rotation_error_deg']['mean']:.2f} deg, median "
              f"{acc['rotation_error_deg']['median']:.2f}, max {acc['rotation_error_deg']['max']:.2f}",
              f"- landmark error (dlib, smoothed): {acc['landmark_error_px']:.2f} px; head-mask IoU "
              f"{acc['head_mask_iou']:.3f}; person-mask IoU {acc['person_mask_iou']:.3f}; true "
              f"neck called background {100 * acc['neck_missed']:.1f}%", "", "| coefficient | correlation with the truth |", "|---|---:|"]
    for name, r in acc["correlation"].items():
        lines.append(f"| {name} | {'(constant)' if r is None else f'{r:+.3f}'} |")
    lm, mk = result["reference"]["landmarks"], result["reference"]["masks"]
    lines += ["", f"## Against a straightforward reference (first {result['reference_frames']} frames, same run)", "",
              "| step | ours | reference | speed-up | note |", "|---|---:|---:|---:|---|",
              f"| landmarks (search near the previous face / whole frame) | {lm['ours_ms']:.1f} ms | "
              f"{lm['reference_ms']:.1f} ms | x{lm['ratio']:.2f} | max landmark difference "
              f"{lm['max_landmark_difference_px']:.2f} px |",
              f"| head mask (plate difference / GrabCut per frame) | {mk['ours_ms']:.1f} ms | {mk['reference_ms']:.1f} ms"
              f" | x{mk['ratio']:.2f} | head IoU {mk['ours_head_iou']:.3f} vs {mk['reference_head_iou']:.3f} |", ""]
    write_text(stem.with_suffix(".md"), "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clip", default=None, help="folder of an existing clip (rendered once, then reused)")
    parser.add_argument("--reference_frames", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video_process_cpu"))
    args = parser.parse_args()
    from facenerf.preprocess.video.evaluate import compare
    from facenerf.preprocess.video.pipeline import ProcessSettings, process_video

    work = Path(tempfile.mkdtemp(prefix="video_bench_"))
    clip = Path(args.clip) if args.clip else work / "clip"
    video = make_clip(clip, args.frames, args.size)
    info = json.loads((clip / "ground_truth" / "info.json").read_text())
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    report = process_video(ProcessSettings(video=video, out=work / "data", progress=False))
    report["total_seconds"] = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    paths = [work / "data" / "ori_imgs" / f"{i}.jpg" for i in range(report["frames"])]
    result = {"device": device_name(), "frames": report["frames"], "size": info["size"],
              "true_focal_px": info["intrinsics"]["fx"], "load_before": load_before, "load_after": load_after,
              "process": report, "accuracy": compare(work / "data", clip / "ground_truth", mask_frames=100),
              "reference_frames": args.reference_frames,
              "reference": {"landmarks": reference_landmarks(paths, args.reference_frames),
                            "masks": reference_masks(work / "data", paths, clip / "ground_truth",
                                                     args.reference_frames)}}
    write_results(result, Path(args.out))
    print(Path(args.out).with_suffix(".md").read_text())
    shutil.rmtree(work / "data", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
