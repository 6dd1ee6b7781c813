"""Command-line / config-file options of MoFaNeRF training (the seed's key names are kept).

``add_model_args`` holds the architecture keys (shared with fitting and rendering scripts so a
config file works for all of them); ``build_train_parser`` adds data, sampling, schedule and
run-control keys. Keys of the original ``configs/exp_mofanerf.txt`` that have no effect here
(``no_batching``, ``use_viewdirs``, ``dataset_type``, ...) are accepted so the seed's config
files load unchanged; values that would ask for unsupported behaviour raise a clear error in
:func:`check_train_args`.
"""

from __future__ import annotations

import argparse

from facenerf.config import make_parser, str2bool
from facenerf.errors import FaceNerfError


def add_model_args(parser) -> None:
    """Architecture keys (defaults = the released model, reference §1)."""
    g = parser.add_argument_group("model (defaults reproduce the released model)")
    g.add_argument("--netdepth", type=int, default=8, help="layers of each coarse trunk")
    g.add_argument("--netwidth", type=int, default=256, help="width of the coarse network")
    g.add_argument("--netdepth_fine", type=int, default=10, help="layers of each fine trunk")
    g.add_argument("--netwidth_fine", type=int, default=1024, help="width of the fine network")
    g.add_argument("--skip", type=int, default=5, help="trunk layers before the skip concatenation")
    g.add_argument("--xyz_depth", type=int, default=4, help="layers of the position encoder")
    g.add_argument("--multires", type=int, default=10, help="frequencies of the position encoding")
    g.add_argument("--multires_views", type=int, default=4, help="frequencies of the direction encoding")
    g.add_argument("--input_ch_shapeCodes", type=int, default=50, help="shape code size (beta)")
    g.add_argument("--input_ch_textureCodes", type=int, default=256, help="texture code size (alpha)")
    g.add_argument("--input_ch_expCodes", type=int, default=30, help="expression code size (epsilon)")
    g.add_argument("--n_expressions", type=int, default=20, help="number of learned expression codes")
    g.add_argument("--ism_width", type=int, default=256, help="width of the identity-specific modulation MLP")
    g.add_argument("--ism_depth", type=int, default=4, help="layers of the identity-specific modulation MLP")
    g.add_argument("--tex_size", type=int, default=512, help="side of the UV map fed to the texture encoder")
    g.add_argument("--tex_channels", type=str, default="32,32,32,32,64,128,256",
                   help="channels of the encoder's stride-2 convolutions (one halving each)")
    g.add_argument("--tex_hidden", type=int, default=512, help="width of the encoder's fully connected layer")
    g.add_argument("--tex_decoder_depth", type=int, default=3, help="layers of the encoder's output MLP")
    g.add_argument("--tex_logstd_head", type=str2bool, default=True,
                   help="keep the released model's unused logstd head (frozen) for checkpoint compatibility")


def _add_data_args(parser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--datadir", type=str, default="./data/multiViewImages",
                   help="multi-view renders: {id}/{expression}/{pitch}_{yaw}.png + transforms_*_{id}.json")
    g.add_argument("--shape_codes", type=str, default="",
                   help="factors_id.npy [N+1, 50] (row = id); default: next to datadir")
    g.add_argument("--landmarks", type=str, default="",
                   help="3D landmarks [N+1, 20, 68, 3] in mm; default: next to datadir")
    g.add_argument("--uv_dir", type=str, default="",
                   help="folder of {id}/1_neutral.jpg UV textures; default: found next to datadir")
    g.add_argument("--person_num", type=int, default=300, help="train on the first N identities")
    g.add_argument("--half_res", type=str2bool, default=False, help="train on half-resolution images")
    g.add_argument("--image_scale", type=float, default=1.0, help="further resize factor of the images")
    g.add_argument("--num_workers", type=int, default=2, help="data-loading worker processes (0 = main)")
    g.add_argument("--uv_cache", type=int, default=64, help="UV maps kept in memory per process")
    g.add_argument("--skip_bad_images", type=str2bool, default=False,
                   help="skip and count unreadable images instead of saving a checkpoint and stopping")


def _add_sampling_args(parser) -> None:
    g = parser.add_argument_group("rays and samples")
    g.add_argument("--N_rand", type=int, default=1024, help="rays per step (per process)")
    g.add_argument("--N_samples", type=int, default=64, help="coarse samples per ray")
    g.add_argument("--N_importance", type=int, default=64, help="extra fine samples per ray (0 = no fine network)")
    g.add_argument("--perturb", type=float, default=1.0, help="stratified jitter in training (0 or 1)")
    g.add_argument("--near", type=float, default=8.0, help="near bound (world units, 1 = 50 mm)")
    g.add_argument("--far", type=float, default=26.0, help="far bound (world units)")
    g.add_argument("--white_bkgd", type=str2bool, default=False, help="composite on white instead of black")
    g.add_argument("--lm_share", type=float, default=0.6, help="share of rays drawn around projected landmarks")
    g.add_argument("--lm_sigma", type=float, default=0.025, help="landmark spread as a fraction of image height")
    g.add_argument("--mask_share", type=float, default=0.0, help="share of rays drawn from non-black pixels")
    g.add_argument("--precrop_iters", type=int, default=500, help="steps that sample the central crop only")
    g.add_argument("--precrop_frac", type=float, default=0.5, help="side of that crop as a fraction")
    g.add_argument("--chunk", type=int, default=16384, help="rays per forward pass when rendering images")
    g.add_argument("--netchunk", type=int, default=0, help="accepted for compatibility (points are chunked by chunk)")


def _add_run_args(parser) -> None:
    g = parser.add_argument_group("optimisation and run control")
    g.add_argument("--expname", type=str, default="mofanerf", help="experiment name")
    g.add_argument("--basedir", type=str, default="./logs", help="folder of experiments")
    g.add_argument("--N_iters", type=int, default=600000, help="training steps")
    g.add_argument("--lrate", type=float, default=5e-4, help="learning rate")
    g.add_argument("--lrate_decay", type=float, default=500,
                   help="lr decays by 10x every lrate_decay*1500 steps (the seed's rule, kept on purpose)")
    g.add_argument("--lrate_decay_factor", type=int, default=1500,
                   help="steps per unit of lrate_decay (seed: 1500; vanilla NeRF: 1000)")
    g.add_argument("--grad_clip", type=float, default=0.0, help="max gradient norm (0 = off)")
    g.add_argument("--i_print", type=int, default=100, help="log training scalars every N steps")
    g.add_argument("--i_weights", type=int, default=10000, help="checkpoint every N steps")
    g.add_argument("--i_testset", type=int, default=10000, help="validation render + PSNR every N steps")
    g.add_argument("--n_val", type=int, default=4, help="held-out views rendered at each validation")
    g.add_argument("--val_scale", type=float, default=0.5, help="resolution factor of validation renders")
    g.add_argument("--keep_last", type=int, default=3, help="checkpoints kept (0 = all)")
    g.add_argument("--ft_path", type=str, default="",
                   help="initialise from this checkpoint (facenerf .pt or the original .tar) on a fresh run")
    g.add_argument("--no_reload", type=str2bool, default=False, help="ignore existing checkpoints (fresh run)")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--device", type=str, default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads for torch (0 = torch's default; 1 is fastest for tiny models on busy CPUs)")
    g.add_argument("--amp", type=str, default="none", choices=["none", "bf16", "fp16"],
                   help="mixed precision on CUDA (bf16 on capable GPUs)")
    g.add_argument("--compile", type=str2bool, default=False, help="torch.compile the MLPs (GPU)")
    g.add_argument("--progress", type=str2bool, default=True, help="show a progress bar")
    g.add_argument("--grid_ids", type=int, default=3, help="test identities in the final PNG grid")
    g.add_argument("--grid_exps", type=str, default="0,1,2,16,17", help="expressions in the final PNG grid")


_LEGACY_KEYS = {  # the original parser's keys with no role here: accepted, value checked where it matters
    "no_batching": (str2bool, True), "use_viewdirs": (str2bool, True), "dataset_type": (str, "blender"),
    "i_embed": (int, 0), "raw_noise_std": (float, 0.0), "testskip": (int, 8), "lindisp": (str2bool, False),
    "render_only": (str2bool, False), "render_test": (str2bool, False), "render_factor": (int, 0),
    "i_img": (int, 500), "i_video": (int, 50000), "no_ndc": (str2bool, True), "spherify": (str2bool, False),
    "factor": (int, 8), "llffhold": (int, 8), "shape": (str, "greek"), "output_ch": (int, 5),
}


def build_train_parser():
    """The ``run_train.py`` parser (``-c configs/exp_mofanerf.txt``)."""
    parser = make_parser("Train MoFaNeRF on FaceScape-format multi-view renders.", prog="run_train.py")
    add_model_args(parser)
    _add_data_args(parser)
    _add_sampling_args(parser)
    _add_run_args(parser)
    g = parser.add_argument_group("accepted for compatibility with the original config files")
    for key, (kind, default) in _LEGACY_KEYS.items():
        g.add_argument(f"--{key}", type=kind, default=default, help=argparse.SUPPRESS)
    return parser


def check_train_args(args) -> None:
    """One-line FaceNerfError for values that ask for something this implementation does not do."""
    if not args.use_viewdirs:
        raise FaceNerfError("use_viewdirs = false is not supported: MoFaNeRF always uses view directions")
    if not args.no_batching:
        raise FaceNerfError("no_batching = false is not supported: rays are drawn from one frame per step")
    if args.raw_noise_std:
        raise FaceNerfError("raw_noise_std must be 0 (the released model trains without density noise)")
    if args.dataset_type not in ("blender", "facescape"):
        raise FaceNerfError(f"dataset_type = {args.dataset_type} is not supported: use blender (FaceScape renders)")
    if args.i_embed != 0:
        raise FaceNerfError("i_embed must be 0 (positional encoding)")
    for name in ("N_rand", "N_samples", "N_iters", "chunk", "person_num"):
        if getattr(args, name) <= 0:
            raise FaceNerfError(f"{name} must be positive, got {getattr(args, name)}")
    if not 0 < args.precrop_frac <= 1:
        raise FaceNerfError(f"precrop_frac must lie in (0, 1], got {args.precrop_frac}")
    if not 0 <= args.lm_share + args.mask_share <= 1:
        raise FaceNerfError("lm_share + mask_share must lie in [0, 1]")
