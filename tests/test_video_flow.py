"""Landmarks followed by optical flow: known brow raises on a moving textured face are recovered,
stable points that a detector drags along with an expression are put back on the skin, and outer
eye corners stay on the corner while the eye beside them slides."""

import numpy as np
import pytest

from facenerf.io import write_image
from facenerf.errors import FaceNerfError
from facenerf.preprocess.video.flow import BROWS, CORNERS, GROUPS, follow_landmarks, reference_frame
from facenerf.preprocess.video.headpose import RIGID

SIZE = 160
BROW_BOX = (40, 40, 120, 56)     # x0, y0, x1, y1 of the textured brow band in the first frame


def _texture(rng, shape, blur=2.0):
    from scipy.ndimage import gaussian_filter

    t = gaussian_filter(rng.random(shape), blur)
    return (t - t.min()) / (t.max() - t.min())


def _scene(tmp_path, head_shift, raises):
    """Frames of a textured face moved by ``head_shift[i] (dx, dy)`` whose brow band rises by
    ``raises[i]`` pixels; dlib-like landmarks whose brows follow the head but never rise."""
    rng = np.random.default_rng(0)
    face, brow = _texture(rng, (SIZE, SIZE)), _texture(rng, (BROW_BOX[3] - BROW_BOX[1], BROW_BOX[2] - BROW_BOX[0]))
    base = np.zeros((68, 2))
    base[:, 0] = np.linspace(45, 115, 68)
    base[:, 1] = 100 + 10 * np.sin(np.arange(68))
    base[BROWS, 0] = np.linspace(48, 112, len(BROWS))
    base[BROWS, 1] = 48
    base[RIGID, 1] = np.linspace(70, 110, len(RIGID))
    paths, landmarks = [], []
    for i, ((dx, dy), up) in enumerate(zip(head_shift, raises)):
        image = face.copy()
        x0, y0, x1, y1 = BROW_BOX
        image[y0 - up:y1 - up, x0:x1] = brow
        image = np.roll(image, (dy, dx), axis=(0, 1))
        paths.append(write_image(tmp_path / f"{i}.png", np.repeat(image[..., None], 3, axis=-1)))
        landmarks.append(base + [dx, dy])
    return paths, np.stack(landmarks)


def follow_brows(paths, landmarks, keep):
    out, followed = follow_landmarks(paths, landmarks, keep, {"brows": BROWS}, progress=False)
    return out, followed["brows"]


def test_brow_raises_are_recovered_while_the_head_moves(tmp_path):
    shifts = [(0, 0), (2, 1), (-3, 2), (1, -2), (4, 3), (0, 0)]
    raises = [0, 2, 4, 1, 3, 0]
    paths, dlib_like = _scene(tmp_path, shifts, raises)
    keep = np.ones(len(paths), dtype=bool)
    followed, ok = follow_brows(paths, dlib_like, keep)
    assert ok.all()
    ref = reference_frame(dlib_like, keep)
    rise = (dlib_like[:, BROWS, 1] - followed[:, BROWS, 1]).mean(axis=1)      # upward, pixels
    np.testing.assert_allclose(rise - rise[ref], np.array(raises) - raises[ref], atol=0.3)
    other = np.setdiff1d(np.arange(68), BROWS)
    np.testing.assert_array_equal(followed[:, other], dlib_like[:, other])     # only the brows change


def test_a_frame_where_the_flow_fails_keeps_its_landmarks(tmp_path):
    paths, dlib_like = _scene(tmp_path, [(0, 0), (1, 1), (0, 0)], [0, 2, 0])
    write_image(paths[1], np.full((SIZE, SIZE, 3), 0.5, dtype=np.float32))     # the face is gone: no texture
    keep = np.array([True, True, True])
    followed, ok = follow_brows(paths, dlib_like, keep)
    assert ok.tolist() == [True, False, True]
    np.testing.assert_array_equal(followed[1], dlib_like[1])


def test_frames_not_kept_are_left_alone_and_never_read(tmp_path):
    paths, dlib_like = _scene(tmp_path, [(0, 0), (1, 0), (0, 1)], [0, 1, 2])
    paths[1].unlink()                                                         # a dropped frame
    dlib_like[1] = np.nan
    keep = np.array([True, False, True])
    followed, ok = follow_brows(paths, dlib_like, keep)
    assert not ok[1] and np.isnan(followed[1]).all() and ok[[0, 2]].all()


@pytest.mark.parametrize("outlier", [0, 3])
def test_the_reference_is_the_most_typical_frame(outlier):
    rng = np.random.default_rng(1)
    base = rng.random((68, 2)) * 100
    shapes = np.stack([base + rng.normal(0, 0.2, base.shape) for _ in range(5)])
    shapes[outlier, 48:] += 8.0                                               # a wide-open mouth
    theta = 0.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    shapes[2] = shapes[2] @ rot.T * 1.1 + 5.0                                 # head motion alone is not atypical
    keep = np.ones(5, dtype=bool)
    assert reference_frame(shapes, keep) != outlier
    keep[[i for i in range(5) if i != outlier][:3]] = False                   # only the outlier and one other left
    assert reference_frame(shapes, keep) in np.flatnonzero(keep)


def test_stable_points_dragged_by_an_expression_are_put_back(tmp_path):
    """A detector that moves the stable points with the brows (as dlib does) makes them jump
    against the skin; flow from the reference frame follows the skin, so after removing the
    head's motion every frame's stable points sit where the reference's do."""
    shifts = [(0, 0), (2, 1), (-3, 2), (1, -2), (4, 3), (0, 0)]
    raises = [0, 2, 4, 1, 3, 0]
    paths, dlib_like = _scene(tmp_path, shifts, raises)
    drag = np.array(raises, dtype=float)[:, None] * np.array([0.6, -0.8])     # [N, 2] px, with the brows
    biased = dlib_like.copy()
    biased[:, RIGID] += drag[:, None, :]
    keep = np.ones(len(paths), dtype=bool)
    followed, ok = follow_landmarks(paths, biased, keep, progress=False)
    assert ok["stable"].all() and ok["brows"].all()
    head_motion = np.array(shifts, dtype=float)[:, None, :]
    ref = reference_frame(biased, keep)
    on_skin = followed[:, RIGID] - head_motion                                  # [N, P, 2] in the first frame's image
    np.testing.assert_allclose(on_skin, np.broadcast_to(on_skin[ref], on_skin.shape), atol=0.3)
    before = np.abs((biased[:, RIGID] - head_motion) - (biased[ref, RIGID] - head_motion[ref])).max()
    assert before > 1.0                                                       # the detector's drag was real
    assert set(GROUPS) == {"brows", "stable"}


def _eye_scene(tmp_path, head_shift, slides, gap=6.0):
    """Frames of a faintly textured face moved by ``head_shift[i] (dx, dy)`` with a dark dot at each
    outer eye corner and a bright disc (the eye) ``gap + slides[i]`` pixels inward of it; landmarks
    that follow the head exactly."""
    from scipy.ndimage import gaussian_filter

    face = 0.3 + 0.3 * _texture(np.random.default_rng(0), (SIZE, SIZE))
    base = np.zeros((68, 2))
    base[:, 0] = np.linspace(45, 115, 68)
    base[:, 1] = 100 + 10 * np.sin(np.arange(68))
    base[RIGID, 1] = np.linspace(70, 110, len(RIGID))
    base[CORNERS] = [(55, 75), (105, 75)]
    yy, xx = np.mgrid[:SIZE, :SIZE]

    def disc(x, y, radius):
        return gaussian_filter((((xx - x) ** 2 + (yy - y) ** 2) <= radius ** 2).astype(float), 0.7)

    paths, landmarks = [], []
    for i, ((dx, dy), slide) in enumerate(zip(head_shift, slides)):
        image = face.copy()
        for (x, y), inward in zip(base[CORNERS], (1, -1)):
            image *= 1 - disc(x, y, 1.0)
            eye = disc(x + inward * (gap + slide), y, 3.0)
            image = image * (1 - eye) + eye
        image = np.roll(image, (dy, dx), axis=(0, 1))
        paths.append(write_image(tmp_path / f"{i}.png", np.repeat(image[..., None], 3, axis=-1)))
        landmarks.append(base + [dx, dy])
    return paths, np.stack(landmarks)


def test_outer_eye_corners_hold_while_the_eye_beside_them_slides(tmp_path):
    """As the head turns, the eye's surface slides against the skin at its outer corner. A flow
    window as wide as the other points' takes the eye along; the narrow corner window stays on
    the corner (its drift from the reference frame, head motion removed, is near zero)."""
    shifts = [(0, 0), (2, 1), (-3, 2), (1, -2), (4, 3), (0, 0)]
    paths, landmarks = _eye_scene(tmp_path, shifts, slides=[0, 2, 4, 1, 3, 0])
    keep = np.ones(len(paths), dtype=bool)
    ref = reference_frame(landmarks, keep)
    head_motion = np.array(shifts, dtype=float)[:, None, :]
    drift = {}
    for window in (0.0, 0.055):
        followed, ok = follow_landmarks(paths, landmarks, keep, corner_window=window, progress=False)
        assert ok["stable"].all()
        on_skin = followed[:, CORNERS] - head_motion                              # [N, 2, 2]
        drift[window] = np.abs(on_skin - on_skin[ref]).max()
    assert drift[0.055] < 0.3
    assert drift[0.0] > 1.0                                                       # the wide window is dragged


def test_a_negative_corner_window_is_refused(tmp_path):
    paths, landmarks = _scene(tmp_path, [(0, 0), (1, 0)], [0, 1])
    with pytest.raises(FaceNerfError, match="corner_window"):
        follow_landmarks(paths, landmarks, np.ones(2, dtype=bool), corner_window=-0.1, progress=False)
