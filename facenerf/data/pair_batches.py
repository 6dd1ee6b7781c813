"""Loading RefineNet pairs (:mod:`facenerf.data.pairs`) as tensors, in deterministic batches by step.

:class:`PairDataset` reads one pair as ``{"A": render [3, H, W], "B": ground truth [3, H, W]}``;
:class:`PairBatches` serves ``batches(step)`` for the Trainer, so a resumed run sees the batches
the interrupted one would have.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from facenerf.data.pairs import ImagePair
from facenerf.errors import FaceNerfError
from facenerf.io import read_image


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` float numpy -> ``[3, H, W]`` float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


class PairDataset(torch.utils.data.Dataset):
    """Loads pairs as ``{"A": [3, H, W], "B": [3, H, W], "key": str}`` float in [0, 1].

    Both images are resized to ``size = (width, height)`` (``None`` keeps the render's size and
    resizes the ground truth to it). With ``cache=True`` decoded images stay in memory.
    An unreadable file raises :class:`FaceNerfError` naming it.
    """

    def __init__(self, pairs: list[ImagePair], size: tuple[int, int] | None = None, cache: bool = False):
        if not pairs:
            raise FaceNerfError("no image pairs to load: check that the render and ground-truth "
                                "folders hold images with matching relative paths")
        self.pairs = list(pairs)
        self.size = size
        self._cache: dict[int, dict] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        pair = self.pairs[index]
        render = read_image(pair.render, self.size)
        target = read_image(pair.target, self.size or (render.shape[1], render.shape[0]))
        item = {"A": image_to_tensor(render), "B": image_to_tensor(target), "key": pair.key}
        if self._cache is not None:
            self._cache[index] = item
        return item


class PairBatches:
    """Deterministic shuffled batches by step: ``batches(step) -> {"A", "B": [B, 3, H, W], "keys"}``.

    Position ``p = step * batch_size + j`` takes item ``perm_e[p % n]`` of epoch ``e = p // n``,
    where ``perm_e`` is a permutation seeded by ``(seed, e)``; so a resumed run sees exactly the
    batches the interrupted one would have. With ``flip`` a pair is mirrored left-right (both
    images alike) when the epoch's coin for it says so. A pair that fails to load is reported
    once through ``report`` and replaced by the next loadable one of the same permutation; if
    none loads, :class:`FaceNerfError`.

    With ``workers > 0`` the next ``workers`` batches are decoded in background threads while
    the current step trains (image decoding releases the GIL); the batches are the same.
    """

    def __init__(self, dataset: PairDataset, batch_size: int, seed: int = 0, flip: bool = False,
                 report: Callable[[str], None] = print, workers: int = 0):
        if batch_size < 1:
            raise FaceNerfError(f"batch size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size, self.seed, self.flip = dataset, batch_size, seed, flip
        self.report, self.workers = report, workers
        self.bad: set[int] = set()
        self._lock = threading.Lock()
        self._epoch: tuple[int, list[int], list[bool]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future] = {}

    def _epoch_order(self, epoch: int) -> tuple[list[int], list[bool]]:
        cached = self._epoch
        if cached is None or cached[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(len(self.dataset), generator=generator).tolist()
            coins = (torch.rand(len(self.dataset), generator=generator) < 0.5).tolist()
            cached = self._epoch = (epoch, order, coins)
        return cached[1], cached[2]

    def _load(self, position: int) -> dict:
        n = len(self.dataset)
        order, coins = self._epoch_order(position // n)
        for offset in range(n):
            slot = (position + offset) % n
            index = order[slot]
            if index in self.bad:
                continue
            try:
                item = self.dataset[index]
            except FaceNerfError as err:
                with self._lock:
                    if index not in self.bad:
                        self.bad.add(index)
                        self.report(f"skipping pair {self.dataset.pairs[index].key}: {err}")
                continue
            if self.flip and coins[slot]:
                item = {**item, "A": item["A"].flip(-1), "B": item["B"].flip(-1)}
            return item
        raise FaceNerfError("none of the image pairs could be read: check the dataset folders")

    def batch(self, step: int) -> dict:
        """The batch of ``step``, loaded in the calling thread."""
        first = step * self.batch_size
        return _collate([self._load(first + j) for j in range(self.batch_size)])

    def __call__(self, step: int) -> dict:
        if self.workers <= 0:
            return self.batch(step)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pairs")
        for stale in [k for k in self._pending if k < step or k > step + self.workers]:
            self._pending.pop(stale).cancel()
        future = self._pending.pop(step, None) or self._pool.submit(self.batch, step)
        for ahead in range(step + 1, step + 1 + self.workers):
            if ahead not in self._pending:
                self._pending[ahead] = self._pool.submit(self.batch, ahead)
        return future.result()


def _collate(items: list[dict]) -> dict:
    return {"A": torch.stack([i["A"] for i in items]), "B": torch.stack([i["B"] for i in items]),
            "keys": [i["key"] for i in items]}
