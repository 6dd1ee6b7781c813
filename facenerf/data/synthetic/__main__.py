"""``python -m facenerf.data.synthetic``: write a synthetic FaceScape-format dataset.

    python -m facenerf.data.synthetic --ids 4 --out data/tiny --texture_size 512
"""

from __future__ import annotations

from facenerf.cli import add_options, from_namespace, make_parser, namespace_values, parse_args
from facenerf.data.synthetic.writer import GeneratorSettings
from facenerf.errors import run_cli
from facenerf.runtime import RunSettings


def build_parser():
    parser = make_parser("Write procedural heads in the FaceScape layouts (TU models, raw scans, predef files, "
                         "shape codes).", prog="python -m facenerf.data.synthetic")
    add_options(parser, GeneratorSettings)
    add_options(parser, RunSettings, only=("progress",))
    return parser


def main(argv: list[str] | None = None) -> int:
    from facenerf.config import save_config
    from facenerf.data.synthetic.writer import generate_dataset
    from facenerf.io import ensure_writable_dir

    args = parse_args(build_parser(), argv)
    cfg = from_namespace(GeneratorSettings, args, progress=from_namespace(RunSettings, args).progress)
    out = ensure_writable_dir(cfg.out)
    info = generate_dataset(cfg)
    save_config(namespace_values(args), out, "synthetic_config.txt")
    print(f"wrote {cfg.n_ids} identities x {len(cfg.expression_indices)} expressions "
          f"({info['vertices']} vertices, {info['faces']} faces, {info['uvs']} UVs) to {out}")
    print(f"  TU models:  {out / 'facescape_trainset'}")
    if cfg.write_raw:
        print(f"  raw scans:  {out / 'models_raw'}   (align with: python align_clip.py --data {out})")
    print(f"  side files: {out / 'predef'}, {out / 'factors_id.npy'}, {out / 'landmarks_3d.npy'}")
    return 0


if __name__ == "__main__":
    run_cli(main)
