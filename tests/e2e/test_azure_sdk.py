"""The official `azure-ai-inference` SDK against a real `aimi serve` process.

Every call here is written the way the Azure AI Foundry Mistral page shows it (a `ChatCompletionsClient`
with an `AzureKeyCredential`, `SystemMessage`/`UserMessage`, `model_extras` for the extras), and every
assertion is something a user of that page would check: the text, the usage, the finish reason, the
error code, how fast the tokens come.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.ai.inference import ChatCompletionsClient, load_client
from azure.ai.inference.aio import ChatCompletionsClient as AsyncChatCompletionsClient
from azure.ai.inference.models import (
    AssistantMessage,
    ChatCompletions,
    CompletionsFinishReason,
    StreamingChatCompletionsUpdate,
    SystemMessage,
    UserMessage,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from tests.conftest import Server, start_server, stop_server

try:  # the seed's spelling, from the early betas; 1.0.0b9 takes the plain string instead
    from azure.ai.inference.models import ChatCompletionsResponseFormat  # type: ignore[attr-defined]

    TEXT_FORMAT: Any = {"type": ChatCompletionsResponseFormat.TEXT}
except ImportError:
    TEXT_FORMAT = "text"

ADMIN_KEY = "m" * 32
"""The management key of the servers a test starts itself (`/metrics` needs it)."""

pytestmark = pytest.mark.e2e

MODEL_NAME = "SmolLM2-135M-Instruct"
PROVIDER = "HuggingFaceTB"
# Quoted from the Mistral page: what `safe_prompt` prepends.
MISTRAL_SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, "
    "unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity."
)
HEX_ID = re.compile(r"^[0-9a-f]{32}$")
FINISHED = {CompletionsFinishReason.STOPPED, CompletionsFinishReason.TOKEN_LIMIT_REACHED}


def seed_messages() -> list[Any]:
    """The conversation every example on the Mistral page sends."""
    return [
        SystemMessage(content="You are a helpful assistant."),
        UserMessage(content="How many languages are in the world?"),
    ]


@pytest.fixture(scope="module")
def model(server: Server) -> Iterator[ChatCompletionsClient]:
    """The seed's client, named as the seed names it; no retries, so an error is seen once."""
    client = ChatCompletionsClient(
        endpoint=server.endpoint, credential=AzureKeyCredential(server.key), retry_total=0
    )
    with client:
        yield client


Timed = list[tuple[float, StreamingChatCompletionsUpdate]]


def collect(stream: Iterable[StreamingChatCompletionsUpdate]) -> Timed:
    """Every update of a stream with the moment it reached the caller."""
    return [(time.monotonic(), update) for update in stream]


def streamed_text(updates: Timed) -> str:
    return "".join(u.choices[0].delta.content or "" for _, u in updates if u.choices)


def greedy(model: ChatCompletionsClient, *, max_tokens: int = 64, **kwargs: Any) -> ChatCompletions:
    return model.complete(messages=seed_messages(), temperature=0, top_p=1, max_tokens=max_tokens, **kwargs)


def logprobs_of(response: ChatCompletions) -> dict[str, Any]:
    """The SDK does not model `logprobs`; it keeps the raw key, readable as the dict it is."""
    raw = response.as_dict()["choices"][0]["logprobs"]
    assert raw is not None
    assert response.choices[0].get("logprobs") == raw
    return raw


def metric(text: str, name: str) -> float:
    """One sample of a Prometheus text exposition (counters carry a `_total` suffix)."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if re.fullmatch(rf"{name}(_total)?(\{{.*\}})?", sample):
            return float(value)
    raise AssertionError(f"{name} not in /metrics:\n{text}")


def error_from(call: Any) -> HttpResponseError:
    with pytest.raises(HttpResponseError) as caught:
        call()
    return caught.value


# -- /info ----------------------------------------------------------------------------------------------


def test_get_model_info_reports_the_deployed_chat_model(model: ChatCompletionsClient) -> None:
    info = model.get_model_info()

    assert info.model_name == MODEL_NAME
    assert info.model_type == "chat-completions"
    assert info.model_provider_name == PROVIDER
    assert info.as_dict() == {
        "model_name": MODEL_NAME,
        "model_type": "chat-completions",
        "model_provider_name": PROVIDER,
    }


@pytest.mark.parametrize("suffix", ["/models", "", "/"], ids=["models-endpoint", "bare-base-url", "slash"])
def test_get_model_info_and_complete_work_on_the_models_style_and_bare_endpoints(
    server: Server, suffix: str
) -> None:
    client = ChatCompletionsClient(
        endpoint=server.base_url + suffix, credential=AzureKeyCredential(server.key), retry_total=0
    )
    with client:
        info = client.get_model_info()
        response = client.complete(messages=seed_messages(), max_tokens=4, temperature=0)

    assert (info.model_name, info.model_type, info.model_provider_name) == (
        MODEL_NAME,
        "chat-completions",
        PROVIDER,
    )
    assert response.model == MODEL_NAME
    assert response.choices[0].message.content


def test_load_client_reads_the_info_route_and_builds_a_chat_completions_client(server: Server) -> None:
    client = load_client(endpoint=server.endpoint, credential=AzureKeyCredential(server.key))
    with client:
        assert isinstance(client, ChatCompletionsClient)
        response = client.complete(messages=seed_messages(), max_tokens=4, temperature=0)
    assert response.choices[0].message.content


# -- complete() -----------------------------------------------------------------------------------------


def test_complete_with_the_seed_messages_answers_with_content_model_usage_and_a_hex_id(
    model: ChatCompletionsClient,
) -> None:
    response = model.complete(messages=seed_messages(), max_tokens=64)

    choice = response.choices[0]
    assert len(response.choices) == 1
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content.strip()
    assert choice.finish_reason in FINISHED
    assert response.model == MODEL_NAME
    assert HEX_ID.match(response.id), response.id
    assert abs((datetime.now(UTC) - response.created).total_seconds()) < 300
    usage = response.usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 64
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_each_response_gets_its_own_id(model: ChatCompletionsClient) -> None:
    ids = {greedy(model, max_tokens=2).id for _ in range(3)}
    assert len(ids) == 3


def test_two_identical_greedy_requests_give_the_same_text(model: ChatCompletionsClient) -> None:
    first = greedy(model, max_tokens=32)
    second = greedy(model, max_tokens=32)

    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage.as_dict() == second.usage.as_dict()


def test_max_tokens_caps_the_completion_and_reports_length(model: ChatCompletionsClient) -> None:
    response = greedy(model, max_tokens=6, model_extras={"ignore_eos": True})

    assert response.usage.completion_tokens == 6
    assert response.choices[0].finish_reason == CompletionsFinishReason.TOKEN_LIMIT_REACHED
    assert response.choices[0].message.content


def test_a_completion_that_ends_by_itself_within_max_tokens_reports_stop(
    model: ChatCompletionsClient,
) -> None:
    response = greedy(model, max_tokens=200)

    assert response.choices[0].finish_reason == CompletionsFinishReason.STOPPED
    assert response.usage.completion_tokens < 200


def test_the_seed_parameter_example_with_penalties_stop_and_text_format_works(
    model: ChatCompletionsClient,
) -> None:
    response = model.complete(
        messages=seed_messages(),
        presence_penalty=0.1,
        frequency_penalty=0.8,
        max_tokens=64,
        stop=["<|endoftext|>"],
        temperature=0,
        top_p=1,
        response_format=TEXT_FORMAT,
    )

    content = response.choices[0].message.content
    assert content.strip()
    assert "<|endoftext|>" not in content
    assert response.choices[0].finish_reason in FINISHED
    assert response.usage.completion_tokens <= 64
    # The same request as the wire JSON the documentation shows, `response_format` as an object.
    raw = model.complete(
        {
            "messages": [m.as_dict() for m in seed_messages()],
            "presence_penalty": 0.1,
            "frequency_penalty": 0.8,
            "max_tokens": 64,
            "stop": "<|endoftext|>",
            "temperature": 0,
            "top_p": 1,
            "response_format": {"type": "text"},
        }
    )
    assert raw.choices[0].message.content == content


def test_frequency_and_presence_penalties_shape_a_streamed_answer_too(model: ChatCompletionsClient) -> None:
    updates = collect(greedy(model, max_tokens=32, stream=True, presence_penalty=0.5, frequency_penalty=0.5))

    final = updates[-1][1]
    assert final.choices[0].finish_reason in FINISHED, final.as_dict()
    assert final.usage.completion_tokens > 0
    assert streamed_text(updates).strip()


def test_a_stop_sequence_from_the_greedy_output_cuts_it_and_is_never_emitted(
    model: ChatCompletionsClient,
) -> None:
    full = greedy(model, max_tokens=48).choices[0].message.content
    words = full.split(" ")
    assert len(words) >= 6, full
    stop = " " + words[len(words) // 2]
    expected = full[: full.index(stop)]

    cut = greedy(model, max_tokens=48, stop=[stop])
    assert cut.choices[0].message.content == expected
    assert stop not in cut.choices[0].message.content
    assert cut.choices[0].finish_reason == CompletionsFinishReason.STOPPED

    updates = collect(greedy(model, max_tokens=48, stop=[stop], stream=True))
    assert streamed_text(updates) == expected
    assert all(stop not in (u.choices[0].delta.content or "") for _, u in updates)
    assert updates[-1][1].choices[0].finish_reason == CompletionsFinishReason.STOPPED


def test_the_same_seed_gives_the_same_sampled_text_twice(model: ChatCompletionsClient) -> None:
    def sample() -> str:
        response = model.complete(messages=seed_messages(), temperature=0.8, seed=1234, max_tokens=24)
        return response.choices[0].message.content

    assert sample() == sample()


def test_different_seeds_sample_different_texts(model: ChatCompletionsClient) -> None:
    texts = {
        model.complete(
            messages=seed_messages(),
            temperature=1.0,
            seed=seed,
            max_tokens=16,
            model_extras={"ignore_eos": True},
        )
        .choices[0]
        .message.content
        for seed in (1, 2, 3)
    }
    assert len(texts) > 1


def test_an_assistant_turn_echoed_back_from_a_response_continues_the_conversation(
    model: ChatCompletionsClient,
) -> None:
    messages = seed_messages()
    first = model.complete(messages=messages, max_tokens=24, temperature=0)
    messages.append(first.choices[0].message)  # what users do; it carries "tool_calls": null
    messages.append(UserMessage(content="Which one is spoken the most?"))
    second = model.complete(messages=messages, max_tokens=24, temperature=0)

    assert second.choices[0].message.content.strip()
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens

    explicit = [*seed_messages(), AssistantMessage(content=first.choices[0].message.content)]
    explicit.append(UserMessage(content="Which one is spoken the most?"))
    third = model.complete(messages=explicit, max_tokens=24, temperature=0)
    assert third.usage.prompt_tokens == second.usage.prompt_tokens


# -- streaming ------------------------------------------------------------------------------------------


def test_streaming_update_carries_role_only_on_the_first_chunk(model: ChatCompletionsClient) -> None:
    with model.complete(messages=seed_messages(), max_tokens=32, temperature=0, stream=True) as stream:
        updates = [u for _, u in collect(stream)]

    assert len(updates) >= 3
    first, middle, last = updates[0], updates[1:-1], updates[-1]
    assert first.choices[0].delta.role == "assistant"
    assert all(u.choices[0].delta.role is None for u in updates[1:])
    assert sum(1 for u in middle if u.choices[0].delta.content) >= 2
    assert all(u.choices[0].finish_reason is None and u.usage is None for u in updates[:-1])
    assert last.choices[0].finish_reason in FINISHED
    assert last.usage is not None
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert 0 < last.usage.completion_tokens <= 32
    assert HEX_ID.match(first.id)
    assert {u.id for u in updates} == {first.id}
    assert {u.model for u in updates} == {MODEL_NAME}


def test_streamed_text_equals_the_non_streamed_text_for_the_same_greedy_request(
    model: ChatCompletionsClient,
) -> None:
    whole = greedy(model, max_tokens=48)
    updates = collect(greedy(model, max_tokens=48, stream=True))

    assert streamed_text(updates) == whole.choices[0].message.content
    final = updates[-1][1]
    assert final.choices[0].finish_reason == whole.choices[0].finish_reason
    assert final.usage.as_dict() == whole.usage.as_dict()


def test_streamed_content_arrives_incrementally_not_all_at_once(model: ChatCompletionsClient) -> None:
    updates = collect(
        model.complete(
            messages=seed_messages(),
            max_tokens=64,
            temperature=0,
            stream=True,
            model_extras={"ignore_eos": True},
        )
    )

    arrivals = [t for t, u in updates if u.choices and u.choices[0].delta.content]
    assert len(arrivals) >= 32
    spread = arrivals[-1] - arrivals[0]
    # 64 tokens take a few hundred milliseconds to decode; a buffered body would land in one read.
    assert spread > 0.2, f"all content arrived within {spread:.3f} s"
    distinct = sum(1 for a, b in itertools.pairwise(arrivals) if b - a > 0.001)
    assert distinct >= len(arrivals) // 2, f"only {distinct} of {len(arrivals)} pieces arrived separately"
    assert updates[-1][1].usage.completion_tokens == 64


@pytest.mark.anyio
async def test_the_async_client_streams_role_content_and_final_usage(server: Server) -> None:
    client = AsyncChatCompletionsClient(
        endpoint=server.endpoint,
        credential=AzureKeyCredential(server.key),
        retry_total=0,
        **async_transport(),
    )
    async with client:
        info = await client.get_model_info()
        stream = await client.complete(messages=seed_messages(), max_tokens=24, temperature=0, stream=True)
        async with stream:
            updates = [update async for update in stream]
        whole = await client.complete(messages=seed_messages(), max_tokens=24, temperature=0)

    assert info.model_name == MODEL_NAME
    assert updates[0].choices[0].delta.role == "assistant"
    assert all(u.choices[0].delta.role is None for u in updates[1:])
    text = "".join(u.choices[0].delta.content or "" for u in updates)
    assert text.strip()
    assert text == whole.choices[0].message.content
    assert updates[-1].choices[0].finish_reason in FINISHED
    assert updates[-1].usage.total_tokens == whole.usage.total_tokens


def async_transport() -> dict[str, Any]:
    """azure-core's default async transport needs aiohttp, which the SDK does not install; without
    it, use azure-core's own requests-based asyncio transport (same pipeline, same SSE parser)."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        from azure.core.pipeline.transport import AsyncioRequestsTransport

        return {"transport": AsyncioRequestsTransport()}
    return {}


# -- extras: logprobs, safe mode, n ---------------------------------------------------------------------


def test_logprobs_extra_returns_aligned_tokens_logprobs_and_offsets(model: ChatCompletionsClient) -> None:
    response = greedy(model, max_tokens=32, model_extras={"logprobs": True})

    content = response.choices[0].message.content
    lp = logprobs_of(response)
    tokens, logprobs, tops, offsets = (
        lp["tokens"],
        lp["token_logprobs"],
        lp["top_logprobs"],
        lp["text_offsets"],
    )
    assert len(tokens) == len(logprobs) == len(tops) == len(offsets) == response.usage.completion_tokens
    assert "".join(tokens) == content
    assert offsets == [len("".join(tokens[:i])) for i in range(len(tokens))]
    assert all(lp_ <= 0 and math.isfinite(lp_) for lp_ in logprobs)
    assert all(top[token] == logprob for token, logprob, top in zip(tokens, logprobs, tops, strict=True))


def test_top_logprobs_show_the_greedy_token_as_the_most_likely_one(model: ChatCompletionsClient) -> None:
    response = greedy(model, max_tokens=16, model_extras={"logprobs": True, "top_logprobs": 3})

    lp = logprobs_of(response)
    for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        assert 1 <= len(top) <= 3
        assert top[token] == logprob
        assert logprob == max(top.values()), (token, top)


def test_streamed_logprobs_join_to_the_streamed_text(model: ChatCompletionsClient) -> None:
    updates = collect(greedy(model, max_tokens=24, stream=True, model_extras={"logprobs": True}))

    tokens: list[str] = []
    for _, update in updates:
        raw = update.as_dict()["choices"][0].get("logprobs")
        if raw:
            assert "".join(raw["tokens"]) == update.choices[0].delta.content
            tokens.extend(raw["tokens"])
    assert "".join(tokens) == streamed_text(updates)
    assert len(tokens) == updates[-1][1].usage.completion_tokens


@pytest.mark.parametrize("key", ["safe_mode", "safe_prompt"])
def test_safe_mode_prepends_the_safety_prompt_to_the_prompt(model: ChatCompletionsClient, key: str) -> None:
    plain = greedy(model, max_tokens=16)
    safe = greedy(model, max_tokens=16, model_extras={key: True})
    off = greedy(model, max_tokens=16, model_extras={key: False})

    assert safe.choices[0].message.content.strip()
    # "Always assist with care, respect, and truth. ..." is some 35 tokens of this vocabulary.
    assert safe.usage.prompt_tokens >= plain.usage.prompt_tokens + 25
    assert off.usage.prompt_tokens == plain.usage.prompt_tokens
    # Joined to the user's own system prompt, as Mistral joins system messages.
    joined = model.complete(
        messages=[
            SystemMessage(content=f"{MISTRAL_SAFE_PROMPT}\n\nYou are a helpful assistant."),
            UserMessage(content="How many languages are in the world?"),
        ],
        temperature=0,
        top_p=1,
        max_tokens=16,
    )
    assert safe.usage.prompt_tokens == joined.usage.prompt_tokens
    assert safe.choices[0].message.content == joined.choices[0].message.content


def test_safe_prompt_without_a_system_message_is_the_documented_safety_system_prompt(
    model: ChatCompletionsClient,
) -> None:
    question = UserMessage(content="How many languages are in the world?")
    safe = model.complete(
        messages=[question], max_tokens=16, temperature=0, model_extras={"safe_prompt": True}
    )
    explicit = model.complete(
        messages=[SystemMessage(content=MISTRAL_SAFE_PROMPT), question], max_tokens=16, temperature=0
    )

    assert safe.usage.prompt_tokens == explicit.usage.prompt_tokens
    assert safe.choices[0].message.content == explicit.choices[0].message.content


def test_n_equal_to_one_is_accepted_as_a_pass_through_extra(model: ChatCompletionsClient) -> None:
    response = greedy(model, max_tokens=8, model_extras={"n": 1})

    assert len(response.choices) == 1
    assert response.choices[0].message.content


# -- errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["complete", "get_model_info"])
def test_a_wrong_key_raises_client_authentication_error_saying_auth_token_validation_failed(
    server: Server, call: str
) -> None:
    client = ChatCompletionsClient(
        endpoint=server.endpoint, credential=AzureKeyCredential("x" * 32), retry_total=0
    )
    with client, pytest.raises(ClientAuthenticationError) as caught:
        if call == "complete":
            client.complete(messages=seed_messages(), max_tokens=4)
        else:
            client.get_model_info()

    assert caught.value.status_code == 401
    assert "auth token validation failed" in caught.value.message.lower()


def test_an_unknown_key_in_a_raw_body_is_rejected_with_400_extra_parameters_not_allowed(
    model: ChatCompletionsClient,
) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "bogus": 1}
    error = error_from(lambda: model.complete(body))

    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == "extra_parameters_not_allowed"
    assert "bogus" in error.message
    assert "pass-through" in error.message
    assert "Retry-After" not in error.response.headers


def test_an_unknown_pass_through_extra_is_rejected_with_422_parameter_not_supported(
    model: ChatCompletionsClient,
) -> None:
    error = error_from(
        lambda: model.complete(messages=seed_messages(), max_tokens=4, model_extras={"bogus_param": 1})
    )

    assert error.status_code == 422
    assert error.error.code == "parameter_not_supported"
    assert "bogus_param" in error.message
    detail = error.response.json()["detail"]
    assert detail[0]["loc"] == ["body", "bogus_param"]


def test_more_than_one_choice_is_rejected_with_422_parameter_not_supported(
    model: ChatCompletionsClient,
) -> None:
    error = error_from(lambda: model.complete(messages=seed_messages(), max_tokens=4, model_extras={"n": 2}))

    assert error.status_code == 422
    assert error.error.code == "parameter_not_supported"


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
def test_a_prompt_plus_max_tokens_beyond_the_context_gives_400_context_length_exceeded(
    model: ChatCompletionsClient, stream: bool
) -> None:
    error = error_from(lambda: model.complete(messages=seed_messages(), max_tokens=100000, stream=stream))

    assert error.status_code == 400
    assert error.error.code == "context_length_exceeded"
    assert "maximum context length" in error.error.message


# -- disconnects ----------------------------------------------------------------------------------------


def test_closing_a_stream_early_frees_the_engine_for_the_next_request(tmp_path: Path) -> None:
    # One slot: were the abandoned generation still running, the next request would queue behind it.
    server = start_server(tmp_path, "--parallel", "1", env={"AIMI_ADMIN_KEY": ADMIN_KEY})
    try:
        body = {
            "messages": [{"role": "user", "content": "Count from one to one thousand."}],
            "max_tokens": 2000,
            "temperature": 0,
            "stream": True,
            "ignore_eos": True,
        }
        headers = {"api-key": server.key, "extra-parameters": "pass-through"}
        arrivals: list[float] = []
        with (
            httpx.Client(timeout=60) as http,
            http.stream("POST", f"{server.endpoint}/chat/completions", json=body, headers=headers) as r,
        ):
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                if json.loads(line[len("data: ") :])["choices"][0]["delta"].get("content"):
                    arrivals.append(time.monotonic())
                    if len(arrivals) == 10:
                        break
        # The connection is closed here, 10 tokens into 2000.
        per_token = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
        left_if_still_running = (2000 - len(arrivals)) * per_token

        client = ChatCompletionsClient(
            endpoint=server.endpoint, credential=AzureKeyCredential(server.key), retry_total=0
        )
        with client:
            started = time.monotonic()
            response = client.complete(
                messages=[UserMessage(content="Say hello.")],
                max_tokens=8,
                temperature=0,
                model_extras={"ignore_eos": True},
            )
            took = time.monotonic() - started

        assert response.usage.completion_tokens == 8
        assert took < left_if_still_running / 3, (
            f"the next request took {took:.2f} s; the abandoned generation had "
            f"~{left_if_still_running:.1f} s left ({per_token * 1000:.1f} ms/token)"
        )
        assert took < 30
        # The engine's own counters agree: nothing is decoding, and nowhere near 2000 tokens were made.
        scraped = httpx.get(f"{server.base_url}/metrics", headers={"api-key": ADMIN_KEY}, timeout=10)
        assert scraped.status_code == 200
        assert metric(scraped.text, "aimi_engine_running_sequences") == 0
        assert metric(scraped.text, "aimi_engine_generated_tokens") < 500
    finally:
        stop_server(server)
