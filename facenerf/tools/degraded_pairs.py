"""``python -m facenerf.tools.degraded_pairs``: degraded-vs-sharp RefineNet pairs for tests and demos.

    python -m facenerf.tools.degraded_pairs --src photos/ --out dataset --size 128 --crops 8
    python -m facenerf.tools.degraded_pairs --procedural 200 --out dataset --size 64
"""

from __future__ import annotations

from facenerf.cli import add_options, from_namespace, make_parser, parse_args
from facenerf.errors import run_cli


def build_parser():
    from facenerf.data.synthetic.degraded_pairs import DegradedPairs

    parser = make_parser("Make degraded-vs-sharp RefineNet pairs (dataset/train_A|train_B) from an "
                         "image folder and/or procedural textures.", prog="python -m facenerf.tools.degraded_pairs")
    add_options(parser, DegradedPairs)
    return parser


def main(argv: list[str] | None = None) -> int:
    from facenerf.data.synthetic.degraded_pairs import DegradedPairs, make_degraded_pairs

    job = from_namespace(DegradedPairs, parse_args(build_parser(), argv))
    result = make_degraded_pairs(job)
    print(result.summary())
    return 0 if result.written else 1


if __name__ == "__main__":
    run_cli(main)
