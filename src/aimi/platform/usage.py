"""The usage ledger: one row per request that reached a deployment, with its cost, and the
summaries `aimi usage` and `GET /api/usage` print."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from aimi.db.database import Database
from aimi.db.tables import UsageRecord
from aimi.errors import RateLimited

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
    cached_tokens: int = 0
    """Of the prompt tokens, those served from a cache instead of evaluated."""
    arrived_at: datetime | None = None
    """When the request arrived: the row's time, so that rows keep the order of their requests
    however the writer batches them (the time of writing when not given)."""


@dataclass(frozen=True)
class Progress:
    """How far a request in progress got: what the ledger keeps while it runs."""

    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class Opening:
    """The row of a request just admitted, as `UsageLedger.write` opens it."""

    entry: UsageEntry
    reservation: str | None = None
    reserved_tokens: int = 0


@dataclass(frozen=True)
class Interrupted:
    """A request whose process died before it ended, as the ledger closed it."""

    id: int
    deployment: str
    prompt_tokens: int
    completion_tokens: int
    reservation: str | None
    reserved_tokens: int | None


IN_PROGRESS, COMPLETED, INTERRUPTED = "in_progress", "completed", "interrupted"


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
        """A request that is over: one row, at once (a refusal, or one recorded after the fact)."""
        with self._db.session() as s:
            s.add(UsageRecord(**_new_row(entry, datetime.now(UTC)), state=COMPLETED))

    def open(self, entry: UsageEntry, *, instance: str, reservation: str | None, reserved_tokens: int) -> int:
        """The row of a request just admitted, `in_progress` until `close`; its id."""
        now = datetime.now(UTC)
        with self._db.session() as s:
            row = UsageRecord(
                **_new_row(entry, now),
                state=IN_PROGRESS,
                instance=instance,
                updated_at=now,
                reservation=reservation,
                reserved_tokens=reserved_tokens,
            )
            s.add(row)
            s.flush()
            return row.id

    def close(self, row_id: int, entry: UsageEntry) -> None:
        """The request is over: its row takes the final figures."""
        with self._db.session() as s:
            s.execute(
                update(UsageRecord)
                .where(UsageRecord.id == row_id)
                .values(**_columns(entry), state=COMPLETED, updated_at=datetime.now(UTC))
            )

    def progress(self, instance: str, rows: Mapping[int, Progress]) -> None:
        """Record how far the given requests got, and that `instance` is alive: every row it has in
        progress is stamped, also those with nothing new (a request waiting for a slot)."""
        with self._db.session() as s:
            _progress(s.connection(), instance, rows, datetime.now(UTC))

    def write(
        self,
        instance: str,
        *,
        opens: Sequence[Opening] = (),
        closes: Sequence[tuple[int, UsageEntry]] = (),
        records: Sequence[UsageEntry] = (),
        progress: Mapping[int, Progress] | None = None,
    ) -> list[int]:
        """The work of many requests in one transaction, one statement per kind: rows opened (for
        `instance`), rows closed with their final figures, requests recorded whole, and, when
        `progress` is given, how far requests got and that `instance` is alive (as `progress`). The
        ids of the opened rows, in their order."""
        now = datetime.now(UTC)
        table = cast(Table, UsageRecord.__table__)
        with self._db.session() as s:
            # Plain Core, executemany: no ORM bookkeeping per row.
            connection = s.connection()
            ids: list[int] = []
            if opens:
                opened = connection.execute(
                    insert(table).returning(table.c.id, sort_by_parameter_order=True),
                    [
                        {**_new_row(o.entry, now), "state": IN_PROGRESS, "instance": instance,
                         "updated_at": now, "reservation": o.reservation,
                         "reserved_tokens": o.reserved_tokens}
                        for o in opens
                    ],
                )  # fmt: skip
                ids = list(opened.scalars())
            if records:
                connection.execute(insert(table), [{**_new_row(e, now), "state": COMPLETED} for e in records])
            if closes:
                final = {name: bindparam(f"final_{name}", type_=table.c[name].type) for name in _COLUMNS}
                connection.execute(
                    update(table)
                    .where(table.c.id == bindparam("row_id"))
                    .values(**final, state=COMPLETED, updated_at=now),
                    [
                        {"row_id": row, **{f"final_{k}": v for k, v in _columns(e).items()}}
                        for row, e in closes
                    ],
                )
            if progress is not None:
                _progress(connection, instance, progress, now)
        return ids

    def interrupt(self, *, dead: Callable[[str, datetime], bool]) -> list[Interrupted]:
        """Close the rows left `in_progress` by processes that are gone (`dead(instance, last
        stamp)`), with the tokens and cost they last recorded; what was closed, to release quotas."""
        closed: list[Interrupted] = []
        with self._db.session() as s:
            rows = s.scalars(select(UsageRecord).where(UsageRecord.state == IN_PROGRESS).with_for_update())
            for r in rows:
                stamp = r.updated_at or r.created_at
                if not dead(r.instance or "", stamp):
                    continue
                r.state = INTERRUPTED
                r.finish_reason = INTERRUPTED
                r.updated_at = datetime.now(UTC)
                r.latency_ms = max(0, int((stamp - r.created_at).total_seconds() * 1000))
                closed.append(
                    Interrupted(
                        r.id,
                        r.deployment_name,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.reservation,
                        r.reserved_tokens,
                    )
                )
        return closed

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
        """Lines per deployment (and period), and the total, of the requests that reached the model
        (429s refused by the quota are rows in the ledger, not requests here)."""
        lines: dict[tuple[str, str | None], UsageLine] = {}
        total = UsageLine("(total)", None)
        for r in self.records(deployment=deployment, since=since):
            if r.status == RateLimited.status:
                continue  # refused by the quota before it reached the model (the portal counts these)
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


def _progress(connection: Connection, instance: str, rows: Mapping[int, Progress], now: datetime) -> None:
    table = cast(Table, UsageRecord.__table__)
    # One statement for all the rows (executemany), since it runs every second for every request that
    # moved.
    if rows:
        connection.execute(
            update(table)
            .where(table.c.id == bindparam("row_id"), table.c.state == IN_PROGRESS)
            .values(
                prompt_tokens=bindparam("prompt"),
                completion_tokens=bindparam("completion"),
                cost=bindparam("spent"),
                updated_at=now,
            ),
            [
                {"row_id": row_id, "prompt": p.prompt_tokens, "completion": p.completion_tokens,
                 "spent": p.cost}
                for row_id, p in rows.items()
            ],
        )  # fmt: skip
    connection.execute(
        update(table).where(table.c.instance == instance, table.c.state == IN_PROGRESS).values(updated_at=now)
    )


_COLUMNS = (
    "deployment_name", "project_name", "key_id", "model_name", "prompt_tokens", "completion_tokens",
    "finish_reason", "status", "latency_ms", "streamed", "cost", "safety", "cached_tokens",
)  # fmt: skip
"""The columns `_columns` fills, in its order."""


def _columns(entry: UsageEntry) -> dict[str, Any]:
    return {
        "deployment_name": entry.deployment,
        "project_name": entry.project,
        "key_id": entry.key_id,
        "model_name": entry.model,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "finish_reason": entry.finish_reason,
        "status": entry.status,
        "latency_ms": entry.latency_ms,
        "streamed": entry.streamed,
        "cost": entry.cost,
        "safety": entry.safety,
        "cached_tokens": entry.cached_tokens,
    }


def _new_row(entry: UsageEntry, now: datetime) -> dict[str, Any]:
    """The columns of a new row for `entry`: its figures, and its time (when the request arrived)."""
    return {**_columns(entry), "created_at": entry.arrived_at or now}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """`2026-11-01`, `2026-11-01T12:00:00+00:00`, or a span back from now: `30m`, `12h`, `7d`; in UTC.
    Anything else, or a moment before year 1 or after year 9999, is an `InvalidRequest` on `since`."""
    from datetime import UTC, timedelta

    from aimi.errors import InvalidRequest

    def invalid(what: str) -> InvalidRequest:
        shown = text if len(text) <= 40 else f"{text[:40]}…"
        return InvalidRequest(f"'since' takes {what}, not {shown!r}.", param="since")

    now = now or datetime.now(UTC)
    units = {"m": "minutes", "h": "hours", "d": "days"}
    try:
        if text[-1:] in units and text[:-1].isascii() and text[:-1].isdigit():
            return now - timedelta(**{units[text[-1]]: int(text[:-1])})
        parsed = datetime.fromisoformat(text)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except OverflowError as exc:
        raise invalid("a moment between the years 1 and 9999") from exc
    except ValueError as exc:
        raise invalid("a date, a date-time or a span like 12h or 7d") from exc
