"""LangChain's `ChatOpenAI` against a real `aimi serve`, unchanged but for the endpoint and the key, on
the Mistral-native route (it sends `max_completion_tokens` for `max_tokens`, and `stream_options`)."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from tests.conftest import Server

pytestmark = pytest.mark.e2e

QUESTION = [
    SystemMessage(content="You are a helpful assistant."),
    HumanMessage(content="Write a long story about a dragon who learns to paint."),
]


def chat(server: Server, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{server.endpoint}/v1", api_key=server.key, model="azureai", max_retries=0, **kwargs
    )


def test_invoke_answers_within_max_tokens_with_usage(server: Server) -> None:
    answer = chat(server, max_tokens=6, temperature=0).invoke(QUESTION)
    assert isinstance(answer, AIMessage)
    assert isinstance(answer.content, str) and answer.content
    assert answer.usage_metadata is not None
    assert answer.usage_metadata["output_tokens"] == 6
    assert answer.response_metadata["finish_reason"] == "length"


def test_stream_arrives_in_chunks_that_add_up_to_an_answer_with_usage(server: Server) -> None:
    chunks = list(chat(server, max_tokens=8, temperature=0, stream_usage=True).stream(QUESTION))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len([c for c in chunks if c.content]) > 1
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert isinstance(total.content, str) and total.content
    assert total.usage_metadata is not None
    assert total.usage_metadata["output_tokens"] == 8
