"""The one place that touches optional accelerators. Nothing here imports them at import time.

Pure PyTorch ("torch") is always available; it is the reference and what the CPU tests run.
An accelerator is imported only when a caller asks for it by name, or, for the hash-grid
lookup, when "auto" finds CUDA tensors and an installed triton (:func:`hash_grid_kernel`).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import torch

from facenerf.errors import FaceNerfError

# backend name -> (python module to import, what it accelerates, pip hint)
OPTIONAL_BACKENDS = {
    "tcnn": ("tinycudann", "fused hash-grid encoding and MLPs (CUDA only)",
             "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"),
    "triton": ("triton", "hash-grid lookup kernels (CUDA; on the CPU only under TRITON_INTERPRET=1)",
               "pip install triton"),
}
BACKEND_CHOICES = ("torch", "auto") + tuple(OPTIONAL_BACKENDS)


def _installed(module: str) -> bool:
    """Whether ``module`` can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> dict[str, dict[str, object]]:
    """Report what can run here: ``{name: {"available": bool, "detail": str}}``.

    "torch" is always available. An optional backend counts as available when its module is
    installed and CUDA is usable (it is not imported to find out).
    """
    cuda = torch.cuda.is_available()
    report: dict[str, dict[str, object]] = {
        "torch": {"available": True, "detail": f"PyTorch {torch.__version__} (cuda: {cuda})"}
    }
    for name, (module, what, _hint) in OPTIONAL_BACKENDS.items():
        installed = _installed(module)
        report[name] = {
            "available": installed and cuda,
            "detail": f"{what}; module {module!r} {'installed' if installed else 'not installed'}",
        }
    return report


def resolve_backend(name: str = "torch") -> str:
    """Turn a config value into the backend to use.

    ``"torch"`` -> torch; ``"auto"`` -> the first available optional backend, else torch; an
    explicit optional backend that cannot run raises :class:`FaceNerfError` with the fix.
    """
    if name not in BACKEND_CHOICES:
        raise FaceNerfError(f"unknown backend {name!r}: use one of {', '.join(BACKEND_CHOICES)}")
    report = available_backends()
    if name == "auto":
        return next((n for n in OPTIONAL_BACKENDS if report[n]["available"]), "torch")
    if name != "torch" and not report[name]["available"]:
        hint = OPTIONAL_BACKENDS[name][2]
        raise FaceNerfError(
            f"backend {name!r} is not usable here ({report[name]['detail']}, cuda "
            f"{torch.cuda.is_available()}): set backend = torch, or install it on a CUDA machine ({hint})"
        )
    return name


def load_backend(name: str) -> ModuleType:
    """Import and return an optional backend's module (only ever called on request)."""
    if name not in OPTIONAL_BACKENDS:
        raise FaceNerfError(f"{name!r} is not an optional backend: use one of {', '.join(OPTIONAL_BACKENDS)}")
    resolve_backend(name)
    return importlib.import_module(OPTIONAL_BACKENDS[name][0])


HASH_GRID_IMPLEMENTATIONS = ("auto", "torch", "triton")
_HASH_GRID_KERNEL = "facenerf.core.kernels.hash_grid_triton"


def _triton_problem(device: torch.device, in_dim: int, x_grad: bool) -> str | None:
    """Why the Triton hash-grid kernel cannot serve this call, or None when it can."""
    if not _installed("triton"):
        return "triton is not installed (pip install triton, on a CUDA machine)"
    interpreted = os.environ.get("TRITON_INTERPRET", "") == "1"
    if device.type != "cuda" and not (device.type == "cpu" and interpreted):
        return f"tensors are on {device.type}, the kernel needs CUDA (or TRITON_INTERPRET=1 with CPU tensors)"
    if in_dim != 3:
        return f"the kernel handles 3-D grids only, this one is {in_dim}-D"
    if x_grad:
        return "the kernel computes no gradient with respect to the points, and they require one"
    return None


def hash_grid_kernel(implementation: str, device: torch.device | str, in_dim: int = 3,
                     x_grad: bool = False) -> ModuleType | None:
    """The hash-grid lookup kernel module for tensors on ``device``, or None for PyTorch.

    ``implementation``: "torch" -> None; "triton" -> the Triton kernel module, or
    :class:`FaceNerfError` saying why it cannot run; "auto" -> the kernel for CUDA tensors of
    a 3-D grid when triton is installed and the points need no gradient, else None.
    """
    if implementation not in HASH_GRID_IMPLEMENTATIONS:
        raise FaceNerfError(f"unknown hash-grid implementation {implementation!r}: use one of "
                            f"{', '.join(HASH_GRID_IMPLEMENTATIONS)}")
    if implementation == "torch":
        return None
    device = torch.device(device)
    problem = _triton_problem(device, in_dim, x_grad)
    if implementation == "auto" and (problem is not None or device.type != "cuda"):
        return None
    if problem is not None:
        raise FaceNerfError(f"hash-grid implementation 'triton' cannot run here: {problem}; "
                            "set implementation = torch (or auto)")
    try:
        return importlib.import_module(_HASH_GRID_KERNEL)
    except ImportError as exc:
        raise FaceNerfError(f"triton is installed but its kernel module failed to import ({exc}): "
                            "set implementation = torch, or repair the triton install") from exc
