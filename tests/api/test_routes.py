"""The HTTP surface of `aimi.api.routes`: where the routes answer, what they answer, and how."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimi.engines.base import Finish, GenerationRequest, Token, TokenEvent
from aimi.errors import RateLimited
from aimi.inference.prompts import SAFE_PROMPT
from aimi.settings import Settings
from tests.api.checks import assert_error, prompt_text
from tests.conftest import TEST_KEY, fake_settings, serving
from tests.fakes import FAKE_INFO, RoomyEngine, ScriptedEngine

BASES = ["", "/models", "/deployments/fake"]
HI = {"messages": [{"role": "user", "content": "hi"}]}


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of a stream, in order, after checking the framing line by line."""
    text = response.text
    assert "\r" not in text
    assert text.endswith("\n\n")
    lines = text.split("\n")
    assert all(line.startswith("data: ") for line in lines if line), lines
    return [line.removeprefix("data: ") for line in lines if line]


@pytest.fixture
async def small_body_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(api_key=TEST_KEY, name="fake", data_dir=tmp_path, max_body_bytes=2048)
    async with serving(settings, ScriptedEngine()) as c:
        yield c


# -- where the routes answer ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("base", BASES)
async def test_info_answers_at_the_root_under_models_and_under_the_deployment(
    client: httpx.AsyncClient, base: str
) -> None:
    response = await client.get(f"{base}/info")
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("base", BASES)
async def test_chat_completions_answers_at_the_root_under_models_and_under_the_deployment(
    client: httpx.AsyncClient, base: str
) -> None:
    response = await client.post(f"{base}/chat/completions", json=HI)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello world!"


@pytest.mark.anyio
@pytest.mark.parametrize("base", BASES)
async def test_mistral_chat_completions_answers_at_the_root_under_models_and_under_the_deployment(
    client: httpx.AsyncClient, base: str
) -> None:
    response = await client.post(f"{base}/v1/chat/completions", json={**HI, "model": "azureai"})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello world!"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/deployments/unknown/info"),
        ("POST", "/deployments/unknown/chat/completions"),
        ("POST", "/deployments/unknown/v1/chat/completions"),
    ],
)
async def test_an_unknown_deployment_gives_the_404_envelope(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json=HI if method == "POST" else None)
    assert_error(response, 404, "NotFound")


@pytest.mark.anyio
async def test_the_routing_header_names_the_deployment_at_the_root(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=HI, headers={"azureml-model-deployment": "fake"})
    assert response.status_code == 200, response.text


# -- /info ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_info_names_the_model_its_type_and_its_provider(client: httpx.AsyncClient) -> None:
    response = await client.get("/info")
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"model_name", "model_type", "model_provider_name"}
    assert body["model_type"] == "chat-completions"
    assert isinstance(body["model_name"], str) and body["model_name"]
    assert isinstance(body["model_provider_name"], str) and body["model_provider_name"]


# -- the non-streamed response -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_a_completion_has_the_documented_shape(client: httpx.AsyncClient, path: str) -> None:
    before = int(time.time())
    response = await client.post(path, json=HI)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int) and not isinstance(body["created"], bool)
    assert before - 5 <= body["created"] <= int(time.time()) + 5
    info = (await client.get("/info")).json()
    assert body["model"] == info["model_name"]
    assert len(body["choices"]) == 1
    choice = body["choices"][0]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": "Hello world!", "tool_calls": None}
    assert choice["finish_reason"] == "stop"
    assert "logprobs" in choice and choice["logprobs"] is None
    usage = body["usage"]
    assert usage["prompt_tokens"] == len("<user>hi<assistant>")
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.anyio
async def test_each_completion_gets_its_own_id(client: httpx.AsyncClient) -> None:
    first = (await client.post("/chat/completions", json=HI)).json()
    second = (await client.post("/chat/completions", json=HI)).json()
    assert first["id"] != second["id"]


@pytest.mark.anyio
async def test_a_completion_cut_by_max_tokens_finishes_with_length(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json={**HI, "max_tokens": 2})
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Hello world"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


@pytest.mark.anyio
async def test_max_tokens_zero_answers_empty_with_length(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json={**HI, "max_tokens": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == ""
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 0


# -- streaming -----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_a_stream_is_framed_as_the_python_sdk_parses_it(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(path, json={**HI, "stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_events(response)
    assert payloads[-1] == "[DONE]"
    assert "[DONE]" not in payloads[:-1]
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert len(chunks) >= 2
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and re.fullmatch(r"[0-9a-f]{32}", ids.pop())
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert isinstance(chunk["created"], int)
        assert chunk["model"]
        assert len(chunk["choices"]) == 1
        assert chunk["choices"][0]["index"] == 0
        assert "finish_reason" in chunk["choices"][0]
    first, *middle, last = chunks
    assert first["choices"][0]["delta"]["role"] == "assistant"
    for chunk in [*middle, last]:
        assert "role" not in chunk["choices"][0]["delta"]
    for chunk in [first, *middle]:
        assert chunk["choices"][0]["finish_reason"] is None
        assert "usage" not in chunk
    assert last["choices"][0]["finish_reason"] == "stop"
    usage = last["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "Hello world!"


@pytest.mark.anyio
async def test_a_stream_is_sent_even_when_the_client_accepts_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/chat/completions", json={**HI, "stream": True}, headers={"accept": "application/json"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert sse_events(response)[-1] == "[DONE]"


@pytest.mark.anyio
async def test_an_error_on_a_stream_request_comes_as_json_before_any_event(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/chat/completions", json={**HI, "stream": True, "max_tokens": 1000})
    assert_error(response, 400, "context_length_exceeded")


# -- api-version and keys ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("version", ["2024-05-01-preview", "2025-04-01", "2024-06-01", "nonsense", ""])
async def test_any_api_version_is_accepted(client: httpx.AsyncClient, version: str) -> None:
    chat = await client.post("/chat/completions", params={"api-version": version}, json=HI)
    info = await client.get("/models/info", params={"api-version": version})
    assert chat.status_code == 200, chat.text
    assert info.status_code == 200, info.text


async def send_with_headers(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> httpx.Response:
    """Send without the client's default `api-key` header, with exactly these auth headers."""
    request = client.build_request(method, path, **kwargs)
    del request.headers["api-key"]
    request.headers.update(headers)
    return await client.send(request)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        {"api-key": TEST_KEY},
        {"authorization": f"Bearer {TEST_KEY}"},
        {"authorization": f"bearer {TEST_KEY}"},
        {"api-key": TEST_KEY, "authorization": f"Bearer {TEST_KEY}"},
    ],
    ids=["api-key", "bearer", "bearer-lowercase", "both"],
)
@pytest.mark.parametrize("base", BASES)
async def test_the_key_is_taken_from_api_key_or_a_bearer_token(
    client: httpx.AsyncClient, headers: dict[str, str], base: str
) -> None:
    chat = await send_with_headers(client, "POST", f"{base}/chat/completions", headers, json=HI)
    info = await send_with_headers(client, "GET", f"{base}/info", headers)
    mistral = await send_with_headers(client, "POST", f"{base}/v1/chat/completions", headers, json=HI)
    assert chat.status_code == 200, chat.text
    assert info.status_code == 200, info.text
    assert mistral.status_code == 200, mistral.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"api-key": ""},
        {"api-key": "wrong"},
        {"api-key": TEST_KEY[:-1]},
        {"authorization": "Bearer wrong"},
        {"authorization": "Bearer "},
        {"authorization": TEST_KEY},
        {"authorization": f"Basic {TEST_KEY}"},
    ],
    ids=["none", "empty", "wrong", "truncated", "wrong-bearer", "empty-bearer", "no-scheme", "basic"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/info"),
        ("POST", "/chat/completions"),
        ("POST", "/models/chat/completions"),
        ("POST", "/deployments/fake/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ],
)
async def test_a_missing_or_wrong_key_gives_the_401_envelope_without_retry_after(
    client: httpx.AsyncClient, headers: dict[str, str], method: str, path: str
) -> None:
    response = await send_with_headers(client, method, path, headers, json=HI if method == "POST" else None)
    body = assert_error(response, 401, "Unauthorized")
    assert body["error"]["message"] == "Auth token validation failed"
    assert "www-authenticate" not in response.headers


@pytest.mark.anyio
async def test_a_wrong_key_is_refused_before_the_body_is_judged(client: httpx.AsyncClient) -> None:
    response = await send_with_headers(
        client, "POST", "/chat/completions", {"api-key": "wrong"}, content=b"{not json"
    )
    assert_error(response, 401, "Unauthorized")


# -- unknown routes and methods ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/embeddings"),
        ("POST", "/images/embeddings"),
        ("POST", "/models/embeddings"),
        ("GET", "/deployments/fake/nope"),
        ("POST", "/chat/completions/chat/completions"),
    ],
)
async def test_an_unknown_route_gives_the_404_envelope(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={"input": ["a"]} if method == "POST" else None)
    body = assert_error(response, 404, "NotFound")
    assert body["error"]["message"] == "Resource not found"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/chat/completions"),
        ("PUT", "/chat/completions"),
        ("GET", "/v1/chat/completions"),
        ("DELETE", "/models/chat/completions"),
        ("POST", "/info"),
        ("POST", "/deployments/fake/info"),
    ],
)
async def test_a_wrong_method_gives_the_405_envelope(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405, "MethodNotAllowed")


# -- the body ------------------------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid chat body of exactly `size` bytes (the padding is in an ignored string)."""
    head = b'{"messages":[{"role":"user","content":"hi"}],"model":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.anyio
async def test_a_body_over_the_default_8_mib_gives_the_413_envelope(client: httpx.AsyncClient) -> None:
    body = padded(8 * 1024 * 1024 + 1)
    response = await client.post(
        "/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "RequestEntityTooLarge")


@pytest.mark.anyio
async def test_a_body_at_the_limit_is_read(small_body_client: httpx.AsyncClient) -> None:
    response = await small_body_client.post(
        "/chat/completions", content=padded(2048), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_a_body_over_the_limit_gives_the_413_envelope(
    small_body_client: httpx.AsyncClient, path: str
) -> None:
    response = await small_body_client.post(
        path, content=padded(2049), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "RequestEntityTooLarge")


@pytest.mark.anyio
async def test_a_chunked_body_over_the_limit_gives_the_413_envelope(
    small_body_client: httpx.AsyncClient,
) -> None:
    data = padded(4096)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 512):
            yield data[i : i + 512]

    response = await small_body_client.post(
        "/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "RequestEntityTooLarge")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content",
    [
        b'{"messages": [',
        b"not json",
        b'{"messages": [{"role": "user", "content": "hi"}]} x',
        b"{'a': 1}",
        b"\xff\xfe{}",
    ],
    ids=["truncated", "text", "trailing-garbage", "single-quotes", "not-utf8"],
)
async def test_malformed_json_gives_400_invalid_json(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_json_with_a_trailing_comma_as_in_the_mistral_docs_is_accepted(
    client: httpx.AsyncClient, engine: ScriptedEngine, path: str
) -> None:
    content = b"""{
    "messages": [
        {
            "role": "user",
            "content": "a, }"
        },
    ],
    "temperature": 0.8,
    "max_tokens": 10,
}"""
    response = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert prompt_text(engine) == "<user>a, }<assistant>"
    assert engine.requests[-1].max_tokens == 10
    assert engine.requests[-1].sampling.temperature == pytest.approx(0.8)


@pytest.mark.anyio
@pytest.mark.parametrize("content", [b"[]", b'"hi"', b"1", b"null", b"true", b"", b"  \n"])
async def test_a_body_that_is_not_a_json_object_gives_400(client: httpx.AsyncClient, content: bytes) -> None:
    response = await client.post(
        "/chat/completions", content=content, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)


PATHOLOGICAL_BODIES = {
    # json.loads raises RecursionError, not JSONDecodeError.
    "deeply-nested": b'{"messages": [{"role": "user", "content": "hi"}], "x": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
    # json.loads raises ValueError (Python's 4300-digit limit on int conversion).
    "huge-integer": b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + b"9" * 5000 + b"}",
    # Valid JSON grammar, but a lone surrogate cannot be encoded to UTF-8 (for the tokenizer).
    "lone-surrogate-in-content": b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    # ... nor echoed back in an error body.
    "lone-surrogate-echoed": b'{"messages": [{"role": "user", "content": [{"type": "\\udc00"}]}]}',
}


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("content", PATHOLOGICAL_BODIES.values(), ids=PATHOLOGICAL_BODIES.keys())
async def test_a_pathological_json_body_gives_a_400_envelope_not_a_500(
    client: httpx.AsyncClient, path: str, content: bytes
) -> None:
    response = await client.post(path, content=content, headers={"content-type": "application/json"})
    assert_error(response, 400)


# -- logprobs ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_logprobs_on_the_mistral_route_have_the_legacy_and_the_openai_shape(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "logprobs": True})
    assert response.status_code == 200, response.text
    assert engine.requests[-1].logprobs == 0
    logprobs = response.json()["choices"][0]["logprobs"]
    assert logprobs["tokens"] == ["Hello", " world", "!"]
    assert logprobs["token_logprobs"] == [-0.25, -0.25, -0.25]
    assert logprobs["top_logprobs"] == [{"Hello": -0.25}, {" world": -0.25}, {"!": -0.25}]
    assert logprobs["text_offsets"] == [0, 5, 11]
    assert logprobs["content"] == [
        {"token": "Hello", "token_id": 1, "logprob": -0.25, "bytes": list(b"Hello"), "top_logprobs": []},
        {"token": " world", "token_id": 2, "logprob": -0.25, "bytes": list(b" world"), "top_logprobs": []},
        {"token": "!", "token_id": 3, "logprob": -0.25, "bytes": list(b"!"), "top_logprobs": []},
    ]


@pytest.mark.anyio
async def test_top_logprobs_lists_the_alternatives(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "logprobs": True, "top_logprobs": 2})
    assert response.status_code == 200, response.text
    assert engine.requests[-1].logprobs == 2
    logprobs = response.json()["choices"][0]["logprobs"]
    assert logprobs["content"][0]["top_logprobs"] == [
        {"token": "Hello", "token_id": 1, "logprob": -0.5, "bytes": list(b"Hello")}
    ]
    assert len(logprobs["top_logprobs"]) == 3


@pytest.mark.anyio
async def test_logprobs_on_the_azure_route_need_pass_through(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    response = await client.post(
        "/chat/completions", json={**HI, "logprobs": True}, headers={"extra-parameters": "pass-through"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["logprobs"]["tokens"] == ["Hello", " world", "!"]


@pytest.mark.anyio
async def test_logprobs_false_gives_null_logprobs(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "logprobs": False})
    assert response.json()["choices"][0]["logprobs"] is None
    assert engine.requests[-1].logprobs is None


@pytest.mark.anyio
async def test_streamed_logprobs_ride_on_the_content_chunks(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "logprobs": True, "stream": True})
    chunks = [json.loads(p) for p in sse_events(response)[:-1]]
    tokens = [
        token
        for c in chunks
        if c["choices"][0]["logprobs"] is not None
        for token in c["choices"][0]["logprobs"]["tokens"]
    ]
    assert tokens == ["Hello", " world", "!"]


# -- Mistral extras reach the engine -------------------------------------------------------------------


@pytest.mark.anyio
async def test_ignore_eos_reaches_the_sampler(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    await client.post("/v1/chat/completions", json=HI)
    await client.post("/v1/chat/completions", json={**HI, "ignore_eos": True})
    assert engine.requests[0].sampling.ignore_eos is False
    assert engine.requests[1].sampling.ignore_eos is True


@pytest.mark.anyio
async def test_random_seed_sets_the_sampling_seed(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    await client.post("/v1/chat/completions", json=HI)
    response = await client.post("/v1/chat/completions", json={**HI, "random_seed": 1234})
    assert response.status_code == 200, response.text
    assert engine.requests[0].sampling.seed is None
    assert engine.requests[1].sampling.seed == 1234


@pytest.mark.anyio
async def test_seed_sets_the_sampling_seed(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    response = await client.post("/chat/completions", json={**HI, "seed": 42})
    assert response.status_code == 200, response.text
    assert engine.requests[-1].sampling.seed == 42


@pytest.mark.anyio
async def test_sampling_parameters_reach_the_engine(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "temperature": 0.2, "top_p": 0.5, "presence_penalty": 1.5, "frequency_penalty": -1.0}
    response = await client.post("/chat/completions", json={**body, "max_tokens": 7})
    assert response.status_code == 200, response.text
    request = engine.requests[-1]
    assert request.sampling.temperature == pytest.approx(0.2)
    assert request.sampling.top_p == pytest.approx(0.5)
    assert request.sampling.presence_penalty == pytest.approx(1.5)
    assert request.sampling.frequency_penalty == pytest.approx(-1.0)
    assert request.max_tokens == 7


@pytest.mark.anyio
async def test_sampling_defaults_apply_when_nothing_is_sent(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    await client.post("/chat/completions", json=HI)
    request = engine.requests[-1]
    assert request.sampling.temperature == pytest.approx(0.7)
    assert request.sampling.top_p == pytest.approx(1.0)
    assert request.max_tokens == FAKE_INFO.context_length - len("<user>hi<assistant>")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "flag", "headers"),
    [
        ("/v1/chat/completions", "safe_prompt", {}),
        ("/v1/chat/completions", "safe_mode", {}),
        ("/v1/chat/completions", "safemode", {}),
        ("/chat/completions", "safe_prompt", {"extra-parameters": "pass-through"}),
        ("/chat/completions", "safe_mode", {"extra-parameters": "pass-through"}),
        ("/chat/completions", "safemode", {"extra-parameters": "pass-through"}),
    ],
)
async def test_the_safe_prompt_flags_prepend_mistrals_safety_prompt(
    roomy_client: httpx.AsyncClient, roomy_engine: RoomyEngine, path: str, flag: str, headers: dict[str, str]
) -> None:
    plain = await roomy_client.post(path, json=HI, headers=headers)
    safe = await roomy_client.post(path, json={**HI, flag: True}, headers=headers)
    off = await roomy_client.post(path, json={**HI, flag: False}, headers=headers)
    assert plain.status_code == safe.status_code == off.status_code == 200, safe.text
    assert prompt_text(roomy_engine, 0) == "<user>hi<assistant>"
    assert prompt_text(roomy_engine, 1) == f"<system>{SAFE_PROMPT}<user>hi<assistant>"
    assert prompt_text(roomy_engine, 2) == "<user>hi<assistant>"
    assert safe.json()["usage"]["prompt_tokens"] > plain.json()["usage"]["prompt_tokens"]


@pytest.mark.anyio
async def test_the_safe_prompt_joins_a_leading_system_message(
    roomy_client: httpx.AsyncClient, roomy_engine: RoomyEngine
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    response = await roomy_client.post(
        "/v1/chat/completions", json={"messages": messages, "safe_prompt": True}
    )
    assert response.status_code == 200, response.text
    assert prompt_text(roomy_engine) == f"<system>{SAFE_PROMPT}\n\nBe brief.<user>hi<assistant>"


# -- stop sequences ------------------------------------------------------------------------------------

SPLIT_STOP = [b"Hel", b"lo EN", b"D more", b" tail", b"!"]


@pytest.mark.anyio
async def test_a_stop_split_across_tokens_is_cut_and_never_emitted(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.pieces = SPLIT_STOP
    response = await client.post("/chat/completions", json={**HI, "stop": ["END"], "max_tokens": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Hello "
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 3


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_a_streamed_stop_split_across_tokens_is_cut_and_never_emitted(
    client: httpx.AsyncClient, engine: ScriptedEngine, path: str
) -> None:
    engine.pieces = SPLIT_STOP
    response = await client.post(path, json={**HI, "stop": "END", "stream": True})
    chunks = [json.loads(p) for p in sse_events(response)[:-1]]
    deltas = [c["choices"][0]["delta"].get("content") or "" for c in chunks]
    assert "".join(deltas) == "Hello "
    assert not any(ch in delta for delta in deltas for ch in "END")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


@pytest.mark.anyio
async def test_text_held_back_for_a_stop_that_never_completes_is_emitted(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.pieces = [b"a E", b"N", b"x"]
    response = await client.post("/chat/completions", json={**HI, "stop": ["END"], "stream": True})
    chunks = [json.loads(p) for p in sse_events(response)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "a ENx"
    engine.pieces = [b"a E", b"N"]
    response = await client.post("/chat/completions", json={**HI, "stop": ["END"]})
    assert response.json()["choices"][0]["message"]["content"] == "a EN"


@pytest.mark.anyio
async def test_the_earliest_of_several_stops_wins(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    engine.pieces = [b"one two three"]
    response = await client.post("/chat/completions", json={**HI, "stop": ["three", "two"]})
    assert response.json()["choices"][0]["message"]["content"] == "one "


@pytest.mark.anyio
async def test_a_character_split_across_tokens_arrives_whole(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.pieces = [b"caf", b"\xc3", b"\xa9!"]
    response = await client.post("/chat/completions", json=HI)
    assert response.json()["choices"][0]["message"]["content"] == "café!"
    streamed = await client.post("/chat/completions", json={**HI, "stream": True})
    chunks = [json.loads(p) for p in sse_events(streamed)[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "café!"


# -- engine failures -----------------------------------------------------------------------------------


class BusyEngine(ScriptedEngine):
    """Refuses admission the way a full queue does."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        raise RateLimited("Rate limit is exceeded. Try again in 3 seconds.", retry_after=3)
        yield  # pragma: no cover - makes this an async generator


class BreakingEngine(ScriptedEngine):
    """Fails after its first token."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        async for event in super().generate(request):
            yield event
            raise RuntimeError("the engine broke")


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_a_busy_engine_gives_429_with_retry_after_before_any_event(
    tmp_path: Path, stream: bool
) -> None:
    settings = Settings(api_key=TEST_KEY, name="fake", data_dir=tmp_path)
    async with serving(settings, BusyEngine()) as c:
        response = await c.post("/chat/completions", json={**HI, "stream": stream})
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"] == {
        "code": "429",
        "message": "Rate limit is exceeded. Try again in 3 seconds.",
        "status": 429,
        "param": None,
        "type": None,
    }


@pytest.mark.anyio
async def test_an_interrupted_generation_gives_503_with_retry_after(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    engine.finish = "error"
    response = await client.post("/chat/completions", json=HI)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "ServiceUnavailable"
    assert response.json()["error"]["status"] == 503
    assert int(response.headers["retry-after"]) >= 1


class CutOffEngine(ScriptedEngine):
    """Ends its answer with an error finish that says why (as a server it forwards to may)."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        yield Token(-1, b"Hel")
        yield Finish("error", 5, 1, message="the upstream server broke off the answer (reset)")


@pytest.mark.anyio
async def test_an_interrupted_generation_says_why_in_its_503(tmp_path: Path) -> None:
    async with serving(fake_settings(tmp_path), CutOffEngine()) as c:
        response = await c.post("/chat/completions", json=HI)
    assert response.status_code == 503, response.text
    assert response.json()["error"]["message"] == (
        "The generation was interrupted (the upstream server broke off the answer (reset))."
    )


@pytest.mark.anyio
async def test_a_failure_mid_stream_ends_with_an_error_event_and_done(tmp_path: Path) -> None:
    settings = Settings(api_key=TEST_KEY, name="fake", data_dir=tmp_path)
    async with serving(settings, BreakingEngine()) as c:
        response = await c.post("/chat/completions", json={**HI, "stream": True})
    assert response.status_code == 200
    payloads = sse_events(response)
    assert payloads[-1] == "[DONE]"
    error = json.loads(payloads[-2])
    assert error == {"error": {"code": "InternalServerError", "message": "The stream failed.", "status": 500}}
    first = json.loads(payloads[0])
    assert first["choices"][0]["delta"]["role"] == "assistant"
