"""Fitting reads the training run's typed config from the checkpoint and applies explicit overrides.

A tiny run is written to disk as training leaves it: FaceScape-layout data (two identities)
and a checkpoint whose stored run config names that data and non-default render settings. Fit
configs here hold no architecture keys; keys the user does set win or, for sizes, must match.
A checkpoint written before typed configs (a flat option dict) keeps loading.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import run_fit
from facenerf.cli import parse_args
from facenerf.engine.checkpoint import load_checkpoint, make_payload, save_checkpoint
from facenerf.errors import FaceNerfError
from facenerf.fitting.options import build_fit_parser, fit_command_from_args
from facenerf.fitting.result import FitResult
from facenerf.fitting.stats import CodeStatistics
from facenerf.models.mofanerf.checkpoints import load_run, load_source, save_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFConfig, MoFaNeRFRunConfig
from facenerf.models.mofanerf.model import MODEL_NAME, MoFaNeRF
from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args
from tiny_faces import write_multiview_data

SIZE = 16
# the tiny run's training options: sizes far from the defaults, and non-default render settings
TRAIN = {"multires": 2, "multires_views": 1, "netdepth": 3, "netwidth": 8, "netdepth_fine": 2, "netwidth_fine": 8,
         "xyz_depth": 1, "skip": 1, "input_ch_shapeCodes": 6, "input_ch_textureCodes": 4, "input_ch_expCodes": 3,
         "n_expressions": 3, "ism_width": 8, "ism_depth": 1, "tex_size": 8, "tex_channels": "4", "tex_hidden": 8,
         "tex_decoder_depth": 1, "tex_logstd_head": "false", "N_samples": 6, "N_importance": 4, "near": 10.0,
         "far": 22.0, "person_num": 2, "expname": "tiny"}
FIT = {"device": "cpu", "progress": "false", "expname": "tiny", "num_iterations": 2, "fit_size": SIZE,
       "fit_rays": 16, "fit_scales": "0.5,1", "fit_level_starts": "0,0.5", "size": SIZE, "eval_views": 2,
       "save_every": 0}


def _train_args(logs: Path, datadir: Path, **changes) -> list[str]:
    options = {**TRAIN, **changes, "datadir": datadir, "basedir": logs}
    return [f"--{k}={v}" for k, v in options.items()]


def _train_run(logs: Path, datadir: Path, **changes) -> Path:
    """A checkpoint as training writes it (the typed run config); returns its path."""
    run = run_config_from_args(parse_args(build_train_parser(), _train_args(logs, datadir, **changes)))
    torch.manual_seed(0)
    model = MoFaNeRF(run.model)
    return save_mofanerf(logs / run.train.expname / "checkpoints" / "step_00000003.pt", model, step=3, run=run)


def _old_train_run(logs: Path, datadir: Path, **changes) -> Path:
    """A checkpoint as the code before typed configs wrote it: the flat namespace of run_train.py's
    options (paths as text) plus ``model_config``."""
    args = parse_args(build_train_parser(), _train_args(logs, datadir, **changes))
    model_cfg = run_config_from_args(args).model
    flat = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    flat["tex_channels"] = "4"  # as the old parser kept it: text
    torch.manual_seed(0)
    model = MoFaNeRF(model_cfg)
    path = logs / args.expname / "checkpoints" / "step_00000003.pt"
    return save_checkpoint(path, make_payload(MODEL_NAME, {**flat, "model_config": model_cfg.to_dict()}, 3,
                                              model.state_dict()))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fromckpt")
    mv = write_multiview_data(root, SIZE, seed=3)
    ckpt = _train_run(root / "logs", mv)
    config = root / "fit_plain.txt"  # fitting keys only: no sizes, no near/far, no samples, no datadir
    config.write_text("".join(f"{k} = {v}\n" for k, v in {**FIT, "basedir": root / "logs"}.items()))
    return root, mv, ckpt, config


def _load(argv: list[str]):
    """The fit command of ``argv`` (fitting some image) and the run it loads."""
    cmd = fit_command_from_args(parse_args(build_fit_parser(), ["--filePath", "some.png", *argv]))
    return cmd, load_source(cmd.source)


def test_the_checkpoint_stores_the_typed_run_config(run):
    root, mv, ckpt, config = run
    stored = load_checkpoint(ckpt)["config"]
    assert set(stored) == {"model", "render", "data", "sampling", "train", "runtime"}
    assert stored["render"]["near"] == 10.0 and stored["model"]["tex_channels"] == [4]
    again = MoFaNeRFRunConfig.from_checkpoint(stored)
    assert again.render.N_samples == 6 and again.data.person_num == 2 and again.model.shape_dim == 6


def test_keys_the_user_sets_are_the_overrides_even_at_their_default_value(tmp_path):
    config = tmp_path / "c.txt"
    config.write_text("netwidth = 256\nnum_iterations = 7\n")  # 256 is the default size
    cmd = fit_command_from_args(parse_args(build_fit_parser(), ["-c", str(config), "--near=8", "--filePath", "x.png"]))
    overrides = cmd.source.overrides
    assert overrides.model == {"netwidth": 256} and overrides.render == {"near": 8.0}
    assert overrides.data == {} and overrides.sampling == {}
    assert cmd.fit.schedule.iterations == 7 and cmd.input.filePath == "x.png"


def test_model_and_settings_come_from_the_checkpoint(run):
    root, mv, ckpt, config = run
    cmd, loaded = _load(["-c", str(config)])
    cfg = loaded.model.cfg
    assert (cfg.netwidth, cfg.netwidth_fine, cfg.shape_dim, cfg.tex_channels) == (8, 8, 6, (4,))
    assert loaded.checkpoint == ckpt and loaded.step == 3 and loaded.run.model == cfg
    render, data = loaded.run.render, loaded.run.data
    assert (render.near, render.far, render.N_samples, render.N_importance, data.person_num) == (10.0, 22.0, 6, 4, 2)
    assert Path(data.datadir) == mv
    settings = loaded.render_settings
    assert (settings.n_samples, settings.n_importance, settings.perturb) == (6, 4, False)
    assert loaded.model.train_settings.perturb and loaded.model.train_settings.n_samples == 6
    notes = " | ".join(loaded.notes)
    assert "from the training run of" in notes and "near 10.0" in notes and "rendering with" not in notes


def test_fit_without_architecture_keys_runs_end_to_end(run, capsys):
    root, mv, ckpt, config = run
    image = mv / "2" / "neutral" / "0_1.png"
    out = root / "fit_out"
    # training keys on the command line are accepted, do nothing, and are named in a note
    assert run_fit.main(["-c", str(config), "--filePath", str(image), "--fit_out", str(out), "--N_iters", "50",
                         "--netwidth", "8", "--lrate=0.5"]) == 0
    printed = capsys.readouterr().out
    assert "note: run_fit.py does not read --N_iters, --lrate: training keys" in printed
    fit = FitResult.load(out / "fit.pt")
    assert fit.complete and fit.iteration == 2 and fit.checkpoint == str(ckpt)
    assert fit.config["fit"]["schedule"]["iterations"] == 2  # the typed fit command
    saved = dict(line.split(" = ", 1) for line in (out / "fit_config.txt").read_text().splitlines()
                 if " = " in line and not line.startswith("#"))
    assert (saved["netwidth"], saved["tex_channels"], saved["near"], saved["N_importance"]) == ("8", "4", "10.0", "4")
    # code statistics were computed from the training run's own data (its datadir and person_num)
    stats = CodeStatistics.load(ckpt.parent / "code_stats.pt")
    factors = np.load(mv.parent / "factors_id.npy")
    assert stats.n_identities == 2 and stats.step == 3
    torch.testing.assert_close(stats.shape_mean, torch.from_numpy(factors[1:3].mean(0)))
    assert (out / "fitted.png").is_file() and "fitted 2 iterations" in printed
    # the saved config runs the fit again as it ran
    assert run_fit.main(["-c", str(out / "fit_config.txt"), "--fit_out", str(root / "fit_again")]) == 0


def test_an_architecture_key_set_by_the_user_must_match(run, tmp_path):
    root, mv, ckpt, config = run
    with pytest.raises(FaceNerfError, match="netwidth: config 32 vs checkpoint 8") as err:
        _load(["-c", str(config), "--netwidth", "32"])
    assert "\n" not in str(err.value) and "remove those keys" in str(err.value)
    with pytest.raises(FaceNerfError, match="netwidth: config 256 vs checkpoint 8"):
        _load(["-c", str(config), "--netwidth", "256"])  # the default size, but given explicitly
    in_file = tmp_path / "fit_with_size.txt"
    in_file.write_text(config.read_text() + "tex_channels = 8,8\ninput_ch_textureCodes = 4\n")
    with pytest.raises(FaceNerfError, match=r"\(tex_channels: config 8,8 vs checkpoint 4\)"):
        _load(["-c", str(in_file)])
    matching = tmp_path / "fit_matching.txt"
    matching.write_text(config.read_text() + "netwidth = 8\ntex_channels = 4\ntex_logstd_head = false\n")
    assert _load(["-c", str(matching)])[1].model.cfg.netwidth == 8


def test_user_render_and_data_settings_win(run, tmp_path):
    from facenerf.fitting import workflow

    root, mv, ckpt, config = run
    cmd, loaded = _load(["-c", str(config), "--near", "9", "--N_samples", "5"])
    render = loaded.run.render
    assert (render.near, render.far, render.N_samples) == (9.0, 22.0, 5)
    assert loaded.render_settings.n_samples == 5 and loaded.trained.render.near == 10.0
    assert any("rendering with near 9.0 (trained with 10.0), N_samples 5 (trained with 6)" in n for n in loaded.notes)
    # a run whose data has moved since training: its statistics need --datadir
    moved = _train_run(tmp_path / "logs", tmp_path / "gone" / "multiViewImages")
    argv = ["-c", str(config), "--basedir", str(tmp_path / "logs")]
    cmd, loaded = _load(argv)
    with pytest.raises(FaceNerfError, match="cannot compute code statistics from the training data"):
        workflow.load_code_statistics(cmd.code_stats, loaded)
    cmd, loaded = _load(argv + ["--datadir", str(mv)])
    stats = workflow.load_code_statistics(cmd.code_stats, loaded)
    assert stats.n_identities == 2 and (moved.parent / "code_stats.pt").is_file()


def test_a_checkpoint_without_fine_network_accepts_its_training_config(run, tmp_path):
    root, mv, ckpt, config = run
    # as training stores it: N_importance = 0 means no fine network, whatever netwidth_fine says
    _train_run(tmp_path / "logs", mv, N_importance=0, netdepth_fine=3, netwidth_fine=16)
    argv = ["-c", str(config), "--basedir", str(tmp_path / "logs")]
    cmd, loaded = _load(argv + ["--netdepth_fine", "3", "--netwidth_fine", "16", "--N_importance", "0"])
    assert not loaded.model.cfg.has_fine and loaded.render_settings.n_importance == 0
    cmd, loaded = _load(argv)
    assert loaded.run.render.N_importance == 0 and loaded.run.model.netwidth_fine == 0
    with pytest.raises(FaceNerfError, match=r"netwidth_fine: config 16 vs checkpoint 0 \(no fine network\)"):
        _load(argv + ["--netwidth_fine", "16", "--N_importance", "4"])


def test_original_tar_gives_sizes_and_keeps_the_default_render_settings(run, tmp_path):
    from facenerf.models.mofanerf.official import export_official

    root, mv, ckpt, config = run
    torch.manual_seed(0)
    cfg = MoFaNeRFConfig(multires=2, multires_views=1, netdepth=3, netwidth=8, netdepth_fine=2, netwidth_fine=12,
                         xyz_depth=1, skip=1, shape_dim=6, texture_dim=4, exp_dim=3, n_expressions=3, ism_width=8,
                         ism_depth=1, tex_size=8, tex_channels=(4,), tex_hidden=8, tex_decoder_depth=1)
    tar = tmp_path / "released.tar"
    torch.save(export_official(MoFaNeRF(cfg), step=7), tar)
    cmd, loaded = _load(["-c", str(config), "--ckpt", str(tar), "--near", "9"])
    assert loaded.model.cfg == cfg and loaded.step == 7 and loaded.trained is None
    render = loaded.run.render
    assert (render.near, render.far, render.N_samples) == (9.0, 26.0, 64)  # no run settings in a .tar: defaults
    assert loaded.notes == []


def test_a_checkpoint_written_before_typed_configs_fits_and_renders(tmp_path, capsys):
    mv = write_multiview_data(tmp_path, SIZE, seed=4)
    ckpt = _old_train_run(tmp_path / "logs", mv)
    assert "model_config" in load_checkpoint(ckpt)["config"]  # the flat layout
    trained = load_run(ckpt).trained
    assert (trained.render.near, trained.render.far, trained.render.N_samples) == (10.0, 22.0, 6)
    assert trained.data.person_num == 2 and Path(trained.data.datadir) == mv and trained.model.tex_channels == (4,)
    assert trained.runtime.seed == 0 and trained.sampling.n_rays == 1024
    config = tmp_path / "fit.txt"
    config.write_text("".join(f"{k} = {v}\n" for k, v in {**FIT, "basedir": tmp_path / "logs"}.items()))
    image = mv / "1" / "neutral" / "0_2.png"
    out = tmp_path / "fit_old"
    assert run_fit.main(["-c", str(config), "--filePath", str(image), "--fit_out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: from the training run of" in printed and "near 10.0" in printed and "fitted 2 iterations" in printed
    fit = FitResult.load(out / "fit.pt")
    assert (fit.near, fit.far) == (10.0, 22.0)  # the run's bounds, read from the old checkpoint
    assert run_fit.main(["-c", str(config), "--filePath", str(image), "--fit_out", str(out),
                         "--renderType", "rendering", "--frames", "2"]) == 0
    assert (out / "render" / "orbit.mp4").is_file() and (out / "render" / "fitRes_0.png").is_file()


def test_training_resumes_an_old_checkpoints_run_and_rejects_other_sizes(tmp_path):
    from facenerf.models.mofanerf.training import check_resume_compatible

    mv = write_multiview_data(tmp_path, SIZE, seed=5)
    ckpt = _old_train_run(tmp_path / "logs", mv)
    run = run_config_from_args(parse_args(build_train_parser(), _train_args(tmp_path / "logs", mv)))
    assert check_resume_compatible(ckpt.parent.parent, run.model) == ckpt
    with pytest.raises(FaceNerfError, match="netwidth: config 16 vs checkpoint 8"):
        check_resume_compatible(ckpt.parent.parent, replace(run.model, netwidth=16))
