from __future__ import annotations

import pytest

from aimi.engines.base import Sampling
from aimi.errors import ContextLengthExceeded
from aimi.inference.chat import ChatRequest, Delta, Done, Message
from aimi.inference.pipeline import ChatService
from aimi.inference.prompts import ChatTemplateRenderer
from tests.fakes import FAKE_INFO, ScriptedEngine

pytestmark = pytest.mark.anyio


def service(engine: ScriptedEngine) -> ChatService:
    return ChatService(
        engine=engine,
        renderer=ChatTemplateRenderer(FAKE_INFO.chat_template or "", FAKE_INFO, engine.tokenize),
    )


def ask(text: str = "hi", **kwargs: object) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), sampling=Sampling(temperature=0), **kwargs)  # type: ignore[arg-type]


async def test_a_character_split_across_tokens_is_reassembled() -> None:
    euro = "€".encode()
    engine = ScriptedEngine([b"price: ", euro[:1], euro[1:], b"5"])
    result = await service(engine).complete(ask(max_tokens=10))
    assert result.text == "price: €5"
    assert result.usage.completion_tokens == 4


async def test_stop_sequences_cut_the_text_and_end_with_stop() -> None:
    engine = ScriptedEngine([b"one ", b"two ", b"thr", b"ee four"])
    result = await service(engine).complete(ask(max_tokens=10, stop=("three",)))
    assert result.text == "one two "
    assert result.finish_reason == "stop"
    assert result.usage.completion_tokens == 4


async def test_logprobs_cover_exactly_the_emitted_tokens() -> None:
    engine = ScriptedEngine([b"a", b"b", b"STOP", b"c"])
    result = await service(engine).complete(ask(max_tokens=10, stop=("STOP",), logprobs=1))
    assert result.text == "ab"
    assert result.logprobs is not None
    assert [lp.token for lp in result.logprobs] == ["a", "b"]
    assert [lp.offset for lp in result.logprobs] == [0, 1]


async def test_max_tokens_zero_answers_empty_without_running_the_engine() -> None:
    engine = ScriptedEngine()
    result = await service(engine).complete(ask(max_tokens=0))
    assert (result.text, result.finish_reason, result.usage.completion_tokens) == ("", "length", 0)
    assert engine.requests == []


async def test_max_tokens_defaults_to_what_the_context_has_left() -> None:
    engine = ScriptedEngine()
    await service(engine).complete(ask())
    request = engine.requests[0]
    assert len(request.prompt) + request.max_tokens == FAKE_INFO.context_length


async def test_a_prompt_and_max_tokens_over_the_context_is_refused_before_generating() -> None:
    engine = ScriptedEngine()
    with pytest.raises(ContextLengthExceeded, match="maximum context length is 256 tokens"):
        await service(engine).complete(ask(max_tokens=250))
    assert engine.requests == []


async def test_closing_a_stream_early_cancels_the_generation() -> None:
    engine = ScriptedEngine([b"a"] * 40, delay_s=0.01)
    stream = (await service(engine).open(ask(max_tokens=40))).events
    seen = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert all(isinstance(e, Delta) for e in seen)
    assert engine.cancelled == 1


async def test_a_stream_ends_with_done_carrying_usage() -> None:
    engine = ScriptedEngine([b"x", b"y"])
    stream = (await service(engine).open(ask(max_tokens=5))).events
    events = [event async for event in stream]
    assert isinstance(events[-1], Done)
    assert events[-1].usage.completion_tokens == 2
    assert events[-1].finish_reason == "stop"
