"""What a fit optimises and how it is scored.

:class:`FitVariables` holds the free variables: shape code ``beta``, expression code ``eps``
(before ISM, as the learned codes are), texture code ``alpha``, a rigid pose correction
(:class:`~facenerf.fitting.pose.PoseCorrection`) and a colour gain. The gain multiplies the
rendered colour before it is compared with the photo: ``gain = exp(log_gain)``, one value
(``gain_mode = "scalar"``) or one per RGB channel (``"rgb"``), or fixed at 1 (``"none"``).

:func:`fit_loss` is the objective:

    photometric(gain * render, target)                         L1 (default) or MSE over rays
  + w_shape   * 0.5 * mean(((beta  - mu_beta)  / std_beta)^2)     Gaussian prior (code statistics)
  + w_texture * 0.5 * mean(((alpha - mu_alpha) / std_alpha)^2)    Gaussian prior (code statistics)
  + w_expr    * min_k mean((eps - e_k)^2) / var(e)                 pull towards the nearest learned code
  + w_gain    * mean(log_gain^2)                                   keeps the gain near 1

The original fitted with the L1 term alone (reference §11.17). The rendering for the loss is
the core's hierarchical pass (:func:`facenerf.core.renderer.render_rays`), see
:class:`facenerf.fitting.fitter.Fitter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from facenerf.config import option
from facenerf.fitting.pose import PoseCorrection
from facenerf.fitting.stats import CodeStatistics

GAIN_MODES = ("rgb", "scalar", "none")
PHOTOMETRIC_LOSSES = ("l1", "mse")


@dataclass(frozen=True)
class FitWeights:
    """Weights of the objective's terms (see the module docstring)."""

    photometric: str = option("l1", "photometric loss", choices=PHOTOMETRIC_LOSSES)
    shape_prior: float = option(1e-3, "weight of the Gaussian shape prior", key="prior_shape")
    texture_prior: float = option(1e-3, "weight of the Gaussian texture prior", key="prior_texture")
    expression_prior: float = option(1e-3, "weight of the pull towards the nearest learned expression code",
                                     key="prior_expression")
    gain_prior: float = option(1e-2, "weight of the pull of the gain towards 1", key="prior_gain")


class FitVariables(nn.Module):
    """The free variables of one fit, initialised deterministically.

    Args:
        stats: code statistics; ``beta`` and ``alpha`` start at their means.
        expression_init: ``[E]`` starting ``eps`` (a learned code, neutral by default).
        c2w_0: ``[4, 4]`` initial camera pose.
        pose_parametrisation: ``"axis_angle"`` or ``"6d"``.
        gain_mode: ``"rgb"``, ``"scalar"`` or ``"none"``.
    """

    def __init__(self, stats: CodeStatistics, expression_init: Tensor, c2w_0: Tensor,
                 pose_parametrisation: str = "axis_angle", gain_mode: str = "rgb"):
        super().__init__()
        if gain_mode not in GAIN_MODES:
            raise ValueError(f"gain_mode must be one of {GAIN_MODES}, got {gain_mode!r}")
        self.gain_mode = gain_mode
        self.shape = nn.Parameter(stats.shape_mean.detach().float().clone())  # [S]
        self.expression = nn.Parameter(expression_init.detach().float().reshape(-1).clone())  # [E]
        self.texture = nn.Parameter(stats.texture_mean.detach().float().clone())  # [T]
        self.pose = PoseCorrection(c2w_0, pose_parametrisation)
        self.log_gain = nn.Parameter(torch.zeros(3 if gain_mode == "rgb" else 1),
                                     requires_grad=gain_mode != "none")  # [3] or [1]

    def gain(self) -> Tensor:
        """``[1]`` or ``[3]`` positive colour gain."""
        return torch.exp(self.log_gain)

    def groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per learning-rate group (names of :data:`schedule.VARIABLE_GROUPS`)."""
        return {"shape": [self.shape], "expression": [self.expression], "texture": [self.texture],
                "rotation": [self.pose.rotation], "translation": [self.pose.translation],
                "gain": [self.log_gain]}

    def load_values(self, shape: Tensor, expression: Tensor, texture: Tensor, rotation: Tensor,
                    translation: Tensor, gain: Tensor) -> None:
        """Set every variable (e.g. from a fit file when resuming)."""
        with torch.no_grad():
            self.shape.copy_(shape.reshape(-1))
            self.expression.copy_(expression.reshape(-1))
            self.texture.copy_(texture.reshape(-1))
            self.pose.rotation.copy_(rotation.reshape(-1))
            self.pose.translation.copy_(translation.reshape(-1))
            self.log_gain.copy_(torch.log(gain.reshape(-1).clamp_min(1e-6)).expand_as(self.log_gain))


def nearest_code_distance(code: Tensor, learned: Tensor) -> Tensor:
    """``min_k mean((code - learned_k)^2) / mean per-dimension variance of learned`` (scalar)."""
    scale = learned.var(dim=0, unbiased=False).mean().clamp_min(1e-6) if learned.shape[0] > 1 \
        else learned.new_tensor(1.0)
    return ((code[None] - learned) ** 2).mean(dim=-1).min() / scale


def gaussian_prior(code: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """``0.5 * mean(((code - mean) / std)^2)`` (scalar)."""
    return 0.5 * (((code - mean) / std) ** 2).mean()


def photometric_loss(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """L1 or MSE between ``pred [N, 3]`` and ``target [N, 3]``."""
    if kind == "l1":
        return (pred - target).abs().mean()
    if kind == "mse":
        return ((pred - target) ** 2).mean()
    raise ValueError(f"photometric loss must be one of {PHOTOMETRIC_LOSSES}, got {kind!r}")


def fit_loss(pred: Tensor, target: Tensor, variables: FitVariables, stats: CodeStatistics,
             learned_expressions: Tensor, weights: FitWeights) -> tuple[Tensor, dict[str, Tensor]]:
    """The objective for one batch of rays.

    Args:
        pred: ``[N, 3]`` rendered colour *before* the gain; target: ``[N, 3]``.
        learned_expressions: ``[K, E]`` the model's learned expression codes.
    Returns:
        ``(total, terms)`` with detached terms ``photometric``, ``mse`` (after gain), the priors.
    """
    shown = pred * variables.gain()
    photo = photometric_loss(shown, target, weights.photometric)
    terms = {
        "shape_prior": gaussian_prior(variables.shape, stats.shape_mean, stats.shape_std),
        "texture_prior": gaussian_prior(variables.texture, stats.texture_mean, stats.texture_std),
        "expression_prior": nearest_code_distance(variables.expression, learned_expressions),
        "gain_prior": (variables.log_gain ** 2).mean(),
    }
    total = photo + weights.shape_prior * terms["shape_prior"] + weights.texture_prior * terms["texture_prior"] \
        + weights.expression_prior * terms["expression_prior"] + weights.gain_prior * terms["gain_prior"]
    out = {k: v.detach() for k, v in terms.items()}
    out["photometric"] = photo.detach()
    out["mse"] = ((shown.detach() - target) ** 2).mean()
    return total, out
