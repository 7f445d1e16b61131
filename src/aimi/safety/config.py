"""Safety verdicts as the usage ledger keeps them (a policy is read and written as JSON by
`policy.SafetyPolicy` itself)."""

from __future__ import annotations

from typing import Any

from aimi.safety.policy import Decision


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
