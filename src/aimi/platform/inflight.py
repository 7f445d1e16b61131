"""The requests this process is serving, kept in the usage ledger while they run, so that a process
that dies (`kill -9`, a power cut, the OOM killer) loses no bill.

A request's row is written when it is admitted (`in_progress`, its prompt tokens and its quota
reservation), beside its first steps rather than before them, and closed when it ends, after its
answer; the server's shutdown waits for both. How far it got is recorded every `interval_s`, in one
transaction for every request that moved, and the same transaction stamps all of this process's
rows as alive. Rows that a dead process left `in_progress` are closed as `interrupted`, with the
tokens and cost they last recorded, and their quota reservations are settled to those tokens. That
happens at start and then every `stale_after_s / 3` seconds.

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
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aimi.platform.quotas import Admission, QuotaStore
from aimi.platform.usage import Progress, UsageEntry, UsageLedger

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


@dataclass(eq=False)
class Ticket:
    """A request's place in the ledger while its row is written (`InFlight.begin`)."""

    row: int | None = None
    opening: asyncio.Task[None] | None = None
    moved: bool = False


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
    ) -> None:
        self.instance = instance or Instance.current()
        self._ledger = ledger
        self._quotas = quotas
        self._interval = interval_s
        self._stale_after = stale_after_s
        self._live: dict[int, Live] = {}
        self._moved: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def open(self, entry: UsageEntry, *, admission: Admission | None, live: Live) -> int | None:
        """Write the row of a request just admitted; its id, or None when the database would not take
        it (the request is then recorded whole when it ends, as before rows were kept in progress)."""
        try:
            row = await asyncio.to_thread(
                self._ledger.open,
                entry,
                instance=str(self.instance),
                reservation=admission.id if admission is not None else None,
                reserved_tokens=admission.tokens if admission is not None else 0,
            )
        except Exception:
            log.exception("could not open the ledger row of a request on %s", entry.deployment)
            return None
        self._live[row] = live
        return row

    def begin(self, entry: UsageEntry, *, admission: Admission | None, live: Live) -> Ticket:
        """`open` without waiting for the database: the row is written beside the answer's first
        steps, so a request does not wait for a commit before its engine starts. The ticket goes to
        `moved` and `end`."""
        ticket = Ticket()
        ticket.opening = self._track(self._begin(ticket, entry, admission, live))
        return ticket

    async def _begin(
        self, ticket: Ticket, entry: UsageEntry, admission: Admission | None, live: Live
    ) -> None:
        ticket.row = await self.open(entry, admission=admission, live=live)
        if ticket.row is not None and ticket.moved:
            self._moved.add(ticket.row)

    def end(self, ticket: Ticket, entry: UsageEntry) -> None:
        """The request is over: its row is closed (or, when it could not be opened, written whole)
        in the background, after the open it follows; `stop` waits for both. The answer does not
        wait for the commit."""
        self._track(self._end(ticket, entry))

    async def _end(self, ticket: Ticket, entry: UsageEntry) -> None:
        if ticket.opening is not None:
            await asyncio.shield(ticket.opening)
        try:
            if ticket.row is None:
                await asyncio.to_thread(self._ledger.record, entry)
            else:
                await self.close(ticket.row, entry)
        except Exception:  # metering must never break an answer already given; it is logged
            log.exception("could not record a request on %s", entry.deployment)

    def _track(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

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

    async def close(self, row: int, entry: UsageEntry) -> None:
        """The request is over: its final figures. Runs to its end even if the caller is cancelled,
        and `stop` waits for it."""
        self._live.pop(row, None)
        self._moved.discard(row)
        await asyncio.shield(self._track(asyncio.to_thread(self._ledger.close, row, entry)))

    async def start(self) -> None:
        """Close what dead processes left open, then record progress every `interval_s`."""
        await self.recover()
        self._task = asyncio.create_task(self._run(), name="aimi-inflight")

    async def stop(self) -> None:
        """Record the last progress and wait for the rows being closed (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._closing:  # an `end` may follow a `begin` still in this set
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self.flush()

    async def written(self) -> None:
        """Wait until every row begun or ended so far is in the database (not those begun or ended
        meanwhile: under steady traffic there always are some)."""
        if self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    async def flush(self) -> None:
        """Write the progress of the requests that moved, and stamp this process's rows."""
        if not self._live:
            return
        moved, self._moved = self._moved, set()
        rows = {row: self._live[row].snapshot() for row in moved if row in self._live}
        try:
            await asyncio.to_thread(self._ledger.progress, str(self.instance), rows)
        except Exception:  # the database is away for a moment: try again at the next tick
            self._moved |= moved
            log.warning("could not record the progress of %d requests", len(rows), exc_info=True)

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
