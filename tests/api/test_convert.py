"""Domain answers to wire bodies (`aimi.api.convert`): which keys each chunk and completion carries,
byte for byte as clients read them (a key sent as `null` stays; a key with nothing to say is absent)."""

from __future__ import annotations

import json
from typing import Any

from aimi.api import convert, sse
from aimi.engines.base import ToolCall
from aimi.inference.chat import ChatResult, Delta, Done, Usage

META = convert.ResponseMeta(id="a" * 32, created=1_700_000_000, model="m")
CALL = ToolCall(id="abc0dF1gh", name="f", arguments='{"x": 1}')


def event(chunk: Any) -> dict[str, Any]:
    data: bytes = sse.event(chunk)
    assert data.startswith(b"data: {") and data.endswith(b"}\n\n") and b"\n" not in data[:-2]
    return json.loads(data.removeprefix(b"data: "))  # type: ignore[no-any-return]


def test_a_text_chunk_carries_the_content_and_null_finish_reason_and_logprobs_only() -> None:
    body = event(convert.delta_chunk(delta=Delta("héllo"), **META))
    assert body == {
        "id": "a" * 32,
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "héllo"}, "finish_reason": None, "logprobs": None}],
    }
    assert "héllo".encode() in sse.event(convert.delta_chunk(delta=Delta("héllo"), **META))


def test_the_first_chunk_names_the_role_and_without_safety_no_filter_results() -> None:
    body = event(convert.first_chunk(prompt_safety=None, **META))
    assert body["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "prompt_filter_results" not in body and "usage" not in body


def test_the_last_chunk_carries_usage_and_every_call_whole_with_its_index() -> None:
    done = Done("tool_calls", Usage(5, 2, cached_tokens=3), tool_calls=(CALL, CALL))
    body = event(convert.final_chunk(done=done, **META))
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["logprobs"] is None
    assert [c["index"] for c in choice["delta"]["tool_calls"]] == [0, 1]
    assert choice["delta"]["tool_calls"][0] == {
        "index": 0, "id": "abc0dF1gh", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}
    }  # fmt: skip
    assert body["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 2,
        "total_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 3},
    }
    assert "content_filter_results" not in choice


def test_an_answer_cut_off_at_shutdown_finishes_with_error_on_the_wire() -> None:
    body = event(convert.final_chunk(done=Done("interrupted", Usage(1, 1)), **META))
    assert body["choices"][0]["finish_reason"] == "error"
    assert "tool_calls" not in body["choices"][0]["delta"]


def test_a_completion_keeps_null_tool_calls_and_logprobs_and_has_no_index_on_its_calls() -> None:
    plain = ChatResult("hi", "stop", Usage(1, 1), None)
    body = json.loads(convert.completion(result=plain, **META).model_dump_json())
    assert body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "hi", "tool_calls": None},
        "finish_reason": "stop",
        "logprobs": None,
    }
    assert "prompt_filter_results" not in body
    called = ChatResult("", "tool_calls", Usage(1, 1), None, tool_calls=(CALL,))
    calls = json.loads(convert.completion(result=called, **META).model_dump_json())["choices"][0]
    assert "index" not in calls["message"]["tool_calls"][0]
