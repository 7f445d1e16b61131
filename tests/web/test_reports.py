"""`aimi.platform.reports`: the portal's usage reports, aggregated in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aimi.db.database import Database
from aimi.db.tables import UsageRecord
from aimi.platform.reports import UsageReports

DAY1 = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)
DAY2 = datetime(2026, 11, 2, 0, 30, tzinfo=UTC)


def row(at: datetime, deployment: str = "a", **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "created_at": at, "deployment_name": deployment, "project_name": "p", "key_id": None,
        "model_name": "m", "prompt_tokens": 10, "completion_tokens": 5, "finish_reason": "stop",
        "status": 200, "latency_ms": 100, "streamed": False, "cost": Decimal("0.0015"), "safety": None,
    }  # fmt: skip
    return UsageRecord(**(values | fields))


@pytest.fixture
def reports(database: Database) -> UsageReports:
    with database.session() as s:
        s.add_all(
            [
                row(DAY1),
                row(DAY1, latency_ms=300, finish_reason="content_filter"),
                row(DAY1, "b", status=429, prompt_tokens=0, completion_tokens=0, cost=Decimal(0)),
                row(
                    DAY2,
                    status=400,
                    prompt_tokens=0,
                    completion_tokens=0,
                    cost=Decimal(0),
                    finish_reason=None,
                    safety={"input": {"filtered": True}},
                ),
                row(DAY2, "b", cost=Decimal("0.0000000001")),
            ]
        )
    return UsageReports(database)


def test_daily_figures_are_grouped_by_utc_day_and_deployment(reports: UsageReports) -> None:
    lines = reports.daily()
    assert [(f.day, f.deployment, f.requests) for f in lines] == [
        ("2026-11-01", "a", 2),
        ("2026-11-01", "b", 0),  # its one row is a 429: refused before it reached the model
        ("2026-11-02", "a", 1),
        ("2026-11-02", "b", 1),
    ]
    first = lines[0]
    assert (first.prompt_tokens, first.completion_tokens, first.total_tokens) == (20, 10, 30)
    assert first.cost == Decimal("0.003")
    assert (first.blocked, first.rate_limited, first.latency_ms) == (1, 0, 200)
    assert (lines[1].rate_limited, lines[2].blocked) == (1, 1)
    assert lines[3].cost == Decimal("0.0000000001")  # ten decimals survive the sum


def test_filters_by_deployment_and_period(reports: UsageReports) -> None:
    assert [f.day for f in reports.daily(deployment="b")] == ["2026-11-01", "2026-11-02"]
    assert [f.deployment for f in reports.daily(since=DAY2 - timedelta(minutes=1))] == ["a", "b"]


def test_per_deployment_and_total(reports: UsageReports) -> None:
    per = {f.deployment: f for f in reports.by_deployment()}
    assert (per["a"].requests, per["b"].requests) == (3, 1)  # b's 429 is in rate_limited only
    assert per["b"].rate_limited == 1
    total = reports.total()
    assert (total.requests, total.rate_limited, total.blocked) == (4, 1, 2)
    assert total.cost == Decimal("0.0030000001")
    empty = reports.total(deployment="nobody")
    assert (empty.requests, empty.cost) == (0, Decimal(0))


def test_recent_requests_come_newest_first_with_their_safety_verdict(reports: UsageReports) -> None:
    recent = reports.recent(limit=3)
    assert [r.created_at for r in recent] == [DAY2, DAY2, DAY1]
    assert {r.safety_verdict for r in recent[:2]} == {"blocked", "-"}
    assert reports.deployments() == ["a", "b"]
