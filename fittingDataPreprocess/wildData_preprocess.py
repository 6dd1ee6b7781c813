"""Preprocess wild photos for single-image MoFaNeRF fitting: align, pose, segment, relight.

Works from this folder (``python wildData_preprocess.py --filePath ./data/fit/``) and from the
repository root (``python fittingDataPreprocess/wildData_preprocess.py --filePath data/fit/``).
No downloaded network weights are needed. Rerunning after Ctrl-C (or a crash) skips the photos
already done.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facenerf.config import make_parser, parse_args, save_config, str2bool  # noqa: E402
from facenerf.errors import FaceNerfError, run_cli  # noqa: E402

EPILOG = """outputs (under --out, default the input folder; inputs are never overwritten):
  aligned/<name>.png      photo aligned to the 512x512 training-render template
  landmarks/<name>.txt    68 landmarks "x y" in the aligned image
  mask/<name>.png         labels: face red, hair blue, neck cyan, clothing green, background black
  segRes/<name>.png       background and clothing removed
  segRelRes/<name>.png    segRes relit to the training lighting (fit this one)
  pose_<name>.npy         {"pose": 4x4 camera-to-world (OpenGL), "kp": 68x2 (row, col), ...}
  contact/contact_sheet.png   one row per photo: input, landmarks + pose, mask, segmented, relit
then: python run_fit.py --filePath <out>/segRelRes/<name>.png"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the output-layout epilog's line breaks."""


def build_parser():
    parser = make_parser(__doc__.splitlines()[0], prog="wildData_preprocess.py")
    parser.formatter_class = _HelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--filePath", required=True, help="folder of photos (.png/.jpg/...; not recursive)")
    parser.add_argument("--out", default=None, help="output folder (default: the --filePath folder)")
    parser.add_argument("--image_size", type=int, default=512, help="side of the aligned outputs")
    parser.add_argument("--upsample", type=int, default=1, help="HOG face detector up-sampling (finds smaller faces)")
    parser.add_argument("--cnn_fallback", action="store_true", help="try dlib's CNN detector when HOG finds no face")
    parser.add_argument("--predictor", default=None, help="dlib 68-landmark predictor file; unset = the copy in face_recognition_models")
    parser.add_argument("--cnn_detector", default=None, help="dlib MMOD detector file; unset = the copy in face_recognition_models")
    parser.add_argument("--pose_no_contour", action="store_true",
                        help="estimate the pose without the 17 jaw-contour landmarks (helps for turned heads)")
    parser.add_argument("--relight", default="sh", choices=["sh", "none"],
                        help="sh: weights-free SH re-shading to the training lighting; none: copy segRes")
    parser.add_argument("--parsing_weights", default=None,
                        help="optional face-parsing network weights (BiSeNet, 19 CelebAMask-HQ classes) "
                             "used instead of the weights-free segmentation")
    parser.add_argument("--device", default="auto", help="device for --parsing_weights: auto, cpu, cuda, cuda:N")
    parser.add_argument("--neck_length", type=float, default=0.4, help="neck kept below the chin (face heights)")
    parser.add_argument("--grabcut_size", type=int, default=256, help="resolution GrabCut works at")
    parser.add_argument("--no_contact_sheet", action="store_true", help="do not write contact sheets")
    parser.add_argument("--seed", type=int, default=0, help="seed for repeatable segmentation")
    parser.add_argument("--progress", type=str2bool, default=True, help="show a progress bar")
    return parser


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.preprocess.fitting.pipeline import PreprocessSettings, preprocess_folder
    from facenerf.preprocess.fitting.segment import SegmentSettings
    from facenerf.runtime import select_device

    settings = PreprocessSettings(
        image_size=args.image_size, upsample=args.upsample, cnn_fallback=args.cnn_fallback,
        predictor=args.predictor, cnn_detector=args.cnn_detector, relight=args.relight,
        pose_use_contour=not args.pose_no_contour,
        parsing_weights=args.parsing_weights, device=str(select_device(args.device)),
        segment=SegmentSettings(work_size=args.grabcut_size, neck_length=args.neck_length, seed=args.seed),
    )
    summary = preprocess_folder(args.filePath, args.out, settings, progress=args.progress,
                                contact_sheet=not args.no_contact_sheet)
    if not summary.ok and not summary.skipped:
        raise FaceNerfError(f"no images found in {args.filePath}; put .png/.jpg photos there")
    for line in summary.lines():   # the report first: nothing below can lose it
        print(line)
    save_config(args, summary.out_dir, "wild_preprocess_config.txt")
    if summary.ok:
        print(f"fit with: python run_fit.py --filePath {summary.out_dir / 'segRelRes' / (Path(summary.ok[0]).stem + '.png')}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    run_cli(main)
