"""The upstream engine against a small real HTTP server on loopback (aiohttp, in the test's own event
loop) that streams chat-completions chunks the way OpenAI-compatible servers do."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from aimi.engines.base import (
    Conversation,
    Finish,
    GenerationRequest,
    Sampling,
    Token,
    ToolCall,
    ToolCalls,
)
from aimi.engines.upstream import UpstreamEngine, UpstreamSource, estimate_tokens
from aimi.engines.upstream.answer import sse_data
from aimi.errors import (
    AimiError,
    ContextLengthExceeded,
    EngineError,
    EngineUnavailable,
    InvalidRequest,
    ParameterNotSupported,
    RateLimited,
)
from tests.conftest import free_port
from tests.engines.generations import events_of, run

pytestmark = pytest.mark.anyio

KEY = "upstream-key"


def chunk(content: str | None = None, *, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage(prompt: int, completion: int) -> dict[str, Any]:
    total = prompt + completion
    return {
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total},
    }


HELLO = [chunk("", role="assistant"), chunk("Hel"), chunk("lo!"), chunk(finish="stop"), usage(11, 2)]


@dataclass
class Upstream:
    """What the fake server answers, and what it saw."""

    chunks: list[Any] = field(default_factory=lambda: list(HELLO))
    status: int = 200
    error: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    done: bool = True
    models: list[dict[str, Any]] | None = field(default_factory=lambda: [{"id": "served-model"}])
    info: dict[str, Any] | None = None
    forbidden: set[str] = field(default_factory=set)
    """Body fields refused the way the Mistral API refuses unknown ones."""
    whole: dict[str, Any] | None = None
    """The answer to a request that does not stream (None: it streams anyway)."""
    received: list[dict[str, Any]] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/info", self._info)
        app.router.add_post("/v1/chat/completions", self._chat)
        return app

    async def _models(self, request: web.Request) -> web.Response:
        if self.models is None:
            return web.json_response({"error": {"code": "NotFound", "message": "no route"}}, status=404)
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": "Invalid API key", "code": 401}}, status=401)
        return web.json_response({"object": "list", "data": self.models})

    async def _info(self, request: web.Request) -> web.Response:
        if self.info is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        return web.json_response(self.info)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.received.append(await request.json())
        self.authorization.append(request.headers.get("Authorization"))
        extra = [key for key in self.received[-1] if key in self.forbidden]
        if extra:
            detail = [
                {"type": "extra_forbidden", "loc": ["body", key], "msg": "Extra inputs"} for key in extra
            ]
            error = {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error"}
            return web.json_response(error, status=422)
        if self.status != 200:
            return web.json_response(self.error, status=self.status, headers=self.headers)
        if self.whole is not None and not self.received[-1].get("stream"):
            return web.json_response(self.whole)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for item in self.chunks:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                data = item if isinstance(item, str) else json.dumps(item)
                await response.write(f"data: {data}\n\n".encode())
            if self.done:
                await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return response


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def server(upstream: Upstream) -> AsyncIterator[TestServer]:
    running = TestServer(upstream.app(), host="127.0.0.1")
    await running.start_server()
    yield running
    await running.close()


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def engine(server: TestServer) -> AsyncIterator[UpstreamEngine]:
    e = UpstreamEngine(url_of(server), name="My-Offer", provider="me", context_length=2048, api_key=KEY)
    await e.start()
    yield e
    await e.stop()


def ask(text: str = "Say hi.", *, max_tokens: int | None = 16, **options: Any) -> Conversation:
    options.setdefault("sampling", Sampling(temperature=0))
    messages = ({"role": "user", "content": text},)
    return Conversation(
        messages=messages,
        estimated_prompt_tokens=9,
        reserved_tokens=max_tokens or 100,
        max_tokens=max_tokens,
        **options,
    )


def test_a_source_url_gives_the_server_s_base_and_the_model_it_names() -> None:
    assert UpstreamSource.parse("http://gpu:8000") == UpstreamSource("http://gpu:8000")
    assert UpstreamSource.parse("https://api.mistral.ai/v1/#model=mistral-small-latest") == UpstreamSource(
        "https://api.mistral.ai", "mistral-small-latest"
    )
    aimi = UpstreamSource.parse("http://aimi:8000/deployments/smol")
    assert aimi.url("/v1/chat/completions") == "http://aimi:8000/deployments/smol/v1/chat/completions"


def test_the_token_estimate_counts_words_numbers_and_punctuation() -> None:
    assert estimate_tokens("Say hi.") == 3
    assert estimate_tokens("In 2024, 12345 people") == 7  # In, 202, 4, ",", 123, 45, people
    assert estimate_tokens("") == 0
    assert UpstreamEngine("http://x").count_tokens("Say hi.") == 3


async def test_start_learns_the_model_and_the_engine_templates_itself(engine: UpstreamEngine) -> None:
    assert engine.model == "served-model"
    info = engine.info
    assert (info.name, info.provider, info.context_length) == ("My-Offer", "me", 2048)
    assert engine.port == "chat"  # it takes the conversation, and has no tokenizer to describe
    assert info.metadata["upstream.model"] == "served-model"


async def test_a_fragment_picks_one_of_the_server_s_models(upstream: Upstream, server: TestServer) -> None:
    upstream.models = [{"id": "a"}, {"id": "b", "max_model_len": 32768}]
    engine = UpstreamEngine(url_of(server) + "/v1#model=b", api_key=KEY)
    await engine.start()
    try:
        assert engine.model == "b"
        assert engine.info.context_length == 32768  # vLLM says how long its context is
        await run(engine, ask())
        assert upstream.received[0]["model"] == "b"
    finally:
        await engine.stop()


async def test_the_offer_s_name_picks_a_model_the_server_lists_under_it(
    upstream: Upstream, server: TestServer
) -> None:
    upstream.models = [{"id": "other"}, {"id": "mistral-small"}]
    engine = UpstreamEngine(url_of(server), name="Mistral-Small", api_key=KEY)
    await engine.start()
    assert engine.model == "mistral-small"
    await engine.stop()


async def test_a_model_the_server_does_not_serve_fails_the_start(
    upstream: Upstream, server: TestServer
) -> None:
    with pytest.raises(
        EngineUnavailable, match=r"does not serve the model 'nope' \(it serves: served-model\)"
    ):
        await UpstreamEngine(url_of(server) + "#model=nope", api_key=KEY).start()


async def test_a_server_without_a_model_list_is_asked_for_its_info(
    upstream: Upstream, server: TestServer
) -> None:
    upstream.models = None
    upstream.info = {"model_name": "SmolLM2-135M-Instruct", "model_type": "chat-completions"}
    engine = UpstreamEngine(url_of(server), api_key=KEY)
    await engine.start()
    assert engine.model == engine.info.name == "SmolLM2-135M-Instruct"
    await engine.stop()


async def test_nothing_listening_fails_the_start_as_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="the upstream server cannot be reached"):
        await UpstreamEngine(f"http://127.0.0.1:{free_port()}").start()


async def test_a_rejected_key_fails_the_start_saying_so(server: TestServer) -> None:
    with pytest.raises(EngineUnavailable, match=r"rejected aimi's credentials \(HTTP 401: Invalid API key"):
        await UpstreamEngine(url_of(server), api_key="wrong").start()


async def test_text_streams_as_tokens_and_the_usage_is_the_server_s(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    tokens, finish = await run(engine, ask())
    assert [t.piece for t in tokens] == [b"Hel", b"lo!"]
    assert all(t.id == -1 for t in tokens)
    assert (finish.reason, finish.prompt_tokens, finish.completion_tokens) == ("stop", 11, 2)
    stats = engine.stats()
    assert (stats.requests, stats.prompt_tokens, stats.generated_tokens, stats.running) == (1, 11, 2, 0)


async def test_the_request_carries_the_conversation_and_the_key(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    await run(
        engine,
        ask(
            tools=(tool,),
            tool_choice="required",
            parallel_tool_calls=False,
            stop=("END",),
            logprobs=2,
        ),
    )
    body = upstream.received[0]
    assert body["model"] == "served-model"
    assert body["messages"] == [{"role": "user", "content": "Say hi."}]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["max_tokens"], body["stop"]) == (0.0, 16, ["END"])
    assert (body["tools"], body["tool_choice"], body["parallel_tool_calls"]) == ([tool], "required", False)
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    assert "response_format" not in body and "seed" not in body and "top_k" not in body
    assert upstream.authorization == [f"Bearer {KEY}"]


async def test_without_max_tokens_the_server_decides_the_length(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    await run(engine, ask(max_tokens=None, response_format={"type": "json_object"}))
    body = upstream.received[0]
    assert "max_tokens" not in body
    assert body["response_format"] == {"type": "json_object"}


async def test_tool_call_deltas_are_put_together_with_the_server_s_ids(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    def call(**fields: Any) -> dict[str, Any]:
        return chunk(tool_calls=[{"index": 0, **fields}])

    upstream.chunks = [
        chunk("", role="assistant"),
        call(id="call_abc", type="function", function={"name": "get_weather", "arguments": ""}),
        call(function={"arguments": '{"city": '}),
        call(function={"arguments": '"Paris"}'}),
        chunk(finish="tool_calls"),
        usage(30, 12),
    ]
    *_, made, finish = await events_of(engine, ask())
    assert made == ToolCalls((ToolCall("call_abc", "get_weather", '{"city": "Paris"}'),))
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.completion_tokens) == ("stop", 12)


async def test_logprobs_from_the_server_give_one_token_each(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    entries = [
        {"token": "Hel", "token_id": 7, "logprob": -0.5, "bytes": [72, 101, 108],
         "top_logprobs": [{"token": "Hel", "logprob": -0.5}, {"token": "Hi", "logprob": -1.5}]},
        {"token": "lo", "logprob": -0.25},
    ]  # fmt: skip
    first = chunk("Hello")
    first["choices"][0]["logprobs"] = {"content": entries}
    upstream.chunks = [first, chunk(finish="stop"), usage(5, 2)]
    tokens, _ = await run(engine, ask(logprobs=2))
    assert [(t.id, t.piece, t.logprob) for t in tokens] == [(7, b"Hel", -0.5), (-1, b"lo", -0.25)]
    assert [(t.piece, t.logprob) for t in tokens[0].top] == [(b"Hel", -0.5), (b"Hi", -1.5)]


async def test_without_usage_from_the_server_the_usage_is_estimated(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.chunks = [chunk("Hello"), chunk(" there, friend"), chunk(finish="length")]
    tokens, finish = await run(engine, ask())
    assert len(tokens) == 2
    assert finish.reason == "length"
    assert finish.prompt_tokens == 9  # the conversation's estimate
    assert finish.completion_tokens == estimate_tokens("Hello there, friend") == 4


@pytest.mark.parametrize(
    ("status", "error", "kind", "message"),
    [
        (400, {"error": {"message": "messages: bad role", "param": "messages"}}, InvalidRequest, "bad role"),
        (422, {"object": "error", "message": "max_tokens too big"}, InvalidRequest, "max_tokens too big"),
        (400, {"error": {"message": "too long", "code": "context_length_exceeded"}}, ContextLengthExceeded,
         "too long"),
        (401, {"error": {"message": "Invalid API key"}}, EngineUnavailable, "rejected aimi's credentials"),
        (403, {"detail": "Forbidden"}, EngineUnavailable, r"credentials \(HTTP 403: Forbidden"),
        (500, {"error": {"message": "CUDA out of memory"}}, EngineUnavailable, r"failed \(HTTP 500: CUDA"),
        (404, {"error": {"message": "model gone"}}, EngineError, "answered HTTP 404: model gone"),
    ],
)  # fmt: skip
async def test_refusals_from_the_server_map_to_aimi_s_errors(
    engine: UpstreamEngine,
    upstream: Upstream,
    status: int,
    error: Any,
    kind: type[AimiError],
    message: str,
) -> None:
    upstream.status, upstream.error = status, error
    with pytest.raises(kind, match=message) as raised:
        await run(engine, ask())
    assert type(raised.value) is kind
    if status == 400 and "param" in error["error"]:
        assert raised.value.param == "messages"


async def test_a_rate_limited_server_passes_on_its_retry_after(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.status, upstream.error, upstream.headers = (
        429,
        {"error": {"message": "slow down"}},
        {"Retry-After": "7"},
    )
    with pytest.raises(RateLimited, match="slow down") as raised:
        await run(engine, ask())
    assert raised.value.retry_after == 7


async def test_a_server_that_refuses_stream_options_is_asked_again_and_then_not_sent_them(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.forbidden = {"stream_options"}  # the Mistral API; it sends usage unasked
    tokens, finish = await run(engine, ask())
    assert [t.piece for t in tokens] == [b"Hel", b"lo!"]
    assert (finish.prompt_tokens, finish.completion_tokens) == (11, 2)
    await run(engine, ask())
    assert ["stream_options" in body for body in upstream.received] == [True, False, False]


async def test_the_seed_goes_as_random_seed_to_a_server_that_refuses_seed(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.forbidden = {"seed", "stream_options"}
    await run(engine, ask(sampling=Sampling(temperature=0, seed=5)))
    last = upstream.received[-1]
    assert (last.get("random_seed"), "seed" in last, "stream_options" in last) == (5, False, False)


async def test_a_parameter_the_server_refuses_is_not_supported(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.forbidden = {"top_k"}
    with pytest.raises(ParameterNotSupported, match="does not support the parameter 'top_k'") as raised:
        await run(engine, ask(sampling=Sampling(temperature=0, top_k=40)))
    assert raised.value.param == "top_k"
    assert len(upstream.received) == 1


async def test_a_server_that_went_away_is_unavailable(engine: UpstreamEngine, server: TestServer) -> None:
    await server.close()
    with pytest.raises(EngineUnavailable, match="the upstream server cannot be reached"):
        await run(engine, ask())


async def test_an_error_event_in_the_stream_ends_it_with_an_error_finish(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.chunks = [
        chunk("Hel"),
        {"error": {"code": "InternalServerError", "message": "boom", "status": 500}},
    ]
    tokens, finish = await run(engine, ask())
    assert [t.piece for t in tokens] == [b"Hel"]
    assert finish.reason == "error"
    assert finish.message is not None and "boom" in finish.message


async def test_an_error_event_before_any_text_is_raised(engine: UpstreamEngine, upstream: Upstream) -> None:
    upstream.chunks = [{"error": {"code": "429", "message": "busy", "status": 429}}]
    with pytest.raises(RateLimited, match="busy"):
        await run(engine, ask())


async def test_a_stream_that_breaks_off_ends_with_an_error_finish(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.chunks, upstream.done = [chunk("Hel")], False
    tokens, finish = await run(engine, ask())
    assert [t.piece for t in tokens] == [b"Hel"]
    assert (finish.reason, finish.message) == ("error", "the upstream server ended the answer early")


async def test_closing_the_events_early_closes_the_upstream_stream(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.chunks, upstream.delay_s = [chunk("a")] * 200, 0.02
    events = engine.generate(ask())
    assert isinstance(await anext(events), Token)
    assert isinstance(await anext(events), Token)
    assert engine.stats().running == 1
    await events.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(upstream.disconnected.wait(), 5)
    assert engine.stats().running == 0


async def test_stop_ends_running_generations_as_interrupted_keeping_what_they_produced(
    engine: UpstreamEngine, upstream: Upstream
) -> None:
    upstream.chunks, upstream.delay_s = [chunk("a")] * 200, 0.02
    events = engine.generate(ask())
    assert isinstance(await anext(events), Token)
    await asyncio.wait_for(engine.stop(grace_s=0.1), 5)
    rest = [event async for event in events]
    assert isinstance(rest[-1], Finish)
    assert (rest[-1].reason, rest[-1].message) == ("interrupted", "the server is shutting down")
    with pytest.raises(EngineUnavailable):
        await run(engine, ask())


async def test_a_request_without_a_conversation_is_an_engine_error(engine: UpstreamEngine) -> None:
    with pytest.raises(EngineError, match="takes a conversation"):
        await run(engine, GenerationRequest(prompt=[1, 2], sampling=Sampling(), max_tokens=4))


async def test_a_conversation_the_client_wants_whole_is_asked_for_whole(
    upstream: Upstream, engine: UpstreamEngine
) -> None:
    upstream.whole = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13},
    }
    events = await events_of(engine, dataclasses.replace(ask(), streamed=False))
    assert upstream.received[-1]["stream"] is False
    assert "stream_options" not in upstream.received[-1]
    assert b"".join(e.piece for e in events if isinstance(e, Token)) == b"Hello!"
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.prompt_tokens, finish.completion_tokens) == ("stop", 11, 2)
    streamed = await events_of(engine, ask())
    assert upstream.received[-1]["stream"] is True
    assert upstream.received[-1]["stream_options"] == {"include_usage": True}
    assert b"".join(e.piece for e in streamed if isinstance(e, Token)) == b"Hello!"


# -- reading the stream ---------------------------------------------------------------------------


class Pieces(httpx.AsyncByteStream):
    """A response body that arrives in the given pieces, as reads from a socket would."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


async def data_of(body: bytes, cuts: list[int], headers: dict[str, str] | None = None) -> list[bytes]:
    bounds = [0, *cuts, len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(bounds)]
    response = httpx.Response(200, headers=headers or {}, stream=Pieces(pieces))
    return [data async for data in sse_data(response)]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
async def test_events_read_the_same_however_the_reads_cut_them(newline: bytes) -> None:
    lines = [b'data: {"a": 1}', b"", b": a comment", b'data:{"b":', b'data: "two"}', b"", b"data: [DONE]"]
    body = newline.join([*lines, b"", b""])
    expected = [b'{"a": 1}', b'{"b":\n"two"}', b"[DONE]"]
    assert await data_of(body, []) == expected
    for cut in range(1, len(body)):
        assert await data_of(body, [cut]) == expected, cut
    assert await data_of(body, list(range(1, len(body)))) == expected  # a byte at a time


async def test_an_event_without_its_blank_line_at_the_end_is_still_read() -> None:
    assert await data_of(b'data: {"a": 1}\n\ndata: {"b": 2}', [5]) == [b'{"a": 1}', b'{"b": 2}']


async def test_a_compressed_stream_is_read_through_its_decoder() -> None:
    body = b'data: {"a": 1}\n\ndata: [DONE]\n\n'
    packed = gzip.compress(body)
    read = await data_of(packed, [len(packed) // 2], headers={"content-encoding": "gzip"})
    assert read == [b'{"a": 1}', b"[DONE]"]
