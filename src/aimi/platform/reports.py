"""Reports over the usage ledger for the portal: requests, tokens, cost, 429s and content-filter
blocks per day and per deployment, and the latest requests. Aggregation runs in SQL (one GROUP BY per
report), never by loading every row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, func, select
from sqlalchemy.orm import Session

from aimi.db.database import Database
from aimi.db.tables import UsageRecord
from aimi.errors import RateLimited


@dataclass(frozen=True)
class UsageFigures:
    """One group of requests: by day and deployment, by deployment, or all of them."""

    day: str | None
    deployment: str | None
    requests: int
    """Requests that reached the model (429s are counted in `rate_limited` only)."""
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    rate_limited: int
    """Requests refused with 429 that reached the ledger."""
    blocked: int
    """Prompts refused by content safety (400) and answers cut by it (finish_reason content_filter)."""
    latency_ms: int
    """Mean latency of the group."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class RecentRequest:
    created_at: datetime
    deployment: str
    model: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    latency_ms: int
    streamed: bool
    cost: Decimal
    safety: dict[str, Any] | None

    @property
    def safety_verdict(self) -> str:
        """`blocked`, `filtered` (an answer cut), `annotated` or `-` (not checked)."""
        if self.status == 400 and self.safety:
            return "blocked"
        if self.finish_reason == "content_filter":
            return "filtered"
        return "annotated" if self.safety else "-"


def _day(session: Session) -> ColumnElement[str]:
    """The UTC day of a row as `YYYY-MM-DD`, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", UsageRecord.created_at), "YYYY-MM-DD", type_=String)
    return func.substr(UsageRecord.created_at, 1, 10, type_=String)  # SQLite keeps UTC text


def _figures() -> list[Any]:
    blocked = (UsageRecord.status == 400) | (UsageRecord.finish_reason == "content_filter")
    limited = UsageRecord.status == RateLimited.status
    return [
        # requests that reached the model, as the ledger summary (`aimi usage`, /api/usage) counts them
        func.coalesce(func.sum(case((limited, 0), else_=1)), 0),
        func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
        func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
        func.sum(UsageRecord.cost),
        func.coalesce(func.sum(case((limited, 1), else_=0)), 0),
        func.coalesce(func.sum(case((blocked, 1), else_=0)), 0),
        func.coalesce(func.avg(UsageRecord.latency_ms), 0),
    ]


def _filtered(query: Select[Any], deployment: str | None, since: datetime | None) -> Select[Any]:
    if deployment is not None:
        query = query.where(UsageRecord.deployment_name == deployment)
    if since is not None:
        query = query.where(UsageRecord.created_at >= since)
    return query


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _line(day: str | None, deployment: str | None, row: Any) -> UsageFigures:
    requests, prompt, completion, cost, limited, blocked, latency = row
    return UsageFigures(
        day, deployment, int(requests), int(prompt), int(completion), _money(cost), int(limited),
        int(blocked), round(float(latency)),
    )  # fmt: skip


class UsageReports:
    def __init__(self, db: Database) -> None:
        self._db = db

    def daily(self, *, deployment: str | None = None, since: datetime | None = None) -> list[UsageFigures]:
        """Per UTC day and deployment, oldest day first."""
        with self._db.session() as s:
            day = _day(s).label("day")
            query = _filtered(
                select(day, UsageRecord.deployment_name, *_figures()), deployment, since
            ).group_by(day, UsageRecord.deployment_name)
            rows = s.execute(query.order_by(day, UsageRecord.deployment_name)).all()
        return [_line(r[0], r[1], r[2:]) for r in rows]

    def by_deployment(
        self, *, deployment: str | None = None, since: datetime | None = None
    ) -> list[UsageFigures]:
        with self._db.session() as s:
            query = _filtered(select(UsageRecord.deployment_name, *_figures()), deployment, since)
            rows = s.execute(
                query.group_by(UsageRecord.deployment_name).order_by(UsageRecord.deployment_name)
            ).all()
        return [_line(None, r[0], r[1:]) for r in rows]

    def total(self, *, deployment: str | None = None, since: datetime | None = None) -> UsageFigures:
        with self._db.session() as s:
            row = s.execute(_filtered(select(*_figures()), deployment, since)).one()
        return _line(None, deployment, row)

    def recent(
        self, *, deployment: str | None = None, since: datetime | None = None, limit: int = 50
    ) -> list[RecentRequest]:
        """The latest requests, newest first."""
        columns = (
            UsageRecord.created_at, UsageRecord.deployment_name, UsageRecord.model_name,
            UsageRecord.status, UsageRecord.prompt_tokens, UsageRecord.completion_tokens,
            UsageRecord.finish_reason, UsageRecord.latency_ms, UsageRecord.streamed, UsageRecord.cost,
            UsageRecord.safety,
        )  # fmt: skip
        with self._db.session() as s:
            query = _filtered(select(*columns), deployment, since)
            rows = s.execute(
                query.order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc()).limit(limit)
            )
            return [
                RecentRequest(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), _money(r[9]), r[10])
                for r in rows
            ]

    def deployments(self) -> list[str]:
        """Every deployment the ledger has seen, deleted ones included (they stay filterable)."""
        with self._db.session() as s:
            query = select(UsageRecord.deployment_name).distinct().order_by(UsageRecord.deployment_name)
            return list(s.scalars(query))
