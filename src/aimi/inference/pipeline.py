"""The chat pipeline: render the prompt, check it fits, constrain it, run the engine, assemble the
answer (text, stop sequences, tool calls, logprobs).

One generation path: the engine always streams; `complete` is `open` folded.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, Literal, Protocol

from aimi.engines.base import (
    ChatEngine,
    ChatModel,
    Conversation,
    Event,
    Finish,
    GenerationRequest,
    Grammar,
    Token,
    TokenEngine,
    ToolCall,
    ToolCalls,
)
from aimi.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    EngineUnavailable,
    InvalidRequest,
    RateLimited,
    ledger_status,
)
from aimi.inference.chat import (
    Alternative,
    ChatEvent,
    ChatRequest,
    ChatResult,
    Delta,
    Done,
    Message,
    TokenLogprobs,
    ToolChoice,
    Usage,
)
from aimi.inference.prompts import PromptRenderer, estimate_prompt_tokens, with_safe_prompt
from aimi.inference.schemas import json_object_gbnf, schema_to_gbnf
from aimi.inference.stops import StopMatcher
from aimi.inference.tools import ToolFormat, calls_as_text, server_calls
from aimi.platform.metering import QuotaState
from aimi.safety import Decision, OutputWindow, SafetyService
from aimi.safety.config import verdict_record

ChatStream = AsyncGenerator[ChatEvent, None]
AutoToolChoice = Literal["model", "eager"]


class Meter(Protocol):
    """Quota admission and metering for one request (implemented by the platform)."""

    async def admit(self, tokens: int, *, prompt_tokens: int = 0) -> QuotaState:
        """Reserve `tokens` (prompt + max_tokens); raises RateLimited when over quota."""
        ...

    def progress(self, completion_tokens: int) -> None:
        """How many tokens the answer has so far (called for every token: must be cheap)."""
        ...

    async def finish(
        self,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        finish_reason: str | None,
        status: int,
        safety: dict[str, Any] | None = None,
        cached_tokens: int = 0,
    ) -> None:
        """Settle the reservation and record the request, however it ended."""
        ...


@dataclasses.dataclass
class Answer:
    """A started answer: its events, and what content safety said of the prompt."""

    events: ChatStream
    prompt_safety: Decision | None = None


class _Afterwards:
    """Work that must finish even when the request around it is cancelled (a client that went away):
    it runs as its own task, and is awaited unless the caller is cancelled meanwhile."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)


@dataclasses.dataclass(frozen=True)
class _Prepared:
    """A request ready for its engine: what the engine gets, what the quota reserves, and how the
    answer's text is read for tool calls (None: calls do not come as text)."""

    request: GenerationRequest | Conversation
    prompt_tokens: int
    max_tokens: int
    generate: Callable[[], AsyncIterator[Event]]
    text_calls: ToolFormat | None


_INLINE_PREPARE_CHARS = 4096
"""Up to this much text, a chat engine's request is prepared on the event loop (a few hundred µs at most)."""


class ChatService:
    """Runs chat requests against one engine: a token engine with its prompt renderer (templates,
    tool and response-format grammars are aimi's), or a chat engine without one (it gets the
    conversation, and enforces tools and response formats itself).

    `auto_tool_choice="eager"` is for models too small to decide to call a tool themselves: with tools
    on offer and `tool_choice: auto`, a turn that answers a user message starts with a call (token
    engines only: a server that templates itself decides as it does)."""

    def __init__(
        self,
        *,
        engine: ChatModel,
        renderer: PromptRenderer | None = None,
        auto_tool_choice: AutoToolChoice = "model",
        safety: SafetyService | None = None,
    ) -> None:
        if (renderer is None) != (engine.port == "chat"):
            raise ValueError("a prompt renderer goes with a token engine, and only then")
        self.engine = engine
        self.renderer = renderer
        self.auto_tool_choice = auto_tool_choice
        self.safety = safety
        self._afterwards = _Afterwards()

    def prepare(self, request: ChatRequest) -> GenerationRequest | Conversation:
        """What the engine would be given for `request` (errors as `open` raises them)."""
        return self._prepare(request).request

    def _prepare(self, request: ChatRequest) -> _Prepared:
        """Render, constrain and size-check; every error here comes before any token is generated."""
        messages = with_safe_prompt(request.messages) if request.safe_prompt else request.messages
        _check_response_format(request)
        engine, renderer = self.engine, self.renderer
        if engine.port == "chat":
            return self._conversation(engine, request, messages)
        assert renderer is not None  # the constructor pairs them
        return self._rendered(engine, renderer, request, messages)

    def _rendered(
        self,
        engine: TokenEngine,
        renderer: PromptRenderer,
        request: ChatRequest,
        messages: tuple[Message, ...],
    ) -> _Prepared:
        grammar = self._grammar(request, renderer.tool_format)
        prompt = renderer.render(messages, request.tools if request.calls_tools else ())
        limit = engine.info.context_length
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
        sampling = request.sampling
        if grammar is not None and sampling.ignore_eos:
            sampling = dataclasses.replace(sampling, ignore_eos=False)  # a finished grammar must end
        generation = GenerationRequest(
            prompt=prompt,
            sampling=sampling,
            max_tokens=max_tokens,
            logprobs=request.logprobs,
            grammar=grammar,
        )
        return _Prepared(
            generation,
            len(prompt),
            max_tokens,
            lambda: engine.generate(generation),
            renderer.tool_format if request.calls_tools else None,
        )

    def _conversation(
        self, engine: ChatEngine, request: ChatRequest, messages: tuple[Message, ...]
    ) -> _Prepared:
        """For a chat engine: the conversation and its options as they are, no grammar. Its server
        judges the context length; the prompt's length here is an estimate, and without `max_tokens`
        what the context has left by that estimate is reserved (at least 1)."""
        wire = tuple(m.as_openai() for m in messages)
        tools = tuple(t.as_openai() for t in request.tools)
        estimate = estimate_prompt_tokens(wire, tools, engine.count_tokens)
        reserved = request.max_tokens
        if reserved is None:
            reserved = max(1, engine.info.context_length - estimate)
        conversation = Conversation(
            messages=wire,
            sampling=request.sampling,
            estimated_prompt_tokens=estimate,
            reserved_tokens=reserved,
            max_tokens=request.max_tokens,
            logprobs=request.logprobs,
            tools=tools,
            tool_choice=request.tool_choice.as_openai() if tools else None,
            parallel_tool_calls=request.parallel_calls,
            response_format=request.response_format.as_openai(),
            stop=request.stop,
            streamed=request.stream,
        )
        return _Prepared(conversation, estimate, reserved, lambda: engine.generate(conversation), None)

    def _cheap_to_prepare(self, request: ChatRequest) -> bool:
        """A short conversation for a chat engine is only copied and counted (microseconds): not worth
        the hop to a worker thread, which costs milliseconds on a machine whose cores the engines
        keep busy. Anything with a grammar or a template, or long, goes to a thread."""
        if self.engine.port != "chat" or request.tools or request.response_format.kind == "json_schema":
            return False
        return sum(len(m.content or "") for m in request.messages) <= _INLINE_PREPARE_CHARS

    def _eager_answer(self, request: ChatRequest) -> ChatRequest:
        """With eager tool choice, a turn after a tool result answers in text: a model too small to
        decide would otherwise call again now and then, and the tool loop would not end. The call it
        is made to start on a user's turn is one call, unless the request asks for calls in
        parallel: left to list calls, such a model now and then repeats the same one until the
        answer's tokens run out."""
        last = request.messages[-1].role if request.messages else "user"
        eager = self.auto_tool_choice == "eager" and self.engine.port == "token"  # not for a server's own
        if not eager or request.tool_choice.mode != "auto":
            return request
        if last == "tool":
            return dataclasses.replace(request, tool_choice=ToolChoice("none"))
        if last == "user" and request.parallel_tool_calls is None:
            return dataclasses.replace(request, parallel_tool_calls=False)
        return request

    def _grammar(self, request: ChatRequest, tool_format: ToolFormat) -> Grammar | None:
        fmt = request.response_format
        if request.calls_tools:
            choice = request.tool_choice
            offered = request.tools
            if choice.function is not None:
                offered = tuple(t for t in request.tools if t.name == choice.function)
            last = request.messages[-1].role if request.messages else "user"
            forced = choice.mode == "required" or (self.auto_tool_choice == "eager" and last == "user")
            return tool_format.grammar(offered, parallel=request.parallel_calls, lazy=not forced)
        if fmt.kind == "json_object":
            return Grammar(json_object_gbnf())
        if fmt.kind == "json_schema":
            return Grammar(schema_to_gbnf(fmt.schema, where="response_format.json_schema.schema"))
        return None

    async def open(self, request: ChatRequest, meter: Meter | None = None) -> Answer:
        """Start answering: prompt checks, quota, the prompt's content safety and engine admission
        all happen here and raise before a response is committed. The returned events must be
        iterated to their end or closed; they meter the request when it ends, however it ends."""
        request = self._eager_answer(request)
        if self._cheap_to_prepare(request):
            generation = self._prepare(request)
        else:
            generation = await asyncio.to_thread(self._prepare, request)  # grammars take CPU time
        prompt_tokens = generation.prompt_tokens
        if meter is not None:
            try:
                await meter.admit(prompt_tokens + generation.max_tokens, prompt_tokens=prompt_tokens)
            except RateLimited:
                await self._refused(meter, RateLimited.status, None)
                raise
        try:
            return await self._start(request, generation, meter)
        except ContentFiltered:
            raise  # metered where it was decided, with the verdict
        except BaseException as exc:  # an engine that refused, or a client that went away meanwhile
            await self._refused(meter, ledger_status(exc), None)
            raise

    async def _start(self, request: ChatRequest, generation: _Prepared, meter: Meter | None) -> Answer:
        prompt_tokens = generation.prompt_tokens
        prompt_safety = None
        if self.safety is not None:
            prompt_safety = await self.safety.check_input(
                _prompt_text(request), untrusted=_prompt_text(request, trusted=("system",))
            )
            if prompt_safety.filtered:
                await self._refused(meter, ContentFiltered.status, {"input": verdict_record(prompt_safety)})
                raise ContentFiltered(prompt_safety)
        if generation.max_tokens == 0:
            return Answer(
                self._metered(_empty(prompt_tokens), meter, prompt_tokens, prompt_safety), prompt_safety
            )
        events = aiter(generation.generate())
        try:
            first = await anext(events)
            if isinstance(first, Finish) and first.reason == "error" and first.completion_tokens == 0:
                # Ended before its first token (a queued request at shutdown, a failed decode): the
                # answer has not started, so it can still be an error the client may retry.
                raise EngineUnavailable(
                    f"The request could not be served: {first.message or 'engine error'}."
                )
        except BaseException:
            await _close(events)
            raise
        progress = _Progress(meter)
        stream = _assemble(request, prompt_tokens, first, events, generation.text_calls, progress)
        if self.safety is not None:
            stream = _moderated(stream, self.safety.output_window(), prompt_tokens, progress)
        metered = self._metered(
            stream, meter, prompt_tokens, prompt_safety, progress, folded=not request.stream
        )
        return Answer(metered, prompt_safety)

    async def _refused(self, meter: Meter | None, status: int, safety: dict[str, Any] | None) -> None:
        if meter is not None:
            await self._afterwards.run(
                meter.finish(
                    prompt_tokens=0, completion_tokens=0, finish_reason=None, status=status, safety=safety
                )
            )

    async def _metered(
        self,
        stream: ChatStream,
        meter: Meter | None,
        prompt_tokens: int,
        prompt_safety: Decision | None,
        progress: _Progress | None = None,
        *,
        folded: bool = False,
    ) -> ChatStream:
        """Pass the stream through; when it ends (or is abandoned), meter what was produced. A `folded`
        answer (not streamed) that ends in an error is answered 503 (see `complete`), and metered so."""
        done: Done | None = None
        try:
            async for event in stream:
                if isinstance(event, Done):
                    done = event
                yield event
        finally:
            await stream.aclose()
            if meter is not None:
                completion_tokens = progress.completion_tokens if progress is not None else 0
                cached_tokens = progress.cached_tokens if progress is not None else 0
                if done is not None:
                    prompt_tokens, completion_tokens = done.usage.prompt_tokens, done.usage.completion_tokens
                    cached_tokens = done.usage.cached_tokens
                safety: dict[str, Any] = {}
                if prompt_safety is not None:
                    safety["input"] = verdict_record(prompt_safety)
                if done is not None and done.output_safety is not None:
                    safety["output"] = verdict_record(done.output_safety)
                await self._afterwards.run(
                    meter.finish(
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        finish_reason=done.finish_reason if done is not None else "cancelled",
                        status=ledger_status(_folded_error(done) if folded else None),
                        safety=safety or None,
                        cached_tokens=cached_tokens,
                    )
                )

    async def complete(self, request: ChatRequest, meter: Meter | None = None) -> ChatResult:
        answer = await self.open(request, meter)
        stream = answer.events
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
        error = _folded_error(done)
        if error is not None:
            raise error
        filtered = done.finish_reason == "content_filter"  # a whole answer is withheld, not cut
        return ChatResult(
            text="" if filtered else "".join(parts),
            finish_reason=done.finish_reason,
            usage=done.usage,
            logprobs=tuple(logprobs) if request.logprobs is not None and not filtered else None,
            tool_calls=() if filtered else done.tool_calls,
            prompt_safety=answer.prompt_safety,
            output_safety=done.output_safety,
            message=done.message,
        )


def _folded_error(done: Done | None) -> EngineUnavailable | None:
    """What a folded answer (not streamed) that ended with `done` is answered with instead, if it is
    not answered: one ended by an error has no whole answer to give, and the client may retry."""
    if done is None or done.finish_reason != "error":
        return None
    why = done.message or "the server is busy or shutting down"
    return EngineUnavailable(f"The generation was interrupted ({why}).")


def _check_response_format(request: ChatRequest) -> None:
    if request.calls_tools and request.response_format.kind != "text":
        raise InvalidRequest(
            "'response_format' cannot be combined with tools the model may call; "
            "set tool_choice to 'none' or drop response_format.",
            param="response_format",
        )


def _prompt_text(request: ChatRequest, *, trusted: tuple[str, ...] = ()) -> str:
    """The text of the request's messages, without those whose role is `trusted`."""
    return "\n".join(m.content for m in request.messages if m.content and m.role not in trusted)


async def _moderated(
    stream: ChatStream, window: OutputWindow, prompt_tokens: int, progress: _Progress
) -> ChatStream:
    """Check the completion as it streams, over a sliding window; cut it (finish_reason
    `content_filter`) as soon as a window is blocked. What was already sent stays as it was."""
    try:
        async for event in stream:
            if isinstance(event, Delta):
                decision = await window.feed(event.text) if event.text else None
                if decision is not None and decision.filtered:
                    usage = Usage(prompt_tokens, progress.completion_tokens, progress.cached_tokens)
                    yield Done("content_filter", usage, output_safety=decision)
                    return
                yield event
            else:
                decision = await window.close()
                blocked = decision is not None and decision.filtered
                reason = "content_filter" if blocked else event.finish_reason
                yield dataclasses.replace(event, finish_reason=reason, output_safety=decision)
    finally:
        await stream.aclose()


async def _empty(prompt_tokens: int) -> ChatStream:
    yield Done("length", Usage(prompt_tokens, 0))


async def _close(events: AsyncIterator[Event]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class _CallSplitter:
    """Separates the answer's text from a tool call that starts in it. The text before the call
    streams as content; the call is kept back and parsed whole at the end."""

    def __init__(self, tool_format: ToolFormat | None) -> None:
        self.format = tool_format
        marker = tool_format.start_marker() if tool_format is not None else None
        self._marker = StopMatcher((marker,)) if marker else None
        self._token = tool_format.start_token if tool_format is not None else None
        self.call_text: str | None = None

    def feed(self, token: int | None, text: str) -> str:
        """Content to pass on; the rest is call text."""
        if self.call_text is not None:
            self.call_text += text
            return ""
        if self._token is not None and token == self._token:
            self.call_text = text
            return ""
        if self._marker is None:
            return text
        out = self._marker.feed(text)
        if self._marker.stopped:
            self.call_text = self._marker.tail
        return out

    def flush(self) -> str:
        return self._marker.flush() if self._marker is not None and self.call_text is None else ""

    def calls(self, *, parallel: bool) -> tuple[ToolCall, ...]:
        if self.format is None or self.call_text is None:
            return ()
        found = self.format.parse(self.call_text) or []
        return tuple(found if parallel else found[:1])


class _Progress:
    """How far an answer got, for metering one that is abandoned half-way (and, through the meter,
    for a ledger that outlives the process)."""

    def __init__(self, meter: Meter | None = None) -> None:
        self._meter = meter
        self.completion_tokens = 0
        self.cached_tokens = 0

    def advance(self, completion_tokens: int) -> None:
        self.completion_tokens = completion_tokens
        if self._meter is not None:
            self._meter.progress(completion_tokens)


async def _assemble(
    request: ChatRequest,
    prompt_tokens: int,
    first: Event,
    events: AsyncIterator[Event],
    tool_format: ToolFormat | None,
    progress: _Progress,
) -> ChatStream:
    """Engine tokens to answer events: UTF-8 reassembled, tool calls split off, stop sequences cut,
    logprobs aligned with the text they belong to."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    splitter = _CallSplitter(tool_format)
    made: list[ToolCall] = []  # calls a chat engine's server made
    stops = StopMatcher(request.stop)
    want_logprobs = request.logprobs is not None
    pending: list[TokenLogprobs] = []
    produced = 0  # characters decoded so far, held back or not
    emitted = 0  # characters handed out as content
    tokens = 0
    cached = progress.cached_tokens = 0 if isinstance(first, ToolCalls) else first.cached_tokens

    def release(limit: int) -> tuple[TokenLogprobs, ...]:
        ready = [lp for lp in pending if lp.offset < limit]
        del pending[: len(ready)]
        return tuple(ready)

    try:
        event: Event | None = first
        while event is not None:
            if isinstance(event, Token):
                tokens += 1
                progress.advance(tokens)
                text = decoder.decode(event.piece)
                if want_logprobs:
                    pending.append(
                        TokenLogprobs(
                            id=event.id,
                            token=event.piece.decode("utf-8", "replace"),
                            raw=event.piece,
                            logprob=event.logprob if event.logprob is not None else 0.0,
                            offset=produced,
                            top=tuple(
                                Alternative(t.token, t.piece.decode("utf-8", "replace"), t.piece, t.logprob)
                                for t in event.top
                            ),
                        )
                    )
                produced += len(text)
                out = stops.feed(splitter.feed(event.id, text))
                emitted += len(out)
                released = release(emitted) if want_logprobs and splitter.call_text is None else ()
                if out or released:
                    yield Delta(out, released)
                if stops.stopped:
                    yield Done("stop", Usage(prompt_tokens, tokens, cached))
                    return
            elif isinstance(event, ToolCalls):
                made.extend(event.calls)
            else:
                finish: Finish = event
                out = stops.feed(splitter.feed(None, decoder.decode(b"", final=True)) + splitter.flush())
                out += stops.flush()
                parallel = request.parallel_calls
                calls = splitter.calls(parallel=parallel) if finish.reason == "stop" else ()
                if splitter.call_text is not None and not calls:
                    out += splitter.call_text  # a cut-off or unreadable call: nothing is lost
                if made:
                    found = server_calls(made) if finish.reason == "stop" else None
                    if found is None:
                        out += calls_as_text(made)  # the same, for a server's calls
                    else:
                        calls = tuple(found if parallel else found[:1])
                emitted += len(out)
                limit = emitted if (stops.stopped or splitter.call_text is not None) else produced + 1
                released = release(limit) if want_logprobs else ()
                if out or released:
                    yield Delta(out, released)
                reason = "stop" if stops.stopped else "tool_calls" if calls else finish.reason
                usage = Usage(finish.prompt_tokens, finish.completion_tokens, finish.cached_tokens or cached)
                yield Done(reason, usage, finish.message, calls)
                return
            event = await anext(events, None)
    finally:
        await _close(events)
