"""``python -m facenerf.tools.convert_checkpoint SRC DST [--to_official]``: convert a MoFaNeRF checkpoint.

An original ``.tar`` (the released model) becomes a self-describing facenerf ``.pt``;
``--to_official`` writes the original code's layout instead.
"""

from __future__ import annotations

from facenerf.cli import bool_flag, make_parser, parse_args
from facenerf.errors import run_cli


def build_parser():
    parser = make_parser("Convert a MoFaNeRF checkpoint between the original .tar layout and facenerf's .pt.",
                         prog="python -m facenerf.tools.convert_checkpoint")
    parser.add_argument("source", help="checkpoint to read (original .tar or facenerf .pt)")
    parser.add_argument("target", help="file to write")
    parser.add_argument("--to_official", **bool_flag(False, "write the original code's layout instead"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.models.mofanerf.checkpoints import convert

    print(f"wrote {convert(args.source, args.target, args.to_official)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
