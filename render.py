"""Render multi-view training images of aligned FaceScape meshes on the MoFaNeRF rig.

    python render.py --data data --resolution 128 --views 24 --workers 2

reads ``data/models_out/{id}/{k}_{name}.obj`` (+ texture) and writes
``data/multiViewImages/{id}/{name}/{pitch}_{yawIndex}.png`` with per-expression and
per-identity camera files (``transforms_{train,val,test,all}_{id}.json``) and a report of
everything that failed. Re-running skips finished views (Ctrl-C or kill -9 lose at most the
views in progress). See data/README.md for the formats.
"""

from __future__ import annotations

import sys
from pathlib import Path

from facenerf.cli import add_options, from_namespace, make_parser, namespace_values, parse_args
from facenerf.errors import FaceNerfError, run_cli


def build_parser():
    from facenerf.preprocess.training.multiview import RenderOptions
    from facenerf.runtime import RunSettings

    parser = make_parser(__doc__.strip().splitlines()[0], prog="render.py")
    parser.add_argument("--data", default="data", help="dataset root holding models_out/")
    parser.add_argument("--models_out", default=None,
                        help="meshes: {id}/{k}_{name}.obj or {id}/models_reg/{k}_{name}.obj (default: {data}/models_out, "
                             "else {data}/facescape_trainset)")
    parser.add_argument("--out", default=None, help="output root (default: {data}/multiViewImages)")
    parser.add_argument("--landmarks", default=None,
                        help="[ids, 20, 68, 3] landmark array in mm (default: {data}/landmarks_3d.npy if present)")
    parser.add_argument("--views", type=int, default=None, help="render this many views spread over the rig (default: all 120)")
    parser.add_argument("--pitches", default=None, help="comma list of pitches to keep, e.g. -15,0,15")
    parser.add_argument("--yaws", default=None, help="comma list of yaw indices 0..19 to keep")
    parser.add_argument("--ids", default=None, help="comma list of identity folders to render (default: all)")
    parser.add_argument("--expressions", default="all", help="comma list of expressions (1..20, names or stems)")
    parser.add_argument("--workers", type=int, default=1, help="parallel render processes")
    parser.add_argument("--gl", default="auto", help="headless GL platform: auto, egl or osmesa")
    add_options(parser, RenderOptions)
    add_options(parser, RunSettings, only=("progress",))
    return parser


def _ints(text, flag):
    if text in (None, ""):
        return None
    try:
        return [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise FaceNerfError(f"{flag} takes comma-separated integers, got '{text}'") from None


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    data = Path(args.data)
    models_out = Path(args.models_out) if args.models_out else next(
        (p for p in (data / "models_out", data / "facescape_trainset") if p.is_dir()), data / "models_out")
    if not models_out.is_dir():
        raise FaceNerfError(f"meshes not found: neither {data / 'models_out'} nor {data / 'facescape_trainset'} exists "
                            "(run align_clip.py first, or pass --models_out)")
    from facenerf.preprocess.training.multiview import RenderOptions

    opts = from_namespace(RenderOptions, args)
    if opts.resolution < 8 or args.workers < 1:
        raise FaceNerfError("--resolution must be at least 8 and --workers at least 1")
    from facenerf.preprocess.training.gl import select_gl_platform

    platform = select_gl_platform(args.gl)    # before anything imports pyrender
    from dataclasses import replace

    from facenerf.config import save_config
    from facenerf.data.synthetic import parse_expression_list
    from facenerf.io import ensure_writable_dir
    from facenerf.preprocess.training import multiview, rig

    out = ensure_writable_dir(args.out or data / "multiViewImages")
    save_config(namespace_values(args), out, "render_config.txt")
    landmarks_path = Path(args.landmarks) if args.landmarks else data / "landmarks_3d.npy"
    opts = replace(opts, views=tuple(rig.select_views(args.views, _ints(args.pitches, "--pitches"),
                                                      _ints(args.yaws, "--yaws"))))
    from facenerf.preprocess.training.align import read_landmark_indices

    indices, _ = read_landmark_indices([data / "predef", data])   # for TU models without landmark files
    report = multiview.render_dataset(
        models_out, out, opts, args.workers, platform,
        ids=[s.strip() for s in args.ids.split(",")] if args.ids else None,
        expressions=parse_expression_list(args.expressions),
        landmarks=multiview.load_landmark_array(landmarks_path if args.landmarks != "" else None),
        progress=args.progress, landmark_indices=indices)
    print(f"meshes from {models_out}")
    return multiview.print_summary(report, out)


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
