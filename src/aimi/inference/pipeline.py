"""The chat pipeline: render the prompt, check it fits, run the engine, assemble the answer.

One generation path: the engine always streams; `complete` is `open` folded.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncGenerator, AsyncIterator

from aimi.engines.base import Engine, Event, Finish, GenerationRequest, Token
from aimi.errors import ContextLengthExceeded
from aimi.inference.chat import (
    ChatEvent,
    ChatRequest,
    ChatResult,
    Delta,
    Done,
    TokenLogprobs,
    Usage,
)
from aimi.inference.prompts import PromptRenderer, with_safe_prompt
from aimi.inference.stops import StopMatcher

ChatStream = AsyncGenerator[ChatEvent, None]


class ChatService:
    """Runs chat requests against one engine with one prompt renderer."""

    def __init__(self, *, engine: Engine, renderer: PromptRenderer) -> None:
        self.engine = engine
        self.renderer = renderer

    def prepare(self, request: ChatRequest) -> GenerationRequest:
        """Render and size-check the prompt; every error here comes before any token is generated."""
        messages = with_safe_prompt(request.messages) if request.safe_prompt else request.messages
        prompt = self.renderer.render(messages)
        limit = self.engine.info.context_length
        if len(prompt) >= limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, your messages "
                f"resulted in {len(prompt)} tokens. Please reduce the length of the messages.",
                param="messages",
            )
        max_tokens = request.max_tokens if request.max_tokens is not None else limit - len(prompt)
        if len(prompt) + max_tokens > limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt) + max_tokens} tokens ({len(prompt)} in the messages, {max_tokens} in "
                "the completion). Please reduce the length of the messages or completion.",
                param="max_tokens",
            )
        return GenerationRequest(
            prompt=prompt, sampling=request.sampling, max_tokens=max_tokens, logprobs=request.logprobs
        )

    async def open(self, request: ChatRequest) -> ChatStream:
        """Start generating. Admission errors (busy, shutting down) raise here, before a response
        is committed; the returned stream must be iterated to its end or closed."""
        generation = self.prepare(request)
        if generation.max_tokens == 0:
            return _empty(len(generation.prompt))
        events = aiter(self.engine.generate(generation))
        try:
            first = await anext(events)
        except BaseException:
            await _close(events)
            raise
        return _assemble(request, len(generation.prompt), first, events)

    async def complete(self, request: ChatRequest) -> ChatResult:
        stream = await self.open(request)
        parts: list[str] = []
        logprobs: list[TokenLogprobs] = []
        done: Done | None = None
        async for event in stream:
            if isinstance(event, Delta):
                parts.append(event.text)
                logprobs.extend(event.logprobs)
            else:
                done = event
        assert done is not None
        return ChatResult(
            text="".join(parts),
            finish_reason=done.finish_reason,
            usage=done.usage,
            logprobs=tuple(logprobs) if request.logprobs is not None else None,
        )


async def _empty(prompt_tokens: int) -> ChatStream:
    yield Done("length", Usage(prompt_tokens, 0))


async def _close(events: AsyncIterator[Event]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def _assemble(
    request: ChatRequest, prompt_tokens: int, first: Event, events: AsyncIterator[Event]
) -> ChatStream:
    """Engine tokens to text deltas: UTF-8 reassembled, stop sequences cut, logprobs aligned."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stops = StopMatcher(request.stop)
    want_logprobs = request.logprobs is not None
    pending: list[TokenLogprobs] = []
    produced = 0  # characters decoded so far, held back or not
    emitted = 0  # characters handed out
    tokens = 0

    def release(limit: int) -> tuple[TokenLogprobs, ...]:
        ready = [lp for lp in pending if lp.offset < limit]
        del pending[: len(ready)]
        return tuple(ready)

    try:
        event: Event | None = first
        while event is not None:
            if isinstance(event, Token):
                tokens += 1
                text = decoder.decode(event.piece)
                if want_logprobs:
                    pending.append(
                        TokenLogprobs(
                            token=event.piece.decode("utf-8", "replace"),
                            logprob=event.logprob if event.logprob is not None else 0.0,
                            offset=produced,
                            top=tuple((t.piece.decode("utf-8", "replace"), t.logprob) for t in event.top),
                        )
                    )
                produced += len(text)
                out = stops.feed(text)
                emitted += len(out)
                released = release(emitted) if want_logprobs else ()
                if out or released:
                    yield Delta(out, released)
                if stops.stopped:
                    yield Done("stop", Usage(prompt_tokens, tokens))
                    return
            else:
                finish: Finish = event
                out = stops.feed(decoder.decode(b"", final=True))
                out += stops.flush()
                emitted += len(out)
                released = release(emitted if stops.stopped else produced + 1) if want_logprobs else ()
                if out or released:
                    yield Delta(out, released)
                reason = "stop" if stops.stopped else finish.reason
                yield Done(reason, Usage(finish.prompt_tokens, finish.completion_tokens), finish.message)
                return
            event = await anext(events, None)
    finally:
        await _close(events)
