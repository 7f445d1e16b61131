"""Request validation (`aimi.api.schemas.chat`, `aimi.api.convert`): one test per rule.

Every refusal is a JSON envelope whose `status` is the HTTP status, never a 500."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.api.checks import assert_error, prompt_text
from tests.fakes import FAKE_INFO, ScriptedEngine

USER = {"role": "user", "content": "hi"}
HI = {"messages": [USER]}
PASS = {"extra-parameters": "pass-through"}


async def post(client: httpx.AsyncClient, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/chat/completions", json=body, headers=headers)


# -- messages ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_messages_are_required(client: httpx.AsyncClient) -> None:
    body = assert_error(await post(client, {"temperature": 0.5}), 400, "invalid_request")
    assert "messages" in body["error"]["message"]


@pytest.mark.anyio
async def test_messages_must_not_be_empty(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, {"messages": []}), 400, "invalid_request")


@pytest.mark.anyio
@pytest.mark.parametrize("messages", ["hi", {"role": "user", "content": "hi"}, 1, None, ["hi"]])
async def test_messages_must_be_a_list_of_objects(client: httpx.AsyncClient, messages: Any) -> None:
    assert_error(await post(client, {"messages": messages}), 400, "invalid_request")


@pytest.mark.anyio
@pytest.mark.parametrize("role", ["robot", "function", "System", "", None])
async def test_an_unknown_role_is_refused(client: httpx.AsyncClient, role: Any) -> None:
    body = assert_error(await post(client, {"messages": [{"role": role, "content": "x"}]}), 400)
    assert "messages[0].role" in body["error"]["message"]
    assert body["error"]["message"].endswith(
        "Input should be 'system', 'developer', 'user', 'assistant' or 'tool'."
    )
    assert body["error"]["param"] == "messages[0].role"


@pytest.mark.anyio
async def test_a_message_without_a_role_is_refused(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, {"messages": [{"content": "x"}]}), 400, "invalid_request")


@pytest.mark.anyio
@pytest.mark.parametrize("role", ["system", "user", "developer"])
async def test_a_system_or_user_message_with_null_content_is_refused(
    client: httpx.AsyncClient, role: str
) -> None:
    messages = [{"role": role, "content": None}, USER]
    body = assert_error(await post(client, {"messages": messages}), 400, "invalid_request")
    assert body["error"]["param"] == "messages[0].content"


@pytest.mark.anyio
async def test_an_assistant_message_may_have_null_content(client: httpx.AsyncClient) -> None:
    messages = [USER, {"role": "assistant", "content": None}, USER]
    response = await post(client, {"messages": messages, "max_tokens": 2})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("content", [5, {"text": "x"}, True])
async def test_content_of_the_wrong_type_is_refused(client: httpx.AsyncClient, content: Any) -> None:
    assert_error(await post(client, {"messages": [{"role": "user", "content": content}]}), 400)


@pytest.mark.anyio
async def test_text_content_parts_are_accepted_and_joined(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    response = await post(client, {"messages": [{"role": "user", "content": parts}]})
    assert response.status_code == 200, response.text
    assert prompt_text(engine) == "<user>a\nb<assistant>"


@pytest.mark.anyio
async def test_a_text_part_without_a_string_is_refused(client: httpx.AsyncClient) -> None:
    parts = [{"type": "text", "text": 5}]
    assert_error(
        await post(client, {"messages": [{"role": "user", "content": parts}]}), 400, "invalid_request"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
    ids=["image_url", "input_audio"],
)
async def test_non_text_content_parts_are_not_supported(
    client: httpx.AsyncClient, engine: ScriptedEngine, part: dict[str, Any]
) -> None:
    parts = [{"type": "text", "text": "what is this?"}, part]
    response = await post(client, {"messages": [{"role": "user", "content": parts}]})
    body = assert_error(response, 422, "parameter_not_supported")
    assert body["detail"][0]["loc"] == ["body", "messages[0].content[1]"]
    assert body["detail"][0]["input"] == part["type"]
    assert engine.requests == []


@pytest.mark.anyio
async def test_the_developer_role_is_accepted_as_system(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    messages = [{"role": "developer", "content": "d"}, USER]
    response = await post(client, {"messages": messages})
    assert response.status_code == 200, response.text
    assert prompt_text(engine) == "<system>d<user>hi<assistant>"


@pytest.mark.anyio
async def test_a_tool_message_needs_a_tool_call_id(client: httpx.AsyncClient) -> None:
    messages = [USER, {"role": "tool", "content": "42"}]
    body = assert_error(await post(client, {"messages": messages}), 400, "invalid_request")
    assert body["error"]["param"] == "messages[1].tool_call_id"


@pytest.mark.anyio
async def test_a_tool_message_with_a_tool_call_id_is_accepted(client: httpx.AsyncClient) -> None:
    messages = [USER, {"role": "tool", "tool_call_id": "abc0dF1gh", "content": "42"}]
    response = await post(client, {"messages": messages, "max_tokens": 2})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_tool_call_arguments_may_be_an_object(client: httpx.AsyncClient) -> None:
    call = {"id": "abc0dF1gh", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}
    messages = [USER, {"role": "assistant", "content": None, "tool_calls": [call]}]
    response = await post(client, {"messages": messages, "max_tokens": 2})
    assert response.status_code == 200, response.text


# -- sampling ranges -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("value", [-1, -0.01, 2.5, "hot", "0.5", True, [0.5]])
async def test_temperature_out_of_range_or_not_a_number_is_refused(
    client: httpx.AsyncClient, value: Any
) -> None:
    body = assert_error(await post(client, {**HI, "temperature": value}), 400, "invalid_request")
    assert body["error"]["param"] == "temperature"


@pytest.mark.anyio
@pytest.mark.parametrize("value", [0, 0.0, 1, 0.5, None])
async def test_temperature_in_range_is_accepted(client: httpx.AsyncClient, value: Any) -> None:
    response = await post(client, {**HI, "temperature": value})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("value", [1.5, -0.1, "1"])
async def test_top_p_out_of_range_is_refused(client: httpx.AsyncClient, value: Any) -> None:
    body = assert_error(await post(client, {**HI, "top_p": value}), 400, "invalid_request")
    assert body["error"]["param"] == "top_p"


@pytest.mark.anyio
@pytest.mark.parametrize("value", [-1, 1.5, "10", True, 10.0])
async def test_max_tokens_that_is_not_a_non_negative_integer_is_refused(
    client: httpx.AsyncClient, value: Any
) -> None:
    body = assert_error(await post(client, {**HI, "max_tokens": value}), 400, "invalid_request")
    assert body["error"]["param"] == "max_tokens"


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [3, -3, 2.01, "1"])
async def test_a_penalty_out_of_range_is_refused(client: httpx.AsyncClient, name: str, value: Any) -> None:
    body = assert_error(await post(client, {**HI, name: value}), 400, "invalid_request")
    assert body["error"]["param"] == name


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [2, -2, 0])
async def test_a_penalty_at_the_bounds_is_accepted(client: httpx.AsyncClient, name: str, value: Any) -> None:
    response = await post(client, {**HI, name: value})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["abc", 1.5, "3", True, 2**63])
async def test_a_seed_that_is_not_an_int64_is_refused(client: httpx.AsyncClient, value: Any) -> None:
    assert_error(await post(client, {**HI, "seed": value}), 400, "invalid_request")


@pytest.mark.anyio
@pytest.mark.parametrize("value", [0, -1, 2**63 - 1])
async def test_an_int64_seed_is_accepted(
    client: httpx.AsyncClient, engine: ScriptedEngine, value: int
) -> None:
    response = await post(client, {**HI, "seed": value})
    assert response.status_code == 200, response.text
    assert engine.requests[-1].sampling.seed == value


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["yes", 1, "true"])
async def test_stream_must_be_a_boolean(client: httpx.AsyncClient, value: Any) -> None:
    assert_error(await post(client, {**HI, "stream": value}), 400, "invalid_request")


# -- stop ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "stop", ["world", ["world"], ["nothing", "world"]], ids=["string", "list", "list-of-two"]
)
async def test_stop_is_accepted_as_a_string_or_a_list(
    client: httpx.AsyncClient, engine: ScriptedEngine, stop: Any
) -> None:
    response = await post(client, {**HI, "stop": stop})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "Hello "


@pytest.mark.anyio
@pytest.mark.parametrize("stop", [[""], "", ["x", ""]])
async def test_an_empty_stop_sequence_is_refused(client: httpx.AsyncClient, stop: Any) -> None:
    body = assert_error(await post(client, {**HI, "stop": stop}), 400, "invalid_request")
    assert body["error"]["param"] == "stop"


@pytest.mark.anyio
async def test_more_than_16_stop_sequences_are_refused(client: httpx.AsyncClient) -> None:
    body = assert_error(
        await post(client, {**HI, "stop": [f"s{i}" for i in range(17)]}), 400, "invalid_request"
    )
    assert body["error"]["param"] == "stop"


@pytest.mark.anyio
async def test_16_stop_sequences_are_accepted(client: httpx.AsyncClient) -> None:
    response = await post(client, {**HI, "stop": [f"s{i}" for i in range(16)]})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("stop", [5, [5], {"x": 1}])
async def test_a_stop_that_is_not_text_is_refused(client: httpx.AsyncClient, stop: Any) -> None:
    assert_error(await post(client, {**HI, "stop": stop}), 400, "invalid_request")


# -- what this deployment does not support -------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("n", [2, 5])
async def test_more_than_one_choice_is_not_supported(client: httpx.AsyncClient, n: int) -> None:
    body = assert_error(await post(client, {**HI, "n": n}, PASS), 422, "parameter_not_supported")
    assert body["detail"][0]["loc"] == ["body", "n"]
    assert body["detail"][0]["input"] == n


@pytest.mark.anyio
async def test_n_zero_is_refused(client: httpx.AsyncClient) -> None:
    assert_error(await post(client, {**HI, "n": 0}, PASS), 400, "invalid_request")


FLIGHT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_flight_info",
        "parameters": {"type": "object", "properties": {"origin_city": {"type": "string"}}, "required": []},
    },
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "function", "function": {"name": "bad name"}}], "tools[0].function.name"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": "x"}}],
            "tools[0].function.parameters",
        ),
        ([{"type": "function"}], "tools[0].function"),
        ([FLIGHT_TOOL, FLIGHT_TOOL], "tools[1].function.name"),
    ],
    ids=["bad-name", "parameters-not-an-object", "no-function", "duplicate-name"],
)
async def test_malformed_tools_are_refused_naming_the_field(
    client: httpx.AsyncClient, tools: list[Any], param: str
) -> None:
    body = assert_error(await post(client, {**HI, "tools": tools}), 400, "invalid_request")
    assert body["error"]["param"] == param


@pytest.mark.anyio
async def test_a_tool_without_a_type_is_a_function_as_mistrals_api_takes_it(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    tool = {"function": FLIGHT_TOOL["function"]}
    response = await post(client, {**HI, "tools": [tool], "tool_choice": "none"})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("response_format", {"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}},
         "response_format.json_schema.name"),
        ("response_format", {"type": "json_schema", "json_schema": {"schema": {}, "strict": "y"}},
         "response_format.json_schema.strict"),
        ("response_format", {"type": "yaml"}, "response_format.type"),
        ("tools", [{"type": "function", "function": {"name": "f", "description": 5}}],
         "tools[0].function.description"),
        ("tool_choice", {"type": "function", "function": {"name": 5}}, "tool_choice"),
    ],
    ids=["schema-name", "schema-strict", "format-type", "tool-description", "named-choice"],
)  # fmt: skip
async def test_a_wrong_value_inside_a_tagged_union_is_named_by_its_path_in_the_body(
    client: httpx.AsyncClient, field: str, value: Any, param: str
) -> None:
    body = assert_error(await post(client, {**HI, field: value}), 400, "invalid_request")
    assert body["error"]["param"] == param
    assert "tag" not in body["error"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["web_search", 5, None])
async def test_a_tool_of_any_other_type_is_not_supported_naming_its_type(
    client: httpx.AsyncClient, kind: Any
) -> None:
    tools = [{"type": kind, "function": FLIGHT_TOOL["function"]}]
    body = assert_error(await post(client, {**HI, "tools": tools}), 422, "parameter_not_supported")
    assert body["error"]["message"] == f"Only function tools are supported, not '{kind}'."
    assert body["detail"][0]["input"] == kind


@pytest.mark.anyio
async def test_a_non_function_tool_is_not_supported(client: httpx.AsyncClient) -> None:
    tools = [{"type": "web_search"}]
    body = assert_error(await post(client, {**HI, "tools": tools}), 422, "parameter_not_supported")
    assert body["detail"][0]["loc"] == ["body", "tools[0].type"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "choice",
    [
        "required",
        "any",
        {"type": "function", "function": {"name": "missing"}},
        "sometimes",
        {"type": "function"},
    ],
)
async def test_an_impossible_tool_choice_is_refused(client: httpx.AsyncClient, choice: Any) -> None:
    tools = [FLIGHT_TOOL] if isinstance(choice, dict) or choice == "sometimes" else None
    body = assert_error(
        await post(client, {**HI, "tools": tools, "tool_choice": choice}), 400, "invalid_request"
    )
    assert body["error"]["param"] == "tool_choice"


@pytest.mark.anyio
async def test_a_tool_schema_keyword_the_grammar_cannot_enforce_is_named_before_generating(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "number", "minimum": 0}}}}}  # fmt: skip
    body = assert_error(
        await post(client, {**HI, "tools": [tool], "tool_choice": "required"}), 400, "invalid_request"
    )
    assert "'minimum'" in body["error"]["message"]
    assert body["error"]["param"] == "tools[0].function.parameters.properties.n"
    assert engine.requests == []


@pytest.mark.anyio
async def test_a_response_schema_keyword_the_grammar_cannot_enforce_is_named(
    client: httpx.AsyncClient,
) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object", "not": {}}}}
    body = assert_error(await post(client, {**HI, "response_format": fmt}), 400, "invalid_request")
    assert "'not'" in body["error"]["message"]
    assert body["error"]["param"] == "response_format.json_schema.schema"


@pytest.mark.anyio
async def test_a_json_schema_response_format_without_a_schema_is_refused(client: httpx.AsyncClient) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "n"}}
    body = assert_error(await post(client, {**HI, "response_format": fmt}), 400, "invalid_request")
    assert body["error"]["param"] == "response_format.json_schema.schema"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fmt",
    [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}},
    ],
    ids=["json_object", "json_schema"],
)
async def test_json_response_formats_constrain_the_generation_with_a_grammar(
    client: httpx.AsyncClient, engine: ScriptedEngine, fmt: dict[str, Any]
) -> None:
    response = await post(client, {**HI, "response_format": fmt})
    assert response.status_code == 200, response.text
    grammar = engine.requests[0].grammar
    assert grammar is not None and re.search(r"^root\s*::=", grammar.gbnf, re.M) and not grammar.lazy


@pytest.mark.anyio
async def test_the_text_response_format_is_accepted(client: httpx.AsyncClient) -> None:
    response = await post(client, {**HI, "response_format": {"type": "text"}})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", [{"type": "bogus"}, {}, "json_object"], ids=["bogus", "no-type", "a-string"])
async def test_an_unknown_response_format_is_refused(client: httpx.AsyncClient, fmt: Any) -> None:
    assert_error(await post(client, {**HI, "response_format": fmt}), 400, "invalid_request")


@pytest.mark.anyio
async def test_audio_output_is_not_supported(client: httpx.AsyncClient) -> None:
    body = assert_error(
        await post(client, {**HI, "modalities": ["text", "audio"]}), 422, "parameter_not_supported"
    )
    assert body["detail"][0]["loc"] == ["body", "modalities"]


@pytest.mark.anyio
@pytest.mark.parametrize("value", [True, False, 0, 5, 20])
async def test_logprobs_is_a_boolean_or_a_count_up_to_20(client: httpx.AsyncClient, value: Any) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "logprobs": value})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize("value", [21, -1, "yes", 1.5])
async def test_logprobs_out_of_range_is_refused(client: httpx.AsyncClient, value: Any) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "logprobs": value})
    assert_error(response, 400, "invalid_request")


@pytest.mark.anyio
@pytest.mark.parametrize("value", [21, -1])
async def test_top_logprobs_out_of_range_is_refused(client: httpx.AsyncClient, value: Any) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "logprobs": True, "top_logprobs": value})
    assert_error(response, 400, "invalid_request")


# -- the context -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_prompt_plus_max_tokens_over_the_context_is_refused(client: httpx.AsyncClient) -> None:
    prompt = len("<user>hi<assistant>")
    response = await post(client, {**HI, "max_tokens": FAKE_INFO.context_length - prompt + 1})
    body = assert_error(response, 400, "context_length_exceeded")
    assert str(FAKE_INFO.context_length) in body["error"]["message"]
    assert body["error"]["param"] == "max_tokens"


@pytest.mark.anyio
async def test_prompt_plus_max_tokens_filling_the_context_is_accepted(client: httpx.AsyncClient) -> None:
    prompt = len("<user>hi<assistant>")
    response = await post(client, {**HI, "max_tokens": 64 - prompt})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_a_prompt_over_the_context_is_refused(client: httpx.AsyncClient) -> None:
    response = await post(client, {"messages": [{"role": "user", "content": "x" * FAKE_INFO.context_length}]})
    body = assert_error(response, 400, "context_length_exceeded")
    assert body["error"]["param"] == "messages"


@pytest.mark.anyio
async def test_the_context_is_checked_on_the_mistral_route_too(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "max_tokens": 1000})
    assert_error(response, 400, "context_length_exceeded")


# -- every refusal is an envelope, never a 500 ----------------------------------------------------------

ODD_BODIES = [
    {"messages": [USER], "temperature": None, "top_p": None, "max_tokens": None, "stop": None, "seed": None},
    {"messages": [{"role": "user", "content": []}]},
    {"messages": [{"role": "user", "content": [{}]}]},
    {"messages": [{"role": "user", "content": [{"type": None}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": 1}}]}]},
    {"messages": [{"role": "assistant", "tool_calls": "x"}]},
    {"messages": [{"role": "user", "content": "hi", "name": 5}]},
    {"messages": [{"role": "user", "content": "hi", "prefix": "yes"}]},
    {"messages": [USER], "tools": []},
    {"messages": [USER], "tools": "f"},
    {"messages": [USER], "response_format": None},
    {"messages": [USER], "tool_choice": 5},
    {"messages": [USER], "model": 5},
    {"messages": [USER], "max_tokens": 10**30},
    {"messages": [{"role": "user", "content": "\u0000\ud7ff"}], "max_tokens": 1},
    {"messages": [{"role": "user", "content": "{{ raise_exception('x') }}"}], "max_tokens": 1},
]


@pytest.mark.anyio
@pytest.mark.parametrize("body", ODD_BODIES)
@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_odd_bodies_get_an_answer_or_an_envelope_never_a_500(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    response = await client.post(path, json=body)
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert_error(response, response.status_code)


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["temperature", "top_p", "presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_numbers_are_refused(client: httpx.AsyncClient, name: str, literal: str) -> None:
    content = f'{{"messages": [{{"role": "user", "content": "hi"}}], "{name}": {literal}}}'
    response = await client.post(
        "/chat/completions", content=content.encode(), headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
