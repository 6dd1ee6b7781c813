"""``python -m facenerf.tools.contact_sheet``: tile one identity's 20 rendered expressions into a PNG.

    python -m facenerf.tools.contact_sheet --data data --id 1 --views 0_10,0_15,15_6

Reads ``{data}/multiViewImages/{id}/{expression}/{view}.png`` (written by ``render.py``) and
writes ``{data}/contact_sheet_{id}.png`` beside them (``--out`` elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from facenerf.cli import add_options, from_namespace, make_parser, parse_args
from facenerf.errors import run_cli


def build_parser():
    from facenerf.preprocess.training.contact_sheet import ContactSheet

    parser = make_parser("Tile one identity's 20 rendered expressions into a PNG.",
                         prog="python -m facenerf.tools.contact_sheet")
    add_options(parser, ContactSheet)
    return parser


def main(argv: list[str] | None = None) -> int:
    from facenerf.io import write_image
    from facenerf.preprocess.training.contact_sheet import ContactSheet, make_contact_sheet

    sheet = from_namespace(ContactSheet, parse_args(build_parser(), argv))
    path = write_image(sheet.out_path, make_contact_sheet(Path(sheet.data) / "multiViewImages", sheet))
    print(f"contact sheet written to {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
