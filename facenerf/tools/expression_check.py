"""``python -m facenerf.tools.expression_check``: does a trained MoFaNeRF show its expressions?

    python -m facenerf.tools.expression_check -c configs/mofanerf_tiny.txt \
        --check_expressions smile,mouth_stretch,jaw_left --strip expressions.png

Prints, for the training identities, the mouth-region expression-difference ratio of the renders
against the ground truth (see :mod:`facenerf.models.mofanerf.expression_check`) and the
streak/grid energy on smooth skin of held-out views; with ``--strip`` it also writes the truth |
ours strip of one identity (neutral, then ``--strip_expressions``). The checkpoint and the training
data come from the run (``--ckpt`` or ``basedir/expname``); ``-c`` takes the training config.
"""

from __future__ import annotations

from facenerf.cli import add_options, from_namespace, make_parser, parse_args
from facenerf.errors import FaceNerfError, run_cli


def build_parser():
    from facenerf.models.mofanerf.expression_check import ExpressionCheck
    from facenerf.models.mofanerf.options import add_trained_run_options
    from facenerf.runtime import RunSettings

    parser = make_parser("Measure how well a trained MoFaNeRF separates expressions (mouth region).",
                         prog="python -m facenerf.tools.expression_check")
    add_options(parser, ExpressionCheck, "expression check")
    add_options(parser, RunSettings, "run", only=("device", "threads", "progress"))
    add_trained_run_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.data.synthetic import EXPRESSIONS, parse_expression_list
    from facenerf.io import write_image
    from facenerf.models.mofanerf import expression_check as ec
    from facenerf.models.mofanerf.checkpoints import load_source
    from facenerf.models.mofanerf.data import build_data
    from facenerf.models.mofanerf.options import source_from_args
    from facenerf.runtime import RunSettings, select_device

    check, runtime = from_namespace(ec.ExpressionCheck, args), from_namespace(RunSettings, args)
    runtime.apply_threads()
    loaded = load_source(source_from_args(args))
    model = loaded.model.to(select_device(runtime.device)).eval()
    data = build_data(loaded.run, loaded.checkpoint.parent.parent)  # shares the training run's UV cache
    ratios = ec.expression_ratios(model, data, parse_expression_list(check.check_expressions))
    print(ec.summarise(ratios, EXPRESSIONS))
    print(ec.artefact_summary(model, data))
    if check.strip:
        if not 0 <= check.strip_identity < len(data.identities):
            raise FaceNerfError(f"--strip_identity {check.strip_identity} is not one of the {len(data.identities)} "
                                "training identities (0-based)")
        try:
            strip = ec.expression_strip(model, data, check.strip_identity,
                                        parse_expression_list(check.strip_expressions), EXPRESSIONS)
        except ValueError as err:
            raise FaceNerfError(f"no expression strip: {err}; render the neutral and the edited expressions "
                                "from a common camera") from err
        print(f"expression strip written to {write_image(check.strip, strip)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
