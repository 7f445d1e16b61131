"""The `openai` SDK's chat parameters on the Mistral-native route of a real `aimi serve`: each one it
can send is applied, ignored when that changes nothing, or refused with an error naming it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from tests.conftest import Server

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Say hello to me in one short sentence."}]
STORY: list[Any] = [{"role": "user", "content": "Write a long story about a dragon who learns to paint."}]


@pytest.fixture
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.endpoint}/v1", api_key=server.key, max_retries=0) as c:
        yield c


def complete(client: openai.OpenAI, **kwargs: Any) -> ChatCompletion:
    kwargs.setdefault("model", "azureai")
    kwargs.setdefault("messages", HELLO)
    return client.chat.completions.create(**kwargs)


def test_max_completion_tokens_cuts_the_answer_as_max_tokens_does(client: openai.OpenAI) -> None:
    """What the SDK's newer name for the limit sends; it was once dropped, and 4,058 tokens came back."""
    response = client.chat.completions.create(model="azureai", messages=STORY, max_completion_tokens=7)
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 7


def test_max_completion_tokens_and_a_different_max_tokens_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        complete(client, max_tokens=4, max_completion_tokens=7)
    assert "max_completion_tokens" in caught.value.message


def test_bookkeeping_parameters_are_accepted(client: openai.OpenAI) -> None:
    response = complete(
        client, max_tokens=4, user="u-1", metadata={"team": "a"}, store=False, service_tier="auto"
    )
    assert response.choices[0].message.content is not None


def test_a_parameter_the_deployment_does_not_apply_is_an_unprocessable_entity(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        complete(client, max_tokens=4, logit_bias={"50256": -100})
    assert "'logit_bias'" in caught.value.message


def test_an_unknown_parameter_is_an_unprocessable_entity_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        complete(client, max_tokens=4, extra_body={"frobnicate": True})
    assert "'frobnicate'" in caught.value.message
