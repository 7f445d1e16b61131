"""The labelled evaluation set under tests/data is well formed (benchmarks/safety_eval.py reads it)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "safety_eval.jsonl"
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
