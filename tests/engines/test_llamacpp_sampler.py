"""The numpy draw of `aimi.engines.llamacpp.sampler`: greedy, temperature, top-p, seeds, banned tokens."""

from __future__ import annotations

import numpy as np
import pytest

from aimi.engines.base import Grammar, Sampling
from aimi.engines.llamacpp.sampler import Draw

VOCAB = 1000


def logits(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, VOCAB).astype(np.float32)


def draws(draw: Draw, row: np.ndarray, n: int) -> np.ndarray:
    return np.array([draw(row) for _ in range(n)])


def test_greedy_picks_the_largest_logit_and_skips_banned_tokens() -> None:
    row = logits()
    top, second = np.argsort(-row)[:2]
    assert Draw(VOCAB, Sampling(temperature=0))(row) == top
    assert Draw(VOCAB, Sampling(temperature=0), banned=frozenset({int(top)}))(row) == second


def test_a_draw_never_changes_the_logits_it_is_given() -> None:
    row = logits()
    before = row.copy()
    Draw(VOCAB, Sampling(temperature=0.7, top_p=0.9, seed=1), banned=frozenset({3}))(row)
    Draw(VOCAB, Sampling(temperature=0), banned=frozenset({int(row.argmax())}))(row)
    assert np.array_equal(row, before)


def test_top_p_draws_only_from_the_smallest_set_holding_that_mass_at_the_temperature() -> None:
    row = logits()
    temperature, top_p = 0.5, 0.8
    p = np.exp((row - row.max()) / temperature)
    p /= p.sum()
    order = np.argsort(-p)
    size = int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1
    nucleus = set(order[:size].tolist())
    seen = draws(Draw(VOCAB, Sampling(temperature=temperature, top_p=top_p, seed=3)), row, 3000)
    assert set(seen.tolist()) <= nucleus
    assert len(set(seen.tolist())) > size // 2  # it is a draw, not always the top token


@pytest.mark.parametrize("spread", [0.5, 2.0, 8.0], ids=["flat", "lm-like", "peaked"])
def test_top_p_draws_the_same_tokens_as_sorting_the_whole_vocabulary(spread: float) -> None:
    # The nucleus is looked for above lines near the top first; the draws must be the ones a sort
    # of the whole vocabulary gives, with the same random numbers.
    row = np.random.default_rng(7).normal(0, spread, VOCAB).astype(np.float32)
    temperature, top_p = 0.7, 0.9
    p = np.exp((row - row.max()) / temperature).astype(np.float32)
    order = np.argsort(-p, kind="stable")
    mass = np.cumsum(p[order], dtype=np.float64)
    size = min(int(np.searchsorted(mass, top_p * mass[-1])) + 1, VOCAB)
    nucleus = order[:size]
    rng = np.random.default_rng(11)
    expected = []
    for _ in range(200):
        cum = np.cumsum(p[nucleus], dtype=np.float64)
        expected.append(int(nucleus[int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))]))
    got = draws(Draw(VOCAB, Sampling(temperature=temperature, top_p=top_p, seed=11)), row, 200)
    assert got.tolist() == expected


def test_the_draw_follows_the_softmax_at_the_temperature() -> None:
    row = np.log(np.array([0.5, 0.3, 0.15, 0.05] + [1e-9] * 4, dtype=np.float32))
    temperature = 2.0
    expected = np.exp(row / temperature)
    expected /= expected.sum()
    seen = draws(Draw(len(row), Sampling(temperature=temperature, seed=11)), row, 20000)
    observed = np.bincount(seen, minlength=len(row)) / len(seen)
    assert np.allclose(observed, expected, atol=0.015)


def test_the_draw_over_a_large_vocabulary_follows_the_softmax_across_blocks() -> None:
    # Weights spread over several 256-token blocks, a few heavy tokens far apart.
    row = np.full(2000, -30.0, dtype=np.float32)
    heavy = {5: 0.4, 700: 0.3, 1999: 0.2, 1300: 0.1}
    for token, prob in heavy.items():
        row[token] = np.log(prob)
    seen = draws(Draw(len(row), Sampling(temperature=1.0, seed=5)), row, 20000)
    observed = np.bincount(seen, minlength=len(row)) / len(seen)
    for token, prob in heavy.items():
        assert abs(observed[token] - prob) < 0.015


def test_banned_tokens_are_never_drawn() -> None:
    row = logits()
    banned = frozenset(int(t) for t in np.argsort(-row)[:5])
    for sampling in (Sampling(temperature=1.5, seed=2), Sampling(temperature=1.0, top_p=0.5, seed=2)):
        seen = draws(Draw(VOCAB, sampling, banned=banned), row, 2000)
        assert not set(seen.tolist()) & banned


def test_the_same_seed_draws_the_same_tokens_and_another_seed_does_not() -> None:
    row = logits()

    def run(seed: int) -> list[int]:
        return draws(Draw(VOCAB, Sampling(temperature=1.0, top_p=0.95, seed=seed)), row, 50).tolist()

    assert run(42) == run(42)
    assert run(42) != run(43)


@pytest.mark.parametrize(
    ("sampling", "grammar", "handled"),
    [
        (Sampling(temperature=0.7, top_p=0.9), None, True),
        (Sampling(temperature=0), None, True),
        (Sampling(temperature=0.7, top_k=40), None, False),
        (Sampling(temperature=0.7, presence_penalty=0.5), None, False),
        (Sampling(temperature=0.7), Grammar('root ::= "a"'), False),
    ],
)
def test_grammars_penalties_and_top_k_stay_with_the_native_chain(
    sampling: Sampling, grammar: Grammar | None, handled: bool
) -> None:
    assert Draw.handles(sampling, grammar) is handled
