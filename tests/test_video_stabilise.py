"""--stabilise: hand-held shake undone from the background alone, whatever the speaker does."""

import numpy as np
import pytest

from facenerf.preprocess.video.stabilise import background_motion

SIZE = 192


def speaker(person_shift: float) -> np.ndarray:
    """[SIZE, SIZE] bool: the 'speaker' (a head and a body) swayed by ``person_shift`` pixels."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return (((xx - 96 - person_shift) / 28.0) ** 2 + ((yy - 80) / 36.0) ** 2 < 1.0) | \
        ((yy > 118) & (np.abs(xx - 96 - 0.5 * person_shift) < 55))


def scene(person_shift: float) -> np.ndarray:
    """A textured background (scikit-image's astronaut) with a shaded 'speaker' that sways."""
    import cv2
    from skimage import data

    image = cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    head = ((xx - 96 - person_shift) / 28.0) ** 2 + ((yy - 80) / 36.0) ** 2 < 1.0
    body = (yy > 118) & (np.abs(xx - 96 - 0.5 * person_shift) < 55)
    image[head] = [0.85, 0.65, 0.55] + 0.1 * np.sin(xx[head] / 3.0)[:, None]
    image[body] = [0.15, 0.2, 0.3] + 0.05 * np.cos(yy[body] / 4.0)[:, None]
    return image


def similarity(angle_deg: float, scale: float, dx: float, dy: float) -> np.ndarray:
    """[2, 3] rotation about the image centre, scale and shift."""
    import cv2

    warp = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle_deg, scale)
    warp[:, 2] += [dx, dy]
    return warp


def test_shake_is_recovered_from_the_background_while_the_speaker_moves():
    import cv2

    rng = np.random.default_rng(3)
    shakes = [similarity(0, 1, 0, 0)] + [similarity(rng.uniform(-1.5, 1.5), rng.uniform(0.98, 1.02),
                                                    *rng.uniform(-6, 6, 2)) for _ in range(7)]
    frames = [cv2.warpAffine(scene(8.0 * np.sin(i)), shake, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE) for i, shake in enumerate(shakes)]
    from facenerf.preprocess.video.masks import dilated

    found = background_motion(frames, dilated(speaker(0.0), 0.03))
    corners = np.array([[20, 20, 1], [170, 20, 1], [20, 170, 1], [170, 170, 1]], dtype=np.float64)
    for shake, recovered in zip(shakes, found.transforms):
        on_frame = corners[:, :2] @ shake[:, :2].T + shake[:, 2]          # a background point as the frame shows it
        back = np.c_[on_frame, np.ones(4)] @ recovered.T                 # mapped onto the first frame
        np.testing.assert_allclose(back, corners[:, :2], atol=0.3)
    assert (found.inliers[1:] >= 12).all() and found.kept_previous() == 0
    assert 4.0 < found.largest_shift(SIZE, SIZE) < 12.0


def test_frames_without_background_corners_keep_the_previous_map():
    flat = [np.full((SIZE, SIZE, 3), 0.5, np.float32)] * 3
    found = background_motion(flat)
    assert found.kept_previous() == 2 and np.allclose(found.transforms, [[1, 0, 0], [0, 1, 0]])


def test_a_speaker_left_in_is_outvoted_by_the_background():
    """Without a speaker mask the swaying speaker's corners disagree with each other frame to frame;
    RANSAC keeps the background's map."""
    import cv2

    shake = similarity(0.8, 1.01, 3.0, -2.0)
    frames = [scene(0.0), cv2.warpAffine(scene(6.0), shake, (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE)]
    found = background_motion(frames)
    point = np.array([20.0, 20.0])
    np.testing.assert_allclose(found.transforms[1] @ np.r_[point @ shake[:, :2].T + shake[:, 2], 1.0], point,
                               atol=0.3)


def test_camera_shift_of_the_plate_samples_tells_a_still_camera_from_a_shaking_one():
    import cv2

    from facenerf.preprocess.video.masks import MOVING_CAMERA_PX, camera_shift

    person = speaker(0.0)
    still = [scene(4.0 * np.sin(i)) for i in range(5)]
    shaken = [cv2.warpAffine(f, similarity(0.5 * i, 1.0, 2.0 * i, -i), (SIZE, SIZE), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE) for i, f in enumerate(still)]
    assert camera_shift(still, person) < 0.05 * MOVING_CAMERA_PX
    assert camera_shift(shaken, person) > 5 * MOVING_CAMERA_PX
    assert camera_shift(still[:1], person) == 0.0
