"""RefineNet networks: reference parameter counts and key layout, shapes at odd/non-square sizes."""

import pytest
import torch


from facenerf.models.refine.networks import (GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator,
                                             build_generator, count_parameters, crop_padding, pad_to_multiple)


def test_default_generator_matches_reference_count_and_keys():
    g = GlobalGenerator()  # ngf 32, 4 downsamplings, 9 blocks
    assert count_parameters(g) == 45_620_867
    shapes = {k: tuple(v.shape) for k, v in g.state_dict().items()}
    assert shapes["model.1.weight"] == (32, 3, 7, 7)
    assert shapes["model.4.weight"] == (64, 32, 3, 3)
    assert shapes["model.13.weight"] == (512, 256, 3, 3)
    for block in range(16, 25):
        assert shapes[f"model.{block}.conv_block.1.weight"] == (512, 512, 3, 3)
        assert shapes[f"model.{block}.conv_block.5.weight"] == (512, 512, 3, 3)
    assert shapes["model.25.weight"] == (512, 256, 3, 3)  # transposed conv: (in, out, k, k)
    assert shapes["model.34.weight"] == (64, 32, 3, 3)
    assert shapes["model.38.weight"] == (3, 32, 7, 7)
    assert all(k.endswith(("weight", "bias")) for k in shapes)  # instance norm holds nothing


def test_default_discriminator_matches_reference_count_and_keys():
    d = MultiscaleDiscriminator()  # 6 input channels, ndf 64, 3 layers, 2 scales
    assert count_parameters(d) == 5_535_618
    shapes = {k: tuple(v.shape) for k, v in d.state_dict().items()}
    expected = [(64, 6, 4, 4), (128, 64, 4, 4), (256, 128, 4, 4), (512, 256, 4, 4), (1, 512, 4, 4)]
    for scale in range(2):
        for layer, shape in enumerate(expected):
            assert shapes[f"scale{scale}_layer{layer}.0.weight"] == shape
            assert shapes[f"scale{scale}_layer{layer}.0.bias"] == shape[:1]
    assert len(shapes) == 20


@pytest.mark.parametrize("size", [(32, 32), (37, 21), (5, 9), (1, 1)])
@pytest.mark.parametrize("net", ["global", "local"])
def test_generator_keeps_any_input_size(net, size):
    g = build_generator(net, ngf=4, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=1,
                        n_blocks_local=1, residual=False)
    x = torch.rand(2, 3, *size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0  # tanh output


def test_pad_to_multiple_roundtrip_and_centring():
    x = torch.arange(2 * 3 * 37 * 21, dtype=torch.float32).reshape(2, 3, 37, 21)
    padded, pad = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (40, 24)
    assert pad == (1, 2, 1, 2)
    assert torch.equal(crop_padding(padded, pad), x)
    tiny, _ = pad_to_multiple(torch.zeros(1, 3, 3, 3), 4)
    assert tiny.shape[-2:] == (8, 8)  # at least two bottleneck cells for the reflection pads


@pytest.mark.parametrize("net", ["global", "local"])
def test_residual_generator_starts_as_identity(net):
    g = build_generator(net, ngf=4, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1, residual=True)
    x = torch.rand(1, 3, 19, 26) * 2 - 1
    assert torch.allclose(g(x), x)
    original = build_generator(net, ngf=4, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1)
    assert count_parameters(original) == count_parameters(g)
    assert not torch.allclose(original(x), x, atol=1e-2)


def test_local_enhancer_layout():
    g = LocalEnhancer(ngf=4, n_downsample_global=2, n_blocks_global=1, n_local_enhancers=2, n_blocks_local=1)
    names = {k.split(".")[0] for k in g.state_dict()}
    assert names == {"model", "model1_1", "model1_2", "model2_1", "model2_2"}
    assert g.size_multiple == 16
    assert g.state_dict()["model2_2.5.weight"].shape == (3, 4, 7, 7)  # full-resolution head: ngf -> RGB


@pytest.mark.parametrize("size", [(64, 64), (37, 21)])
def test_discriminator_outputs_per_scale(size):
    d = MultiscaleDiscriminator(input_nc=6, ndf=4, n_layers=3, num_D=2)
    out = d(torch.rand(1, 6, *size))
    assert len(out) == 2 and all(len(scale) == 5 for scale in out)
    h, w = size
    for scale in out:
        # three stride-2 convs (k4, p2): n -> n // 2 + 1; two stride-1 convs: n -> n + 1
        for _ in range(3):
            h, w = h // 2 + 1, w // 2 + 1
        assert scale[-1].shape == (1, 1, h + 2, w + 2)
        assert [f.shape[1] for f in scale] == [4, 8, 16, 32, 1]
        h, w = (size[0] + 1) // 2, (size[1] + 1) // 2  # the second scale sees a 3x3/2 average pool


def test_reference_patch_map_sizes_at_512():
    d = MultiscaleDiscriminator(input_nc=6, ndf=2, n_layers=3, num_D=2)
    with torch.no_grad():
        out = d(torch.zeros(1, 6, 512, 512))
    assert out[0][-1].shape[-2:] == (67, 67)
    assert out[1][-1].shape[-2:] == (35, 35)
