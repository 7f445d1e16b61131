"""`UpstreamEngine`: forwards chat to an OpenAI-compatible server (vLLM, llama-server, Ollama, the
Mistral API, another `aimi serve`) and reads its stream back as engine events.

The source is the server's URL: its root (`http://gpu-box:8000`), its `/v1` base, or an aimi
deployment endpoint (`http://aimi:8000/deployments/NAME`). Chat goes to `{base}/v1/chat/completions`,
always streamed. The model sent upstream is, in this order: the URL's fragment `#model=ID`, a model
the server lists under the catalog offer's name, the first model of `GET {base}/v1/models`, or (from a
server that has no model list, like aimi) the `model_name` of `GET {base}/info`.

The server templates the conversation, lays out the tools and enforces the response format, so this
engine takes `GenerationRequest.conversation` and has no tokenizer: `tokenize` is an estimate (about
one token per word, number group or punctuation mark), and usage is the server's own whenever it
reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from aimi.engines.base import (
    TOOL_CALLS_TOKEN,
    Conversation,
    EngineStats,
    Event,
    Finish,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Token,
    TokenLogprob,
)
from aimi.errors import (
    AimiError,
    ContextLengthExceeded,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
)

log = logging.getLogger("aimi.engines")

TIMEOUT = httpx.Timeout(connect=10.0, read=600.0, write=60.0, pool=60.0)
"""`read` is the longest silence between two chunks (a long prompt evaluates before the first)."""
PROBE_TIMEOUT = httpx.Timeout(5.0)
"""Short: a failed probe holds up the loading of other deployments that much."""
_PIECES = re.compile(r" ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]|\s+")
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "tool_calls": "stop",  # the calls themselves come as a TOOL_CALLS_TOKEN token
    "function_call": "stop",
    "length": "length",
    "model_length": "length",  # Mistral's: the context is full
    "content_filter": "content_filter",
    "error": "error",
}


def estimate_tokens(text: str) -> int:
    """About what a BPE tokenizer makes of `text`: one token per word (one more per further 8 letters
    of a long word), per group of up to 3 digits, per other character, per run of whitespace."""
    return sum(1 + max(0, len(piece) - 2) // 8 for piece in _PIECES.findall(text))


@dataclass(frozen=True)
class UpstreamSource:
    """Where a server is: `base` (no `/v1`, no trailing slash), the model the URL names (if any)."""

    base: str
    model: str | None = None

    @classmethod
    def parse(cls, url: str) -> UpstreamSource:
        parts = urlsplit(url)
        named = parse_qs(parts.fragment).get("model", [None])[0] if parts.fragment else None
        path = parts.path.rstrip("/")
        path = path.removesuffix("/v1")
        return cls(urlunsplit((parts.scheme, parts.netloc, path, parts.query, "")), named or None)

    def url(self, path: str) -> str:
        parts = urlsplit(self.base)
        return urlunsplit((parts.scheme, parts.netloc, parts.path + path, parts.query, ""))


class UpstreamEngine:
    """A model served by another server; that server templates, schedules and samples."""

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        provider: str = "upstream",
        context_length: int = 4096,
        api_key: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = TIMEOUT,
    ) -> None:
        """`name`, `provider` and `context_length` are the catalog offer's (the server's own context
        length wins where it reports one); `api_key` is sent as `Authorization: Bearer`."""
        self.source = UpstreamSource.parse(url)
        self._name = name
        self._provider = provider
        self._context_length = context_length
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._transport = transport
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._info: ModelInfo | None = None
        self.model: str | None = None
        """The model id sent upstream, known once started."""
        self._live: set[httpx.Response] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping: asyncio.Future[None] | None = None
        self._ended = False
        self._requests = self._prompt_tokens = self._generated_tokens = 0

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise EngineUnavailable("the upstream server has not been reached yet")
        return self._info

    async def start(self) -> None:
        """Reach the server and learn its model; unreachable or refusing, this raises saying why."""
        client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout, transport=self._transport)
        try:
            model, context = await self._probe(client)
        except BaseException:
            await client.aclose()
            raise
        self._client, self.model = client, model
        self._info = ModelInfo(
            name=self._name or model,
            provider=self._provider,
            context_length=context or self._context_length,
            chat_template=None,
            bos_token="",
            eos_token="",
            add_bos=False,
            vocab_size=0,
            metadata={"upstream.model": model},
            templates_itself=True,
        )

    async def _probe(self, client: httpx.AsyncClient) -> tuple[str, int | None]:
        try:
            response = await client.get(self.source.url("/v1/models"), timeout=PROBE_TIMEOUT)
            if response.status_code in (404, 405):  # no model list: an Azure AI Model Inference server
                response = await client.get(self.source.url("/info"), timeout=PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            log.warning("upstream %s: %s", self.source.base, _describe(exc))
            raise EngineUnavailable(f"the upstream server cannot be reached ({_describe(exc)})") from exc
        if response.is_error:
            raise _refusal(response)
        try:
            body = response.json()
        except ValueError:
            body = None
        listed = body.get("data") if isinstance(body, dict) else None
        if isinstance(listed, list):
            models = {str(m["id"]): m for m in listed if isinstance(m, dict) and m.get("id")}
            return self._choose(models)
        if isinstance(body, dict) and isinstance(body.get("model_name"), str):
            return self.source.model or body["model_name"], None
        raise EngineUnavailable(
            "the upstream server does not answer like an OpenAI-compatible one (no model list at "
            "GET /v1/models, no model at GET /info)"
        )

    def _choose(self, models: dict[str, dict[str, Any]]) -> tuple[str, int | None]:
        if self.source.model is not None:
            if models and self.source.model not in models:
                raise EngineUnavailable(
                    f"the upstream server does not serve the model '{self.source.model}' "
                    f"(it serves: {', '.join(sorted(models)[:20])})"
                )
            chosen = self.source.model
        else:
            by_offer = [m for m in models if self._name and m.lower() == self._name.lower()]
            if not models:
                raise EngineUnavailable("the upstream server lists no models; name one with #model=ID")
            chosen = by_offer[0] if by_offer else next(iter(models))
            if len(models) > 1 and not by_offer:
                log.warning(
                    "upstream %s serves %d models; using %s (name one with #model=ID in the source)",
                    self.source.base,
                    len(models),
                    chosen,
                )
        context = models.get(chosen, {}).get("max_model_len")  # vLLM says how long its context is
        return chosen, context if isinstance(context, int) and context > 0 else None

    async def stop(self, grace_s: float = 0.0) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown(grace_s))
        await asyncio.shield(self._stopping)

    async def _shutdown(self, grace_s: float) -> None:
        if self._live and grace_s > 0:
            with contextlib.suppress(TimeoutError):  # past the grace, they are ended below
                await asyncio.wait_for(self._idle.wait(), grace_s)
        self._ended = True
        for response in list(self._live):
            await response.aclose()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def stats(self) -> EngineStats:
        return EngineStats(
            running=len(self._live),
            requests=self._requests,
            prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated_tokens,
        )

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Placeholder ids, one per estimated token: only their count means anything."""
        return [-1] * estimate_tokens(text)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        client, conversation = self._client, request.conversation
        if client is None or self._stopping is not None:
            raise EngineUnavailable("the upstream engine is not running")
        if conversation is None:
            raise EngineError("an upstream engine takes a conversation, not prompt token ids")
        self._requests += 1
        reading = _Reading(conversation.estimated_prompt_tokens)
        failure: str | None = None
        try:
            async with client.stream(
                "POST", self.source.url("/v1/chat/completions"), json=self._body(request, conversation)
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise _refusal(response)
                self._live.add(response)
                self._idle.clear()
                try:
                    async for event in reading.events(response):
                        yield event
                finally:
                    self._live.discard(response)
                    if not self._live:
                        self._idle.set()
        except (httpx.HTTPError, httpx.StreamError) as exc:  # StreamError: closed by `stop`
            if self._ended:
                failure = "the server is shutting down"
            elif not reading.started:
                log.warning("upstream %s: %s", self.source.base, _describe(exc))
                raise EngineUnavailable(f"the upstream server cannot be reached ({_describe(exc)})") from exc
            else:
                failure = f"the upstream server broke off the answer ({_describe(exc)})"
        for event in reading.end(failure):
            if isinstance(event, Finish):
                self._prompt_tokens += event.prompt_tokens
                self._generated_tokens += event.completion_tokens
            yield event

    def _body(self, request: GenerationRequest, conversation: Conversation) -> dict[str, Any]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(conversation.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        optional = {
            "max_tokens": conversation.max_tokens,
            "presence_penalty": s.presence_penalty or None,
            "frequency_penalty": s.frequency_penalty or None,
            "seed": s.seed,
            "top_k": s.top_k or None,  # not OpenAI's, but vLLM's, llama-server's, Ollama's and aimi's
            "ignore_eos": s.ignore_eos or None,
            "logprobs": True if request.logprobs is not None else None,
            "top_logprobs": request.logprobs,
            "tools": list(conversation.tools) or None,
            "tool_choice": conversation.tool_choice if conversation.tools else None,
            "parallel_tool_calls": False
            if conversation.tools and not conversation.parallel_tool_calls
            else None,
            "response_format": conversation.response_format,
            "stop": list(conversation.stop) or None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return body


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _Reading:
    """One answer read from the server's chunks: content as tokens, calls put together, usage."""

    estimated_prompt_tokens: int
    started: bool = False
    done: bool = False
    """The server said the answer is complete (`[DONE]`, or a whole JSON answer)."""
    reason: str | None = None
    usage: tuple[int, int] | None = None
    tokens: int = 0
    text: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    failure: str | None = None

    async def events(self, response: httpx.Response) -> AsyncIterator[Event]:
        if response.headers.get("content-type", "").startswith("application/json"):
            await response.aread()  # a server that answered whole although asked to stream
            for event in self._read(_json(response.text)):
                yield event
            self.done = True
            return
        async for data in _sse_data(response):
            if data.strip() == "[DONE]":
                self.done = True
                break
            if data.strip():
                for event in self._read(_json(data)):
                    yield event
            if self.failure is not None:
                break

    def _read(self, chunk: Any) -> Iterator[Event]:
        if not isinstance(chunk, dict):
            self.failure = "the upstream server sent something that is not a chat-completions chunk"
            return
        if "error" in chunk or chunk.get("object") == "error":
            error = _error_of(chunk)
            if not self.started:
                raise _error_for(_status_of(chunk), error.message, error.code, error.param, retry_after=5)
            self.failure = f"the upstream server failed: {error.message}"
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            self.usage = (usage["prompt_tokens"], int(usage.get("completion_tokens") or 0))
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            yield from self._content(_text(delta.get("content")), choice.get("logprobs"))
            for i, raw in enumerate(delta.get("tool_calls") or ()):
                self._call(i, raw)
            if choice.get("finish_reason"):
                self.reason = str(choice["finish_reason"])

    def _content(self, text: str, logprobs: Any) -> Iterator[Token]:
        if not text:
            return
        self.started = True
        self.text.append(text)
        entries = logprobs.get("content") if isinstance(logprobs, dict) else None
        tokens = [_token(e) for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        if not tokens or b"".join(t.piece for t in tokens) != text.encode():
            tokens = [Token(-1, text.encode())]  # no logprobs, or ones that do not spell this text
        self.tokens += len(tokens)
        yield from tokens

    def _call(self, position: int, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        self.started = True
        index = raw.get("index", position)
        call = self.calls.setdefault(index if isinstance(index, int) else position, _Call())
        function = raw.get("function") or {}
        call.id = call.id or str(raw.get("id") or "")
        call.name = call.name or str(function.get("name") or "")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments += arguments
        elif arguments is not None:  # some servers send an object
            call.arguments += json.dumps(arguments, ensure_ascii=False)

    def end(self, failure: str | None) -> Iterator[Event]:
        failure = failure or self.failure
        if failure is None and self.reason is None and not self.done:
            failure = "the upstream server ended the answer early"
        calls = [self.calls[i] for i in sorted(self.calls)]
        if calls:
            payload = [{"id": c.id, "name": c.name, "arguments": c.arguments or "{}"} for c in calls]
            yield Token(TOOL_CALLS_TOKEN, json.dumps(payload, ensure_ascii=False).encode())
        reason: FinishReason = "error" if failure else _FINISH.get(self.reason or "stop", "stop")
        if self.usage is not None:
            prompt_tokens, completion_tokens = self.usage
        else:  # the server said nothing: estimate
            written = "".join(self.text) + "".join(c.name + c.arguments for c in calls)
            prompt_tokens = self.estimated_prompt_tokens
            completion_tokens = max(self.tokens, estimate_tokens(written))
        yield Finish(reason, prompt_tokens, completion_tokens, message=failure)


def _token(entry: dict[str, Any]) -> Token:
    top = tuple(
        TokenLogprob(_id(t), _piece(t), _logprob(t))
        for t in entry.get("top_logprobs") or ()
        if isinstance(t, dict)
    )
    return Token(_id(entry), _piece(entry), _logprob(entry), top)


def _id(entry: dict[str, Any]) -> int:
    value = entry.get("token_id")
    return value if isinstance(value, int) else -1


def _logprob(entry: dict[str, Any]) -> float:
    value = entry.get("logprob")
    return float(value) if isinstance(value, int | float) else 0.0


def _piece(entry: dict[str, Any]) -> bytes:
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    return str(entry.get("token", "")).encode()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Mistral's chunked content: keep the text parts
        return "".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    return ""


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The `data` of each server-sent event (its `data:` lines joined)."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


@dataclass(frozen=True)
class _Error:
    message: str
    code: str | None = None
    param: str | None = None


def _error_of(body: Any) -> _Error:
    """The message of any of the error bodies servers send (OpenAI's and Azure's envelope, vLLM's
    and Mistral's flat object, FastAPI's `detail`)."""
    if not isinstance(body, dict):
        return _Error("no details")
    source = body.get("error", body)
    if isinstance(source, str):
        return _Error(source)
    if not isinstance(source, dict):
        source = body
    message = source.get("message") or source.get("detail") or body.get("detail") or "no details"
    if not isinstance(message, str):
        message = json.dumps(message, ensure_ascii=False)
    code, param = source.get("code"), source.get("param")
    return _Error(message, str(code) if code is not None else None, param if isinstance(param, str) else None)


def _status_of(chunk: dict[str, Any]) -> int:
    error = chunk.get("error")
    for value in (
        (error.get("status"), error.get("code")) if isinstance(error, dict) else (chunk.get("code"),)
    ):
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            return int(value)
    return 500


def _refusal(response: httpx.Response) -> AimiError:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text.strip()[:500] or response.reason_phrase}
    error = _error_of(body)
    default = 60 if response.status_code in (401, 403) else 5
    retry_after = _retry_after(response.headers.get("retry-after"), default)
    if response.status_code >= 500 or response.status_code in (401, 403):
        log.warning("upstream %s answered %d: %s", response.request.url, response.status_code, error.message)
    return _error_for(response.status_code, error.message, error.code, error.param, retry_after=retry_after)


def _error_for(
    status: int, message: str, code: str | None, param: str | None, *, retry_after: int
) -> AimiError:
    """An upstream refusal as aimi's own: the client's mistakes stay the client's; the upstream's
    trouble (its credentials, its load, its failures) is this deployment being unavailable."""
    if status in (400, 422):
        if code == "context_length_exceeded":
            return ContextLengthExceeded(message, param=param)
        return InvalidRequest(message, param=param)
    if status == 413:
        return PayloadTooLarge(message)
    if status in (401, 403):
        return EngineUnavailable(
            f"the upstream server rejected aimi's credentials (HTTP {status}: {message}); the operator "
            "sets the key aimi sends with AIMI_UPSTREAM_API_KEY",
            retry_after=retry_after,
        )
    if status == 429:
        return RateLimited(f"The upstream server is rate limiting: {message}", retry_after=retry_after)
    if status >= 500:
        return EngineUnavailable(
            f"the upstream server failed (HTTP {status}: {message})", retry_after=retry_after
        )
    return EngineError(f"the upstream server answered HTTP {status}: {message}")


def _retry_after(raw: str | None, default: int) -> int:
    """Whole seconds from `Retry-After` (seconds or an HTTP date)."""
    if raw is None:
        return default
    try:
        return max(1, math.ceil(float(raw)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return default
    return max(1, math.ceil((when - datetime.now(UTC)).total_seconds()))


def _describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
