import numpy as np
import pytest
import torch

from patchmatch.candidates import knn_candidates


def test_knn_candidates_known_answer():
    rng = np.random.default_rng(0)
    d1 = rng.random((50, 128)).astype(np.float32) * 100
    perm = rng.permutation(50)
    d0 = d1[perm] + rng.random((50, 128)).astype(np.float32)  # d0[i] ≈ d1[perm[i]]
    pairs = knn_candidates(d0, d1, k=1, max_ratio=1.0)
    truth = {(i, int(perm[i])) for i in range(50)}
    assert truth <= {tuple(p) for p in pairs}
    assert len(pairs) <= 2 * 50 and len(np.unique(pairs, axis=0)) == len(pairs)
    p2 = knn_candidates(d0, d1, k=2, max_ratio=1.0)
    assert len(p2) <= 4 * 50 and {tuple(p) for p in pairs} <= {tuple(p) for p in p2}
    # a strict ratio keeps only the distinctive nearest neighbours (here: all true ones)
    strict = knn_candidates(d0, d1, k=1, max_ratio=0.5)
    assert {tuple(p) for p in strict} == truth


def test_knn_candidates_edge_cases():
    d = np.random.default_rng(1).random((3, 128)).astype(np.float32)
    assert knn_candidates(d[:0], d).shape == (0, 2)
    assert knn_candidates(d, d[:1], k=4).shape[1] == 2  # fewer keypoints than k
    with pytest.raises(ValueError, match="k must"):
        knn_candidates(d, d, k=0)


def test_overlap_counts_mutual_ratio_matches():
    rng = np.random.default_rng(2)
    d1 = rng.random((60, 128)).astype(np.float32) * 100
    d0 = np.concatenate([d1[:25] + rng.random((25, 128)).astype(np.float32), rng.random((35, 128)).astype(np.float32) * 100])
    _, overlap = knn_candidates(d0, d1, k=1, return_overlap=True)
    assert 23 <= overlap <= 25  # the 25 shared descriptors, unrelated ones fail the ratio test
    unrelated = rng.random((60, 128)).astype(np.float32) * 100
    assert knn_candidates(unrelated, d1, k=1, return_overlap=True)[1] < 5
    assert knn_candidates(d0[:0], d1, return_overlap=True)[1] == 0


def test_one_matrix_search_equals_the_chunked_search_both_ways():
    """candidate_search (one distance matrix, both axes) gives the same candidates, overlap and
    mutual ratio-test matches as separate chunked searches per direction."""
    from patchmatch.candidates import knn, candidate_search, root_sift

    rng = np.random.default_rng(3)
    d0 = rng.random((300, 128)).astype(np.float32)
    d1 = np.r_[d0[:200] + rng.normal(scale=0.05, size=(200, 128)), rng.random((150, 128))].astype(np.float32)
    res = candidate_search(d0, d1, k=1, max_ratio=0.9, accept_ratio=0.8)
    r0, r1 = root_sift(d0), root_sift(d1)
    dist01, idx01 = knn(r0, r1, 2, chunk=64)
    dist10, idx10 = knn(r1, r0, 2, chunk=64)
    expect = set()
    for i in range(300):
        if dist01[i, 0] < 0.9 * dist01[i, 1]:
            expect.add((i, int(idx01[i, 0])))
    for j in range(350):
        if dist10[j, 0] < 0.9 * dist10[j, 1]:
            expect.add((int(idx10[j, 0]), j))
    assert set(map(tuple, res.pairs.tolist())) == expect
    mutual = [(i, int(idx01[i, 0])) for i in range(300) if int(idx10[idx01[i, 0], 0]) == i
              and dist01[i, 0] < 0.8 * dist01[i, 1] and dist10[idx01[i, 0], 0] < 0.8 * dist10[idx01[i, 0], 1]]  # fmt: skip
    assert set(map(tuple, res.accepted.tolist())) == set(mutual) and res.overlap == len(mutual)
    assert len(mutual) > 150


@pytest.mark.parametrize("kk", [1, 2, 3])
def test_blockwise_nearest_equals_a_full_top_k(kk):
    from patchmatch.candidates import _nearest, root_sift

    rng = np.random.default_rng(kk)
    q = root_sift(rng.random((700, 128)).astype(np.float32))
    r = root_sift(rng.random((300, 128)).astype(np.float32))
    r_sq = (r * r).sum(1)
    full = torch.addmm(r_sq[None].expand(len(q), -1), q, r.T, alpha=-2.0)
    want_v, want_i = torch.topk(full, kk, dim=1, largest=False)
    for rows in (64, 256, 1000):  # blocks that divide the rows, that do not, and one block
        v, i = _nearest(q, r, r_sq, kk, rows=rows)
        torch.testing.assert_close(v, want_v, rtol=0, atol=1e-5)
        # the same neighbours; among exactly tied distances (seed 2 on an AMD EPYC: row 546) topk's order is unspecified
        torch.testing.assert_close(full.gather(1, i), want_v, rtol=0, atol=1e-5)
        first = torch.topk(full, kk + 1, dim=1, largest=False).values  # ties among or just past the k nearest
        untied = (first[:, 1:] != first[:, :-1]).all(1)
        assert torch.equal(i[untied], want_i[untied]) and (~untied).sum() <= 2
        assert all(len(set(row)) == kk for row in i.tolist())


@pytest.mark.parametrize("n0, n1", [(2, 2), (5, 300), (300, 5), (700, 300), (257, 129), (64, 1000)])
def test_shared_matrix_search_equals_one_search_per_direction(n0, n1):
    """_nearest2_both (one matrix, value-only minima over tiles and groups) gives exactly the
    nearest index and the two smallest squared distances of a full search in each direction,
    for sizes that are and are not multiples of its tiles, groups and row blocks."""
    from patchmatch.candidates import _nearest, _nearest2_both, root_sift

    rng = np.random.default_rng(n0 * 1000 + n1)
    d0 = root_sift(rng.random((n0, 128)).astype(np.float32))
    d1 = root_sift(rng.random((n1, 128)).astype(np.float32))
    for rows, tile, group in ((256, 128, 32), (64, 16, 8)):
        got = _nearest2_both(d0, d1, rows=rows, tile=tile, group=group)
        for (best, index, second), q, r in zip(got, (d0, d1), (d1, d0)):
            val, idx = _nearest(q, r, (r * r).sum(1), 2)
            val = val + (q * q).sum(1)[:, None]
            assert torch.equal(index, idx[:, 0])
            torch.testing.assert_close(best, val[:, 0], rtol=0, atol=1e-5)
            torch.testing.assert_close(second, val[:, 1], rtol=0, atol=1e-5)


# --------------------------------------------------------------------------
# band_candidates: the epipolar band search of guided matching
# --------------------------------------------------------------------------
#: Rectified stereo (translation along x): the epipolar line of (x, y) is the row y1 = y.
F_RECTIFIED = np.array([[0.0, 0, 0], [0, 0, -1], [0, 1, 0]])


def _band(k0, k1, **kwargs):
    from patchmatch.candidates import band_candidates

    return {tuple(p) for p in band_candidates(np.array(k0, float), np.array(k1, float), **kwargs).tolist()}


def test_band_keeps_points_near_the_epipolar_line_of_similar_scale_and_orientation():
    k0 = [[10, 20, 4, 0]]
    k1 = [[50, 20, 4, 0],  # on the line
          [50, 22.5, 4, 0],  # 2.5 px off
          [60, 30, 4, 0],  # 10 px off
          [70, 20, 20, 0],  # on the line, 5x larger
          [80, 20, 4, 90]]  # on the line, turned by 90°  # fmt: skip
    assert _band(k0, k1, F=F_RECTIFIED, max_distance=3) == {(0, 0), (0, 1)}
    assert _band(k0, k1, F=F_RECTIFIED, max_distance=2) == {(0, 0)}
    assert _band(k0, k1, F=F_RECTIFIED, max_distance=3, max_scale_ratio=None) == {(0, 0), (0, 1), (0, 3)}
    assert _band(k0, k1, F=F_RECTIFIED, max_distance=3, max_angle=None) == {(0, 0), (0, 1), (0, 4)}
    # the pair's typical scale and rotation shift the bounds
    assert _band(k0, k1, F=F_RECTIFIED, scale_offset=5.0) == {(0, 3)}
    assert _band(k0, k1, F=F_RECTIFIED, angle_offset=-270.0) == {(0, 4)}  # -270° = +90°
    # only free keypoints take part
    assert _band(k0, k1, F=F_RECTIFIED, free1=np.array([False, True, True, True, True])) == {(0, 1)}
    assert _band(k0, k1, F=F_RECTIFIED, free0=np.array([False])) == set()


def test_band_distance_is_checked_in_both_images():
    # F of a translation along x and y: lines in image 0 and 1 differ, a point must be near both
    F = np.array([[0.0, 0, 1], [0, 0, -1], [-1, 1, 0]])  # skew([1, 1, 0]), identity cameras
    k0 = [[0, 0, 4, 0]]  # its line in image 1: -x + y = 0 ... points (t, t)
    k1 = [[5, 5, 4, 0], [5, 7, 4, 0]]  # on it; 2/√2 = 1.41 px off
    assert _band(k0, k1, F=F, max_distance=1.0) == {(0, 0)}
    assert _band(k0, k1, F=F, max_distance=1.5) == {(0, 0), (0, 1)}


def test_band_with_a_homography_keeps_points_near_the_transferred_point():
    H = np.array([[1.0, 0, 5], [0, 1, 0], [0, 0, 1]])  # x1 = x0 + 5
    k0 = [[10, 20, 4, 0]]
    k1 = [[15, 20, 4, 0], [15, 22, 4, 0], [15, 24, 4, 0], [40, 20, 4, 0]]
    assert _band(k0, k1, H=H, max_distance=3) == {(0, 0), (0, 1)}


def test_band_bounds_candidates_per_keypoint_and_pair_by_descriptor_distance():
    rng = np.random.default_rng(4)
    d = rng.random((3, 128)).astype(np.float32)
    k0 = [[10, 20, 4, 0], [30, 20, 4, 0], [50, 20, 4, 0]]  # all on one row: every pair is geometric
    k1 = [[12, 20, 4, 0], [32, 20, 4, 0], [52, 20, 4, 0]]
    assert len(_band(k0, k1, F=F_RECTIFIED)) == 9
    kept = _band(k0, k1, F=F_RECTIFIED, descriptors0=d, descriptors1=d + 0.01, per_keypoint=1)
    assert kept == {(0, 0), (1, 1), (2, 2)}
    assert len(_band(k0, k1, F=F_RECTIFIED, descriptors0=d, descriptors1=d, per_keypoint=3, per_pair=4)) == 4
    with pytest.raises(ValueError, match="F or H"):
        _band(k0, k1)
