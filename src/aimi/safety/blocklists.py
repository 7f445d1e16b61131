"""Custom blocklists: exact terms and regular expressions, case-insensitive and word-bounded.

A deployment names its lists; a match reports the list's name and the terms (as written in the
list) that were found, which is what Azure's `custom_blocklists` result shows. Text is normalised
first (`normalization.normalize`), so `k\u200bill`, `ｋｉｌｌ` and a Cyrillic `kіll` all match the
term `kill`.

Terms match whole words: `ass` does not match `class`. A space inside a term matches any run of
whitespace. A regular expression is also wrapped in word boundaries and matched case-insensitively;
patterns are written by operators, not by users, and Python's `re` has no time limit, so they should
stay simple (no nested repetition).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from aimi.errors import InvalidRequest
from aimi.safety.base import INLINE_CHARS, BlocklistMatch, Category, FilterResult
from aimi.safety.normalization import normalize

_FLAGS = re.IGNORECASE | re.UNICODE


def _bounded(body: str) -> str:
    return rf"(?<!\w)(?:{body})(?!\w)"


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Blocklist:
    """One named list of terms and regular expressions."""

    name: str
    terms: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    _terms_re: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _term_by_key: dict[str, str] = field(init=False, repr=False, compare=False, default_factory=dict)
    _patterns_re: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise InvalidRequest("A blocklist needs a name.", param="blocklists")
        pairs = [(normalize(original).strip(), original) for original in self.terms]
        by_key = {_key(term): original for term, original in pairs if term}
        alternatives = sorted(
            {r"\s+".join(map(re.escape, term.split())) for term, _ in pairs if term}, key=len, reverse=True
        )
        terms_re = re.compile(_bounded("|".join(alternatives)), _FLAGS) if alternatives else None
        compiled = []
        for pattern in self.patterns:
            try:
                compiled.append(re.compile(_bounded(pattern), _FLAGS))
            except re.error as exc:
                raise InvalidRequest(
                    f"Blocklist '{self.name}': invalid regular expression {pattern!r}: {exc}.",
                    param="blocklists",
                ) from exc
        object.__setattr__(self, "_terms_re", terms_re)
        object.__setattr__(self, "_term_by_key", by_key)
        object.__setattr__(self, "_patterns_re", tuple(compiled))

    def find(self, normalized: str) -> tuple[str, ...]:
        """The terms and patterns of this list found in already-normalised text, in list order."""
        found: set[str] = set()
        if self._terms_re is not None:
            for match in self._terms_re.finditer(normalized):
                # A case fold that IGNORECASE treats differently falls back to the text itself.
                found.add(self._term_by_key.get(_key(match.group()), match.group()))
        for pattern, compiled in zip(self.patterns, self._patterns_re, strict=True):
            if compiled.search(normalized):
                found.add(pattern)
        listed = tuple(dict.fromkeys(t for t in (*self.terms, *self.patterns) if t in found))
        return listed + tuple(sorted(found.difference(listed)))


class BlocklistFilter:
    """Reports which of the deployment's blocklists match; evaluates no harm category."""

    name = "blocklists"
    categories: frozenset[Category] = frozenset()

    def __init__(self, blocklists: Sequence[Blocklist]) -> None:
        self.blocklists = tuple(blocklists)

    def match(self, text: str) -> tuple[BlocklistMatch, ...]:
        normalized = normalize(text)
        matches = (BlocklistMatch(b.name, b.find(normalized)) for b in self.blocklists)
        return tuple(m for m in matches if m.terms)

    def evaluate(self, text: str) -> FilterResult:
        matches = self.match(text)
        evidence = tuple(
            f"blocklist {m.blocklist!r} matched {', '.join(map(repr, m.terms))}" for m in matches
        )
        return FilterResult(filter=self.name, blocklist_matches=matches, evidence=evidence)

    async def check(self, text: str) -> FilterResult:
        # Blocklists always scan the whole text (they are linear in its length): long text in a thread.
        if len(text) <= INLINE_CHARS:
            return self.evaluate(text)
        return await asyncio.to_thread(self.evaluate, text)
