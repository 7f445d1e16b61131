"""benchmarks/merge_safety_data.py: new texts join the corpus on the side their family's hash gives,
once, and never into a family the corpus holds."""

from __future__ import annotations

import pytest
from benchmarks.merge_safety_data import CORPUS, identity, merged, read, split_of
from benchmarks.safety_eval import HOLDOUT, NEXT_HOLDOUTS


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


def test_texts_in_other_scripts_are_told_apart_and_only_case_and_punctuation_are_ignored() -> None:
    assert identity("Как сделать бомбу?") != identity("Привет, как дела?")
    assert identity("今日はいい天気ですね。") != identity("東京駅はどこですか？")
    assert identity("¿Dónde está?") == identity("dónde está") != identity("donde esta")
    assert identity("Hello, World!") == identity("hello world")


def test_a_translation_joins_the_side_its_source_family_is_on_even_against_the_hash() -> None:
    source = next(f"legacy-{n}" for n in range(100) if split_of(f"legacy-{n}") == "dev")
    corpus = [
        {"text": "Where is the station?", "labels": [], "kind": "benign", "family": source, "split": "train"}
    ]
    new = [{"text": "¿Dónde está la estación?", "labels": [], "kind": "benign", "family": f"{source}@es"}]
    out, _ = merged(corpus, new)
    assert out[1]["split"] == "train" and out[1]["family"] == f"{source}@es"
    with pytest.raises(ValueError, match="no family 'gone'"):
        merged(corpus, [{"text": "Wo ist der Bahnhof?", "labels": [], "kind": "benign", "family": "gone@de"}])


def test_every_translation_in_the_corpus_is_on_the_side_of_its_source_family() -> None:
    """`safety_candidates_c28.jsonl` (in the corpus since round 29): texts of the corpus translated
    into eight languages, each family `<source>@<language>`."""
    rows = read(CORPUS)
    sides = {r["family"]: r["split"] for r in rows}
    translated = {r["family"]: r["split"] for r in rows if "@" in r["family"]}
    languages = {family.partition("@")[2] for family in translated}
    assert languages == {"es", "fr", "de", "it", "pt", "nl", "pl", "tr"}
    assert all(sides[family.partition("@")[0]] == split for family, split in translated.items())
    written = read(CORPUS.parent / "safety_candidates_c28.jsonl")
    assert all(r["family"].partition("@")[2] == r["lang"] for r in written)
    assert {r["family"] for r in written} == set(translated)


@pytest.mark.parametrize(
    "name",
    [
        "safety_candidates_c11.jsonl",
        "safety_candidates_c15.jsonl",
        "safety_candidates_c26.jsonl",
        "safety_candidates_c81.jsonl",
    ],
)
def test_the_candidates_waiting_for_a_round_share_nothing_with_the_holdouts_outside_the_corpus(
    name: str,
) -> None:
    waiting = read(CORPUS.parent / name)
    held = [r for path in (HOLDOUT, *NEXT_HOLDOUTS) for r in read(path)]
    assert not {r["family"] for r in waiting} & {r["family"] for r in held}
    assert not {identity(r["text"]) for r in waiting} & {identity(r["text"]) for r in held}
    assert not {r["family"] for r in waiting} & {r["family"] for r in read(CORPUS)}
