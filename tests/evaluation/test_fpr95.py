import numpy as np
import pytest

from patchmatch.evaluation.fpr95 import fpr95, roc_curve


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
