"""A conversation that comes back after its slot served someone else is restored from the prompt
cache, and the client sees it in `usage.prompt_tokens_details.cached_tokens` (openai SDK)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

SYSTEM = "You are a patient librarian. Answer briefly. " * 8


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("one-slot"), "--parallel", "1", "--no-safety")
    yield running
    stop_server(running)


def history(user: str, turns: int) -> list[dict[str, str]]:
    messages: list[Any] = [{"role": "system", "content": f"{SYSTEM} You are talking to {user}."}]
    for turn in range(turns):
        messages += [
            {"role": "user", "content": f"{user} asks question number {turn} about old maps."},
            {"role": "assistant", "content": f"Answer number {turn} for {user}: see the third shelf."},
        ]
    return [*messages, {"role": "user", "content": "And one more?"}]


def test_a_returning_conversation_reports_its_prompt_as_cached(one_slot: Server) -> None:
    client = openai.OpenAI(base_url=f"{one_slot.endpoint}/v1", api_key=one_slot.key)

    def ask(messages: list[Any]) -> openai.types.CompletionUsage:
        answer = client.chat.completions.create(
            model="smollm2",
            messages=messages,
            max_tokens=2,
            temperature=0,
        )
        assert answer.usage is not None
        return answer.usage

    first = ask(history("Ada", 2))
    ask(history("Grace", 2))  # the only slot now holds Grace's conversation; Ada's went to host memory
    back = ask(history("Ada", 3))
    assert back.prompt_tokens_details is not None
    cached = back.prompt_tokens_details.cached_tokens
    assert cached is not None and cached > first.prompt_tokens * 0.8, (cached, first.prompt_tokens)
    assert first.prompt_tokens_details is not None and first.prompt_tokens_details.cached_tokens == 0
