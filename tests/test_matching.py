import cv2
import numpy as np
import pytest

from patchmatch.features import detect
from patchmatch.images import read_gray
from patchmatch.matching import MatchConfig, decide_matches, match_features, match_images
from patchmatch.models import build_model
from patchmatch.patches import extract_patches
from patchmatch.scoring import PatchScorer
from tests.helpers import NCCScorer


def test_decide_matches_mutual_threshold_margin():
    pairs = np.array([[0, 0], [0, 1], [1, 1], [2, 2], [3, 2]])
    scores = np.array([5.0, 4.0, 6.0, -1.0, 0.5])
    m, s = decide_matches(pairs, scores, 4, 3, MatchConfig(min_score=0.0))
    # 0→0 (5) mutual; 1→1 (6) mutual; 2's best partner for keypoint 2 of image 1 is 3 (0.5), 3→2 mutual
    assert m.tolist() == [[0, 0], [1, 1], [3, 2]]
    np.testing.assert_allclose(s, [5, 6, 0.5])
    m, _ = decide_matches(pairs, scores, 4, 3, MatchConfig(min_score=1.0))
    assert m.tolist() == [[0, 0], [1, 1]]
    # margins: 0↔0: 5 vs 4 → 1; 1↔1: 6 vs 4 → 2; 3↔2: keypoint 2 of image 1 has 0.5 vs -1 → 1.5
    m, _ = decide_matches(pairs, scores, 4, 3, MatchConfig(min_score=-10, min_margin=1.5))
    assert m.tolist() == [[1, 1], [3, 2]]
    m, _ = decide_matches(pairs, scores, 4, 3, MatchConfig(min_score=-10, min_margin=1.6))
    assert m.tolist() == [[1, 1]]
    m, _ = decide_matches(pairs, scores, 4, 3, MatchConfig(min_score=-10, mutual=False))
    assert m.tolist() == [[0, 0], [1, 1], [2, 2], [3, 2]]  # each keypoint's best, one-to-many allowed
    assert decide_matches(np.zeros((0, 2), int), np.zeros(0), 0, 0, MatchConfig())[0].shape == (0, 2)


def test_match_config_validation():
    with pytest.raises(ValueError, match="k must"):
        MatchConfig(k=0)
    with pytest.raises(ValueError, match="max_ratio"):
        MatchConfig(max_ratio=1.5)


def test_match_features_homography(entry_images):
    img, _ = read_gray(entry_images[0], max_size=640)
    h, w = img.shape
    M = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 0.9)
    img2 = cv2.warpAffine(img, M, (w, h))
    f0, f1 = detect(img, 800), detect(img2, 800)
    p0, p1 = extract_patches(img, f0.keypoints), extract_patches(img2, f1.keypoints)
    res = match_features(f0, p0, f1, p1, NCCScorer(), MatchConfig(k=2, min_score=0.5))
    assert res.num_candidates <= 2 * 2 * 800 and len(res.matches) > 100
    proj = res.keypoints0[res.matches[:, 0]] @ M[:, :2].T + M[:, 2]
    err = np.linalg.norm(proj - res.keypoints1[res.matches[:, 1]], axis=1)
    assert np.mean(err < 2.0) > 0.8
    m0, s0 = res.matches0()
    assert m0.dtype == np.int32 and (m0 >= 0).sum() == len(res.matches)
    assert len(np.unique(res.matches[:, 1])) == len(res.matches)  # mutual: one-to-one


def test_match_images_runs_with_any_scorer(entry_images):
    img, _ = read_gray(entry_images[0], max_size=320)
    res = match_images(img, img, PatchScorer(build_model("2ch2stream"), device="cpu"), MatchConfig(min_score=-1e9), 200)
    assert len(res.keypoints0) == len(res.keypoints1) and res.matches.shape[1] == 2
    blank = np.zeros((100, 100), np.uint8)
    res = match_images(blank, img, PatchScorer(build_model("2ch2stream"), device="cpu"), MatchConfig(), 200)
    assert len(res.matches) == 0 and res.num_candidates == 0


def test_min_overlap_skips_unrelated_images(entry_images):
    """Two unrelated images (entry-P10 and a blank-ish random texture) are not sent to the network."""
    img, _ = read_gray(entry_images[0], max_size=320)
    noise = np.random.default_rng(0).integers(0, 256, img.shape, dtype=np.uint8)
    calls = []

    class Counting(NCCScorer):
        def score_pairs(self, p0, p1, pairs):
            calls.append(len(pairs))
            return super().score_pairs(p0, p1, pairs)

    res = match_images(img, noise, Counting(), MatchConfig(min_overlap=20, accept_ratio=None), 300)
    assert res.overlap < 20 and res.num_candidates == 0 and not calls
    res = match_images(img, img, Counting(), MatchConfig(min_overlap=20, accept_ratio=None), 300)
    assert res.overlap >= 20 and calls and len(res.matches) > 0


def test_accept_ratio_keeps_sift_matches_and_scores_only_the_rest():
    """With accept_ratio, SIFT's mutual ratio-test matches are kept unscored (NaN) and the network
    scores only candidates of the other keypoints."""
    from patchmatch.candidates import candidate_search
    from patchmatch.features import Features
    from patchmatch.matching import MatchConfig, match_features
    from tests.helpers import NCCScorer

    rng = np.random.default_rng(0)
    d0 = rng.random((60, 128)).astype(np.float32)
    d1 = d0 + rng.normal(scale=0.02, size=d0.shape).astype(np.float32)
    d1[40:] = rng.random((20, 128))  # the last 20 have no partner
    kp = np.c_[rng.random((60, 2)) * 100, np.full(60, 10.0), np.zeros(60)].astype(np.float32)
    f0 = Features(kp, d0, np.zeros(60, np.float32), np.array([100, 100]))
    f1 = Features(kp.copy(), d1, np.zeros(60, np.float32), np.array([100, 100]))
    patches = rng.integers(0, 256, (60, 64, 64), dtype=np.uint8)
    sure = candidate_search(d0, d1, 1, 1.0, accept_ratio=0.8).accepted
    assert len(sure) >= 35 and (sure[:, 0] == sure[:, 1]).all()
    base = match_features(f0, patches, f1, patches, NCCScorer(), MatchConfig(min_overlap=0, accept_ratio=None))
    hybrid = match_features(f0, patches, f1, patches, NCCScorer(), MatchConfig(min_overlap=0, accept_ratio=0.8))
    kept = {tuple(m) for m, s in zip(hybrid.matches, hybrid.scores) if np.isnan(s)}
    assert kept == {tuple(m) for m in sure}
    assert hybrid.num_candidates < base.num_candidates
    assert not (set(map(tuple, hybrid.matches[~np.isnan(hybrid.scores)])) & kept)
    with pytest.raises(ValueError, match="accept_ratio"):
        MatchConfig(accept_ratio=0.0)


def test_match_features_reads_only_the_patches_of_scored_keypoints(entry_images):
    """Patches outside :func:`scored_keypoints` are never read: zeroing them changes no match."""
    from patchmatch.matching import scored_keypoints, search_pair

    img, _ = read_gray(entry_images[0], max_size=640)
    img2, _ = read_gray(entry_images[1], max_size=640)
    f0, f1 = detect(img, 600), detect(img2, 600)
    p0, p1 = extract_patches(img, f0.keypoints), extract_patches(img2, f1.keypoints)
    config = MatchConfig(k=2, min_overlap=0, accept_ratio=0.7)
    found = search_pair(f0, f1, config)
    assert len(found.accepted) > 0
    keep = scored_keypoints({("a", "b"): found}, {"a": len(f0), "b": len(f1)}, config)
    assert 0 < keep["a"].sum() < len(f0) and 0 < keep["b"].sum() < len(f1)
    full = match_features(f0, p0, f1, p1, NCCScorer(), config, found)
    masked = match_features(f0, np.where(keep["a"][:, None, None], p0, 0), f1,
                            np.where(keep["b"][:, None, None], p1, 0), NCCScorer(), config, found)  # fmt: skip
    assert full.num_candidates == masked.num_candidates > 0
    assert np.array_equal(full.matches, masked.matches) and np.array_equal(full.scores, masked.scores, equal_nan=True)
    strong = MatchConfig(k=2, min_overlap=0, accept_ratio=0.7, strong_pair_accepted=1)
    assert scored_keypoints({("a", "b"): found}, {"a": len(f0), "b": len(f1)}, strong) == {}


def test_strong_pairs_keep_their_accepted_matches_without_the_network():
    """A pair with at least strong_pair_accepted accepted matches is not scored (patches may be
    None) and keeps exactly its accepted matches; below the threshold the network runs."""
    from patchmatch.candidates import candidate_search
    from patchmatch.features import Features
    from patchmatch.matching import MatchConfig, match_features, needs_network
    from tests.helpers import NCCScorer

    rng = np.random.default_rng(5)
    d0 = rng.random((60, 128)).astype(np.float32)
    d1 = d0 + rng.normal(scale=0.02, size=d0.shape).astype(np.float32)
    d1[40:] = rng.random((20, 128))
    kp = np.c_[rng.random((60, 2)) * 100, np.full(60, 10.0), np.zeros(60)].astype(np.float32)
    f0 = Features(kp, d0, np.zeros(60, np.float32), np.array([100, 100]))
    f1 = Features(kp.copy(), d1, np.zeros(60, np.float32), np.array([100, 100]))
    found = candidate_search(d0, d1, 1, 1.0, accept_ratio=0.8)  # ratio 1: every nearest neighbour a candidate
    n = len(found.accepted)
    assert n >= 35
    strong = MatchConfig(min_overlap=0, strong_pair_accepted=n)
    assert not needs_network(found, strong)
    res = match_features(f0, None, f1, None, NCCScorer(), strong, found)
    assert np.array_equal(res.matches, found.accepted) and np.isnan(res.scores).all() and res.num_candidates == 0
    weak = MatchConfig(min_overlap=0, strong_pair_accepted=n + 1)
    assert needs_network(found, weak)
    with pytest.raises(ValueError, match="one patch per keypoint"):
        match_features(f0, None, f1, None, NCCScorer(), weak, found)
    patches = rng.integers(0, 256, (60, 64, 64), dtype=np.uint8)
    scored = match_features(f0, patches, f1, patches, NCCScorer(), weak, found)
    assert scored.num_candidates > 0 and (~np.isnan(scored.scores)).any()
    assert needs_network(found, MatchConfig(min_overlap=0, strong_pair_accepted=None))
    assert not needs_network(found, MatchConfig(min_overlap=found.overlap + 1))
    with pytest.raises(ValueError, match="strong_pair_accepted"):
        MatchConfig(strong_pair_accepted=0)


def test_select_pairs_keeps_strong_pairs_and_each_images_best_partners():
    from patchmatch.matching import select_pairs

    overlaps = {("a", "b"): 500, ("a", "c"): 60, ("b", "c"): 55, ("c", "d"): 25, ("a", "d"): 21, ("b", "d"): 19,
                ("a", "e"): 30, ("b", "e"): 28, ("c", "e"): 27, ("d", "e"): 26}  # fmt: skip
    sel = select_pairs(overlaps, MatchConfig(min_overlap=20, strong_overlap=50, min_partners=1))
    # strong pairs, plus the best pair of d (d-e, 26) and of e (a-e, 30); b-d is below min_overlap
    assert sel == {("a", "b"), ("a", "c"), ("b", "c"), ("d", "e"), ("a", "e")}
    everything = select_pairs(overlaps, MatchConfig(min_overlap=20, strong_overlap=50, min_partners=10))
    assert everything == {p for p, o in overlaps.items() if o >= 20}
    assert select_pairs({}, MatchConfig()) == set()


def test_plan_pairs_gives_unselected_pairs_their_descriptor_matches():
    """Pairs without a network pass keep SIFT's own matches (mutual, ratio 0.8) unless unselected='none'."""
    from patchmatch.candidates import candidate_search
    from patchmatch.features import Features
    from patchmatch.matching import plan_pairs

    rng = np.random.default_rng(1)
    base = rng.random((80, 128)).astype(np.float32)
    kp = np.c_[rng.random((80, 2)) * 100, np.full(80, 10.0), np.zeros(80)].astype(np.float32)

    def view(num_shared: int) -> Features:  # shares its first num_shared descriptors with "a"
        d = rng.random((80, 128)).astype(np.float32)
        d[:num_shared] = base[:num_shared] + rng.normal(scale=0.01, size=(num_shared, 128))
        return Features(kp.copy(), d, np.zeros(80, np.float32), np.array([100, 100]))

    feats = {"a": Features(kp, base, np.zeros(80, np.float32), np.array([100, 100])), "b": view(70), "c": view(30)}
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    config = MatchConfig(min_overlap=20, strong_overlap=50, min_partners=0, unselected="descriptor")
    plan = plan_pairs(pairs, feats, pairs, config)
    assert plan.selected == {("a", "b")} and set(plan.searches) == {("a", "b")}
    m, s = plan.unselected_matches(("a", "c"))
    expected = candidate_search(base, feats["c"].descriptors, 1, 0.95, accept_ratio=0.8).accepted
    assert len(m) >= 25 and np.array_equal(m, expected) and np.isnan(s).all() and m.dtype == np.int64
    assert ("a", "b") not in plan.descriptor_matches  # the network's pair
    off = plan_pairs(pairs, feats, pairs, MatchConfig(min_overlap=20, strong_overlap=50, min_partners=0, unselected="none"))
    assert off.descriptor_matches == {} and len(off.unselected_matches(("a", "c"))[0]) == 0
    done = plan_pairs(pairs, feats, [("a", "b")], config)  # pairs already matched are not searched again
    assert done.descriptor_matches == {}
    with pytest.raises(ValueError, match="unselected"):
        MatchConfig(unselected="sift")


def test_match_features_below_min_overlap_keeps_descriptor_matches_when_asked():
    """A pair below min_overlap gets no network pass; with unselected='descriptor' it keeps SIFT's own matches."""
    from patchmatch.features import Features
    from tests.helpers import NCCScorer

    rng = np.random.default_rng(2)
    d0 = rng.random((40, 128)).astype(np.float32)
    d1 = rng.random((40, 128)).astype(np.float32)
    d1[:10] = d0[:10] + rng.normal(scale=0.01, size=(10, 128))  # 10 shared: below min_overlap 20
    kp = np.c_[rng.random((40, 2)) * 100, np.full(40, 10.0), np.zeros(40)].astype(np.float32)
    f0 = Features(kp, d0, np.zeros(40, np.float32), np.array([100, 100]))
    f1 = Features(kp.copy(), d1, np.zeros(40, np.float32), np.array([100, 100]))
    patches = rng.integers(0, 256, (40, 64, 64), dtype=np.uint8)
    none = match_features(f0, patches, f1, patches, NCCScorer(), MatchConfig(min_overlap=20))
    sift = match_features(f0, patches, f1, patches, NCCScorer(), MatchConfig(min_overlap=20, unselected="descriptor"))
    assert none.overlap == sift.overlap < 20 and len(none.matches) == 0 and none.num_candidates == 0
    assert len(sift.matches) >= 8 and (sift.matches[:, 0] == sift.matches[:, 1]).all() and np.isnan(sift.scores).all()
    assert sift.num_candidates == 0


def test_plan_pairs_runs_searches_side_by_side_with_the_same_result():
    """With 2 workers the searches run side by side: the same overlaps, selection and candidates
    as one after the other, and PyTorch's thread count untouched."""
    import torch

    from patchmatch.matching import plan_pairs
    from tests.helpers import shared_descriptor_scene

    feats, pairs = shared_descriptor_scene()
    config = MatchConfig(min_overlap=20, strong_overlap=50, min_partners=1)
    import threading

    from patchmatch import matching

    threads, search = set(), matching.search_pair

    def recording(*args):
        threads.add(threading.current_thread().name)
        return search(*args)

    before = torch.get_num_threads()
    serial = plan_pairs(pairs, feats, pairs, config)
    matching.search_pair, threads = recording, set()
    try:
        threaded = plan_pairs(iter(pairs), feats, pairs, config, workers=2)
    finally:
        matching.search_pair = search
    assert threads and all(name.startswith("search") for name in threads)
    assert torch.get_num_threads() == before
    assert list(threaded.overlaps.items()) == list(serial.overlaps.items()) and threaded.selected == serial.selected
    assert threaded.searches.keys() == serial.searches.keys() and len(serial.selected) >= 3
    for p in serial.searches:
        assert np.array_equal(threaded.searches[p].pairs, serial.searches[p].pairs)


def test_match_images_crops_at_the_scorers_magnification(entry_images):
    from patchmatch.features import detect
    from patchmatch.patches import extract_patches

    img, _ = read_gray(entry_images[0], max_size=320)
    seen = []

    class Wide(NCCScorer):
        def score_pairs(self, p0, p1, pairs):
            seen.append(p0)
            return super().score_pairs(p0, p1, pairs)

    match_images(img, img, Wide(magnification=8.0), MatchConfig(min_score=-1e9, accept_ratio=None), 200)
    kps = detect(img, 200).keypoints
    assert np.array_equal(seen[0], extract_patches(img, kps, magnification=8.0))
    assert not np.array_equal(seen[0], extract_patches(img, kps))
