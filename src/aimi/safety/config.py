"""A safety policy as it is stored with a deployment (plain JSON), and verdicts as the usage ledger
keeps them."""

from __future__ import annotations

from typing import Any

from aimi.errors import InvalidRequest
from aimi.safety.base import Category, Severity
from aimi.safety.blocklists import Blocklist
from aimi.safety.policy import Decision, SafetyPolicy, Thresholds

_CATEGORIES = [c.value for c in Category]


def _thresholds(raw: Any, where: str) -> Thresholds:
    if raw is None:
        return Thresholds()
    if not isinstance(raw, dict) or not set(raw) <= set(_CATEGORIES):
        raise InvalidRequest(f"'{where}' maps {_CATEGORIES} to low, medium, high or null.", param=where)
    values: dict[str, Severity | None] = {}
    for category, level in raw.items():
        if level is not None and level not in ("low", "medium", "high"):
            raise InvalidRequest(
                f"'{where}.{category}' is low, medium, high or null (never block).", param=where
            )
        values[category] = Severity(level) if level is not None else None
    return Thresholds(**{**{c: Severity.MEDIUM for c in _CATEGORIES}, **values})


def policy_from_dict(raw: dict[str, Any] | None) -> SafetyPolicy:
    """`{}` is the default policy (on, block medium and above both ways, jailbreaks blocked)."""
    raw = raw or {}
    unknown = set(raw) - {
        "enabled",
        "input",
        "output",
        "block_jailbreak",
        "blocklists",
        "fail_closed",
        "judge",
    }
    if unknown:
        raise InvalidRequest(f"Unknown safety settings: {sorted(unknown)}.", param="safety")
    blocklists = tuple(
        Blocklist(
            name=str(b.get("name", "")),
            terms=tuple(b.get("terms", ())),
            patterns=tuple(b.get("patterns", ())),
        )
        for b in raw.get("blocklists", ())
    )
    return SafetyPolicy(
        enabled=bool(raw.get("enabled", True)),
        input=_thresholds(raw.get("input"), "safety.input"),
        output=_thresholds(raw.get("output"), "safety.output"),
        block_jailbreak=bool(raw.get("block_jailbreak", True)),
        blocklists=blocklists,
        fail_closed=bool(raw.get("fail_closed", False)),
    )


def policy_to_dict(policy: SafetyPolicy, *, judge: str | None = None) -> dict[str, Any]:
    def levels(t: Thresholds) -> dict[str, str | None]:
        return {c.value: (t.of(c).value if t.of(c) is not None else None) for c in Category}  # type: ignore[union-attr]

    out: dict[str, Any] = {
        "enabled": policy.enabled,
        "input": levels(policy.input),
        "output": levels(policy.output),
        "block_jailbreak": policy.block_jailbreak,
        "blocklists": [
            {"name": b.name, "terms": list(b.terms), "patterns": list(b.patterns)} for b in policy.blocklists
        ],
        "fail_closed": policy.fail_closed,
    }
    if judge:
        out["judge"] = judge
    return out


def verdict_record(decision: Decision) -> dict[str, Any]:
    """What the ledger keeps of one decision: per category the severity and which filter said so."""
    return {
        "filtered": decision.filtered,
        "categories": {
            c.value: {
                "severity": d.severity.value if d.severity else None,
                "evaluated": d.evaluated,
                "filtered": d.filtered,
                "filters": list(d.filters),
            }
            for c, d in decision.categories.items()
        },
        "jailbreak": {
            "detected": decision.jailbreak.detected,
            "filtered": decision.jailbreak.filtered,
            "filters": list(decision.jailbreak.filters),
        },
        "blocklists": [
            {"blocklist": m.blocklist, "terms": list(m.terms)} for m in decision.blocklist_matches
        ],
        "reasons": list(decision.reasons),
        "errors": list(decision.errors),
    }
