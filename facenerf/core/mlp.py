"""A plain multilayer perceptron with optional input skip connections, plus activations."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

INITS = ("xavier_relu", "xavier", "kaiming", "default")


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(clamp(x, -15, 15)) (keeps density gradients finite)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(-15.0, 15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """exp with a clamped gradient, the density activation of torch-ngp style fields."""
    return _TruncExp.apply(x)


class TruncExp(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return trunc_exp(x)


def make_activation(name: str | None) -> nn.Module:
    """Activation module by name: relu, leaky_relu (slope 0.2), softplus, sigmoid, tanh, silu,
    trunc_exp, or ``None`` / "none" for identity."""
    table = {
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "softplus": nn.Softplus,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "silu": nn.SiLU,
        "trunc_exp": TruncExp,
        "none": nn.Identity,
    }
    key = "none" if name is None else name
    if key not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(table)}")
    return table[key]()


def init_linear(layer: nn.Linear, init: str) -> None:
    """Initialise a Linear layer's weight in place.

    ``xavier_relu``: Xavier-uniform with ReLU gain sqrt(2) (MoFaNeRF); ``xavier``: gain 1;
    ``kaiming``: Kaiming-uniform for ReLU; ``default``: PyTorch's own. Biases keep PyTorch's
    default initialisation in every mode.
    """
    if init == "xavier_relu":
        nn.init.xavier_uniform_(layer.weight, gain=math.sqrt(2.0))
    elif init == "xavier":
        nn.init.xavier_uniform_(layer.weight, gain=1.0)
    elif init == "kaiming":
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    elif init != "default":
        raise ValueError(f"unknown init {init!r}; choose one of {INITS}")


class MLP(nn.Module):
    """``n_hidden_layers`` hidden Linear+activation layers followed by one output Linear.

    Layer ``i`` (``0 <= i < n_hidden_layers``) is a hidden layer; layer ``n_hidden_layers`` is
    the output layer. For every ``i`` in ``skips`` (``1 <= i <= n_hidden_layers``) the input of
    layer ``i`` is ``concat([x, h])`` - the network input first, then the previous layer's
    output. ``out_activation`` (a name, default none) is applied to the output. Layers live
    in ``self.layers`` (an ``nn.ModuleList``), in order.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        n_hidden_layers: int,
        out_dim: int,
        skips: Sequence[int] = (),
        activation: str = "relu",
        out_activation: str | None = None,
        bias: bool = True,
        init: str = "xavier_relu",
    ):
        super().__init__()
        if n_hidden_layers < 0:
            raise ValueError("n_hidden_layers must be >= 0")
        bad = [s for s in skips if not 1 <= s <= n_hidden_layers]
        if bad:
            raise ValueError(f"skip layers {bad} out of range 1..{n_hidden_layers}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.skips = tuple(sorted(set(skips)))
        self.layers = nn.ModuleList()
        for i in range(n_hidden_layers + 1):
            fan_in = in_dim if i == 0 else hidden_dim
            if i in self.skips:
                fan_in += in_dim
            width = out_dim if i == n_hidden_layers else hidden_dim
            layer = nn.Linear(fan_in, width, bias=bias)
            init_linear(layer, init)
            self.layers.append(layer)
        self.activation = make_activation(activation)
        self.out_activation = make_activation(out_activation)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in_dim] -> [N, out_dim]."""
        h = x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            if i in self.skips:
                h = torch.cat([x, h], dim=-1)
            h = layer(h)
            h = self.activation(h) if i < last else self.out_activation(h)
        return h
