"""The toxic-comment-classifier BiLSTM, run with numpy, as a safety filter.

The PyPI package `toxic-comment-classifier` ships a Keras model trained on the Jigsaw toxic comment
labels (toxic, severe_toxic, obscene, threat, insult, identity_hate) as `model/model.weights.h5`
and `model/tokenizer.pickle`. Its own code needs TensorFlow; aimi reads the weights with h5py and
runs the same network with numpy (it is installed with `--no-deps`, and never imported):

    ids (last 100 words, zero-padded in front) → Embedding 20000×50
    → Bidirectional LSTM(50), both directions' hidden states → GlobalMaxPool over time (100)
    → Dense(50, relu) → Dense(6, sigmoid)

This reproduces the TensorFlow scores to two decimals. Text longer than 100 words is scored in
windows of 100 words every 50 words (each label's score is its maximum over the windows), so
nothing past the first 100 words goes unseen, up to `max_words`.

How the labels become severities is `LabelRule`s; the defaults and the reasons for them are in
`DEFAULT_RULES` and docs/safety.md.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aimi.safety.base import Category, FilterResult, Severity, over_limit
from aimi.safety.blas import OneBlasThread
from aimi.safety.normalization import normalize
from aimi.safety.word_index import Vocabulary, load_vocabulary

LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
SEQUENCE_LENGTH = 100
STRIDE = 50
_UNITS = 50
_BATCH = 64

Array = npt.NDArray[np.float32]


def package_model_dir() -> Path:
    """Where the installed toxic-comment-classifier keeps its model (found without importing it,
    since its `__init__` imports TensorFlow)."""
    spec = importlib.util.find_spec("toxic_classifier")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "toxic-comment-classifier is not installed: pip install --no-deps toxic-comment-classifier"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sigmoid(x: Array) -> Array:
    return np.tanh(x * 0.5) * 0.5 + 0.5


class ToxicityModel:
    """The BiLSTM's weights and vocabulary, and its forward pass. Safe to share between threads."""

    def __init__(self, weights: dict[str, Array], vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary
        # The forward pass runs on one BLAS thread, one call at a time (`blas.OneBlasThread`).
        self._one_blas_thread = OneBlasThread()
        # Both directions run as one LSTM over 2×50 units. Each word's input projection (embedding
        # × kernel + bias) is looked up from a table made once (20000×400 floats, 32 MB), and the
        # recurrent weights form one block-diagonal matrix, so a time step is one small matmul.
        embedding = weights["embedding"]
        with self._one_blas_thread():
            self.projection = np.concatenate(
                [
                    embedding @ weights["forward_kernel"] + weights["forward_bias"],
                    embedding @ weights["backward_kernel"] + weights["backward_bias"],
                ],
                axis=-1,
            )
        recurrent = np.zeros((2 * _UNITS, 8 * _UNITS), np.float32)
        recurrent[:_UNITS, : 4 * _UNITS] = weights["forward_recurrent"]
        recurrent[_UNITS:, 4 * _UNITS :] = weights["backward_recurrent"]
        self.recurrent = recurrent
        self.dense = (weights["dense_kernel"], weights["dense_bias"])
        self.output = (weights["output_kernel"], weights["output_bias"])

    @classmethod
    def load(cls, directory: Path | None = None) -> ToxicityModel:
        """Read `model.weights.h5` and `tokenizer.pickle` (from the installed package by default)."""
        import h5py  # only the loader needs it

        directory = directory if directory is not None else package_model_dir()
        names = {
            "embedding": "embedding/vars/0",
            "forward_kernel": "bidirectional/forward_layer/cell/vars/0",
            "forward_recurrent": "bidirectional/forward_layer/cell/vars/1",
            "forward_bias": "bidirectional/forward_layer/cell/vars/2",
            "backward_kernel": "bidirectional/backward_layer/cell/vars/0",
            "backward_recurrent": "bidirectional/backward_layer/cell/vars/1",
            "backward_bias": "bidirectional/backward_layer/cell/vars/2",
            "dense_kernel": "dense/vars/0",
            "dense_bias": "dense/vars/1",
            "output_kernel": "dense_1/vars/0",
            "output_bias": "dense_1/vars/1",
        }
        with h5py.File(directory / "model.weights.h5", "r") as h5:
            weights = {key: np.asarray(h5["layers/" + path], dtype=np.float32) for key, path in names.items()}
        return cls(weights, load_vocabulary(directory / "tokenizer.pickle"))

    def token_ids(self, text: str) -> list[int]:
        # Every kind of whitespace splits words, as a plain space does for the Keras tokenizer.
        return self.vocabulary.ids(" ".join(normalize(text).split()))

    def predict(self, windows: npt.NDArray[np.int64]) -> Array:
        """Label probabilities for a batch of id windows of shape (n, 100): shape (n, 6)."""
        with self._one_blas_thread():
            return self._forward(windows)

    def _forward(self, windows: npt.NDArray[np.int64]) -> Array:
        n, steps = windows.shape
        projected = self.projection[windows]
        # The backward direction reads the window from its end.
        projected[:, :, 4 * _UNITS :] = projected[:, ::-1, 4 * _UNITS :]
        h = np.zeros((n, 2 * _UNITS), np.float32)
        c = np.zeros((n, 2, _UNITS), np.float32)
        pooled = np.full((n, 2 * _UNITS), -np.inf, np.float32)
        for t in range(steps):
            z = (projected[:, t] + h @ self.recurrent).reshape(n, 2, 4, _UNITS)  # gates i, f, g, o
            gates = _sigmoid(z)
            c = gates[:, :, 1] * c + gates[:, :, 0] * np.tanh(z[:, :, 2])
            h = (gates[:, :, 3] * np.tanh(c)).reshape(n, 2 * _UNITS)
            np.maximum(pooled, h, out=pooled)
        hidden = np.maximum(pooled @ self.dense[0] + self.dense[1], 0.0)
        return _sigmoid(hidden @ self.output[0] + self.output[1])

    def windows(self, ids: Sequence[int]) -> npt.NDArray[np.int64]:
        """Windows of 100 ids every 50 ids; a short text is one window, zero-padded in front."""
        if len(ids) <= SEQUENCE_LENGTH:
            padded = [0] * (SEQUENCE_LENGTH - len(ids)) + list(ids)
            return np.asarray([padded], dtype=np.int64)
        starts = [*range(0, len(ids) - SEQUENCE_LENGTH, STRIDE), len(ids) - SEQUENCE_LENGTH]
        return np.asarray([ids[s : s + SEQUENCE_LENGTH] for s in starts], dtype=np.int64)

    def scores(self, text: str) -> dict[str, float]:
        """Each label's probability: its maximum over the text's windows."""
        windows = self.windows(self.token_ids(text))
        best = np.zeros(len(LABELS), np.float32)
        for start in range(0, len(windows), _BATCH):
            best = np.maximum(best, self.predict(windows[start : start + _BATCH]).max(axis=0))
        return {label: round(float(score), 4) for label, score in zip(LABELS, best, strict=True)}


@dataclass(frozen=True, slots=True)
class LabelRule:
    """A Jigsaw label's score turned into a severity of one category (None: never that level)."""

    label: str
    category: Category
    low: float | None
    medium: float | None
    high: float | None

    def severity(self, score: float) -> Severity:
        for level, threshold in ((Severity.HIGH, self.high), (Severity.MEDIUM, self.medium)):
            if threshold is not None and score >= threshold:
                return level
        return Severity.LOW if self.low is not None and score >= self.low else Severity.SAFE


DEFAULT_RULES: tuple[LabelRule, ...] = (
    # Hate: attacks on identity groups; the label means exactly that. Its medium threshold sits above
    # the scores it gives benign mentions of identity groups ("My son is gay", 0.37).
    LabelRule("identity_hate", Category.HATE, low=0.20, medium=0.40, high=0.70),
    # Azure counts harassment and bullying as hate. A personal insult reaches medium only when the
    # model is sure (a strong insult), and never high on its own.
    LabelRule("insult", Category.HATE, low=0.50, medium=0.75, high=None),
    # Violence: the threat label. Threats were rare in the training data (0.3 %), so the model's
    # threat scores are compressed: "I will kill you" gets 0.18, while benign texts with violent
    # words ("kill the process", "kill weeds") stay under 0.08.
    LabelRule("threat", Category.VIOLENCE, low=0.08, medium=0.15, high=0.50),
    # Sexual: `obscene` is mostly swearing, which Azure's sexual category counts only as vulgar
    # (low). It can raise sexual to low but cannot vouch that text is free of sexual content.
    LabelRule("obscene", Category.SEXUAL, low=0.60, medium=None, high=None),
)
"""`toxic` and `severe_toxic` (general rudeness) map to no category; `self_harm` has no label."""

VOUCHED = frozenset({Category.HATE, Category.VIOLENCE})
"""The categories the classifier evaluates (can call `safe`); the others it can only raise."""


class ClassifierFilter:
    """The toxicity classifier as a SafetyFilter: hate and violence, and a weak sexual signal."""

    name = "toxicity-classifier"

    def __init__(
        self,
        model: ToxicityModel,
        *,
        rules: Sequence[LabelRule] = DEFAULT_RULES,
        categories: frozenset[Category] = VOUCHED,
        max_words: int = 20_000,
    ) -> None:
        self.model = model
        self.rules = tuple(rules)
        self.categories = categories
        self.max_words = max_words

    @classmethod
    def load(cls, directory: Path | None = None) -> ClassifierFilter:
        return cls(ToxicityModel.load(directory))

    def evaluate(self, text: str) -> FilterResult:
        """The synchronous check (CPU-bound: a few milliseconds per 100 words)."""
        words = len(text.split())
        if words > self.max_words:
            return FilterResult(filter=self.name, error=over_limit(words, self.max_words, "words"))
        scores = self.model.scores(text)
        found: dict[Category, Severity] = {}
        evidence = []
        for rule in self.rules:
            level = rule.severity(scores[rule.label])
            if level.rank > found.get(rule.category, Severity.SAFE).rank:
                found[rule.category] = level
            if level is not Severity.SAFE:
                evidence.append(f"{rule.label}={scores[rule.label]:.2f} → {rule.category} {level}")
        severities = {c: found.get(c, Severity.SAFE) for c in self.categories}
        severities.update(
            {c: s for c, s in found.items() if c not in self.categories and s is not Severity.SAFE}
        )
        return FilterResult(
            filter=self.name,
            evaluated=self.categories,
            severities=severities,
            scores=scores,
            evidence=tuple(evidence),
        )

    async def check(self, text: str) -> FilterResult:
        return await asyncio.to_thread(self.evaluate, text)
