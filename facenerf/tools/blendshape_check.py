"""``python -m facenerf.tools.blendshape_check``: do a trained head's renders follow a coefficient?

    python -m facenerf.tools.blendshape_check data/talk --workspace trial_talk --strip docs/blendshape_jaw.png

Renders the held-out frames with the smallest and the largest (within the training range) value
of ``--coefficient`` (``jaw_open`` by default), prints the share of the ground truth's mouth-region
change that the renders reproduce (:mod:`facenerf.models.blendshape.expression_check`) and, with
``--strip``, writes ground truth | render of both frames. The head comes from ``--ckpt`` or the
newest checkpoint of ``--workspace``; the dataset and ``--test_num`` are given as for
``main_nerf.py --test``.
"""

from __future__ import annotations

from facenerf.cli import add_options, from_namespace, make_parser, parse_args
from facenerf.errors import run_cli


def build_parser():
    from facenerf.models.blendshape.config import BlendShapeDataConfig, BlendShapeTestSettings, \
        BlendShapeTrainSettings
    from facenerf.models.blendshape.expression_check import JawCheck
    from facenerf.runtime import RunSettings

    parser = make_parser("Measure whether a trained NeRFBlendShape head follows a coefficient (closed vs open jaw "
                         "on held-out frames).", prog="python -m facenerf.tools.blendshape_check")
    parser.add_argument("path", metavar="DATASET", help="the dataset folder the head was trained on")
    add_options(parser, BlendShapeDataConfig, "data", only=("test_num", "downscale"))
    add_options(parser, BlendShapeTrainSettings, "trained head", only=("workspace",))
    add_options(parser, BlendShapeTestSettings, only=("ckpt",))
    add_options(parser, JawCheck, "check")
    add_options(parser, RunSettings, "run", only=("device", "threads", "progress"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from facenerf.io import write_image
    from facenerf.models.blendshape import expression_check as ec
    from facenerf.models.blendshape.config import BlendShapeDataConfig, BlendShapeRunConfig
    from facenerf.models.blendshape.testing import held_out_pair, load_tested_head

    args = parse_args(build_parser(), argv)
    check = from_namespace(ec.JawCheck, args)
    cli = from_namespace(BlendShapeRunConfig, args, data=from_namespace(BlendShapeDataConfig, args, path=args.path))
    model, data, path, _ = load_tested_head(cli, args.ckpt)
    index, _ = ec.coefficient_index(check.coefficient, data.val.dataset.expression_names, data.expr_dim)
    closed, opened = ec.frame_pair(data, index)
    truths, renders = held_out_pair(model, data, (closed, opened))
    result = ec.measure(data, truths, renders, check.coefficient)
    print(f"{path}: {result.summary(data)}")
    if check.strip:
        print(f"strip written to {write_image(check.strip, ec.jaw_strip(result, truths, renders, check.tile))}")
    return 0


if __name__ == "__main__":
    run_cli(main)
