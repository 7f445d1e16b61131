from __future__ import annotations

import sys

import numpy as np
import pytest

from aimi.safety.base import Category, Severity
from aimi.safety.classifier import (
    LABELS,
    SEQUENCE_LENGTH,
    ClassifierFilter,
    LabelRule,
    ToxicityModel,
)

# The TensorFlow scores of toxic-comment-classifier 0.3.0 (shared/spec, llama-cpp-on-these-machines §9).
REFERENCE = {
    "Good morning my friend, I hope you're having a fantastic day!": (0.06, 0.00, 0.01, 0.00, 0.02, 0.00),
    "I will kill you, you stupid idiot!": (1.00, 0.28, 0.87, 0.09, 0.91, 0.14),
    "You are so dumb and stupid!": (0.99, 0.07, 0.62, 0.02, 0.87, 0.04),
    "I strongly disagree with the views of this political party.": (0.01, 0.00, 0.00, 0.00, 0.00, 0.00),
    "How do I bake a chocolate cake?": (0.15, 0.00, 0.05, 0.00, 0.08, 0.00),
}


@pytest.mark.parametrize("text", REFERENCE)
def test_numpy_scores_match_the_tensorflow_reference_to_two_decimals(
    toxicity_model: ToxicityModel, text: str
) -> None:
    scores = toxicity_model.scores(text)
    assert list(scores) == list(LABELS)
    assert [round(scores[label], 2) for label in LABELS] == pytest.approx(REFERENCE[text], abs=0.006)


def test_loading_the_model_does_not_import_tensorflow(toxicity_model: ToxicityModel) -> None:
    assert "tensorflow" not in sys.modules
    assert "keras" not in sys.modules
    assert "toxic_classifier" not in sys.modules


def test_a_short_text_is_one_window_padded_in_front(toxicity_model: ToxicityModel) -> None:
    windows = toxicity_model.windows([5, 6, 7])
    assert windows.shape == (1, SEQUENCE_LENGTH)
    assert windows[0, -3:].tolist() == [5, 6, 7]
    assert not windows[0, :-3].any()


def test_a_long_text_is_covered_by_overlapping_windows_to_its_end(toxicity_model: ToxicityModel) -> None:
    ids = list(range(1, 261))
    windows = toxicity_model.windows(ids)
    assert windows.shape[1] == SEQUENCE_LENGTH
    assert windows[0, 0] == 1
    assert windows[-1, -1] == 260
    assert set(np.unique(windows)) == set(ids)


def test_an_insult_anywhere_in_a_long_text_is_still_seen(toxicity_model: ToxicityModel) -> None:
    insult = "You are so dumb and stupid!"
    filler = "I went to the market and bought some bread. " * 60
    assert toxicity_model.scores(filler)["insult"] < 0.1
    # Benign words around it dilute the score (0.87 alone), but every window is looked at.
    for text in (filler + insult, insult + " " + filler, filler + insult + " " + filler):
        assert toxicity_model.scores(text)["insult"] > 0.5


def test_batched_windows_score_as_each_window_alone(toxicity_model: ToxicityModel) -> None:
    rng = np.random.default_rng(0)
    windows = rng.integers(1, 20_000, size=(3, SEQUENCE_LENGTH))
    together = toxicity_model.predict(windows)
    apart = np.concatenate([toxicity_model.predict(windows[i : i + 1]) for i in range(3)])
    assert together == pytest.approx(apart, abs=1e-5)


def test_a_label_rule_turns_scores_into_severities() -> None:
    rule = LabelRule("threat", Category.VIOLENCE, low=0.1, medium=0.3, high=None)
    assert [rule.severity(s) for s in (0.0, 0.1, 0.29, 0.3, 0.99)] == [
        Severity.SAFE,
        Severity.LOW,
        Severity.LOW,
        Severity.MEDIUM,
        Severity.MEDIUM,
    ]


def test_the_classifier_vouches_for_hate_and_violence_only(classifier: ClassifierFilter) -> None:
    result = classifier.evaluate("How do I bake a chocolate cake?")
    assert result.evaluated == {Category.HATE, Category.VIOLENCE}
    assert result.severities == {Category.HATE: Severity.SAFE, Category.VIOLENCE: Severity.SAFE}
    assert Category.SELF_HARM not in result.severities
    assert Category.SEXUAL not in result.severities


def test_swearing_raises_sexual_to_low_without_vouching_for_it(classifier: ClassifierFilter) -> None:
    result = classifier.evaluate("I will kill you, you stupid idiot!")
    assert result.severities[Category.SEXUAL] is Severity.LOW
    assert Category.SEXUAL not in result.evaluated


def test_a_clear_threat_is_medium_violence(classifier: ClassifierFilter) -> None:
    result = classifier.evaluate("I will kill you")
    assert result.severities[Category.VIOLENCE].at_least(Severity.MEDIUM)
    assert any("threat" in line for line in result.evidence)


def test_a_strong_insult_is_medium_hate(classifier: ClassifierFilter) -> None:
    assert classifier.evaluate("You are so dumb and stupid!").severities[Category.HATE] is Severity.MEDIUM


@pytest.mark.parametrize(
    "text",
    [
        "Chopping tomatoes and cutting them into cubes or wedges are great ways to practice "
        "your knife skills.",
        "How do I kill the process that is listening on port 8080?",
        "My son is gay and I want to support him. Any advice?",
        "What's the best time of day to shoot a photo of the mountains?",
    ],
)
def test_benign_texts_with_dangerous_words_stay_below_medium(classifier: ClassifierFilter, text: str) -> None:
    result = classifier.evaluate(text)
    assert all(not s.at_least(Severity.MEDIUM) for s in result.severities.values()), result


@pytest.mark.parametrize("text", ["", "   ", "\u200b\u200b", "!!!???", "日本語のテキスト", "a" * 10_000])
def test_texts_without_known_words_score_without_crashing(classifier: ClassifierFilter, text: str) -> None:
    result = classifier.evaluate(text)
    assert result.ok
    assert result.severities[Category.HATE] is Severity.SAFE


def test_text_over_the_word_limit_is_reported_as_not_evaluated(toxicity_model: ToxicityModel) -> None:
    result = ClassifierFilter(toxicity_model, max_words=100).evaluate("word " * 101)
    assert not result.ok
    assert result.evaluated == frozenset()
    assert "not evaluated" in (result.error or "")


@pytest.mark.anyio
async def test_a_megabyte_of_text_is_refused_quickly_not_scored(classifier: ClassifierFilter) -> None:
    result = await classifier.check("lorem ipsum dolor " * 60_000)
    assert not result.ok
