"""Text normalisation before matching, so invisible characters and look-alike letters hide nothing.

Four steps, in this order:

1. Unicode NFKC, which folds compatibility forms: fullwidth `ｋｉｌｌ`, ligatures, circled and
   mathematical letters (`𝐤𝐢𝐥𝐥`) become plain letters, and a no-break space becomes a space.
2. Invisible characters are removed: zero-width spaces and joiners, soft hyphens, word joiners,
   bidirectional controls, byte-order marks, variation selectors, tag characters and Hangul fillers.
   (`k\u200bill` reads as `kill` on screen, so it must match as `kill`.)
3. Cyrillic and Greek letters drawn like Latin ones become their Latin twins in a word that mixes
   them with Latin letters (`kіll` with a Cyrillic `і`), and, in text that is mostly Latin, also in
   a word made only of look-alikes (`соск`). Russian or Greek text is otherwise left alone, so it
   is not turned into accidental English.
4. Leetspeak inside a word is undone: where digits or symbols drawn like letters stand between
   letters (`k1ll`, `mys3lf`, `f@gg0t`, `ch!nks`), the whole word reads as letters (`kill`, `myself`,
   `faggot`, `chinks`). Numbers, words that only begin or end in digits (`mp3`, `ipv4`, `3d`),
   e-mail addresses, links, paths, cell references (`Prices!A:B`), assignments, base64 and tokens
   longer than `LEET_LONGEST` (hashes) are left alone.

Case is kept; matchers compare case-insensitively themselves.
"""

from __future__ import annotations

import re
import unicodedata

_INVISIBLE = re.compile(
    "["
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff\U0001d173-\U0001d17a"
    "]+"
)

# Cyrillic and Greek letters drawn like Latin ones (a subset of Unicode's confusables list).
_LOOKALIKES = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "ɡ": "g", "ɩ": "i",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "У": "Y", "Х": "X", "І": "I", "Ј": "J", "Ѕ": "S",
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
_FOLD = str.maketrans(_LOOKALIKES)
_WORD_WITH_LOOKALIKE = re.compile(r"\w*[" + "".join(_LOOKALIKES) + r"]\w*")
_LATIN = re.compile(r"[A-Za-z]")
_LATIN_WORD = re.compile(r"\b[A-Za-z]+\b")
_OTHER_WORD = re.compile(r"\b\w*[^\W\d_A-Za-z]\w*\b")


# Digits and symbols drawn like letters, as leetspeak writes them.
_LEET_LETTERS = {
    "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "l",
}  # fmt: skip
_LEET = str.maketrans(_LEET_LETTERS)
_LEETS = re.escape("".join(_LEET_LETTERS))
LEET_LONGEST = 20
_CHUNK = re.compile(r"\S+")
_NOT_PROSE = re.compile(r":\w|://|@[^@]*\.\w|[/\\=]")
_LEET_WORD = re.compile(rf"[A-Za-z][A-Za-z0-9{_LEETS}]*[A-Za-z0-9]")
_LEET_INSIDE = re.compile(rf"[A-Za-z][{_LEETS}]+(?=[A-Za-z])")
_MAYBE_LEET = re.compile(rf"[A-Za-z][{_LEETS}]")


def _unleet_word(match: re.Match[str]) -> str:
    word = match.group()
    return word.translate(_LEET) if _LEET_INSIDE.search(word) else word


def _unleet_chunk(match: re.Match[str]) -> str:
    chunk = match.group()
    if len(chunk) > LEET_LONGEST or _NOT_PROSE.search(chunk):
        return chunk
    return _LEET_WORD.sub(_unleet_word, chunk)


def unleet(text: str) -> str:
    """`text` with leetspeak inside words undone (step 4 of the module docstring)."""
    return _CHUNK.sub(_unleet_chunk, text) if _MAYBE_LEET.search(text) else text


def _fold_mixed(match: re.Match[str]) -> str:
    word = match.group()
    return word.translate(_FOLD) if _LATIN.search(word) else word


def _fold_all(match: re.Match[str]) -> str:
    folded = match.group().translate(_FOLD)
    return folded if folded.isascii() else _fold_mixed(match)


def normalize(text: str) -> str:
    """`text` as matchers should see it (see the module docstring)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        text = _INVISIBLE.sub("", text)
        mostly_latin = len(_LATIN_WORD.findall(text)) > len(_OTHER_WORD.findall(text))
        text = _WORD_WITH_LOOKALIKE.sub(_fold_all if mostly_latin else _fold_mixed, text)
    return unleet(text)
