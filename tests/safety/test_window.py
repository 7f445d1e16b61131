from __future__ import annotations

import pytest

from aimi.safety.base import Category, FilterResult, Severity
from aimi.safety.policy import Decision, Direction, SafetyPolicy, decide
from aimi.safety.window import OutputWindow

pytestmark = pytest.mark.anyio


class SpyCheck:
    """A check that flags violence when the text contains `bad phrase` and records what it saw."""

    def __init__(self, phrase: str = "bad phrase") -> None:
        self.phrase = phrase
        self.seen: list[str] = []

    async def __call__(self, text: str) -> Decision:
        self.seen.append(text)
        severity = Severity.HIGH if self.phrase in text else Severity.SAFE
        result = FilterResult(filter="spy", evaluated=frozenset({Category.VIOLENCE}),
                              severities={Category.VIOLENCE: severity})  # fmt: skip
        return decide(SafetyPolicy(), Direction.OUTPUT, [result])


async def feed_all(window: OutputWindow, pieces: list[str]) -> int | None:
    """Feed pieces until the window blocks; the number of characters fed by then (None: never)."""
    fed = 0
    for piece in pieces:
        fed += len(piece)
        decision = await window.feed(piece)
        if decision is not None and decision.filtered:
            return fed
    decision = await window.close()
    return fed if decision is not None and decision.filtered else None


async def test_nothing_is_checked_before_every_characters_arrive() -> None:
    spy = SpyCheck()
    window = OutputWindow(spy, size=40, every=10)
    assert await window.feed("123456789") is None
    assert spy.seen == []
    assert await window.feed("0") is not None
    assert spy.seen == ["1234567890"]


async def test_a_phrase_split_across_chunks_is_found() -> None:
    spy = SpyCheck()
    window = OutputWindow(spy, size=40, every=10)
    pieces = ["all fine here, ", "ba", "d ", "phr", "ase", " and more text after it"]
    assert await feed_all(window, pieces) is not None
    assert window.filtered


async def test_harmful_text_is_caught_within_every_characters_of_its_end() -> None:
    every = 16
    text = "lorem ipsum " * 20 + "bad phrase" + " dolor sit amet" * 20
    end = text.index("bad phrase") + len("bad phrase")
    for chunk in (1, 3, 7):
        window = OutputWindow(SpyCheck(), size=64, every=every)
        caught = await feed_all(window, [text[i : i + chunk] for i in range(0, len(text), chunk)])
        assert caught is not None
        assert end <= caught < end + every + chunk


async def test_each_check_sees_the_new_text_and_the_overlap_before_it() -> None:
    spy = SpyCheck()
    window = OutputWindow(spy, size=30, every=10)
    text = "".join(f"{i:02d}" for i in range(50))
    for i in range(0, len(text), 5):
        await window.feed(text[i : i + 5])
    assert all(len(seen) <= 30 for seen in spy.seen)
    assert all(len(seen) == 30 for seen in spy.seen[2:])
    assert "".join(seen[-10:] for seen in spy.seen) == text


async def test_a_chunk_longer_than_the_window_is_checked_whole() -> None:
    spy = SpyCheck()
    window = OutputWindow(spy, size=20, every=10)
    long_chunk = "x" * 100 + "bad phrase" + "y" * 100
    decision = await window.feed(long_chunk)
    assert decision is not None and decision.filtered
    assert spy.seen == [long_chunk]


async def test_close_checks_the_tail_and_returns_the_whole_stream_decision() -> None:
    spy = SpyCheck()
    window = OutputWindow(spy, size=40, every=30)
    await window.feed("short and bad phrase")
    assert spy.seen == []
    decision = await window.close()
    assert decision is not None and decision.filtered
    assert decision.categories[Category.VIOLENCE].severity is Severity.HIGH


async def test_closing_an_empty_stream_checks_nothing() -> None:
    spy = SpyCheck()
    assert await OutputWindow(spy).close() is None
    assert spy.seen == []


async def test_after_blocking_nothing_more_is_checked() -> None:
    spy = SpyCheck()
    window = OutputWindow(spy, size=20, every=10)
    await window.feed("bad phrase and more")
    calls = len(spy.seen)
    decision = await window.feed("anything else at all")
    assert decision is not None and decision.filtered
    assert len(spy.seen) == calls


async def test_empty_pieces_and_odd_characters_never_crash() -> None:
    window = OutputWindow(SpyCheck(), size=20, every=10)
    for piece in ["", "\u200b", "日本語", "\x00", "🙂" * 30, ""]:
        await window.feed(piece)
    assert await window.close() is not None


def test_the_window_must_be_longer_than_its_step() -> None:
    with pytest.raises(ValueError, match="every < size"):
        OutputWindow(SpyCheck(), size=10, every=10)
