"""The person mask of the video pipeline against a plate with in-painted gaps: a head that rises
into the margin the plate left round it is still person, and background there is not."""

from __future__ import annotations

import numpy as np

from facenerf.preprocess.fitting.segment import FaceFrame
from facenerf.preprocess.video import masks as mk
from facenerf.preprocess.video.headpose import camera_matrix
from facenerf.preprocess.video.tracking import landmark_model

SIZE = 160


def _scene():
    """``(landmarks [68, 2], wall [H, W, 3], head [H, W] bool)``: a front-facing head (the face,
    hair above the brows) in front of a wall with a gradient and a frame on it."""
    import cv2

    template = landmark_model()[0]
    rvec, _ = cv2.Rodrigues(np.diag([1.0, -1.0, -1.0]))
    landmarks = mk.project_cut(template, rvec.reshape(3), np.array([0.0, 0.1, 14.0]),
                               camera_matrix(1.5 * SIZE, SIZE, SIZE))                     # [68, 2]
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    wall = np.stack([0.55 + 0.2 * yy / SIZE, 0.6 + 0.1 * xx / SIZE, 0.5 + 0.0 * xx], -1)
    wall[20:60, 10:40] = (0.3, 0.25, 0.2)
    frame = FaceFrame.from_landmarks(landmarks)
    centre = landmarks[[0, 16, 8]].mean(axis=0) - 0.15 * frame.height * frame.up
    axes = (0.6 * np.ptp(landmarks[:, 0]), 0.8 * frame.height)
    head = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(head, (int(round(centre[0])), int(round(centre[1]))), (int(axes[0]), int(axes[1])), 0.0, 0, 360, 1, -1)
    return landmarks, wall.astype(np.float32), head.astype(bool) | mk._fill(head.shape, frame.face_polygon())


def test_a_head_that_rises_into_the_plates_margin_is_person_and_the_wall_there_is_not():
    landmarks, wall, head = _scene()
    margin = mk._dilate(head, 6) & ~head                  # the sample frames never showed this uncovered
    plate = mk.Plate(image=wall.copy(), known=~(head | margin),
                     covered=np.where(head, 1.0, np.where(margin, 0.3, 0.0)).astype(np.float32))
    plate.image[head] = 0.12                              # behind the head, in-painted from the head's colour
    lifted = np.roll(head, -4, axis=0)                    # this frame: the head 4 px higher
    image = np.where(lifted[..., None], np.float32(0.12), wall)
    mask = mk.person_mask(image, plate, FaceFrame.from_landmarks(landmarks - [0.0, 4.0]), mk.MaskSettings())

    risen = lifted & margin & ~mk._dilate(~lifted, 1)      # the head, inside the margin, off its edge
    assert risen.sum() > 50
    assert mask[risen].all()
    clear_wall = margin & ~mk._dilate(lifted | head, 3)    # margin pixels that show the wall
    assert clear_wall.sum() > 200
    assert not mask[clear_wall].any()
    assert mask[head & lifted].all()                      # usually covered, same colour as the plate: person
