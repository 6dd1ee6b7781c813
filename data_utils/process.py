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

from facenerf.cli import add_options, from_namespace, make_parser, namespace_values, parse_args  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402


def build_parser():
    from facenerf.preprocess.video.pipeline import ProcessSettings
    from facenerf.runtime import RunSettings

    parser = make_parser(__doc__.splitlines()[0], prog="data_utils/process.py")
    parser.add_argument("video", help="the talking-head video (any format ffmpeg reads)")
    parser.add_argument("--out", default=None, help="dataset folder (default: data/NAME for data/vids/NAME.mp4)")
    add_options(parser, ProcessSettings)
    add_options(parser, RunSettings, only=("progress",))
    return parser


def main(argv=None) -> int:
    from facenerf.config import save_config
    from facenerf.io import ensure_writable_dir
    from facenerf.preprocess.video.frames import probe_video
    from facenerf.preprocess.video.pipeline import ProcessSettings, default_output, process_video
    from facenerf.runtime import RunSettings

    args = parse_args(build_parser(), argv)
    video = Path(args.video)
    out = Path(args.out) if args.out else default_output(video)
    settings = from_namespace(ProcessSettings, args, video=video, out=out,   # refuses out-of-range options
                              progress=from_namespace(RunSettings, args).progress)
    probe_video(video)                             # before creating anything
    ensure_writable_dir(out)
    report = process_video(settings)
    save_config(namespace_values(args), out, "process_config.txt")
    print(f"{report['kept']} of {report['frames']} frames kept ({report['carried']} carried through "
          f"detection misses, {report['dropped']} without a face dropped); focal {report['focal_px']:.0f} px")
    print(f"  dataset: {out} ({report['kept'] - report['test_num']} training + {report['test_num']} held-out frames)")
    if settings.preview:
        print(f"  preview: {out / 'preview.mp4'}")
    times = ", ".join(f"{k} {v:.1f} s" for k, v in report["stage_seconds"].items() if v is not None)
    print(f"  stages:  {times}" + ("" if report["ran"] else " (all done before: nothing to do)"))
    return 0


if __name__ == "__main__":
    run_cli(main)
