"""Options of ``run_fit.py``: the training keys (architecture, checkpoint location) plus fitting keys.

The parser accepts every key of the training parser, so ``-c configs/exp_mofanerf.txt`` (the
training config, as with the original ``run_fit.py``) or ``-c configs/fit.txt`` (fitting keys)
both work. Architecture keys, ray bounds, sample counts and data paths that the user does not
set come from the checkpoint (:mod:`facenerf.fitting.from_checkpoint`); architecture keys that
the user sets must match it, and a mismatch is one error line naming every differing size.
"""

from __future__ import annotations

import argparse

from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.config import parse_int_list
from facenerf.config import str2bool
from facenerf.models.mofanerf.options import build_train_parser

RENDER_TYPES = ("fitting", "rendering", "expression", "swap", "random", "morph", "mesh")

MODES_HELP = """\
--renderType modes (outputs go to the fit folder, default <image folder>/../fitting/<folder>_<name>/):
  fitting     (default) fit --filePath: fit.pt (versioned fit file), target.png, fitted.png,
              compare.png (target | fit | error), loss_curve.png, progress/, and for synthetic
              renders the PSNR of held-out views (fit vs. mean-code start). --is_load_par true
              resumes from fit.pt at the iteration it reached.
  rendering   novel views of the fit: render/fitRes_{-60,0,60}.png at the fitted camera's
              distance and pitch, and render/orbit.mp4 sweeping +-(--orbit_range) degrees
              of yaw and back (--size, --frames).
  expression  render the fit with a learned expression: --expression NAME|INDEX ->
              render/expr_<name>.png; --expressions a,b,c -> render/expr_a_b_c.mp4
              interpolating through them (--frames per segment).
  swap        replace shape and/or texture (--swap shape|texture|both) with another fit's
              (--swapFile other/fit.pt) or a random draw from the code statistics ->
              render/swap_<what>_<source>.png (left: fit, right: swapped).
  random      --n_random N new faces from the code statistics (no fit needed) ->
              <--fit_out, else basedir/expname/random>/random_XXX.png and grid.png
              (--seed, --temperature, --expression).
  morph       MP4 morphing codes, gain and camera from this fit to --morphFile other/fit.pt ->
              render/morph_<a>_to_<b>.mp4 (--frames).
  mesh        marching tetrahedra on the fitted density (blurred by --mesh_smooth voxels) in
              --mesh_bbox at --mesh_resolution, level --mesh_level -> mesh/<name>.obj with vertex
              colours (millimetres, FaceScape frame, unless --mesh_units scene) and a shaded
              preview mesh/<name>.png.
"""


def _add_input_args(parser) -> None:
    g = parser.add_argument_group("input and output")
    g.add_argument("--filePath", type=str, default="", help="image to fit (segRelRes/<name>.png or a render.py view)")
    g.add_argument("--posePath", type=str, default="", help="pose_<name>.npy; empty = look it up from the image path")
    g.add_argument("--renderType", type=str, default="fitting", choices=RENDER_TYPES, help="what to do (see below)")
    g.add_argument("--fitFile", type=str, default="", help="fit file to render from; empty = <fit folder>/fit.pt")
    g.add_argument("--fit_out", type=str, default="", help="fit folder; empty = <image folder>/../fitting/<folder>_<name>")
    g.add_argument("--ckpt", type=str, default="",
                   help="trained checkpoint; empty = --ft_path, else the newest in basedir/expname/checkpoints")
    g.add_argument("--code_stats", type=str, default="",
                   help="code statistics (code_stats.pt or the original texShpDistribution.npy); "
                        "empty = code_stats.pt beside the checkpoint, computed once from the training data")
    g.add_argument("--is_load_par", type=str2bool, default=False, help="resume fitting from the fit file")


def _add_fit_args(parser) -> None:
    g = parser.add_argument_group("fitting")
    g.add_argument("--num_iterations", type=int, default=2000, help="fitting iterations")
    g.add_argument("--fit_size", type=int, default=512, help="largest image side the fit runs at")
    g.add_argument("--fit_rays", type=int, default=0, help="rays per iteration (0 = N_rand)")
    g.add_argument("--fit_scales", type=str, default="0.25,0.5,1.0", help="coarse-to-fine resolution factors")
    g.add_argument("--fit_level_starts", type=str, default="0,0.3,0.5",
                   help="fraction of the iterations at which each resolution level starts")
    g.add_argument("--focal", type=float, default=1200.0, help="focal length in pixels at 512 px (wild photos)")
    g.add_argument("--landmark_share", type=float, default=0.5, help="share of the rays drawn around landmarks")
    g.add_argument("--landmark_sigma", type=float, default=0.025, help="their spread, fraction of the image height")
    g.add_argument("--mask_band", type=float, default=0.03,
                   help="background ring sampled around the mask, fraction of the image height")
    g.add_argument("--lr_shape", type=float, default=4e-3, help="Adam rate of the shape code")
    g.add_argument("--lr_expression", type=float, default=4e-3, help="Adam rate of the expression code")
    g.add_argument("--lr_texture", type=float, default=2e-3, help="Adam rate of the texture code")
    g.add_argument("--lr_rotation", type=float, default=1e-3, help="Adam rate of the pose rotation (radians)")
    g.add_argument("--lr_translation", type=float, default=2e-3, help="Adam rate of the pose shift (scene units)")
    g.add_argument("--lr_gain", type=float, default=2e-3, help="Adam rate of the log colour gain")
    g.add_argument("--lr_final_ratio", type=float, default=0.1, help="every rate decays smoothly to this fraction")
    g.add_argument("--photometric", type=str, default="l1", choices=["l1", "mse"], help="photometric loss")
    g.add_argument("--prior_shape", type=float, default=1e-3, help="weight of the Gaussian shape prior")
    g.add_argument("--prior_texture", type=float, default=1e-3, help="weight of the Gaussian texture prior")
    g.add_argument("--prior_expression", type=float, default=1e-3,
                   help="weight of the pull towards the nearest learned expression code")
    g.add_argument("--prior_gain", type=float, default=1e-2, help="weight of the pull of the gain towards 1")
    g.add_argument("--gain", type=str, default="rgb", choices=["rgb", "scalar", "none"],
                   help="colour gain on the render: per channel, one value, or off")
    g.add_argument("--pose_param", type=str, default="axis_angle", choices=["axis_angle", "6d"],
                   help="rotation parametrisation of the pose correction")
    g.add_argument("--fit_pose", type=str2bool, default=True, help="refine the camera pose")
    g.add_argument("--init_expression", type=str, default="neutral", help="learned expression eps starts from")
    g.add_argument("--save_every", type=int, default=100, help="write the fit file every N iterations")
    g.add_argument("--preview_every", type=int, default=0,
                   help="progress render every N iterations (0 = the original's 0,100,200,300,500,1000,1500,2000)")
    g.add_argument("--eval_views", type=int, default=4, help="held-out views scored for synthetic renders")
    g.add_argument("--fast_render", type=str2bool, default=True,
                   help="empty-space skipping (coarse-density occupancy grid), density-only coarse pass, early "
                        "ray termination; false = the straightforward dense reference")


def _add_mode_args(parser) -> None:
    g = parser.add_argument_group("rendering, editing and generation modes")
    g.add_argument("--size", type=int, default=256, help="side of rendered images and videos")
    g.add_argument("--frames", type=int, default=60, help="frames of an orbit/morph video (per segment for expressions)")
    g.add_argument("--fps", type=int, default=25, help="video frame rate")
    g.add_argument("--yaws", type=str, default="-60,0,60", help="yaws (degrees) of the rendering mode's stills")
    g.add_argument("--orbit_range", type=float, default=90.0,
                   help="orbit video sweeps yaw over +-this many degrees and back (>= 180: a full turn); "
                        "training views cover about +-90")
    g.add_argument("--expression", type=str, default="smile", help="expression name or index (expression mode)")
    g.add_argument("--expressions", type=str, default="", help="comma list for an interpolation video")
    g.add_argument("--swap", type=str, default="texture", choices=["shape", "texture", "both"], help="what to swap")
    g.add_argument("--swapFile", type=str, default="", help="fit file to take the codes from (empty = random draw)")
    g.add_argument("--morphFile", type=str, default="", help="fit file to morph into")
    g.add_argument("--n_random", type=int, default=8, help="faces to generate (random mode)")
    g.add_argument("--temperature", type=float, default=1.0, help="std multiplier of random draws")
    g.add_argument("--mesh_resolution", type=int, default=128, help="grid vertices per side for mesh export")
    g.add_argument("--mesh_level", type=float, default=10.0, help="density iso-level of the surface")
    g.add_argument("--mesh_bbox", type=str, default="-3.5,-3.5,-3.5,3.5,3.5,3.5",
                   help="box x0,y0,z0,x1,y1,z1 in scene units (1 = 50 mm)")
    g.add_argument("--mesh_smooth", type=float, default=1.0, help="Gaussian blur of the density grid (voxels)")
    g.add_argument("--mesh_units", type=str, default="mm", choices=["mm", "scene"], help="units of the OBJ")


def build_fit_parser():
    """The ``run_fit.py`` parser: training keys + the groups above; modes listed in the epilog."""
    parser = build_train_parser()
    parser.prog = "run_fit.py"
    parser.description = ("Fit a trained MoFaNeRF to one preprocessed image, then render novel views, "
                          "edits, generations, videos and meshes from the fit. The model keys (netdepth, "
                          "netwidth, ..., tex_channels) and the training run's near, far, N_samples, "
                          "N_importance, white_bkgd, datadir and person_num come from the checkpoint unless "
                          "set here; the defaults shown for them apply only where the checkpoint has none "
                          "(an original .tar stores sizes only).")
    parser.epilog = MODES_HELP
    parser.formatter_class = _Formatter
    _add_input_args(parser)
    _add_fit_args(parser)
    _add_mode_args(parser)
    parser.set_defaults(seed=0)
    return parser


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the flag help and the mode list kept as written."""


def float_list(text: str, name: str) -> tuple[float, ...]:
    """``"0.25,0.5,1"`` -> ``(0.25, 0.5, 1.0)``; FaceNerfError otherwise."""
    try:
        values = tuple(float(v) for v in str(text).strip("[]() ").replace(" ", ",").split(",") if v)
    except ValueError as err:
        raise FaceNerfError(f"--{name} = {text!r} is not a comma-separated list of numbers") from err
    if not values:
        raise FaceNerfError(f"--{name} is empty; give comma-separated numbers")
    return values


def check_fit_args(args) -> None:
    """One-line errors for values that cannot work (checked before anything is loaded)."""
    if args.renderType == "fitting" and not args.filePath:
        raise FaceNerfError("fitting needs an image: pass --filePath path/to/segRelRes/<name>.png")
    if args.renderType in ("rendering", "expression", "swap", "morph", "mesh") and not (args.filePath or args.fitFile):
        raise FaceNerfError(f"--renderType {args.renderType} needs a fit: pass --fitFile fit.pt or the "
                            "--filePath that was fitted")
    if args.renderType == "morph" and not args.morphFile:
        raise FaceNerfError("--renderType morph needs --morphFile other/fit.pt (the fit to morph into)")
    for name in ("size", "frames", "fps", "n_random", "fit_size"):
        if getattr(args, name) < 1:
            raise FaceNerfError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.mesh_resolution < 8:
        raise FaceNerfError(f"--mesh_resolution must be at least 8, got {args.mesh_resolution}")
    if not 0 <= args.landmark_share <= 1:
        raise FaceNerfError(f"--landmark_share must lie in [0, 1], got {args.landmark_share}")
    bbox = float_list(args.mesh_bbox, "mesh_bbox")
    if len(bbox) != 6 or any(bbox[i] >= bbox[i + 3] for i in range(3)):
        raise FaceNerfError(f"--mesh_bbox must be x0,y0,z0,x1,y1,z1 with x0 < x1, y0 < y1, z0 < z1; got {args.mesh_bbox}")
    parse_int_list(args.tex_channels, "tex_channels")
