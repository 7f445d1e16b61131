"""The usage ledger: one row per request that reached a deployment, with its cost, and the
summaries `aimi usage` and `GET /api/usage` print."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from aimi.db.database import Database
from aimi.db.tables import UsageRecord

Period = Literal["hour", "day"]


@dataclass(frozen=True)
class UsageEntry:
    deployment: str
    project: str
    model: str
    key_id: int | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    status: int
    latency_ms: int
    streamed: bool
    cost: Decimal
    safety: dict[str, Any] | None = None


@dataclass
class UsageLine:
    """A group of requests (by deployment, and by hour or day when asked)."""

    deployment: str
    period: str | None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = field(default_factory=lambda: Decimal(0))

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UsageLedger:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, entry: UsageEntry) -> None:
        with self._db.session() as s:
            s.add(
                UsageRecord(
                    deployment_name=entry.deployment,
                    project_name=entry.project,
                    key_id=entry.key_id,
                    model_name=entry.model,
                    prompt_tokens=entry.prompt_tokens,
                    completion_tokens=entry.completion_tokens,
                    finish_reason=entry.finish_reason,
                    status=entry.status,
                    latency_ms=entry.latency_ms,
                    streamed=entry.streamed,
                    cost=entry.cost,
                    safety=entry.safety,
                )
            )

    def records(self, *, deployment: str | None = None, since: datetime | None = None) -> list[UsageRecord]:
        with self._db.session() as s:
            query = select(UsageRecord).order_by(UsageRecord.created_at, UsageRecord.id)
            if deployment is not None:
                query = query.where(UsageRecord.deployment_name == deployment)
            if since is not None:
                query = query.where(UsageRecord.created_at >= since)
            return list(s.scalars(query))

    def summary(
        self, *, deployment: str | None = None, since: datetime | None = None, by: Period | None = None
    ) -> tuple[list[UsageLine], UsageLine]:
        """Lines per deployment (and period), and the total."""
        lines: dict[tuple[str, str | None], UsageLine] = {}
        total = UsageLine("(total)", None)
        for r in self.records(deployment=deployment, since=since):
            period = None
            if by == "hour":
                period = r.created_at.strftime("%Y-%m-%d %H:00")
            elif by == "day":
                period = r.created_at.strftime("%Y-%m-%d")
            for line in (
                lines.setdefault((r.deployment_name, period), UsageLine(r.deployment_name, period)),
                total,
            ):
                line.requests += 1
                line.prompt_tokens += r.prompt_tokens
                line.completion_tokens += r.completion_tokens
                line.cost += Decimal(r.cost)
        ordered = sorted(lines.values(), key=lambda line: (line.period or "", line.deployment))
        return ordered, total


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`2026-11-01`, `2026-11-01T12:00:00+00:00`, or a span back from now: `30m`, `12h`, `7d`."""
    from datetime import UTC, timedelta

    from aimi.errors import InvalidRequest

    now = now or datetime.now(UTC)
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].isdigit():
        return now - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"'since' takes a date, a date-time or a span like 12h or 7d, not '{text}'.", param="since"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
