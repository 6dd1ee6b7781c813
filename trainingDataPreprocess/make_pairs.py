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

from facenerf.config import parse_args, save_config  # noqa: E402
from facenerf.errors import FaceNerfError, run_cli  # noqa: E402


def build_parser():
    from facenerf.models.mofanerf.options import build_train_parser

    parser = build_train_parser()
    parser.prog = "trainingDataPreprocess/make_pairs.py"
    parser.description = "Render a trained MoFaNeRF at training views next to the ground truth (RefineNet pairs)."
    g = parser.add_argument_group("pairs")
    g.add_argument("--ckpt", default="", help="checkpoint (default: --ft_path, else the newest of the run)")
    g.add_argument("--out", default="dataset", help="dataset root for train_A/ and train_B/")
    g.add_argument("--pair_expressions", type=int, default=10, help="expressions drawn per identity")
    g.add_argument("--pair_views", type=int, default=8, help="training views drawn per expression")
    g.add_argument("--render_scale", type=float, default=0.5, help="render size as a fraction of the image size")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.config import ensure_writable_dir
    from facenerf.fitting.from_checkpoint import explicit_keys
    from facenerf.fitting.refine_pairs import PairPlan, make_refine_pairs
    from facenerf.fitting.workflow import expression_name, load_model
    from facenerf.models.mofanerf.training import build_data
    from facenerf.runtime import select_device, seed_everything

    explicit = explicit_keys(build_parser, args, argv)  # unset sizes and data keys come from the checkpoint
    device = select_device(args.device)
    seed_everything(args.seed)
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    out = ensure_writable_dir(args.out)
    loaded = load_model(args, device, explicit)
    data = build_data(args, Path(args.basedir) / args.expname)  # shares the training run's UV cache
    plan = PairPlan(args.pair_expressions, args.pair_views, args.render_scale, args.seed)
    summary = make_refine_pairs(loaded.model, data, out, plan, expression_name, progress=args.progress)
    save_config(args, out, "make_pairs_config.txt")
    print(summary.summary())
    if summary.written == 0:
        raise FaceNerfError(f"no pairs written to {out}: check the training data in {args.datadir}")
    print(f"next: python trainingDataPreprocess/train.py --dataroot {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
