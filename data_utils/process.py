"""Turn a talking-head video into a NeRFBlendShape dataset: ``python data_utils/process.py data/vids/NAME.mp4``.

Stages: frames (25 fps), dlib landmarks, head pose (PnP, one focal length), expression
coefficients (the procedural head's blendshapes, or --expr_file), head/neck/torso masks and a
background plate, transforms + expression files, a preview MP4. No weights are downloaded. A
rerun resumes: finished stages are skipped. The output folder (default: data/NAME for
data/vids/NAME.mp4) is what ``main_nerf.py data/NAME`` reads; data/README.md lists every file.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.config import make_parser, parse_args, save_config, str2bool  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], prog="data_utils/process.py")
    parser.add_argument("video", help="the talking-head video (any format ffmpeg reads)")
    parser.add_argument("--out", default=None, help="dataset folder (default: data/NAME for data/vids/NAME.mp4)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate the video is resampled to")
    parser.add_argument("--test_num", type=int, default=None, help="last frames held out (default: 10%%)")
    parser.add_argument("--expr_file", default=None,
                        help="per-frame coefficients from another tracker (.csv or .npy, one row per frame at --fps)")
    parser.add_argument("--focal", type=float, default=None, help="focal length in pixels (default: estimated)")
    parser.add_argument("--upsample", type=int, default=None, help="dlib HOG up-sampling (default: from the frame size)")
    parser.add_argument("--max_gap", type=int, default=5, help="longest detection miss carried over, in frames")
    parser.add_argument("--smooth_landmarks", type=float, default=0.7, help="temporal smoothing sigma (frames)")
    parser.add_argument("--smooth_pose", type=float, default=1.0, help="temporal smoothing sigma (frames)")
    parser.add_argument("--smooth_expression", type=float, default=0.7, help="temporal smoothing sigma (frames)")
    parser.add_argument("--mask_samples", type=int, default=24, help="frames segmented to build the background plate")
    parser.add_argument("--min_frames", type=int, default=50, help="fewest frames with a face to accept")
    parser.add_argument("--predictor", default=None, help="dlib 68-point model file (default: face_recognition_models)")
    parser.add_argument("--preview", type=str2bool, default=True, help="write preview.mp4")
    parser.add_argument("--jpeg_quality", type=int, default=95, help="JPEG quality of the frames (1-100)")
    parser.add_argument("--progress", type=str2bool, default=True, help="show a progress bar")
    return parser


def main(argv=None) -> int:
    from facenerf.config import ensure_writable_dir
    from facenerf.preprocess.video.frames import probe_video
    from facenerf.preprocess.video.pipeline import ProcessSettings, default_output, process_video

    args = parse_args(build_parser(), argv)
    video = Path(args.video)
    probe_video(video)                             # before creating anything
    out = ensure_writable_dir(Path(args.out) if args.out else default_output(video))
    settings = ProcessSettings(
        video=video, out=out, fps=args.fps, test_num=args.test_num,
        expr_file=Path(args.expr_file) if args.expr_file else None, upsample=args.upsample, max_gap=args.max_gap,
        smooth_landmarks=args.smooth_landmarks, smooth_pose=args.smooth_pose, smooth_expression=args.smooth_expression,
        focal=args.focal, mask_samples=args.mask_samples, min_frames=args.min_frames, preview=args.preview,
        jpeg_quality=args.jpeg_quality, progress=args.progress, predictor=args.predictor)
    report = process_video(settings)
    save_config(args, out, "process_config.txt")
    print(f"{report['kept']} of {report['frames']} frames kept ({report['carried']} carried through short "
          f"detection misses, {report['dropped']} without a face dropped); focal {report['focal_px']:.0f} px")
    print(f"  dataset: {out} ({report['kept'] - report['test_num']} training + {report['test_num']} held-out frames)")
    if settings.preview:
        print(f"  preview: {out / 'preview.mp4'}")
    times = ", ".join(f"{k} {v:.1f} s" for k, v in report["stage_seconds"].items() if v is not None)
    print(f"  stages:  {times}" + ("" if report["ran"] else " (all done before: nothing to do)"))
    return 0


if __name__ == "__main__":
    run_cli(main)
