"""Preprocess wild photos for single-image MoFaNeRF fitting: align, pose, segment, relight.

Works from the repository root (``python fittingDataPreprocess/wildData_preprocess.py --filePath
data/fit/``) and from this folder: ``cd fittingDataPreprocess && python wildData_preprocess.py
--filePath ./data/fit/`` reads ``./data/fit/`` here if it exists, else the repository's
``data/fit/`` (with a note). No downloaded network weights are needed. Rerunning after Ctrl-C (or a crash) skips the photos
already done.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facenerf.cli import add_options, bool_flag, from_namespace, make_parser, namespace_values, parse_args  # noqa: E402
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


def build_parser():
    from facenerf.preprocess.fitting.pipeline import PreprocessSettings
    from facenerf.runtime import RunSettings

    parser = make_parser(__doc__.splitlines()[0], prog="wildData_preprocess.py", epilog=EPILOG)
    parser.add_argument("--filePath", required=True, help="folder of photos (.png/.jpg/...; not recursive)")
    parser.add_argument("--out", default=None, help="output folder (default: the --filePath folder)")
    add_options(parser, PreprocessSettings)
    parser.add_argument("--no_contact_sheet", **bool_flag(False, "do not write contact sheets"))
    add_options(parser, RunSettings, only=("device", "progress"))
    return parser


def input_path(text: str, flag: str) -> str:
    """``text`` relative to the working folder; if nothing is there, relative to the repository root."""
    given = Path(text)
    if given.is_absolute() or given.exists() or not (ROOT / given).exists():
        return text
    print(f"note: {flag} {text} is not in {Path.cwd()}; using {ROOT / given}")
    return str(ROOT / given)


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    args.filePath = input_path(args.filePath, "--filePath")
    if args.template:
        args.template = input_path(args.template, "--template")
    from facenerf.config import save_config
    from facenerf.preprocess.fitting.pipeline import PreprocessSettings, preprocess_folder
    from facenerf.runtime import RunSettings, select_device

    runtime = from_namespace(RunSettings, args)
    settings = from_namespace(PreprocessSettings, args, device=str(select_device(runtime.device)))
    if settings.template:
        from facenerf.preprocess.fitting.template import load_alignment_template

        alignment = load_alignment_template(settings.template)
        print(f"aligning to the template of {settings.template} ({alignment.source}, "
              f"{alignment.identities} identities)")
    summary = preprocess_folder(args.filePath, args.out, settings, progress=runtime.progress,
                                contact_sheet=not args.no_contact_sheet)
    if not summary.ok and not summary.skipped:
        raise FaceNerfError(f"no images found in {args.filePath}; put .png/.jpg photos there")
    for line in summary.lines():   # the report first: nothing below can lose it
        print(line)
    save_config(namespace_values(args), summary.out_dir, "wild_preprocess_config.txt")
    if summary.ok:
        print(f"fit with: python run_fit.py --filePath {summary.out_dir / 'segRelRes' / (Path(summary.ok[0]).stem + '.png')}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    run_cli(main)
