"""Refine rendered views with the RefineNet: the original code's command, unchanged.

    python run_refine.py --name facescape --nerf_folder ./data/fit/fitting/segRelRes_1/render/

Every image of ``--nerf_folder`` is resized to 512 x 512 (the network size), refined and written
at that size to the folder ``refine/`` beside it (``data/fit/fitting/segRelRes_1/refine/``, with or
without a trailing slash), as the original's README describes. The weights are the newest
facenerf checkpoint of ``<checkpoints_dir>/<name>`` (``logs/refine/facescape``), or the original's
``latest_net_G.pth`` there. ``trainingDataPreprocess/test.py`` does the same, writing
``<nerf_folder>_refined/`` at each image's own size.
"""

from __future__ import annotations

from pathlib import Path

from facenerf.cli import parse_args
from facenerf.errors import run_cli

OUT_HELP = "output folder; empty = refine/ beside --nerf_folder (the original's location)"


def build_parser():
    from facenerf.models.refine.options import build_test_parser

    return build_test_parser("run_refine.py", OUT_HELP)


def main(argv: list[str] | None = None) -> int:
    from facenerf.models.refine.options import test_settings_from_args

    settings, runtime, epoch = test_settings_from_args(parse_args(build_parser(), argv))
    from facenerf.models.refine.inference import refine_folder, resolve_generator
    from facenerf.runtime import select_device

    out = settings.out_folder or str(Path(settings.nerf_folder).absolute().parent / "refine")
    device = select_device(runtime.device)
    generator, size, weights = resolve_generator(settings, epoch, device)
    result = refine_folder(generator, settings.nerf_folder, size, device, out, progress=runtime.progress,
                           how_many=settings.how_many, restore_size=False)
    print(f"weights {weights}")
    print(result.summary())
    return 0 if result.written else 1


if __name__ == "__main__":
    run_cli(main)
