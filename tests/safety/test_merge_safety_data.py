"""benchmarks/merge_safety_data.py: new texts join the corpus on the side their family's hash gives,
once, and never into a family the corpus holds."""

from __future__ import annotations

import pytest
from benchmarks.merge_safety_data import CORPUS, identity, merged, read, split_of


def test_every_family_of_the_corpus_is_on_the_side_its_hash_gives_except_the_older_set_s() -> None:
    """The older set's dev rows (`legacy-`) were all put in `train` in round 1 (docs/safety.md)."""
    rows = [r for r in read(CORPUS) if not r["family"].startswith("legacy-")]
    assert {r["family"] for r in rows if split_of(r["family"]) != r["split"]} == set()
    assert {split_of(r["family"]) for r in rows} == {"train", "dev"}


def test_a_new_family_joins_one_side_and_a_known_text_is_skipped() -> None:
    corpus = [{"text": "Hello there!", "labels": [], "kind": "benign", "family": "old", "split": "train"}]
    system = "You are a bike shop's assistant."
    new = [
        {"text": "hello, there", "labels": [], "kind": "benign", "family": "new-a"},
        {"text": system, "labels": [], "kind": "benign", "family": "new-a", "role": "system"},
        {"text": "I will hurt you.", "labels": ["violence"], "kind": "harmful", "family": "new-b"},
    ]
    out, skipped = merged(corpus, new)
    assert skipped == 1
    assert out[1] == {
        "text": system,
        "labels": [],
        "kind": "benign",
        "family": "new-a",
        "split": split_of("new-a"),
        "role": "system",
    }
    assert out[2]["split"] == split_of("new-b") and "role" not in out[2]


def test_a_text_in_a_family_the_corpus_already_holds_is_refused() -> None:
    corpus = [{"text": "Hello there!", "labels": [], "kind": "benign", "family": "old", "split": "train"}]
    with pytest.raises(ValueError, match="old"):
        merged(corpus, [{"text": "Hi!", "labels": [], "kind": "benign", "family": "old"}])


@pytest.mark.parametrize(
    "name", ["safety_candidates_c11.jsonl", "safety_candidates_c15.jsonl", "safety_candidates_c26.jsonl"]
)
def test_the_candidates_waiting_for_a_round_share_nothing_with_the_unscored_holdouts(name: str) -> None:
    waiting = read(CORPUS.parent / name)
    held = [r for n in (27, 29, 31) for r in read(CORPUS.parent / f"safety_holdout_r{n}.jsonl")]
    assert not {r["family"] for r in waiting} & {r["family"] for r in held}
    assert not {identity(r["text"]) for r in waiting} & {identity(r["text"]) for r in held}
    assert not {r["family"] for r in waiting} & {r["family"] for r in read(CORPUS)}
