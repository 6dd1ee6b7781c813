"""Options of ``run_fit.py``; :func:`fit_command_from_args` is the one place they become a :class:`FitCommand`.

``--help`` lists the fitting, mode, input/output and run keys, the checkpoint location and the
render and data keys that default to the trained run's values. Every other training key is
accepted without being listed, so ``-c configs/exp_mofanerf.txt`` (the training config, as with
the original ``run_fit.py``) or ``-c configs/fit.txt`` (fitting keys) both work: the network's
sizes come from the checkpoint, and a size that is set must match it (one error line naming
every differing size).
"""

from __future__ import annotations

import argparse

from facenerf.cli import add_options, from_namespace, hidden_flags_given, make_parser
from facenerf.fitting.config import FitCommand, FitInput, FitOutput, ModeSettings
from facenerf.fitting.fitter import FitSettings
from facenerf.models.mofanerf.options import add_trained_run_options, override_keys, source_from_args
from facenerf.runtime import RunSettings

MODES_HELP = """\
--renderType modes (outputs go to the fit folder, default <image folder>/../fitting/<folder>_<name>/):
  fitting     (default) fit --filePath: fit.pt (versioned fit file), target.png, fitted.png,
              compare.png (target | fit | error), loss_curve.png, progress/, and for synthetic
              renders the PSNR of held-out views (fit vs. mean-code start). --is_load_par true
              resumes from fit.pt at the iteration it reached.
  rendering   novel views of the fit: render/fitRes_{-60,0,60}.png and render/orbit.mp4 sweeping
              +-(--orbit_range) degrees of yaw and back (--size, --frames). The cameras are the
              original code's (pitch 0, radius 16, fitRes_60 on the subject's right); with
              --view_convention fitted they keep the fitted camera's pitch and distance and
              fitRes_60 is on the subject's left.
  rendering_modulation
              the original's rigging and editing renders, frontal: render/rigging_<name>.png
              (dimpler, lip_roll, mouth_stretch, cheek_blowing, eye_closed) and
              render/chg_shape_{0,1,2}.png, render/chg_tex_{0,1,2}.png (shape or texture
              replaced by draws from the code statistics, seeds --seed, --seed+1, --seed+2).
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

# the data keys fitting reads: the training identities whose codes give the code statistics
STATISTICS_DATA_KEYS = ("datadir", "shape_codes", "uv_dir", "person_num", "personList", "valid_ids")

DESCRIPTION = ("Fit a trained MoFaNeRF to one preprocessed image, then render novel views, edits, generations, "
               "videos and meshes from the fit. The network's sizes come from the checkpoint; training config "
               "files are accepted (their model sizes must match the checkpoint, other training keys are ignored).")


def build_fit_parser():
    """The ``run_fit.py`` parser: fitting keys, mode keys, the trained run; modes listed in the epilog."""
    parser = make_parser(DESCRIPTION, prog="run_fit.py", epilog=MODES_HELP)
    group = add_options(parser, FitCommand, "input and output", only=("renderType", "code_stats"))
    add_options(group, FitInput)
    add_options(group, FitOutput)
    add_options(parser, FitSettings, "fitting")
    add_options(parser, ModeSettings, "rendering, editing and generation modes")
    add_options(parser, RunSettings, "run")
    add_trained_run_options(parser, data_keys=STATISTICS_DATA_KEYS)
    return parser


def fit_command_from_args(args: argparse.Namespace) -> FitCommand:
    """The typed command (render/data keys left unset are taken from the checkpoint later)."""
    return from_namespace(FitCommand, args, source=source_from_args(args))


def unread_flags(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> list[str]:
    """Training keys on the command line that fitting does not read, for a note: ``--N_iters 500``
    does not set the fit's length. The keys that override the trained run are read."""
    read = override_keys()
    return [key for key in hidden_flags_given(parser, argv) if key not in read]
