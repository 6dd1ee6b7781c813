"""Devices for the device-aware tests: the CPU always, CUDA where a GPU is visible.

The suite hides GPUs (``conftest.py`` sets ``CUDA_VISIBLE_DEVICES=""`` unless it is set), so
the CUDA cases are skipped with a reason by default. On a GPU machine
``CUDA_VISIBLE_DEVICES=0 python -m pytest -m cuda tests`` runs only them (add
``--continue-on-collection-errors`` where some requirements, e.g. dlib or pyrender, are missing).
"""

from __future__ import annotations

import pytest
import torch

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU visible "
                                "(CUDA_VISIBLE_DEVICES=0 python -m pytest -m cuda tests)")
ON_CUDA = pytest.param("cuda", marks=[pytest.mark.cuda, needs_cuda])
DEVICES = ["cpu", ON_CUDA]
