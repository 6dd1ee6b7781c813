"""Refine a folder of NeRF renders with a trained RefineNet.

    python trainingDataPreprocess/test.py --name facescape --nerf_folder outputs/fit/renders

Every image directly inside ``--nerf_folder`` is resized to the network size (the training
``load_size`` stored in the checkpoint, or ``--load_size``), refined, resized back to its own
size and written as PNG to the sibling folder ``<nerf_folder>_refined/`` (same with or without a
trailing slash) unless ``--out_folder`` is given. The newest checkpoint of
``<checkpoints_dir>/<name>/checkpoints`` is used unless ``--checkpoint`` names one; a run with no
checkpoint uses the original code's ``<checkpoints_dir>/<name>/latest_net_G.pth``. The original's
pix2pixHD options (``--which_epoch``, ``--results_dir``, ``--how_many``, ``--gpu_ids``, ...) work too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.cli import parse_args  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402


def main() -> int:
    from facenerf.models.refine.options import build_test_parser, test_settings_from_args

    settings, runtime, epoch = test_settings_from_args(parse_args(build_test_parser()))
    from facenerf.models.refine.inference import refine_folder, resolve_generator
    from facenerf.runtime import select_device

    device = select_device(runtime.device)
    generator, size, checkpoint = resolve_generator(settings, epoch, device)
    result = refine_folder(generator, settings.nerf_folder, size, device, settings.out_folder or None,
                           progress=runtime.progress, how_many=settings.how_many)
    print(f"checkpoint {checkpoint}")
    print(result.summary())
    return 0 if result.written else 1


if __name__ == "__main__":
    run_cli(main)
