"""RefineNet speed: our path against a straightforward reference of the same computation, same run.

1. Training step (forward + backward of the G and D losses, no optimiser step), images/s:
   ``RefineModel.training_step`` (the discriminator runs ONCE on real and fake pairs batched
   together; each loss back-propagated into its own network, as the Trainer does) vs the
   pix2pixHD recipe (D on real, on detached fake, and again on fake: three calls). Both give the
   same gradients (tests/test_refine_model.py checks this).
2. Generator inference, images/s: ``GlobalGenerator.forward`` (pads odd sizes, crops back,
   optional residual) vs the bare ``nn.Sequential`` it wraps, on a size that needs no padding,
   to show the wrapper costs nothing.

Networks: the reference defaults (ngf 32, 4 downsamplings, 9 blocks; ndf 64, 3 layers, 2
scales) at ``--size`` (default 128 on CPU, 512 on CUDA) and the CPU config of
configs/refine_tiny.txt at 64x64, batch 4.

Usage:  .venv/bin/python benchmarks/refine_speed.py [--size N] [--repeats 5] [--threads 1] [--cpu-only]
Writes benchmarks/results/refine_speed_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facenerf.io import write_text  # noqa: E402
from facenerf.runtime import cpu_model, describe_device  # noqa: E402
from facenerf.models.refine.losses import lsgan_loss  # noqa: E402
from facenerf.models.refine.model import RefineConfig, RefineModel  # noqa: E402

TINY = dict(ngf=16, n_downsample_global=2, n_blocks_global=3, ndf=16)


def reference_losses(model: RefineModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """pix2pixHD's step: D(real), D(fake.detach()) for the D loss, D(fake) again for the G loss."""
    real_a, real_b = batch["A"] * 2 - 1, batch["B"] * 2 - 1
    fake_b = model.netG(real_a)
    pred_real = model.netD(torch.cat([real_a, real_b], 1))
    pred_fake_detached = model.netD(torch.cat([real_a, fake_b.detach()], 1))
    loss_d = 0.5 * (lsgan_loss(pred_fake_detached, False) + lsgan_loss(pred_real, True))
    pred_fake = model.netD(torch.cat([real_a, fake_b], 1))
    loss_g = sum(model.generator_losses(real_b, fake_b, pred_fake, pred_real).values())
    return loss_g, loss_d


def ours_losses(model: RefineModel, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    losses, _ = model.training_step(batch, 0)
    return losses["G"], losses["D"]


def backward(model: RefineModel, loss_g: torch.Tensor, loss_d: torch.Tensor) -> None:
    """Each loss into its own network's parameters only (what the Trainer does)."""
    loss_g.backward(inputs=list(model.netG.parameters()), retain_graph=True)
    loss_d.backward(inputs=list(model.netD.parameters()))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(fns: dict, items: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Interleave the candidates ``repeats`` times; items per second of each one's fastest run."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: items / seconds for name, seconds in best.items()}


def training_case(net: dict, size: int, batch_size: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = RefineModel(RefineConfig(**net)).to(device)
    batch = {"A": torch.rand(batch_size, 3, size, size, device=device),
             "B": torch.rand(batch_size, 3, size, size, device=device)}

    def run(losses_fn):
        def step():
            model.zero_grad(set_to_none=True)
            backward(model, *losses_fn(model, batch))
        return step

    return best_rate({"ours": run(ours_losses), "reference": run(reference_losses)}, batch_size, repeats, device)


@torch.no_grad()
def inference_case(net: dict, size: int, batch_size: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    generator = RefineModel(RefineConfig(**net)).netG.to(device).eval()
    x = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1
    bare = generator.model

    def ours():
        generator(x)

    def reference():
        out = bare(x)
        if generator.residual:
            (x + out).clamp(-1, 1)

    return best_rate({"ours": ours, "reference": reference}, batch_size, repeats, device)


def run_device(device: torch.device, size: int, repeats: int) -> list[dict]:
    cases = [("training step, reference network", {}, size, 1, training_case),
             ("training step, tiny network", TINY, 64, 4, training_case),
             ("generator inference, reference network", {}, size, 1, inference_case),
             ("generator inference, tiny network", TINY, 64, 4, inference_case)]
    rows = []
    for label, net, side, batch, fn in cases:
        rates = fn(net, side, batch, repeats, device)
        rows.append({"case": f"{label} {side}x{side} batch {batch}", "ours_images_per_s": rates["ours"],
                     "reference_images_per_s": rates["reference"], "speedup": rates["ours"] / rates["reference"]})
        print(f"{device.type}: {rows[-1]['case']}: ours {rates['ours']:.3g} img/s, reference "
              f"{rates['reference']:.3g} img/s, x{rows[-1]['speedup']:.2f}", flush=True)
    return rows


def write_results(device: torch.device, rows: list[dict], args, load: float) -> Path:
    name = describe_device(device)
    tag = device.type
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats,
            "cpu": cpu_model(), "load_average_1min_at_start": load}
    write_text(out / f"refine_speed_{tag}.json", json.dumps({**meta, "rows": rows}, indent=2))
    lines = [f"# RefineNet speed on {name}", "",
             f"torch {torch.__version__}; best of {args.repeats} interleaved runs; 1-minute load average at "
             f"start {load:.2f}. Images per second; 'reference' = the same computation written the "
             "straightforward way (see benchmarks/refine_speed.py).", "",
             "| case | ours | reference | speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {r['case']} | {r['ours_images_per_s']:.3g} | {r['reference_images_per_s']:.3g} | "
              f"x{r['speedup']:.2f} |" for r in rows]
    path = out / f"refine_speed_{tag}.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description="RefineNet speed benchmark")
    parser.add_argument("--size", type=int, default=0, help="image side for the reference network (0: 128 CPU, 512 CUDA)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    for device in devices:
        load = os.getloadavg()[0]
        size = args.size or (512 if device.type == "cuda" else 128)
        path = write_results(device, run_device(device, size, args.repeats), args, load)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
