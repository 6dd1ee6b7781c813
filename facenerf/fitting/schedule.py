"""The fit's schedule: resolution levels over the iterations and one learning rate per variable group.

Resolution (coarse-to-fine, reference §6): level ``k`` (image resized by ``scales[k]``) runs
from iteration ``round(starts[k] * iterations)`` to the next level's start. The default
``scales = (0.25, 0.5, 1.0)``, ``starts = (0, 0.3, 0.5)`` is the original's 128 / 256 / 512 px
at iterations 0 / 600 / 1000 of 2000.

Learning rates: every group (``shape``, ``expression``, ``texture``, ``rotation``,
``translation``, ``gain``) has its own initial rate and decays smoothly and independently,
``lr(i) = lr0 * final_ratio ** (i / iterations)``. The original instead divided by 1.1 in
steps and then forced every optimiser to 5e-4 after iteration 1500 (reference §11.18).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from facenerf.errors import FaceNerfError

VARIABLE_GROUPS = ("shape", "expression", "texture", "rotation", "translation", "gain")


def default_learning_rates() -> dict[str, float]:
    """Initial Adam rates per group (codes follow the original's 2e-3 / 4e-3; pose and gain are ours)."""
    return {"shape": 4e-3, "expression": 4e-3, "texture": 2e-3, "rotation": 1e-3,
            "translation": 2e-3, "gain": 2e-3}


@dataclass(frozen=True)
class FitSchedule:
    """Iterations, resolution levels and learning-rate decay of one fit."""

    iterations: int = 2000
    scales: tuple[float, ...] = (0.25, 0.5, 1.0)
    starts: tuple[float, ...] = (0.0, 0.3, 0.5)
    learning_rates: dict[str, float] = field(default_factory=default_learning_rates)
    final_ratio: float = 0.1

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise FaceNerfError(f"--num_iterations must be at least 1, got {self.iterations}")
        if not self.scales or len(self.scales) != len(self.starts):
            raise FaceNerfError(f"--fit_scales ({len(self.scales)} values) and --fit_level_starts "
                                f"({len(self.starts)} values) must have the same, non-zero length")
        if any(not 0 < s <= 1 for s in self.scales):
            raise FaceNerfError(f"--fit_scales must lie in (0, 1], got {list(self.scales)}")
        if self.starts[0] != 0 or any(b <= a for a, b in zip(self.starts, self.starts[1:])) \
                or self.starts[-1] >= 1:
            raise FaceNerfError(f"--fit_level_starts must start at 0 and increase below 1, got {list(self.starts)}")
        if not 0 < self.final_ratio <= 1:
            raise FaceNerfError(f"--lr_final_ratio must lie in (0, 1], got {self.final_ratio}")
        unknown = set(self.learning_rates) - set(VARIABLE_GROUPS)
        if unknown:
            raise ValueError(f"unknown learning-rate groups {sorted(unknown)}")

    def level_starts(self) -> list[int]:
        """First iteration of every level."""
        return [int(round(s * self.iterations)) for s in self.starts]

    def level(self, iteration: int) -> int:
        """Index of the resolution level active at ``iteration``."""
        index = 0
        for k, start in enumerate(self.level_starts()):
            if iteration >= start:
                index = k
        return index

    def lr_factor(self, iteration: int) -> float:
        """Multiplier of every initial rate at ``iteration`` (1 at 0, ``final_ratio`` at the end)."""
        progress = min(max(iteration / self.iterations, 0.0), 1.0)
        return self.final_ratio ** progress

    def lr(self, group: str, iteration: int) -> float:
        """Learning rate of ``group`` at ``iteration``."""
        return self.learning_rates[group] * self.lr_factor(iteration)
