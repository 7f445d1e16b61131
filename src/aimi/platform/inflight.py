"""The requests this process is serving, kept in the usage ledger while they run, so that a process
that dies (`kill -9`, a power cut, the OOM killer) loses no bill.

A request's row is written when it is admitted (`in_progress`, its prompt tokens and its quota
reservation), beside its first steps rather than before them, and closed when it ends, after its
answer; the server's shutdown waits for both. How far it got is recorded every `interval_s`, and the
same transaction stamps all of this process's rows as alive. Rows that a dead process left
`in_progress` are closed as `interrupted`, with the tokens and cost they last recorded, and their
quota reservations are settled to those tokens. That happens at start and then every
`stale_after_s / 3` seconds.

One writer does all of it: what requests ask for (rows to open, rows to close) is queued, and the
writer commits everything queued in one transaction, one statement per kind, on one worker thread;
what arrives meanwhile goes into the next. A request whose row was not yet written when it ended is
written once, whole. So the database sees a transaction per `linger_s` at most rather than two per
request, and a request costs the event loop a few list appends. The queue is bounded: past
`max_pending` requests waiting for the writer, admission waits for it. A `kill -9` loses the rows
of the requests admitted in the last `linger_s` (and, as before, the progress of the last
`interval_s`).

A process is dead when it ran on this machine and its pid is gone, or is this very process's pid
(an earlier start, as in a container where the server is always pid 1); or, wherever it ran, when
it has not stamped its rows for `stale_after_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aimi.platform.quotas import Admission, QuotaStore
from aimi.platform.usage import Opening, Progress, UsageEntry, UsageLedger

log = logging.getLogger("aimi.platform")


@dataclass(frozen=True)
class Instance:
    """One start of one aimi process: where it runs, its pid, and a token of that start."""

    host: str
    pid: int
    token: str

    @classmethod
    def current(cls) -> Instance:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(6))

    @classmethod
    def parse(cls, text: str) -> Instance | None:
        host, _, rest = text.rpartition("/")
        host, _, pid = host.rpartition("/")
        return cls(host, int(pid), rest) if host and pid.isdigit() else None

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.token}"

    def knows_gone(self, other: Instance) -> bool:
        """Whether `other`, seen from this process, has certainly ended."""
        if other == self or other.host != self.host:
            return False
        return other.pid == self.pid or not _alive(other.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Live(Protocol):
    """A request in progress, as the recorder reads it."""

    def snapshot(self) -> Progress: ...


LINGER_S = 0.05
"""How long the writer lets work gather before it commits: a request's row is in the database this
long after its admission at most (plus the commit)."""
MAX_PENDING = 10_000


@dataclass(eq=False)
class Ticket:
    """A request's place in the ledger while its row is written (`InFlight.begin`)."""

    row: int | None = None
    moved: bool = False
    ended: bool = False
    opening: _Batch | None = None
    """The batch that opens its row, until it is written."""


@dataclass(eq=False)
class _Batch:
    """The work the writer commits in one transaction."""

    opens: dict[Ticket, tuple[Opening, Live]] = field(default_factory=dict)
    closes: list[tuple[Ticket, UsageEntry]] = field(default_factory=list)
    records: list[UsageEntry] = field(default_factory=list)
    progress: bool = False
    """Record the progress of the requests that moved, and stamp this process's rows."""
    written: asyncio.Event = field(default_factory=asyncio.Event)

    def __len__(self) -> int:
        return len(self.opens) + len(self.closes) + len(self.records)

    def empty(self) -> bool:
        return not len(self) and not self.progress


class InFlight:
    """Keeps this process's requests in the ledger while they run (see the module docstring)."""

    def __init__(
        self,
        ledger: UsageLedger,
        quotas: QuotaStore,
        *,
        instance: Instance | None = None,
        interval_s: float = 1.0,
        stale_after_s: float = 30.0,
        linger_s: float = LINGER_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.instance = instance or Instance.current()
        self._ledger = ledger
        self._quotas = quotas
        self._interval = interval_s
        self._stale_after = stale_after_s
        self._linger = linger_s
        self._max_pending = max_pending
        self._live: dict[int, Live] = {}
        self._moved: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._pending = _Batch()
        self._writing: _Batch | None = None
        self._writer: asyncio.Task[None] | None = None

    # -- what a request asks for ------------------------------------------------------------------

    def begin(self, entry: UsageEntry, *, admission: Admission | None, live: Live) -> Ticket:
        """Queue the row of a request just admitted, without waiting for the database: the row is
        written beside the answer's first steps. The ticket goes to `moved_ticket` and `end`."""
        opening = Opening(
            entry,
            reservation=admission.id if admission is not None else None,
            reserved_tokens=admission.tokens if admission is not None else 0,
        )
        ticket = Ticket(opening=self._pending)
        self._pending.opens[ticket] = (opening, live)
        self._wake()
        return ticket

    async def open(self, entry: UsageEntry, *, admission: Admission | None, live: Live) -> int | None:
        """`begin`, and wait for the row: its id, or None when the database would not take it (the
        request is then recorded whole when it ends)."""
        ticket = self.begin(entry, admission=admission, live=live)
        await self._committed(self._pending)
        return ticket.row

    def end(self, ticket: Ticket, entry: UsageEntry) -> None:
        """The request is over: its row is closed (or, when it was not written yet or could not be,
        written whole) by the writer; `stop` waits for it. The answer does not wait for the commit."""
        ticket.ended = True
        if ticket.row is not None:
            self._live.pop(ticket.row, None)
            self._moved.discard(ticket.row)
        if ticket.opening is self._pending:  # not being written yet: written once, whole
            del self._pending.opens[ticket]
            ticket.opening = None
            self._pending.records.append(entry)
        else:
            self._pending.closes.append((ticket, entry))
        self._wake()

    async def close(self, row: int, entry: UsageEntry) -> None:
        """The request whose row is `row` is over: its final figures, written before this returns
        (even if the caller is cancelled meanwhile)."""
        self.end(Ticket(row=row), entry)
        await asyncio.shield(self._committed(self._pending))

    def moved_ticket(self, ticket: Ticket) -> None:
        """`moved` for a request whose row may still be being written."""
        if ticket.row is None:
            ticket.moved = True
        else:
            self.moved(ticket.row)

    def moved(self, row: int) -> None:
        """The request got further; recorded at the next tick. Cheap: called for every token."""
        if row in self._live:
            self._moved.add(row)

    async def room(self) -> None:
        """Wait while the writer has `max_pending` requests' work queued (a slow database)."""
        while len(self._pending) >= self._max_pending:
            await (self._writing or self._pending).written.wait()

    # -- the writer ---------------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def _committed(self, batch: _Batch) -> None:
        await batch.written.wait()

    async def _write(self) -> None:
        """Commit what is queued, batch after batch, until nothing is."""
        while not self._pending.empty():
            if self._linger > 0:
                await asyncio.sleep(self._linger)
            batch, self._pending = self._pending, _Batch()
            self._writing = batch
            try:
                await self._commit(batch)
            finally:
                self._writing = None
                batch.written.set()

    async def _commit(self, batch: _Batch) -> None:
        opens = list(batch.opens.items())
        closes = [(t.row, e) for t, e in batch.closes if t.row is not None]
        records = [*batch.records, *(e for t, e in batch.closes if t.row is None)]
        moved: set[int] = set()
        progress: dict[int, Progress] | None = None
        if batch.progress:
            moved, self._moved = self._moved, set()
            progress = {row: self._live[row].snapshot() for row in moved if row in self._live}
        instance = str(self.instance)
        openings = [opening for _, (opening, _) in opens]
        rows: list[int | None]
        try:
            rows = list(
                await asyncio.to_thread(
                    self._ledger.write,
                    instance,
                    opens=openings,
                    closes=closes,
                    records=records,
                    progress=progress,
                )
            )
        except Exception:  # the database is away, or one row it refuses: each on its own, as it can
            log.warning("could not write %d ledger changes together; writing them one by one", len(batch))
            rows, progressed = await asyncio.to_thread(
                self._one_by_one, instance, openings, closes, records, progress
            )
            if not progressed:  # tried again at the next tick
                self._moved |= moved
        for (ticket, (_, live)), row in zip(opens, rows, strict=True):
            ticket.row, ticket.opening = row, None
            if row is not None and not ticket.ended:
                self._live[row] = live
                if ticket.moved:
                    self._moved.add(row)

    def _one_by_one(
        self,
        instance: str,
        openings: list[Opening],
        closes: list[tuple[int, UsageEntry]],
        records: list[UsageEntry],
        progress: dict[int, Progress] | None,
    ) -> tuple[list[int | None], bool]:
        """What a failed batch held, each in its own transaction: the rows opened (None for those the
        database would not take: recorded whole when they end), and whether the progress was."""
        rows: list[int | None] = []
        for o in openings:
            try:
                row = self._ledger.open(
                    o.entry, instance=instance, reservation=o.reservation, reserved_tokens=o.reserved_tokens
                )
                rows.append(row)
            except Exception:
                log.exception("could not open the ledger row of a request on %s", o.entry.deployment)
                rows.append(None)
        for row, entry in closes:
            try:
                self._ledger.close(row, entry)
            except Exception:  # metering must never break an answer already given; it is logged
                log.exception("could not record a request on %s", entry.deployment)
        for entry in records:
            try:
                self._ledger.record(entry)
            except Exception:
                log.exception("could not record a request on %s", entry.deployment)
        if progress is None:
            return rows, True
        try:
            self._ledger.progress(instance, progress)
        except Exception:  # the database is away for a moment: try again at the next tick
            log.warning("could not record the progress of %d requests", len(progress), exc_info=True)
            return rows, False
        return rows, True

    # -- the process ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Close what dead processes left open, then record progress every `interval_s`."""
        await self.recover()
        self._task = asyncio.create_task(self._run(), name="aimi-inflight")

    async def stop(self) -> None:
        """Record the last progress and wait until everything queued is written (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        while not self._pending.empty() or self._writing is not None:  # an `end` may come meanwhile
            await self.written()

    async def written(self) -> None:
        """Wait until every row begun or ended so far is in the database (not those begun or ended
        meanwhile: under steady traffic there always are some)."""
        if not self._pending.empty():
            await self._committed(self._pending)
        elif self._writing is not None:
            await self._committed(self._writing)

    async def flush(self) -> None:
        """Write the progress of the requests that moved, and stamp this process's rows."""
        if not self._live and not self._moved:
            return
        self._pending.progress = True
        self._wake()
        await self._committed(self._pending)

    async def recover(self) -> int:
        """Close the rows of dead processes; how many were closed."""
        closed = await asyncio.to_thread(self._ledger.interrupt, dead=self._dead)
        for row in closed:
            if row.reservation is None:
                continue
            admission = Admission(row.reservation, row.reserved_tokens or 0, 0, 0)
            try:
                await self._quotas.settle(
                    row.deployment, admission, row.prompt_tokens + row.completion_tokens
                )
            except Exception:
                log.warning("could not release the quota reservation of request %d", row.id, exc_info=True)
        if closed:
            log.warning(
                "closed %d ledger rows left in progress by a process that ended (as 'interrupted')",
                len(closed),
            )
        return len(closed)

    def _dead(self, instance: str, stamp: datetime) -> bool:
        other = Instance.parse(instance)
        if other is not None and other == self.instance:
            return False
        if other is not None and self.instance.knows_gone(other):
            return True
        return datetime.now(UTC) - stamp > timedelta(seconds=self._stale_after)

    async def _run(self) -> None:
        next_recovery = time.monotonic() + self._stale_after / 3
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
            if time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + self._stale_after / 3
                try:
                    await self.recover()
                except Exception:
                    log.warning("could not look for requests of processes that ended", exc_info=True)
