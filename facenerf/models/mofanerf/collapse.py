"""A warning, given once, when MoFaNeRF training collapses instead of learning.

Two signs are watched at every training step:

* the fine network's PSNR stays far below the coarse network's (both see the same rays, and the
  fine one samples more densely, so in a healthy run it is the better one);
* the predicted colours of a batch hardly vary while the target colours do: the network paints
  every pixel alike (e.g. a black image).

Either sign has to persist for ``patience`` consecutive steps after ``warmup`` steps. Shape
codes far from unit scale with ``standardise_codes = false`` (the fine network then collapsed
to black at 8-10 dB while the coarse one reached 22 dB) and a learning rate that is too high
are the usual causes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CollapseMonitor:
    """Counts consecutive collapsed steps; :meth:`update` returns the warning text once."""

    gap_db: float = 5.0          # fine PSNR at least this far below the coarse PSNR ...
    flat_std: float = 0.01       # ... or predicted colours spread less than this
    target_std: float = 0.05     # while the target colours spread more than this
    patience: int = 200          # consecutive steps before warning
    warmup: int = 100            # steps ignored at the start
    streak: int = 0
    warned: bool = False

    def update(self, step: int, psnr_fine: float, psnr_coarse: float | None, pred_std: float,
               target_std: float) -> str | None:
        """Record one step; the warning message the first time the collapse has lasted ``patience`` steps."""
        gap = (psnr_coarse - psnr_fine) if psnr_coarse is not None else 0.0
        flat = pred_std < self.flat_std and target_std > self.target_std
        if step < self.warmup or not (gap > self.gap_db or flat):
            self.streak = 0
            return None
        self.streak += 1
        if self.warned or self.streak < self.patience:
            return None
        self.warned = True
        if gap > self.gap_db:
            sign = (f"its fine network's PSNR has stayed {gap:.1f} dB below the coarse network's for "
                    f"{self.streak} steps (now fine {psnr_fine:.1f} dB, coarse {psnr_coarse:.1f} dB)")
        else:
            sign = (f"its predicted colours have barely varied for {self.streak} steps (spread {pred_std:.4f} "
                    f"against {target_std:.3f} in the targets): it renders constant images")
        return (f"training has collapsed at step {step}: {sign}. Check that standardise_codes = true "
                "(shape codes far from unit scale cause this), lower lrate, or restart from an earlier "
                "checkpoint")
