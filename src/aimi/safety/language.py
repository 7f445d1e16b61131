"""Which windows of a text are not in English, so that the multilingual member of the semantic
ensemble judges them (and only them).

The identifier is langid.py's naive Bayes model over byte n-grams, as the numpy fork
`py3langid` ships it (BSD; its 4.6 MB model is a file of the package, nothing is downloaded),
restricted to the languages the multilingual encoder was trained on (`ENCODER_LANGUAGES`):
a window in another language is still called one of those, and slang such as "lol u r so dumb"
is called English rather than Nigerian Pidgin. A window is foreign when the identifier's
normalised confidence that it is in a language other than English reaches
`FOREIGN_CONFIDENCE`. About 0.1 ms a sentence, asked once per window (the verdicts of recent
windows are kept: the semantic classifier and the multilingual member both ask about each window
of a prompt); loading reads the model once (about a second).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

ENCODER_LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")
"""The languages of Universal Sentence Encoder multilingual v3 (`encoders.MultilingualEncoder`;
its sixteenth, traditional Chinese, is `zh` here too)."""
CACHE_WINDOWS = 2048
"""How many windows' verdicts are kept (as many as the semantic classifier keeps scores for)."""
FOREIGN_CONFIDENCE = 0.7
"""Chosen on the training corpus (docs/safety.md, "Round 31"): of its 17,800 English texts, 108
have a window called foreign at 0.7 (nearly all quote another language: "Translate this German
letter ..."), against 127 at 0.5; of c28's 1,784 translations, 8 have none, against 26 at 0.9."""


class LanguageGate:
    """Says whether a window is in a language other than English; see the module docstring."""

    def __init__(self, identifier: Any, confidence: float = FOREIGN_CONFIDENCE) -> None:
        self._identifier = identifier
        self.confidence = confidence
        self._foreign = functools.lru_cache(maxsize=CACHE_WINDOWS)(self._decide)

    @classmethod
    def load(cls, confidence: float = FOREIGN_CONFIDENCE) -> LanguageGate:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        identifier = LanguageIdentifier.from_modelpath(Path(MODEL_DIR) / MODEL_FILE, norm_probs=True)
        identifier.set_languages(list(ENCODER_LANGUAGES))
        return cls(identifier, confidence)

    def language(self, text: str) -> tuple[str, float]:
        """The most likely language of `text` among `ENCODER_LANGUAGES`, and its confidence."""
        language, confidence = self._identifier.classify(text)
        return str(language), float(confidence)

    def foreign(self, text: str) -> bool:
        """Whether `text` is, confidently, in a language other than English."""
        return self._foreign(text)

    def english(self, text: str) -> bool:
        """Whether `text` is not `foreign`: English, or too short or mixed to tell."""
        return not self._foreign(text)

    def _decide(self, text: str) -> bool:
        language, confidence = self.language(text)
        return language != "en" and confidence >= self.confidence
