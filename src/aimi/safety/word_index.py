"""The vocabulary of toxic-comment-classifier, read once from its Keras tokenizer pickle.

The package ships its tokenizer as a pickle of `keras.src.legacy.preprocessing.text.Tokenizer`.
Unpickling runs whatever the pickle names, so it is read with a restricted unpickler that resolves
exactly four names: the Tokenizer (to a stub class with no behaviour, so Keras is never imported),
`collections.OrderedDict`, `collections.defaultdict` and `builtins.int`. Anything else stops the
load. What comes out is converted at once into a plain `Vocabulary` (a `dict[str, int]` trimmed to
the ids the model uses, and the tokenizer's settings), which is all that is kept: nothing is
unpickled at request time.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TOKENIZER_NAMES = {
    ("keras.src.legacy.preprocessing.text", "Tokenizer"),
    ("keras.preprocessing.text", "Tokenizer"),
    ("keras_preprocessing.text", "Tokenizer"),
}
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "int"): int,
}


class _TokenizerState:
    """Stands in for the Keras Tokenizer: receives its attributes and has no methods."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _TOKENIZER_NAMES:
            return _TokenizerState
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"the tokenizer pickle names {module}.{name}, which is not allowed")


@dataclass(frozen=True)
class Vocabulary:
    """How the Keras tokenizer turned text into ids: lower-case, filter characters become the split
    character, split, look each word up, drop unknown words and ids >= `num_words`."""

    word_index: dict[str, int]
    filters: str
    split: str
    lower: bool
    num_words: int
    _table: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_table", str.maketrans(dict.fromkeys(self.filters, self.split)))

    def ids(self, text: str) -> list[int]:
        if self.lower:
            text = text.lower()
        words = text.translate(self._table).split(self.split)
        lookup = self.word_index.get
        return [i for i in map(lookup, words) if i is not None]


def load_vocabulary(path: Path) -> Vocabulary:
    """Read the tokenizer pickle at `path` (see the module docstring for why this is safe)."""
    with path.open("rb") as handle:
        state = _RestrictedUnpickler(handle).load()
    if not isinstance(state, _TokenizerState):
        raise ValueError(f"{path} does not hold a Keras Tokenizer")
    attrs = vars(state)
    word_index, num_words = attrs.get("word_index"), attrs.get("num_words")
    if not isinstance(word_index, dict) or not isinstance(num_words, int) or num_words <= 0:
        raise ValueError(f"{path}: the tokenizer has no usable word_index/num_words")
    if attrs.get("char_level") or attrs.get("oov_token") is not None or attrs.get("analyzer") is not None:
        raise ValueError(f"{path}: character-level, OOV or custom-analyzer tokenizers are not supported")
    trimmed = {
        w: i for w, i in word_index.items() if isinstance(w, str) and isinstance(i, int) and i < num_words
    }
    return Vocabulary(
        word_index=trimmed,
        filters=str(attrs.get("filters", "")),
        split=str(attrs.get("split", " ")) or " ",
        lower=bool(attrs.get("lower", True)),
        num_words=num_words,
    )
