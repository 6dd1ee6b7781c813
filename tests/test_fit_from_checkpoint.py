"""Fitting takes the architecture and the training run's settings from the checkpoint.

A tiny run is written to disk as training leaves it: FaceScape-layout data (two identities)
and a checkpoint whose stored config names that data and non-default render settings. Fit
configs here hold no architecture keys; keys the user does set win or, for sizes, must match.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

import run_fit
from facenerf.config import config_to_dict, parse_args
from facenerf.errors import FaceNerfError
from facenerf.fitting import workflow
from facenerf.fitting.from_checkpoint import explicit_keys
from facenerf.fitting.options import build_fit_parser
from facenerf.fitting.result import FitResult
from facenerf.fitting.stats import CodeStatistics
from facenerf.models.mofanerf.checkpoints import save_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.models.mofanerf.options import build_train_parser
from tiny_faces import write_multiview_data

SIZE = 16
# the tiny run's training options: sizes far from the parser defaults, and non-default render settings
TRAIN = {"multires": 2, "multires_views": 1, "netdepth": 3, "netwidth": 8, "netdepth_fine": 2, "netwidth_fine": 8,
         "xyz_depth": 1, "skip": 1, "input_ch_shapeCodes": 6, "input_ch_textureCodes": 4, "input_ch_expCodes": 3,
         "n_expressions": 3, "ism_width": 8, "ism_depth": 1, "tex_size": 8, "tex_channels": "4", "tex_hidden": 8,
         "tex_decoder_depth": 1, "tex_logstd_head": "false", "N_samples": 6, "N_importance": 4, "near": 10.0,
         "far": 22.0, "person_num": 2, "expname": "tiny"}
FIT = {"device": "cpu", "progress": "false", "expname": "tiny", "num_iterations": 2, "fit_size": SIZE,
       "fit_rays": 16, "fit_scales": "0.5,1", "fit_level_starts": "0,0.5", "size": SIZE, "eval_views": 2,
       "save_every": 0}


def _train_run(logs: Path, datadir: Path, **changes) -> Path:
    """A checkpoint as training writes it (stored training config included); returns its path."""
    options = {**TRAIN, **changes, "datadir": datadir, "basedir": logs}
    args = parse_args(build_train_parser(), [f"--{k}={v}" for k, v in options.items()])
    torch.manual_seed(0)
    model = MoFaNeRF(MoFaNeRFConfig.from_args(args))
    return save_mofanerf(logs / args.expname / "checkpoints" / "step_00000003.pt", model, step=3,
                         config=config_to_dict(args))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fromckpt")
    mv = write_multiview_data(root, SIZE, seed=3)
    ckpt = _train_run(root / "logs", mv)
    config = root / "fit_plain.txt"  # fitting keys only: no sizes, no near/far, no samples, no datadir
    config.write_text("".join(f"{k} = {v}\n" for k, v in {**FIT, "basedir": root / "logs"}.items()))
    return root, mv, ckpt, config


def _load(argv: list[str]) -> tuple[argparse.Namespace, workflow.LoadedModel]:
    args = parse_args(build_fit_parser(), argv)
    return args, workflow.load_model(args, torch.device("cpu"), explicit_keys(build_fit_parser, args, argv))


def test_explicit_keys_are_those_set_even_at_their_default_value(tmp_path):
    config = tmp_path / "c.txt"
    config.write_text("netwidth = 256\nnum_iterations = 7\n")  # 256 is the parser's default
    argv = ["-c", str(config), "--near=8", "--filePath", "x.png"]
    args = parse_args(build_fit_parser(), argv)
    keys = explicit_keys(build_fit_parser, args, argv)
    assert {"netwidth", "num_iterations", "near", "filePath"} <= keys
    assert not keys & {"netdepth", "far", "N_samples", "datadir", "config"}
    assert args.netwidth == 256 and args.num_iterations == 7


def test_model_and_settings_come_from_the_checkpoint(run, capsys):
    root, mv, ckpt, config = run
    args, loaded = _load(["-c", str(config)])
    cfg = loaded.model.cfg
    assert (cfg.netwidth, cfg.netwidth_fine, cfg.shape_dim, cfg.tex_channels) == (8, 8, 6, (4,))
    assert loaded.checkpoint == ckpt and loaded.step == 3
    # the args now carry the run's values, so renders, statistics and the saved config agree with training
    assert (args.netwidth, args.input_ch_textureCodes, args.tex_channels, args.tex_logstd_head) == (8, 4, "4", False)
    assert (args.near, args.far, args.N_samples, args.N_importance, args.person_num) == (10.0, 22.0, 6, 4, 2)
    assert Path(args.datadir) == mv
    settings = loaded.render_settings
    assert (settings.n_samples, settings.n_importance, settings.perturb) == (6, 4, False)
    assert loaded.model.train_settings.perturb and loaded.model.train_settings.n_samples == 6
    out = capsys.readouterr().out
    assert "note: from the training run of" in out and "near 10.0" in out and "rendering with" not in out


def test_fit_without_architecture_keys_runs_end_to_end(run, capsys):
    root, mv, ckpt, config = run
    image = mv / "2" / "neutral" / "0_1.png"
    out = root / "fit_out"
    assert run_fit.main(["-c", str(config), "--filePath", str(image), "--fit_out", str(out)]) == 0
    fit = FitResult.load(out / "fit.pt")
    assert fit.complete and fit.iteration == 2 and fit.checkpoint == str(ckpt)
    saved = dict(line.split(" = ", 1) for line in (out / "fit_config.txt").read_text().splitlines()
                 if " = " in line and not line.startswith("#"))
    assert (saved["netwidth"], saved["tex_channels"], saved["near"], saved["N_importance"]) == ("8", "4", "10.0", "4")
    # code statistics were computed from the training run's own data (its datadir and person_num)
    stats = CodeStatistics.load(ckpt.parent / "code_stats.pt")
    factors = np.load(mv.parent / "factors_id.npy")
    assert stats.n_identities == 2 and stats.step == 3
    torch.testing.assert_close(stats.shape_mean, torch.from_numpy(factors[1:3].mean(0)))
    assert (out / "fitted.png").is_file() and "fitted 2 iterations" in capsys.readouterr().out


def test_an_architecture_key_set_by_the_user_must_match(run, tmp_path):
    root, mv, ckpt, config = run
    with pytest.raises(FaceNerfError, match="netwidth: config 32 vs checkpoint 8") as err:
        _load(["-c", str(config), "--netwidth", "32"])
    assert "\n" not in str(err.value) and "remove those keys" in str(err.value)
    with pytest.raises(FaceNerfError, match="netwidth: config 256 vs checkpoint 8"):
        _load(["-c", str(config), "--netwidth", "256"])  # the parser's default, but given explicitly
    in_file = tmp_path / "fit_with_size.txt"
    in_file.write_text(config.read_text() + "tex_channels = 8,8\ninput_ch_textureCodes = 4\n")
    with pytest.raises(FaceNerfError, match=r"\(tex_channels: config 8,8 vs checkpoint 4\)"):
        _load(["-c", str(in_file)])
    matching = tmp_path / "fit_matching.txt"
    matching.write_text(config.read_text() + "netwidth = 8\ntex_channels = 4\ntex_logstd_head = false\n")
    assert _load(["-c", str(matching)])[1].model.cfg.netwidth == 8


def test_user_render_and_data_settings_win(run, tmp_path, capsys):
    root, mv, ckpt, config = run
    args, loaded = _load(["-c", str(config), "--near", "9", "--N_samples", "5"])
    assert (args.near, args.far, args.N_samples) == (9.0, 22.0, 5)
    assert loaded.render_settings.n_samples == 5
    assert "rendering with near 9.0 (trained with 10.0), N_samples 5 (trained with 6)" in capsys.readouterr().out
    # a run whose data has moved since training: its statistics need --datadir
    moved = _train_run(tmp_path / "logs", tmp_path / "gone" / "multiViewImages")
    argv = ["-c", str(config), "--basedir", str(tmp_path / "logs")]
    args, loaded = _load(argv)
    with pytest.raises(FaceNerfError, match="cannot compute code statistics from the training data"):
        workflow.load_code_statistics(args, loaded)
    args, loaded = _load(argv + ["--datadir", str(mv)])
    stats = workflow.load_code_statistics(args, loaded)
    assert stats.n_identities == 2 and (moved.parent / "code_stats.pt").is_file()


def test_a_checkpoint_without_fine_network_accepts_its_training_config(run, tmp_path):
    root, mv, ckpt, config = run
    # as training stores it: N_importance = 0 means no fine network, whatever netwidth_fine says
    _train_run(tmp_path / "logs", mv, N_importance=0, netdepth_fine=3, netwidth_fine=16)
    argv = ["-c", str(config), "--basedir", str(tmp_path / "logs")]
    args, loaded = _load(argv + ["--netdepth_fine", "3", "--netwidth_fine", "16", "--N_importance", "0"])
    assert not loaded.model.cfg.has_fine and loaded.render_settings.n_importance == 0
    args, loaded = _load(argv)
    assert args.N_importance == 0 and args.netwidth_fine == 0
    with pytest.raises(FaceNerfError, match=r"netwidth_fine: config 16 vs checkpoint 0 \(no fine network\)"):
        _load(argv + ["--netwidth_fine", "16", "--N_importance", "4"])


def test_original_tar_gives_sizes_and_keeps_the_configs_render_settings(run, tmp_path, capsys):
    from facenerf.models.mofanerf.official import export_official

    root, mv, ckpt, config = run
    torch.manual_seed(0)
    cfg = MoFaNeRFConfig(multires=2, multires_views=1, netdepth=3, netwidth=8, netdepth_fine=2, netwidth_fine=12,
                         xyz_depth=1, skip=1, shape_dim=6, texture_dim=4, exp_dim=3, n_expressions=3, ism_width=8,
                         ism_depth=1, tex_size=8, tex_channels=(4,), tex_hidden=8, tex_decoder_depth=1)
    tar = tmp_path / "released.tar"
    torch.save(export_official(MoFaNeRF(cfg), step=7), tar)
    args, loaded = _load(["-c", str(config), "--ckpt", str(tar), "--near", "9"])
    assert loaded.model.cfg == cfg and loaded.step == 7
    assert (args.netwidth_fine, args.input_ch_shapeCodes) == (12, 6)
    assert (args.near, args.far, args.N_samples) == (9.0, 26.0, 64)  # no run settings in a .tar: the config's
    assert "note:" not in capsys.readouterr().out
