"""RefineNet pairs: pairing by relative path, problem reports, deterministic batches, writing, degradation."""

import numpy as np
import pytest
import torch

from facenerf.data.pair_batches import PairBatches, PairDataset
from facenerf.data.pairs import ImagePair, scan_pairs, split_pairs, write_pairs
from facenerf.data.synthetic.degraded_pairs import (Degradation, DegradedPairs, degrade, make_degraded_pairs,
                                                    procedural_image)
from facenerf.errors import FaceNerfError
from facenerf.io import read_image, write_image
from facenerf.tools.degraded_pairs import main


def _solid(value, size=(8, 6)):
    """An ``[H, W, 3]`` image whose red channel encodes ``value`` (so pairs can be told apart)."""
    image = np.zeros((size[1], size[0], 3), np.float32)
    image[..., 0] = value / 255.0
    return image


def _make_trees(root, keys_a, keys_b):
    for i, key in enumerate(sorted(set(keys_a) | set(keys_b))):
        if key in keys_a:
            write_image(root / "train_A" / f"{key}.png", _solid(10 + i))
        if key in keys_b:
            write_image(root / "train_B" / f"{key}.png", _solid(10 + i, size=(16, 12)))


def test_pairs_by_relative_path_not_sorted_order(tmp_path):
    keys = ["1/1_neutral/0", "1/1_neutral/1", "1/2_smile/0", "2/1_neutral/0"]
    _make_trees(tmp_path, keys_a=keys, keys_b=[k for k in keys if k != "1/1_neutral/1"] + ["3/1_neutral/0"])
    scan = scan_pairs(tmp_path / "train_A", tmp_path / "train_B")
    assert [p.key for p in scan.pairs] == ["1/1_neutral/0", "1/2_smile/0", "2/1_neutral/0"]
    assert scan.only_render == ["1/1_neutral/1"] and scan.only_target == ["3/1_neutral/0"]
    for pair in scan.pairs:  # every render meets its own ground truth despite the gap
        render, target = read_image(pair.render), read_image(pair.target)
        assert render[0, 0, 0] == pytest.approx(target[0, 0, 0])
    problems = scan.problems()
    assert "no ground truth for render 1/1_neutral/1" in problems
    assert "no render for ground truth 3/1_neutral/0" in problems
    assert scan.summary().startswith("3 pairs; skipped 1 renders without ground truth, 1 ground truths")


def test_suffix_is_ignored_and_bad_files_reported(tmp_path):
    write_image(tmp_path / "A" / "x" / "0.png", _solid(1))
    write_image(tmp_path / "B" / "x" / "0.jpg", _solid(1))
    (tmp_path / "A" / "x" / "1.png").write_bytes(b"\x89PNG broken")
    write_image(tmp_path / "B" / "x" / "1.png", _solid(2))
    write_image(tmp_path / "A" / "x" / "2.png", _solid(3))
    write_image(tmp_path / "A" / "x" / "2.jpg", _solid(3))
    write_image(tmp_path / "B" / "x" / "2.png", _solid(3))
    (tmp_path / "A" / "notes.txt").write_text("not an image")
    scan = scan_pairs(tmp_path / "A", tmp_path / "B")
    assert [p.key for p in scan.pairs] == ["x/0"]
    assert scan.ambiguous == ["x/2"]
    assert [p.name for p, _ in scan.unreadable] == ["1.png"]
    assert any("unreadable image" in line and "1.png" in line for line in scan.problems())


def test_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "A").mkdir()
    with pytest.raises(FaceNerfError, match="ground-truth .*folder not found"):
        scan_pairs(tmp_path / "A", tmp_path / "nope")


def test_split_holds_out_whole_identities():
    pairs = [ImagePair(f"{i}/e/{k}", None, None) for i in range(10) for k in range(3)]
    train, val = split_pairs(pairs, 0.2, seed=1)
    assert len(val) == 6 and len(train) == 24
    assert not {p.group for p in train} & {p.group for p in val}
    assert split_pairs(pairs, 0.2, seed=1) == (train, val)
    single = [ImagePair(f"a/e/{k}", None, None) for k in range(5)]
    train, val = split_pairs(single, 0.5)
    assert len(train) >= 1 and len(val) >= 1 and len(train) + len(val) == 5
    assert split_pairs(single, 0.0) == (single, [])


def _dataset(tmp_path, n=5):
    _make_trees(tmp_path, [f"p/e/{i}" for i in range(n)], [f"p/e/{i}" for i in range(n)])
    scan = scan_pairs(tmp_path / "train_A", tmp_path / "train_B")
    return PairDataset(scan.pairs, size=(8, 8))


def test_dataset_resizes_both_images(tmp_path):
    item = _dataset(tmp_path)[0]
    assert item["A"].shape == item["B"].shape == (3, 8, 8)
    assert item["A"].dtype == torch.float32 and 0 <= float(item["A"].min()) <= float(item["A"].max()) <= 1


def test_batches_are_a_function_of_the_step(tmp_path):
    dataset = _dataset(tmp_path)
    batches = PairBatches(dataset, batch_size=2, seed=3, flip=True)
    first = [batches(step)["keys"] for step in range(5)]  # 10 positions = 2 epochs of 5
    again = PairBatches(dataset, batch_size=2, seed=3, flip=True)
    assert [again(step)["keys"] for step in (4, 0, 2)] == [first[4], first[0], first[2]]
    epoch0 = [k for keys in first[:2] for k in keys] + first[2][:1]
    assert sorted(epoch0) == sorted(p.key for p in dataset.pairs)
    batch = batches(0)
    assert batch["A"].shape == (2, 3, 8, 8) and batch["B"].shape == (2, 3, 8, 8)


def test_background_workers_give_the_same_batches(tmp_path):
    dataset = _dataset(tmp_path, n=5)
    plain = PairBatches(dataset, batch_size=2, seed=4, flip=True)
    threaded = PairBatches(dataset, batch_size=2, seed=4, flip=True, workers=2)
    for step in (0, 1, 2, 7, 3):  # a jump (as after resuming) drops stale prefetches
        a, b = plain(step), threaded(step)
        assert a["keys"] == b["keys"] and torch.equal(a["A"], b["A"]) and torch.equal(a["B"], b["B"])


def test_unreadable_pair_is_skipped_once(tmp_path):
    dataset = _dataset(tmp_path, n=3)
    dataset.pairs[1].render.write_bytes(b"garbage")  # breaks after the scan
    messages = []
    batches = PairBatches(dataset, batch_size=3, seed=0, report=messages.append)
    keys = [k for step in range(4) for k in batches(step)["keys"]]
    assert "p/e/1" not in keys and len(keys) == 12
    assert len(messages) == 1 and "p/e/1" in messages[0]
    for pair in dataset.pairs:
        pair.render.write_bytes(b"garbage")
    with pytest.raises(FaceNerfError, match="none of the image pairs"):
        PairBatches(dataset, 1, report=messages.append)(0)


def test_write_pairs_skips_bad_items_and_continues(tmp_path):
    good = _solid(5)
    items = [("1/neutral/0", good, good), ("../escape", good, good), ("1/neutral/1", good, np.zeros((4, 4))),
             ("2/smile/0.png", torch.from_numpy(good), (good * 255).astype(np.uint8))]
    messages = []
    result = write_pairs(tmp_path, items, report=messages.append)
    assert result.written == 2 and len(result.skipped) == 2 and len(messages) == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "train_A/1/neutral/0.png", "train_A/2/smile/0.png", "train_B/1/neutral/0.png", "train_B/2/smile/0.png"]
    assert len(scan_pairs(tmp_path / "train_A", tmp_path / "train_B").pairs) == 2


def test_degrade_lowers_fidelity_deterministically():
    rng = np.random.default_rng(0)
    sharp = procedural_image(32, rng)
    assert sharp.shape == (32, 32, 3) and sharp.dtype == np.float32
    spec = Degradation(blur_sigma=1.0, scale=0.5, noise_std=0.0)
    soft = degrade(sharp, np.random.default_rng(1), spec)
    assert soft.shape == sharp.shape
    grad = lambda im: np.abs(np.diff(im, axis=1)).mean()  # noqa: E731 - tiny local measure
    assert grad(soft) < 0.8 * grad(sharp)  # detail is lost
    assert np.array_equal(soft, degrade(sharp, np.random.default_rng(1), spec))
    assert np.array_equal(degrade(sharp, rng, Degradation(0.0, 1.0, 0.0)), sharp)


def test_make_degraded_pairs_from_folder_and_cli(tmp_path, capsys):
    src = tmp_path / "src"
    write_image(src / "a.png", procedural_image(40, np.random.default_rng(0)))
    (src / "broken.jpg").write_bytes(b"nope")
    messages = []
    job = DegradedPairs(out=str(tmp_path / "ds"), src=str(src), procedural=2, size=16, crops=2)
    result = make_degraded_pairs(job, report=messages.append)
    assert result.written == 6 and any("broken.jpg" in m for m in messages)
    scan = scan_pairs(tmp_path / "ds" / "train_A", tmp_path / "ds" / "train_B")
    assert {p.key for p in scan.pairs} >= {"a/degraded/0", "a/degraded/1", "proc00000/degraded/1"}
    assert read_image(scan.pairs[0].render).shape == (16, 16, 3)
    assert main(["--procedural", "1", "--crops", "3", "--size", "12", "--out", str(tmp_path / "cli")]) == 0
    assert "wrote 3 pairs" in capsys.readouterr().out
    with pytest.raises(FaceNerfError, match="nothing to make pairs from"):
        main(["--out", str(tmp_path / "none")])
