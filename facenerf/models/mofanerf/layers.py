"""Building blocks of the MoFaNeRF MLPs: code-conditioned linear layers and skip trunks.

A conditioning code (shape, texture or expression) is constant over all samples of one face,
so a layer whose input is ``[code, feature]`` is evaluated as
``feature @ W_feature^T + (code @ W_code^T + b)``: the code's contribution is computed once
per call (``[1, out]``) instead of concatenating a ``[M, code_dim]`` copy to every sample.
The weight keeps the concatenated layout ``[out, code_dim + feature_dim]`` so checkpoints
match the released model's layer shapes exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

RELU_GAIN = math.sqrt(2.0)


def xavier_linear(in_dim: int, out_dim: int, gain: float = RELU_GAIN) -> nn.Linear:
    """``nn.Linear`` with Xavier-uniform weights (``gain``) and PyTorch's default bias."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight, gain=gain)
    return layer


def split_linear(layer: nn.Linear, parts: list[Tensor | None]) -> Tensor:
    """Apply ``layer`` to the concatenation of ``parts`` without materialising it.

    Args:
        layer: Linear whose ``in_features`` equals the summed widths of ``parts``.
        parts: tensors ``[M_i, d_i]`` (``M_i`` is 1 for a code shared by all rows, or M);
            ``None`` entries are skipped (their width must then be 0).
    Returns:
        ``[M, out]`` equal to ``layer(torch.cat(parts, -1))`` with codes broadcast over rows.
        Shared codes are folded into the bias once; per-row parts are accumulated with fused
        ``addmm`` calls on column blocks of the weight (no copy of the inputs or weight).
    """
    weight = layer.weight
    offset, shared, per_row = 0, layer.bias, []
    for part in parts:
        if part is None:
            continue
        width = part.shape[-1]
        w = weight[:, offset:offset + width]
        offset += width
        if part.shape[0] == 1:
            shared = F.linear(part, w) + shared  # [1, out]: a per-face code
        else:
            per_row.append((part, w))
    if offset != weight.shape[1]:
        raise ValueError(f"inputs of width {offset} for a layer expecting {weight.shape[1]}")
    if not per_row:
        return shared
    out = None
    for part, w in per_row:
        out = torch.addmm(shared if out is None else out, part, w.t())
    return out


class SkipTrunk(nn.Module):
    """``depth`` Linear+ReLU layers of width ``width`` with one skip connection.

    The input is ``[code, feature]`` (``[feature, code]`` with ``code_first=False``); after the
    first ``skip`` layers the block input is concatenated back in front of the hidden state
    (``[input, hidden]``) and the remaining ``depth - skip`` layers follow. ReLU follows every layer, including the last.
    ``skip = None`` (or ``skip >= depth``) gives a plain stack of ``depth`` layers.

    Parameters are named ``block1.{i}`` and ``block2.{i}`` (the released model's
    ``linears1.Linear{i}`` and ``linears2.Linear{i}``).
    """

    def __init__(self, code_dim: int, feature_dim: int, width: int, depth: int, skip: int | None,
                 code_first: bool = True):
        super().__init__()
        self.code_dim, self.feature_dim, self.width = code_dim, feature_dim, width
        self.code_first = code_first
        n_first = depth if skip is None or skip >= depth else skip
        in_dim = code_dim + feature_dim
        self.block1 = nn.ModuleList(
            [xavier_linear(in_dim, width)] + [xavier_linear(width, width) for _ in range(n_first - 1)])
        second = depth - n_first
        self.block2 = nn.ModuleList(
            ([xavier_linear(in_dim + width, width)] + [xavier_linear(width, width) for _ in range(second - 1)])
            if second > 0 else [])

    def forward(self, feature: Tensor, code: Tensor | None = None) -> Tensor:
        """
        Args:
            feature: ``[M, feature_dim]`` per-sample input.
            code: ``[1, code_dim]`` per-face code, or ``[M, code_dim]``, or None when code_dim == 0.
        Returns:
            ``[M, width]`` hidden feature (after ReLU).
        """
        if feature.dim() != 2:
            raise ValueError(f"expected a [M, {self.feature_dim}] feature, got {tuple(feature.shape)}")
        inputs = [code, feature] if self.code_first else [feature, code]
        h = None
        for blocks in (self.block1, self.block2):  # iterated, not sliced: a ModuleList slice builds a new
            for i, layer in enumerate(blocks):     # ModuleList per call (Python time in every small chunk)
                if i == 0:
                    h = torch.relu_(split_linear(layer, inputs if h is None else inputs + [h]))
                else:
                    h = torch.relu_(F.linear(h, layer.weight, layer.bias))
        return h

    def linear_layers(self) -> list[nn.Linear]:
        """All Linear layers in evaluation order."""
        return list(self.block1) + list(self.block2)
