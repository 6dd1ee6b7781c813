"""Import/export of checkpoints in the original MoFaNeRF `.tar` layout (reference §2)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.checkpoints import load_mofanerf, save_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.models.mofanerf.official import (config_from_official, export_official, import_official,
                                               official_to_state_dict, read_official_file)


def _maker(meta: bool, seed: int):
    """Tensor factory: meta tensors (shapes only) or seeded random values."""
    gen = torch.Generator().manual_seed(seed)
    if meta:
        return lambda *shape, scale=0.1: torch.empty(*shape, device="meta")
    return lambda *shape, scale=0.1: torch.randn(*shape, generator=gen) * scale


def official_network(mk, width: int, depth: int, pe: int, view: int, shape: int, tex: int, exp: int) -> dict:
    """An MLP state dict with the original key names (§2.2): skipMLP blocks of 5 + (depth - 5)."""
    sd = {}

    def put(name, out_dim, in_dim):
        sd[name + ".weight"] = mk(out_dim, in_dim, scale=in_dim ** -0.5)
        sd[name + ".bias"] = mk(out_dim)

    put("xyzEncode.linears1.Linear0", width, pe + exp)
    for i in range(1, 4):
        put(f"xyzEncode.linears1.Linear{i}", width, width)
    for trunk, code in (("linear_BiM_xyz", shape), ("linear_uv_xyzBiM", tex)):
        put(f"{trunk}.linears1.Linear0", width, code + width)
        for i in range(1, 5):
            put(f"{trunk}.linears1.Linear{i}", width, width)
        put(f"{trunk}.linears2.Linear0", width, code + 2 * width)
        for i in range(1, depth - 5):
            put(f"{trunk}.linears2.Linear{i}", width, width)
    put("linear_view_xyBMuv.0", width // 2, view + width)
    put("alpha_linear.0", 1, width)
    put("rgb_linear", 3, width // 2)
    return sd


def official_checkpoint(w_coarse=16, w_fine=24, shape=50, tex=256, exp=30,
                        channels=(32, 32, 32, 32, 64, 128, 256), tex_size=512, hidden=512, seed=0,
                        meta=False) -> dict:
    """A checkpoint dict with exactly the released key names; shapes per §2.1-2.5 (depths 8 and 10)."""
    mk = _maker(meta, seed)
    tenc, previous = {}, 3
    for k, ch in enumerate(channels):
        tenc[f"encoder.down1.0.{2 * k}.weight"] = mk(ch, previous, 4, 4, scale=(previous * 16) ** -0.5)
        tenc[f"encoder.down1.0.{2 * k}.bias"] = mk(ch)
        previous = ch
    grid = tex_size >> len(channels)
    tenc["encoder.down2.0.weight"] = mk(hidden, previous * grid * grid, scale=(previous * grid * grid) ** -0.5)
    tenc["encoder.down2.0.bias"] = mk(hidden)
    for head in ("mu", "logstd"):
        tenc[f"encoder.{head}.weight"], tenc[f"encoder.{head}.bias"] = mk(tex, hidden, scale=hidden ** -0.5), mk(tex)
    for i in (0, 2, 4):
        tenc[f"encoder.decoding.{i}.weight"], tenc[f"encoder.decoding.{i}.bias"] = mk(tex, tex, scale=tex ** -0.5), mk(tex)
    ism = {"linears1.Linear0.weight": mk(256, shape, scale=shape ** -0.5), "linears1.Linear0.bias": mk(256)}
    for i in (1, 2, 3):
        ism[f"linears1.Linear{i}.weight"], ism[f"linears1.Linear{i}.bias"] = mk(256, 256, scale=1 / 16), mk(256)
    for head in ("linears_scale", "linears_bias"):
        ism[f"{head}.weight"], ism[f"{head}.bias"] = mk(exp, 256, scale=1 / 16), mk(exp)
    return {"global_step": 600000,
            "network_fn_state_dict": official_network(mk, w_coarse, 8, 63, 27, shape, tex, exp),
            "network_fine_state_dict": official_network(mk, w_fine, 10, 63, 27, shape, tex, exp),
            "network_render_textureEncoder": tenc, "network_render_idSpecific": ism,
            "optimizer_state_dict": {"state": {}, "param_groups": []},
            "expression_latent_codes_sigma": [mk(1, exp, scale=1.0).abs() for _ in range(20)]}


# ---------------------------------------------------------------- reference forward on official keys
def _pe(x, n):
    out = [x]
    for i in range(n):
        out += [torch.sin(2.0 ** i * x), torch.cos(2.0 ** i * x)]
    return torch.cat(out, -1)


def _skip_mlp(sd, prefix, x):
    h = x
    i = 0
    while f"{prefix}.linears1.Linear{i}.weight" in sd:
        h = F.relu(F.linear(h, sd[f"{prefix}.linears1.Linear{i}.weight"], sd[f"{prefix}.linears1.Linear{i}.bias"]))
        i += 1
    if f"{prefix}.linears2.Linear0.weight" in sd:
        h = torch.cat([x, h], -1)
        i = 0
        while f"{prefix}.linears2.Linear{i}.weight" in sd:
            h = F.relu(F.linear(h, sd[f"{prefix}.linears2.Linear{i}.weight"], sd[f"{prefix}.linears2.Linear{i}.bias"]))
            i += 1
    return h


def reference_point_outputs(ckpt, net_key, pts, dirs, beta, alpha, exp_index):
    """sigma, rgb of the released network written directly from the §1.1 description."""
    sd, ism = ckpt[net_key], ckpt["network_render_idSpecific"]
    h = beta
    for i in range(4):
        h = F.relu(F.linear(h, ism[f"linears1.Linear{i}.weight"], ism[f"linears1.Linear{i}.bias"]))
    eps = ckpt["expression_latent_codes_sigma"][exp_index]
    eps = F.linear(h, ism["linears_scale.weight"], ism["linears_scale.bias"]) * eps + \
        F.linear(h, ism["linears_bias.weight"], ism["linears_bias.bias"])
    m = pts.shape[0]
    h = _skip_mlp(sd, "xyzEncode", torch.cat([_pe(pts, 10), eps.expand(m, -1)], -1))
    f_sigma = _skip_mlp(sd, "linear_BiM_xyz", torch.cat([beta.expand(m, -1), h], -1))
    sigma = F.linear(f_sigma, sd["alpha_linear.0.weight"], sd["alpha_linear.0.bias"])
    f_c = _skip_mlp(sd, "linear_uv_xyzBiM", torch.cat([alpha.expand(m, -1), f_sigma], -1))
    v = F.relu(F.linear(torch.cat([_pe(dirs, 4), f_c], -1), sd["linear_view_xyBMuv.0.weight"],
                        sd["linear_view_xyBMuv.0.bias"]))
    rgb = F.linear(v, sd["rgb_linear.weight"], sd["rgb_linear.bias"])
    return F.relu(sigma[:, 0]), torch.sigmoid(rgb)


def reference_texture_code(ckpt, uv):
    sd, h = ckpt["network_render_textureEncoder"], uv
    k = 0
    while f"encoder.down1.0.{k}.weight" in sd:
        h = F.leaky_relu(F.conv2d(h, sd[f"encoder.down1.0.{k}.weight"], sd[f"encoder.down1.0.{k}.bias"], 2, 1), 0.2)
        k += 2
    h = F.leaky_relu(F.linear(h.flatten(1), sd["encoder.down2.0.weight"], sd["encoder.down2.0.bias"]), 0.2)
    code = F.linear(h, sd["encoder.mu.weight"], sd["encoder.mu.bias"])
    for i in (0, 2, 4):
        code = F.leaky_relu(F.linear(code, sd[f"encoder.decoding.{i}.weight"], sd[f"encoder.decoding.{i}.bias"]), 0.1)
    return code


# ---------------------------------------------------------------- tests
def test_full_size_layout_infers_the_released_config_and_maps_every_key():
    ckpt = official_checkpoint(w_coarse=256, w_fine=1024, meta=True)
    cfg = config_from_official(ckpt)
    assert cfg == MoFaNeRFConfig()
    with torch.device("meta"):
        model = MoFaNeRF(cfg)
    ours = model.state_dict()
    mapped = official_to_state_dict(ckpt)
    assert set(mapped) == set(ours) - {"shape_code_mean", "shape_code_scale"}   # ours: identity on import
    for name, value in mapped.items():
        assert tuple(value.shape) == tuple(ours[name].shape), name


def test_import_matches_the_reference_forward_and_round_trips(tmp_path):
    ckpt = official_checkpoint(w_coarse=16, w_fine=24, tex_size=128, channels=(4, 4, 4, 8, 8), hidden=32)
    path = tmp_path / "600000.tar"
    torch.save(ckpt, path)
    model, step = import_official(read_official_file(path))
    assert step == 600000 and model.cfg.netwidth == 16 and model.cfg.netwidth_fine == 24
    gen = torch.Generator().manual_seed(5)
    pts, dirs = torch.randn(40, 3, generator=gen), F.normalize(torch.randn(40, 3, generator=gen), dim=-1)
    beta, uv = torch.randn(1, 50, generator=gen) * 0.1, torch.rand(1, 3, 128, 128, generator=gen)
    with torch.no_grad():
        alpha = model.texture_code(uv)
        torch.testing.assert_close(alpha, reference_texture_code(ckpt, uv), rtol=1e-4, atol=1e-5)
        codes = model.face_codes(beta, expression_index=7, texture=alpha)
        coarse, fine = model.fields(codes)
        for field, key in ((coarse, "network_fn_state_dict"), (fine, "network_fine_state_dict")):
            ours = field(pts, dirs)
            ref = reference_point_outputs(ckpt, key, pts, dirs, beta, alpha, 7)
            for a, b in zip(ours, ref):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    exported = export_official(model, step)
    for key in ("network_fn_state_dict", "network_fine_state_dict", "network_render_textureEncoder",
                "network_render_idSpecific"):
        assert set(exported[key]) == set(ckpt[key]), key
        for name in ckpt[key]:
            assert torch.equal(exported[key][name], ckpt[key][name]), name
    assert all(torch.equal(a, b) for a, b in zip(exported["expression_latent_codes_sigma"],
                                                 ckpt["expression_latent_codes_sigma"]))
    n_tensors = sum(len(ckpt[k]) for k in ("network_fn_state_dict", "network_fine_state_dict",
                                           "network_render_textureEncoder", "network_render_idSpecific")) + 20
    assert exported["optimizer_state_dict"]["param_groups"][0]["params"] == list(range(n_tensors))


def test_load_mofanerf_reads_both_formats_and_checks_sizes(tmp_path):
    ckpt = official_checkpoint(w_coarse=16, w_fine=24, tex_size=128, channels=(4, 4, 4, 8, 8), hidden=32)
    # DataParallel-prefixed ISM keys (the original saved some modules with "module.")
    ckpt["network_fn_state_dict"] = {"module." + k: v for k, v in ckpt["network_fn_state_dict"].items()}
    official = tmp_path / "official.tar"
    torch.save(ckpt, official)
    model, info = load_mofanerf(official)
    assert info["format"] == "official" and info["step"] == 600000
    ours = save_mofanerf(tmp_path / "converted.pt", model, step=info["step"])
    again, info2 = load_mofanerf(ours)
    assert info2["format"] == "facenerf" and info2["step"] == 600000
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    wrong = MoFaNeRFConfig(**{**again.cfg.to_dict(), "exp_dim": 40})
    for path in (official, ours):
        with pytest.raises(FaceNerfError, match=r"input_ch_expCodes: config 40 vs checkpoint 30"):
            load_mofanerf(path, expect=wrong)


def test_foreign_or_damaged_files_give_one_line_errors(tmp_path):
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(FaceNerfError, match="not a facenerf checkpoint|corrupt"):
        load_mofanerf(bad)
    other = tmp_path / "other.tar"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(FaceNerfError, match="not a facenerf checkpoint"):
        load_mofanerf(other)
    with pytest.raises(FaceNerfError, match="not found"):
        load_mofanerf(tmp_path / "missing.tar")
    partial = tmp_path / "partial.tar"  # the original code's keys, but not all of them
    torch.save({"global_step": 600000, "network_fn_state_dict": {}, "network_fine_state_dict": {}}, partial)
    with pytest.raises(FaceNerfError, match="lacks network_render_textureEncoder.*not a complete MoFaNeRF checkpoint"):
        load_mofanerf(partial)


def test_convert_command_round_trips_between_layouts(tmp_path, capsys):
    from facenerf.tools.convert_checkpoint import main

    ckpt = official_checkpoint(w_coarse=16, w_fine=24, tex_size=128, channels=(4, 4, 4, 8, 8), hidden=32)
    torch.save(ckpt, tmp_path / "600000.tar")
    assert main([str(tmp_path / "600000.tar"), str(tmp_path / "ours.pt")]) == 0
    assert main([str(tmp_path / "ours.pt"), str(tmp_path / "back.tar"), "--to_official"]) == 0
    assert "wrote" in capsys.readouterr().out
    back = torch.load(tmp_path / "back.tar", weights_only=True)
    assert back["global_step"] == 600000
    for key in ("network_fn_state_dict", "network_render_idSpecific", "network_render_textureEncoder"):
        assert all(torch.equal(back[key][k], v) for k, v in ckpt[key].items())


def test_export_folds_shape_code_standardisation_into_the_weights():
    """A standardised model exports to the original layout (raw codes) with identical outputs."""
    ckpt = official_checkpoint(w_coarse=16, w_fine=24, tex_size=128, channels=(4, 4, 4, 8, 8), hidden=32)
    model, step = import_official(ckpt)
    assert torch.equal(model.shape_code_scale, torch.ones(50)) and torch.equal(model.shape_code_mean, torch.zeros(50))
    gen = torch.Generator().manual_seed(2)
    model.set_shape_statistics(torch.randn(6, 50, generator=gen) * 0.8 + 0.3)   # codes far from unit scale
    back, _ = import_official(export_official(model, step))
    pts, dirs = torch.randn(30, 3, generator=gen), F.normalize(torch.randn(30, 3, generator=gen), dim=-1)
    beta, alpha = torch.randn(1, 50, generator=gen) * 0.8, torch.randn(1, model.cfg.texture_dim, generator=gen)
    with torch.no_grad():
        for m_a, m_b in ((model, back),):
            a = m_a.fields(m_a.face_codes(beta, expression_index=3, texture=alpha))
            b = m_b.fields(m_b.face_codes(beta, expression_index=3, texture=alpha))
            for fa, fb in zip(a, b):
                for x, y in zip(fa(pts, dirs), fb(pts, dirs)):
                    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
