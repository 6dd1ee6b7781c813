"""The head / neck cut of the video masks: fixed to the head in 3-D, so a point of the neck is on
the same side of it whatever the pose, and of a size that matches human anatomy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facenerf.preprocess.video import masks as mk
from facenerf.preprocess.video.headpose import camera_matrix
from facenerf.preprocess.video.tracking import MM_PER_UNIT, landmark_model

SIZE = 256


def _pose(yaw: float, pitch: float, roll: float, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV head -> camera ``(rvec, tvec)``: the head faces the camera, then turns (degrees)."""
    import cv2
    from scipy.spatial.transform import Rotation

    facing = np.diag([1.0, -1.0, -1.0])                        # head y up, z out -> camera y down, z in
    turn = Rotation.from_euler("yxz", [yaw, pitch, roll], degrees=True).as_matrix()
    rvec, _ = cv2.Rodrigues(facing @ turn)
    return rvec.reshape(3), np.array([0.05, 0.3, distance])


def test_the_cut_has_a_human_size_under_the_chin():
    template = landmark_model()[0]
    settings = mk.MaskSettings()
    cut = mk.neck_cut(template, settings) * MM_PER_UNIT                      # [n, 3] mm
    chin = template[8] * MM_PER_UNIT
    front = cut[len(cut) // 2]
    assert 8.0 < chin[1] - front[1] < 20.0                   # the throat cut 8-20 mm below the chin
    assert 40.0 < chin[2] - front[2] < 75.0                  # the throat 40-75 mm behind the chin
    assert 95.0 < np.ptp(cut[:, 0]) < 130.0                   # neck breadth (adults: about 100-125 mm)
    assert (cut[:, 1] >= front[1] - 1e-9).all() and cut[0, 1] > front[1] + 10.0   # rises towards the nape


def test_a_neck_point_stays_on_its_side_of_the_cut_in_every_pose():
    template = landmark_model()[0]
    settings = mk.MaskSettings()
    cut = mk.neck_cut(template, settings)
    kmat = camera_matrix(1.5 * SIZE, SIZE, SIZE)
    width = np.linalg.norm(template[16] - template[0])
    # points on the neck's front and sides, a twentieth of a jaw width above and below the cut
    index = [len(cut) // 2, len(cut) // 3, 2 * len(cut) // 3]
    up = np.array([0.0, 0.05 * width, 0.0])
    above, below = cut[index] + up, cut[index] - up
    poses = list(itertools.product((-20.0, 0.0, 20.0), (-15.0, 0.0, 12.0), (-8.0, 8.0), (9.0, 14.0)))
    for yaw, pitch, roll, distance in poses:
        rvec, tvec = _pose(yaw, pitch, roll, distance)
        lower = mk.below_cut((SIZE, SIZE), mk.project_cut(cut, rvec, tvec, kmat))
        for points, expected in ((above, False), (below, True)):
            pixels = np.round(mk.project_cut(points, rvec, tvec, kmat)).astype(int)
            assert ((pixels >= 0) & (pixels < SIZE)).all()
            assert (lower[pixels[:, 1], pixels[:, 0]] == expected).all(), (yaw, pitch, roll, distance, expected)


@pytest.mark.parametrize("tilt", [0.0, 12.0, -30.0])
def test_below_cut_is_the_half_plane_under_a_straight_cut(tilt):
    angle = np.radians(tilt)
    along = np.array([np.cos(angle), np.sin(angle)])
    centre = np.array([70.0, 60.0])
    cut = centre + np.linspace(-30, 30, 7)[:, None] * along            # [7, 2], a straight cut
    if tilt < 0:
        cut = cut[::-1]                                                # either order
    lower = mk.below_cut((128, 128), cut)
    yy, xx = np.mgrid[0:128, 0:128].astype(float)
    side = (xx - centre[0]) * -along[1] + (yy - centre[1]) * along[0]    # > 0 below the line
    clear = np.abs(side) > 1.0
    np.testing.assert_array_equal(lower[clear], side[clear] > 0)


def test_split_parts_puts_the_under_chin_strip_on_the_head_side_of_the_cut():
    from facenerf.preprocess.fitting.segment import FaceFrame

    template = landmark_model()[0]
    kmat = camera_matrix(1.5 * SIZE, SIZE, SIZE)
    rvec, tvec = _pose(0.0, -12.0, 0.0, 11.0)                                # chin up: the throat shows
    landmarks = mk.project_cut(template, rvec, tvec, kmat)                     # [68, 2]
    frame = FaceFrame.from_landmarks(landmarks)
    cut = mk.project_cut(mk.neck_cut(template, mk.MaskSettings()), rvec, tvec, kmat)
    image = np.full((SIZE, SIZE, 3), 0.5, np.float32)
    person = np.zeros((SIZE, SIZE), bool)
    person[int(landmarks[19, 1]):, int(landmarks[0, 0]):int(landmarks[16, 0])] = True
    labels = mk.split_parts(image, person, frame, mk.MaskSettings(), cut)
    old = mk.split_parts(image, person, frame, mk.MaskSettings())
    throat = mk.neck_cut(template, mk.MaskSettings())[16]
    width = np.linalg.norm(template[16] - template[0])
    above, below = (mk.project_cut(throat[None] + [0.0, dy * width, 0.0], rvec, tvec, kmat)[0].round().astype(int)
                    for dy in (0.04, -0.04))
    assert above[1] > landmarks[8, 1] + 2                                  # under the chin in the image
    assert labels[above[1], above[0]] == mk.HEAD and old[above[1], above[0]] != mk.HEAD   # the chin line: neck
    assert labels[below[1], below[0]] in (mk.NECK, mk.TORSO)
    assert (labels[person] > 0).all() and (labels[~person] == 0).all()
