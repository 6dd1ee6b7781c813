"""``python -m facenerf.tools.video_evaluate DATASET TRUTH``: a processed talking-head dataset against the
synthetic generator's ground truth (:func:`facenerf.preprocess.video.evaluate.compare`).

    python -m facenerf.tools.video_evaluate data/talk_tracked data/talk/ground_truth --out eval.json
"""

from __future__ import annotations

from facenerf.cli import make_parser, parse_args
from facenerf.errors import run_cli


def build_parser():
    parser = make_parser("Compare a processed talking-head dataset with the generator's ground truth.",
                         prog="python -m facenerf.tools.video_evaluate")
    parser.add_argument("dataset", help="folder written by data_utils/process.py")
    parser.add_argument("truth", help="ground_truth folder written by python -m facenerf.tools.talking_head")
    parser.add_argument("--out", default=None, help="write the numbers to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    from facenerf.io import write_json
    from facenerf.preprocess.video.evaluate import compare

    args = parse_args(build_parser(), argv)
    result = compare(args.dataset, args.truth)
    rot = result["rotation_error_deg"]
    print(f"{result['frames']} frames: head rotation error mean {rot['mean']:.2f} deg, median {rot['median']:.2f}, "
          f"max {rot['max']:.2f} (constant head-frame offset removed: mean {rot['aligned_mean']:.2f}, max "
          f"{rot['aligned_max']:.2f}); landmarks {result['landmark_error_px']:.2f} px; head mask IoU "
          f"{result['head_mask_iou']:.3f}, person mask IoU {result['person_mask_iou']:.3f}, true neck called "
          f"background {100 * result['neck_missed']:.1f}%")
    for name, r in result["correlation"].items():
        print(f"  {name:16s} r = {'constant in the truth' if r is None else f'{r:+.3f}'}")
    if args.out:
        write_json(args.out, result, indent=1)
    return 0


if __name__ == "__main__":
    run_cli(main)
