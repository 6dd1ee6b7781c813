"""Train MoFaNeRF: ``python run_train.py -c configs/exp_mofanerf.txt [--key value ...]``.

Reads FaceScape-format multi-view renders (``--datadir``), trains the morphable face NeRF and
writes everything to ``basedir/expname/``: the resolved ``config.txt``, ``checkpoints/``
(every ``i_weights`` steps and on Ctrl-C; rerunning the same command resumes), validation
strips ``val/step_*.png``, TensorBoard logs, and ``grid_ids_x_expressions.png`` at the end.
An unreadable training image saves a checkpoint and stops with the file named
(``--skip_bad_images true`` skips and counts such images instead).
Data-parallel: ``torchrun --nproc_per_node=N run_train.py -c ...``.
"""

from __future__ import annotations

import os

from facenerf.cli import hidden_flags_given, parse_args
from facenerf.errors import run_cli
from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args


def main(argv: list[str] | None = None) -> int:
    parser = build_train_parser()
    run = run_config_from_args(parse_args(parser, argv))
    unread = hidden_flags_given(parser, argv)
    if unread and os.environ.get("RANK", "0") == "0":  # once under torchrun
        print(f"note: run_train.py does not read {', '.join('--' + k for k in unread)}: keys of the original code, "
              "accepted so that its config files load (see run_train.py --help)")
    from facenerf.models.mofanerf.training import train

    summary = train(run)
    if summary.get("world_size", 1) > 1 and "grid" in summary:
        state = "in sync" if summary["ranks_in_sync"] else "NOT in sync (please report this)"
        print(f"{summary['world_size']} data-parallel processes; parameters of all ranks {state}")
    if "grid" in summary:
        eval_psnr = summary.get("eval", {}).get("psnr")
        note = f", held-out PSNR {eval_psnr:.2f} dB" if eval_psnr is not None else ""
        print(f"trained to step {summary['step']}{note}; outputs in {summary['out_dir']} "
              f"(checkpoint {summary.get('checkpoint')}, grid {summary['grid']}, "
              f"grid PSNR {summary['grid_psnr']:.2f} dB)")
    if summary.get("bad_images"):
        print(f"skipped {len(summary['bad_images'])} unreadable training image(s) (skip_bad_images = true): "
              + ", ".join(summary["bad_images"][:5]) + (" ..." if len(summary["bad_images"]) > 5 else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
