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

from facenerf.config import config_to_dict, make_parser, parse_args, save_config, str2bool  # noqa: E402
from facenerf.errors import FaceNerfError, run_cli  # noqa: E402


def build_parser():
    p = make_parser("Train the RefineNet on render / ground-truth pairs.", prog="trainingDataPreprocess/train.py")
    p.add_argument("--name", default="facescape", help="experiment name: outputs go to <checkpoints_dir>/<name>")
    p.add_argument("--checkpoints_dir", default="logs/refine", help="root of all RefineNet runs")
    p.add_argument("--dataroot", default="dataset", help="folder holding the render and ground-truth trees")
    p.add_argument("--nerf_folder", default="train_A", help="render tree, relative to --dataroot")
    p.add_argument("--gt_folder", default="train_B", help="ground-truth tree, relative to --dataroot")
    p.add_argument("--load_size", type=int, default=512, help="pairs are resized to load_size x load_size")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--max_steps", type=int, default=480_000, help="optimisation steps (reference: 20 epochs of 24k pairs)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate of G and D")
    p.add_argument("--beta1", type=float, default=0.5, help="Adam beta1")
    p.add_argument("--lr_decay_steps", type=int, default=0, help="exponential decay: lr * rate^(step/N); 0 = constant")
    p.add_argument("--lr_decay_rate", type=float, default=0.1)
    p.add_argument("--netG", choices=["global", "local"], default="global", help="generator type")
    p.add_argument("--ngf", type=int, default=32, help="generator base filters")
    p.add_argument("--n_downsample_global", type=int, default=4)
    p.add_argument("--n_blocks_global", type=int, default=9)
    p.add_argument("--n_local_enhancers", type=int, default=1, help="netG local only")
    p.add_argument("--n_blocks_local", type=int, default=3, help="netG local only")
    p.add_argument("--residual", type=str2bool, default=True, metavar="true|false",
                   help="G adds a correction to its input, starting as the identity (false = original pix2pixHD)")
    p.add_argument("--ndf", type=int, default=64, help="discriminator base filters")
    p.add_argument("--n_layers_D", type=int, default=3)
    p.add_argument("--num_D", type=int, default=2, help="discriminator scales")
    p.add_argument("--lambda_gan", type=float, default=1.0, help="weight of the LSGAN generator term")
    p.add_argument("--lambda_feat", type=float, default=10.0, help="discriminator feature matching; 0 = off")
    p.add_argument("--lambda_l1", type=float, default=10.0, help="pixel L1 to the ground truth; 0 = off")
    p.add_argument("--lambda_vgg", type=float, default=10.0, help="VGG-19 perceptual loss (needs --vgg_weights)")
    p.add_argument("--vgg_weights", default=None, help="VGG-19 state dict (torchvision key layout) enabling the perceptual loss")
    p.add_argument("--flip", type=str2bool, nargs="?", const=True, default=False, metavar="true|false",
                   help="randomly mirror pairs left-right (--flip alone = true)")
    p.add_argument("--cache", type=str2bool, nargs="?", const=True, default=False, metavar="true|false",
                   help="keep decoded training images in memory (--cache alone = true)")
    p.add_argument("--num_workers", type=int, default=2, help="threads decoding the next batches (0 = none)")
    p.add_argument("--val_fraction", type=float, default=0.05, help="fraction of identities held out for validation")
    p.add_argument("--max_val", type=int, default=64, help="at most this many validation pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="mixed precision (CUDA)")
    p.add_argument("--log_every", type=int, default=100)
    p.add_argument("--eval_every", type=int, default=1000)
    p.add_argument("--save_every", type=int, default=1000)
    p.add_argument("--keep_last", type=int, default=3, help="checkpoints kept")
    p.add_argument("--progress", type=str2bool, default=True, help="show a progress bar")
    return p


def check_args(args) -> None:
    for key in ("load_size", "batch_size", "max_steps", "ngf", "ndf", "num_D", "n_layers_D"):
        if getattr(args, key) < 1:
            raise FaceNerfError(f"--{key} must be at least 1 (got {getattr(args, key)})")
    if not 0 <= args.val_fraction < 1:
        raise FaceNerfError(f"--val_fraction must be in [0, 1) (got {args.val_fraction})")


def main() -> int:
    args = parse_args(build_parser())
    check_args(args)
    from facenerf.models.refine.model import RefineConfig
    from facenerf.models.refine.training import RefineTrainSettings, train_refine
    from facenerf.runtime import select_device, seed_everything

    device = select_device(args.device)
    seed_everything(args.seed)
    out_dir = Path(args.checkpoints_dir) / args.name
    config_path = save_config(args, out_dir)
    settings = RefineTrainSettings(
        out_dir=out_dir, render_dir=Path(args.dataroot) / args.nerf_folder, target_dir=Path(args.dataroot) / args.gt_folder,
        load_size=args.load_size, batch_size=args.batch_size, max_steps=args.max_steps, beta1=args.beta1,
        lr_decay_steps=args.lr_decay_steps or None, lr_decay_rate=args.lr_decay_rate, flip=args.flip, cache=args.cache,
        workers=args.num_workers,
        val_fraction=args.val_fraction, max_val=args.max_val, seed=args.seed, amp=args.amp, log_every=args.log_every,
        eval_every=args.eval_every, save_every=args.save_every, keep_last=args.keep_last, progress=args.progress)
    result = train_refine(settings, RefineConfig.from_mapping(vars(args)), device, config_to_dict(args))
    print(f"trained to step {result['step']} on {device}; checkpoint {result['checkpoint']}")
    if result.get("eval"):
        print("held-out: " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(result["eval"].items())))
    print(f"config {config_path}; TensorBoard: tensorboard --logdir {out_dir}")
    return 0


if __name__ == "__main__":
    run_cli(main)
