"""run_train.py under faults: the pruning scenario end to end, an image that goes bad during a run
(checkpoint, then one line), skip_bad_images, and person_num checked against the data."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from fault_tools import ROOT, start, wait_until
from tiny_faces import write_multiview_data

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import run_train  # noqa: E402
from facenerf.engine.checkpoint import CheckpointManager, load_checkpoint  # noqa: E402
from facenerf.errors import FaceNerfError  # noqa: E402

TINY = ["--device", "cpu", "--threads", "1", "--num_workers", "0", "--N_rand", "16", "--N_samples", "4",
        "--N_importance", "4", "--netdepth", "3", "--netwidth", "8", "--netdepth_fine", "3", "--netwidth_fine", "8",
        "--skip", "2", "--xyz_depth", "2", "--multires", "2", "--multires_views", "2",
        "--input_ch_shapeCodes", "6", "--input_ch_textureCodes", "4", "--input_ch_expCodes", "4",
        "--n_expressions", "1", "--ism_width", "8", "--ism_depth", "2", "--tex_size", "8", "--tex_channels", "4",
        "--tex_hidden", "8", "--tex_decoder_depth", "1", "--i_print", "0", "--n_val", "1", "--val_scale", "0.5",
        "--progress", "false", "--grid_ids", "1", "--grid_exps", "0", "--precrop_iters", "0",
        "--near", "12", "--far", "20", "--i_testset", "0"]


@pytest.fixture(scope="module")
def datadir(tmp_path_factory) -> Path:
    return write_multiview_data(tmp_path_factory.mktemp("tiny"), size=16)


def _copy(datadir: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(datadir.parent, tmp_path / "data")
    return tmp_path / "data" / "multiViewImages"


def _train(datadir, basedir, *extra):
    return run_train.main(["--datadir", str(datadir), "--basedir", str(basedir), "--expname", "run", *TINY, *extra])


def _steps(folder: Path) -> list[int]:
    return [s for s, _ in CheckpointManager(folder).checkpoints()]


def test_run_train_pruning_scenario_keeps_the_good_checkpoints(datadir, tmp_path, capsys):
    folder = tmp_path / "run" / "checkpoints"
    _train(datadir, tmp_path, "--N_iters", "50", "--i_weights", "50")
    capsys.readouterr()
    good = (folder / "step_00000050.pt").read_bytes()
    for step, content in ((900, b"\x00" * 100), (901, good[:5000]), (902, good[: len(good) - 10])):
        (folder / f"step_{step:08d}.pt").write_bytes(content)
    _train(datadir, tmp_path, "--N_iters", "100", "--i_weights", "25", "--keep_last", "3")
    out = capsys.readouterr().out
    assert "resumed from" in out and out.count("unreadable checkpoint moved aside") == 3
    assert _steps(folder) == [50, 75, 100] and len(list(folder.glob("*.corrupt"))) == 3
    named = out.split("(checkpoint ")[1].split(",")[0]
    assert Path(named) == folder / "step_00000100.pt" and load_checkpoint(named)["step"] == 100
    assert _train(datadir, tmp_path, "--N_iters", "100", "--i_weights", "25") == 0   # the next run starts


def test_an_image_that_goes_bad_mid_run_saves_a_checkpoint_and_gives_one_line(datadir, tmp_path):
    data = _copy(datadir, tmp_path)
    bad = data / "2" / "neutral" / "0_1.png"
    cmd = [str(ROOT / "run_train.py"), "--datadir", str(data), "--basedir", str(tmp_path), "--expname", "run",
           *TINY, "--num_workers", "2", "--N_iters", "100000", "--i_weights", "5"]
    proc = start(cmd, tmp_path / "log.txt")
    folder = tmp_path / "run" / "checkpoints"
    try:
        assert wait_until(lambda: bool(_steps(folder)), 180, proc), (tmp_path / "log.txt").read_text()[-3000:]
        bad.write_bytes(bad.read_bytes()[:40])             # the file is damaged while training runs
        assert wait_until(lambda: proc.poll() is not None, 180), "training did not stop on the bad image"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.log_handle.close()
    text = (tmp_path / "log.txt").read_text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in text and len(errors) == 1, text[-3000:]
    assert str(bad) in errors[0] and "skip_bad_images" in errors[0] and "training stopped at step" in errors[0]
    stopped = int(errors[0].split("training stopped at step ")[1].split(",")[0])
    assert load_checkpoint(folder / f"step_{stopped:08d}.pt")["step"] == stopped   # progress saved


def test_skip_bad_images_skips_and_counts_and_person_num_is_checked(datadir, tmp_path, capsys):
    data = _copy(datadir, tmp_path)
    bad = data / "1" / "neutral" / "0_2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(FaceNerfError, match=f"{bad}.*set skip_bad_images = true"):
        _train(data, tmp_path, "--N_iters", "5")
    assert _train(data, tmp_path, "--N_iters", "40", "--skip_bad_images", "true", "--person_num", "5") == 0
    out = capsys.readouterr().out
    assert "note: person_num = 5 but" in out and "holds 2 identities; training on all 2" in out
    assert out.count(f"skipping unreadable training image {bad}") == 1
    assert f"skipped 1 unreadable training image(s) (skip_bad_images = true): {bad}" in out
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step_00000040.pt")["step"] == 40
    _train(data, tmp_path, "--N_iters", "41", "--skip_bad_images", "true", "--person_num", "2")
    assert "note: person_num" not in capsys.readouterr().out
