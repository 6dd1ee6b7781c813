"""MLP: skip wiring (input first), MoFaNeRF trunk shapes, initialisations, activations."""

import math

import pytest
import torch

from facenerf.core.mlp import MLP, make_activation, trunc_exp


def test_skip_connection_concatenates_input_first():
    torch.manual_seed(0)
    mlp = MLP(in_dim=5, hidden_dim=8, n_hidden_layers=3, out_dim=2, skips=(2,))
    x = torch.randn(4, 5)
    h = torch.relu(mlp.layers[0](x))
    h = torch.relu(mlp.layers[1](h))
    h = torch.relu(mlp.layers[2](torch.cat([x, h], dim=-1)))
    expected = mlp.layers[3](h)
    assert torch.allclose(mlp(x), expected)


def test_mofanerf_density_trunk_shapes():
    # skipMLP(D=8, W=256) on [beta (50), h (256)]: 5 layers, concat, 3 layers, ReLU on the last too
    trunk = MLP(306, 256, n_hidden_layers=7, out_dim=256, skips=(5,), out_activation="relu")
    assert [layer.in_features for layer in trunk.layers] == [306, 256, 256, 256, 256, 562, 256, 256]
    assert (trunk(torch.randn(3, 306)) >= 0).all()


def test_xavier_relu_init_bounds_and_spread():
    torch.manual_seed(0)
    mlp = MLP(256, 256, n_hidden_layers=1, out_dim=256, init="xavier_relu")
    weight = mlp.layers[0].weight.detach()
    bound = math.sqrt(2.0) * math.sqrt(6.0 / (256 + 256))
    assert float(weight.abs().max()) <= bound + 1e-7
    assert float(weight.std()) == pytest.approx(bound / math.sqrt(3.0), rel=0.02)
    plain = MLP(256, 256, 1, 256, init="xavier").layers[0].weight.detach()
    assert float(plain.std()) == pytest.approx(bound / math.sqrt(6.0), rel=0.02)


def test_no_bias_and_activations():
    mlp = MLP(3, 4, 2, 1, bias=False, out_activation="sigmoid")
    assert all(layer.bias is None for layer in mlp.layers)
    out = mlp(torch.randn(10, 3))
    assert ((out > 0) & (out < 1)).all()
    assert isinstance(make_activation(None), torch.nn.Identity)
    with pytest.raises(ValueError):
        make_activation("gelu-ish")
    with pytest.raises(ValueError):
        MLP(3, 4, 2, 1, skips=(5,))


def test_trunc_exp_clamps_gradient_only():
    x = torch.tensor([0.5, 20.0, -20.0], requires_grad=True)
    y = trunc_exp(x)
    assert torch.allclose(y, torch.exp(x.detach()))
    y.sum().backward()
    assert torch.allclose(x.grad, torch.exp(torch.tensor([0.5, 15.0, -15.0])))
