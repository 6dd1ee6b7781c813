"""Phone and broadcast video properties that ``data_utils/process.py`` converts as it decodes.

Three measurements, each against a picture the clip was made from (scores: PSNR in dB):

* ``hdr``: HDR clips (10-bit HEVC, BT.2020, tagged HLG or PQ) made from SDR pictures with the
  BT.2100 formulas (:func:`hdr_signal`): the benchmark talking head's frames and scikit-image's
  astronaut. Frames through the frames stage's filters (converted to SDR; compared before its
  JPEG files) and as plain decoding gives them (the HDR values read as if they were SDR).
* ``interlace``: a synthetic talking head rendered at 50 frames/s, woven into a 25 fps
  interlaced clip (top field first). Frames through the frames stage's filters (deinterlaced)
  and plain decoding, against the progressive frame of the top field's moment: median and
  worst frame.
* ``max_side``: 60 frames of the benchmark talking head upscaled into a 3840x2160 (4K) clip,
  processed by ``process.py`` with ``--max_side 0`` (the video's size) and with the default:
  wall time and the dataset's size on disk.

Command (exact; the talking head ``data/e2e_gt`` comes from ``benchmarks/video_end_to_end.py
--regenerate all``):

    python benchmarks/video_inputs.py

Writes ``benchmarks/results/video_inputs_cpu.{json,md}``; clips and datasets go to ``--work``.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facenerf.errors import FaceNerfError, run_cli  # noqa: E402
from facenerf.io import write_text  # noqa: E402
from facenerf.preprocess.video.frames import ffmpeg_exe, probe_video  # noqa: E402

BT709_TO_BT2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])


def hdr_signal(sdr: np.ndarray, transfer: str) -> np.ndarray:
    """BT.2100 HLG or PQ signal [..., 3] in [0, 1] of SDR BT.709 pixels [..., 3] in [0, 1]: the BT.709
    OETF undone, BT.709 -> BT.2020 primaries, SDR white at the HDR reference white (HLG 75%, PQ
    203 cd/m2), then the HLG OETF or the inverse PQ EOTF."""
    linear = np.where(sdr < 0.081, sdr / 4.5, ((sdr + 0.099) / 1.099) ** (1 / 0.45)) @ BT709_TO_BT2020.T
    if transfer == "PQ":
        m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
        y = np.clip(linear * 203.0 / 10000.0, 0.0, 1.0) ** m1
        return ((c1 + c2 * y) / (1 + c3 * y)) ** m2
    a, b = 0.17883277, 0.28466892
    c = 0.5 - a * np.log(4 * a)
    scene = np.clip(linear * (np.exp((0.75 - c) / a) + b) / 12.0, 0.0, 1.0)
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene), a * np.log(np.maximum(12 * scene - b, 1e-12)) + c)


def write_hdr_clip(frames: np.ndarray, transfer: str, out: Path) -> Path:
    """``frames`` [N, H, W, 3] SDR uint8 as a tagged 10-bit HEVC HDR clip at 25 fps."""
    tag = {"HLG": "arib-std-b67", "PQ": "smpte2084"}[transfer]
    signal = (hdr_signal(frames / 255.0, transfer) * 65535).round().astype("<u2")
    n, h, w = frames.shape[:3]
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb48le", "-s", f"{w}x{h}",
                    "-r", "25", "-i", "-", "-vf", "scale=out_color_matrix=bt2020:out_range=tv,format=yuv420p10le",
                    "-c:v", "libx265", "-x265-params", f"log-level=error:colorprim=bt2020:transfer={tag}:colormatrix=bt2020nc",
                    "-color_primaries", "bt2020", "-color_trc", tag, "-colorspace", "bt2020nc", str(out)],
                   input=signal.tobytes(), check=True)
    return out


def decoded(path: Path, size: tuple[int, int], vf: str | None = None) -> np.ndarray:
    """Plain decoding: ``[N, H, W, 3]`` uint8 as ffmpeg gives it, no conversion."""
    command = [ffmpeg_exe(), "-loglevel", "error", "-i", str(path)] + (["-vf", vf] if vf else [])
    raw = subprocess.run(command + ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0], 3)


def extracted(path: Path, size: tuple[int, int]) -> np.ndarray:
    """What process.py's frames stage decodes: ``[N, H, W, 3]`` uint8 through its filters
    (:meth:`~facenerf.preprocess.video.frames.VideoInfo.scale_filter`), before its JPEG files, so
    that both decodings compare without JPEG's loss."""
    return decoded(path, size, probe_video(path).scale_filter().rstrip(",") or None)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def hdr_part(talk: np.ndarray, work: Path) -> dict:
    import cv2
    from skimage import data

    astronaut = np.repeat(cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)[None], 8, axis=0)
    out = {}
    for source, frames in (("talking head", talk[:40]), ("astronaut", astronaut)):
        for transfer in ("HLG", "PQ"):
            clip = write_hdr_clip(frames, transfer, work / f"hdr_{transfer}_{source.replace(' ', '_')}.mp4")
            ours, plain = extracted(clip, frames.shape[2:0:-1]), decoded(clip, frames.shape[2:0:-1])
            n = min(len(ours), len(plain), len(frames))
            out[f"{source}, {transfer}"] = {"converted_db": round(psnr(ours[:n], frames[:n]), 2),
                                            "read_as_sdr_db": round(psnr(plain[:n], frames[:n]), 2)}
    return out


def interlace_part(work: Path) -> dict:
    import imageio.v3 as iio

    clip = work / "t50"
    shutil.rmtree(clip, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "facenerf.tools.talking_head", "--out", str(clip), "--frames", "100",
                    "--size", "192", "--fps", "50", "--progress", "false"], check=True, cwd=ROOT, capture_output=True)
    truth = iio.imread(clip / "t50.mp4")[0::2]                  # the top field's moments
    woven = work / "interlaced.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(clip / "t50.mp4"), "-vf",
                    "tinterlace=mode=interleave_top,setfield=tff", "-c:v", "libx264", "-flags", "+ildct+ilme",
                    "-x264-params", "tff=1", "-crf", "14", str(woven)], check=True)
    out = {}
    for name, frames in (("deinterlaced", extracted(woven, (192, 192))),
                         ("woven (plain decoding)", decoded(woven, (192, 192)))):
        n = min(len(frames), len(truth))
        scores = [psnr(frames[i], truth[i]) for i in range(2, n - 2)]
        out[name] = {"median_db": round(float(np.median(scores)), 2), "worst_db": round(float(np.min(scores)), 2)}
    return out


def disk_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2 ** 20, 1)


def max_side_part(talk_video: Path, work: Path) -> dict:
    uhd = work / "uhd.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(talk_video), "-frames:v", "60", "-vf",
                    "scale=2160:2160,pad=3840:2160:840:0", "-c:v", "libx264", "-crf", "20", str(uhd)], check=True)
    out = {}
    for name, limit in (("--max_side 0 (3840x2160)", "0"), ("default --max_side 1024 (1024x576)", "1024")):
        data = work / f"uhd_{limit}"
        shutil.rmtree(data, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "data_utils/process.py", str(uhd), "--out", str(data), "--max_side", limit,
                        "--preview", "false", "--progress", "false", "--min_frames", "50"], check=True, cwd=ROOT,
                       capture_output=True)
        report = json.loads((data / "report.json").read_text())
        out[name] = {"seconds": round(time.perf_counter() - start, 1), "masks_stage_s": report["stage_seconds"]["masks"],
                     "dataset_mb": disk_mb(data), "frames": report["frames"]}
    return out


def markdown(result: dict, argv: list[str]) -> str:
    lines = [f"# Video inputs `process.py` converts as it decodes, {result['device']}", "",
             f"`python benchmarks/video_inputs.py {' '.join(argv)}`", "",
             "## HDR to SDR (PSNR against the SDR picture each clip was made from)", "",
             "| clip | converted (dB) | read as SDR (dB) |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['converted_db']:.2f} | {v['read_as_sdr_db']:.2f} |" for k, v in result["hdr"].items()]
    lines += ["", "## Interlaced (50 fields/s talking head, PSNR against the progressive frames)", "",
              "| frames | median (dB) | worst (dB) |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['median_db']:.2f} | {v['worst_db']:.2f} |" for k, v in result["interlace"].items()]
    if result.get("max_side"):
        lines += ["", "## 4K clip, 60 frames, whole `process.py` run", "",
                  "| frames | wall (s) | masks stage (s) | dataset (MB) |", "|---|---:|---:|---:|"]
        lines += [f"| {k} | {v['seconds']:.1f} | {v['masks_stage_s']:.1f} | {v['dataset_mb']:.1f} |"
                  for k, v in result["max_side"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="benchmarks/video_inputs.py", description=__doc__.splitlines()[0])
    parser.add_argument("--gt", default=str(ROOT / "data" / "e2e_gt"))
    parser.add_argument("--skip_4k", action="store_true", help="leave out the 4K timing (about 11 minutes)")
    parser.add_argument("--work", default=str(ROOT / "data" / "video_inputs"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)
    gt, work = Path(args.gt), Path(args.work)
    video = gt / f"{gt.name}.mp4"
    if not video.is_file():
        raise FaceNerfError(f"{video} not found; make it with python benchmarks/video_end_to_end.py --regenerate all")
    import imageio.v3 as iio

    from facenerf.runtime import cpu_model

    work.mkdir(parents=True, exist_ok=True)
    result = {"device": f"{cpu_model()} ({os.cpu_count()} cores)", "hdr": hdr_part(iio.imread(video), work),
              "interlace": interlace_part(work)}
    if not args.skip_4k:
        result["max_side"] = max_side_part(video, work)
    out = Path(args.out)
    write_text(out / "video_inputs_cpu.json", json.dumps(result, indent=1) + "\n")
    write_text(out / "video_inputs_cpu.md", markdown(result, argv))
    print(markdown(result, argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
