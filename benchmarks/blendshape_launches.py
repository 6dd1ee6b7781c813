"""NeRFBlendShape frame render: how many PyTorch operations one frame costs, per way of splitting it.

On a GPU each eager PyTorch operation costs a kernel launch and some microseconds of Python and
driver time, whatever its size, so at NeRFBlendShape's few samples per pixel the operation count
of a frame, not its arithmetic, bounds the frame rate. This script counts, on any device, the
top-level ATen operations of one held-out frame (the hash-grid lookup counted as one call, as
the Triton kernel runs it on CUDA) for three splits of the same render:

* ``cpu``: what a CPU runs - image chunks of 16,384 rays, field calls of at most
  ``CPU_POINT_CHUNK`` points (cache-sized);
* ``gpu, 16k-ray chunks``: field calls on all points of a round at once (as on a GPU), image
  chunks of 16,384 rays;
* ``gpu, one call``: what ``NeRFBlendShape.march_settings`` now asks for on a GPU with the memory
  for it - the whole frame in one render call.

The images must agree (the split changes no sample). Times are process CPU time on the CPU and
synchronised wall time on CUDA. Command (exact), on the head ``make demo`` trains:

    python benchmarks/blendshape_launches.py --ckpt demo_out/logs/blendshape_head --data demo_out/talk

Results go to ``benchmarks/results/blendshape_launches_<cpu|cuda>.{json,md}``.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.cli import make_parser, parse_args  # noqa: E402
from facenerf.errors import run_cli  # noqa: E402
from facenerf.runtime import describe_device, select_device  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


@contextlib.contextmanager
def lookup_as_one_call():
    """Profiler scope ``HASH_LOOKUP`` around the field's hash-grid lookup."""
    import facenerf.models.blendshape.field as field_module

    original = field_module.encode_hash_grid

    def scoped(*args, **kwargs):
        with torch.profiler.record_function("HASH_LOOKUP"):
            return original(*args, **kwargs)

    field_module.encode_hash_grid = scoped
    try:
        yield
    finally:
        field_module.encode_hash_grid = original


def top_level_ops(render) -> tuple[int, int, torch.Tensor]:
    """``(operations, lookups, image)``: ATen operations not inside another one or a lookup."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        image = render()

    def counted(event) -> bool:
        if not (event.name.startswith("aten::") or event.name == "HASH_LOOKUP"):
            return False
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::") or parent.name == "HASH_LOOKUP":
                return False
            parent = parent.cpu_parent
        return True

    events = [e for e in prof.events() if counted(e)]
    return len(events), sum(e.name == "HASH_LOOKUP" for e in events), image


def timed(render, device: torch.device, repeat: int) -> float:
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = clock()
        render()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, clock() - start)
    return best


def splits(model, device: torch.device) -> dict:
    """name -> (MarchSettings, points per field call on this device or None for all)."""
    from facenerf.core.renderer import DEFAULT_CHUNK_RAYS

    base = model.march_settings(training=False)
    return {"cpu": (replace(base, chunk_rays=DEFAULT_CHUNK_RAYS), "cpu"),
            "gpu, 16k-ray chunks": (replace(base, chunk_rays=DEFAULT_CHUNK_RAYS), None),
            "gpu, one call": (replace(base, chunk_rays=1 << 20), None)}


def measure(args, device: torch.device) -> dict:
    import facenerf.core.packed as packed
    from facenerf.core.rays import image_rays
    from facenerf.core.renderer import render_image_marched
    from facenerf.models.blendshape.testing import load_tested_head
    from facenerf.models.blendshape.options import build_parser, run_config_from_args

    cli = run_config_from_args(parse_args(build_parser(), [str(args.data), "--workspace", str(args.ckpt), "--test",
                                                           "--device", str(device), "--progress", "false"]))
    model, data, path, _ = load_tested_head(cli, args.ckpt if Path(args.ckpt).is_file() else "")
    model.eval()
    K = data.intrinsics.scaled(args.size / data.intrinsics.width)
    rays = image_rays(K, data.val.poses[0].to(device).float(), data.near, data.far,
                      data.pixel_center * args.size / data.intrinsics.width)
    head = model.field.bind(data.val.coefficients[0].to(device).float())
    rows, images, cpu_chunk = {}, {}, packed.CPU_POINT_CHUNK
    for name, (settings, points) in splits(model, device).items():
        packed.CPU_POINT_CHUNK = cpu_chunk if points == "cpu" else 1 << 40
        try:
            def render():
                with torch.no_grad():
                    return render_image_marched(rays, head, model.grid, settings, args.size, args.size)["rgb"]

            render()  # warm-up
            with lookup_as_one_call():
                ops, lookups, image = top_level_ops(render)
            seconds = timed(render, device, args.repeat)
        finally:
            packed.CPU_POINT_CHUNK = cpu_chunk
        images[name] = image.float().cpu()
        rows[name] = {"chunk_rays": settings.chunk_rays, "top_level_ops": ops, "lookups": lookups,
                      "seconds": round(seconds, 4)}
    first = next(iter(images.values()))
    for name, image in images.items():
        rows[name]["max_abs_diff_vs_cpu_split"] = float((image - first).abs().max())
    return {"device_type": device.type, "device": describe_device(device), "torch": torch.__version__,
            "checkpoint": str(path), "size": args.size, "splits": rows}


def markdown(r: dict, argv: list[str]) -> str:
    lines = [f"# NeRFBlendShape frame render: operations per frame on {r['device']}", "",
             f"`python benchmarks/blendshape_launches.py {' '.join(argv)}`", "",
             f"torch {r['torch']}; head {r['checkpoint']}; one held-out frame at {r['size']}^2. Operations are "
             "top-level ATen calls, the hash-grid lookup counted as one (the Triton kernel's launch on CUDA).", "",
             f"Times are {'synchronised wall time' if r['device_type'] == 'cuda' else 'process CPU time, one thread'} "
             "on this device; on a CPU the cache-sized split is the fastest, which is why a CPU keeps it.", "",
             "| split | rays per render call | operations per frame | lookups | time (s) | max abs diff |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, row in r["splits"].items():
        lines.append(f"| {name} | {row['chunk_rays']} | {row['top_level_ops']} | {row['lookups']} | "
                     f"{row['seconds']} | {row['max_abs_diff_vs_cpu_split']:.2g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from facenerf.io import write_text

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser("Operations per NeRFBlendShape frame render, per way of splitting it.",
                         prog="benchmarks/blendshape_launches.py")
    parser.add_argument("--ckpt", required=True, help="main_nerf.py checkpoint, or its workspace (newest checkpoint)")
    parser.add_argument("--data", required=True, help="the dataset the head was trained on")
    parser.add_argument("--size", type=int, default=512, help="frame side")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=2, help="timed renders per split (best kept)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parse_args(parser, argv)
    device = select_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    result = measure(args, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / f"blendshape_launches_{device.type}.json", json.dumps(result, indent=1) + "\n")
    write_text(out / f"blendshape_launches_{device.type}.md", markdown(result, argv))
    print(markdown(result, argv))
    return 0


if __name__ == "__main__":
    run_cli(main)
