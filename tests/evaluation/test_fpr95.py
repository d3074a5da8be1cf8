import numpy as np
import pytest

from patchmatch.evaluation.fpr95 import (
    _fpr95_resampled,
    _resamples,
    fpr95,
    fpr95_difference,
    fpr95_interval,
    fpr95_sensitivity,
    roc_curve,
)


def test_fpr95_hand_computed():
    # 20 positives, 10 negatives. Sorted by score: 18 positives, then a tie of 2 positives + 2 negatives,
    # then 8 negatives. 95% recall = 19 positives, reached only after the whole tie: FPR = 2/10.
    scores = np.r_[np.linspace(10, 5, 18), [1, 1, 1, 1], np.linspace(0, -5, 8)]
    labels = np.r_[np.ones(18), [1, 0, 1, 0], np.zeros(8)].astype(bool)
    assert fpr95(scores, labels) == pytest.approx(0.2)
    perm = np.random.default_rng(0).permutation(len(scores))  # order of input irrelevant
    assert fpr95(scores[perm], labels[perm]) == pytest.approx(0.2)
    assert fpr95(scores - 100, labels) == pytest.approx(0.2)  # negative raw scores are fine


def test_fpr95_perfect_and_inverted():
    labels = np.r_[np.ones(100), np.zeros(100)].astype(bool)
    assert fpr95(np.r_[np.ones(100), np.zeros(100)], labels) == 0.0
    assert fpr95(np.r_[np.zeros(100), np.ones(100)], labels) == 1.0
    # 95 of 100 positives above all negatives, 5 below the 30 best negatives → needs 0 negatives
    scores = np.r_[np.full(95, 3.0), np.full(5, 0.0), np.full(30, 1.0), np.full(70, -1.0)]
    assert fpr95(scores, labels) == 0.0
    assert fpr95(scores, labels, recall=0.96) == pytest.approx(0.30)


def test_roc_and_errors():
    fpr, tpr, thr = roc_curve([0.9, 0.1], [True, False])
    np.testing.assert_allclose(fpr, [0, 0, 1])
    np.testing.assert_allclose(tpr, [0, 1, 1])
    with pytest.raises(ValueError, match="positives and negatives"):
        fpr95([1, 2], [True, True])
    with pytest.raises(ValueError, match="NaN"):
        fpr95([np.nan, 2], [True, False])
    with pytest.raises(ValueError, match="differ"):
        fpr95([1, 2, 3], [True, False])


def _scores(n: int, seed: int = 0, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(2, 1, n), rng.normal(0, 1, n)]
    return np.round(scores, 1) if ties else scores, np.r_[np.ones(n), np.zeros(n)].astype(bool)


def test_resampled_fpr95_equals_fpr95_of_the_resample():
    scores, labels = _scores(300)
    pos, neg = scores[labels], scores[~labels]
    p_idx, n_idx = next(_resamples(labels, 5, seed=1, chunk=5))
    fast = _fpr95_resampled(scores, labels, (p_idx, n_idx), 0.95)
    for b in range(5):
        s = np.r_[pos[p_idx[b]], neg[n_idx[b]]]
        assert fast[b] == pytest.approx(fpr95(s, np.r_[np.ones(300), np.zeros(300)].astype(bool)))


def test_fpr95_interval_holds_the_estimate_and_narrows_with_more_pairs():
    small, lab_small = _scores(200)
    big, lab_big = _scores(5000)
    lo, hi = fpr95_interval(small, lab_small)
    assert lo <= fpr95(small, lab_small) <= hi and lo < hi
    lo2, hi2 = fpr95_interval(big, lab_big)
    assert hi2 - lo2 < 0.5 * (hi - lo)
    assert fpr95_interval(small, lab_small, seed=3) == fpr95_interval(small, lab_small, seed=3)  # reproducible
    assert fpr95_interval(np.r_[np.ones(50), np.zeros(50)], lab_small[150:250]) == (0.0, 0.0)  # separable


def test_fpr95_difference_is_paired():
    scores, labels = _scores(1000, ties=False)
    noise = np.random.default_rng(5).normal(0, 1e-3, len(scores))
    d, lo, hi = fpr95_difference(scores, scores + noise, labels)
    assert lo <= d <= hi and hi - lo < 0.02  # a tiny perturbation: a narrow interval about 0
    worse = scores + np.r_[np.zeros(1000), np.full(1000, 1.0)]  # negatives pushed up
    d, lo, hi = fpr95_difference(scores, worse, labels)
    assert d == pytest.approx(fpr95(worse, labels) - fpr95(scores, labels)) and lo > 0
    with pytest.raises(ValueError, match="level"):
        fpr95_interval(scores, labels, level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        fpr95_difference(scores, worse, labels, n_boot=1)
    with pytest.raises(ValueError, match="differ"):
        fpr95_difference(scores, worse[:-1], labels)


def test_fpr95_sensitivity_counts_negatives_near_the_threshold():
    # 20 positives 1..20 (the 95%-recall threshold is the 19th highest: 2.0), negatives around it
    pos = np.arange(1.0, 21.0)
    neg = np.array([1.9, 1.95, 2.0, 2.04, 2.5, -5.0, 7.0, 0.0])
    s, l = np.r_[pos, neg], np.r_[np.ones(20, bool), np.zeros(8, bool)]
    assert fpr95_sensitivity(s, l, 0.0) == 1 / 8  # the tie at the threshold
    assert fpr95_sensitivity(s, l, 0.06) == 3 / 8
    assert fpr95_sensitivity(s, l, 0.15) == 4 / 8
    assert fpr95_sensitivity(s, l, 0.5) == 5 / 8
    assert fpr95_sensitivity(s, l, 100.0) == 1.0
    # a perturbation of that width moves FPR95 by at most about that much
    rng = np.random.default_rng(0)
    s = np.r_[rng.normal(1, 1, 2000), rng.normal(-1, 1, 2000)]
    l = np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    width = 0.01
    moved = max(abs(fpr95(s + rng.uniform(-width / 2, width / 2, len(s)), l) - fpr95(s, l)) for _ in range(20))
    assert 0 < moved <= fpr95_sensitivity(s, l, width)
    for bad in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="width"):
            fpr95_sensitivity(s, l, bad)
