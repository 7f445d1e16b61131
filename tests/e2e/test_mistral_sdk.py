"""The official `mistralai` SDK (3.x) against a real `aimi serve`.

`Mistral(server_url=...)` appends `/v1/chat/completions` itself, so `server_url` is the deployment endpoint
or the server root, never something ending in `/v1`. The bundled Azure sub-client
(`mistralai.azure.client.MistralAzure`) posts to `{server_url}/models/chat/completions?api-version=...`,
which is aimi's Azure AI Model Inference route.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mistralai.azure.client import MistralAzure
from mistralai.azure.client import errors as azure_errors
from mistralai.client import Mistral, errors
from mistralai.client.models import (
    ChatCompletionResponse,
    ChatCompletionResponseChoiceLogprobs,
    CompletionEvent,
)

from tests.conftest import Server

pytestmark = pytest.mark.e2e

MODEL_NAME = "SmolLM2-135M-Instruct"
HELLO = [{"role": "user", "content": "Say hello to me in one short sentence."}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to paint."}]


@pytest.fixture
def client(server: Server) -> Iterator[Mistral]:
    with Mistral(api_key=server.key, server_url=server.endpoint) as c:
        yield c


@pytest.fixture
def azure(server: Server) -> Iterator[MistralAzure]:
    with MistralAzure(api_key=server.key, server_url=server.base_url) as c:
        yield c


def complete(client: Mistral | MistralAzure, **kwargs: Any) -> ChatCompletionResponse:
    kwargs.setdefault("model", "azureai")
    kwargs.setdefault("messages", HELLO)
    kwargs.setdefault("max_tokens", 32)
    return client.chat.complete(**kwargs)


def stream_events(client: Mistral | MistralAzure, **kwargs: Any) -> list[CompletionEvent]:
    kwargs.setdefault("model", "azureai")
    kwargs.setdefault("messages", HELLO)
    kwargs.setdefault("max_tokens", 24)
    with client.chat.stream(**kwargs) as events:
        return list(events)


def text_of(events: list[CompletionEvent]) -> str:
    return "".join(e.data.choices[0].delta.content or "" for e in events if e.data.choices)


def assert_is_a_sound_completion(response: ChatCompletionResponse, *, max_tokens: int) -> None:
    assert response.id
    assert response.object == "chat.completion"
    assert response.model == MODEL_NAME
    assert response.created > 0
    assert len(response.choices) == 1
    choice = response.choices[0]
    assert choice.index == 0
    assert choice.message is not None
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.message.content.strip()
    assert not choice.message.tool_calls
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= max_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == max_tokens


def assert_is_a_sound_stream(events: list[CompletionEvent], *, max_tokens: int) -> None:
    assert len(events) >= 3
    assert len({e.data.id for e in events}) == 1
    assert all(e.data.model == MODEL_NAME for e in events)
    assert events[0].data.choices[0].delta.role == "assistant"
    assert all(e.data.choices[0].finish_reason is None for e in events[:-1])
    last = events[-1].data
    assert last.choices[0].finish_reason in ("stop", "length")
    assert text_of(events).strip()
    assert last.usage is not None
    assert last.usage.prompt_tokens > 0
    assert 0 < last.usage.completion_tokens <= max_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(e.data.usage is None for e in events[:-1])
    if last.choices[0].finish_reason == "length":
        assert last.usage.completion_tokens == max_tokens


# -- Mistral-native client -----------------------------------------------------------------------


def test_chat_complete_through_the_deployment_endpoint_answers_with_text_and_consistent_usage(
    client: Mistral,
) -> None:
    response = complete(client, max_tokens=32)
    assert_is_a_sound_completion(response, max_tokens=32)


def test_chat_complete_through_the_server_root_reaches_the_deployment_the_key_belongs_to(
    server: Server,
) -> None:
    with Mistral(api_key=server.key, server_url=server.base_url) as root:
        response = complete(root, max_tokens=16)
    assert_is_a_sound_completion(response, max_tokens=16)


def test_each_completion_gets_its_own_id(client: Mistral) -> None:
    first = complete(client, max_tokens=2)
    second = complete(client, max_tokens=2)
    assert first.id != second.id


def test_max_tokens_cuts_the_answer_at_that_many_tokens_with_finish_reason_length(client: Mistral) -> None:
    response = complete(client, messages=STORY, max_tokens=3)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 3


def test_chat_stream_starts_with_the_assistant_role_and_ends_with_finish_reason_and_usage(
    client: Mistral,
) -> None:
    events = stream_events(client, max_tokens=24)
    assert_is_a_sound_stream(events, max_tokens=24)


def test_safe_prompt_adds_the_guardrail_system_prompt_to_the_prompt_tokens(client: Mistral) -> None:
    plain = complete(client, max_tokens=1, safe_prompt=False)
    guarded = complete(client, max_tokens=1, safe_prompt=True)
    # Mistral's guardrail prompt is about 40 tokens long.
    assert guarded.usage.prompt_tokens >= plain.usage.prompt_tokens + 20


def test_the_same_random_seed_gives_the_same_answer_at_temperature_0_7(client: Mistral) -> None:
    first = complete(client, messages=STORY, max_tokens=24, temperature=0.7, random_seed=1234)
    second = complete(client, messages=STORY, max_tokens=24, temperature=0.7, random_seed=1234)
    assert first.choices[0].message is not None
    assert second.choices[0].message is not None
    assert first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content


def test_a_streamed_answer_matches_the_completed_answer_for_the_same_random_seed(client: Mistral) -> None:
    whole = complete(client, messages=STORY, max_tokens=20, temperature=0.7, random_seed=99)
    events = stream_events(client, messages=STORY, max_tokens=20, temperature=0.7, random_seed=99)
    assert whole.choices[0].message is not None
    assert text_of(events) == whole.choices[0].message.content
    assert events[-1].data.usage is not None
    assert events[-1].data.usage.completion_tokens == whole.usage.completion_tokens


def test_a_stop_sequence_ends_the_answer_just_before_it_with_finish_reason_stop(client: Mistral) -> None:
    # Greedy decoding is repeatable, so the free answer tells where a stop word will be met.
    free = complete(client, messages=STORY, max_tokens=40, temperature=0, random_seed=1)
    assert free.choices[0].message is not None
    text = free.choices[0].message.content
    assert isinstance(text, str)
    words = text.split(" ")
    assert len(words) > 4, text
    stop = " " + words[3]

    stopped = complete(client, messages=STORY, max_tokens=40, temperature=0, random_seed=1, stop=stop)

    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message is not None
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.usage.completion_tokens < free.usage.completion_tokens


def test_the_sdk_parses_the_logprobs_it_asked_for(client: Mistral) -> None:
    # mistralai 3.x reads `choices[].logprobs.content[]` as {token, logprob, bytes, token_id, top_logprobs}
    # and silently leaves the field Unset when an entry does not fit that shape.
    response = complete(client, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2)
    logprobs = response.choices[0].logprobs
    assert isinstance(logprobs, ChatCompletionResponseChoiceLogprobs)
    assert len(logprobs.content) == response.usage.completion_tokens
    message = response.choices[0].message
    assert message is not None
    assert "".join(e.token for e in logprobs.content) == message.content
    for entry in logprobs.content:
        assert entry.logprob <= 0
        assert isinstance(entry.token_id, int)
        assert isinstance(entry.top_logprobs, list)
        assert 1 <= len(entry.top_logprobs) <= 2
        assert entry.top_logprobs[0].token == entry.token


def test_an_answer_returned_by_the_sdk_can_be_sent_back_as_conversation_history(client: Mistral) -> None:
    opening = [{"role": "user", "content": "My name is Ann."}]
    first = complete(client, messages=opening, max_tokens=8)
    assert first.choices[0].message is not None
    history = [*opening, first.choices[0].message, {"role": "user", "content": "What is my name?"}]
    second = complete(client, messages=history, max_tokens=8)
    assert second.choices[0].message is not None
    assert second.choices[0].message.content
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens


def test_a_wrong_key_raises_an_sdk_error_with_status_401(server: Server) -> None:
    with (
        Mistral(api_key="w" * 32, server_url=server.endpoint) as wrong,
        pytest.raises(errors.SDKError) as caught,
    ):
        complete(wrong, max_tokens=4)
    assert caught.value.status_code == 401
    assert "Unauthorized" in caught.value.body


def test_asking_for_two_choices_raises_an_http_validation_error_naming_n(client: Mistral) -> None:
    with pytest.raises(errors.HTTPValidationError) as caught:
        complete(client, max_tokens=4, n=2)
    assert caught.value.status_code == 422
    detail = caught.value.data.detail
    assert detail is not None
    assert len(detail) == 1
    assert detail[0].loc == ["body", "n"]
    assert detail[0].type == "parameter_not_supported"
    assert detail[0].input == 2
    assert "'n'" in detail[0].msg


def test_a_temperature_of_five_raises_an_sdk_error_with_status_400(client: Mistral) -> None:
    with pytest.raises(errors.SDKError) as caught:
        complete(client, temperature=5, max_tokens=4)
    assert caught.value.status_code == 400
    assert "temperature" in caught.value.body


def test_a_server_url_ending_in_v1_is_not_found_because_the_sdk_adds_v1_itself(server: Server) -> None:
    with (
        Mistral(api_key=server.key, server_url=f"{server.endpoint}/v1") as doubled,
        pytest.raises(errors.SDKError) as caught,
    ):
        complete(doubled, max_tokens=4)
    assert caught.value.status_code == 404


# -- the Azure sub-client bundled in mistralai 3.x -----------------------------------------------


def test_the_azure_sub_client_completes_at_the_server_root(azure: MistralAzure) -> None:
    response = complete(azure, max_tokens=16)
    assert_is_a_sound_completion(response, max_tokens=16)


def test_the_azure_sub_client_streams_at_the_server_root(azure: MistralAzure) -> None:
    events = stream_events(azure, max_tokens=16)
    assert_is_a_sound_stream(events, max_tokens=16)


def test_the_azure_sub_client_with_a_wrong_key_raises_an_sdk_error_with_status_401(server: Server) -> None:
    with (
        MistralAzure(api_key="w" * 32, server_url=server.base_url) as wrong,
        pytest.raises(azure_errors.SDKError) as caught,
    ):
        complete(wrong, max_tokens=4)
    assert caught.value.status_code == 401


def test_the_azure_sub_client_needs_pass_through_for_mistral_only_fields(azure: MistralAzure) -> None:
    # The Azure route follows the Azure AI Model Inference rule: without `extra-parameters`,
    # fields outside the Azure schema (like `random_seed`) are refused.
    with pytest.raises(azure_errors.SDKError) as caught:
        complete(azure, max_tokens=4, random_seed=7)
    assert caught.value.status_code == 400
    assert "random_seed" in caught.value.body

    headers = {"extra-parameters": "pass-through"}
    first = complete(
        azure, messages=STORY, max_tokens=16, temperature=0.7, random_seed=7, http_headers=headers
    )
    second = complete(
        azure, messages=STORY, max_tokens=16, temperature=0.7, random_seed=7, http_headers=headers
    )
    assert first.choices[0].message is not None
    assert second.choices[0].message is not None
    assert first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content


def test_the_azure_sub_client_honours_safe_prompt_with_pass_through(azure: MistralAzure) -> None:
    headers = {"extra-parameters": "pass-through"}
    plain = complete(azure, max_tokens=1, http_headers=headers)
    guarded = complete(azure, max_tokens=1, safe_prompt=True, http_headers=headers)
    assert guarded.usage.prompt_tokens >= plain.usage.prompt_tokens + 20
