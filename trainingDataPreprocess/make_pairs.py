"""Make RefineNet training pairs: a trained MoFaNeRF's renders of training views + ground truth.

    python trainingDataPreprocess/make_pairs.py -c configs/mofanerf_tiny.txt --out dataset
    python trainingDataPreprocess/make_pairs.py -c configs/exp_mofanerf.txt --out dataset \
        --pair_expressions 10 --pair_views 8 --render_scale 0.5

The checkpoint (``--ckpt``, else the newest in basedir/expname/checkpoints) supplies the
architecture and the training run's data paths and render settings; keys given with ``-c`` or on
the command line win (architecture keys must match the checkpoint). Writes
``{out}/train_A/{id}/{expression}/{N}.png`` (render at ``render_scale`` of the image size,
upsampled) and ``{out}/train_B/...`` (ground truth), ready for
``trainingDataPreprocess/train.py --dataroot {out}``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.cli import add_options, from_namespace, make_parser, parse_args  # noqa: E402
from facenerf.errors import FaceNerfError, run_cli  # noqa: E402


def build_parser():
    from facenerf.models.mofanerf.options import add_trained_run_options
    from facenerf.models.mofanerf.refine_pairs import PairPlan
    from facenerf.runtime import RunSettings

    parser = make_parser("Render a trained MoFaNeRF at training views next to the ground truth (RefineNet pairs).",
                         prog="trainingDataPreprocess/make_pairs.py")
    group = parser.add_argument_group("pairs")
    group.add_argument("--out", default="dataset", help="dataset root for train_A/ and train_B/")
    add_options(group, PairPlan)
    add_options(parser, RunSettings, "run", only=("device", "seed", "threads", "progress"))
    add_trained_run_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.config import flat_options, save_config
    from facenerf.io import ensure_writable_dir
    from facenerf.models.mofanerf.checkpoints import load_source
    from facenerf.models.mofanerf.data import build_data
    from facenerf.models.mofanerf.expressions import expression_name
    from facenerf.models.mofanerf.options import source_from_args
    from facenerf.models.mofanerf.refine_pairs import PairPlan, make_refine_pairs
    from facenerf.runtime import RunSettings, seed_everything, select_device

    plan, runtime, source = from_namespace(PairPlan, args), from_namespace(RunSettings, args), source_from_args(args)
    device = select_device(runtime.device)
    seed_everything(runtime.seed)
    runtime.apply_threads()
    out = ensure_writable_dir(args.out)
    loaded = load_source(source)
    for note in loaded.notes:
        print(f"note: {note}")
    loaded.model.to(device)
    data = build_data(loaded.run, loaded.checkpoint.parent.parent)  # shares the training run's UV cache
    summary = make_refine_pairs(loaded.model, data, out, plan, expression_name, progress=runtime.progress,
                                seed=runtime.seed)
    save_config({"out": str(out), "ckpt": str(loaded.checkpoint), **flat_options(plan), **flat_options(runtime),
                 **flat_options(loaded.run.render), **flat_options(loaded.run.data)}, out, "make_pairs_config.txt")
    print(summary.summary())
    if summary.written == 0:
        raise FaceNerfError(f"no pairs written to {out}: check the training data in {loaded.run.data.datadir}")
    print(f"next: python trainingDataPreprocess/train.py --dataroot {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
