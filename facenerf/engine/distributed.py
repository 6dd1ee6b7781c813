"""Small helpers that make the trainer correct under ``torch.distributed`` and free otherwise.

The trainer never wraps a model in ``DistributedDataParallel``. When a process group is
initialised with more than one rank, it broadcasts rank 0's parameters and buffers once at
the start and averages each optimiser's gradients across ranks (one flattened all-reduce per
optimiser) before clipping and stepping. Only rank 0 writes checkpoints and logs.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch
from torch import nn


def init_distributed(device_name: str) -> torch.device:
    """Join the process group when started by ``torchrun`` and pick this rank's device.

    Without ``torchrun`` (``WORLD_SIZE`` unset or 1) this is :func:`facenerf.runtime.select_device`.
    NCCL on GPUs, gloo on CPUs. Pair with :func:`finish_distributed`.
    """
    from facenerf.runtime import select_device

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return select_device(device_name)
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def finish_distributed() -> None:
    """Leave the process group, if one was joined."""
    if _initialised():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if world_size() > 1:
        torch.distributed.barrier()


def ranks_in_sync(module: nn.Module) -> bool:
    """True when every rank holds the same parameters (one all-gather of two checksums)."""
    if world_size() <= 1:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten() for p in module.parameters()])
        position = torch.arange(flat.numel(), dtype=torch.float64, device=flat.device) % 9973 + 1
        checksum = torch.stack([flat.sum(), (flat * position).sum()])  # [2]
    gathered = [torch.zeros_like(checksum) for _ in range(world_size())]
    torch.distributed.all_gather(gathered, checksum)
    return all(torch.allclose(g, gathered[0], rtol=1e-12, atol=0.0) for g in gathered)


def _initialised() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return torch.distributed.get_world_size() if _initialised() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return torch.distributed.get_rank() if _initialised() else 0


def is_main_process() -> bool:
    """True on rank 0 or in a non-distributed run: the process that writes files."""
    return rank() == 0


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare module inside a ``DataParallel``/``DistributedDataParallel`` wrapper (else ``model``)."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers to every rank (no-op when not distributed)."""
    if world_size() <= 1:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(tensor.data, src=src)


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Average ``.grad`` of ``params`` over all ranks with one flattened all-reduce.

    Parameters without a gradient on this rank take part with zeros, so every rank sends the
    same buffer layout.
    """
    size = world_size()
    if size <= 1:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])  # [sum of numels]
    torch.distributed.all_reduce(flat)
    flat /= size
    offset = 0
    for p in params:
        count = p.numel()
        p.grad.copy_(flat[offset:offset + count].view_as(p.grad))
        offset += count
