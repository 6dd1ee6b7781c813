"""``python -m facenerf.tools.checkpoint_info FILE``: what a facenerf checkpoint holds.

Prints the model name, the step and the run configuration stored in it as ``key = value``
lines (the keys of the command that trained it), read through the model table
(:mod:`facenerf.models.table`); checkpoints written before typed configs are read as well.
"""

from __future__ import annotations

from facenerf.cli import make_parser, parse_args
from facenerf.errors import run_cli


def build_parser():
    parser = make_parser("Print the model, step and stored run configuration of a facenerf checkpoint.",
                         prog="python -m facenerf.tools.checkpoint_info")
    parser.add_argument("checkpoint", help="a facenerf checkpoint (.pt)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.config import flat_options, format_value
    from facenerf.models.table import read_checkpoint_run

    name, step, run = read_checkpoint_run(args.checkpoint)
    print(f"model = {name}\nstep = {step}")
    for key, value in flat_options(run).items():
        print(f"{key} = {'(unset)' if value is None else format_value(value)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
