"""`aimi.platform.inflight`: a request's ledger row from admission on, its progress while it runs,
and the rows of processes that died closed as `interrupted` with their quota reservations settled."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from aimi.db.database import Database
from aimi.db.tables import UsageRecord
from aimi.platform.inflight import InFlight, Instance
from aimi.platform.quotas import Limits, MemoryQuotaStore
from aimi.platform.usage import Opening, Progress, UsageLedger
from tests.platform.test_usage import entry

pytestmark = pytest.mark.anyio


@dataclass
class Counting:
    """A request in progress, as a meter would report it."""

    prompt_tokens: int = 10
    completion_tokens: int = 0

    def snapshot(self) -> Progress:
        cost = Decimal(self.prompt_tokens + self.completion_tokens) / 1000
        return Progress(self.prompt_tokens, self.completion_tokens, cost)


def a_dead_process() -> Instance:
    """An instance on this machine whose process has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return Instance(Instance.current().host, int(child.stdout), "gone")


async def test_an_admitted_request_is_in_the_ledger_before_it_produces_anything(ledger: UsageLedger) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    row = await inflight.open(entry(prompt=12, completion=0, status=0), admission=None, live=Counting(12))
    [record] = ledger.records()
    assert record.id == row
    assert (record.state, record.prompt_tokens, record.completion_tokens) == ("in_progress", 12, 0)
    assert record.instance == str(inflight.instance)


async def test_a_request_begun_and_ended_before_its_row_is_written_is_recorded_once_and_whole(
    ledger: UsageLedger,
) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    live = Counting(10)
    ticket = inflight.begin(entry(prompt=10, completion=0, status=0), admission=None, live=live)
    live.completion_tokens = 3
    inflight.moved_ticket(ticket)  # before the row exists: remembered for the next flush
    inflight.end(ticket, entry(prompt=10, completion=5, finish_reason="stop", status=200))
    assert ticket.row is None  # nothing waited for the database so far
    await inflight.written()
    [record] = ledger.records()  # one insert of the whole row: it was never in progress
    assert (record.state, record.completion_tokens, record.status) == ("completed", 5, 200)


async def test_rows_keep_the_order_their_requests_arrived_in_however_the_writer_batches_them(
    ledger: UsageLedger,
) -> None:
    """The first request ends before the writer runs (its row is inserted whole, after the rows
    opened in the same transaction), the second is still running: the ledger lists the first first."""
    inflight = InFlight(ledger, MemoryQuotaStore())
    first_at, second_at = datetime.now(UTC) - timedelta(seconds=2), datetime.now(UTC) - timedelta(seconds=1)
    first = entry(prompt=10, completion=0, status=0, arrived_at=first_at)
    ticket = inflight.begin(first, admission=None, live=Counting())
    inflight.end(ticket, entry(prompt=10, completion=3, arrived_at=first_at))
    second = entry(prompt=10, completion=0, status=0, arrived_at=second_at)
    inflight.begin(second, admission=None, live=Counting())
    await inflight.written()
    rows = ledger.records()
    assert [(r.completion_tokens, r.state) for r in rows] == [(3, "completed"), (0, "in_progress")]
    assert [r.created_at for r in rows] == [first_at, second_at]
    await inflight.stop()


async def test_progress_reported_before_the_row_is_written_reaches_the_next_flush(
    ledger: UsageLedger,
) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    live = Counting(10)
    ticket = inflight.begin(entry(prompt=10, completion=0, status=0), admission=None, live=live)
    live.completion_tokens = 6
    inflight.moved_ticket(ticket)
    await inflight.written()
    await inflight.flush()
    [record] = ledger.records()
    assert (record.state, record.completion_tokens) == ("in_progress", 6)


async def test_a_row_that_could_not_be_opened_is_written_whole_when_the_request_ends(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())

    def database_away(*args: object, **kwargs: object) -> int:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(ledger, "write", database_away)
        patched.setattr(ledger, "open", database_away)
        ticket = inflight.begin(entry(prompt=10, completion=0, status=0), admission=None, live=Counting())
        await inflight.written()
    assert ticket.row is None and ledger.records() == []
    inflight.end(ticket, entry(prompt=10, completion=2, finish_reason="stop", status=200))
    await inflight.stop()  # shutdown waits for rows still being written
    [record] = ledger.records()
    assert (record.state, record.completion_tokens, record.status) == ("completed", 2, 200)


async def test_waiting_for_the_rows_written_so_far_does_not_wait_for_rows_begun_meanwhile(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    taken, release = threading.Event(), threading.Event()
    real = ledger.write

    def held(instance: str, *, opens: list[Opening], **kwargs: Any) -> list[int]:
        taken.set()
        if any(o.entry.prompt_tokens == 99 for o in opens):  # arrived meanwhile: its insert is slow
            release.wait(30)
        return real(instance, opens=opens, **kwargs)

    monkeypatch.setattr(ledger, "write", held)
    inflight.begin(entry(prompt=10, completion=0, status=0), admission=None, live=Counting())
    waiting = asyncio.ensure_future(inflight.written())
    assert await asyncio.to_thread(taken.wait, 10)  # the reader waits; the writer has the first row
    inflight.begin(entry(prompt=99, completion=0, status=0), admission=None, live=Counting())
    try:
        await asyncio.wait_for(waiting, 10)  # steady traffic never keeps a reader waiting
        assert [r.prompt_tokens for r in ledger.records()] == [10]
    finally:
        release.set()
        await inflight.stop()
    assert sorted(r.prompt_tokens for r in ledger.records()) == [10, 99]


async def test_progress_is_written_at_each_flush_with_its_cost(ledger: UsageLedger) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    live = Counting(10)
    row = await inflight.open(entry(prompt=10, completion=0), admission=None, live=live)
    assert row is not None
    live.completion_tokens = 7
    inflight.moved(row)
    await inflight.flush()
    [record] = ledger.records()
    assert (record.completion_tokens, record.cost, record.state) == (7, Decimal("0.017"), "in_progress")


async def test_a_closed_request_takes_its_final_figures(ledger: UsageLedger) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    row = await inflight.open(entry(prompt=10, completion=0), admission=None, live=Counting())
    assert row is not None
    await inflight.close(row, entry(prompt=10, completion=4, finish_reason="stop", status=200))
    [record] = ledger.records()
    assert (record.state, record.completion_tokens, record.status, record.finish_reason) == (
        "completed",
        4,
        200,
        "stop",
    )


async def test_rows_a_dead_process_left_are_interrupted_with_what_they_recorded(
    ledger: UsageLedger, database: Database
) -> None:
    dead = InFlight(ledger, MemoryQuotaStore(), instance=a_dead_process())
    live = Counting(10, 5)
    row = await dead.open(entry(prompt=10, completion=0), admission=None, live=live)
    assert row is not None
    dead.moved(row)
    await dead.flush()

    assert await InFlight(ledger, MemoryQuotaStore()).recover() == 1
    [record] = ledger.records()
    assert (record.state, record.finish_reason, record.prompt_tokens, record.completion_tokens) == (
        "interrupted",
        "interrupted",
        10,
        5,
    )
    assert record.cost == Decimal("0.015")


async def test_an_earlier_start_with_this_very_pid_counts_as_dead(ledger: UsageLedger) -> None:
    """In a container the server is pid 1 at every start."""
    me = Instance.current()
    earlier = InFlight(ledger, MemoryQuotaStore(), instance=Instance(me.host, os.getpid(), "earlier"))
    await earlier.open(entry(), admission=None, live=Counting())
    assert await InFlight(ledger, MemoryQuotaStore(), instance=me).recover() == 1


async def test_rows_of_a_live_process_are_left_alone_until_they_go_stale(
    ledger: UsageLedger, database: Database
) -> None:
    elsewhere = Instance("another-machine", 4242, "abc")
    other = InFlight(ledger, MemoryQuotaStore(), instance=elsewhere)
    await other.open(entry(), admission=None, live=Counting())
    mine = InFlight(ledger, MemoryQuotaStore(), stale_after_s=30)
    await mine.open(entry(), admission=None, live=Counting())
    assert await mine.recover() == 0

    with database.session() as s:
        old = datetime.now(UTC) - timedelta(seconds=31)
        s.execute(update(UsageRecord).where(UsageRecord.instance == str(elsewhere)).values(updated_at=old))
    assert await mine.recover() == 1
    assert sorted(r.state for r in ledger.records()) == ["in_progress", "interrupted"]


async def test_a_flush_keeps_a_waiting_request_from_going_stale(
    ledger: UsageLedger, database: Database
) -> None:
    mine = InFlight(ledger, MemoryQuotaStore())
    await mine.open(entry(), admission=None, live=Counting())
    with database.session() as s:
        s.execute(update(UsageRecord).values(updated_at=datetime.now(UTC) - timedelta(seconds=60)))
    await mine.flush()  # nothing moved, but the process is alive
    other = InFlight(ledger, MemoryQuotaStore(), instance=Instance("another-machine", 1, "x"))
    assert await other.recover() == 0


async def test_the_quota_reservation_of_an_interrupted_request_is_settled_to_what_it_used(
    ledger: UsageLedger,
) -> None:
    quotas = MemoryQuotaStore()
    limits = Limits(requests_per_minute=10, tokens_per_minute=1000)
    admission = await quotas.admit("chat", limits, 900)
    dead = InFlight(ledger, quotas, instance=a_dead_process())
    live = Counting(10, 20)
    row = await dead.open(entry(prompt=10, completion=0), admission=admission, live=live)
    assert row is not None
    dead.moved(row)
    await dead.flush()

    await InFlight(ledger, quotas).recover()
    after = await quotas.admit("chat", limits, 900)  # 30 used, not 900 reserved
    assert after.remaining_tokens == 1000 - 30 - 900


async def test_stop_writes_the_last_progress(ledger: UsageLedger) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore(), interval_s=60)
    await inflight.start()
    live = Counting(10)
    row = await inflight.open(entry(prompt=10, completion=0), admission=None, live=live)
    assert row is not None
    live.completion_tokens = 3
    inflight.moved(row)
    await inflight.stop()
    assert ledger.records()[0].completion_tokens == 3


async def test_the_rows_of_many_requests_are_written_in_one_transaction(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    writes: list[tuple[int, int, int]] = []
    real = ledger.write

    def counted(instance: str, **kwargs: Any) -> list[int]:
        writes.append(tuple(len(kwargs.get(kind) or ()) for kind in ("opens", "closes", "records")))  # type: ignore[arg-type]
        return real(instance, **kwargs)

    monkeypatch.setattr(ledger, "write", counted)
    tickets = [
        inflight.begin(entry(prompt=10 + i, completion=0, status=0), admission=None, live=Counting())
        for i in range(5)
    ]
    await inflight.written()
    assert writes == [(5, 0, 0)]
    assert sorted(r.prompt_tokens for r in ledger.records()) == [10, 11, 12, 13, 14]
    assert sorted(t.row for t in tickets) == sorted(r.id for r in ledger.records())  # type: ignore[type-var]
    for i, ticket in enumerate(tickets):
        inflight.end(ticket, entry(prompt=10 + i, completion=i, finish_reason="stop", status=200))
    await inflight.written()
    assert writes[1:] == [(0, 5, 0)]
    assert sorted((r.prompt_tokens, r.completion_tokens, r.state) for r in ledger.records()) == [
        (10 + i, i, "completed") for i in range(5)
    ]


async def test_a_request_ended_while_its_row_is_being_written_is_closed_after_it(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore())
    taken, release = threading.Event(), threading.Event()
    real = ledger.write

    def slow(instance: str, **kwargs: Any) -> list[int]:
        if kwargs.get("opens"):
            taken.set()
            release.wait(30)
        return real(instance, **kwargs)

    monkeypatch.setattr(ledger, "write", slow)
    live = Counting(10)
    ticket = inflight.begin(entry(prompt=10, completion=0, status=0), admission=None, live=live)
    assert await asyncio.to_thread(taken.wait, 10)  # the writer is writing the row
    inflight.end(ticket, entry(prompt=10, completion=4, finish_reason="stop", status=200))
    release.set()
    await inflight.stop()
    [record] = ledger.records()
    assert (record.id, record.state, record.completion_tokens) == (ticket.row, "completed", 4)


async def test_admission_waits_while_the_writer_is_full_and_goes_on_once_it_has_written(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    inflight = InFlight(ledger, MemoryQuotaStore(), max_pending=2)
    taken, release = threading.Event(), threading.Event()
    real = ledger.write

    def slow(instance: str, **kwargs: Any) -> list[int]:
        taken.set()
        release.wait(30)
        return real(instance, **kwargs)

    monkeypatch.setattr(ledger, "write", slow)
    inflight.begin(entry(prompt=1, completion=0, status=0), admission=None, live=Counting())
    assert await asyncio.to_thread(taken.wait, 10)  # the writer holds the first batch
    for prompt in (2, 3):
        inflight.begin(entry(prompt=prompt, completion=0, status=0), admission=None, live=Counting())
    waiting = asyncio.ensure_future(inflight.room())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    release.set()
    await asyncio.wait_for(waiting, 10)
    await inflight.stop()
    assert sorted(r.prompt_tokens for r in ledger.records()) == [1, 2, 3]


def test_an_instance_reads_back_from_its_text() -> None:
    me = Instance.current()
    assert Instance.parse(str(me)) == me
    assert Instance.parse("nonsense") is None
