"""Which windows of a text are not in English, so that a multilingual member of the semantic
ensemble judges them (and only them), and which member (`Reader`).

The identifier is langid.py's naive Bayes model over byte n-grams, as the numpy fork
`py3langid` ships it (BSD; its 4.6 MB model is a file of the package, nothing is downloaded).
A window is foreign when any of three signs holds:

- the identifier, restricted to the languages the multilingual encoder was trained on
  (`ENCODER_LANGUAGES`), is at least `FOREIGN_CONFIDENCE` sure (normalised) that it is in one
  of them other than English. Restricted, it calls slang such as "lol u r so dumb" English
  rather than Nigerian Pidgin;
- most of its letters are not Latin (`NON_LATIN_SHARE`): Hindi in Devanagari, Greek, Hebrew.
  The English encoder cannot read those scripts, and the restricted identifier, made to choose
  among its fifteen, is seldom sure which of them Hindi is ("pl" at 0.14);
- the identifier over all its 142 languages is at least `OTHER_LANGUAGE_CONFIDENCE` sure of a
  language the encoder does not know, written in Latin letters (Indonesian, Vietnamese, Zulu),
  which the restricted identifier calls Dutch at 0.44, in a window of at least
  `OTHER_LANGUAGE_MIN_WORDS` words. Nigerian Pidgin and "no language" (`ENGLISH_READABLE`:
  English slang, base64, ROT13) stay with the English encoder.

A foreign window goes to the multilingual encoder's member (`Reader.MULTILINGUAL`) unless the
identifier over all its languages is at least `OTHER_LANGUAGE_CONFIDENCE` sure that it is in a
language outside `ENCODER_LANGUAGES` (Swedish, Czech, Hindi, Greek, Swahili): those go to the
other-languages member (`Reader.OTHER`, multilingual-e5-small), which reads about a hundred
languages. Measured on the training corpus: of its 4,399 texts in the fifteen languages, none has a
window sent to the other-languages member; of its 1,387 in other languages, 1,053 have one
(docs/safety.md, The other-languages member).

Languages as close as Serbian, Croatian and Bosnian split the identifier's confidence among them
("Kako dublje, a da ne trebam šivanje?": Serbian 0.48, Croatian 0.29, Bosnian 0.20), so no one of
them reached `OTHER_LANGUAGE_CONFIDENCE` and such windows went to a reader that cannot read them.
Since round 63 the identifier's guesses over all its languages are summed within each group of
`CLOSE_LANGUAGES` before it decides that a window is surely in a language outside the fifteen.
Measured on the labelled files that name each text's language (4,791 texts), this sends 66 more
texts in other languages to the other-languages member (22 of them had been read as English), and
moves no text in English or the fifteen (docs/safety.md, The other-languages member).

About 0.1 ms a sentence (two for a foreign one), asked once per window of a prompt for all the
semantic readers (`routing.WindowRouter`); the verdicts of recent windows are kept, for the windows
a conversation sends again with each turn and the judgement of its untrusted part alone. Loading
reads the model once (under a second).
"""

from __future__ import annotations

import copy
import enum
import functools
import re
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
NON_LATIN_SHARE = 0.5
"""The share of a window's letters outside the Latin script at which it is foreign."""
OTHER_LANGUAGE_CONFIDENCE = 0.6
OTHER_LANGUAGE_MIN_WORDS = 4
"""Both chosen on the training corpus (docs/safety.md, The multilingual member): of its texts the
two signs above leave in English, round 49's 0.8 called 22 foreign (Vietnamese, Indonesian,
Zulu), and 0.6 over at least four words 30 more, all of them Indonesian, Malay, Zulu or
romanised Hindi; 0.5 adds English ("Why did Brutus stab Julius Caesar?", Latin at 0.54), and
shorter windows English slang ("u wanna fuk", Hausa at 0.78)."""
CLOSE_LANGUAGES = (("sr", "hr", "bs"), ("ms", "id"), ("no", "nn", "da"), ("cs", "sk"), ("bg", "mk"))
"""Groups of languages close enough that the identifier splits its confidence among them
(Serbo-Croatian, Malay and Indonesian, Norwegian and Danish, Czech and Slovak, Bulgarian and
Macedonian); none holds one of `ENCODER_LANGUAGES`."""
_GROUP_OF = {language: group[0] for group in CLOSE_LANGUAGES for language in group}
"""Each language of `CLOSE_LANGUAGES` to the first of its group."""
ENGLISH_READABLE = ("en", "pcm", "zxx")
"""The languages the English encoder reads: English, Nigerian Pidgin, and text in no language."""
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\u1e00-\u1eff]")
_LETTER = re.compile(r"[^\W\d_]")


class Reader(enum.Enum):
    """Which encoder reads a window."""

    ENGLISH = "english"
    MULTILINGUAL = "multilingual"
    OTHER = "other"


class LanguageGate:
    """Says whether a window is in a language other than English; see the module docstring."""

    def __init__(self, identifier: Any, everywhere: Any, confidence: float = FOREIGN_CONFIDENCE) -> None:
        self._identifier = identifier
        self._everywhere = everywhere
        self.confidence = confidence
        self._reader = functools.lru_cache(maxsize=CACHE_WINDOWS)(self._decide)

    @classmethod
    def load(cls, confidence: float = FOREIGN_CONFIDENCE) -> LanguageGate:
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        everywhere = LanguageIdentifier.from_modelpath(Path(MODEL_DIR) / MODEL_FILE, norm_probs=True)
        identifier = copy.copy(everywhere)  # one read of the model for both identifiers:
        identifier.set_languages(list(ENCODER_LANGUAGES))  # it rebinds the copy's tables, not the original's
        return cls(identifier, everywhere, confidence)

    def language(self, text: str) -> tuple[str, float]:
        """The most likely language of `text` among `ENCODER_LANGUAGES`, and its confidence."""
        language, confidence = self._identifier.classify(text)
        return str(language), float(confidence)

    def foreign(self, text: str) -> bool:
        """Whether `text` is, confidently, in a language other than English."""
        return self._reader(text) is not Reader.ENGLISH

    def english(self, text: str) -> bool:
        """Whether `text` is not `foreign`: English, or too short or mixed to tell."""
        return self._reader(text) is Reader.ENGLISH

    def reader(self, text: str) -> Reader:
        """Who reads `text`: the English encoder, the multilingual encoder, or (a foreign window
        the identifier over all its languages is at least `OTHER_LANGUAGE_CONFIDENCE` sure is in
        none of `ENCODER_LANGUAGES`) the reader of other languages."""
        return self._reader(text)

    def multilingual(self, text: str) -> bool:
        """Whether `text` is `foreign` in a language the multilingual encoder reads, or too
        uncertain to tell which."""
        return self._reader(text) is Reader.MULTILINGUAL

    def other_language(self, text: str) -> bool:
        """Whether `text` is `foreign` in a language the multilingual encoder was not trained on."""
        return self._reader(text) is Reader.OTHER

    def _decide(self, text: str) -> Reader:
        language, confidence = self.language(text)
        if (language != "en" and confidence >= self.confidence) or non_latin(text):
            return self._which(text)
        if len(text.split()) < OTHER_LANGUAGE_MIN_WORDS:
            return Reader.ENGLISH
        # The third sign: a window of enough words surely in a language the encoder does not know.
        return Reader.OTHER if self._which(text) is Reader.OTHER else Reader.ENGLISH

    def _which(self, text: str) -> Reader:
        """Which member reads a foreign window: the other-languages member when the identifier over
        all its languages is at least `OTHER_LANGUAGE_CONFIDENCE` sure of a language outside
        `ENCODER_LANGUAGES` (and `ENGLISH_READABLE`), else the multilingual member."""
        language, confidence = closest_group(self._everywhere.rank(text))
        if (
            language in ENCODER_LANGUAGES
            or language in ENGLISH_READABLE
            or confidence < OTHER_LANGUAGE_CONFIDENCE
        ):
            return Reader.MULTILINGUAL
        return Reader.OTHER


def closest_group(ranked: list[tuple[str, float]]) -> tuple[str, float]:
    """The most likely language of an identifier's `ranked` guesses with those of each group of
    `CLOSE_LANGUAGES` summed (the group named by its first language), and its confidence."""
    summed: dict[str, float] = {}
    for language, confidence in ranked:
        key = _GROUP_OF.get(language, language)
        summed[key] = summed.get(key, 0.0) + float(confidence)
    return max(summed.items(), key=lambda item: item[1])


def non_latin(text: str) -> bool:
    """Whether at least `NON_LATIN_SHARE` of the letters of `text` are not Latin."""
    letters = _LETTER.findall(text)
    if not letters:
        return False
    return sum(1 for letter in letters if not _LATIN.match(letter)) >= NON_LATIN_SHARE * len(letters)
