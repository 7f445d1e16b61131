"""The semantic classifier: a sentence encoder and small trained heads, as a SafetyFilter.

It judges the meaning of text rather than only its words, so it vouches for all four categories
and for jailbreak attempts. Long text is cut into windows (`chunks.windows`: its sentences, at
most about 40 tokens each), each window is encoded once and scored by one calibrated head per
label (`heads.Heads`, which read the window's word pieces too, `pieces.py`, and for prompts its
nearest training texts, `exemplars.py`), and each label keeps
its worst window, so one harmful sentence inside a long benign message is found; for prompts, that
worst window is discounted for how many windows the text has (`heads.Heads.penalized`), since a
long benign text gives one of its sentences, read alone, more chances to look harmful. A label's
probability becomes a severity at the thresholds shipped with the heads (chosen on the dev split;
see docs/safety.md). With the multilingual members beside it, a prompt is cut and the language of
each window told once for all three readers (`routing.WindowRouter`, `MultilingualMember.router`),
and each judges only the windows in the languages it reads.

Scores of recent windows are kept (a small LRU), because a streamed completion is checked in
overlapping windows (`window.OutputWindow`) whose sentences repeat from one check to the next:
only the new text is encoded. The model loads once per process (`SemanticModel.load`, a few
seconds, in a worker thread at start-up) and is shared by every deployment's filters; completions
are judged by heads of their own on the same encoder (`beside`, `heads.OUTPUT_HEADS_FILE`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from aimi.safety.base import Category, FilterResult, Severity, over_limit
from aimi.safety.blas import OneBlasThread
from aimi.safety.encoders import SentenceEncoder, named_encoder
from aimi.safety.heads import HEADS_FILE, MULTILINGUAL_HEADS_FILE, OTHER_LANGUAGES_HEADS_FILE, Heads
from aimi.safety.language import LanguageGate, Reader
from aimi.safety.pieces import WordPieces
from aimi.safety.routing import MAX_WORDS, WindowRouter, cut

CACHE_WINDOWS = 2048
# A prompt's windows are encoded two at a time (the caller and one helper thread): on an idle 2-core
# machine that took a 100-word prompt from about 25 to 14-18 ms p50, and it was no slower with the
# other core busy (docs/safety.md). More would only wait for a core on the 2-core target.
ENCODER_WORKERS = 2
JAILBREAK = "jailbreak"


class SemanticModel:
    """An encoder and the heads trained on its vectors; scores text window by window."""

    def __init__(self, encoder: SentenceEncoder, heads: Heads, *, cache: int = CACHE_WINDOWS) -> None:
        if heads.encoder != encoder.name:
            raise ValueError(f"the heads were trained on {heads.encoder!r}, not on {encoder.name!r}")
        self.encoder = encoder
        self.heads = heads
        self._cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._size = cache
        self._lock = threading.Lock()
        self._one_blas_thread = OneBlasThread()
        self._pieces = WordPieces() if heads.reads_pieces else None

    @classmethod
    def load(cls, heads_file: Path = HEADS_FILE) -> SemanticModel:
        """The heads in `heads_file` (by default the prompts' that ship with aimi) and the encoder
        they were trained on, from its packages (all-MiniLM-L6-v2 cut to the heads' layers, or the
        multilingual encoder)."""
        heads = Heads.load(heads_file)
        return cls(named_encoder(heads.encoder, workers=ENCODER_WORKERS), heads)

    def beside(self, heads: Heads) -> SemanticModel:
        """Other heads on this model's encoder (the completions' beside the prompts'): one encoder
        in memory, and a cache of scores of their own."""
        return SemanticModel(self.encoder, heads, cache=self._size)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def window_probabilities(self, parts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Calibrated probabilities per window and label, shape (len(parts), labels)."""
        out = np.zeros((len(parts), len(self.heads.labels)), np.float32)
        with self._lock:
            known = {i: self._cache.get(p) for i, p in enumerate(parts)}
        missing = sorted({p for i, p in enumerate(parts) if known[i] is None})
        vectors = self.encoder.encode(missing)
        pieces = self._pieces.ids(missing) if self._pieces is not None else None
        with self._one_blas_thread():  # a BLAS pool left spinning would take the encoder's second core
            probabilities = self.heads.probabilities(vectors, pieces)
        fresh = dict(zip(missing, probabilities, strict=True))
        with self._lock:
            for i, part in enumerate(parts):
                cached = known[i]
                out[i] = cached if cached is not None else fresh[part]
                self._cache[part] = out[i]
                self._cache.move_to_end(part)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return out

    def scores(
        self,
        text: str,
        *,
        context: bool = False,
        select: Callable[[str], bool] | None = None,
        penalize: bool = True,
    ) -> dict[str, float]:
        """`worst` of the windows of `text` (`routing.cut`); with `context`, the windows are pairs
        of consecutive sentences (`chunks.in_context`); with `select`, only the windows it keeps
        are judged."""
        parts = cut(text, context=context)
        if select is not None:
            parts = [part for part in parts if select(part)]
        return self.worst(parts, penalize=penalize)

    def worst(self, parts: Sequence[str], *, penalize: bool = True) -> dict[str, float]:
        """Each label's probability in its worst window of `parts` (0 for none), discounted for
        the number of distinct windows when `penalize` (`heads.Heads.penalized`; heads without a
        `window_penalty` are not discounted)."""
        if not parts:
            return dict.fromkeys(self.heads.labels, 0.0)
        worst = self.window_probabilities(parts).max(axis=0)
        if penalize:
            worst = self.heads.penalized(worst, len(set(parts)))
        return {label: round(float(p), 4) for label, p in zip(self.heads.labels, worst, strict=True)}


class SemanticFilter:
    """The semantic classifier as a SafetyFilter: all four categories, and jailbreak on prompts."""

    def __init__(
        self,
        model: SemanticModel,
        *,
        jailbreak: bool = True,
        context: bool = False,
        completions: bool = False,
        select: Callable[[str], bool] | None = None,
        router: WindowRouter | None = None,
        readers: Collection[Reader] = (Reader.ENGLISH,),
        name: str = "semantic-classifier",
        max_words: int = MAX_WORDS,
    ) -> None:
        """`context`: judge each short sentence after the end of the one before it (for
        completions: an answer's short sentences read alone were judged without what led to them);
        `completions`: severities at the heads' thresholds for completions, chosen on sampled
        answers of the embedded model (docs/safety.md); `select`: judge only the windows it keeps,
        and find nothing in a text where it keeps none; `router`: judge only the windows it routes
        to `readers` (the semantic ensemble's readers of a prompt share one router,
        `MultilingualMember.router`, so a prompt is cut and its language tested once for all)."""
        if router is not None and (select is not None or context):
            raise ValueError("a routed filter judges the windows its router cuts: no select, no context")
        if router is not None and max_words > router.max_words:
            raise ValueError(f"the router cuts prompts of at most {router.max_words} words, not {max_words}")
        self.name = name
        self.model = model
        self.select = select
        self.router = router
        self.readers = frozenset(readers)
        self.jailbreak = jailbreak
        self.context = context
        self.completions = completions
        self.max_words = max_words
        self.categories = frozenset(Category(label) for label in model.heads.labels if label != JAILBREAK)

    def evaluate(self, text: str) -> FilterResult:
        """The synchronous check (CPU-bound: about a millisecond per ten tokens it has not seen)."""
        words = len(text.split())
        if words > self.max_words:
            return self._over_limit(words)
        if self.router is not None:
            return self._judged(self.router.route(text).of(self.readers))
        # Completions are not discounted: their thresholds were chosen on undiscounted scores.
        scores = self.model.scores(
            text, context=self.context, select=self.select, penalize=not self.completions
        )
        return self._result(scores)

    async def check(self, text: str) -> FilterResult:
        if self.router is None:
            return await asyncio.to_thread(self.evaluate, text)
        routing = await self.router.routing(text)
        if routing.words > self.max_words:
            return self._over_limit(routing.words)
        parts = routing.of(self.readers)
        if not parts:  # nothing to encode: answered here, without a thread hop
            return self._judged(parts)
        return await asyncio.to_thread(self._judged, parts)

    def _judged(self, parts: Sequence[str]) -> FilterResult:
        return self._result(self.model.worst(parts, penalize=not self.completions))

    def _over_limit(self, words: int) -> FilterResult:
        return FilterResult(filter=self.name, error=over_limit(words, self.max_words, "words"))

    def _result(self, scores: dict[str, float]) -> FilterResult:
        heads = self.model.heads
        severities: dict[Category, Severity] = {}
        evidence = []
        jailbreak: bool | None = None
        for index, label in enumerate(heads.labels):
            level = heads.severity(index, scores[label], output=self.completions)
            if label == JAILBREAK:
                if self.jailbreak:
                    jailbreak = level.at_least(Severity.MEDIUM)
                    if jailbreak:
                        evidence.append(f"jailbreak p={scores[label]:.2f}")
                continue
            severities[Category(label)] = level
            if level is not Severity.SAFE:
                evidence.append(f"{label} p={scores[label]:.2f} → {level}")
        if not self.jailbreak:
            scores = {k: v for k, v in scores.items() if k != JAILBREAK}
        return FilterResult(
            filter=self.name,
            evaluated=self.categories,
            severities=severities,
            jailbreak=jailbreak,
            scores=scores,
            evidence=tuple(evidence),
        )


@dataclass(frozen=True)
class MultilingualMember:
    """The multilingual member of the semantic ensemble, for prompts: heads of its own
    (`MULTILINGUAL_HEADS_FILE`) on the multilingual encoder, judging the windows the language gate
    finds not in English (since round 55, with the other-languages member beside it, only those in
    its fifteen languages: `filter(others=True)`, `others_filter`), while the semantic classifier
    judges the rest (`english_filter`). Measured on
    dev (docs/safety.md, "Round 31"): MiniLM's heads read other languages as noise, block about
    0.4 of their harm and flagged 7 of their 90 look-alikes; the member blocks 0.85 and flagged
    none. The filters it makes share its `router`, which cuts a prompt and asks the gate about
    each window once for all of them: an English prompt costs the member nothing."""

    model: SemanticModel
    gate: LanguageGate
    router: WindowRouter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "router", WindowRouter(self.gate))

    @classmethod
    def load(cls, heads_file: Path = MULTILINGUAL_HEADS_FILE) -> MultilingualMember:
        return cls(SemanticModel.load(heads_file), LanguageGate.load())

    def english(self, window: str) -> bool:
        """Whether the semantic classifier, not the member, judges `window`."""
        return self.gate.english(window)

    def english_filter(self, model: SemanticModel) -> SemanticFilter:
        """The semantic classifier's filter beside the member: `model` (MiniLM and the prompts'
        heads) judging the windows in English."""
        return SemanticFilter(model, router=self.router, readers=(Reader.ENGLISH,))

    def filter(self, *, others: bool = False) -> SemanticFilter:
        """The member's filter: every window not in English, or with `others` (the other-languages
        member judges the windows in languages the multilingual encoder does not read) the windows
        in its fifteen languages."""
        readers = (Reader.MULTILINGUAL,) if others else (Reader.MULTILINGUAL, Reader.OTHER)
        return SemanticFilter(self.model, router=self.router, readers=readers, name="semantic-multilingual")

    def others_filter(self, model: SemanticModel) -> SemanticFilter:
        """The other-languages member's filter: `model` (multilingual-e5-small and its heads,
        `OTHER_LANGUAGES_HEADS_FILE`) judging the windows in languages the multilingual encoder
        does not read (`language.Reader.OTHER`). Measured in docs/safety.md (The other-languages
        member)."""
        return SemanticFilter(
            model, router=self.router, readers=(Reader.OTHER,), name="semantic-other-languages"
        )


def load_other_languages() -> SemanticModel:
    """The other-languages member's model: its heads and multilingual-e5-small."""
    return SemanticModel.load(OTHER_LANGUAGES_HEADS_FILE)
