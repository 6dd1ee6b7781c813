"""Full and read-only disks: each command stops with one `error:` line naming the file and the
cause, no traceback, and leaves no truncated file (a small tmpfs is mounted inside the test; the
tests skip with the reason where mounting is not allowed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fault_tools import ROOT, assert_all_complete, assert_one_error_line, fill, run, small_disk
from tiny_faces import write_multiview_data

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from facenerf.errors import FaceNerfError  # noqa: E402
from facenerf.preprocess.training import gl  # noqa: E402

try:
    PLATFORM = gl.select_gl_platform()
except FaceNerfError:
    PLATFORM = None
needs_gl = pytest.mark.skipif(PLATFORM is None, reason="no headless OpenGL platform")
QUIET = ["--progress", "false"]
TRAIN = ["--device", "cpu", "--threads", "1", "--num_workers", "0", "--N_rand", "16", "--N_samples", "4",
         "--N_importance", "4", "--netdepth", "3", "--netwidth", "16", "--netdepth_fine", "3", "--netwidth_fine", "16",
         "--skip", "2", "--xyz_depth", "2", "--multires", "3", "--multires_views", "2", "--input_ch_shapeCodes", "6",
         "--input_ch_textureCodes", "8", "--input_ch_expCodes", "6", "--n_expressions", "1", "--ism_width", "16",
         "--ism_depth", "2", "--tex_size", "16", "--tex_channels", "4,8", "--tex_hidden", "16",
         "--tex_decoder_depth", "1", "--i_print", "1", "--precrop_iters", "0", "--near", "12", "--far", "20",
         "--grid_ids", "1", "--grid_exps", "0", "--n_val", "1", "--i_testset", "0", *QUIET]


@pytest.fixture(scope="module")
def raw_data(tmp_path_factory) -> Path:
    """2 synthetic identities x 2 expressions: raw scans and predef files, aligned meshes."""
    import align_clip
    from facenerf.data.synthetic import __main__ as synthetic

    root = tmp_path_factory.mktemp("faces")
    assert synthetic.main(["--ids", "2", "--out", str(root), "--expressions", "1,2", "--texture_size", "64",
                           "--vertices", "1200", *QUIET]) == 0
    assert align_clip.main(["--data", str(root), *QUIET]) == 0
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("a", "b", "c"):
        Image.fromarray(data.astronaut()).save(folder / f"{name}.png")
    return folder


def _check_disk_full_run(done, disk: Path, *fragments: str) -> list[Path]:
    line = assert_one_error_line(done, "No space left on device", str(disk), *fragments)
    assert "free disk space" in line
    return assert_all_complete(disk)


def test_run_train_on_a_full_disk(tmp_path):
    (tmp_path / "data").mkdir()
    data = write_multiview_data(tmp_path / "data", size=16)
    with small_disk(tmp_path / "disk", 1024) as disk:
        fill(disk, 48)                                   # the config and logs fit, a checkpoint does not
        done = run(["run_train.py", "--datadir", str(data), "--basedir", str(disk), "--expname", "run",
                    *TRAIN, "--N_iters", "6", "--i_weights", "3"])
        files = _check_disk_full_run(done, disk)
        assert (disk / "run" / "config.txt") in files and not list(disk.rglob("step_*.pt"))


@needs_gl
def test_render_on_a_full_disk_with_two_workers(raw_data, tmp_path):
    with small_disk(tmp_path / "disk", 512) as disk:
        fill(disk, 40)
        done = run(["render.py", "--data", str(raw_data), "--out", str(disk / "mv"), "--resolution", "32",
                    "--views", "24", "--workers", "2", "--gl", PLATFORM, *QUIET])
        files = _check_disk_full_run(done, disk, "cannot write")
        assert any(p.suffix == ".png" for p in files)     # it stopped part-way, with complete images only


def test_align_clip_on_a_full_disk(raw_data, tmp_path):
    with small_disk(tmp_path / "disk", 512) as disk:
        fill(disk, 40)
        done = run(["align_clip.py", "--data", str(raw_data), "--out", str(disk / "models_out"), *QUIET])
        _check_disk_full_run(done, disk, "cannot write")


def test_wild_preprocess_on_a_full_disk(photos, tmp_path):
    with small_disk(tmp_path / "disk", 512) as disk:
        fill(disk, 72)
        done = run(["fittingDataPreprocess/wildData_preprocess.py", "--filePath", str(photos), "--out",
                    str(disk / "pre"), "--image_size", "128", "--upsample", "0", *QUIET])
        files = _check_disk_full_run(done, disk, "cannot write")
        for pose in disk.rglob("pose_*.npy"):              # a pose file is written last: all else is there
            stem = pose.stem[len("pose_"):]
            assert {pose.parent / d / f"{stem}.png" for d in ("aligned", "mask", "segRes", "segRelRes")} <= set(files)


def test_read_only_output_folders_give_one_line(raw_data, photos, tmp_path):
    import align_clip
    import render
    import run_train
    from facenerf.errors import OutputError

    sys.path.insert(0, str(ROOT / "fittingDataPreprocess"))
    try:
        import wildData_preprocess
    finally:
        sys.path.remove(str(ROOT / "fittingDataPreprocess"))
    (tmp_path / "data").mkdir()
    data = write_multiview_data(tmp_path / "data", size=16)
    with small_disk(tmp_path / "ro", 64, read_only=True) as disk:
        calls = {
            "run_train": lambda: run_train.main(["--datadir", str(data), "--basedir", str(disk), *TRAIN,
                                                 "--N_iters", "1"]),
            "align_clip": lambda: align_clip.main(["--data", str(raw_data), "--out", str(disk / "m"), *QUIET]),
            "wild": lambda: wildData_preprocess.main(["--filePath", str(photos), "--out", str(disk / "w"), *QUIET]),
        }
        if PLATFORM is not None:
            calls["render"] = lambda: render.main(["--data", str(raw_data), "--out", str(disk / "r"), *QUIET])
        for name, call in calls.items():
            with pytest.raises((FaceNerfError, OutputError)) as err:
                call()
            message = str(err.value)
            assert "Read-only file system" in message and str(disk) in message and "\n" not in message, name
