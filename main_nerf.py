"""NeRFBlendShape: train or test a personalised head model with the seed's flags.

    python main_nerf.py data/talk --workspace trial_talk --cuda_ray --train_epoch 15 --use_patch_loss
    python main_nerf.py data/talk --workspace trial_talk --cuda_ray --test [--test_expr other/expr.npy]
    python main_nerf.py data/talk -c configs/blendshape_tiny.txt            # the CPU size

Training writes ``WORKSPACE/config.txt``, ``checkpoints/`` (rerunning resumes), ``validation/``
and the logs; ``--test`` writes ``WORKSPACE/results/`` (reenactment, novel-view orbit and
expression-transfer MP4s at ``--test_fps``, ``metrics.json``) and prints the held-out PSNR/SSIM.
"""

from __future__ import annotations

from facenerf.cli import parse_args
from facenerf.errors import run_cli
from facenerf.models.blendshape.options import (build_parser, check_modes, run_config_from_args,
                                                testing_from_args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(build_parser(), argv)
    run, test = run_config_from_args(args), testing_from_args(args)
    check_modes(run)
    if test.test:
        from facenerf.models.blendshape.testing import run_test

        report = run_test(run, test)
        print(f"held-out PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.3f} over {report['n_frames']} frames "
              f"(mean-image baseline {report['baseline_psnr']:.2f} dB); inside the head mask {report['head_psnr']:.2f} "
              f"dB (baseline {report['baseline_head_psnr']:.2f} dB); checkpoint {report['checkpoint']}")
        if "jaw" in report:
            print(report["jaw"]["summary"])
        for name, path in report["videos"].items():
            print(f"  {name + ':':15s}{path}")
        print(f"  {'metrics:':15s}{report['metrics_path']}")
        return 0
    from facenerf.models.blendshape.training import train_head, train_torso

    summary = (train_torso if run.train.torso else train_head)(run)
    held_out = summary.get("eval", {}).get("psnr")
    note = f", held-out PSNR {held_out:.2f} dB" if held_out is not None else ""
    print(f"trained the {'torso' if run.train.torso else 'head'} to step {summary['step']}{note} "
          f"({summary['n_train']} training frames, {summary['expr_dim']} coefficients); "
          f"checkpoint {summary.get('checkpoint')}")
    print(f"test it: python main_nerf.py {run.data.path} --workspace {summary['workspace']} --test")
    return 0


if __name__ == "__main__":
    run_cli(main)
