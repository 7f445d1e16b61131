from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aimi.safety.base import Severity
from aimi.safety.exemplars import Exemplars
from aimi.safety.heads import (
    HEADS_FILE,
    LABELS,
    OUTPUT_HEADS_FILE,
    Heads,
    Network,
    _flush_subnormal,
    fit_network,
    fit_platt,
    penalize,
    sigmoid,
)
from aimi.safety.pieces import BUCKETS, buckets


def test_the_shipped_heads_are_small_and_match_their_encoder() -> None:
    heads = Heads.load()
    assert HEADS_FILE.stat().st_size < 4_500_000 and OUTPUT_HEADS_FILE.stat().st_size < 2_500_000
    assert heads.exemplars is not None and heads.exemplars.vectors.shape[1] == 64
    assert Heads.load(OUTPUT_HEADS_FILE).exemplars is None  # the completions' heads have none
    assert heads.labels == LABELS
    assert heads.encoder == "all-MiniLM-L6-v2-and-layer4-int8-dynamic-fused"
    assert heads.hidden_weights is not None and heads.hidden_weights.shape[1] == 768
    assert heads.weights.shape == (len(LABELS), heads.hidden_weights.shape[0])
    low, medium, high = heads.thresholds.T
    assert np.all((low > 0) & (low <= medium) & (medium <= high) & (high < 1))


def test_probabilities_rise_through_safe_low_medium_and_high() -> None:
    heads = Heads.load()
    index = LABELS.index("violence")
    low, medium, high = (float(t) for t in heads.thresholds[index])
    assert heads.severity(index, 0.0) is Severity.SAFE
    assert heads.severity(index, low) is Severity.LOW
    assert heads.severity(index, medium) is Severity.MEDIUM
    assert heads.severity(index, high) is Severity.HIGH


def test_completions_are_held_to_their_own_thresholds_which_are_never_lower() -> None:
    heads = Heads.load(OUTPUT_HEADS_FILE)
    assert heads.output_thresholds is not None
    assert np.all(heads.output_thresholds[:, 1] >= heads.thresholds[:, 1])
    index = LABELS.index("hate")
    prompt_medium = float(heads.thresholds[index, 1])
    output_medium = float(heads.output_thresholds[index, 1])
    assert prompt_medium < output_medium
    assert heads.severity(index, prompt_medium) is Severity.MEDIUM
    assert not heads.severity(index, prompt_medium, output=True).at_least(Severity.MEDIUM)
    assert heads.severity(index, output_medium, output=True).at_least(Severity.MEDIUM)


def test_heads_survive_a_save_and_a_load(tmp_path: Path) -> None:
    heads = Heads.load()
    heads.save(tmp_path / "heads.npz")
    again = Heads.load(tmp_path / "heads.npz")
    assert again.output_thresholds is not None and heads.output_thresholds is not None
    assert np.array_equal(again.output_thresholds, heads.output_thresholds)
    assert heads.hidden_weights is not None
    vectors = np.random.default_rng(0).normal(size=(4, heads.hidden_weights.shape[1])).astype(np.float32)
    pieces = [[2023, 2003], [], [7592], [2045, 2045, 999]]
    assert np.array_equal(heads.probabilities(vectors, pieces), again.probabilities(vectors, pieces))
    assert heads.piece_scale is not None and again.piece_scale is not None
    assert np.array_equal(heads.piece_scale, again.piece_scale)


def _toy_heads(**extra: Any) -> Heads:
    """One label, a plain logistic head on 2-d vectors (weights 1, 1), identity calibration."""
    return Heads(
        encoder="e",
        labels=("a",),
        weights=np.ones((1, 2), np.float32),
        bias=np.zeros(1, np.float32),
        calibration=np.array([[1.0, 0.0]], np.float32),
        thresholds=np.array([[0.2, 0.5, 0.9]], np.float32),
        **extra,
    )


def test_a_plain_logistic_head_has_no_hidden_layer(tmp_path: Path) -> None:
    heads = _toy_heads()
    heads.save(tmp_path / "plain.npz")
    loaded = Heads.load(tmp_path / "plain.npz")
    assert loaded.hidden_weights is None
    assert loaded.probabilities(np.array([[1.0, 1.0]], np.float32))[0, 0] == pytest.approx(
        sigmoid(np.array([2.0]))[0]
    )


def test_a_text_of_many_windows_is_discounted_by_the_log_of_their_number_in_log_odds(tmp_path: Path) -> None:
    heads = _toy_heads(window_penalty=0.5)
    p = np.array([0.8], np.float32)
    assert heads.penalized(p, 1) is p  # one window: nothing to discount
    four = heads.penalized(p, 4)
    # logit(0.8) = ln 4, less 0.5·ln 4: ½·ln 4 = ln 2, so 2:1 odds.
    assert four.dtype == np.float32 and four[0] == pytest.approx(2 / 3, abs=1e-6)
    assert heads.penalized(p, 16)[0] < four[0] < p[0]
    assert _toy_heads().penalized(p, 16) is p  # heads without a penalty are not discounted
    heads.save(tmp_path / "penalized.npz")
    assert Heads.load(tmp_path / "penalized.npz").window_penalty == 0.5
    _toy_heads().save(tmp_path / "plain.npz")
    assert Heads.load(tmp_path / "plain.npz").window_penalty == 0.0


def test_a_penalty_applies_per_row_to_a_batch_of_texts_and_keeps_certainty_finite() -> None:
    p = np.array([[0.5, 0.9], [0.5, 0.9], [1.0, 0.0]])
    out = penalize(p, np.array([1, np.e**2, 1]), 0.5)
    assert out[0] == pytest.approx([0.5, 0.9])
    assert out[1] == pytest.approx(sigmoid(np.log(p[1] / (1 - p[1])) - 1.0))
    assert np.isfinite(out).all() and 0.99 < out[2, 0] < 1 and 0 < out[2, 1] < 0.01


def test_the_network_learns_a_separable_toy_problem_and_is_the_same_for_the_same_seed() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 8))
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0], axis=1)
    first = fit_network(x, y, hidden=16, epochs=60, rate=1e-2, seed=3)
    second = fit_network(x, y, hidden=16, epochs=60, rate=1e-2, seed=3)
    assert np.array_equal(first.raw(x), second.raw(x))
    assert ((first.raw(x) > 0) == y).mean() > 0.95


def test_averaged_networks_give_the_mean_of_their_outputs_in_one_network() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 8))
    y = np.stack([x[:, 0] > 0, x[:, 1] < 0], axis=1)
    networks = [fit_network(x, y, hidden=8, epochs=5, seed=seed) for seed in (1, 2, 3)]
    merged = Network.averaged(networks)
    assert merged.hidden_weights.shape == (24, 8) and merged.weights.shape == (2, 24)
    assert np.allclose(merged.raw(x), np.mean([n.raw(x) for n in networks], axis=0))
    assert np.array_equal(Network.averaged(networks[:1]).raw(x), networks[0].raw(x))


def test_platt_scaling_turns_scores_into_frequencies() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(size=4000)
    y = rng.random(4000) < sigmoid(2.0 * scores - 1.0)
    a, b = fit_platt(scores, y)
    assert a == pytest.approx(2.0, abs=0.25)
    assert b == pytest.approx(-1.0, abs=0.2)


def test_platt_scaling_converges_on_scores_spread_over_tens() -> None:
    """Scores from -35 to 20 (a network's raw output plus the word pieces'): a full Newton step
    from a = 1 overshoots to a ≈ 1e13; halved steps find the calibration."""
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(-20.0, 6.0, 900), rng.normal(8.0, 6.0, 100)])
    y = rng.random(1000) < sigmoid(0.4 * scores + 1.0)
    a, b = fit_platt(scores, y)
    assert a == pytest.approx(0.4, abs=0.15)
    assert b == pytest.approx(1.0, abs=0.6)


def _toy_heads_with_pieces(scale: float) -> Heads:
    weights = np.zeros((1, BUCKETS), np.float32)
    weights[0, buckets([42])] = 3.0
    bias, share = np.array([-1.0], np.float32), np.array([scale], np.float32)
    return _toy_heads(piece_weights=weights, piece_bias=bias, piece_scale=share)


def test_heads_that_read_word_pieces_add_each_label_s_share_of_their_output() -> None:
    vectors = np.array([[1.0, 0.0], [1.0, 0.0]], np.float32)
    raw = _toy_heads_with_pieces(0.5).raw(vectors, [[42], [7]])
    assert raw[0, 0] == pytest.approx(1.0 + 0.5 * (3.0 - 1.0))  # the token's bucket
    assert raw[1, 0] == pytest.approx(1.0 + 0.5 * -1.0)  # an unknown token: the bias alone
    assert np.allclose(_toy_heads_with_pieces(0.0).raw(vectors, [[42], [7]]), 1.0)


def test_heads_that_read_word_pieces_need_the_windows_tokens(tmp_path: Path) -> None:
    heads = _toy_heads_with_pieces(0.5)
    assert heads.reads_pieces
    with pytest.raises(ValueError, match="word pieces"):
        heads.raw(np.ones((1, 2), np.float32))
    heads.save(tmp_path / "pieces.npz")
    loaded = Heads.load(tmp_path / "pieces.npz")
    assert loaded.piece_weights is not None and heads.piece_weights is not None
    assert np.array_equal(loaded.piece_weights, heads.piece_weights)
    vectors = np.ones((1, 2), np.float32)
    assert np.array_equal(loaded.probabilities(vectors, [[42, 7]]), heads.probabilities(vectors, [[42, 7]]))


def test_a_heads_file_whose_word_pieces_are_cut_short_is_refused(tmp_path: Path) -> None:
    heads = _toy_heads_with_pieces(0.5)
    broken = Heads(**{**heads.__dict__, "piece_weights": np.zeros((1, 10), np.float32)})
    broken.save(tmp_path / "broken.npz")
    with pytest.raises(ValueError, match="do not match"):
        Heads.load(tmp_path / "broken.npz")


def test_heads_with_exemplars_add_each_label_s_share_of_their_score_and_survive_a_save(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    vectors = np.concatenate([rng.normal((3.0, 0.0), 0.1, (10, 2)), rng.normal((0.0, 3.0), 0.1, (10, 2))])
    labels = np.zeros((20, 1), bool)
    labels[:10] = True
    memory = Exemplars.fit(vectors, labels, projected=2, nearest=3)
    heads = Heads(
        **{**_toy_heads().__dict__, "exemplars": memory, "exemplar_share": np.array([2.0], np.float32)}
    )
    window = np.array([[3.0, 0.0]], np.float32)
    assert heads.raw(window)[0, 0] == pytest.approx(3.0 + 2.0 * memory.scores(window)[0, 0], rel=1e-6)
    assert memory.scores(window)[0, 0] > 0.5
    heads.save(tmp_path / "exemplars.npz")
    loaded = Heads.load(tmp_path / "exemplars.npz")
    assert loaded.exemplars is not None and np.array_equal(loaded.exemplars.vectors, memory.vectors)
    assert np.array_equal(loaded.probabilities(window), heads.probabilities(window))


def test_weights_too_small_for_a_normal_float_are_flushed_to_zero_and_the_rest_kept() -> None:
    values = np.array([1e-310, -4e-320, 2.3e-308, -1.0, 0.0, 1e-300])
    _flush_subnormal(values)
    assert values.tolist() == [0.0, 0.0, 2.3e-308, -1.0, 0.0, 1e-300]
