"""The face templates have adult dimensions (anthropometric surveys and the original's template).

Figures (cited in facenerf/data/synthetic/head.py and facenerf/preprocess/fitting/template.py):
eye-centre distance 63 mm (Dodgson 2004 / ANSUR 1988), bizygomatic width 135 mm and
nasion-menton 118 mm (Farkas 1994, ANSUR); the original code's 512^2 alignment template has its
eye centres 108.7 px apart on an eye line at y ~ 210 with the chin (landmark 8) at y ~ 390.
"""

from __future__ import annotations

import numpy as np
import pytest

from facenerf.data.synthetic import canonical_landmarks_3d, mean_head_mesh
from facenerf.data.synthetic.head import ADULT_FACE_MM
from facenerf.errors import FaceNerfError
from facenerf.preprocess.fitting import template as tpl

ORIGINAL_EYE_DISTANCE_PX, ORIGINAL_EYE_LINE_Y, ORIGINAL_CHIN_Y = 108.7, 210.0, 390.0


def _eyes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)


def _close(value: float, cited: float, tolerance: float = 0.05) -> bool:
    return abs(value / cited - 1.0) < tolerance


def test_3d_template_has_adult_dimensions():
    lm = canonical_landmarks_3d()
    vertices, _ = mean_head_mesh()
    right, left = _eyes(lm)
    assert _close(np.linalg.norm(left - right), ADULT_FACE_MM["eye_centre_distance"])
    # nasion: the deepest point of the midline between the nose tip and the brows; menton: landmark 8
    midline = vertices[(np.abs(vertices[:, 0]) < 2.5) & (vertices[:, 1] > lm[30, 1]) & (vertices[:, 1] < lm[19, 1])
                       & (vertices[:, 2] > lm[30, 2] - 40.0)]
    nasion = midline[np.argmin(midline[:, 2])]
    assert _close(np.linalg.norm(nasion - lm[8]), ADULT_FACE_MM["nasion_menton"])
    # bizygomatic: the face's width over the cheekbones (up to 25 mm below the eye line), over the zygomatic
    # arches about 20 mm in front of the ear's centre (the widest point of the band)
    eye_y = 0.5 * (right[1] + left[1])
    band = vertices[(vertices[:, 1] > eye_y - 25.0) & (vertices[:, 1] < eye_y)]
    ear_z = band[np.argmax(np.abs(band[:, 0])), 2]
    cheeks = band[band[:, 2] > ear_z + 20.0]
    assert _close(cheeks[:, 0].max() - cheeks[:, 0].min(), ADULT_FACE_MM["bizygomatic_width"])


def test_default_alignment_template_matches_the_original_one():
    xy = tpl.load_template(512).landmarks_2d
    right, left = _eyes(xy)
    eye_line = 0.5 * (right[1] + left[1])
    assert _close(np.linalg.norm(left - right), ORIGINAL_EYE_DISTANCE_PX)
    assert _close(eye_line, ORIGINAL_EYE_LINE_Y)
    assert _close(xy[8, 1] - eye_line, ORIGINAL_CHIN_Y - ORIGINAL_EYE_LINE_Y)     # face height in the image
    assert abs(xy[30, 0] - 255.5) < 2.0                                            # centred
    half = tpl.load_template(256).landmarks_2d                                     # scales with the image
    np.testing.assert_allclose(half, (xy + 0.5) / 2 - 0.5, atol=1e-6)


def test_alignment_template_round_trips_through_a_checkpoint_config(tmp_path):
    from facenerf.engine.checkpoint import make_payload, save_checkpoint

    xy = tpl.load_template(512).landmarks_2d + 3.0
    stored = tpl.AlignmentTemplate(xy, "test", 4, 0.5)
    path = save_checkpoint(tmp_path / "step.pt", make_payload("mofanerf", {tpl.TEMPLATE_KEY: stored.to_config()},
                                                               1, {}))
    back = tpl.load_alignment_template(path)
    np.testing.assert_allclose(back.landmarks_512, xy, atol=1e-3)
    assert back.identities == 4 and back.pixel_center == 0.5
    bare = save_checkpoint(tmp_path / "bare.pt", make_payload("mofanerf", {}, 1, {}))
    with pytest.raises(FaceNerfError, match="stores no alignment template"):
        tpl.load_alignment_template(bare)
    with pytest.raises(FaceNerfError, match="not found"):
        tpl.load_alignment_template(tmp_path / "nothing.pt")


def test_frontal_template_averages_people_and_skips_hidden_landmarks():
    from facenerf.preprocess.training.rig import mofanerf_pose

    base = tpl.load_template(64).landmarks_2d
    c2w = np.stack([mofanerf_pose(0.0, 0.0).numpy(), mofanerf_pose(0.0, 0.0).numpy(), mofanerf_pose(0.0, 30.0).numpy()])
    lm = np.stack([base - 1.0, base + 1.0, base + 40.0])   # two people seen from the front, one from the side
    lm[0, 5] = np.nan                                      # hidden in one view: the other person's counts
    template = tpl.frontal_landmark_template(c2w, lm, np.array([1, 2, 1]), 64, 0.5, "test")
    expected = np.stack([base - 1.0, base + 1.0]).mean(axis=0)
    expected[5] = base[5] + 1.0
    np.testing.assert_allclose(template.at(64), expected, atol=1e-9)
    assert template.identities == 2
    lm[:, 7] = np.nan
    assert tpl.frontal_landmark_template(c2w, lm, np.array([1, 2, 1]), 64, 0.5, "test") is None
