"""A deployment's safety policy, and how several filters' results become one decision.

Per category and direction the policy names the lowest severity that blocks (default `medium`, so
`medium` and `high` block and `low` is only reported), whether jailbreak attempts in prompts block,
its blocklists (a match blocks in both directions), and a switch that turns safety off.

Combining: a category's severity is the worst any filter reported. It is *evaluated* when at least
one filter that vouches for it ran; a category that no filter evaluated is reported as not
evaluated (`evaluated=False`, and `severity=None` unless some filter saw evidence anyway), never as
`safe`. With `fail_closed`, a category that a configured filter should have evaluated but could not
(an error, a timeout, text over its limit) blocks instead of passing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from aimi.errors import InvalidRequest
from aimi.safety.base import BlocklistMatch, Category, FilterResult, Severity, worst
from aimi.safety.blocklists import Blocklist


class Direction(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per category, the lowest severity that blocks; None never blocks (the severity is still
    reported)."""

    hate: Severity | None = Severity.MEDIUM
    sexual: Severity | None = Severity.MEDIUM
    violence: Severity | None = Severity.MEDIUM
    self_harm: Severity | None = Severity.MEDIUM

    def __post_init__(self) -> None:
        for category in Category:
            if self.of(category) is Severity.SAFE:
                raise InvalidRequest(
                    f"The {category} threshold cannot be 'safe' (that would block everything); "
                    "use low, medium, high, or none to never block.",
                    param="safety",
                )

    def of(self, category: Category) -> Severity | None:
        value: Severity | None = getattr(self, category.value)
        return value

    def blocks(self, category: Category, severity: Severity | None) -> bool:
        threshold = self.of(category)
        return threshold is not None and severity is not None and severity.at_least(threshold)


@dataclass(frozen=True)
class SafetyPolicy:
    """What one deployment blocks. The default blocks medium and high in every category, both ways."""

    enabled: bool = True
    input: Thresholds = field(default_factory=Thresholds)
    output: Thresholds = field(default_factory=Thresholds)
    block_jailbreak: bool = True
    """Block prompts in which a jailbreak attempt is detected (completions are not checked for it)."""
    blocklists: tuple[Blocklist, ...] = ()
    fail_closed: bool = False

    def thresholds(self, direction: Direction) -> Thresholds:
        return self.input if direction is Direction.INPUT else self.output


@dataclass(frozen=True, slots=True)
class CategoryDecision:
    """One category's outcome. `severity` is None when no filter reported anything for it."""

    category: Category
    severity: Severity | None
    evaluated: bool
    filtered: bool
    filters: tuple[str, ...] = ()
    """The filters that reported `severity` (those that evaluated it, when it is `safe`)."""


@dataclass(frozen=True, slots=True)
class JailbreakDecision:
    """`detected` is None when no filter looked for jailbreaks."""

    detected: bool | None
    filtered: bool
    filters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything the filters found in one text and what the policy made of it."""

    direction: Direction
    categories: Mapping[Category, CategoryDecision]
    jailbreak: JailbreakDecision
    blocklist_matches: tuple[BlocklistMatch, ...] = ()
    results: tuple[FilterResult, ...] = ()
    enabled: bool = True

    @property
    def blocklists_filtered(self) -> bool:
        return bool(self.blocklist_matches)

    @property
    def filtered(self) -> bool:
        """Whether the text is blocked."""
        return (
            any(c.filtered for c in self.categories.values())
            or self.jailbreak.filtered
            or self.blocklists_filtered
        )

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(f"{r.filter}: {r.error}" for r in self.results if r.error is not None)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the text is blocked, one line per cause, naming the filters (for the usage ledger)."""
        reasons = [
            f"{c.category} {c.severity} ({', '.join(c.filters) or 'not evaluated'})"
            for c in self.categories.values()
            if c.filtered
        ]
        if self.jailbreak.filtered:
            reasons.append(f"jailbreak ({', '.join(self.jailbreak.filters)})")
        reasons.extend(f"blocklist {m.blocklist!r}: {', '.join(m.terms)}" for m in self.blocklist_matches)
        return tuple(reasons)


def unevaluated(direction: Direction) -> Decision:
    """The decision when safety is off: nothing evaluated, nothing blocked."""
    categories = {c: CategoryDecision(c, None, evaluated=False, filtered=False) for c in Category}
    return Decision(direction, categories, JailbreakDecision(None, filtered=False), enabled=False)


def decide(
    policy: SafetyPolicy,
    direction: Direction,
    results: Sequence[FilterResult],
    *,
    expected: frozenset[Category] = frozenset(),
) -> Decision:
    """Combine the results of the filters that ran on one text. `expected` is the categories the
    configured filters cover, for `fail_closed`."""
    if not policy.enabled:
        return unevaluated(direction)
    thresholds = policy.thresholds(direction)
    categories = {}
    for category in Category:
        evaluated = any(category in r.evaluated for r in results if r.ok)
        reported = [(r.severities[category], r.filter) for r in results if r.ok and category in r.severities]
        reported += [(Severity.SAFE, r.filter) for r in results if r.ok and category in r.evaluated]
        severity = worst([s for s, _ in reported]) if reported else None
        filters = tuple(dict.fromkeys(name for s, name in reported if s is severity))
        missing = policy.fail_closed and category in expected and not evaluated
        blocked = thresholds.blocks(category, severity) or (missing and thresholds.of(category) is not None)
        categories[category] = CategoryDecision(category, severity, evaluated, blocked, filters)
    looked = [r for r in results if r.ok and r.jailbreak is not None]
    detected = any(r.jailbreak for r in looked) if looked else None
    jailbreak = JailbreakDecision(
        detected,
        filtered=bool(detected) and policy.block_jailbreak and direction is Direction.INPUT,
        filters=tuple(r.filter for r in looked if r.jailbreak),
    )
    matches = tuple(m for r in results if r.ok for m in r.blocklist_matches)
    return Decision(direction, categories, jailbreak, matches, tuple(results))


def combine(first: Decision, second: Decision) -> Decision:
    """Two decisions on parts of one text (windows of a stream) as one: per category the worse."""
    categories = {}
    for category in Category:
        a, b = first.categories[category], second.categories[category]
        worse = (
            b if a.severity is None or (b.severity is not None and b.severity.rank > a.severity.rank) else a
        )
        categories[category] = CategoryDecision(
            category,
            worse.severity,
            evaluated=a.evaluated or b.evaluated,
            filtered=a.filtered or b.filtered,
            filters=worse.filters,
        )
    ja, jb = first.jailbreak, second.jailbreak
    detected = None if ja.detected is None and jb.detected is None else bool(ja.detected or jb.detected)
    jailbreak = JailbreakDecision(
        detected, ja.filtered or jb.filtered, tuple(dict.fromkeys(ja.filters + jb.filters))
    )
    matches = tuple(dict.fromkeys(first.blocklist_matches + second.blocklist_matches))
    # Keep the results that explain the outcome: the blocking check's, or else the latest.
    results = first.results if first.filtered and not second.filtered else second.results
    return Decision(
        second.direction, categories, jailbreak, matches, results, first.enabled and second.enabled
    )
