"""Shared pytest setup: CPU only, one thread per worker (the suite runs with -n 2)."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: the CUDA case of a device-aware test (see tests/devices.py)")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors run fastest on one intra-op thread, and two workers share two cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
