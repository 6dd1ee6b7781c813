"""The one training loop used by every model in facenerf.

A trainable model is an ``nn.Module`` with

* ``param_groups() -> {optimiser name: [torch param group dicts]}`` (usually ``{"main": [...]}``),
* ``training_step(batch, step) -> (losses per optimiser name, scalars to log)``; scalars may be
  numbers or one-element tensors (copied to the host with the losses in one transfer),
* optionally ``on_step_end(step, scalars)`` (or ``on_step_end(step)``), called after the
  optimiser step with a copy of the step's scalars as floats.

The trainer builds one Adam per optimiser name, back-propagates each optimiser's loss into
that optimiser's parameters only (so a GAN's generator and discriminator losses can come from
one forward pass), applies the exponential learning-rate schedule per group, runs mixed
precision on CUDA, clips gradients, evaluates, logs, writes checkpoints and resumes from the
newest one automatically.

``batches`` is either an iterator yielding one batch per step, or a callable
``batches(step) -> batch``. A callable indexed by the step (or an iterator with
``state_dict()``/``load_state_dict()``) makes a resumed run continue exactly where the
interrupted one stopped; torch's, NumPy's and Python's random states are restored too.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NoReturn

import numpy as np
import torch
from torch import nn

from facenerf.engine import distributed
from facenerf.engine.checkpoint import CheckpointManager, check_compatible, make_payload
from facenerf.engine.logger import RunLogger, format_scalars
from facenerf.engine.schedules import ExponentialSchedule, apply_schedule, remember_initial_lrs
from facenerf.errors import FaceNerfError, OutputError
from facenerf.runtime import AMP_MODES, autocast, host_floats, native_bf16

CHECKPOINT_DIR = "checkpoints"


@dataclass
class TrainerConfig:
    """Loop settings. Steps count completed optimisation steps; cadences ``<= 0`` are off."""

    out_dir: Path
    max_steps: int
    lr_decay_steps: int | None = None
    lr_decay_rate: float = 0.1
    warmup_steps: int = 0
    lr_linear_start: int = 0           # then linear decay to 0 over lr_linear_steps (0 = off)
    lr_linear_steps: int = 0
    amp: str = "none"                  # "none" | "bf16" | "fp16" (CUDA only; CPU runs in fp32)
    grad_clip: float | None = None     # max global L2 norm per optimiser
    log_every: int = 50
    eval_every: int = 1000
    save_every: int = 1000
    keep_last: int = 3
    progress: bool = True
    resume: bool = True
    tensorboard: bool = True
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8


def move_to(batch: Any, device: torch.device) -> Any:
    """Move tensors (and objects with ``.to``, e.g. ``RayBundle``) inside dicts/lists/tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: move_to(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(move_to(value, device) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(value, device) for value in batch)
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    return batch


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU and CUDA random states as checkpoint-safe primitives and tensors."""
    state = {"python": random.getstate(), "numpy": _numpy_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`capture_rng_state` (missing entries are left alone)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class _StopRequest(contextlib.AbstractContextManager):
    """While active (main thread only), SIGINT/SIGTERM ask the loop to stop after the current step.

    A second signal restores the previous handlers and interrupts at once.
    """

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.requested:
            self._restore()
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _restore(self):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __exit__(self, *exc):
        self._restore()
        return False


class Trainer:
    """Runs ``model``'s training steps on ``batches`` until ``cfg.max_steps`` (see the module docstring).

    Args:
        model: the bare trainable module (a DataParallel/DDP wrapper is unwrapped; see
            :mod:`facenerf.engine.distributed` for multi-process training).
        batches: iterator of batches, or ``callable(step) -> batch``.
        cfg: loop settings.
        device: where the model and batches live.
        config: the resolved run configuration (primitives), stored in every checkpoint.
        evaluate: optional ``evaluate(model, step) -> {"scalars": {...}, "images": {name: [H, W, 3]}}``,
            called under ``torch.no_grad()`` with the model in eval mode.
        model_name: stored in checkpoints; resuming refuses a checkpoint of another model.
    """

    def __init__(self, model: nn.Module, batches: Iterator | Callable[[int], Any], cfg: TrainerConfig,
                 device: torch.device, config: Mapping[str, Any] | None = None,
                 evaluate: Callable[[nn.Module, int], dict] | None = None, model_name: str = ""):
        self.model = distributed.unwrap_model(model)
        for method in ("param_groups", "training_step"):
            if not callable(getattr(self.model, method, None)):
                raise TypeError(f"{type(self.model).__name__} has no {method}(); see docs/architecture.md (Engine)")
        if cfg.amp not in AMP_MODES:
            raise FaceNerfError(f"unknown amp mode {cfg.amp!r}: use one of {', '.join(AMP_MODES)}")
        self.cfg = cfg
        self.device = torch.device(device)
        self.model.to(self.device)
        self.config = dict(config or {})
        self.evaluate_fn = evaluate
        self.model_name = model_name or type(self.model).__name__
        self._hook_takes_scalars: bool | None = None  # whether on_step_end takes the scalars (read on first use)
        self.batches = batches if callable(batches) and not hasattr(batches, "__next__") else iter(batches)
        self.step = 0
        self.amp = resolve_amp(cfg.amp, self.device)
        self.optimizers, self.params = self._build_optimizers()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        self.schedule = ExponentialSchedule(cfg.lr_decay_steps, cfg.lr_decay_rate, cfg.warmup_steps,
                                            cfg.lr_linear_start, cfg.lr_linear_steps)
        self.out_dir = Path(cfg.out_dir)
        self.main_process = distributed.is_main_process()
        self.checkpoints = CheckpointManager(self.out_dir / CHECKPOINT_DIR, keep_last=cfg.keep_last)
        self.logger = RunLogger(self.out_dir, enabled=self.main_process, tensorboard=cfg.tensorboard,
                                echo=None if self._bar_shown() else print)
        self._bar = None

    def _build_optimizers(self) -> tuple[dict[str, torch.optim.Optimizer], dict[str, list[torch.Tensor]]]:
        groups_by_name = self.model.param_groups()
        if not groups_by_name:
            raise ValueError(f"{type(self.model).__name__}.param_groups() returned no optimiser")
        optimizers, params, seen = {}, {}, set()
        for name, groups in groups_by_name.items():
            groups = [dict(group) for group in groups]
            for group in groups:
                group["params"] = [p for p in group["params"] if p.requires_grad]
                for p in group["params"]:
                    if id(p) in seen:
                        raise ValueError(f"a parameter appears in two optimiser groups (second in '{name}')")
                    seen.add(id(p))
            groups = [g for g in groups if g["params"]]
            if not groups:
                continue
            optimizer = torch.optim.Adam(groups, betas=tuple(self.cfg.adam_betas), eps=self.cfg.adam_eps)
            remember_initial_lrs(optimizer)
            optimizers[name] = optimizer
            params[name] = [p for group in optimizer.param_groups for p in group["params"]]
        return optimizers, params

    # ------------------------------------------------------------------ one step
    def _next_batch(self, step: int) -> Any:
        if hasattr(self.batches, "__next__"):
            try:
                batch = next(self.batches)
            except StopIteration:
                raise RuntimeError(f"the batch iterator ran out at step {step}; pass an endless iterator "
                                   "or a callable batches(step)") from None
        else:
            batch = self.batches(step)
        return move_to(batch, self.device)

    def _backward(self, losses: Mapping[str, torch.Tensor]) -> None:
        """Back-propagate each optimiser's loss into its own parameters only."""
        unknown = [name for name in losses if name not in self.optimizers]
        if unknown:
            raise KeyError(f"training_step returned losses for unknown optimiser(s) {unknown}; "
                           f"known: {sorted(self.optimizers)}")
        names = list(losses)
        for i, name in enumerate(names):
            loss = self.scaler.scale(losses[name]) if self.scaler is not None else losses[name]
            loss.backward(inputs=self.params[name], retain_graph=i < len(names) - 1)

    def _check_finite(self, loss_values: Mapping[str, float], step: int) -> None:
        """Stop a run whose losses are no longer finite, before its optimisers step."""
        if all(math.isfinite(value) for value in loss_values.values()):
            return
        bad = {key.removeprefix("loss/"): value for key, value in loss_values.items()}
        hint = ", run with amp bf16 or none" if self.amp == "fp16" else ""
        raise FaceNerfError(f"training diverged at step {step} (losses {bad}); lower the learning rate, "
                            f"set grad_clip{hint}, or resume from an earlier checkpoint")

    def _optimizer_steps(self, names: list[str]) -> None:
        for name in names:
            optimizer = self.optimizers[name]
            distributed.average_gradients(self.params[name])
            if self.cfg.grad_clip:
                if self.scaler is not None:
                    self.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(self.params[name], self.cfg.grad_clip)
            if self.scaler is not None:
                self.scaler.step(optimizer)
            else:
                optimizer.step()
        if self.scaler is not None:
            self.scaler.update()

    def train_step(self, batch: Any, step: int) -> tuple[dict[str, float], dict[str, float]]:
        """One optimisation step at ``step`` (0-based); returns the losses and scalars as floats.

        ``training_step``'s scalars may be numbers or one-element tensors: they come to the host
        with the losses in one transfer, after the backward pass is queued (one device sync per step).
        """
        self.model.train()
        for optimizer in self.optimizers.values():
            apply_schedule(optimizer, self.schedule, step)
            optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp):
            losses, scalars = self.model.training_step(batch, step)
        self._backward(losses)
        clash = [key for key in (scalars or {}) if key.startswith("loss/")]
        if clash:
            raise KeyError(f"training_step returned scalars named like losses ({clash}); rename them")
        values = host_floats({**{f"loss/{name}": loss for name, loss in losses.items()}, **(scalars or {})})
        loss_values = {key: values.pop(key) for key in [f"loss/{name}" for name in losses]}
        self._check_finite(loss_values, step)
        self._optimizer_steps(list(losses))
        self._step_end(step, values)
        return loss_values, values

    def _step_end(self, step: int, scalars: dict[str, float]) -> None:
        """The model's optional ``on_step_end(step, scalars)`` (or ``on_step_end(step)``), given a copy."""
        hook = getattr(self.model, "on_step_end", None)
        if not callable(hook):
            return
        if self._hook_takes_scalars is None:  # read the hook's signature once, not every step
            try:
                self._hook_takes_scalars = len(inspect.signature(hook).parameters) >= 2
            except (TypeError, ValueError):
                self._hook_takes_scalars = True
        if self._hook_takes_scalars:
            hook(step, dict(scalars))
        else:
            hook(step)

    # ------------------------------------------------------------------ state
    def state_payload(self) -> dict:
        """The checkpoint payload for the current step (see :mod:`facenerf.engine.checkpoint`)."""
        extra = {"rng": capture_rng_state()}
        if callable(getattr(self.batches, "state_dict", None)):
            extra["data_state"] = self.batches.state_dict()
        return make_payload(
            self.model_name, self.config, self.step, self.model.state_dict(),
            {name: opt.state_dict() for name, opt in self.optimizers.items()},
            self.scaler.state_dict() if self.scaler is not None else None, extra)

    def save(self) -> Path | None:
        """Write a checkpoint for the current step (rank 0 only); returns its path."""
        if not self.main_process:
            return None
        path = self.checkpoints.save(self.step, self.state_payload())
        self.logger.text(f"step {self.step} | checkpoint {path}")
        return path

    def load_state(self, payload: Mapping[str, Any], where: str) -> None:
        """Restore model, optimisers, scaler, random state and step from a checkpoint payload."""
        if payload["model"] != self.model_name:
            raise FaceNerfError(f"{where} holds a '{payload['model']}' model, not '{self.model_name}'; "
                                "use another output directory or delete its checkpoints folder")
        state = payload["model_state"]
        upgrade = getattr(self.model, "upgrade_state_dict", None)
        if callable(upgrade):  # the model fills in entries that its older checkpoints lack
            state = upgrade(state)
        check_compatible(self.model, state, where)
        self.model.load_state_dict(state)
        saved = payload.get("optimizer_state", {})
        if set(saved) != set(self.optimizers):
            raise FaceNerfError(f"{where} has optimisers {sorted(saved)} but the model now has "
                                f"{sorted(self.optimizers)}; start a fresh run in another output directory")
        for name, optimizer in self.optimizers.items():
            try:
                optimizer.load_state_dict(saved[name])
            except (ValueError, KeyError) as err:
                raise FaceNerfError(f"{where}: optimiser '{name}' does not match the model's parameter "
                                    f"groups ({err}); start a fresh run in another output directory") from err
        if self.scaler is not None and payload.get("scaler_state"):
            self.scaler.load_state_dict(payload["scaler_state"])
        extra = payload.get("extra", {})
        restore_rng_state(extra.get("rng", {}))
        if "data_state" in extra and callable(getattr(self.batches, "load_state_dict", None)):
            self.batches.load_state_dict(extra["data_state"])
        self.step = int(payload["step"])

    def _resume(self) -> str | None:
        # read to the CPU: load_state_dict moves the tensors to the parameters' device, except Adam's step
        # counters, which must stay on the CPU (on a GPU each step would sync on every counter's .item())
        payload = self.checkpoints.load_latest(map_location="cpu", warn=self._say)
        if payload is None:
            return None
        self.load_state(payload, payload["path"])
        changed = [k for k in sorted(set(self.config) | set(payload["config"]))
                   if self.config.get(k) != payload["config"].get(k)]
        if changed:
            self._say(f"note: config differs from the checkpoint in {', '.join(changed[:5])}"
                      f"{' ...' if len(changed) > 5 else ''}; continuing with the new values")
        self._say(f"resumed from {payload['path']} at step {self.step}")
        return payload["path"]

    # ------------------------------------------------------------------ loop
    def _bar_shown(self) -> bool:
        """A progress bar is drawn only when asked for and stderr is a terminal (logs get plain lines)."""
        return self.cfg.progress and sys.stderr.isatty()

    def _say(self, line: str) -> None:
        """An event worth showing on the console and in the text log."""
        if not self.main_process:
            return
        self.logger.text(line)
        if self._bar_shown():
            from tqdm import tqdm
            tqdm.write(line)

    def run_evaluation(self) -> dict[str, float]:
        """Call ``evaluate`` (rank 0, eval mode, no grad) and log its scalars and images."""
        if self.evaluate_fn is None or not self.main_process:
            return {}
        self.model.eval()
        with torch.no_grad():
            result = self.evaluate_fn(self.model, self.step) or {}
        self.model.train()
        scalars = {key: float(value) for key, value in result.get("scalars", {}).items()}
        self.logger.scalars(self.step, scalars, prefix="eval/")
        self.logger.images(self.step, result.get("images", {}), prefix="eval/")
        self._say(f"eval step {self.step} | {format_scalars(scalars)}")
        return scalars

    def _log_window(self, window: dict[str, list[float]]) -> None:
        means = {key: sum(values) / len(values) for key, values in window.items() if values}
        lrs = {f"lr/{name}": opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}
        self.logger.scalars(self.step, {**means, **lrs}, prefix="train/")
        self.logger.text(f"step {self.step} | {format_scalars({**means, **lrs})}")
        window.clear()

    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def _stop_on_data_error(self, err: FaceNerfError) -> NoReturn:
        """Save the progress so far, then stop with the data problem and where the progress is."""
        path = self.checkpoints.latest()
        if self.main_process and path != self.checkpoints.path_for(self.step):
            path = self.save()
        where = f"saved in {path}" if path is not None else "not saved (no step was completed)"
        raise FaceNerfError(f"{err}; training stopped at step {self.step}, progress {where}: "
                            "fix the data and run again to resume") from err

    def _batch_or_stop(self) -> Any:
        """The next batch; a data problem (unreadable image, ...) saves a checkpoint and stops."""
        try:
            return self._next_batch(self.step)
        except OutputError:
            raise
        except FaceNerfError as err:
            self._stop_on_data_error(err)

    def _evaluate_or_stop(self) -> dict[str, float]:
        """:meth:`run_evaluation`; a data problem in the held-out views saves a checkpoint and stops."""
        try:
            return self.run_evaluation()
        except OutputError:
            raise
        except FaceNerfError as err:
            self._stop_on_data_error(err)

    def _loop(self, stop: _StopRequest) -> dict:
        from tqdm import tqdm

        cfg, last = self.cfg, {"losses": {}, "scalars": {}, "eval": {}}
        window: dict[str, list[float]] = {}
        saved_at = evaluated_at = -1
        self._bar = tqdm(total=cfg.max_steps, initial=self.step, desc=self.model_name, dynamic_ncols=True,
                         disable=None if cfg.progress and self.main_process else True)
        while self.step < cfg.max_steps:
            losses, scalars = self.train_step(self._batch_or_stop(), self.step)
            self.step += 1
            last["losses"], last["scalars"] = losses, scalars
            for key, value in {**losses, **scalars}.items():
                window.setdefault(key, []).append(value)
            self._bar.update(1)
            self._bar.set_postfix({k.replace("/", "_"): f"{v:.4g}" for k, v in {**losses, **scalars}.items()
                                   if k.startswith("loss/") or k == "psnr"}, refresh=False)
            if self._due(cfg.log_every):
                self._log_window(window)
            if self._due(cfg.eval_every):
                last["eval"], evaluated_at = self._evaluate_or_stop(), self.step
            if self._due(cfg.save_every):
                last["checkpoint"], saved_at = self.save(), self.step
            if stop.requested:
                raise KeyboardInterrupt(f"training stopped at step {self.step}")
        self._bar.close()
        if window:
            self._log_window(window)
        if evaluated_at != self.step:
            last["eval"] = self._evaluate_or_stop()
        if saved_at != self.step and self.checkpoints.latest() != self.checkpoints.path_for(self.step):
            last["checkpoint"] = self.save()
        return last

    def fit(self) -> dict:
        """Train until ``max_steps``, resuming from the newest checkpoint in ``out_dir/checkpoints``.

        Returns ``{"step", "losses", "scalars", "eval", "checkpoint", "resumed_from", "log"}``.
        On SIGINT/SIGTERM (or KeyboardInterrupt) a checkpoint is written before re-raising. A
        :class:`FaceNerfError` from the data (a batch or the held-out views, e.g. an unreadable
        image) also writes a checkpoint, then stops with the problem and the checkpoint's path.
        Temporary files of killed checkpoint writes are removed first.
        """
        if not self.cfg.resume and self.checkpoints.latest() is not None:
            raise FaceNerfError(f"{self.checkpoints.directory} already holds checkpoints of another run; "
                                "choose a new output directory or allow resuming")
        if self.main_process:
            self.checkpoints.clean_temporaries()
        resumed = self._resume() if self.cfg.resume else None
        distributed.broadcast_module(self.model)
        try:
            with _StopRequest() as stop:
                last = self._loop(stop)
        except KeyboardInterrupt:
            if self._bar is not None:
                self._bar.close()
            if self.main_process:
                path = self.checkpoints.latest()
                if path != self.checkpoints.path_for(self.step):
                    path = self.save()
                self._say(f"interrupted at step {self.step}: checkpoint {path}; run again to resume")
            raise
        finally:
            self.logger.close()
        last.setdefault("checkpoint", self.checkpoints.latest())
        return {"step": self.step, **last, "resumed_from": resumed, "log": str(self.logger.text_path)}


def resolve_amp(requested: str, device: torch.device) -> str:
    """The mixed precision the loop runs: ``none`` off CUDA, and fp16 (with loss scaling) instead
    of bf16 on a GPU without bf16 support (with a note)."""
    if device.type != "cuda":
        return "none"
    if requested == "bf16" and not native_bf16():
        if distributed.is_main_process():
            print("note: this GPU has no bf16 support; training with fp16 autocast and loss scaling instead")
        return "fp16"
    return requested
