from __future__ import annotations

import numpy as np

from aimi.safety.encoders import minilm_tokenizer
from aimi.safety.pieces import BUCKETS, WordPieces, buckets, piece_scores


def test_a_window_s_buckets_are_its_tokens_and_its_pairs_of_tokens() -> None:
    one, two = buckets([2023]), buckets([2023, 2003])
    assert len(one) == 1 and set(one) <= set(two)
    assert len(two) == 3  # two tokens and the pair
    assert not np.array_equal(two, buckets([2003, 2023]))  # the pair is read in order
    assert np.array_equal(buckets([7, 7, 7]), np.unique(buckets([7, 7, 7])))
    assert len(buckets([])) == 0
    assert all(0 <= b < BUCKETS for b in buckets(list(range(30_000, 30_500))))


def test_a_window_scores_the_sum_of_its_buckets_weights_over_the_root_of_their_number() -> None:
    rng = np.random.default_rng(0)
    weights, bias = rng.normal(size=(2, BUCKETS)), np.array([0.5, -1.0])
    window = [101, 2023, 2003]
    found = buckets(window)
    expected = weights[:, found].sum(axis=1) / np.sqrt(len(found)) + bias
    scores = piece_scores([window, []], weights, bias)
    assert np.allclose(scores[0], expected)
    assert np.array_equal(scores[1], bias)  # an empty window is the bias alone


def test_word_pieces_are_the_encoder_s_tokens_without_cls_and_sep() -> None:
    tokenizer = minilm_tokenizer()
    texts = ["I will k1ll you", ""]
    ids = WordPieces(tokenizer).ids(texts)
    assert ids[0] == tokenizer.encode(texts[0]).ids[1:-1] and len(ids[0]) >= 4
    assert ids[1] == []
