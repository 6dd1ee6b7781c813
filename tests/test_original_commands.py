"""The original MoFaNeRF README's command lines, as written, do what the original does.

A temporary folder is laid out like the original repository after its download script: the
released checkpoint's layout at ``logs/mofanerf_0to300/<step>.tar`` (a tiny model exported in
that layout), ``configs/texShpDistribution.npy``, a preprocessed photo ``data/fit/segRelRes/1.png``
with ``data/fit/pose_1.npy`` (the original's pose file) and the RefineNet generator
``logs/refine/facescape/latest_net_G.pth``. From that folder the README's lines run unchanged::

    python run_fit.py --filePath ./data/fit/segRelRes/1.png
    python run_fit.py --filePath ./data/fit/segRelRes/1.png --renderType rendering
    python run_refine.py --name facescape --nerf_folder ./data/fit/fitting/segRelRes_1/render/
    python run_fit.py --filePath ./data/fit/segRelRes/1.png --renderType rendering_modulation

each with tiny sizes appended (later flags win). The training line (the original parser's
``--config`` and flags) is parsed as written and its data selection checked on generated data;
the pix2pixHD options are checked on the RefineNet parsers.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch

import run_fit
from commands import ROOT, build, load_script
from facenerf.cli import parse_args
from facenerf.data.mofanerf_dataset import (FACESCAPE_INVALID_IDS, FACESCAPE_SUBSTITUTE_IDS, every_nth_per_identity,
                                            select_identities)
from facenerf.errors import FaceNerfError
from facenerf.fitting.result import FitResult
from facenerf.fitting.views import FaceState, intrinsics_at, original_view, render_face
from facenerf.io import read_image, to_uint8, write_image
from facenerf.models.mofanerf.checkpoints import load_run
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.models.mofanerf.official import export_official
from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args
from facenerf.models.refine.inference import refine_image
from facenerf.models.refine.networks import GlobalGenerator
from facenerf.preprocess.training.rig import mofanerf_pose

FIT = ["--filePath", "./data/fit/segRelRes/1.png"]
TINY_FIT = ["--num_iterations", "4", "--fit_size", "32", "--size", "32", "--device", "cpu", "--progress", "false"]
REFINE = ["--name", "facescape", "--nerf_folder", "./data/fit/fitting/segRelRes_1/render/"]
SHAPE, TEXTURE = 6, 5


def original_pose(yaw_deg: float, pitch_deg: float = 0.0, radius: float = 16.0) -> torch.Tensor:
    """The original run_fit.py's novel-view camera, from its definition: translate by ``radius`` along
    +Z, rotate about X by ``pitch``, then about Y by ``-yaw``."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    translate = np.eye(4)
    translate[2, 3] = radius
    pitch = np.array([[1, 0, 0, 0], [0, math.cos(b), -math.sin(b), 0], [0, math.sin(b), math.cos(b), 0], [0, 0, 0, 1]])
    yaw = np.array([[math.cos(a), 0, -math.sin(a), 0], [0, 1, 0, 0], [math.sin(a), 0, math.cos(a), 0], [0, 0, 0, 1]])
    return torch.tensor(yaw @ pitch @ translate, dtype=torch.float32)


def _tiny_model() -> MoFaNeRF:
    torch.manual_seed(3)
    cfg = MoFaNeRFConfig(netdepth=3, netwidth=16, netdepth_fine=3, netwidth_fine=16, skip=2, xyz_depth=1,
                         multires=3, multires_views=1, shape_dim=SHAPE, texture_dim=TEXTURE, exp_dim=4,
                         n_expressions=20, ism_width=8, ism_depth=1, tex_size=8, tex_channels=(4,), tex_hidden=8,
                         tex_decoder_depth=1)
    model = MoFaNeRF(cfg)
    with torch.no_grad():
        for net in (model.coarse, model.fine):
            net.density_head.bias.fill_(3.0)   # a dense blob around the head so renders are not empty
    return model


@pytest.fixture(scope="module")
def original_repo(tmp_path_factory):
    """A folder laid out like the original repository after its download script (see the module docstring)."""
    repo = tmp_path_factory.mktemp("original")
    (repo / "logs" / "mofanerf_0to300").mkdir(parents=True)
    torch.save(export_official(_tiny_model(), 10), repo / "logs" / "mofanerf_0to300" / "000010.tar")
    (repo / "configs").mkdir()
    np.save(repo / "configs" / "texShpDistribution.npy",
            {"shape_mean": np.zeros((1, SHAPE), np.float32), "shape_std": np.full((1, SHAPE), 0.05, np.float32),
             "texture_mean": np.zeros(TEXTURE, np.float32), "texture_std": np.full(TEXTURE, 0.3, np.float32)},
            allow_pickle=True)
    yy, xx = np.mgrid[0:512, 0:512]
    photo = np.zeros((512, 512, 3), np.float32)
    photo[(xx - 256) ** 2 / 120 ** 2 + (yy - 270) ** 2 / 160 ** 2 < 1] = (0.8, 0.6, 0.5)
    write_image(repo / "data" / "fit" / "segRelRes" / "1.png", photo)
    rng = np.random.default_rng(0)
    kp = np.stack([rng.uniform(180, 380, 68), rng.uniform(170, 340, 68)], 1).astype(np.int64)   # (row, col)
    np.save(repo / "data" / "fit" / "pose_1.npy", {"pose": original_pose(0.0).numpy(), "kp": kp}, allow_pickle=True)
    generator = GlobalGenerator(3, 3, ngf=4, n_downsampling=2, n_blocks=1, residual=False)
    (repo / "logs" / "refine" / "facescape").mkdir(parents=True)
    torch.save(generator.state_dict(), repo / "logs" / "refine" / "facescape" / "latest_net_G.pth")
    return repo


@pytest.fixture(scope="module")
def ran(original_repo):
    """Run the README's lines in order from the original repository's folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(original_repo)
        refine = load_script(ROOT / "run_refine.py")
        assert run_fit.main(FIT + TINY_FIT) == 0
        assert run_fit.main(FIT + ["--renderType", "rendering"] + TINY_FIT + ["--frames", "2"]) == 0
        assert refine.main(REFINE + ["--progress", "false"]) == 0
        assert run_fit.main(FIT + ["--renderType", "rendering_modulation"] + TINY_FIT) == 0
    return original_repo / "data" / "fit" / "fitting" / "segRelRes_1"


def test_the_lines_parse_as_written():
    cmd = __import__("facenerf.fitting.options", fromlist=["x"])
    for line, mode in ((FIT, "fitting"), (FIT + ["--renderType", "rendering"], "rendering"),
                       (FIT + ["--renderType", "rendering_modulation"], "rendering_modulation")):
        command = cmd.fit_command_from_args(parse_args(cmd.build_fit_parser(), line))
        assert command.render_type == mode and command.modes.view_convention == "original"
        assert command.fit_dir().as_posix() == "data/fit/fitting/segRelRes_1"   # the original's folder
        assert command.modes.yaws == (-60.0, 0.0, 60.0) and command.fit.schedule.iterations == 2000


def test_fitting_uses_the_released_checkpoint_and_statistics(ran):
    fit = FitResult.load(ran / "fit.pt")
    assert fit.complete and fit.checkpoint.endswith("logs/mofanerf_0to300/000010.tar")
    assert (ran / "target.png").is_file()


def test_rendering_writes_the_original_views(ran, original_repo):
    """``fitRes_60.png`` is the render at the original's camera for +60 degrees (pitch 0, radius 16)."""
    loaded = load_run(original_repo / "logs" / "mofanerf_0to300" / "000010.tar")
    fit = FitResult.load(ran / "fit.pt")
    face = FaceState.from_fit(fit)
    K = intrinsics_at(fit.intrinsics, 32)
    for yaw in (-60, 0, 60):
        image = read_image(ran / "render" / f"fitRes_{yaw}.png")
        expected = render_face(loaded.model, face, original_pose(yaw), K, loaded.render_settings).numpy()
        assert image.shape == (32, 32, 3)
        assert np.abs(to_uint8(expected).astype(int) - to_uint8(image).astype(int)).max() <= 1, yaw
    ours = render_face(loaded.model, face, mofanerf_pose(0.0, 60.0), K, loaded.render_settings).numpy()
    assert np.abs(ours - read_image(ran / "render" / "fitRes_60.png")).mean() > 0.01   # the sign matters
    for yaw, pitch in ((60, 0), (-35, 0), (20, 15), (-70, -30)):
        assert torch.allclose(original_view(yaw, pitch), original_pose(yaw, pitch), atol=1e-5)


def test_refine_writes_beside_the_render_folder_at_512(ran, original_repo):
    generator = GlobalGenerator(3, 3, ngf=4, n_downsampling=2, n_blocks=1, residual=False)
    generator.load_state_dict(torch.load(original_repo / "logs/refine/facescape/latest_net_G.pth", weights_only=True))
    refined = read_image(ran / "refine" / "fitRes_60.png")
    expected = refine_image(generator.eval(), read_image(ran / "render" / "fitRes_60.png"), 512, torch.device("cpu"),
                            restore_size=False)
    assert refined.shape == (512, 512, 3)
    assert np.abs(refined - expected).max() <= 1.5 / 255


def test_rendering_modulation_writes_the_original_files(ran):
    names = {p.name for p in (ran / "render").iterdir()}
    rigging = {f"rigging_{n}.png" for n in ("dimpler", "lip_roll", "mouth_stretch", "cheek_blowing", "eye_closed")}
    edits = {f"chg_{what}_{k}.png" for what in ("shape", "tex") for k in range(3)}
    assert rigging | edits <= names
    assert np.abs(read_image(ran / "render" / "chg_tex_0.png") - read_image(ran / "render" / "chg_tex_1.png")).max() > 0


# ----------------------------------------------------------------------------- training

def _multiview(root, ids=("1", "2", "3"), train_views=2, test_views=4):
    """FaceScape-layout renders: per identity ``train_views`` training and ``test_views`` test views."""
    mv = root / "multiViewImages"
    rng = np.random.default_rng(1)
    np.save(root / "factors_id.npy", rng.normal(size=(max(int(i) for i in ids) + 1, 50)).astype(np.float32))
    for ident in ids:
        write_image(root / "facescape_trainset" / ident / "models_reg" / "1_neutral.jpg", rng.random((8, 8, 3)))
        for split, count, offset in (("train", train_views, 0), ("test", test_views, train_views)):
            frames = []
            for v in range(offset, offset + count):
                write_image(mv / ident / "neutral" / f"0_{v}.png", rng.random((8, 8, 3)).astype(np.float32))
                frames.append({"file_path": f"/{ident}/neutral/0_{v}", "expression": 0,
                               "transform_matrix": mofanerf_pose(0.0, 10.0 * v).tolist()})
            header = {"fl_x": 18.75, "fl_y": 18.75, "cx": 4, "cy": 4, "w": 8, "h": 8, "frames": frames}
            (mv / f"transforms_{split}_{ident}.json").write_text(json.dumps(header))
    return mv


def test_training_line_keeps_the_original_meaning(tmp_path):
    """``python run_train.py --config configs/exp_mofanerf.txt`` with the original's flags, bare and valued."""
    from facenerf.models.mofanerf.data import build_data

    mv = _multiview(tmp_path)
    line = ["--config", str(ROOT / "configs" / "exp_mofanerf.txt"), "--datadir", str(mv), "--no_reload",
            "--white_bkgd", "--use_viewdirs", "--lindisp", "--no_batching", "--half_res", "false",
            "--personList", "1,3", "--scale", "2", "--testskip", "3"]
    run = run_config_from_args(parse_args(build_train_parser(), line))
    assert run.train.no_reload and run.render.white_bkgd and run.render.lindisp and not run.data.half_res
    assert (run.data.person_num, run.data.personList) == (2, (1, 3))
    assert (run.train.lrate, run.train.lrate_decay, run.sampling.n_rays, run.render.N_samples) == (5e-5, 500, 1024, 64)
    assert (run.model.netdepth_fine, run.model.netwidth_fine, run.model.shape_dim) == (10, 1024, 50)
    data = build_data(run, tmp_path / "run")
    assert [p.identity for p in data.identities] == ["1", "3"]
    frames = data.frames
    assert np.allclose(np.linalg.norm(frames.c2w[:, :3, 3], axis=1), 8.0)   # radius 16 / scale 2
    test_views = sorted(p.name for p, t in zip(frames.image_paths, frames.is_test) if t)
    assert test_views == ["0_2.png", "0_2.png", "0_5.png", "0_5.png"]          # every 3rd of 4 per identity
    default = run_config_from_args(parse_args(build_train_parser(), ["--config", str(ROOT / "configs/exp_mofanerf.txt")]))
    assert (default.data.testskip, default.data.valid_ids, default.data.person_num) == (8, "auto", 300)
    with pytest.raises(FaceNerfError, match="personList names identities not in .*: 7"):
        build_data(run_config_from_args(parse_args(build_train_parser(), line + ["--personList", "1,7"])), tmp_path)
    for flag in ("--render_only", "--render_test"):  # the original rendered instead of training
        with pytest.raises(FaceNerfError, match="render_only / render_test are not supported: run_train.py only"):
            run_config_from_args(parse_args(build_train_parser(), line + [flag]))


def test_valid_identity_rule_for_real_facescape_ids():
    ids = [str(i) for i in range(1, 848)]
    chosen = select_identities(ids, 300)   # auto: ids above 600 exist, so the original's rule
    expected = [str(i) for i in range(1, 301)]
    for bad, good in zip(FACESCAPE_INVALID_IDS, FACESCAPE_SUBSTITUTE_IDS):
        if int(bad) <= 300:
            expected[int(bad) - 1] = good
    assert chosen == expected and chosen[38] == "615" and chosen[236] == "627"
    assert select_identities(ids, 300, rule="first") == [str(i) for i in range(1, 301)]
    assert select_identities([str(i) for i in range(1, 6)], 4) == ["1", "2", "3", "4"]   # synthetic: first 4
    assert len(set(select_identities(ids, 500))) == 500                                  # each id once
    with pytest.raises(FaceNerfError, match="replaced by 615, which is not in"):
        select_identities([str(i) for i in range(1, 601)], 50, rule="original")
    frames = [type("F", (), {"identity": i})() for i in ("1", "1", "1", "2", "2")]
    assert [f.identity for f in every_nth_per_identity(frames, 2)] == ["1", "1", "2"]


# ----------------------------------------------------------------------------- RefineNet options

def test_pix2pixhd_options_keep_their_meaning_or_name_ours():
    from facenerf.models.refine.options import run_config_from_args as refine_run, test_settings_from_args

    train = build("trainingDataPreprocess/train.py")
    run = refine_run(parse_args(train, ["--name", "facescape", "--dataroot", "d", "--batchSize", "4", "--loadSize",
                                        "256", "--niter", "19", "--niter_decay", "1", "--nThreads", "0", "--gpu_ids",
                                        "-1", "--no_vgg_loss", "--no_ganFeat_loss", "--continue_train", "--tf_log",
                                        "--print_freq", "7", "--save_latest_freq", "9", "--label_nc", "0",
                                        "--norm", "instance", "--resize_or_crop", "resize", "--fineSize", "256",
                                        "--lr", "0.0002", "--beta1", "0.5", "--which_epoch", "latest"]))
    t = run.train
    assert (t.batch_size, t.load_size, t.niter, t.niter_decay, t.workers, t.log_every, t.save_every) == \
        (4, 256, 19, 1, 0, 7, 9)
    assert run.runtime.device == "cpu" and run.net.lambda_vgg == 0 and run.net.lambda_feat == 0 and run.net.lr == 2e-4
    from facenerf.models.refine.training import epochs_to_steps

    assert epochs_to_steps(19, 1, 10, 4) == (60, 57, 3)
    for flag, says in (("--no_flip", "--flip true"), ("--no_lsgan", "LSGAN"), ("--label_nc 5", "label maps"),
                       ("--display_freq 10", "--eval_every"), ("--use_dropout", "no dropout")):
        with pytest.raises(FaceNerfError, match=f"pix2pixHD.*{says}"):
            parse_args(train, flag.split())
    test = build("trainingDataPreprocess/test.py")
    settings, runtime, epoch = test_settings_from_args(parse_args(test, [
        "--name", "facescape", "--nerf_folder", "r", "--which_epoch", "20", "--results_dir", "res", "--how_many", "5",
        "--gpu_ids", "-1", "--loadSize", "512", "--phase", "test", "--batchSize", "1"]))
    assert (epoch, settings.how_many, settings.load_size, runtime.device) == ("20", 5, 512, "cpu")
    assert settings.out_folder == "res/facescape/test_20/images"
    with pytest.raises(FaceNerfError, match="pix2pixHD.*trainingDataPreprocess/train.py"):
        parse_args(test, ["--niter", "3"])
    with pytest.raises(FaceNerfError, match="pix2pixHD.*--how_many"):
        parse_args(test, ["--ntest", "3"])


# every option of the original's pix2pixHD option files (base, train, test)
PIX2PIXHD_BASE = ("name gpu_ids checkpoints_dir model norm use_dropout data_type verbose fp16 local_rank batchSize "
                  "loadSize fineSize label_nc input_nc output_nc dataroot nerf_folder gt_folder result_folder "
                  "resize_or_crop serial_batches no_flip nThreads max_dataset_size display_winsize tf_log netG ngf "
                  "n_downsample_global n_blocks_global n_blocks_local n_local_enhancers niter_fix_global no_instance "
                  "instance_feat label_feat feat_num load_features n_downsample_E nef n_clusters").split()
PIX2PIXHD_TRAIN = ("display_freq print_freq save_latest_freq save_epoch_freq no_html debug continue_train load_pretrain "
                   "which_epoch phase niter niter_decay beta1 lr num_D n_layers_D ndf lambda_feat no_ganFeat_loss "
                   "no_vgg_loss no_lsgan pool_size").split()
PIX2PIXHD_TEST = ("ntest results_dir aspect_ratio phase which_epoch how_many cluster_path use_encoded_image export_onnx "
                  "engine onnx").split()


@pytest.mark.parametrize("label, names", [("trainingDataPreprocess/train.py", PIX2PIXHD_BASE + PIX2PIXHD_TRAIN),
                                          ("trainingDataPreprocess/test.py", PIX2PIXHD_BASE + PIX2PIXHD_TEST),
                                          ("run_refine.py", PIX2PIXHD_BASE + PIX2PIXHD_TEST)])
def test_every_pix2pixhd_option_is_accepted_or_named(label, names):
    """Each of the 75 options parses (bare or with a typical value) or stops with one line naming ours."""
    assert len(set(PIX2PIXHD_BASE + PIX2PIXHD_TRAIN + PIX2PIXHD_TEST)) == 73   # phase, which_epoch in both
    parser = build(label)
    hidden = [a for a in parser._actions if a.dest.startswith("p2p_")]
    assert hidden and all(a.help == argparse.SUPPRESS for a in hidden)   # --help lists only our keys
    value = {"gpu_ids": "-1", "label_nc": "0", "input_nc": "3", "output_nc": "3", "norm": "instance",
             "model": "pix2pixHD", "data_type": "32", "resize_or_crop": "resize", "pool_size": "0",
             "aspect_ratio": "1.0", "max_dataset_size": "inf", "phase": "train" if label.endswith("train.py") else "test"}
    accepted_names = []
    for name in names:
        args = [f"--{name}"] + ([value[name]] if name in value else ["3"] if name not in (
            "use_dropout", "verbose", "fp16", "serial_batches", "no_flip", "tf_log", "no_instance", "instance_feat",
            "label_feat", "load_features", "no_html", "debug", "continue_train", "no_ganFeat_loss", "no_vgg_loss",
            "no_lsgan", "use_encoded_image") else [])
        if name in ("name", "checkpoints_dir", "dataroot", "nerf_folder", "gt_folder", "netG", "which_epoch",
                    "results_dir", "load_pretrain", "cluster_path", "export_onnx", "engine", "onnx", "result_folder"):
            args = [f"--{name}", "global" if name == "netG" else "x"]
        try:
            parse_args(parser, args + (["--nerf_folder", "r"] if not label.endswith("train.py") else []))
            accepted_names.append(name)
        except FaceNerfError as err:
            assert "pix2pixHD" in str(err) and "unknown argument" not in str(err), (name, str(err))
    common = {"name", "gpu_ids", "checkpoints_dir", "loadSize", "which_epoch", "phase", "nerf_folder", "label_nc"}
    must = common | ({"batchSize", "niter", "niter_decay", "continue_train", "nThreads", "lr", "beta1", "fp16",
                      "print_freq", "save_latest_freq", "no_vgg_loss", "dataroot", "gt_folder"}
                     if label.endswith("train.py") else {"results_dir", "how_many", "batchSize", "nThreads"})
    assert must <= set(accepted_names), must - set(accepted_names)
