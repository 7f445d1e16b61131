"""A scripted engine for tests of the layers above the engine (never what `aimi serve` runs)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aimi.engines.base import (
    TOOL_CALLS_TOKEN,
    EngineStats,
    Event,
    Finish,
    GenerationRequest,
    ModelInfo,
    Token,
    TokenLogprob,
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
    """Answers every request with the same pieces (one byte string per token), then `finish`."""

    def __init__(
        self,
        pieces: Sequence[bytes] = (b"Hello", b" world", b"!"),
        *,
        finish: str = "stop",
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

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
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
            reason = "length" if len(self.pieces) > request.max_tokens else self.finish
            completed = True
            yield Finish(reason, request.prompt_tokens, produced)  # type: ignore[arg-type]
        finally:
            if not completed:
                self.cancelled += 1


class RoomyEngine(ScriptedEngine):
    """The scripted engine with a context long enough for Mistral's safety prompt."""

    @property
    def info(self) -> ModelInfo:
        return dataclasses.replace(FAKE_INFO, context_length=4096)


class SelfTemplatingEngine(ScriptedEngine):
    """The scripted engine as one that templates itself (a server aimi forwards to): it takes the
    conversation, may end with `calls` (as the server made them), and reports `usage` when given."""

    def __init__(
        self,
        pieces: Sequence[bytes] = (b"Hello", b" world", b"!"),
        *,
        calls: Sequence[dict[str, Any]] = (),
        usage: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(pieces)
        self.calls = list(calls)
        self.usage = usage

    @property
    def info(self) -> ModelInfo:
        return dataclasses.replace(FAKE_INFO, chat_template=None, context_length=4096, templates_itself=True)

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return [-1] * len(text.split())

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        assert request.conversation is not None and request.prompt == [] and request.grammar is None
        self.requests.append(request)
        for piece in self.pieces:
            yield Token(-1, piece)
        if self.calls:
            yield Token(TOOL_CALLS_TOKEN, json.dumps(self.calls).encode())
        prompt_tokens, completion_tokens = self.usage or (request.prompt_tokens, len(self.pieces))
        yield Finish("stop", prompt_tokens, completion_tokens)
