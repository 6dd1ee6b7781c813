"""run_train.py end to end on a tiny synthetic FaceScape dataset built by the data CLIs.

Covers: outputs and automatic resume, bit-identical resume, clear errors (no images,
code sizes that do not match the run's checkpoint, a killed run), and a 2-process DDP run
with torchrun on the CPU (gloo).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the CLI scripts live at the repository root
    sys.path.insert(0, str(ROOT))

import run_train  # noqa: E402
from facenerf.engine.checkpoint import load_checkpoint  # noqa: E402
from facenerf.errors import FaceNerfError  # noqa: E402

TINY = ["--device", "cpu", "--threads", "1", "--num_workers", "0", "--N_rand", "32", "--N_samples", "8",
        "--N_importance", "8", "--netdepth", "3", "--netwidth", "16", "--netdepth_fine", "3",
        "--netwidth_fine", "16", "--skip", "2", "--xyz_depth", "2", "--multires", "4", "--multires_views", "2",
        "--input_ch_textureCodes", "8", "--input_ch_expCodes", "6", "--ism_width", "16", "--ism_depth", "2",
        "--tex_size", "16", "--tex_channels", "4,8", "--tex_hidden", "16", "--tex_decoder_depth", "1",
        "--i_print", "2", "--n_val", "1", "--val_scale", "0.5", "--progress", "false", "--grid_ids", "2",
        "--grid_exps", "0,1", "--precrop_iters", "1", "--near", "12", "--far", "20", "--lrate", "0.005"]


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    """2 identities x 2 expressions x 8 views at 32^2, made with the project's data CLIs."""
    import align_clip
    import render
    from facenerf.data.synthetic import __main__ as synthetic

    root = tmp_path_factory.mktemp("facescape")
    quiet = ["--progress", "false"]
    assert synthetic.main(["--ids", "2", "--out", str(root), "--expressions", "1,2", "--texture_size", "64",
                           "--vertices", "1500"] + quiet) == 0
    assert align_clip.main(["--data", str(root)] + quiet) == 0
    assert render.main(["--data", str(root), "--resolution", "32", "--views", "8"] + quiet) == 0
    return root / "multiViewImages"


def train(datadir: Path, basedir: Path, *extra: str, expname: str = "run") -> None:
    run_train.main(["--datadir", str(datadir), "--basedir", str(basedir), "--expname", expname, *TINY, *extra])


def test_training_writes_outputs_and_resumes(datadir, tmp_path, capsys):
    train(datadir, tmp_path, "--N_iters", "4", "--i_weights", "2", "--i_testset", "4", "--i_img", "1")
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    assert (run / "val" / "step_00000004.png").is_file() and (run / "grid_ids_x_expressions.png").is_file()
    assert (run / "config.txt").is_file() and any((run / "tensorboard").iterdir())
    assert len(list((run / "uv_cache").glob("uv_*_16.npy"))) == 2
    payload = load_checkpoint(run / "checkpoints" / "step_00000004.pt")
    assert payload["model"] == "mofanerf" and payload["config"]["model"]["exp_dim"] == 6
    out = capsys.readouterr().out
    assert "trained to step 4" in out and "held-out PSNR" in out
    assert "note: run_train.py does not read --i_img: keys of the original code" in out  # accepted, named
    train(datadir, tmp_path, "--N_iters", "6", "--i_weights", "2", "--i_testset", "0")
    assert load_checkpoint(run / "checkpoints" / "step_00000006.pt")["step"] == 6
    assert "resumed from" in (run / "train_log.txt").read_text()


def test_resume_continues_with_identical_state(datadir, tmp_path):
    common = ["--i_weights", "2", "--i_testset", "0", "--grid_ids", "1", "--grid_exps", "0"]
    train(datadir, tmp_path, "--N_iters", "4", *common, expname="straight")
    train(datadir, tmp_path, "--N_iters", "2", *common, expname="split")
    train(datadir, tmp_path, "--N_iters", "4", *common, expname="split")
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "step_00000004.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "step_00000004.pt")
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key
    sa, sb = a["optimizer_state"]["main"]["state"], b["optimizer_state"]["main"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert all(torch.equal(torch.as_tensor(sa[i][k]), torch.as_tensor(sb[i][k])) for k in sa[i])


def test_clear_errors_for_bad_data_and_mismatched_code_sizes(datadir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FaceNerfError, match="run render.py"):
        train(empty, tmp_path, "--N_iters", "1")
    no_images = tmp_path / "no_images"
    shutil.copytree(datadir, no_images, ignore=shutil.ignore_patterns("*.png"))
    for name in ("factors_id.npy", "landmarks_3d.npy", "facescape_trainset"):
        (tmp_path / name).symlink_to(datadir.parent / name)
    with pytest.raises(FaceNerfError, match="no training images found"):
        train(no_images, tmp_path, "--N_iters", "1")
    train(datadir, tmp_path, "--N_iters", "2", "--i_testset", "0", "--grid_ids", "1", "--grid_exps", "0")
    with pytest.raises(FaceNerfError, match=r"input_ch_expCodes: config 9 vs checkpoint 6"):
        train(datadir, tmp_path, "--N_iters", "3", "--input_ch_expCodes", "9")


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}


def _saved_steps(folder: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("step_*.pt"))


def test_killed_run_resumes_from_its_last_checkpoint(datadir, tmp_path):
    cmd = [sys.executable, str(ROOT / "run_train.py"), "--datadir", str(datadir), "--basedir", str(tmp_path),
           "--expname", "killed", *TINY, "--N_iters", "100000", "--i_weights", "3", "--i_testset", "0"]
    with open(tmp_path / "stderr.txt", "w+") as errors:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=errors)
        ckpt = tmp_path / "killed" / "checkpoints"
        deadline = time.time() + 120
        while time.time() < deadline and max(_saved_steps(ckpt), default=0) < 6 and proc.poll() is None:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # no chance to save: only the periodic checkpoints survive
        proc.wait()
        errors.seek(0)
        assert max(_saved_steps(ckpt), default=0) >= 6, errors.read()[-3000:]
    saved = _saved_steps(ckpt)[-1]
    train(datadir, tmp_path, "--N_iters", str(saved + 2), "--i_weights", "3", "--i_testset", "0",
          "--grid_ids", "1", "--grid_exps", "0", expname="killed")
    log = (tmp_path / "killed" / "train_log.txt").read_text()
    assert f"at step {saved}" in log and load_checkpoint(ckpt / f"step_{saved + 2:08d}.pt")["step"] == saved + 2


def test_ddp_two_cpu_processes_with_torchrun(datadir, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "run_train.py"), "--datadir", str(datadir), "--basedir", str(tmp_path), "--expname", "ddp",
           *TINY, "--N_iters", "4", "--i_weights", "2", "--i_testset", "4", "--grid_ids", "1", "--grid_exps", "0"]
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 data-parallel processes; parameters of all ranks in sync" in done.stdout
    ckpt = tmp_path / "ddp" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    assert load_checkpoint(ckpt / "step_00000004.pt")["config"]["sampling"]["n_rays"] == 32
    assert len(list((tmp_path / "ddp" / "tensorboard").iterdir())) == 1  # rank 0 logs alone


def test_config_files_parse_and_the_released_config_gives_the_released_model():
    from facenerf.cli import parse_args
    from facenerf.models.mofanerf.config import MoFaNeRFConfig
    from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args

    configs = ROOT / "configs"
    released = run_config_from_args(parse_args(build_train_parser(), ["-c", str(configs / "exp_mofanerf.txt")]))
    assert released.model == MoFaNeRFConfig()
    assert (released.train.lrate, released.train.lrate_decay, released.sampling.n_rays, released.render.N_samples,
            released.render.N_importance, released.render.chunk, released.runtime.amp) == \
        (5e-5, 500, 1024, 64, 64, 8192, "bf16")
    tiny = run_config_from_args(parse_args(build_train_parser(), ["-c", str(configs / "mofanerf_tiny.txt")]))
    assert tiny.model.netwidth_fine == 64 and tiny.model.tex_channels == (16, 16, 32, 32)
    no_fine = run_config_from_args(parse_args(build_train_parser(), ["--N_importance", "0"]))
    assert not no_fine.model.has_fine  # N_importance = 0 trains no fine network, as the original code


def _heldout_psnr(capsys) -> float:
    import re

    match = re.search(r"held-out PSNR ([0-9.]+) dB", capsys.readouterr().out)
    assert match, "no held-out PSNR printed"
    return float(match.group(1))


def test_any_shape_code_scale_trains_alike_and_the_run_stores_its_statistics_and_template(
        datadir, tmp_path, capsys):
    """Codes x25 (std ~0.8 instead of ~0.03) reach the same held-out PSNR: they are standardised."""
    import numpy as np

    codes = np.load(datadir.parent / "factors_id.npy")
    np.save(tmp_path / "factors_x25.npy", codes * 25.0)
    common = ["--N_iters", "30", "--i_testset", "30", "--i_weights", "30", "--grid_ids", "1", "--grid_exps", "0"]
    train(datadir, tmp_path, *common, expname="plain")
    plain = _heldout_psnr(capsys)
    train(datadir, tmp_path, *common, "--shape_codes", str(tmp_path / "factors_x25.npy"), expname="x25")
    scaled = _heldout_psnr(capsys)
    assert abs(plain - scaled) < 1.0
    a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "step_00000030.pt")
    b = load_checkpoint(tmp_path / "x25" / "checkpoints" / "step_00000030.pt")
    torch.testing.assert_close(b["model_state"]["shape_code_mean"], 25.0 * a["model_state"]["shape_code_mean"])
    torch.testing.assert_close(b["model_state"]["shape_code_scale"], a["model_state"]["shape_code_scale"] / 25.0)
    template = np.asarray(a["config"]["alignment_template"]["landmarks_512"])
    assert template.shape == (68, 2) and a["config"]["alignment_template"]["identities"] == 2
    assert a["config"]["render"]["pixel_center"] == 0.5              # as render.py recorded it
