"""Running one generation to its end, for the engine tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aimi.engines.base import Event, Finish, Token


async def events_of(engine: Any, request: Any) -> list[Event]:
    """Every event of one generation, through whichever port the engine implements."""
    events: list[Event] = []
    async for event in engine.generate(request):
        events.append(event)
        if isinstance(event, Finish):
            return events
    raise AssertionError("no Finish event")


async def run(engine: Any, request: Any) -> tuple[list[Token], Finish]:
    """The tokens of one generation, and its Finish."""
    events = await events_of(engine, request)
    finish = events[-1]
    assert isinstance(finish, Finish)
    return [e for e in events if isinstance(e, Token)], finish


async def cancel(engine: Any, stream: AsyncIterator[Event]) -> None:
    """Close a generation early and wait until the engine thread has released its slot (at its next
    step)."""
    await stream.aclose()  # type: ignore[attr-defined]  # the port's iterator is an async generator
    for _ in range(200):
        if engine.stats().running == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.stats().running == 0
