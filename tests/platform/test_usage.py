"""`aimi.platform.usage`: one ledger row per request, and the summaries (per deployment, per hour or
day, with totals and cost) that `aimi usage` and `GET /api/usage` print."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from aimi.db.database import Database
from aimi.db.tables import UsageRecord
from aimi.errors import InvalidRequest
from aimi.platform.catalog import Catalog
from aimi.platform.usage import UsageEntry, UsageLedger, parse_since

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def entry(deployment: str = "chat", prompt: int = 10, completion: int = 5, **changes: object) -> UsageEntry:
    fields: dict[str, object] = {
        "deployment": deployment,
        "project": "p",
        "model": "Mistral-Large",
        "key_id": 7,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "finish_reason": "stop",
        "status": 200,
        "latency_ms": 120,
        "streamed": False,
        "cost": (prompt * Decimal("0.004") + completion * Decimal("0.012")) / 1000,
    }
    return UsageEntry(**(fields | changes))  # type: ignore[arg-type]


def record_at(database: Database, at: datetime, e: UsageEntry) -> None:
    """A ledger row from another time (the ledger itself stamps rows with now)."""
    with database.session() as s:
        s.add(
            UsageRecord(
                created_at=at,
                deployment_name=e.deployment,
                project_name=e.project,
                key_id=e.key_id,
                model_name=e.model,
                prompt_tokens=e.prompt_tokens,
                completion_tokens=e.completion_tokens,
                finish_reason=e.finish_reason,
                status=e.status,
                latency_ms=e.latency_ms,
                streamed=e.streamed,
                cost=e.cost,
            )
        )


def test_a_recorded_request_is_one_row_with_everything_but_the_key(ledger: UsageLedger) -> None:
    before = datetime.now(UTC)
    safety = {"hate": {"filtered": False, "severity": "safe"}}
    ledger.record(entry(streamed=True, finish_reason="cancelled", status=200, safety=safety))
    [row] = ledger.records()
    assert (row.deployment_name, row.project_name, row.model_name, row.key_id) == (
        "chat",
        "p",
        "Mistral-Large",
        7,
    )
    assert (row.prompt_tokens, row.completion_tokens, row.finish_reason) == (10, 5, "cancelled")
    assert (row.status, row.latency_ms, row.streamed, row.safety) == (200, 120, True, safety)
    assert row.cost == Decimal("0.0001")
    assert before - timedelta(seconds=5) <= row.created_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert row.created_at.utcoffset() == timedelta(0)


def test_the_summary_has_a_line_per_deployment_and_the_totals(ledger: UsageLedger) -> None:
    ledger.record(entry("chat", 10, 5))
    ledger.record(entry("chat", 20, 1))
    ledger.record(entry("code", 7, 3))
    lines, total = ledger.summary()
    assert [(x.deployment, x.period, x.requests, x.prompt_tokens, x.completion_tokens) for x in lines] == [
        ("chat", None, 2, 30, 6),
        ("code", None, 1, 7, 3),
    ]
    assert (total.deployment, total.requests, total.prompt_tokens, total.completion_tokens) == (
        "(total)",
        3,
        37,
        9,
    )
    assert total.total_tokens == 46
    assert total.cost == sum((x.cost for x in lines), Decimal(0))


def test_the_cost_is_the_tokens_at_the_catalog_prices(ledger: UsageLedger, catalog: Catalog) -> None:
    large = catalog.get("Mistral-Large")
    for prompt, completion in [(1000, 250), (31, 7), (1, 0)]:
        ledger.record(entry(prompt=prompt, completion=completion, cost=large.cost(prompt, completion)))
    _, total = ledger.summary()
    assert total.cost == large.cost(1032, 257) == Decimal("0.007212")


def test_the_ledger_keeps_the_cost_of_a_request_on_a_cheap_model_exactly(
    ledger: UsageLedger, catalog: Catalog
) -> None:
    """SmolLM2 costs $0.0001 per 1K prompt tokens: 23 + 3 tokens cost $0.0000029, not $0.000003."""
    smol = catalog.get("SmolLM2-135M-Instruct")
    for _ in range(10):
        ledger.record(entry(prompt=23, completion=3, cost=smol.cost(23, 3)))
    [row, *_] = ledger.records()
    assert row.cost == Decimal("0.0000029")
    assert ledger.summary()[1].cost == smol.cost(230, 30) == Decimal("0.000029")


def test_the_summary_can_be_for_one_deployment(ledger: UsageLedger) -> None:
    ledger.record(entry("chat", 10, 5))
    ledger.record(entry("code", 7, 3))
    lines, total = ledger.summary(deployment="code")
    assert [x.deployment for x in lines] == ["code"]
    assert (total.requests, total.total_tokens) == (1, 10)
    lines, total = ledger.summary(deployment="ghost")
    assert (lines, total.requests) == ([], 0)


def test_the_summary_by_hour_has_a_line_per_deployment_per_utc_hour(
    database: Database, ledger: UsageLedger
) -> None:
    record_at(database, datetime(2026, 11, 1, 9, 5, tzinfo=UTC), entry("chat", 1, 1))
    record_at(database, datetime(2026, 11, 1, 9, 55, tzinfo=UTC), entry("chat", 2, 2))
    record_at(database, datetime(2026, 11, 1, 9, 30, tzinfo=UTC), entry("code", 3, 3))
    record_at(
        database, datetime(2026, 11, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))), entry("chat", 4, 4)
    )
    lines, total = ledger.summary(by="hour")
    assert [(x.period, x.deployment, x.requests, x.prompt_tokens) for x in lines] == [
        ("2026-11-01 09:00", "chat", 2, 3),
        ("2026-11-01 09:00", "code", 1, 3),
        ("2026-11-01 10:00", "chat", 1, 4),
    ]
    assert (total.period, total.requests, total.prompt_tokens) == (None, 4, 10)


def test_the_summary_by_day_has_a_line_per_deployment_per_utc_day(
    database: Database, ledger: UsageLedger
) -> None:
    record_at(database, datetime(2026, 10, 31, 23, 59, tzinfo=UTC), entry("chat", 1, 1))
    record_at(database, datetime(2026, 11, 1, 0, 1, tzinfo=UTC), entry("chat", 2, 2))
    record_at(database, datetime(2026, 11, 1, 22, 0, tzinfo=UTC), entry("chat", 3, 3))
    lines, _ = ledger.summary(by="day")
    assert [(x.period, x.requests, x.completion_tokens) for x in lines] == [
        ("2026-10-31", 1, 1),
        ("2026-11-01", 2, 5),
    ]


def test_the_summary_can_start_at_a_moment(database: Database, ledger: UsageLedger) -> None:
    record_at(database, NOW - timedelta(days=2), entry(prompt=100))
    record_at(database, NOW - timedelta(hours=1), entry(prompt=10))
    record_at(database, NOW, entry(prompt=1))
    assert ledger.summary(since=NOW - timedelta(hours=2))[1].prompt_tokens == 11
    assert ledger.summary(since=NOW)[1].prompt_tokens == 1
    assert ledger.summary(since=parse_since("1d", now=NOW))[1].prompt_tokens == 11
    assert [r.prompt_tokens for r in ledger.records(since=NOW - timedelta(days=3))] == [100, 10, 1]


def test_an_empty_ledger_sums_to_zero(ledger: UsageLedger) -> None:
    lines, total = ledger.summary(by="day")
    assert lines == []
    assert (total.requests, total.total_tokens, total.cost) == (0, 0, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("7d", NOW - timedelta(days=7)),
        ("0d", NOW),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T12:30:00", datetime(2026, 11, 1, 12, 30, tzinfo=UTC)),
        ("2026-11-01T12:30:00+02:00", datetime(2026, 11, 1, 10, 30, tzinfo=UTC)),
    ],
)
def test_since_is_a_date_a_date_time_or_a_span_back_from_now(text: str, expected: datetime) -> None:
    parsed = parse_since(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_since_without_now_counts_back_from_the_present() -> None:
    assert abs(parse_since("1h") - (datetime.now(UTC) - timedelta(hours=1))) < timedelta(seconds=5)


@pytest.mark.parametrize("text", ["", "yesterday", "5x", "-5m", "1.5h", "m", "2026-13-01"])
def test_since_that_is_neither_is_an_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequest, match="'since' takes") as refused:
        parse_since(text, now=NOW)
    assert refused.value.param == "since"


def test_requests_refused_by_the_quota_are_rows_but_not_counted_as_requests(ledger: UsageLedger) -> None:
    ledger.record(entry("chat", 10, 5))
    ledger.record(entry("chat", 0, 0, status=429, finish_reason=None))
    assert len(ledger.records()) == 2
    assert ledger.summary()[1].requests == 1
