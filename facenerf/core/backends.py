"""The one place that chooses accelerated implementations. Nothing here imports or compiles one
at import time.

Each accelerated component has a pure-PyTorch reference, chosen by an ``implementation``
field and used by every CPU test. Today the component is the multiresolution hash-grid
lookup (:class:`facenerf.core.encodings.HashGridEncoding`):

* ``"torch"`` - :func:`facenerf.core.encodings.hash_grid_encode`, the reference (default);
* ``"compiled"`` - the same function through ``torch.compile`` (Triton kernels on CUDA, C++ on
  CPU), compiled lazily on the first call with ``dynamic=True``; same parameters, values and
  gradients up to float rounding;
* ``"auto"`` - ``"compiled"`` on a CUDA device when Triton is installed, else ``"torch"``.

A new accelerated lookup (e.g. a hand-written kernel) registers here under a new name, keeps
the table layout of the reference, and is compared with it in tests (values and gradients).
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Callable

import torch

from facenerf.errors import FaceNerfError

HASH_GRID_IMPLEMENTATIONS = ("torch", "compiled", "auto")
_COMPILED: dict[str, Callable] = {}


def _installed(module: str) -> bool:
    """Whether ``module`` can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def available_backends() -> dict[str, dict[str, object]]:
    """What can run here: ``{name: {"available": bool, "detail": str}}`` (nothing is imported)."""
    cuda = torch.cuda.is_available()
    triton = _installed("triton")
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")
    return {
        "torch": {"available": True, "detail": f"PyTorch {torch.__version__} (cuda: {cuda})"},
        "compiled": {"available": (cuda and triton) or bool(compiler),
                     "detail": f"torch.compile; triton {'installed' if triton else 'not installed'}, "
                               f"C++ compiler {'found' if compiler else 'not found'}"},
    }


def resolve_implementation(name: str, device: torch.device | str = "cpu") -> str:
    """The implementation to run on ``device`` for a config value; FaceNerfError with the fix
    when it is unknown or cannot run here."""
    if name not in HASH_GRID_IMPLEMENTATIONS:
        raise FaceNerfError(f"unknown implementation {name!r}: use one of {', '.join(HASH_GRID_IMPLEMENTATIONS)}")
    device = torch.device(device)
    if name == "auto":
        return "compiled" if device.type == "cuda" and _installed("triton") else "torch"
    if name == "compiled" and not available_backends()["compiled"]["available"]:
        raise FaceNerfError("implementation 'compiled' cannot run here (no Triton on CUDA, no C++ compiler): "
                            "set implementation = torch")
    return name


def hash_grid_function(name: str, device: torch.device | str = "cpu") -> Callable:
    """The hash-grid lookup ``f(x [N, D], table [P, F], meta) -> [N, L*F]`` for ``name`` on ``device``."""
    from facenerf.core.encodings import hash_grid_encode

    resolved = resolve_implementation(name, device)
    if resolved == "torch":
        return hash_grid_encode
    if "hash_grid" not in _COMPILED:
        _COMPILED["hash_grid"] = torch.compile(hash_grid_encode, dynamic=True)
    return _COMPILED["hash_grid"]
