import cv2
import numpy as np
import pytest

from patchmatch.colmap.convention import colmap_to_opencv, opencv_to_colmap
from patchmatch.features import detect
from patchmatch.images import read_gray
from patchmatch.patches import MAGNIFICATION, extract_patches, extract_patches_colmap


def _ncc(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a -= a.mean(1, keepdims=True)
    b -= b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-9)


def _corresponding(f0, f1, M, scale):
    xy = f0.xy @ M[:, :2].T + M[:, 2]
    d = ((xy[:, None] - f1.xy[None]) ** 2).sum(-1)
    j = d.argmin(1)
    ok = (d[np.arange(len(j)), j] < 1.0) & (np.abs(f1.keypoints[j, 2] / (f0.keypoints[:, 2] * scale) - 1) < 0.1)
    return np.nonzero(ok)[0], j[ok]


@pytest.mark.parametrize("angle,scale", [(30.0, 0.7), (-75.0, 1.3), (180.0, 1.0)])
def test_rotated_scaled_copy_gives_matching_patches(entry_images, angle, scale):
    """Known answer: a rotated and scaled copy of a real image yields the same oriented patches."""
    img, _ = read_gray(entry_images[0], max_size=768)
    h, w = img.shape
    M = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    img2 = cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR)
    f0, f1 = detect(img, 1500), detect(img2, 1500)
    i, j = _corresponding(f0, f1, M, scale)
    assert len(i) > 100
    p0 = extract_patches(img, f0.keypoints[i])
    p1 = extract_patches(img2, f1.keypoints[j])
    same = _ncc(p0, p1)
    other = _ncc(p0, np.roll(p1, 1, axis=0))
    assert np.median(same) > 0.85 and np.median(other) < 0.4
    # upright patches of a rotated image do not agree
    u0 = extract_patches(img, f0.keypoints[i], upright=True)
    u1 = extract_patches(img2, f1.keypoints[j], upright=True)
    if abs(angle) >= 30:
        assert np.median(_ncc(u0, u1)) < np.median(same) - 0.3


def test_patch_geometry_known_answer():
    """A bright dot at a known offset from the keypoint lands at the predicted patch cell."""
    img = np.zeros((200, 200), np.uint8)
    cv2.circle(img, (120, 100), 2, 255, -1)  # 20 px right of the keypoint (100, 100)
    size = 10.0  # patch side = 60 px → 64 cells, 0.9375 px per cell
    for angle, expect in [(0.0, (31.5 + 20 / 0.9375, 31.5)), (90.0, (31.5, 31.5 - 20 / 0.9375))]:
        p = extract_patches(img, np.array([[100, 100, size, angle]], np.float32))[0]
        yx = np.unravel_index(np.argmax(cv2.GaussianBlur(p.astype(np.float32), (5, 5), 0)), p.shape)
        assert abs(yx[1] - expect[0]) <= 1.5 and abs(yx[0] - expect[1]) <= 1.5, (angle, yx)


def test_border_and_degenerate_keypoints():
    img = np.random.default_rng(0).integers(0, 255, (50, 80), dtype=np.uint8)
    kps = np.array([[0, 0, 8, 0], [79, 49, 30, 10], [-20, 300, 5, 0], [40, 25, 1000, 0], [10, 10, 0, 0],
                    [np.nan, 1, 2, 3]], np.float32)
    p = extract_patches(img, kps)
    assert p.shape == (6, 64, 64) and p.dtype == np.uint8
    assert (p[5] == 0).all()
    assert extract_patches(img, np.zeros((0, 4), np.float32)).shape == (0, 64, 64)
    with pytest.raises(ValueError, match="uint8"):
        extract_patches(img.astype(np.float32), kps)


def test_keep_cuts_only_the_masked_patches(entry_images):
    """A ``keep`` mask cuts the same patches for its keypoints and leaves the others zero; a mask of
    the wrong shape or type is refused."""
    img, _ = read_gray(entry_images[0], max_size=640)
    f = detect(img, 400)
    keep = np.random.default_rng(0).random(len(f.keypoints)) < 0.4
    full, part = extract_patches(img, f.keypoints), extract_patches(img, f.keypoints, keep=keep)
    assert np.array_equal(part[keep], full[keep]) and not part[~keep].any() and full[~keep].any()
    cm = np.c_[opencv_to_colmap(f.xy.astype(np.float64)), f.keypoints[:, 2] / 2, np.deg2rad(f.keypoints[:, 3])]
    assert np.array_equal(extract_patches_colmap(img, cm, keep=keep)[keep], extract_patches_colmap(img, cm)[keep])
    for bad in (keep[:-1], keep.astype(np.uint8)):
        with pytest.raises(ValueError, match="bool mask"):
            extract_patches(img, f.keypoints, keep=bad)


def test_colmap_keypoints_match_opencv(entry_images):
    """COLMAP affine keypoints (+0.5 origin, σ-scale shape) give the patches of the same OpenCV keypoints."""
    img, _ = read_gray(entry_images[1], max_size=768)
    f = detect(img, 300)
    x, y, size, ang = f.keypoints.T.astype(np.float64)
    sigma, th = size / 2, np.deg2rad(ang)
    cm = np.stack([*opencv_to_colmap(f.xy.astype(np.float64)).T, sigma * np.cos(th), -sigma * np.sin(th),
                   sigma * np.sin(th), sigma * np.cos(th)], 1)
    p_cv = extract_patches(img, f.keypoints).astype(int)
    p_cm = extract_patches_colmap(img, cm).astype(int)
    assert np.abs(p_cv - p_cm).max() <= 1
    p4 = extract_patches_colmap(img, np.stack([cm[:, 0], cm[:, 1], sigma, th], 1)).astype(int)
    assert np.abs(p_cv - p4).max() <= 1
    with pytest.raises(ValueError, match="N, 2\\|4\\|6"):
        extract_patches_colmap(img, np.zeros((3, 5)))


def test_pixel_convention_roundtrip():
    xy = np.array([[0.0, 0.0], [10.25, 3.5]], np.float32)
    np.testing.assert_allclose(opencv_to_colmap(xy), xy + 0.5)
    np.testing.assert_allclose(colmap_to_opencv(opencv_to_colmap(xy)), xy)
    assert opencv_to_colmap(xy).dtype == np.float32
    assert MAGNIFICATION == 6.0


def test_sampling_agrees_with_kornia_pyramid_extraction(entry_images):
    """OpenCV per-patch sampling reproduces kornia's extract_patches_from_pyramid (the reference
    convention: pyramid level per scale, border replication) within one grey level."""
    import torch
    from kornia.feature import extract_patches_from_pyramid

    from patchmatch.features import detect
    from patchmatch.images import read_gray
    from patchmatch.patches import _sample

    image, _ = read_gray(entry_images[0], max_size=900)
    kps = detect(image, 1500).keypoints
    rng = np.random.default_rng(0)
    extra = np.c_[rng.uniform(-20, image.shape[1] + 20, (60, 2)), rng.uniform(2, 200, 60), rng.uniform(0, 360, 60)]
    kps = np.concatenate([kps, extra.astype(np.float32)])  # off-image centres and large (coarse-level) keypoints
    theta = np.deg2rad(kps[:, 3].astype(np.float64))
    half = 3.0 * kps[:, 2].astype(np.float64)
    affine = np.stack([np.stack([np.cos(theta), -np.sin(theta)], -1), np.stack([np.sin(theta), np.cos(theta)], -1)], 1)
    affine *= half[:, None, None]
    centers = kps[:, :2].astype(np.float64)
    ours = _sample(image, centers, affine)
    laf = torch.from_numpy(np.concatenate([affine, centers[:, :, None]], 2).astype(np.float32))[None]
    with torch.inference_mode():
        ref = extract_patches_from_pyramid(torch.from_numpy(image).float()[None, None], laf, PS=64)[0, :, 0]
    ref = ref.round().clamp(0, 255).to(torch.uint8).numpy()
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01
    assert (np.log2(2 * np.sqrt(np.abs(np.linalg.det(affine))) / 64) >= 2).sum() > 5  # coarse levels were exercised
