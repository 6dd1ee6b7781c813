"""Cost of the engine and the metrics, each against a straightforward reference in the same run.

1. Training loop: ``Trainer.fit`` (schedule, per-optimiser backward, finite-loss check, window
   logging to the text log and TensorBoard, one checkpoint at the end; no progress bar) vs a bare
   ``for`` loop of ``zero_grad / forward / backward / Adam step`` on an identical model and the
   same batches. Reported as steps/s of each; the ratio is the loop's overhead.
2. Two-optimiser step: one forward and two ``backward(inputs=...)`` (the Trainer's way) vs two
   forwards each followed by a full ``backward()`` (the common GAN recipe).
3. SSIM: one depthwise 11x11 Gaussian convolution over the stacked statistics
   ``[x, y, x*x, y*y, x*y]`` vs the textbook five separate filter calls, images/s on 64x64 batches.

Usage:  .venv/bin/python benchmarks/engine_overhead.py [--steps 200] [--repeats 5] [--cpu-only]
Writes benchmarks/results/engine_overhead_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facenerf.io import write_text  # noqa: E402
from facenerf.engine.trainer import Trainer, TrainerConfig  # noqa: E402
from facenerf.metrics import gaussian_window, ssim  # noqa: E402
from facenerf.runtime import describe_device  # noqa: E402


class Regressor(nn.Module):
    """An MLP regression sized so one step costs a few milliseconds on a CPU."""

    def __init__(self, width: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 3))

    def param_groups(self):
        return {"main": [{"params": list(self.parameters()), "lr": 1e-3}]}

    def training_step(self, batch, step):
        x, y = batch
        loss = ((self.net(x) - y) ** 2).mean()
        return {"main": loss}, {"psnr": float(-10 * torch.log10(loss.detach()))}


def make_batches(n: int, device: torch.device) -> list:
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(4096, 32, generator=g).to(device), torch.rand(4096, 3, generator=g).to(device))
            for _ in range(n)]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_trainer(steps: int, device: torch.device) -> float:
    batches = make_batches(steps, device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainerConfig(out_dir=Path(out), max_steps=steps, lr_decay_steps=steps, log_every=50,
                            eval_every=0, save_every=0, progress=False)
        trainer = Trainer(Regressor(), lambda step: batches[step], cfg, device, {})
        _sync(device)
        start = time.perf_counter()
        trainer.fit()
        _sync(device)
        return steps / (time.perf_counter() - start)


def time_bare_loop(steps: int, device: torch.device) -> float:
    batches = make_batches(steps, device)
    torch.manual_seed(0)
    model = Regressor().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _sync(device)
    start = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        losses, _ = model.training_step(batches[step], step)
        losses["main"].backward()
        optimizer.step()
    _sync(device)
    return steps / (time.perf_counter() - start)


class GanToy(nn.Module):
    def __init__(self, width: int = 256):
        super().__init__()
        self.gen = nn.Sequential(nn.Linear(32, width), nn.ReLU(), nn.Linear(width, 64))
        self.disc = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 1))

    def losses(self, z, real):
        fake = self.gen(z)
        d_fake, d_real = self.disc(fake), self.disc(real)
        return (F.softplus(-d_fake).mean(),
                F.softplus(d_fake).mean() + F.softplus(-d_real).mean())


def time_gan(steps: int, device: torch.device, shared_forward: bool) -> float:
    """Ours: one forward, ``backward(inputs=...)`` per optimiser. Reference: the common recipe of a
    discriminator pass on ``fake.detach()`` with a full ``backward()``, then a generator pass."""
    torch.manual_seed(0)
    model = GanToy().to(device)
    opt_g = torch.optim.Adam(model.gen.parameters(), 1e-4)
    opt_d = torch.optim.Adam(model.disc.parameters(), 1e-4)
    z, real = torch.rand(2048, 32, device=device), torch.rand(2048, 64, device=device)
    g_params, d_params = list(model.gen.parameters()), list(model.disc.parameters())
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        if shared_forward:
            loss_g, loss_d = model.losses(z, real)
            loss_g.backward(inputs=g_params, retain_graph=True)
            loss_d.backward(inputs=d_params)
            opt_g.step()
            opt_d.step()
        else:
            fake = model.gen(z)
            d_fake = model.disc(fake.detach())
            loss_d = F.softplus(d_fake).mean() + F.softplus(-model.disc(real)).mean()
            loss_d.backward()
            opt_d.step()
            loss_g = F.softplus(-model.disc(fake)).mean()
            loss_g.backward()
            opt_g.step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def reference_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Textbook SSIM: five separate 11x11 depthwise Gaussian filter calls (same window, 'valid' region)."""
    w1 = gaussian_window(11, 1.5, device=x.device)
    w2 = (w1[:, None] * w1[None, :]).expand(3, 1, 11, 11)
    blur = lambda t: F.conv2d(t, w2, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def time_ssim(fn, device: torch.device, repeats: int = 20) -> float:
    x, y = torch.rand(16, 3, 64, 64, device=device), torch.rand(16, 3, 64, 64, device=device)
    fn(x, y)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x, y)
    _sync(device)
    return 16 * repeats / (time.perf_counter() - start)


def compare(ours_fn, reference_fn, repeats: int) -> tuple[float, float]:
    """Medians of interleaved runs (ours, reference, ours, ...) after one untimed warm-up of each,
    so that a busy machine slows both sides alike."""
    ours_fn(), reference_fn()
    ours, reference = [], []
    for _ in range(repeats):
        ours.append(ours_fn())
        reference.append(reference_fn())
    return statistics.median(ours), statistics.median(reference)


def run(device: torch.device, steps: int, repeats: int) -> list[dict]:
    rows = []
    ours, ref = compare(lambda: time_trainer(steps, device), lambda: time_bare_loop(steps, device), repeats)
    rows.append({"case": "training loop (MLP regression)", "unit": "steps/s", "ours": ours, "reference": ref})
    ours, ref = compare(lambda: time_gan(steps, device, True), lambda: time_gan(steps, device, False), repeats)
    rows.append({"case": "two-optimiser step (GAN toy)", "unit": "steps/s", "ours": ours, "reference": ref})
    with torch.no_grad():
        ours, ref = compare(lambda: time_ssim(lambda a, b: ssim(a, b, reduction="none"), device),
                            lambda: time_ssim(reference_ssim, device), repeats)
    rows.append({"case": "SSIM 16x3x64x64", "unit": "images/s", "ours": ours, "reference": ref})
    for row in rows:
        row["ratio"] = row["ours"] / row["reference"]
    return rows


def write_results(rows: list[dict], device: torch.device, args) -> Path:
    name = describe_device(device)
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(device), "device_name": name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "steps": args.steps, "repeats": args.repeats,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    stem = out_dir / f"engine_overhead_{device.type}"
    write_text(stem.with_suffix(".json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Engine and metrics overhead on {name} ({meta['threads']} torch threads)", "",
             f"torch {torch.__version__}, device `{device}`, {args.steps} steps, median of {args.repeats} "
             f"interleaved runs; ratio = ours / reference (above 1 = ours faster); load average at the end "
             f"{meta['load_average_at_end']}", "",
             "| case | ours | reference | ratio |", "|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['case']} | {row['ours']:.4g} {row['unit']} | {row['reference']:.4g} {row['unit']} "
                     f"| x{row['ratio']:.2f} |")
    write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    return stem.with_suffix(".md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    for device in devices:
        path = write_results(run(device, args.steps, args.repeats), device, args)
        print(path.read_text())


if __name__ == "__main__":
    main()
