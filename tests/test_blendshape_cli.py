"""main_nerf.py: the seed's flags, one tiny train + --test run on a generated talking head, bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from commands import ROOT, build, load_script
from devices import needs_cuda
from facenerf.cli import parse_args
from facenerf.errors import FaceNerfError
from facenerf.preprocess.training import gl

try:
    PLATFORM = gl.select_gl_platform()
except FaceNerfError:
    PLATFORM = None
needs_gl = pytest.mark.skipif(PLATFORM is None, reason="no headless OpenGL platform")
MAIN_NERF = load_script(ROOT / "main_nerf.py")

SEED_COMMAND = ("data/DATASET --workspace W --test_fps 25 --network blend4_noamb --use_patch_loss --patch_size 32 "
                "--train_epoch 15 --downscale 2 --cuda_ray --preload 2 --test_num 500 --expr_dim 46 "
                "--update_extra_interval 1000 --fp16 --torso --head_ckpt PATH --test")
# a head small enough for a few dozen CPU steps in seconds
TINY = ["--num_levels", "4", "--level_dim", "2", "--desired_resolution", "32", "--log2_hashmap_size", "10",
        "--num_layers", "1", "--hidden_dim", "16", "--geo_feat_dim", "8", "--hidden_dim_color", "16",
        "--grid_size", "16", "--march_steps", "32", "--num_rays", "128", "--val_num", "1", "--lr", "0.01",
        "--device", "cpu", "--progress", "false", "--preload", "1"]


TINY_TORSO = ["--torso_grid_levels", "4", "--torso_grid_finest", "64", "--torso_grid_log2_table", "10",
              "--torso_grid_size", "16"]


def main(argv):
    """``main_nerf.py``'s main with ``argv`` (paths turned into text)."""
    return MAIN_NERF.main([str(a) for a in argv])


def test_the_seed_command_line_parses_exactly_as_written():
    from facenerf.models.blendshape.options import run_config_from_args, testing_from_args

    args = parse_args(build("main_nerf.py"), SEED_COMMAND.split())
    run, test = run_config_from_args(args), testing_from_args(args)
    assert run.data.path == "data/DATASET" and run.train.workspace == "W" and test.test_fps == 25
    assert run.model.network == "blend4_noamb" and run.train.use_patch_loss and run.train.patch_size == 32
    assert run.train.train_epoch == 15 and run.data.downscale == 2.0 and run.scene.cuda_ray is True
    assert run.data.preload == 2 and run.data.test_num == 500 and run.model.expr_dim == 46
    assert run.scene.update_extra_interval == 1000 and run.train.fp16 and run.train.torso
    assert run.train.head_ckpt == "PATH" and test.test is True
    # the defaults are the release's sizes; the unofficial --train_epochs spelling is accepted too
    plain = run_config_from_args(parse_args(build("main_nerf.py"), ["d", "--train_epochs", "3"]))
    assert plain.train.train_epoch == 3 and plain.scene.cuda_ray is False and plain.train.fp16 is False
    m = plain.model
    assert (m.num_levels, m.level_dim, m.base_resolution, m.desired_resolution, m.log2_hashmap_size) == (16, 4, 16,
                                                                                                        1024, 14)
    assert (m.num_layers, m.hidden_dim, m.num_layers_color, m.hidden_dim_color, m.sh_degree) == (4, 64, 1, 64, 4)


def test_config_files_and_bare_flags(tmp_path):
    from facenerf.models.blendshape.options import run_config_from_args

    config = tmp_path / "c.txt"
    config.write_text("cuda_ray = true\nnum_rays = 512\nfp16 = false\n")
    run = run_config_from_args(parse_args(build("main_nerf.py"), ["d", "-c", str(config), "--fp16"]))
    assert run.scene.cuda_ray and run.train.num_rays == 512 and run.train.fp16  # the command line wins
    with pytest.raises(FaceNerfError, match="did you mean 'num_rays'"):
        config.write_text("num_ray = 5\n")
        parse_args(build("main_nerf.py"), ["d", "-c", str(config)])
    shipped = parse_args(build("main_nerf.py"), ["d", "-c", str(ROOT / "configs" / "blendshape_tiny.txt")])
    assert shipped.cuda_ray is True and shipped.device == "cpu"


TALK_SETTINGS = dict(frames=24, size=32, test_num=4, texture_size=128, n_vertices=2500, progress=False)


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> Path:
    """A generated talking head: 24 frames at 32 px, the last 4 held out. On a machine without
    OpenGL, FACENERF_TEST_TALK names one made elsewhere with these settings
    (``benchmarks/gpu_prepare.sh`` writes it to data/gpu_test_talk)."""
    if os.environ.get("FACENERF_TEST_TALK"):
        given = tmp_path_factory.mktemp("blend") / "talk"
        shutil.copytree(os.environ["FACENERF_TEST_TALK"], given)
        return given
    if PLATFORM is None:
        pytest.skip("no headless OpenGL platform")
    from facenerf.data.synthetic.talking_head import TalkingHeadSettings, generate_talking_head

    out = tmp_path_factory.mktemp("blend") / "talk"
    generate_talking_head(TalkingHeadSettings(out=out, **TALK_SETTINGS))
    return out


@pytest.mark.cuda
@needs_cuda
def test_head_torso_and_test_with_fp16_on_cuda(talk, tmp_path, capsys):
    """The CUDA path of main_nerf.py: --cuda_ray, --fp16 autocast with loss scaling, the frames on the
    GPU, the head, then the torso, then --test (where ffmpeg is installed)."""
    from facenerf.models.blendshape.checkpoints import load_blendshape

    tiny = [a if a != "cpu" else "cuda" for a in TINY]
    ws, torso_ws = tmp_path / "ws", tmp_path / "torso"
    assert main([talk, "--workspace", ws, "--cuda_ray", "--update_extra_interval", "10", "--grid_warmup", "11",
                 *tiny, "--iters", "30", "--use_patch_loss", "--patch_size", "16", "--patch_from", "0.5", "--fp16",
                 "--preload", "2"]) == 0
    out = capsys.readouterr().out
    assert "ignored" not in out and "step 30" in out
    model, info = load_blendshape(sorted((ws / "checkpoints").glob("step_*.pt"))[-1])
    assert info["step"] == 30 and 0 < model.grid.occupied_fraction() < 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert main([talk, "--workspace", torso_ws, "--torso", "--head_ckpt", ws, "--iters", "20", *tiny, *TINY_TORSO,
                 "--fp16"]) == 0
    assert "trained the torso to step 20" in capsys.readouterr().out
    if importlib.util.find_spec("imageio_ffmpeg") is None and shutil.which("ffmpeg") is None:
        pytest.skip("trained on CUDA; --test writes MP4s and needs ffmpeg (imageio-ffmpeg)")
    assert main([talk, "--workspace", torso_ws, "--test", "--fp16", "--orbit_frames", "2", "--device", "cuda",
                 "--progress", "false"]) == 0
    metrics = json.loads((torso_ws / "results" / "metrics.json").read_text())
    assert metrics["n_frames"] == 4 and 5 < metrics["psnr"] < 60


@needs_gl
def test_train_resume_and_test_end_to_end(talk, tmp_path, capsys):
    ws = tmp_path / "ws"
    common = [talk, "--workspace", ws, "--cuda_ray", "--update_extra_interval", "10", "--grid_warmup", "11", *TINY]
    assert main([*common, "--iters", "30", "--use_patch_loss", "--patch_size", "16", "--patch_from", "0.5",
                 "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "--fp16 is ignored on the CPU" in out and "SSIM + gradients" in out and "step 30" in out
    checkpoints = sorted((ws / "checkpoints").glob("step_*.pt"))
    assert checkpoints[-1].name == "step_00000030.pt" and (ws / "config.txt").is_file()
    assert list((ws / "validation").glob("step_*.png"))
    from facenerf.models.blendshape.checkpoints import load_blendshape
    from facenerf.models.table import read_checkpoint_run

    model, info = load_blendshape(checkpoints[-1])
    assert info["step"] == 30 and model.expr_dim == 10 and 0 < model.grid.occupied_fraction() < 1
    assert read_checkpoint_run(checkpoints[-1])[0] == "nerfblendshape"
    # rerunning resumes; more steps continue from the checkpoint
    assert main([*common, "--iters", "34", "--preload", "2"]) == 0  # the frames on the device
    assert "resumed from" in capsys.readouterr().out
    transfer = tmp_path / "drive.npy"
    np.save(transfer, np.random.default_rng(0).uniform(0, 1, (5, 12)))  # 5 rows at 50 per second: 3 frames at 25
    assert main([talk, "--workspace", ws, "--test", "--test_expr", transfer, "--test_expr_fps", "50", "--orbit_frames",
                 "4", "--device", "cpu", "--progress", "false"]) == 0
    out = capsys.readouterr().out
    assert "held-out PSNR" in out and "using the first 10" in out
    results = ws / "results"
    metrics = json.loads((results / "metrics.json").read_text())
    assert metrics["n_frames"] == 4 and metrics["step"] == 34 and 5 < metrics["psnr"] < 60
    import imageio.v3 as iio

    for name, frames in (("reenact", 4), ("reenact_vs_gt", 4), ("orbit", 4), ("transfer", 3)):
        video = iio.imread(results / f"{name}.mp4")
        assert video.shape[0] == frames, name
    assert iio.imread(results / "reenact_vs_gt.mp4").shape[1:3] == (32, 64)
    # the closed/open check of the coefficient that varies most over the held-out frames
    from facenerf.tools import blendshape_check

    held_out = np.load(talk / "expr.npy")[-4:]
    varied = int(np.argmax(held_out.max(0) - held_out.min(0)))
    strip = tmp_path / "strip.png"
    assert blendshape_check.main([str(talk), "--workspace", str(ws), "--coefficient", str(varied), "--strip",
                                  str(strip), "--tile", "48", "--device", "cpu"]) == 0
    line = capsys.readouterr().out
    assert "mouth-region change reproduced" in line and "strip written" in line
    assert iio.imread(strip).shape == (48, 4 * 48 + 3 * 4, 3)
    with pytest.raises(FaceNerfError, match="unknown coefficient 'nose'"):
        blendshape_check.main([str(talk), "--workspace", str(ws), "--coefficient", "nose", "--device", "cpu"])
    # the torso behind the frozen head, then head over torso over background
    head_ckpt = sorted((ws / "checkpoints").glob("step_*.pt"))[-1]
    torso_ws = tmp_path / "torso"
    assert main([talk, "--workspace", torso_ws, "--torso", "--head_ckpt", ws, "--iters", "20", *TINY,
                 *TINY_TORSO, "--preload", "0"]) == 0  # frames and torso layers read from disk each step
    out = capsys.readouterr().out  # the head's workspace stands for its newest checkpoint
    assert "trained the torso to step 20" in out and f"frozen head of {head_ckpt}" in out
    trained, _ = load_blendshape(sorted((torso_ws / "checkpoints").glob("step_*.pt"))[-1])
    assert trained.torso is not None and trained.torso.codes.shape[0] == 20
    assert all(torch.equal(a, b) for a, b in zip(trained.field.state_dict().values(),
                                                 load_blendshape(head_ckpt)[0].field.state_dict().values()))
    assert main([talk, "--workspace", torso_ws, "--test", "--orbit_frames", "2", "--device", "cpu",
                 "--progress", "false"]) == 0
    composite = json.loads((torso_ws / "results" / "metrics.json").read_text())
    assert composite["n_frames"] == 4 and np.isfinite(composite["psnr"])
    _fails([talk, "--workspace", ws, "--torso", "--head_ckpt", head_ckpt, "--iters", "22", *TINY],
           "holds a head-only run")


def _fails(argv, match: str) -> None:
    with pytest.raises(FaceNerfError, match=match):
        main(argv)


@needs_gl
def test_bad_input_gets_one_clear_line_and_nothing_is_written(talk, tmp_path):
    ws = tmp_path / "ws"
    _fails([talk, "--workspace", ws, "--expr_dim", "12", *TINY], r"--expr_dim 12 does not match the data.*"
                                                                  r"pass --expr_dim 10")
    _fails([talk, "--workspace", ws, "--torso", *TINY], "--torso needs --head_ckpt")
    broken = tmp_path / "broken"
    shutil.copytree(talk, broken, ignore=shutil.ignore_patterns("ground_truth", "*.mp4"))
    (broken / "head_imgs" / "3.jpg").unlink()
    _fails([broken, "--workspace", ws, *TINY], r"1 of 20 frame images missing \(first: .*head_imgs/3.jpg\)")
    (broken / "head_imgs" / "3.jpg").write_bytes((talk / "head_imgs" / "3.jpg").read_bytes())
    shutil.rmtree(broken / "head_masks")
    shutil.rmtree(broken / "parsing")
    _fails([broken, "--workspace", ws, *TINY], "head masks missing")
    assert not ws.exists()  # nothing was written by any of them
    # a head trained on 4 coefficients cannot be tested or resumed with another count
    small = tmp_path / "small"
    assert main([talk, "--workspace", small, "--expr_dim", "4", "--iters", "2", *TINY]) == 0
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*") if p.is_file()}
    _fails([talk, "--workspace", small, "--expr_dim", "6", "--test", "--device", "cpu"],
           r"holds a head trained with --expr_dim 4.*uses 6")
    _fails([talk, "--workspace", small, "--expr_dim", "6", "--iters", "4", *TINY],
           r"holds a head trained with --expr_dim 4.*uses 6")
    _fails([talk, "--workspace", tmp_path / "none", "--test", "--device", "cpu"], "no checkpoint in")
    small_ckpt = sorted((small / "checkpoints").glob("step_*.pt"))[-1]
    _fails([talk, "--workspace", tmp_path / "t", "--torso", "--head_ckpt", small_ckpt, "--expr_dim", "6", *TINY],
           r"holds a head trained with --expr_dim 4.*uses 6")
    _fails([talk, "--workspace", tmp_path / "t", "--torso", "--head_ckpt", tmp_path / "nope.pt", *TINY],
           "--head_ckpt not found")
    (tmp_path / "empty_ws").mkdir()
    _fails([talk, "--workspace", tmp_path / "t", "--torso", "--head_ckpt", tmp_path / "empty_ws", *TINY],
           "no step_\\*.pt checkpoint")
    assert not (tmp_path / "t").exists()
    assert {p: p.stat().st_mtime_ns for p in small.rglob("*") if p.is_file()} == before


def test_errors_reach_the_user_as_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "main_nerf.py"), str(tmp_path / "missing"), "--workspace",
                           str(tmp_path / "ws")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: dataset folder not found")
    assert not (tmp_path / "ws").exists()


def test_the_release_layout_trains_with_its_scale_and_bound(tmp_path):
    """transforms.json + exp_ori + max_46.txt: poses x 0.33, the release's 0.06 cube, 46 coefficients."""
    from test_data_video import write_official

    root = tmp_path / "official"
    write_official(root, n=6, size=32)
    ws = tmp_path / "ws"
    assert main([root, "--workspace", ws, "--test_num", "2", "--iters", "3", *TINY]) == 0
    from facenerf.models.blendshape.checkpoints import load_blendshape

    model, info = load_blendshape(sorted((ws / "checkpoints").glob("*.pt"))[-1])
    assert model.expr_dim == 46 and info["run"].scene.scale == pytest.approx(0.33)
    assert info["run"].scene.bound == pytest.approx(0.06)


@needs_gl
def test_batches_are_one_frame_per_step_with_mouth_and_face_patches(talk):
    import torch

    from facenerf.models.blendshape.config import BlendShapeDataConfig, BlendShapeRunConfig
    from facenerf.models.blendshape.data import HeadBatches, load_head_data

    run = BlendShapeRunConfig(data=BlendShapeDataConfig(path=str(talk)))
    data = load_head_data(run, torch.device("cpu"))
    assert data.expr_dim == 10 and len(data.train) == 20 and data.run.scene.bound > 0
    batches = HeadBatches(data, num_rays=64, seed=3, patch_active=lambda step: step >= 20, patch_size=8)
    assert sorted(batches.frame_of(s) for s in range(20)) == list(range(20))  # an epoch visits every frame once
    first, again = batches(5), batches(5)
    assert torch.equal(first["rays"].directions, again["rays"].directions) and first["patch"] == 0
    assert len(first["rays"]) == 64 and first["mask"].shape == (64,) and first["coefficients"].shape == (10,)
    for step, key in ((20, "lip_rect"), (21, "face_rect")):
        batch = batches(step)
        assert batch["patch"] == 8 and len(batch["rays"]) == 64 + 64
        x, y, w, h = getattr(data.train.dataset.frames[batch["frame"]], key)
        # the patch centre (pixel rays of its middle) lies in the rectangle, clipped to the image
        mid = batch["rays"].directions[64 + 8 * 4 + 4]
        K = data.intrinsics
        pose = data.train.poses[batch["frame"]]
        cam = pose[:3, :3].T @ mid
        px, py = K.cx + K.fx * cam[0] / -cam[2], K.cy - K.fy * cam[1] / -cam[2]
        assert max(x, 0) - 1 <= float(px) <= x + w + 1 and max(y, 0) - 1 <= float(py) <= y + h + 1


def test_the_jaw_check_needs_a_real_closed_to_open_change():
    """A clip that never opens the jaw has held-out values a few thousandths apart: no check, and
    the reason; an open jaw gives the extreme frames inside the training range."""
    from types import SimpleNamespace

    from facenerf.models.blendshape.expression_check import frame_pair

    def data(values, low, high):
        return SimpleNamespace(expr_min=torch.tensor([low]), expr_max=torch.tensor([high]),
                               val=SimpleNamespace(coefficients=torch.tensor(values)[:, None]))

    with pytest.raises(FaceNerfError, match=r"barely vary in this coefficient \(0.000 to 0.005, under 0.050\)"):
        frame_pair(data([0.002, 0.0, 0.005, 0.001], 0.0, 0.0074), 0)
    assert frame_pair(data([0.3, 0.0, 0.9, 0.66], 0.0, 0.7), 0) == (1, 3)   # 0.9 is beyond the training range
    with pytest.raises(FaceNerfError, match="under 0.500"):                   # a coefficient ranging over 10
        frame_pair(data([1.0, 1.3], 0.0, 10.0), 0)


def test_driving_coefficients_are_taken_by_name_when_both_sides_name_them(tmp_path):
    """--test_expr: a table whose header names the head's coefficients in another order (and more
    of them) is read by name; one lacking some of them is refused; one without a header is read by
    position."""
    from facenerf.models.blendshape.testing import read_coefficients

    head = ["jaw_open", "mouth_smile", "eye_blink"]
    named = tmp_path / "named.csv"
    named.write_text("Timecode,EyeBlink,JawOpen,browUp,Mouth_Smile\n00:00:00:00.0,0.3,0.1,0.9,0.2\n")
    table, note = read_coefficients(str(named), 3, head)
    np.testing.assert_allclose(table, [[0.1, 0.2, 0.3]])
    assert note == "note: --test_expr columns taken by name (3 of its 4)"
    (tmp_path / "other.csv").write_text("jawOpen,mouthSmileLeft,eyeBlinkLeft\n0.1,0.2,0.3\n")
    with pytest.raises(FaceNerfError, match="lacks the head's mouth_smile, eye_blink; give those columns"):
        read_coefficients(str(tmp_path / "other.csv"), 3, head)
    arkit = tmp_path / "livelink.csv"  # a Live Link Face recording drives a head of process.py's blendshapes
    arkit.write_text("Timecode,BlendShapeCount,EyeBlinkLeft,EyeBlinkRight,JawOpen,MouthSmileLeft,MouthSmileRight,"
                     "MouthFunnel\n00:00:01:00.000,61,0.2,0.4,0.7,0.1,0.3,0.0\n")
    table, note = read_coefficients(str(arkit), 3, ["jaw_open", "mouth_smile", "eye_blink"])
    np.testing.assert_allclose(table, [[0.7, 0.2, 0.3]], rtol=1e-6)
    assert note.startswith("note: --test_expr holds ARKit coefficients")
    with pytest.raises(FaceNerfError, match="lacks the head's brow_up"):  # no ARKit brow columns in the table
        read_coefficients(str(arkit), 2, ["jaw_open", "brow_up"])
    from facenerf.models.blendshape.testing import at_video_rate

    ramp = np.stack([np.arange(13) / 60.0, np.ones(13)], 1)  # 0.2 s at 60 rows per second
    np.testing.assert_allclose(at_video_rate(ramp, 60.0, 25.0), np.stack([np.arange(6) / 25.0, np.ones(6)], 1),
                               atol=1e-6)
    assert at_video_rate(ramp, 0.0, 25.0) is ramp and at_video_rate(ramp, 25.0, 25.0) is ramp
    (tmp_path / "plain.csv").write_text("0.1,0.2,0.3,0.4\n")
    table, note = read_coefficients(str(tmp_path / "plain.csv"), 3, head)
    np.testing.assert_allclose(table, [[0.1, 0.2, 0.3]])
    assert "using the first 3" in note


def test_the_arkit_mapping_covers_every_procedural_blendshape_with_real_arkit_names():
    from facenerf.data.synthetic.blendshapes import BLENDSHAPES
    from facenerf.preprocess.video.exprfile import ARKIT_TO_PROCEDURAL

    sides = [f"{part}{side}" for side in ("Left", "Right") for part in (
        "eyeBlink", "eyeLookDown", "eyeLookIn", "eyeLookOut", "eyeLookUp", "eyeSquint", "eyeWide", "mouthSmile",
        "mouthFrown", "mouthDimple", "mouthStretch", "mouthPress", "mouthLowerDown", "mouthUpperUp", "browDown",
        "browOuterUp", "cheekSquint", "noseSneer")]
    arkit = set(sides) | {"jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
                          "mouthLeft", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
                          "mouthShrugUpper", "browInnerUp", "cheekPuff", "tongueOut"}
    assert len(arkit) == 52
    assert set(ARKIT_TO_PROCEDURAL) == set(BLENDSHAPES)
    assert all(source in arkit for sources in ARKIT_TO_PROCEDURAL.values() for source in sources)
