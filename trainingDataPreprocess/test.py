"""Refine a folder of NeRF renders with a trained RefineNet.

    python trainingDataPreprocess/test.py --name facescape --nerf_folder outputs/fit/renders

Every image directly inside ``--nerf_folder`` is resized to the network size (the training
``load_size`` stored in the checkpoint, or ``--load_size``), refined, resized back to its own
size and written as PNG to the sibling folder ``<nerf_folder>_refined/`` (same with or without a
trailing slash) unless ``--out_folder`` is given. The newest checkpoint of
``<checkpoints_dir>/<name>/checkpoints`` is used unless ``--checkpoint`` names one.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.config import make_parser, parse_args, str2bool  # noqa: E402
from facenerf.errors import FaceNerfError, run_cli  # noqa: E402


def build_parser():
    p = make_parser("Refine every image of a folder with a trained RefineNet.", prog="trainingDataPreprocess/test.py")
    p.add_argument("--name", default="facescape", help="experiment name used for training")
    p.add_argument("--checkpoints_dir", default="logs/refine", help="root of all RefineNet runs")
    p.add_argument("--checkpoint", default=None, help="explicit checkpoint file (default: newest of the run)")
    p.add_argument("--nerf_folder", required=True, help="folder of renders to refine")
    p.add_argument("--out_folder", default=None, help="output folder (default: <nerf_folder>_refined)")
    p.add_argument("--load_size", type=int, default=0, help="network input size; 0 = the training load_size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--progress", type=str2bool, default=True, help="show a progress bar")
    return p


def main() -> int:
    args = parse_args(build_parser())
    from facenerf.models.refine.inference import find_checkpoint, load_refine_generator, refine_folder
    from facenerf.runtime import select_device

    if args.load_size < 0:
        raise FaceNerfError(f"--load_size must be >= 0 (got {args.load_size})")
    device = select_device(args.device)
    checkpoint = find_checkpoint(args.checkpoints_dir, args.name, args.checkpoint)
    generator, config = load_refine_generator(checkpoint, device)
    size = args.load_size or int(config.get("load_size") or 0) or None
    result = refine_folder(generator, args.nerf_folder, size, device, args.out_folder, progress=args.progress)
    print(f"checkpoint {checkpoint}")
    print(result.summary())
    return 0 if result.written else 1


if __name__ == "__main__":
    run_cli(main)
