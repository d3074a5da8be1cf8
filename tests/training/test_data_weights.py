"""Several training sets drawn by weight (``patchmatch train --data-weights``)."""

from __future__ import annotations

import numpy as np
import pytest

from patchmatch.training.data import PairSetError, load_pair_data


def test_batches_draw_from_the_sets_by_weight(pairset):
    even = load_pair_data([pairset, pairset])  # the same set twice: two sources of equal size
    assert even.weights is None and set(np.unique(even.source)) == {0, 1}
    rng = np.random.default_rng(0)
    for weights, share in (([1.0, 0.0], 1.0), ([3.0, 1.0], 0.75)):
        data = load_pair_data([pairset, pairset], weights=weights)
        pairs, labels = data.sample_batch(4000, rng, hard_fraction=0.5)
        src = data.source[pairs]
        assert (src[:, 0] == src[:, 1]).all()  # a pair never mixes two sets
        pos, neg = src[labels == 1, 0], src[labels == 0, 0]
        assert abs((pos == 0).mean() - share) < 0.03 and abs((neg == 0).mean() - share) < 0.03
        assert (data.track[pairs[labels == 1, 0]] == data.track[pairs[labels == 1, 1]]).all()
        assert (data.track[pairs[labels == 0, 0]] != data.track[pairs[labels == 0, 1]]).all()
    mined = load_pair_data([pairset, pairset], weights=[0.0, 1.0]).draw_random_negatives(500, rng)
    assert (load_pair_data([pairset, pairset]).source[mined] == 1).all()


def test_weights_must_be_one_per_set_and_not_all_zero(pairset):
    with pytest.raises(PairSetError, match="2 weights for 1 training sets"):
        load_pair_data([pairset], weights=[1.0, 2.0])
    with pytest.raises(PairSetError, match="not all 0"):
        load_pair_data([pairset, pairset], weights=[0.0, 0.0])
