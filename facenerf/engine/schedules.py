"""Learning-rate schedules: exponential decay with an optional linear warm-up and linear decay to zero.

The learning rate of every parameter group is ``lr0 * factor(step)`` where ``lr0`` is the
group's own initial rate (kept in the group as ``"initial_lr"``), so groups with different
base rates decay together without losing their ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ExponentialSchedule:
    """``factor(step) = warm(step) * rate ** (step / decay_steps) * linear(step)``.

    ``decay_steps=None`` disables decay (factor 1). ``warmup_steps > 0`` ramps the factor
    linearly from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps.
    ``linear_steps > 0`` then falls linearly from 1 to 0 over ``linear_steps`` steps starting at
    ``linear_start`` (pix2pixHD's ``niter`` / ``niter_decay``).
    MoFaNeRF's schedule is ``rate=0.1, decay_steps=lrate_decay * 1500`` (750,000 steps).
    """

    decay_steps: int | None = None
    rate: float = 0.1
    warmup_steps: int = 0
    linear_start: int = 0
    linear_steps: int = 0

    def factor(self, step: int) -> float:
        value = 1.0
        if self.decay_steps:
            value = float(self.rate) ** (step / float(self.decay_steps))
        if self.warmup_steps > 0 and step < self.warmup_steps:
            value *= (step + 1) / float(self.warmup_steps)
        if self.linear_steps > 0 and step > self.linear_start:
            value *= max(0.0, 1.0 - (step - self.linear_start) / float(self.linear_steps))
        return value


def remember_initial_lrs(optimizer: torch.optim.Optimizer) -> None:
    """Store each group's current ``lr`` as ``initial_lr`` unless it already has one."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])


def apply_schedule(optimizer: torch.optim.Optimizer, schedule: ExponentialSchedule, step: int) -> list[float]:
    """Set every group's ``lr = initial_lr * schedule.factor(step)``; return the new rates."""
    factor = schedule.factor(step)
    rates = []
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
        rates.append(group["lr"])
    return rates
