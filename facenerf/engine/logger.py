"""Training logs: TensorBoard scalars and images plus a plain text log file.

TensorBoard is imported only when the first event is written, so importing the engine stays
cheap; without TensorBoard installed the text log still works. On a distributed run only the
rank-0 process writes (pass ``enabled=False`` elsewhere). A log that cannot be written (full
disk, read-only folder) raises :class:`~facenerf.errors.OutputError`; closing never raises.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from facenerf.io import output_error

TEXT_LOG_NAME = "train_log.txt"
TENSORBOARD_DIR = "tensorboard"


def format_scalars(values: Mapping[str, float]) -> str:
    """``{"loss": 0.01234, "psnr": 23.1}`` -> ``"loss 0.01234 | psnr 23.1"`` (4 significant digits)."""
    parts = []
    for key, value in values.items():
        value = float(value)
        text = f"{value:.4g}" if math.isfinite(value) else str(value)
        parts.append(f"{key} {text}")
    return " | ".join(parts)


def _as_hwc_image(image: Any) -> np.ndarray:
    """torch/numpy ``[H, W, 3]`` (or ``[H, W]``) float in [0, 1] -> float32 numpy ``[H, W, 3]``."""
    if hasattr(image, "detach"):
        image = image.detach().float().cpu().numpy()
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return np.clip(array, 0.0, 1.0)


class RunLogger:
    """Writes ``<out_dir>/train_log.txt`` and TensorBoard events under ``<out_dir>/tensorboard``."""

    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True, echo=None):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.use_tensorboard = tensorboard
        self.echo = echo
        self._writer = None
        self._tb_failed = False
        self._start = time.time()

    @property
    def text_path(self) -> Path:
        return self.out_dir / TEXT_LOG_NAME

    @property
    def tensorboard_dir(self) -> Path:
        return self.out_dir / TENSORBOARD_DIR

    def _tb(self):
        """The SummaryWriter, created on first use; ``None`` if TensorBoard is unavailable."""
        if not (self.enabled and self.use_tensorboard) or self._tb_failed:
            return None
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                self._tb_failed = True
                self.text(f"tensorboard unavailable ({err}); writing the text log only")
                return None
            try:
                self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
            except OSError as err:
                raise output_error(self.tensorboard_dir, "TensorBoard log", err) from err
        return self._writer

    def _tb_call(self, method: str, *args, **kwargs) -> None:
        """Call a SummaryWriter method; a write failure becomes one OutputError line."""
        writer = self._tb()
        if writer is None:
            return
        try:
            getattr(writer, method)(*args, **kwargs)
        except OSError as err:
            raise output_error(self.tensorboard_dir, "TensorBoard log", err) from err

    def text(self, line: str) -> None:
        """Append one line (prefixed with elapsed time) to the text log and echo it if asked."""
        if not self.enabled:
            return
        stamped = f"[{time.time() - self._start:8.1f}s] {line}"
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.text_path, "a", encoding="utf-8") as stream:
                stream.write(stamped + "\n")
        except OSError as err:
            raise output_error(self.text_path, "training log", err) from err
        if self.echo is not None:
            self.echo(stamped)

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """Log scalars to TensorBoard as ``<prefix><name>``."""
        for key, value in values.items():
            self._tb_call("add_scalar", f"{prefix}{key}", float(value), global_step=step)

    def images(self, step: int, images: Mapping[str, Any], prefix: str = "") -> None:
        """Log ``[H, W, 3]`` float images in [0, 1] to TensorBoard."""
        for key, image in images.items():
            self._tb_call("add_image", f"{prefix}{key}", _as_hwc_image(image), global_step=step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._tb_call("flush")

    def close(self) -> None:
        """Close the event file; a failure here (e.g. a full disk) is ignored, the run's own error wins."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except (OSError, RuntimeError, ValueError):  # best effort: the events written so far stay readable
                pass
