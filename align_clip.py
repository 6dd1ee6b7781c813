"""Align raw FaceScape scans into the canonical TU frame and clip shoulders and neck.

    python align_clip.py --data data

reads ``data/models_raw/{id}/{k}_{name}/{k}_{name}.obj`` and the predef files in
``data/predef`` or ``data`` (Rt_scale_dict.json, maxDistance.npy, order_new_old.txt, landmark_indices)
and writes ``data/models_out/{id}/{k}_{name}.obj`` (+ MTL, texture, 3D landmarks). A missing
Rt entry falls back to a 3D-landmark alignment; problems are reported per file.
"""

from __future__ import annotations

import sys
from pathlib import Path

from facenerf.cli import add_options, from_namespace, make_parser, namespace_values, parse_args
from facenerf.errors import FaceNerfError, run_cli


def build_parser():
    from facenerf.preprocess.training.align import AlignOptions
    from facenerf.runtime import RunSettings

    parser = make_parser(__doc__.strip().splitlines()[0], prog="align_clip.py")
    parser.add_argument("--data", default="data", help="dataset root holding models_raw/ and predef/")
    parser.add_argument("--models_raw", default=None, help="raw scans (default: {data}/models_raw)")
    parser.add_argument("--predef", default=None, help="predef folder (default: {data}/predef; files not there are looked for in {data})")
    parser.add_argument("--landmarks", default=None,
                        help="[ids, 20, 68, 3] TU landmarks in mm (default: {data}/landmarks_3d.npy if present)")
    parser.add_argument("--out", default=None, help="output folder (default: {data}/models_out)")
    parser.add_argument("--ids", default=None, help="comma list of identity folders (default: all)")
    parser.add_argument("--expressions", default="all", help="comma list of expressions (1..20, names or stems)")
    add_options(parser, AlignOptions)
    add_options(parser, RunSettings, only=("progress",))
    return parser


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.config import save_config
    from facenerf.data.synthetic import parse_expression_list
    from facenerf.io import ensure_writable_dir
    from facenerf.preprocess.training import align

    data = Path(args.data)
    models_raw = Path(args.models_raw or data / "models_raw")
    if not models_raw.is_dir():
        raise FaceNerfError(f"raw meshes not found: {models_raw} (pass --models_raw or --data)")
    predef_dir = Path(args.predef or data / "predef")
    predef = align.load_predef(predef_dir, Path(args.landmarks) if args.landmarks else data / "landmarks_3d.npy",
                               data_root=data)
    opts = from_namespace(align.AlignOptions, args)
    notes = align.check_predef(predef_dir, predef, opts)
    out = ensure_writable_dir(args.out or data / "models_out")
    save_config(namespace_values(args), out, "align_config.txt")
    for line in notes:
        print(line)
    results, problems = align.align_dataset(
        models_raw, out, predef, opts,
        ids=[s.strip() for s in args.ids.split(",")] if args.ids else None,
        expressions=parse_expression_list(args.expressions), progress=args.progress)
    return align.print_summary(results, problems, out)


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
