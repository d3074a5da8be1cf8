import cv2
import numpy as np
import pytest

from patchmatch.features import detect, keypoints_to_array
from patchmatch.images import read_gray


def test_detect_real_image(entry_images):
    img, _ = read_gray(entry_images[0])
    f = detect(img, max_keypoints=500)
    assert len(f) == 500
    assert f.keypoints.dtype == np.float32 and f.keypoints.shape == (500, 4)
    assert f.descriptors.shape == (500, 128) and f.descriptors.dtype == np.float32
    assert np.all(np.diff(f.scores) <= 0)
    assert (f.xy >= 0).all() and (f.xy[:, 0] < img.shape[1]).all() and (f.xy[:, 1] < img.shape[0]).all()
    assert tuple(f.image_size) == (img.shape[1], img.shape[0])


def test_detect_blank_and_bad_input():
    f = detect(np.zeros((50, 60), np.uint8))
    assert len(f) == 0 and f.descriptors.shape == (0, 128)
    with pytest.raises(ValueError, match="uint8"):
        detect(np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="max_keypoints"):
        detect(np.zeros((5, 5), np.uint8), max_keypoints=0)


def test_keypoints_to_array():
    kps = [cv2.KeyPoint(1.0, 2.0, 3.0, 45.0)]
    np.testing.assert_allclose(keypoints_to_array(kps), [[1, 2, 3, 45]])
    assert keypoints_to_array([]).shape == (0, 4)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        keypoints_to_array(np.zeros((3, 2)))


def test_a_texture_poor_image_reaches_more_keypoints_than_the_fixed_threshold(temple_dir):
    """A weakly textured object on a black background (temple-ring): the fixed threshold leaves it
    short of its budget, the schedule lowers the threshold until the budget or its floor."""
    from patchmatch.features import CONTRAST_SCHEDULE, detect_to_budget

    img, _ = read_gray(temple_dir / "images" / "templeSR0002.png")
    fixed = detect(img, max_keypoints=4096, contrast_threshold=CONTRAST_SCHEDULE[0])
    adaptive = detect_to_budget(img, max_keypoints=4096)
    assert len(fixed) < 4096 and len(adaptive) > 1.5 * len(fixed)
    assert np.all(np.diff(adaptive.scores) <= 0)


def test_a_textured_image_costs_one_detection_as_before(entry_images):
    from patchmatch.features import detect_to_budget

    img, _ = read_gray(entry_images[0], 640)
    np.testing.assert_array_equal(detect_to_budget(img, 300).keypoints, detect(img, 300).keypoints)
    with pytest.raises(ValueError, match="schedule"):
        detect_to_budget(img, 300, schedule=())
