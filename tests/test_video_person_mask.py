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


def _swaying_clip(torso_sway: float = 1.0, n: int = 12):
    """``(frames, landmarks, head_all, torso_all, patch)``: the head of :func:`_scene` moving
    on an ellipse (4 px across, 2 px up and down), a dark torso swaying ``torso_sway`` times as far, and a still
    skin-coloured patch on the wall beside it that touches the lower edge. The masks are the
    pixels inside the head / torso in every frame and the patch."""
    import cv2

    landmarks, wall, head = _scene()
    patch = np.zeros((SIZE, SIZE), bool)
    patch[100:, :22] = True
    wall[patch] = (0.8, 0.6, 0.5)
    frames, marks, heads, torsos = [], [], [], []
    phase = np.linspace(0, 2 * np.pi, n, endpoint=False)
    for dx, dy in zip(np.round(4 * np.sin(phase)).astype(int), np.round(2 * np.cos(phase)).astype(int)):
        moved_head = np.roll(head, (dy, dx), axis=(0, 1))
        torso = np.zeros((SIZE, SIZE), np.uint8)
        shift = int(round(torso_sway * dx))
        cv2.rectangle(torso, (40 + shift, 140), (120 + shift, SIZE - 1), 1, -1)
        cv2.ellipse(torso, (80 + shift, 140), (40, 16), 0.0, 180, 360, 1, -1)
        torso = torso.astype(bool)
        image = np.where(torso[..., None], np.float32(0.1), wall)
        frames.append(np.where(moved_head[..., None], np.float32([0.8, 0.6, 0.5]), image).astype(np.float32))
        marks.append(landmarks + [float(dx), float(dy)])
        heads.append(moved_head)
        torsos.append(torso & ~moved_head)
    return frames, marks, np.logical_and.reduce(heads), np.logical_and.reduce(torsos), patch


def test_motion_hull_holds_a_swaying_person_and_not_a_still_lookalike_beside_it():
    frames, marks, head, torso, patch = _swaying_clip()
    hull = mk.motion_hull(frames, marks)
    assert hull is not None
    assert hull[head].all() and hull[torso].mean() > 0.99   # still inside, enclosed by moving edges
    assert not hull[patch].any()
    assert hull.mean() < 0.5
    still_frames, still_marks, *_ = _swaying_clip(torso_sway=0.0)
    assert mk.motion_hull(still_frames, still_marks) is None   # a torso whose outline never moves: no hull


def test_no_hull_when_part_of_the_head_outline_never_changes_and_the_chin_is_near_the_lower_edge():
    """Dark hair on a wall of the same colour: the outline is open at the top, so the moving edges
    enclose no face. With the chin near the lower edge there is no body column to notice it; the
    face itself must be inside, else the plate would take the head's colour as background there."""
    frames, marks, head, torso, patch = _swaying_clip()
    assert mk.motion_hull(frames, marks) is not None
    chin = int(max(FaceFrame.from_landmarks(m).chin[1] for m in marks))
    crop = chin + 6                                          # the lower edge just under the chin
    top = np.zeros((SIZE, SIZE), bool)
    top[: int(np.median([m[19, 1] for m in marks])) - 4] = True   # above the brows: hair and wall alike
    hidden = [np.where(top[..., None], np.float32([0.8, 0.6, 0.5]), f)[:crop] for f in frames]
    assert mk.motion_hull(hidden, marks) is None
    assert mk.motion_hull([f[:crop] for f in frames], marks) is not None   # the outline closed: a hull


def test_plate_takes_back_still_background_that_every_segmentation_called_person(monkeypatch):
    from types import SimpleNamespace

    frames, marks, head, torso, patch = _swaying_clip()
    everything = []

    def segment(image, landmarks):   # GrabCut stand-in: the person, and the skin-coloured patch
        person = (np.abs(image - np.float32([0.8, 0.6, 0.5])).max(-1) < 1e-6) | (image.max(-1) < 0.11)
        everything.append(person)
        return SimpleNamespace(labels=person.astype(np.uint8))

    monkeypatch.setattr(mk, "segment_face", segment)
    plate = mk.background_plate(frames, marks)
    assert all(p[patch].all() for p in everything)
    assert plate.known[patch].all() and np.abs(plate.image[patch] - [0.8, 0.6, 0.5]).max() < 1 / 255  # 8-bit plate
    assert not plate.known[torso].any() and (plate.covered[torso] == 1).all()   # a still torso stays person
    mask = mk.person_mask(frames[0], plate, FaceFrame.from_landmarks(marks[0]), mk.MaskSettings())
    assert not mask[patch].any()
    assert mask[torso].all() and mask[head].all()


def test_background_change_tells_a_still_camera_from_a_moving_one():
    """The plate's measure of how much the seen background changes across the sample frames:
    sensor-like noise on a still wall stays far under the note's threshold, a wall sliding by a
    few pixels per frame (a panning camera) is far over it; pixels seen fewer than 3 times and
    covered ones (NaN) do not count."""
    import cv2

    rng = np.random.default_rng(0)
    wall = cv2.GaussianBlur(rng.uniform(0.2, 0.8, (SIZE, SIZE, 3)).astype(np.float32), (0, 0), 2.0)
    still = np.stack([wall + rng.normal(0, 0.002, wall.shape).astype(np.float32) for _ in range(12)])
    panning = np.stack([np.roll(wall, 3 * k, axis=1) for k in range(12)])
    for stack in (still, panning):
        stack[:, 40:120, 50:110] = np.nan                      # the person, always in front
        stack[2:, :10, :10] = np.nan                           # seen twice only
    assert mk.background_change(still) < 0.25 * mk.MOVING_BACKGROUND
    assert mk.background_change(panning) > 2 * mk.MOVING_BACKGROUND
    assert mk.background_change(np.full((4, 8, 8, 3), np.nan, np.float32)) == 0.0
