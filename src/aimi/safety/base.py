"""The SafetyFilter port and the types that cross it: categories, severities, one filter's result.

`check` is async: the model judge waits on a chat model over the network, and the CPU-bound
filters (the classifier) move their work to a thread inside `check`, so no filter ever blocks
the event loop that also streams tokens. Cheap filters (blocklists, patterns) just return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Category(StrEnum):
    """The four harm categories, spelled as the wire spells them."""

    HATE = "hate"
    SEXUAL = "sexual"
    VIOLENCE = "violence"
    SELF_HARM = "self_harm"


class Severity(StrEnum):
    """How harmful text is in one category; ordered by `rank` (safe < low < medium < high)."""

    SAFE = "safe"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANK = {Severity.SAFE: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}


def worst(severities: list[Severity]) -> Severity:
    """The highest of several severities (`safe` for none)."""
    return max(severities, key=lambda s: s.rank, default=Severity.SAFE)


ALL_CATEGORIES: frozenset[Category] = frozenset(Category)

INLINE_CHARS = 4096
"""Text up to this long is checked on the event loop by the cheap filters; longer, in a thread."""


def over_limit(size: int, limit: int, unit: str = "characters") -> str:
    """The error of a filter that does not evaluate text over its size limit."""
    return f"text of {size} {unit} is over this filter's limit of {limit}; not evaluated"


@dataclass(frozen=True, slots=True)
class BlocklistMatch:
    """The terms of one named blocklist found in the text (as they were written in the list)."""

    blocklist: str
    terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FilterResult:
    """What one filter found in one text.

    `evaluated` is the categories the filter vouches for on this text: for those, a severity of
    `safe` (or no entry) means it looked and found nothing. `severities` may also raise a category
    the filter does not vouch for (evidence it happened to see); that counts towards the category's
    severity but does not make it evaluated, since "not evaluated" is never the same as `safe`.
    `jailbreak` is None when the filter does not look for jailbreaks. `error` says why the filter
    could not run (then nothing is evaluated); `evidence` is a short human-readable account for the
    usage ledger and the logs.
    """

    filter: str
    evaluated: frozenset[Category] = frozenset()
    severities: Mapping[Category, Severity] = field(default_factory=dict)
    jailbreak: bool | None = None
    blocklist_matches: tuple[BlocklistMatch, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class SafetyFilter(Protocol):
    """Scores text into some of the harm categories (and maybe jailbreak or blocklists)."""

    name: str
    categories: frozenset[Category]
    """The categories this filter evaluates when it runs; the ones it cannot see are left out."""

    async def check(self, text: str) -> FilterResult:
        """Evaluate `text`. Expected failures come back as a result with `error` set."""
        ...
