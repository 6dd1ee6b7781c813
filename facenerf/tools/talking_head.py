"""``python -m facenerf.tools.talking_head``: a synthetic talking-head video with its NeRFBlendShape
dataset and ground truth (:mod:`facenerf.data.synthetic.talking_head` describes every file).

    python -m facenerf.tools.talking_head --out data/talk --frames 200 --size 96
"""

from __future__ import annotations

from facenerf.cli import add_options, from_namespace, make_parser, namespace_values, parse_args
from facenerf.errors import run_cli


def build_parser():
    from facenerf.data.synthetic.talking_head import TalkingHeadSettings
    from facenerf.runtime import RunSettings

    parser = make_parser("Render a synthetic talking-head video with its NeRFBlendShape dataset and ground truth.",
                         prog="python -m facenerf.tools.talking_head")
    add_options(parser, TalkingHeadSettings)
    parser.add_argument("--gl", choices=("auto", "egl", "osmesa"), default="auto", help="headless OpenGL platform")
    add_options(parser, RunSettings, only=("progress",))
    return parser


def main(argv: list[str] | None = None) -> int:
    from facenerf.config import save_config
    from facenerf.data.synthetic import blendshapes as bs
    from facenerf.data.synthetic.talking_head import TalkingHeadSettings, generate_talking_head
    from facenerf.io import ensure_writable_dir
    from facenerf.preprocess.training.gl import select_gl_platform
    from facenerf.runtime import RunSettings

    args = parse_args(build_parser(), argv)
    cfg = from_namespace(TalkingHeadSettings, args, progress=from_namespace(RunSettings, args).progress)
    cfg.check()
    out = ensure_writable_dir(cfg.out)
    select_gl_platform(args.gl)
    info = generate_talking_head(cfg)
    save_config(namespace_values(args), out, "talking_head_config.txt")
    print(f"wrote {info['frames']} frames at {cfg.size}x{cfg.size} ({len(bs.BLENDSHAPES)} blendshapes) to {out}")
    print(f"  video:        {info['video']}")
    if cfg.dataset:
        print(f"  dataset:      {info['train']} training + {info['val']} held-out frames "
              f"(transforms_train.json / transforms_val.json)")
    print(f"  ground truth: {out / 'ground_truth'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
