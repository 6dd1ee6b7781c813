"""Typed configs: primitive round trips, older flat dicts, config files, and the model table."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch

from facenerf.cli import parse_args
from facenerf.config import flat_options, from_dict, from_flat, parse_int_list, save_config, to_dict
from facenerf.data.ray_batches import LandmarkSampling, PixelSamplerConfig
from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.config import MoFaNeRFConfig, MoFaNeRFRenderConfig, MoFaNeRFRunConfig
from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args
from facenerf.models.refine.model import RefineConfig
from facenerf.models.refine.training import RefineRunConfig
from facenerf.models.table import MODELS, model_entry, read_checkpoint_run

TINY = MoFaNeRFConfig(multires=2, multires_views=1, netdepth=3, netwidth=8, netdepth_fine=2, netwidth_fine=8,
                      xyz_depth=1, skip=1, shape_dim=6, texture_dim=4, exp_dim=3, n_expressions=3, ism_width=8,
                      ism_depth=1, tex_size=8, tex_channels=(4,), tex_hidden=8, tex_decoder_depth=1,
                      tex_logstd_head=False)


def test_run_configs_round_trip_through_primitive_dicts():
    run = MoFaNeRFRunConfig(model=TINY, render=MoFaNeRFRenderConfig(near=10.0, N_importance=4, white_bkgd=True),
                            sampling=PixelSamplerConfig(n_rays=64, landmarks=LandmarkSampling(lm_share=0.3)))
    data = to_dict(run)
    assert data["model"]["tex_channels"] == [4] and data["sampling"]["landmarks"]["lm_share"] == 0.3
    assert all(isinstance(v, (dict, str, int, float, bool, list, type(None))) for v in data.values())
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == data  # plain data, safe to load
    assert from_dict(MoFaNeRFRunConfig, data) == run == MoFaNeRFRunConfig.from_checkpoint(data)
    refine = RefineRunConfig(net=RefineConfig(ngf=8, residual=False))
    assert RefineRunConfig.from_checkpoint(to_dict(refine)) == refine
    assert from_dict(MoFaNeRFRunConfig, {"render": {"near": 9.0, "unknown_key": 1}}).render.near == 9.0


def test_flat_dicts_of_older_files_are_read_by_key_alias_and_text():
    flat = {"netwidth": "8", "tex_channels": "16,32", "white_bkgd": "true", "N_rand": 64, "landmark_share": 0.4,
            "near": 9, "expname": "old", "something_else": 3}
    run = from_flat(MoFaNeRFRunConfig, flat)
    assert (run.model.netwidth, run.model.tex_channels, run.render.white_bkgd) == (8, (16, 32), True)
    assert (run.sampling.n_rays, run.sampling.landmarks.lm_share, run.render.near) == (64, 0.4, 9.0)
    assert run.train.expname == "old" and run.model.netdepth == MoFaNeRFConfig().netdepth
    assert isinstance(run.render.near, float)
    flat = flat_options(run)
    assert flat["input_ch_shapeCodes"] == run.model.shape_dim and flat["N_rand"] == 64 and "n_rays" not in flat
    legacy_no_model = {"netwidth": 64, "netwidth_fine": 128, "N_importance": 0}  # oldest layout: no model_config
    assert not MoFaNeRFRunConfig.from_checkpoint(legacy_no_model).model.has_fine
    with pytest.raises(FaceNerfError, match="stores no MoFaNeRF run configuration"):
        MoFaNeRFRunConfig.from_checkpoint({"lr": 1.0})


def test_the_saved_config_file_gives_the_run_back(tmp_path):
    argv = ["--netwidth", "32", "--tex_channels", "8,16", "--white_bkgd", "--lm_share", "0.25", "--near", "11",
            "--grid_exps", "0,3", "--threads", "1", "--N_importance", "0"]
    run = run_config_from_args(parse_args(build_train_parser(), argv))
    assert run.model.netwidth_fine == 0  # N_importance = 0: no fine network
    path = save_config(run, tmp_path)
    text = path.read_text()
    assert "tex_channels = 8,16" in text and "white_bkgd = true" in text and "grid_exps = 0,3" in text
    again = run_config_from_args(parse_args(build_train_parser(), ["-c", str(path)]))
    assert again == run


def test_values_are_checked_where_they_are_defined():
    with pytest.raises(FaceNerfError, match="N_samples must be positive"):
        MoFaNeRFRenderConfig(N_samples=0)
    with pytest.raises(FaceNerfError, match="near < far"):
        MoFaNeRFRenderConfig(near=20.0, far=10.0)
    with pytest.raises(FaceNerfError, match="tex_channels"):
        parse_int_list("8,x", "tex_channels")
    with pytest.raises(FaceNerfError, match="N_rand must be positive"):
        run_config_from_args(parse_args(build_train_parser(), ["--N_rand", "0"]))


def test_the_model_table_loads_what_each_model_writes(tmp_path):
    from facenerf.engine.checkpoint import make_payload, save_checkpoint
    from facenerf.models.mofanerf.checkpoints import save_mofanerf
    from facenerf.models.mofanerf.model import MoFaNeRF
    from facenerf.models.refine.model import RefineModel

    import torch

    from facenerf.models.blendshape.config import BlendShapeConfig, BlendShapeRunConfig, BlendShapeSceneConfig
    from facenerf.models.blendshape.model import NeRFBlendShape

    assert set(MODELS) == {"mofanerf", "refine", "nerfblendshape"}
    run = MoFaNeRFRunConfig(model=TINY, render=replace(MoFaNeRFRenderConfig(), near=12.0))
    mofanerf = save_mofanerf(tmp_path / "m.pt", MoFaNeRF(TINY), step=5, run=run)
    net = RefineConfig(ngf=4, n_downsample_global=1, n_blocks_global=1, ndf=4, n_layers_D=1, num_D=1)
    flat = {**net.to_dict(), "load_size": 32, "name": "old"}  # a RefineNet checkpoint of the flat layout
    refine = save_checkpoint(tmp_path / "r.pt", make_payload("refine", flat, 7, RefineModel(net).state_dict()))
    head_run = BlendShapeRunConfig(model=BlendShapeConfig(expr_dim=2, num_levels=2, level_dim=2, desired_resolution=32,
                                                          log2_hashmap_size=8, num_layers=1, hidden_dim=8),
                                   scene=BlendShapeSceneConfig(bound=1.5, grid_size=8))
    head = NeRFBlendShape(head_run, torch.ones(2), torch.zeros(2))
    blend = save_checkpoint(tmp_path / "b.pt", make_payload("nerfblendshape", head_run.to_dict(), 3, head.state_dict()))
    for path, name, step in ((mofanerf, "mofanerf", 5), (refine, "refine", 7), (blend, "nerfblendshape", 3)):
        entry = model_entry(name)
        model, info = entry.load(path)
        assert isinstance(model, entry.model) and info["step"] == step and isinstance(info["run"], entry.config)
        assert read_checkpoint_run(path)[:2] == (name, step)
    assert read_checkpoint_run(mofanerf)[2] == run
    old_refine = read_checkpoint_run(refine)[2]
    assert old_refine.net == net and old_refine.train.load_size == 32 and old_refine.train.location.name == "old"
    assert read_checkpoint_run(blend)[2] == head_run
    with pytest.raises(FaceNerfError, match="unknown model 'gaussians': this facenerf knows mofanerf, nerfblendshape, "
                                            "refine"):
        model_entry("gaussians")


def test_checkpoint_info_prints_the_stored_run(tmp_path, capsys):
    from facenerf.models.mofanerf.checkpoints import save_mofanerf
    from facenerf.models.mofanerf.model import MoFaNeRF
    from facenerf.tools.checkpoint_info import main

    path = save_mofanerf(tmp_path / "m.pt", MoFaNeRF(TINY), step=2, run=MoFaNeRFRunConfig(model=TINY))
    assert main([str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["model = mofanerf", "step = 2"]
    assert "tex_channels = 4" in lines and "N_importance = 64" in lines and "lm_share = 0.6" in lines
