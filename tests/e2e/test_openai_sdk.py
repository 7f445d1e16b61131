"""The official `openai` SDK against a real `aimi serve`, on the Mistral-native `/v1/chat/completions`.

The SDK posts to `{base_url}/chat/completions`, so `base_url=<endpoint>/v1` reaches the Mistral route of
one deployment and `base_url=<server>/v1` the same route at the root, where the key picks the deployment.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionTokenLogprob

from tests.conftest import Server

pytestmark = pytest.mark.e2e

MODEL_NAME = "SmolLM2-135M-Instruct"
HELLO = [{"role": "user", "content": "Say hello to me in one short sentence."}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to paint."}]
NON_ASCII = [{"role": "user", "content": "Reply with five emoji and some Chinese characters: 你好世界"}]


@pytest.fixture
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.endpoint}/v1", api_key=server.key, max_retries=0) as c:
        yield c


def complete(client: openai.OpenAI, **kwargs: Any) -> ChatCompletion:
    kwargs.setdefault("model", "azureai")
    kwargs.setdefault("messages", HELLO)
    kwargs.setdefault("max_tokens", 32)
    return client.chat.completions.create(**kwargs)


def assert_is_a_sound_completion(response: ChatCompletion, *, max_tokens: int) -> None:
    assert response.object == "chat.completion"
    assert response.id
    assert response.created > 0
    assert response.model == MODEL_NAME
    assert len(response.choices) == 1
    choice = response.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= max_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if choice.finish_reason == "length":
        assert usage.completion_tokens == max_tokens


# -- completions ---------------------------------------------------------------------------------


def test_a_completion_through_the_deployment_endpoint_answers_with_text_and_consistent_usage(
    client: openai.OpenAI,
) -> None:
    response = complete(client, max_tokens=32)
    assert_is_a_sound_completion(response, max_tokens=32)


def test_a_completion_through_the_server_root_reaches_the_deployment_the_key_belongs_to(
    server: Server,
) -> None:
    with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.key, max_retries=0) as root:
        response = complete(root, max_tokens=16)
    assert_is_a_sound_completion(response, max_tokens=16)


def test_max_tokens_cuts_the_answer_at_that_many_tokens_with_finish_reason_length(
    client: openai.OpenAI,
) -> None:
    response = complete(client, messages=STORY, max_tokens=3)
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 3
    assert response.choices[0].message.content


def test_a_stop_sequence_ends_the_answer_just_before_it_with_finish_reason_stop(
    client: openai.OpenAI,
) -> None:
    # Greedy decoding is repeatable, so the free answer tells where a stop word will be met.
    free = complete(client, messages=STORY, max_tokens=40, temperature=0, seed=1)
    text = free.choices[0].message.content
    assert text
    words = text.split(" ")
    assert len(words) > 4, text
    stop = " " + words[3]
    expected = text[: text.index(stop)]

    stopped = complete(client, messages=STORY, max_tokens=40, temperature=0, seed=1, stop=[stop])

    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == expected
    assert stopped.usage is not None
    assert free.usage is not None
    assert stopped.usage.completion_tokens < free.usage.completion_tokens


def test_the_same_seed_gives_the_same_answer_at_temperature_0_7(client: openai.OpenAI) -> None:
    first = complete(client, messages=STORY, max_tokens=24, temperature=0.7, seed=1234)
    second = complete(client, messages=STORY, max_tokens=24, temperature=0.7, seed=1234)
    assert first.choices[0].message.content
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage


def test_logprobs_list_each_generated_token_with_up_to_two_alternatives(client: openai.OpenAI) -> None:
    response = complete(client, max_tokens=16, temperature=0, logprobs=True, top_logprobs=2)
    choice = response.choices[0]
    assert choice.logprobs is not None
    entries = choice.logprobs.content
    assert entries
    assert response.usage is not None
    assert len(entries) == response.usage.completion_tokens
    assert choice.message.content is not None
    if choice.message.content.isascii():
        assert "".join(e.token for e in entries) == choice.message.content
    assert joined_bytes(entries) == choice.message.content
    for entry in entries:
        assert entry.logprob <= 0
        assert 1 <= len(entry.top_logprobs) <= 2
        assert all(t.logprob <= 0 for t in entry.top_logprobs)
        ranked = [t.logprob for t in entry.top_logprobs]
        assert ranked == sorted(ranked, reverse=True)
        # At temperature 0 the chosen token is the most likely one.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


def joined_bytes(entries: list[ChatCompletionTokenLogprob]) -> str:
    """What a client rebuilds from the tokens' UTF-8 bytes (a cut-off last character becomes U+FFFD)."""
    return bytes(b for e in entries for b in (e.bytes or [])).decode("utf-8", errors="replace")


def test_logprob_bytes_rebuild_an_answer_in_chinese_and_emoji(client: openai.OpenAI) -> None:
    # Such characters span several tokens; each token's `bytes` holds its part of the UTF-8 sequence.
    response = complete(
        client, messages=NON_ASCII, max_tokens=30, temperature=0, logprobs=True, top_logprobs=1
    )
    content = response.choices[0].message.content
    assert content
    assert not content.isascii()
    logprobs = response.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content
    assert joined_bytes(logprobs.content).rstrip("\ufffd") == content.rstrip("\ufffd")


def test_a_completion_without_logprobs_carries_none(client: openai.OpenAI) -> None:
    response = complete(client, max_tokens=4)
    assert response.choices[0].logprobs is None


def test_a_previous_answer_can_be_sent_back_as_conversation_history(client: openai.OpenAI) -> None:
    opening = [{"role": "user", "content": "My name is Ann."}]
    first = complete(client, messages=opening, max_tokens=8)
    history = [*opening, first.choices[0].message, {"role": "user", "content": "What is my name?"}]
    second = complete(client, messages=history, max_tokens=8)
    assert second.choices[0].message.content
    assert first.usage is not None
    assert second.usage is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens


def test_a_developer_message_is_read_as_a_system_message(client: openai.OpenAI) -> None:
    instruction = "Answer in French."
    as_developer = complete(
        client, messages=[{"role": "developer", "content": instruction}, *HELLO], max_tokens=1
    )
    as_system = complete(client, messages=[{"role": "system", "content": instruction}, *HELLO], max_tokens=1)
    without = complete(client, messages=HELLO, max_tokens=1)
    assert as_developer.usage is not None
    assert as_system.usage is not None
    assert without.usage is not None
    assert as_developer.usage.prompt_tokens == as_system.usage.prompt_tokens
    assert as_developer.usage.prompt_tokens != without.usage.prompt_tokens


# -- streaming -----------------------------------------------------------------------------------


def stream_chunks(client: openai.OpenAI, **kwargs: Any) -> list[ChatCompletionChunk]:
    kwargs.setdefault("model", "azureai")
    kwargs.setdefault("messages", HELLO)
    kwargs.setdefault("max_tokens", 24)
    with client.chat.completions.create(stream=True, **kwargs) as stream:
        return list(stream)


def test_a_stream_starts_with_the_assistant_role_and_accumulates_text_until_a_finish_reason(
    client: openai.OpenAI,
) -> None:
    chunks = stream_chunks(client, max_tokens=24)

    assert len(chunks) >= 3
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert all(c.model == MODEL_NAME for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    with_choices = [c for c in chunks if c.choices]
    assert all(c.choices[0].finish_reason is None for c in with_choices[:-1])
    finish = with_choices[-1].choices[0].finish_reason
    assert finish in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert text.strip()

    usage = chunks[-1].usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    assert 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    if finish == "length":
        assert usage.completion_tokens == 24


def test_a_streamed_answer_matches_the_non_streamed_answer_for_the_same_seed(client: openai.OpenAI) -> None:
    whole = complete(client, messages=STORY, max_tokens=20, temperature=0.7, seed=99)
    chunks = stream_chunks(client, messages=STORY, max_tokens=20, temperature=0.7, seed=99)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_a_stream_honours_a_stop_sequence(client: openai.OpenAI) -> None:
    free = complete(client, messages=STORY, max_tokens=40, temperature=0, seed=1)
    text = free.choices[0].message.content
    assert text
    words = text.split(" ")
    assert len(words) > 4, text
    stop = " " + words[3]

    chunks = stream_chunks(client, messages=STORY, max_tokens=40, temperature=0, seed=1, stop=stop)

    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text[: text.index(stop)]
    assert [c for c in chunks if c.choices][-1].choices[0].finish_reason == "stop"


# -- errors --------------------------------------------------------------------------------------


def test_a_wrong_key_is_an_authentication_error(server: Server) -> None:
    with (
        openai.OpenAI(base_url=f"{server.endpoint}/v1", api_key="w" * 32, max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        complete(wrong, max_tokens=4)
    assert caught.value.status_code == 401


def test_asking_for_two_choices_is_an_unprocessable_entity(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        complete(client, max_tokens=4, n=2)
    assert caught.value.status_code == 422
    assert "'n'" in caught.value.message


def test_an_empty_message_list_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        complete(client, messages=[], max_tokens=4)
    assert caught.value.status_code == 400
    assert "messages" in caught.value.message


def test_a_temperature_of_five_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        complete(client, temperature=5, max_tokens=4)
    assert caught.value.status_code == 400
    assert "temperature" in caught.value.message


def test_a_streamed_request_with_a_wrong_key_fails_before_any_chunk(server: Server) -> None:
    with (
        openai.OpenAI(base_url=f"{server.endpoint}/v1", api_key="w" * 32, max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        stream_chunks(wrong, max_tokens=4)
