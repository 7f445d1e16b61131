"""Long text cut into windows a sentence encoder can judge one by one.

A sentence vector is the mean of its tokens, so one harmful sentence inside a long benign message
is diluted by its neighbours: the semantic classifier scores windows and keeps the worst. A text
of at most `max_words` words is one window, itself; so is each line of a text of several lines
(the messages of a conversation arrive joined by line breaks, and a system prompt must not dilute
the user's message, nor lend it its words). A longer line is cut into its sentences, each one
window; a sentence longer than `max_words` is cut into pieces of `max_words` words that overlap
by half, and a piece shorter than `MIN_WORDS` (a fragment such as the cut-off start or end of a
streamed window, "Then kill th") joins the sentence before it, or after it, as long as the window
stays within `max_words`, since a few words alone are judged erratically; so does an unfinished
last sentence.

Measured on the dev set (docs/safety.md), with the same heads: windows of single sentences found
as much harm as runs of sentences packed up to 24, 32 or 48 words (recall 0.756 against 0.749 at
32 and 0.725 at 48), with the same false positives and fewer words to encode, because a packed
window dilutes a threat with the small talk around it. Whole sentences also repeat from one check
of a streamed completion to the next, so their scores are found in the classifier's cache.
"""

from __future__ import annotations

import itertools
import re

SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
MAX_WORDS = 32
"""About 40 WordPiece tokens of English."""
MIN_WORDS = 6
CONTEXT_WORDS = 12
"""How much of the window before a completion's window is read with it (`in_context`)."""
FINISHED = re.compile(r"[.!?;:)\]\"'»]\s*$")


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


def _starts_mid_sentence(window: str) -> bool:
    """A completion's window that starts with a lower-case letter or punctuation: the start of a
    streamed check, cut where the check before it was cut ("ted emergency shelter or a vehicle.",
    "n her."). Its whole sentence was judged in the check before; alone, its tail was judged
    erratically (violence 0.97 for "have a hazardous effect on the body."), so it is read with the
    window after it instead (`windows` with `context`)."""
    first = window.lstrip()[:1]
    return not (first.isupper() or first.isdigit() or first in "\"'“‘*#([-•")


def in_context(parts: list[str], words: int = CONTEXT_WORDS) -> list[str]:
    """Each window shorter than `words` words, after the first, preceded by the last `words` words
    of the one before it: a short sentence of an answer ("This doesn't mean they need to fix it
    alone.") is judged with what led to it, not alone. Longer windows carry their own context and
    are judged alone, so a harmful sentence of `words` words or more is not diluted at all, and a
    shorter one by at most `words` words. The windows repeat from one check of a streamed
    completion to the next, so the classifier's cache finds them."""
    out = parts[:1]
    for before, part in itertools.pairwise(parts):
        short = len(part.split()) < words
        out.append(f"{' '.join(before.split()[-words:])} {part}" if short else part)
    return out


def _sentence_windows(text: str, max_words: int) -> list[str]:
    out: list[str] = []
    pending = ""  # short pieces waiting for a sentence to join
    for piece in (p for s in sentences(text) for p in _pieces(s, max_words)):
        size = len(piece.split())
        if size < MIN_WORDS and out and not pending and len(out[-1].split()) + size <= max_words:
            out[-1] = f"{out[-1]} {piece}"
            continue
        joined = f"{pending} {piece}".strip()
        if len(joined.split()) > max_words:
            out.append(pending)
            joined = piece
        if len(joined.split()) < MIN_WORDS:
            pending = joined
        else:
            out.append(joined)
            pending = ""
    if pending:
        out.append(pending)
    # An unfinished last sentence (a streamed window cut mid-sentence) joins the one before it:
    # alone, half a sentence is judged erratically, and it is judged whole in the next check.
    if len(out) > 1 and not FINISHED.search(out[-1]) and len(f"{out[-2]} {out[-1]}".split()) <= max_words:
        out[-2:] = [f"{out[-2]} {out[-1]}"]
    return out
