"""A scripted engine for tests of the layers above the engine (never what `aimi serve` runs)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from aimi.engines.base import (
    Conversation,
    EngineStats,
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    ModelCard,
    ModelInfo,
    Token,
    TokenEvent,
    TokenLogprob,
    ToolCall,
    ToolCalls,
)

FAKE_INFO = ModelInfo(
    name="Fake-Model",
    provider="aimi-tests",
    context_length=256,
    chat_template=(
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    ),
    bos_token="",
    eos_token="",
    add_bos=False,
    vocab_size=256,
)


class ScriptedEngine:
    """A token engine that answers every request with the same pieces (one byte string per token),
    then `finish`."""

    port: Literal["token"] = "token"

    def __init__(
        self,
        pieces: Sequence[bytes] = (b"Hello", b" world", b"!"),
        *,
        finish: FinishReason = "stop",
        delay_s: float = 0.0,
    ) -> None:
        self.pieces = list(pieces)
        self.finish = finish
        self.delay_s = delay_s
        self.requests: list[GenerationRequest] = []
        self.cancelled = 0
        self.started = False

    @property
    def info(self) -> ModelInfo:
        return FAKE_INFO

    async def start(self) -> None:
        self.started = True

    async def stop(self, grace_s: float = 0.0) -> None:
        self.started = False

    def stats(self) -> EngineStats:
        return EngineStats(slots=1, requests=len(self.requests))

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return list(text.encode("utf-8"))

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        self.requests.append(request)
        produced = 0
        completed = False
        try:
            for piece in self.pieces[: request.max_tokens]:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                produced += 1
                top = (TokenLogprob(produced, piece, -0.5),) if request.logprobs else ()
                yield Token(produced, piece, -0.25 if request.logprobs is not None else None, top)
            reason: FinishReason = "length" if len(self.pieces) > request.max_tokens else self.finish
            completed = True
            yield Finish(reason, request.prompt_tokens, produced)
        finally:
            if not completed:
                self.cancelled += 1


class RoomyEngine(ScriptedEngine):
    """The scripted engine with a context long enough for Mistral's safety prompt."""

    @property
    def info(self) -> ModelInfo:
        return dataclasses.replace(FAKE_INFO, context_length=4096)


class SelfTemplatingEngine:
    """A chat engine (as a server aimi forwards to is): it takes the conversation, answers with the
    same pieces, may end with `calls` (as the server made them: `{"id", "name", "arguments"}`), and
    reports `usage` when given."""

    port: Literal["chat"] = "chat"

    def __init__(
        self,
        pieces: Sequence[bytes] = (b"Hello", b" world", b"!"),
        *,
        calls: Sequence[dict[str, Any]] = (),
        usage: tuple[int, int] | None = None,
        finish: str = "stop",
    ) -> None:
        self.pieces = list(pieces)
        self.finish = finish
        self.calls = list(calls)
        self.usage = usage
        self.requests: list[Conversation] = []
        self.started = False

    @property
    def info(self) -> ModelCard:
        return ModelCard(name=FAKE_INFO.name, provider=FAKE_INFO.provider, context_length=4096)

    async def start(self) -> None:
        self.started = True

    async def stop(self, grace_s: float = 0.0) -> None:
        self.started = False

    def stats(self) -> EngineStats:
        return EngineStats(slots=1, requests=len(self.requests))

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def generate(self, request: Conversation) -> AsyncIterator[Event]:
        self.requests.append(request)
        for piece in self.pieces:
            yield Token(-1, piece)
        if self.calls:
            yield ToolCalls(tuple(ToolCall(c.get("id", ""), c["name"], c["arguments"]) for c in self.calls))
        prompt_tokens, completion_tokens = self.usage or (request.estimated_prompt_tokens, len(self.pieces))
        yield Finish(self.finish, prompt_tokens, completion_tokens)  # type: ignore[arg-type]
