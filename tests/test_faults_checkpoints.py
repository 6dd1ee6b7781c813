"""Checkpoints under faults: pruning keeps the progress, unreadable files are set aside, stale
temporaries go, a data problem saves before stopping, and the converter never eats its input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from facenerf.engine.checkpoint import CheckpointManager, load_checkpoint, make_payload, save_checkpoint
from facenerf.engine.trainer import Trainer, TrainerConfig
from facenerf.errors import FaceNerfError, OutputError

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]


class Line(nn.Module):
    """y = a x + b fitted with MSE (a trainable model for the loop)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 1)

    def param_groups(self):
        return {"main": [{"params": list(self.parameters()), "lr": 0.05}]}

    def training_step(self, batch, step):
        x, y = batch
        return {"main": ((self.fc(x) - y) ** 2).mean()}, {}


def batches(step):
    x = torch.linspace(-1, 1, 8)[:, None] + 0.01 * step
    return x, 3 * x - 1


def run(out, steps, save_every, keep_last=3, data=batches, evaluate=None):
    cfg = TrainerConfig(out_dir=out, max_steps=steps, save_every=save_every, keep_last=keep_last, log_every=0,
                        eval_every=0 if evaluate is None else 1, progress=False, tensorboard=False)
    return Trainer(Line(), data, cfg, CPU, {"run": "x"}, evaluate=evaluate, model_name="line").fit()


def _steps(folder: Path) -> list[int]:
    return [step for step, _ in CheckpointManager(folder).checkpoints()]


def test_pruning_never_deletes_the_progress_of_the_run(tmp_path):
    # The reported scenario: a good step_50 and three unreadable step_900..902. The run resumed from
    # 50 and wrote 75 and 100, and pruning by highest step number deleted 50, 75 and 100.
    out, folder = tmp_path / "run", tmp_path / "run" / "checkpoints"
    run(out, 50, save_every=50)
    good = (folder / "step_00000050.pt").read_bytes()
    for step, content in ((900, b"garbage"), (901, good[: len(good) // 3]), (902, b"")):
        (folder / f"step_{step:08d}.pt").write_bytes(content)
    result = run(out, 100, save_every=25)
    assert result["resumed_from"] == str(folder / "step_00000050.pt") and result["step"] == 100
    assert _steps(folder) == [50, 75, 100] and Path(result["checkpoint"]).is_file()
    assert sorted(p.name for p in folder.glob("*.corrupt")) == [f"step_{s:08d}.pt.corrupt" for s in (900, 901, 902)]
    log = (out / "train_log.txt").read_text()
    assert log.count("unreadable checkpoint moved aside") == 3
    again = run(out, 100, save_every=25)                   # the next run starts and has nothing to do
    assert again["resumed_from"] == str(folder / "step_00000100.pt") and _steps(folder) == [50, 75, 100]


def test_prune_keeps_the_file_just_written_and_later_steps(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    payload = make_payload("toy", {}, 0, nn.Linear(1, 1).state_dict())
    for step in (10, 20):
        save_checkpoint(manager.path_for(step), payload)
    manager.path_for(900).write_bytes(b"not loaded by pruning")
    written = manager.save(30, payload)
    assert _steps(tmp_path) == [20, 30, 900] and written.is_file()
    assert manager.prune(keep=manager.path_for(20)) == []         # nothing older than 20 beyond keep_last
    assert CheckpointManager(tmp_path, keep_last=1).prune(keep=written) == [manager.path_for(20)]


def test_all_unreadable_refuses_once_then_starts_afresh(tmp_path):
    out, folder = tmp_path / "run", tmp_path / "run" / "checkpoints"
    run(out, 4, save_every=2)
    for path in folder.glob("step_*.pt"):
        path.write_bytes(b"damaged")
    with pytest.raises(FaceNerfError, match=r"can be read \(moved aside as \*\.corrupt\)"):
        run(out, 6, save_every=2)
    assert _steps(folder) == [] and len(list(folder.glob("*.corrupt"))) == 2
    assert run(out, 2, save_every=2)["resumed_from"] is None


def test_stale_temporaries_are_removed_at_start(tmp_path):
    out, folder = tmp_path / "run", tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    stale = [folder / f".step_00000004.tmp-{dead}-0a1b2c3d.pt", folder / ".step_00000002.pt.k3j4.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    run(out, 2, save_every=2)
    assert not any(path.exists() for path in stale) and _steps(folder) == [2]


def test_a_data_problem_saves_a_checkpoint_then_stops(tmp_path):
    out = tmp_path / "run"

    def bad_at_5(step):
        if step == 5:
            raise FaceNerfError("bad training data: cannot read image /data/3.png: not a valid image file")
        return batches(step)

    with pytest.raises(FaceNerfError) as err:
        run(out, 20, save_every=100, data=bad_at_5)
    message = str(err.value)
    assert "cannot read image /data/3.png" in message and "training stopped at step 5" in message
    assert "step_00000005.pt" in message and "\n" not in message
    assert load_checkpoint(out / "checkpoints" / "step_00000005.pt")["step"] == 5
    assert run(out, 7, save_every=100)["resumed_from"].endswith("step_00000005.pt")


def test_a_bad_held_out_view_saves_a_checkpoint_then_stops(tmp_path):
    def evaluate(model, step):
        if step == 3:
            raise FaceNerfError("bad training data: cannot read image /data/val.png")
        return {"scalars": {"psnr": 1.0}}

    with pytest.raises(FaceNerfError, match="training stopped at step 3"):
        run(tmp_path / "run", 10, save_every=100, evaluate=evaluate)
    assert _steps(tmp_path / "run" / "checkpoints") == [3]


def test_a_write_fault_is_not_mistaken_for_a_data_problem(tmp_path):
    def full_disk(step):
        raise OutputError("cannot write image /x.png: No space left on device; free disk space")

    with pytest.raises(OutputError, match="No space left"):
        run(tmp_path / "run", 4, save_every=100, data=full_disk)
    assert _steps(tmp_path / "run" / "checkpoints") == []


# ------------------------------------------------------------------------------ the converter

@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    from facenerf.cli import parse_args
    from facenerf.models.mofanerf.checkpoints import save_mofanerf
    from facenerf.models.mofanerf.model import MoFaNeRF
    from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args

    sizes = ["--netdepth", "6", "--netwidth", "16", "--netdepth_fine", "6", "--netwidth_fine", "16",
             "--multires", "3", "--multires_views", "2", "--input_ch_textureCodes", "8", "--input_ch_expCodes", "6",
             "--ism_width", "16", "--tex_size", "32", "--tex_channels", "4,4,4,8,8", "--tex_hidden", "16"]
    run = run_config_from_args(parse_args(build_train_parser(), sizes))
    return save_mofanerf(tmp_path_factory.mktemp("conv") / "ours.pt", MoFaNeRF(run.model), step=7, run=run)


def _convert(*args):
    return subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "facenerf.tools.convert_checkpoint",
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def test_converter_refuses_bad_targets_with_one_line(small_checkpoint, tmp_path):
    from facenerf.models.mofanerf.checkpoints import convert

    before = small_checkpoint.read_bytes()
    for target in (small_checkpoint, small_checkpoint.parent / "." / small_checkpoint.name):
        for official in (False, True):
            with pytest.raises(FaceNerfError, match="is the source file"):
                convert(small_checkpoint, target, to_official=official)
    assert small_checkpoint.read_bytes() == before
    with pytest.raises(FaceNerfError, match="is a folder; pass a file name"):
        convert(small_checkpoint, tmp_path, to_official=True)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="part of the path is a file"):
        convert(small_checkpoint, blocker / "out.tar", to_official=True)
    assert not list(tmp_path.glob(".*tmp*"))


def test_converter_command_prints_no_warning(small_checkpoint, tmp_path):
    done = _convert(small_checkpoint, tmp_path / "official.tar", "--to_official")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert torch.load(tmp_path / "official.tar", weights_only=True)["global_step"] == 7
    same = _convert(small_checkpoint, small_checkpoint, "--to_official")
    assert same.returncode == 2 and same.stderr.startswith("error: target") and same.stderr.count("\n") == 1


def test_converter_into_a_read_only_folder_is_one_line(small_checkpoint, tmp_path):
    from fault_tools import small_disk

    from facenerf.models.mofanerf.checkpoints import convert

    with small_disk(tmp_path / "ro", 64, read_only=True) as disk:
        for official in (True, False):
            with pytest.raises(OutputError, match=f"cannot write checkpoint {disk}/out.tar: Read-only file system"):
                convert(small_checkpoint, disk / "out.tar", to_official=official)
