"""Fit a trained MoFaNeRF to one image, then render views, edits, generations, videos and meshes.

    python run_fit.py -c configs/fit.txt --filePath data/fit/segRelRes/1.png
    python run_fit.py -c configs/fit.txt --filePath data/fit/segRelRes/1.png --renderType rendering

The network's sizes, ray bounds, sample counts and training data come from the checkpoint's
stored run config; keys set in the config or on the command line win (architecture keys must
match it).
See ``python run_fit.py --help`` for every mode and option.
"""

from __future__ import annotations

from facenerf.cli import parse_args
from facenerf.errors import run_cli


def _print_summary(summary: dict) -> None:
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"fitted {summary['iteration']} iterations; image PSNR {summary['psnr_image']:.2f} dB")
    levels = summary.get("psnr_full_by_level", [])
    if levels:
        steps = ", ".join(f"level {k}: {a:.2f} -> {b:.2f}" for k, (a, b) in enumerate(levels))
        print(f"PSNR on fixed full-resolution pixels per resolution level (first -> last logged): {steps} dB")
    if "psnr_heldout" in summary:
        print(f"held-out views of this identity ({summary['heldout_views']}): PSNR {summary['psnr_heldout']:.2f} dB "
              f"(mean-code start {summary['psnr_heldout_start']:.2f} dB)")
    print(f"fit file: {summary['fit_file']}")
    print(f"outputs (target, fitted, compare, loss curve, progress): {summary['out_dir']}")


def main(argv: list[str] | None = None) -> int:
    from facenerf.fitting.config import NEEDS_STATISTICS
    from facenerf.fitting.options import build_fit_parser, fit_command_from_args, unread_flags

    parser = build_fit_parser()
    cmd = fit_command_from_args(parse_args(parser, argv))
    cmd.check_inputs()
    unread = unread_flags(parser, argv)
    if unread:
        print(f"note: run_fit.py does not read {', '.join('--' + k for k in unread)}: training keys, accepted so that "
              "training config files load (see run_fit.py --help for the fitting keys, e.g. --num_iterations)")
    from facenerf.config import save_config
    from facenerf.fitting import modes, workflow
    from facenerf.models.mofanerf.checkpoints import load_source
    from facenerf.runtime import select_device, seed_everything

    device = select_device(cmd.runtime.device)
    seed_everything(cmd.runtime.seed)
    cmd.runtime.apply_threads()
    loaded = load_source(cmd.source)
    loaded.model.to(device)
    for note in loaded.notes:
        print(f"note: {note}")
    if cmd.render_type in NEEDS_STATISTICS:
        stats = workflow.load_code_statistics(cmd.code_stats, loaded)
    if cmd.render_type == "fitting":
        summary = workflow.run_fitting(cmd, loaded, stats, device)
        save_config(workflow.resolved_options(cmd, loaded), summary["out_dir"], "fit_config.txt")
        _print_summary(summary)
        return 0
    runners = {"rendering": lambda: modes.run_rendering(cmd, loaded),
               "rendering_modulation": lambda: modes.run_modulation(cmd, loaded, stats),
               "expression": lambda: modes.run_expression(cmd, loaded),
               "swap": lambda: modes.run_swap(cmd, loaded, stats),
               "random": lambda: modes.run_random(cmd, loaded, stats),
               "morph": lambda: modes.run_morph(cmd, loaded),
               "mesh": lambda: modes.run_mesh(cmd, loaded)}
    for path in runners[cmd.render_type]():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
