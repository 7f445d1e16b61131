"""benchmarks/train_safety_heads.py: the corpus it reads is split honestly, and it reproduces the
heads that ship in aimi bit for bit (this runs the whole training: about five minutes of CPU)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from benchmarks.merge_safety_data import identity, read, split_of
from benchmarks.safety_eval import HOLDOUT, NEXT_HOLDOUTS
from benchmarks.train_safety_heads import (
    COMPLETIONS_WITHOUT,
    RECALL_MARGIN,
    Row,
    WindowScores,
    as_read,
    augment,
    benign_windows,
    blocked_harm,
    choose_output_threshold,
    choose_penalty,
    choose_scales,
    choose_thresholds,
    fit_pieces,
    for_completions,
    load_answers,
    load_corpus,
    other_kernels,
    output_thresholds_of,
    train,
)

from aimi.safety.chunks import any_window
from aimi.safety.encoders import E5Encoder, MultilingualEncoder
from aimi.safety.heads import (
    HEADS_FILE,
    LABELS,
    MULTILINGUAL_HEADS_FILE,
    OTHER_LANGUAGES_HEADS_FILE,
    OUTPUT_HEADS_FILE,
    Heads,
)
from aimi.safety.language import LanguageGate
from aimi.safety.pieces import BUCKETS, buckets, piece_scores
from aimi.safety.semantic import SemanticModel

DATA = Path(__file__).resolve().parent.parent / "data"


def holdout(name: str = HOLDOUT.name) -> list[dict[str, object]]:
    """The holdout `safety_eval.py` scores (`--holdout`, `HOLDOUT`), kept out of the corpus, as the
    ones written for the rounds after (`NEXT_HOLDOUTS`) are."""
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_no_family_is_on_both_sides_of_a_split() -> None:
    splits: dict[str, set[str]] = defaultdict(set)
    for row in load_corpus():
        splits[row.family].add(row.split)
    assert all(len(s) == 1 for s in splits.values())
    seen = {identity(r.text) for r in load_corpus()}
    for name in (HOLDOUT.name, *(path.name for path in NEXT_HOLDOUTS)):
        held = holdout(name)
        assert not {str(r["family"]) for r in held} & set(splits), name
        assert not {identity(str(r["text"])) for r in held} & seen, name


def test_the_corpus_holds_a_few_thousand_texts_across_every_label_and_kind() -> None:
    rows = load_corpus()
    assert len(rows) + len(holdout()) >= 2000
    for split in ("train", "dev"):
        picked = [r for r in rows if r.split == split]
        for label in LABELS:
            assert sum(label in r.labels for r in picked) >= 40, (split, label)
        assert sum(r.kind == "benign_tricky" for r in picked) >= 100
        assert sum(r.kind == "benign" for r in picked) >= 50


def test_variants_keep_their_row_s_labels_and_are_the_same_for_the_same_seed() -> None:
    # Each row a family of its own: a variant carries its row's family, so it names its row.
    sampled = [r for r in load_corpus() if r.split == "train"][::50]
    rows = [replace(r, family=f"{r.family}#{i}") for i, r in enumerate(sampled)]
    first, second = augment(rows, seed=5), augment(rows, seed=5)
    assert first == second
    assert len(first) > 3 * len(rows)
    by_row = {r.family: r.labels for r in rows}
    assert all(v.labels == by_row[v.family] for v in first)


def test_one_odd_everyday_text_in_eight_hundred_does_not_set_a_prompt_threshold() -> None:
    """800 everyday texts under 0.3, 100 look-alikes under 0.5, harm spread from 0.4 to 1.0: one
    everyday text at 0.96 is allowed to be flagged; a second at 0.9 moves `medium` above it."""
    harmful = np.linspace(0.4, 1.0, 100)
    everyday = np.linspace(0.0, 0.29, 800)
    look_alikes = np.linspace(0.0, 0.49, 100)
    everyday[0] = 0.96
    p = np.concatenate([harmful, everyday, look_alikes])
    y = np.arange(p.size) < 100
    tricky = np.arange(p.size) >= 900
    assert choose_thresholds(p, y, ~y, tricky)[1] == 0.5
    everyday[1] = 0.9
    p = np.concatenate([harmful, everyday, look_alikes])
    assert choose_thresholds(p, y, ~y, tricky)[1] == 0.95


def test_with_no_margin_a_label_takes_the_most_recall_its_budget_allows() -> None:
    """700 harmful texts, 7 of them between 0.30 and 0.49 and the rest at 0.97; look-alikes and
    everyday texts under 0.3, so every grid value is within budget. The completions' margin (0.02)
    gives up the 7 (1 %) for `medium` 0.95; with none, `medium` stays at 0.30 and blocks them."""
    harmful = np.concatenate([np.linspace(0.3, 0.49, 7), np.full(693, 0.97)])
    p = np.concatenate([harmful, np.linspace(0.0, 0.29, 800), np.linspace(0.0, 0.29, 100)])
    y = np.arange(p.size) < 700
    tricky = np.arange(p.size) >= 1500
    assert choose_thresholds(p, y, ~y, tricky, margin=RECALL_MARGIN)[1] == 0.95
    assert choose_thresholds(p, y, ~y, tricky, margin=0.0)[1] == 0.3


def test_the_window_penalty_is_the_smallest_that_lets_long_everyday_texts_stop_holding_a_threshold_up() -> (
    None
):
    """100 harmful texts of one window from 0.4 to 1.0, 100 look-alikes under 0.5, 800 everyday
    texts under 0.3, and five everyday texts of 50 windows at 0.9: undiscounted they hold `medium`
    at 0.95. Discounted by 0.75·ln 50 they fall to 0.32, `medium` comes down to the look-alikes'
    0.5, and β = 1 blocks no more; without the long texts no penalty is chosen."""
    harmful = np.linspace(0.4, 1.0, 100)
    p = np.concatenate([harmful, np.linspace(0.0, 0.49, 100), np.linspace(0.0, 0.29, 800), np.full(5, 0.9)])
    y = (np.arange(p.size) < 100)[:, None]
    tricky = (np.arange(p.size) >= 100) & (np.arange(p.size) < 200)
    windows = np.where(np.arange(p.size) >= 1000, 50, 1)
    judged = np.ones_like(y)
    beta, thresholds = choose_penalty(p[:, None], windows, y, judged, ~y[:, 0], tricky)
    assert beta == 0.75 and thresholds[0, 1] == 0.5
    assert blocked_harm(p[:, None], thresholds, y, judged) == int((harmful >= 0.5).sum())
    beta, thresholds = choose_penalty(
        p[:1000, None], windows[:1000], y[:1000], judged[:1000], ~y[:1000, 0], tricky[:1000]
    )
    assert beta == 0.0 and thresholds[0, 1] == 0.5


def test_the_word_pieces_model_learns_a_word_and_leaves_buckets_no_text_has_at_zero() -> None:
    rng = np.random.default_rng(3)
    filler = [list(rng.integers(1000, 2000, size=6)) for _ in range(200)]
    windows = [[*w, 777] if i % 2 else w for i, w in enumerate(filler)]  # token 777 marks the label
    y = np.array([[i % 2 == 1] for i in range(200)])
    weights, bias = fit_pieces(windows, y)
    assert weights.shape == (1, BUCKETS)
    scores = piece_scores([[1500, 777], [1500, 1501]], weights, bias)[:, 0]
    assert scores[0] > 0 > scores[1]
    used = np.unique(np.concatenate([buckets(w) for w in windows]))
    assert np.count_nonzero(weights) <= len(used)
    assert np.array_equal(fit_pieces(windows, y)[0], weights)  # the same rows, the same model


def test_a_label_takes_a_share_of_the_word_pieces_only_when_it_blocks_more_of_dev() -> None:
    """Two labels, 100 harmful texts each, 400 everyday texts and 100 look-alikes. For the first
    the network misses half the harm and the word pieces see it; for the second the word pieces
    are noise."""
    rng = np.random.default_rng(5)
    n = 600
    y = np.zeros((n, 2), dtype=bool)
    y[:100, 0] = y[100:200, 1] = True
    benign = np.logical_not(y.any(axis=1))
    tricky = np.arange(n) >= 500
    network = rng.normal(-3.0, 0.5, (n, 2))
    network[:50, 0] = rng.normal(3.0, 0.5, 50)  # the network sees half of the first label's harm
    network[100:200, 1] = rng.normal(3.0, 0.5, 100)  # and all of the second's
    pieces = np.stack([np.where(y[:, 0], 4.0, -4.0), rng.normal(0.0, 3.0, n)], axis=1)
    scores = WindowScores([np.array([i]) for i in range(n)], network, pieces)
    scale = choose_scales(scores, y, benign, tricky, np.zeros(n, dtype=bool))
    assert scale[0] > 0 and scale[1] == 0


def test_the_completions_threshold_stays_a_margin_above_the_benign_answers() -> None:
    answers = np.linspace(0.0, 0.83, 500)
    assert choose_output_threshold(answers, np.ones(500, dtype=bool), medium=0.7) == 0.9
    assert choose_output_threshold(answers, np.ones(500, dtype=bool), medium=0.95) == 0.95
    assert choose_output_threshold(answers, answers < 0.5, medium=0.3) == 0.55


def test_one_odd_benign_answer_in_a_thousand_does_not_set_the_completions_thresholds() -> None:
    """Two labels each have an odd answer to a question sampled 1,000 times; one answer in a
    thousand of it may be left out in all labels, the one whose leaving lowers the thresholds most."""
    answers = np.stack([np.linspace(0.0, 0.79, 1000), np.linspace(0.0, 0.49, 1000)], axis=1)
    answers[7] = (0.96, 0.0)
    answers[9] = (0.0, 0.7)
    benign, hello = np.ones(1000, dtype=bool), ["hello"] * 1000
    assert output_thresholds_of(answers, benign, [0.7, 0.5], hello) == [0.99, 0.55]
    assert output_thresholds_of(answers[:999], benign[:999], [0.7, 0.5], hello[:999]) == [0.99, 0.75]
    answers[9] = (0.0, 0.6)  # now leaving the other one out lowers the thresholds more
    assert output_thresholds_of(answers, benign, [0.7, 0.5], hello) == [0.85, 0.65]


def test_no_answer_to_a_question_sampled_fewer_than_a_thousand_times_is_left_out() -> None:
    answers = np.stack([np.linspace(0.0, 0.79, 1020)], axis=1)
    answers[1005] = 0.96
    questions = ["hello"] * 1000 + ["help"] * 20
    assert output_thresholds_of(answers, np.ones(1020, dtype=bool), [0.7], questions) == [0.99]
    answers[1005], answers[5] = 0.5, 0.96
    assert output_thresholds_of(answers, np.ones(1020, dtype=bool), [0.7], questions) == [0.85]


def test_a_benign_text_of_several_windows_gives_each_window_as_a_row_and_a_harmful_one_gives_none() -> None:
    first = "Thanks again for all the help with the quarterly budget spreadsheet yesterday afternoon."
    second = "Could you also check the totals in column B against the invoices from March and April?"
    long_benign = f"{first} {second} Then send it to Priya."
    rows = [
        Row(long_benign, frozenset(), "benign", "f-a", "train"),
        Row("Short and benign.", frozenset(), "benign_tricky", "f-b", "train"),
        Row(
            f"{first} {second} I will find you tonight and hurt you.",
            frozenset({"violence"}),
            "harmful",
            "f-c",
            "train",
        ),
    ]
    pieces = benign_windows(rows)
    assert [p.text for p in pieces] == [first, f"{second} Then send it to Priya."]
    assert all(p.kind == "benign" and not p.labels and p.family == "f-a" for p in pieces)


def test_the_earlier_holdouts_are_in_the_corpus_by_family() -> None:
    families = {row.family: row.split for row in load_corpus()}
    for name in (
        "safety_holdout.jsonl",
        "safety_holdout_r2.jsonl",
        "safety_holdout_r3.jsonl",
        "safety_holdout_r7.jsonl",
        "safety_holdout_r8.jsonl",
        "safety_holdout_r9.jsonl",
        *(path.name for path in COMPLETIONS_WITHOUT),
    ):
        lines = (DATA / name).read_text(encoding="utf-8").splitlines()
        assert {json.loads(line)["family"] for line in lines} <= set(families), name


def test_the_completions_heads_train_on_the_corpus_without_the_files_merged_for_the_prompts_only() -> None:
    corpus = load_corpus()
    kept = for_completions(corpus)
    merged = {str(row["family"]) for path in COMPLETIONS_WITHOUT for row in read(path)}
    assert not {r.family for r in kept} & merged
    # The merged rows were appended: what is left is the corpus the completions' heads came from.
    assert kept == corpus[: len(kept)] and {r.family for r in corpus[len(kept) :]} == merged


def assert_same_heads(trained: Heads, shipped: Heads) -> None:
    assert trained.encoder == shipped.encoder and trained.labels == shipped.labels
    names = ("hidden_weights", "hidden_bias", "weights", "bias", "calibration", "thresholds")
    for name in (*names, "piece_weights", "piece_bias", "piece_scale", "exemplar_share"):
        assert np.array_equal(getattr(trained, name), getattr(shipped, name)), name
    assert (trained.exemplars is None) == (shipped.exemplars is None)
    if trained.exemplars is not None and shipped.exemplars is not None:
        for name in ("mean", "axes", "vectors", "scale", "labels", "nearest"):
            assert np.array_equal(getattr(trained.exemplars, name), getattr(shipped.exemplars, name)), name
    assert trained.window_penalty == shipped.window_penalty
    assert (trained.output_thresholds is None) == (shipped.output_thresholds is None)
    if trained.output_thresholds is not None and shipped.output_thresholds is not None:
        assert np.array_equal(trained.output_thresholds, shipped.output_thresholds)


WHOLE_TRAINING = pytest.mark.timeout(1800)
"""A whole training takes minutes (the prompts' side 11 on 2 cores, round 39's corpus): more
than the suite's 600 s per test allows when the machine is shared."""

SAME_KERNELS = pytest.mark.skipif(other_kernels() is not None, reason=other_kernels() or "")


@WHOLE_TRAINING
@SAME_KERNELS
@pytest.mark.parametrize("side", ["prompts", "completions"])
def test_training_reproduces_the_shipped_heads_bit_for_bit(semantic_model: SemanticModel, side: str) -> None:
    corpus = load_corpus() if side == "prompts" else for_completions(load_corpus())
    trained, _ = train(
        semantic_model.encoder,
        corpus,
        answers=load_answers(),
        exemplars=side == "prompts",
        select=LanguageGate.load().english if side == "prompts" else None,
        margin=0.0 if side == "prompts" else RECALL_MARGIN,
        penalize_windows=side == "prompts",
    )
    shipped = Heads.load(HEADS_FILE if side == "prompts" else OUTPUT_HEADS_FILE)
    assert (trained.exemplars is not None) == (side == "prompts")
    assert trained.output_thresholds is not None
    assert_same_heads(trained, shipped)


@WHOLE_TRAINING
@SAME_KERNELS
@pytest.mark.parametrize(
    ("member", "model", "encoder", "heads_file"),
    [
        ("multilingual", "multilingual_model", MultilingualEncoder.name, MULTILINGUAL_HEADS_FILE),
        ("other_language", "other_languages_model", E5Encoder.name, OTHER_LANGUAGES_HEADS_FILE),
    ],
    ids=["multilingual member", "other-languages member"],
)
def test_training_reproduces_a_member_s_shipped_heads_bit_for_bit(
    request: pytest.FixtureRequest, member: str, model: str, encoder: str, heads_file: Path
) -> None:
    corpus = load_corpus()
    select = getattr(LanguageGate.load(), member)
    trained, info = train(
        request.getfixturevalue(model).encoder,
        corpus,
        answers=load_answers(),
        select=select,
        outputs=False,
        margin=0.0,
        penalize_windows=True,
    )
    assert trained.encoder == encoder and trained.output_thresholds is None
    # Calibrated on the dev texts it judges: those with a window in the languages it reads (the
    # multilingual member's fifteen but English, or the others).
    dev = sum(r.split == "dev" for r in corpus)
    judged = sum(r.split == "dev" and any_window(r.text, select) for r in as_read(corpus))
    assert int(str(info["dev_rows"])) == judged and 200 < judged < dev // 5
    assert_same_heads(trained, Heads.load(heads_file))


def test_the_answer_sentences_waiting_for_the_output_side_quote_the_answers_they_come_from() -> None:
    """`safety_completions_c21.jsonl` (docs/safety.md, Heads, "Round 19, the output side"): the
    sentences quoted from round 16's answers are in the answer they name, self-harm ones say so,
    and every family is on the side of the split its name gives."""
    rows = read(DATA / "safety_completions_c21.jsonl")
    answers = {int(str(r["sample"])): str(r["text"]) for r in read(DATA / "safety_answers_r16.jsonl")}
    quoted = [r for r in rows if "source_sample" in r]
    assert quoted and all(str(r["text"]) in answers[int(str(r["source_sample"]))] for r in quoted)
    assert all(r["labels"] == (["self_harm"] if r["kind"] == "harmful" else []) for r in rows)
    assert all(r["split"] == split_of(str(r["family"])) for r in rows)


@pytest.mark.parametrize("name", ["safety_answers_r13.jsonl", "safety_answers_r16.jsonl"])
def test_the_answers_waiting_for_the_next_round_are_new_answers_to_dev_questions_each_read(name: str) -> None:
    """`safety_answers_r13.jsonl` and `safety_answers_r16.jsonl` (docs/safety.md, Heads, "Round 13",
    and What is left, "Round 16"): fresh samples, not in the answers the thresholds are chosen on
    nor in each other, each labelled by reading; the ambiguous and harmful ones say why, and the
    harmful ones name their labels."""
    waiting = read(DATA / name)
    answers = load_answers()
    other = "safety_answers_r16.jsonl" if name == "safety_answers_r13.jsonl" else "safety_answers_r13.jsonl"
    assert {r["family"] for r in waiting} <= {r.family for r in answers if r.split == "dev"}
    assert not {r["text"] for r in waiting} & (
        {r.text for r in answers} | {r["text"] for r in read(DATA / other)}
    )
    assert (
        {"benign_tricky", "ambiguous"}
        <= {r["kind"] for r in waiting}
        <= {"benign_tricky", "ambiguous", "harmful"}
    )
    assert all(r.get("note") for r in waiting if r["kind"] != "benign_tricky")
    assert all(bool(r["labels"]) == (r["kind"] == "harmful") for r in waiting)
