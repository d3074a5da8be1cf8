"""Pair-consistent augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch.training.augment import augment_pairs, dihedral


def test_dihedral_group():
    x = np.arange(16).reshape(4, 4)
    outs = [dihedral(x, k) for k in range(8)]
    assert len({o.tobytes() for o in outs}) == 8  # all 8 symmetries differ on an asymmetric patch
    np.testing.assert_array_equal(dihedral(x, 1), np.rot90(x))
    np.testing.assert_array_equal(dihedral(x, 4), x[:, ::-1])
    with pytest.raises(ValueError):
        dihedral(x, 8)


def test_same_transform_on_both_patches_and_swap():
    rng = np.random.default_rng(0)
    p0 = rng.integers(0, 256, (64, 8, 8), dtype=np.uint8)
    p1 = rng.integers(0, 256, (64, 8, 8), dtype=np.uint8)
    p0_before = p0.copy()
    q0, q1, k = augment_pairs(p0, p1, np.random.default_rng(1))
    assert q0.dtype == np.uint8 and q0.shape == p0.shape
    for i in range(64):
        t, swapped = k[i] % 8, k[i] >= 8
        a, b = (p1[i], p0[i]) if swapped else (p0[i], p1[i])
        np.testing.assert_array_equal(q0[i], dihedral(a, t))
        np.testing.assert_array_equal(q1[i], dihedral(b, t))
    assert 10 < (k >= 8).sum() < 54 and len(np.unique(k % 8)) == 8
    # Identical patches stay identical (a match stays a match), the inputs are untouched.
    r0, r1, _ = augment_pairs(p0, p0.copy(), np.random.default_rng(2))
    np.testing.assert_array_equal(r0, r1)
    np.testing.assert_array_equal(p0, p0_before)


def test_reproducible_and_validated():
    p = np.zeros((4, 8, 8), np.uint8)
    p[:, 0, 1] = 255
    a = augment_pairs(p, p, np.random.default_rng(5))
    b = augment_pairs(p, p, np.random.default_rng(5))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    q0, _, _ = augment_pairs(p, p, np.random.default_rng(5), swap=False)
    assert q0.sum() == p.sum()
    with pytest.raises(ValueError):
        augment_pairs(p, p[:, :4], np.random.default_rng(0))


def test_jitter_is_small_independent_and_reproducible():
    import torch

    from patchmatch.training.augment import jitter_patches

    yy, xx = np.mgrid[0:64, 0:64]
    img = (127 + 100 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)
    x = torch.from_numpy(np.stack([img, img])[None].repeat(16, 0))  # (16, 2, 64, 64), both channels equal
    a = jitter_patches(x, torch.Generator().manual_seed(0))
    b = jitter_patches(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert float(a.min()) >= 0 and float(a.max()) <= 255
    assert not torch.equal(a[:, 0], a[:, 1])  # the two patches of a pair are jittered independently
    # small: still strongly correlated with the original
    for k in range(16):
        c = np.corrcoef(a[k, 0].numpy().ravel(), img.ravel())[0, 1]
        assert c > 0.6, c
    none = jitter_patches(x, torch.Generator().manual_seed(0), 0, 0, 0, 0, 0, 0)
    torch.testing.assert_close(none, x, atol=1e-3, rtol=0)  # zero ranges = identity
