"""``python -m facenerf.tools.gl_platform``: print the headless OpenGL platform pyrender will use.

The Makefile runs it once to choose between EGL and OSMesa (``.venv/.gl-platform``).
"""

from __future__ import annotations

from facenerf.cli import make_parser, parse_args
from facenerf.errors import run_cli


def build_parser():
    parser = make_parser("Print the headless OpenGL platform pyrender will use.",
                         prog="python -m facenerf.tools.gl_platform")
    parser.add_argument("--platform", default="auto", help="auto, egl or osmesa")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    from facenerf.preprocess.training.gl import select_gl_platform

    print(select_gl_platform(args.platform))
    return 0


if __name__ == "__main__":
    run_cli(main)
