"""A deployment's safety policy, and how several filters' results become one decision.

Per category and direction the policy names the lowest severity that blocks (default `medium`, so
`medium` and `high` block and `low` is only reported), whether jailbreak attempts in prompts block,
its blocklists (a match blocks in both directions), the deployment asked as a model judge, and a
switch that turns safety off. `SafetyPolicy` is the one definition of a valid policy (a strict
pydantic model: unknown keys refused, values bounded), whether it comes from the management API,
the CLI or the database.

Combining: a category's severity is the worst any filter reported. It is *evaluated* when at least
one filter that vouches for it ran; a category that no filter evaluated is reported as not
evaluated (`evaluated=False`, and `severity=None` unless some filter saw evidence anyway), never as
`safe`. With `fail_closed`, a category that a configured filter should have evaluated but could not
(an error, a timeout, text over its limit) blocks instead of passing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from aimi.errors import InvalidRequest
from aimi.safety.base import BlocklistMatch, Category, FilterResult, Severity, worst
from aimi.safety.blocklists import Blocklist


class Direction(StrEnum):
    INPUT = "input"
    OUTPUT = "output"


MAX_BLOCKLISTS = 32
MAX_TERMS = 10_000
"""The most terms, and the most regular expressions, one blocklist holds."""
MAX_TERM_CHARS = 256
MAX_NAME_CHARS = 64
"""A blocklist's name, and the judge's (a deployment name)."""


def _invalid(exc: ValidationError) -> InvalidRequest:
    """A policy's first fault as one 400 naming the field by its JSON path, as the management API
    names a body's field (`blocklists[0].name`)."""
    first = exc.errors()[0]
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
    if first["type"] == "extra_forbidden":
        return InvalidRequest(f"Unknown safety setting '{path}'.", param=path)
    message = str(first["msg"]).rstrip(".")
    if not path:
        return InvalidRequest(f"A safety policy is a JSON object: {message}.", param="safety")
    return InvalidRequest(f"Invalid value for '{path}': {message}.", param=path)


class _Settings(BaseModel):
    """Strict where it matters (`0` is not `false`, `5` is not a term), unknown keys refused, frozen.
    Built directly, a fault is an `InvalidRequest` naming the field, as through `SafetyPolicy.parse`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _invalid(exc) from None

    # Pydantic calls a model's own __init__ for nested models too, which would cut a fault's path
    # short (`hate` for `input.hate`); this flag (as `RootModel` sets it) keeps that to direct calls.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def _no_nul(text: str) -> str:
    if "\x00" in text:  # the database cannot store it
        raise PydanticCustomError("nul", "text must not contain NUL (U+0000)")
    return text


Name = Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_CHARS), AfterValidator(_no_nul)]
Term = Annotated[StrictStr, Field(max_length=MAX_TERM_CHARS), AfterValidator(_no_nul)]


def _level(value: object) -> Severity | None:
    if value is None or (isinstance(value, Severity) and value is not Severity.SAFE):
        return value
    if value in ("low", "medium", "high"):
        return Severity(str(value))
    if value in ("safe", Severity.SAFE):
        raise PydanticCustomError(
            "threshold",
            "a threshold cannot be 'safe' (that would block everything); use low, medium, high, or "
            "null to never block",
        )
    raise PydanticCustomError("threshold", "use low, medium, high, or null to never block")


Level = Annotated[
    Severity | None,
    PlainValidator(_level),
    PlainSerializer(lambda s: s.value if s is not None else None, return_type=str | None),
    WithJsonSchema({"anyOf": [{"enum": ["low", "medium", "high"], "type": "string"}, {"type": "null"}]}),
]
"""The lowest severity that blocks: low, medium or high; None never blocks (it is still reported)."""


class Thresholds(_Settings):
    """Per category, the lowest severity that blocks; None never blocks (the severity is still
    reported)."""

    hate: Level = Severity.MEDIUM
    sexual: Level = Severity.MEDIUM
    violence: Level = Severity.MEDIUM
    self_harm: Level = Severity.MEDIUM

    def of(self, category: Category) -> Severity | None:
        value: Severity | None = getattr(self, category.value)
        return value

    def blocks(self, category: Category, severity: Severity | None) -> bool:
        threshold = self.of(category)
        return threshold is not None and severity is not None and severity.at_least(threshold)


class BlocklistSettings(_Settings):
    """A blocklist as it is written: a name, exact terms and regular expressions."""

    name: Name
    terms: Annotated[list[Term], Field(max_length=MAX_TERMS)] = []
    patterns: Annotated[list[Term], Field(max_length=MAX_TERMS)] = []


def _blocklist(value: object) -> Blocklist:
    if isinstance(value, Blocklist):
        return value
    written = BlocklistSettings.model_validate(value)
    try:
        return Blocklist(written.name, tuple(written.terms), tuple(written.patterns))
    except InvalidRequest as exc:  # an empty name, a regular expression that does not compile
        raise PydanticCustomError("blocklist", exc.message.rstrip(".")) from None


BlocklistField = Annotated[
    Blocklist,
    PlainValidator(_blocklist),
    PlainSerializer(
        lambda b: {"name": b.name, "terms": list(b.terms), "patterns": list(b.patterns)}, return_type=dict
    ),
    WithJsonSchema(BlocklistSettings.model_json_schema()),
]


def _no_judge(value: object) -> object:
    return None if value == "" else value  # `--judge ''`: no judge


def _or_null(schema: dict[str, Any]) -> None:
    """null is taken for the default thresholds: the schema says so."""
    ref = schema.pop("$ref")
    schema["anyOf"] = [{"$ref": ref}, {"type": "null"}]


class SafetyPolicy(_Settings):
    """What one deployment blocks, and whom it asks for a second opinion. The default blocks medium
    and high in every category, both ways. The one definition of a valid policy: the management API's
    body, the CLI's flags and what the database holds are all read through it."""

    enabled: StrictBool = True
    input: Annotated[Thresholds, Field(json_schema_extra=_or_null)] = Thresholds()
    output: Annotated[Thresholds, Field(json_schema_extra=_or_null)] = Thresholds()
    block_jailbreak: StrictBool = True
    """Block prompts in which a jailbreak attempt is detected (completions are not checked for it)."""
    blocklists: Annotated[tuple[BlocklistField, ...], Field(max_length=MAX_BLOCKLISTS)] = ()
    fail_closed: StrictBool = False
    judge: Annotated[
        Name | None,
        BeforeValidator(_no_judge),
        WithJsonSchema({"anyOf": [{"type": "string", "maxLength": MAX_NAME_CHARS}, {"type": "null"}]}),
    ] = None
    """A chat deployment asked for a verdict too (the model judge, `judge.py`); None (or ""): none."""

    @field_validator("input", "output", mode="before")
    @classmethod
    def _default_thresholds(cls, value: object) -> object:
        return {} if value is None else value  # null: the default thresholds

    @classmethod
    def parse(cls, raw: Mapping[str, object] | None) -> SafetyPolicy:
        """A policy from plain JSON (`{}` or None: the default); a fault is an `InvalidRequest` naming
        the field."""
        try:
            return cls.model_validate({} if raw is None else raw)
        except ValidationError as exc:
            raise _invalid(exc) from None

    def to_json(self) -> dict[str, Any]:
        """The policy as plain JSON, every setting written out (`judge` only when there is one)."""
        return self.model_dump(mode="json", exclude={"judge"} if self.judge is None else None)

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
