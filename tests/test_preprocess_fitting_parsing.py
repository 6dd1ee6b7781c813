"""Optional face-parsing network: loading user weights safely, mapping classes, cutting the neck."""

import numpy as np
import pytest
import torch

from facenerf.engine.checkpoint import make_payload, save_checkpoint
from facenerf.errors import FaceNerfError
from facenerf.preprocess.fitting.parsing import CLASS_TO_LABEL, BiSeNet, FaceParser
from facenerf.preprocess.fitting.segment import BACKGROUND, CLOTH, FACE, HAIR, NECK, colour_labels
from facenerf.preprocess.fitting.template import load_template

BASE = 8  # narrow variant of the standard (base 64) layout, same keys


@pytest.fixture(scope="module")
def small_weights():
    torch.manual_seed(0)
    return BiSeNet(base=BASE).state_dict()


def test_standard_layout_size():
    assert sum(p.numel() for p in BiSeNet().parameters()) == 13_300_416


def test_loads_plain_and_wrapped_weights(tmp_path, small_weights):
    plain = tmp_path / "parsing.pth"
    torch.save(small_weights, plain)
    parser = FaceParser.from_file(plain)
    for key, value in small_weights.items():
        assert torch.equal(parser.network.state_dict()[key], value)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({f"module.{k}": v for k, v in small_weights.items()}, wrapped)
    FaceParser.from_file(wrapped)
    checkpoint = save_checkpoint(tmp_path / "ckpt.pt", make_payload("bisenet", {}, 0, small_weights))
    FaceParser.from_file(checkpoint)


def test_bad_weight_files_give_one_line_errors(tmp_path, small_weights):
    with pytest.raises(FaceNerfError, match="not found"):
        FaceParser.from_file(tmp_path / "nope.pth")
    partial = dict(small_weights)
    partial.pop("ffm.conv1.weight")
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(FaceNerfError, match="missing: ffm.conv1.weight"):
        FaceParser.from_file(tmp_path / "partial.pth")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(FaceNerfError, match="no network weights"):
        FaceParser.from_file(tmp_path / "list.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a torch file")
    with pytest.raises(FaceNerfError, match="garbage.pth") as err:
        FaceParser.from_file(tmp_path / "garbage.pth")
    assert "\n" not in str(err.value)


def test_forward_gives_per_pixel_classes(small_weights):
    network = BiSeNet(base=BASE)
    network.load_state_dict(small_weights)
    parser = FaceParser(network)
    classes = parser.classes(np.random.default_rng(0).uniform(size=(48, 40, 3)).astype(np.float32))
    assert classes.shape == (48, 40) and classes.dtype == np.uint8 and classes.max() < 19


def test_class_mapping_and_neck_cut(small_weights):
    assert CLASS_TO_LABEL[0] == BACKGROUND and CLASS_TO_LABEL[1] == FACE and CLASS_TO_LABEL[13] == FACE
    assert CLASS_TO_LABEL[14] == NECK and CLASS_TO_LABEL[16] == CLOTH and CLASS_TO_LABEL[17] == HAIR
    network = BiSeNet(base=BASE)
    network.load_state_dict(small_weights)
    parser = FaceParser(network)
    landmarks = load_template(64).landmarks_2d
    parser.classes = lambda image: np.full(image.shape[:2], 14, np.uint8)  # everything "neck"
    inside = np.ones((64, 64), bool)
    inside[:, :4] = False
    labels = parser.segment(np.zeros((64, 64, 3), np.float32), landmarks, inside, neck_length=0.2).labels
    chin_row = int(round(landmarks[8, 1]))
    assert labels[chin_row, 32] == NECK
    assert np.all(labels[-1] == BACKGROUND)   # far below the chin: cut
    assert np.all(labels[:, :4] == BACKGROUND)  # outside the photo
    assert colour_labels(labels).shape == (64, 64, 3)
