"""Checkpoint files: round trip, atomic writes, pruning, and one clear error per failure mode."""

import errno
import pickle

import pytest
import torch
from torch import nn

from facenerf.engine import checkpoint as ckpt
from facenerf.engine.checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointManager, check_compatible,
                                        load_checkpoint, load_model_weights, make_payload, save_checkpoint)
from facenerf.errors import FaceNerfError


def _payload(step=1, model=None):
    model = model or nn.Linear(3, 2)
    return make_payload("toy", {"lr": 0.01, "name": "x"}, step, model.state_dict(),
                        {"main": {"state": {}, "param_groups": []}}, None, {"note": [1, 2]})


def test_round_trip_is_self_describing(tmp_path):
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "a" / "ck.pt", _payload(7, model))
    loaded = load_checkpoint(path)
    assert loaded["format"] == CHECKPOINT_FORMAT and loaded["version"] == CHECKPOINT_VERSION
    assert loaded["model"] == "toy" and loaded["step"] == 7 and loaded["config"]["lr"] == 0.01
    assert loaded["extra"] == {"note": [1, 2]}
    fresh = nn.Linear(3, 2)
    load_model_weights(fresh, path, expected_model="toy")
    assert torch.equal(fresh.weight, model.weight)
    with pytest.raises(FaceNerfError, match="'toy' model, not 'other'"):
        load_model_weights(fresh, path, expected_model="other")


def _failing_save(obj, stream, *args, **kwargs):
    stream.write(b"PK\x03\x04 half a checkpoint")
    raise OSError(errno.ENOSPC, "No space left on device")


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _payload(1))
    monkeypatch.setattr(ckpt.torch, "save", _failing_save)
    with pytest.raises(FaceNerfError, match="No space left"):
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, _payload(1))

    def interrupted(obj, stream, *args, **kwargs):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_manager_keeps_last_n_and_finds_latest(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    assert manager.latest() is None
    for step in (5, 10, 15, 20):
        manager.save(step, _payload(step))
    (tmp_path / ".step_00000099.pt.abc.tmp").write_bytes(b"left over")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    assert [s for s, _ in manager.checkpoints()] == [15, 20]
    assert manager.latest().name == "step_00000020.pt"
    keep_all = CheckpointManager(tmp_path / "all", keep_last=0)
    for step in range(4):
        keep_all.save(step, _payload(step))
    assert len(keep_all.checkpoints()) == 4


def test_manager_skips_damaged_newest(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=5)
    manager.save(1, _payload(1))
    manager.save(2, _payload(2))
    data = manager.path_for(2).read_bytes()
    manager.path_for(2).write_bytes(data[: len(data) // 2])
    warnings = []
    payload = manager.load_latest(warn=warnings.append)
    assert payload["step"] == 1 and len(warnings) == 1 and "corrupt or truncated" in warnings[0]


class _NotATensor:
    pass


def _write(path, obj):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("case, pattern", [
    ("missing", "not found"),
    ("truncated", "corrupt or truncated"),
    ("garbage", "corrupt or truncated"),
    ("empty", "corrupt or truncated"),
    ("foreign", "not a facenerf checkpoint"),
    ("plain_state_dict", "not a facenerf checkpoint"),
    ("original_mofanerf", "not a facenerf checkpoint"),  # the engine knows no model's files
    ("pickled_object", "cannot be loaded safely"),
    ("future", "newer than this facenerf"),
    ("incomplete", "incomplete"),
])
def test_load_errors_are_one_line(tmp_path, case, pattern):
    path = tmp_path / "ck.pt"
    if case == "truncated":
        save_checkpoint(path, _payload())
        path.write_bytes(path.read_bytes()[:200])
    elif case == "garbage":
        path.write_bytes(b"this is not a torch file at all" * 10)
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "foreign":
        _write(path, {"weights": torch.zeros(2)})
    elif case == "plain_state_dict":
        _write(path, nn.Linear(2, 2).state_dict())
    elif case == "original_mofanerf":
        _write(path, {"global_step": 600000, "network_fn_state_dict": {}, "network_fine_state_dict": {}})
    elif case == "pickled_object":
        _write(path, {"obj": _NotATensor()})
    elif case == "future":
        save_checkpoint(path, {**_payload(), "version": CHECKPOINT_VERSION + 1})
    elif case == "incomplete":
        bad = _payload()
        del bad["model_state"]
        save_checkpoint(path, bad)
    with pytest.raises(FaceNerfError, match=pattern) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def test_check_compatible_names_mismatches_and_cause():
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))
    check_compatible(model, model.state_dict(), "ok.pt")
    wider = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 2)).state_dict()
    with pytest.raises(FaceNerfError, match=r"0\.weight \(16, 4\) vs model \(8, 4\).*sizes in the config"):
        check_compatible(model, wider, "wide.pt")
    prefixed = {f"module.{k}": v for k, v in model.state_dict().items()}
    with pytest.raises(FaceNerfError, match="module.*DataParallel"):
        check_compatible(model, prefixed, "ddp.pt")
    other = {"encoder.weight": torch.zeros(3), "0.weight": torch.zeros(8, 4)}
    with pytest.raises(FaceNerfError, match="missing: 0.bias.*unexpected: encoder.weight.*different model"):
        check_compatible(model, other, "other.pt")


def test_unsafe_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("boom",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as stream:
        torch.save({"x": Evil()}, stream, pickle_module=pickle)
    with pytest.raises(FaceNerfError):
        load_checkpoint(path)
    assert not marker.exists()
