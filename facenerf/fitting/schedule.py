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

from dataclasses import dataclass

from facenerf.config import option
from facenerf.errors import FaceNerfError

VARIABLE_GROUPS = ("shape", "expression", "texture", "rotation", "translation", "gain")


@dataclass(frozen=True)
class FitSchedule:
    """Iterations, resolution levels and learning-rate decay of one fit (codes follow the
    original's 2e-3 / 4e-3 rates; pose and gain rates are ours)."""

    iterations: int = option(2000, "fitting iterations", key="num_iterations")
    scales: tuple[float, ...] = option((0.25, 0.5, 1.0), "coarse-to-fine resolution factors", key="fit_scales")
    starts: tuple[float, ...] = option((0.0, 0.3, 0.5), "fraction of the iterations at which each resolution "
                                                         "level starts", key="fit_level_starts")
    lr_shape: float = option(4e-3, "Adam rate of the shape code")
    lr_expression: float = option(4e-3, "Adam rate of the expression code")
    lr_texture: float = option(2e-3, "Adam rate of the texture code")
    lr_rotation: float = option(1e-3, "Adam rate of the pose rotation (radians)")
    lr_translation: float = option(2e-3, "Adam rate of the pose shift (scene units)")
    lr_gain: float = option(2e-3, "Adam rate of the log colour gain")
    final_ratio: float = option(0.1, "every rate decays smoothly to this fraction", key="lr_final_ratio")

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
        if group not in VARIABLE_GROUPS:
            raise ValueError(f"unknown learning-rate group {group!r}; use one of {', '.join(VARIABLE_GROUPS)}")
        return getattr(self, f"lr_{group}") * self.lr_factor(iteration)
