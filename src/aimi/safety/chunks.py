"""Long text cut into windows a sentence encoder can judge one by one.

A sentence vector is the mean of its tokens, so one harmful sentence inside a long benign message
is diluted by its neighbours: the semantic classifier scores windows and keeps the worst. A text
of at most `max_words` words is one window, itself; so is each line of a text of several lines
(the messages of a conversation arrive joined by line breaks, and a system prompt must not dilute
the user's message, nor lend it its words). A longer line is cut into its sentences, each one
window; a sentence longer than `max_words` is cut into pieces of `max_words` words that overlap
by half. Pieces shorter than `MIN_WORDS` (a fragment such as the cut-off start of a streamed
window, "ss, and then.", or short sentences, "and that is all.") are gathered until they reach
`MIN_WORDS` and then form a window of their own, or join the sentence after them, since a few
words alone are judged erratically; they never join the whole sentence before them, which would
dilute it: "I will kill you and that is all." followed by six "and that is all." in one window
scored violence 0.02 to 0.24 with heads that score the sentence alone 0.99 (round 5). Only what
is left at the end joins the sentence before it (at most `MIN_WORDS - 1` words: "Thanks!", the
cut end of a streamed window); a longer unfinished last sentence is a window of its own.

Measured on the dev set (docs/safety.md), with the same heads: windows of single sentences found
as much harm as runs of sentences packed up to 24, 32 or 48 words (recall 0.756 against 0.749 at
32 and 0.725 at 48), with the same false positives and fewer words to encode, because a packed
window dilutes a threat with the small talk around it. Whole sentences also repeat from one check
of a streamed completion to the next, so their scores are found in the classifier's cache.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

SENTENCE_END = re.compile(r"(?<=[.!?;\u0589\u061b\u061f\u06d4\u0964\u0965\u104b\u1362\u1367\u17d4\u3002])\s+")
"""Whitespace after a sentence's end: Latin stops, and those of scripts whose sentences end
otherwise (Armenian ։, Arabic ؛ ؟ and Urdu ۔, the danda । ॥ of Hindi, Bengali, Marathi and Nepali,
Burmese ။, Ethiopic ። ፧, Khmer ។, the ideographic 。). Without them a long Hindi message was one
"sentence", cut into overlapping pieces: twice the tokens to encode, and a harmful sentence diluted
by its neighbours. A stop ends a sentence only before whitespace, and a line is cut only when it
has more than `max_words` words between spaces: Chinese and Japanese put no space after 。, and
Chinese, Japanese, Burmese and Khmer write few spaces, so a long paragraph in them is still one
window."""
MAX_WORDS = 32
"""About 40 WordPiece tokens of English."""
MIN_WORDS = 6
CONTEXT_WORDS = 12
"""How much of the window before a completion's window is read with it (`in_context`)."""


def sentences(text: str) -> list[str]:
    return [s for s in (part.strip() for part in SENTENCE_END.split(text)) if s]


def _pieces(sentence: str, max_words: int) -> list[str]:
    words = sentence.split()
    if len(words) <= max_words:
        return [sentence]
    step = max(max_words // 2, 1)
    starts = [*range(0, len(words) - max_words, step), len(words) - max_words]
    return [" ".join(words[s : s + max_words]) for s in starts]


def windows(text: str, max_words: int = MAX_WORDS, *, context: bool = False) -> list[str]:
    """The windows of `text` (see the module docstring); `[text]` when it is one short line.
    With `context`, each window is joined with the one before it on its line (`in_context`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1 and context:  # an answer's lines (a list, paragraphs) are read on
        return windows(" ".join(lines), max_words, context=True)
    if len(lines) > 1:
        return list(dict.fromkeys(w for line in lines for w in windows(line, max_words)))
    if len(text.split()) <= max_words:
        return [text] if text.strip() else []
    out = _sentence_windows(text, max_words)
    if context and len(out) > 1 and _starts_mid_sentence(out[0]):
        out[:2] = [f"{out[0]} {out[1]}"]
    return list(dict.fromkeys(in_context(out) if context else out))


def any_window(text: str, keep: Callable[[str], bool]) -> bool:
    """Whether `keep` keeps any window of `text` (the text itself when it has none): whether a
    filter that judges only those windows judges `text` at all."""
    return any(keep(w) for w in windows(text) or [text])


def _starts_mid_sentence(window: str) -> bool:
    """A completion's window that starts with a lower-case letter or punctuation: the start of a
    streamed check, cut where the check before it was cut ("ted emergency shelter or a vehicle.",
    "n her."). Its whole sentence was judged in the check before; alone, its tail was judged
    erratically (violence 0.97 for "have a hazardous effect on the body."), so it is read with the
    window after it instead (`windows` with `context`)."""
    first = window.lstrip()[:1]
    return not (first.isupper() or first.isdigit() or first in "\"'“‘*#([-•")


def in_context(parts: list[str], words: int = CONTEXT_WORDS) -> list[str]:
    """Each window shorter than `words` words that follows a whole sentence of at least `words`
    words, preceded by the last `words` words of that sentence: a short sentence of an answer
    ("This doesn't mean they need to fix it alone.") is judged with what led to it, not alone.
    After a run of short sentences (which carries no more context than the window itself: "Sure,
    here is my answer." twice) a short window is judged alone, so a short threat after filler is
    not diluted by it. Longer windows carry their own context and
    are judged alone, so a harmful sentence of `words` words or more is not diluted at all, and a
    shorter one by at most `words` words. The windows repeat from one check of a streamed
    completion to the next, so the classifier's cache finds them."""
    out = parts[:1]
    for before, part in itertools.pairwise(parts):
        short = len(part.split()) < words <= len(before.split())
        out.append(f"{' '.join(before.split()[-words:])} {part}" if short else part)
    return out


def _sentence_windows(text: str, max_words: int) -> list[str]:
    out: list[str] = []
    pending = ""  # short pieces waiting for a sentence to join
    for piece in (p for s in sentences(text) for p in _pieces(s, max_words)):
        joined = f"{pending} {piece}".strip()
        if len(joined.split()) > max_words:
            out.append(pending)
            joined = piece
        if len(joined.split()) < MIN_WORDS:
            pending = joined
        else:
            out.append(joined)
            pending = ""
    # What is left at the end is under `MIN_WORDS` words ("Thanks!", or a streamed window cut
    # mid-sentence, "Then kill th"): alone, a few words are judged erratically, and a cut sentence
    # is judged whole in the next check. A longer unfinished sentence stays a window of its own
    # (joined to a harmful sentence before it, it diluted it).
    if pending and out and len(f"{out[-1]} {pending}".split()) <= max_words:
        out[-1] = f"{out[-1]} {pending}"
    elif pending:
        out.append(pending)
    return out
