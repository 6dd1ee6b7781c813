"""The one place that touches optional accelerators. Nothing here imports them at import time.

Pure PyTorch ("torch") is always available and is the default everywhere; it is what the
CPU tests run. An accelerator is imported only when a caller asks for it by name.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import torch

from facenerf.errors import FaceNerfError

# backend name -> (python module to import, what it accelerates, pip hint)
OPTIONAL_BACKENDS = {
    "tcnn": ("tinycudann", "fused hash-grid encoding and MLPs (CUDA only)",
             "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch"),
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
