"""Train the RefineNet (pix2pixHD-style) on (coarse render, ground truth) pairs.

    python trainingDataPreprocess/train.py --name facescape --dataroot dataset \
        --nerf_folder train_A --gt_folder train_B
    python trainingDataPreprocess/train.py -c configs/refine_tiny.txt   # small CPU run

Pairs are matched by relative path (``train_A/1/1_neutral/3.png`` <-> ``train_B/1/1_neutral/3.png``);
unmatched or unreadable files are reported and skipped. Checkpoints, TensorBoard logs and the
resolved config go to ``<checkpoints_dir>/<name>/``; running the same command again resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.cli import parse_args  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402


def main() -> int:
    from facenerf.models.refine.options import build_train_parser, run_config_from_args

    run = run_config_from_args(parse_args(build_train_parser()))
    from facenerf.config import save_config
    from facenerf.models.refine.training import train_refine
    from facenerf.runtime import select_device, seed_everything

    device = select_device(run.runtime.device)
    seed_everything(run.runtime.seed)
    run.runtime.apply_threads()
    out_dir = run.train.out_dir
    config_path = save_config(run, out_dir)
    result = train_refine(run, device)
    print(f"trained to step {result['step']} on {device}; checkpoint {result['checkpoint']}")
    if result.get("eval"):
        print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(result["eval"].items())))
    print(f"config {config_path}; TensorBoard: tensorboard --logdir {out_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
