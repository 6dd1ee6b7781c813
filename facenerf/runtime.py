"""Device selection, seeding and mixed precision. Called by scripts, never at import."""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from facenerf.config import option
from facenerf.errors import FaceNerfError

AMP_MODES = ("none", "bf16", "fp16")


@dataclass(frozen=True)
class RunSettings:
    """Where and how a command runs; each command offers the keys it reads."""

    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    seed: int = option(0, "random seed")
    threads: int = option(0, "CPU threads for torch (0 = torch's default; 1 is fastest for tiny models on busy CPUs)")
    amp: str = option("none", "mixed precision on CUDA (bf16 on capable GPUs)", choices=AMP_MODES)
    progress: bool = option(True, "show a progress bar when the output is a terminal")

    def apply_threads(self) -> None:
        """Limit torch's CPU threads when ``threads`` is set."""
        if self.threads > 0:
            torch.set_num_threads(self.threads)


def select_device(name: str = "auto") -> torch.device:
    """Return the device to run on: ``"auto"`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise FaceNerfError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FaceNerfError(f"device {name!r} requested but CUDA is not available: use --device cpu")
    return device


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux; else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe_device(device: torch.device) -> str:
    """What benchmark results name as their device: the GPU's name, or the CPU's model with its
    core count and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def native_bf16() -> bool:
    """Whether the current GPU has bf16 arithmetic (from Ampere on; emulated bf16 counts as none)."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device``, or ``None`` when running in fp32.

    On CPU only ``bf16`` is honoured; ``fp16`` falls back to fp32 there. On a GPU without bf16
    (before Ampere) ``bf16`` runs as fp16, as the training loop does (with loss scaling there).
    """
    if amp not in AMP_MODES:
        raise FaceNerfError(f"unknown amp mode {amp!r}: use one of {', '.join(AMP_MODES)}")
    if amp == "none":
        return None
    if amp == "bf16":
        return torch.bfloat16 if device.type != "cuda" or native_bf16() else torch.float16
    return torch.float16 if device.type == "cuda" else None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes that can still be allocated on ``device``: the kernel's ``MemAvailable`` for the CPU
    (None where there is no ``/proc/meminfo``), the driver's free memory for a GPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def host_floats(values: Mapping[str, "torch.Tensor | float"]) -> dict[str, float]:
    """``values`` (numbers or one-element tensors) as plain floats, in their order.

    The tensors of each device are stacked there and copied to the host in one transfer (never
    moved between devices): on a GPU each ``float(tensor)`` waits for the queued work, so
    converting a step's scalars one by one would stall the launch queue once per scalar. Values
    go through float64, so counts and float64 values keep their precision.
    """
    out: dict[str, float] = {}
    on_device: dict[torch.device, dict[str, torch.Tensor]] = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor):
            on_device.setdefault(value.device, {})[key] = value
        else:
            out[key] = float(value)
    for group in on_device.values():
        stacked = torch.stack([value.detach().reshape(()).to(torch.float64) for value in group.values()])
        out.update(zip(group, stacked.tolist()))
    return {key: out[key] for key in values}


def autocast(device: torch.device, amp: str):
    """A context manager running the enclosed ops in the requested mixed precision."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
