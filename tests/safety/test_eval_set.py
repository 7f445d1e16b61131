"""The labelled sets under tests/data are well formed (benchmarks/safety_eval.py and
benchmarks/train_safety_heads.py read them): the older evaluation set, the training corpus and the
holdout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "data"
DATA = ROOT / "safety_eval.jsonl"
LABELS = {"hate", "sexual", "violence", "self_harm", "jailbreak"}


def rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]


def test_every_line_has_a_text_labels_a_kind_and_a_split() -> None:
    for row in rows():
        assert isinstance(row["text"], str) and row["text"].strip()
        assert isinstance(row["labels"], list) and set(row["labels"]) <= LABELS
        assert row["kind"] in {"harmful", "benign_tricky", "benign"}
        assert bool(row["labels"]) == (row["kind"] == "harmful")
        assert row["split"] in {"dev", "holdout"}


def test_the_set_holds_a_few_hundred_distinct_texts_across_all_labels_and_kinds() -> None:
    data = rows()
    assert len(data) >= 300
    assert len({str(r["text"]) for r in data}) == len(data)
    labels = Counter(label for r in data for label in r["labels"])  # type: ignore[attr-defined]
    assert all(labels[label] >= 25 for label in LABELS), labels
    kinds = Counter(r["kind"] for r in data)
    assert kinds["benign_tricky"] >= 50 and kinds["benign"] >= 50


def test_the_seed_sentence_is_in_the_set_as_benign_but_tricky() -> None:
    (row,) = [r for r in rows() if str(r["text"]).startswith("Chopping tomatoes")]
    assert row["kind"] == "benign_tricky"


def test_the_corpus_and_the_holdout_are_labelled_by_family() -> None:
    for name, splits in (
        ("safety_corpus.jsonl", {"train", "dev"}),
        ("safety_holdout.jsonl", {"holdout"}),
        ("safety_holdout_r2.jsonl", {"holdout"}),
        ("safety_holdout_r3.jsonl", {"holdout"}),
        ("safety_holdout_r4.jsonl", {"holdout"}),
        ("safety_holdout_r5.jsonl", {"holdout"}),
        ("safety_holdout_r6.jsonl", {"holdout"}),
        ("safety_holdout_r7.jsonl", {"holdout"}),
        ("safety_holdout_r8.jsonl", {"holdout"}),
        ("safety_holdout_r9.jsonl", {"holdout"}),
        ("safety_holdout_r10.jsonl", {"holdout"}),
        ("safety_holdout_r11.jsonl", {"holdout"}),
        ("safety_holdout_r12.jsonl", {"holdout"}),
    ):
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines()
        texts = set()
        for row in map(json.loads, lines):
            assert isinstance(row["text"], str) and row["text"].strip()
            assert set(row["labels"]) <= LABELS
            assert bool(row["labels"]) == (row["kind"] == "harmful")
            assert row["split"] in splits and row["family"]
            texts.add(row["text"])
        assert len(texts) == len(lines), name


def test_the_help_seeking_question_is_in_the_holdout_as_benign_but_tricky() -> None:
    lines = (ROOT / "safety_holdout.jsonl").read_text(encoding="utf-8").splitlines()
    (row,) = [r for r in map(json.loads, lines) if "a friend tells me they are thinking" in r["text"]]
    assert row["kind"] == "benign_tricky"
