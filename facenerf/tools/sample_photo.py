"""``python -m facenerf.tools.sample_photo data/fit``: a portrait to try wild-photo preprocessing on.

Writes scikit-image's ``astronaut`` test image (a public-domain NASA portrait of Eileen Collins,
512x512, shipped inside the scikit-image wheel: nothing is downloaded) as
``<folder>/astronaut.png``. An existing file is left as it is.
"""

from __future__ import annotations

from pathlib import Path

from facenerf.cli import make_parser, parse_args
from facenerf.errors import FaceNerfError, run_cli

NAME = "astronaut.png"


def build_parser():
    parser = make_parser("Write a public-domain portrait (scikit-image's astronaut) to try "
                         "fittingDataPreprocess/wildData_preprocess.py on.", prog="python -m facenerf.tools.sample_photo")
    parser.add_argument("folder", nargs="?", default="data/fit", help="folder to write astronaut.png into")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    target = Path(args.folder) / NAME
    if target.is_file():
        print(f"{target} exists; left as it is")
        return 0
    try:
        from skimage import data
    except ImportError as err:
        raise FaceNerfError("scikit-image is not installed: run make install (it installs requirements-dev.txt) "
                            "or put your own photos in the folder") from err
    from facenerf.io import write_image

    print(f"wrote {write_image(target, data.astronaut())}")
    return 0


if __name__ == "__main__":
    run_cli(main)
