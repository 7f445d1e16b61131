"""The `extra-parameters` policy of `aimi.api.parameters`, header value by header value."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aimi.api.schemas.chat import KNOWN, MISTRAL_PARAMETERS
from aimi.inference.prompts import SAFE_PROMPT
from tests.api.checks import assert_error, prompt_text
from tests.fakes import RoomyEngine, ScriptedEngine

HI = {"messages": [{"role": "user", "content": "hi"}]}
PLAIN_PROMPT = "<user>hi<assistant>"


def extras_message(names: list[str]) -> str:
    return (
        f"Extra parameters {names!r} are not allowed when extra-parameters is not set or set to be "
        "'error'. Set extra-parameters to 'pass-through' to pass to the model."
    )


# -- error (the default) -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("headers", [{}, {"extra-parameters": "error"}], ids=["absent", "error"])
async def test_an_extra_parameter_is_refused_with_the_services_exact_400(
    client: httpx.AsyncClient, engine: ScriptedEngine, headers: dict[str, str]
) -> None:
    response = await client.post("/chat/completions", json={**HI, "n": 1}, headers=headers)
    body = assert_error(response, 400, "extra_parameters_not_allowed")
    expected = (
        "Extra parameters ['n'] are not allowed when extra-parameters is not set or set to be 'error'. "
        "Set extra-parameters to 'pass-through' to pass to the model."
    )
    assert body["error"]["message"] == expected
    assert body["detail"] == expected
    assert engine.requests == []


@pytest.mark.anyio
async def test_every_extra_parameter_is_named_in_body_order(client: httpx.AsyncClient) -> None:
    body = {"stream_options": {"include_usage": True}, **HI, "safe_prompt": True, "n": 1}
    response = await client.post("/chat/completions", json=body)
    error = assert_error(response, 400, "extra_parameters_not_allowed")
    assert error["detail"] == extras_message(["stream_options", "safe_prompt", "n"])


@pytest.mark.anyio
@pytest.mark.parametrize("base", ["", "/models", "/deployments/fake"])
async def test_the_default_policy_is_error_under_every_base(client: httpx.AsyncClient, base: str) -> None:
    response = await client.post(f"{base}/chat/completions", json={**HI, "random_seed": 1})
    assert_error(response, 400, "extra_parameters_not_allowed")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {**HI, "temperature": 0.5, "top_p": 0.9, "max_tokens": 5, "stop": ["x"], "stream": False},
        {**HI, "seed": 3, "presence_penalty": 0.2, "frequency_penalty": 0.1, "model": "m"},
        {**HI, "response_format": {"type": "text"}, "tool_choice": "none", "modalities": ["text"]},
    ],
    ids=["sampling", "penalties", "formats"],
)
async def test_the_standard_parameters_are_never_extra(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text


# -- drop ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["drop", "ignore", "DROP", "Drop", " drop "])
async def test_drop_removes_extras_so_a_dropped_safe_prompt_has_no_effect(
    client: httpx.AsyncClient, engine: ScriptedEngine, value: str
) -> None:
    response = await client.post(
        "/chat/completions", json={**HI, "safe_prompt": True, "n": 5}, headers={"extra-parameters": value}
    )
    assert response.status_code == 200, response.text
    assert prompt_text(engine) == PLAIN_PROMPT


@pytest.mark.anyio
async def test_drop_removes_an_unknown_parameter(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    response = await client.post(
        "/chat/completions", json={**HI, "random_seed": 7, "foo": "bar"}, headers={"extra-parameters": "drop"}
    )
    assert response.status_code == 200, response.text
    assert engine.requests[-1].sampling.seed is None


@pytest.mark.anyio
async def test_drop_keeps_the_standard_parameters(client: httpx.AsyncClient, engine: ScriptedEngine) -> None:
    response = await client.post(
        "/chat/completions",
        json={**HI, "seed": 9, "max_tokens": 2, "foo": 1},
        headers={"extra-parameters": "drop"},
    )
    assert response.status_code == 200, response.text
    assert engine.requests[-1].sampling.seed == 9
    assert engine.requests[-1].max_tokens == 2


# -- pass-through --------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["pass-through", "allow", "PASS-THROUGH", "Pass-Through", "pass_through"])
async def test_pass_through_honours_known_extras(
    client: httpx.AsyncClient, engine: ScriptedEngine, value: str
) -> None:
    body = {**HI, "random_seed": 11, "ignore_eos": True, "n": 1, "top_k": 5}
    response = await client.post("/chat/completions", json=body, headers={"extra-parameters": value})
    assert response.status_code == 200, response.text
    sampling = engine.requests[-1].sampling
    assert sampling.seed == 11
    assert sampling.ignore_eos is True
    assert sampling.top_k == 5


@pytest.mark.anyio
async def test_pass_through_honours_safe_prompt(
    roomy_client: httpx.AsyncClient, roomy_engine: RoomyEngine
) -> None:
    response = await roomy_client.post(
        "/chat/completions", json={**HI, "safe_prompt": True}, headers={"extra-parameters": "pass-through"}
    )
    assert response.status_code == 200, response.text
    assert prompt_text(roomy_engine) == f"<system>{SAFE_PROMPT}{PLAIN_PROMPT}"


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["user", "metadata", "stream_options", "prompt_cache_key", "service_tier"])
async def test_pass_through_accepts_bookkeeping_extras_of_other_apis(
    client: httpx.AsyncClient, name: str
) -> None:
    value: Any = {"include_usage": True} if name in ("stream_options", "metadata") else "x"
    response = await client.post(
        "/chat/completions", json={**HI, name: value}, headers={"extra-parameters": "pass-through"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value"), [("foo", "bar"), ("prediction", {"type": "content", "content": "x"})]
)
async def test_pass_through_gives_422_for_a_parameter_the_model_does_not_know(
    client: httpx.AsyncClient, engine: ScriptedEngine, name: str, value: Any
) -> None:
    response = await client.post(
        "/chat/completions", json={**HI, name: value}, headers={"extra-parameters": "pass-through"}
    )
    body = assert_error(response, 422, "parameter_not_supported")
    assert body["error"]["param"] == name
    assert isinstance(body["detail"], list) and len(body["detail"]) == 1
    detail = body["detail"][0]
    assert detail["loc"] == ["body", name]
    assert detail["input"] == value
    assert isinstance(detail["msg"], str) and detail["msg"]
    assert engine.requests == []


# -- the legacy header and precedence ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("value", ["pass_through", "pass-through", "PASS_THROUGH"])
async def test_the_legacy_unknown_parameters_header_passes_through(
    client: httpx.AsyncClient, engine: ScriptedEngine, value: str
) -> None:
    response = await client.post(
        "/chat/completions", json={**HI, "random_seed": 5}, headers={"unknown-parameters": value}
    )
    assert response.status_code == 200, response.text
    assert engine.requests[-1].sampling.seed == 5


@pytest.mark.anyio
async def test_the_legacy_unknown_parameters_header_can_drop_and_error(client: httpx.AsyncClient) -> None:
    body = {**HI, "random_seed": 5}
    dropped = await client.post("/chat/completions", json=body, headers={"unknown-parameters": "drop"})
    refused = await client.post("/chat/completions", json=body, headers={"unknown-parameters": "error"})
    assert dropped.status_code == 200, dropped.text
    assert_error(refused, 400, "extra_parameters_not_allowed")


@pytest.mark.anyio
async def test_extra_parameters_wins_over_unknown_parameters(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "random_seed": 5}
    refused = await client.post(
        "/chat/completions",
        json=body,
        headers={"extra-parameters": "error", "unknown-parameters": "pass_through"},
    )
    assert_error(refused, 400, "extra_parameters_not_allowed")
    passed = await client.post(
        "/chat/completions",
        json=body,
        headers={"extra-parameters": "pass-through", "unknown-parameters": "error"},
    )
    assert passed.status_code == 200, passed.text
    dropped = await client.post(
        "/chat/completions",
        json=body,
        headers={"extra-parameters": "drop", "unknown-parameters": "pass_through"},
    )
    assert dropped.status_code == 200, dropped.text
    assert [r.sampling.seed for r in engine.requests] == [5, None]


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["extra-parameters", "unknown-parameters"])
@pytest.mark.parametrize("value", ["yes", "true", "pass", ""])
async def test_an_invalid_header_value_gives_400(client: httpx.AsyncClient, header: str, value: str) -> None:
    response = await client.post("/chat/completions", json={**HI, "n": 1}, headers={header: value})
    body = assert_error(response, 400, "invalid_request")
    assert header in body["error"]["message"]


@pytest.mark.anyio
async def test_an_invalid_header_value_gives_400_even_without_extras(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=HI, headers={"extra-parameters": "bogus"})
    assert_error(response, 400, "invalid_request")


# -- nested keys are never policed ---------------------------------------------------------------------

ECHOED_HISTORY = [
    {"role": "system", "content": "s", "name": None},
    {"role": "user", "content": "q", "prefix": False},
    {"role": "assistant", "content": "hi", "tool_calls": None, "refusal": None},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "abc0dF1gh",
                "type": "function",
                "index": 0,
                "function": {"name": "f", "arguments": "{}", "call_id": None},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "abc0dF1gh", "content": "r", "name": "f"},
]


@pytest.mark.anyio
@pytest.mark.parametrize("headers", [{}, {"extra-parameters": "error"}], ids=["absent", "error"])
async def test_unknown_keys_nested_in_messages_are_never_policed(
    roomy_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await roomy_client.post(
        "/chat/completions", json={"messages": ECHOED_HISTORY, "max_tokens": 3}, headers=headers
    )
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_an_echoed_assistant_message_is_accepted_back(client: httpx.AsyncClient) -> None:
    first = (await client.post("/chat/completions", json=HI)).json()
    message = first["choices"][0]["message"]
    assert message["tool_calls"] is None
    history = [{"role": "user", "content": "a"}, message, {"role": "user", "content": "b"}]
    response = await client.post("/chat/completions", json={"messages": history, "max_tokens": 3})
    assert response.status_code == 200, response.text


# -- the Mistral-native route --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_mistral_route_answers_an_unknown_key_with_a_422_naming_it(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "model": "azureai", "foo": 1, "bar": {"baz": True}}
    response = await client.post("/v1/chat/completions", json=body)
    error = assert_error(response, 422, "parameter_not_supported")
    assert error["error"]["param"] == "foo"
    assert "'foo', 'bar'" in error["error"]["message"]
    assert error["detail"][0]["loc"] == ["body", "foo"]
    assert engine.requests == []


@pytest.mark.anyio
async def test_the_mistral_route_drops_unknown_keys_when_the_header_says_drop(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "model": "azureai", "foo": 1, "random_seed": 4}
    response = await client.post("/v1/chat/completions", json=body, headers={"extra-parameters": "drop"})
    assert response.status_code == 200, response.text
    assert prompt_text(engine) == PLAIN_PROMPT
    assert engine.requests[-1].sampling.seed == 4  # a Mistral field is standard there, never dropped


@pytest.mark.anyio
async def test_the_mistral_route_knows_mistrals_own_fields(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "model": "azureai", "random_seed": 3, "n": 1, "parallel_tool_calls": True, "stream": False}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert engine.requests[-1].sampling.seed == 3


# -- OpenAI's fields on the Mistral-native route -------------------------------------------------------


@pytest.mark.anyio
async def test_max_completion_tokens_is_honoured_as_max_tokens(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "max_completion_tokens": 2})
    assert response.status_code == 200, response.text
    assert engine.requests[-1].max_tokens == 2
    assert response.json()["usage"]["completion_tokens"] == 2


@pytest.mark.anyio
async def test_max_completion_tokens_equal_to_max_tokens_is_one_limit(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "max_tokens": 1, "max_completion_tokens": 1}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert engine.requests[-1].max_tokens == 1


@pytest.mark.anyio
async def test_max_completion_tokens_different_from_max_tokens_is_a_400(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "max_tokens": 5, "max_completion_tokens": 7}
    response = await client.post("/v1/chat/completions", json=body)
    error = assert_error(response, 400, "invalid_request")
    assert error["error"]["param"] == "max_completion_tokens"
    assert engine.requests == []


@pytest.mark.anyio
async def test_max_completion_tokens_is_an_extra_parameter_on_the_azure_route(
    client: httpx.AsyncClient, engine: ScriptedEngine
) -> None:
    body = {**HI, "max_completion_tokens": 2}
    refused = await client.post("/chat/completions", json=body)
    assert_error(refused, 400, "extra_parameters_not_allowed")
    passed = await client.post("/chat/completions", json=body, headers={"extra-parameters": "pass-through"})
    assert passed.status_code == 200, passed.text
    assert engine.requests[-1].max_tokens == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("user", "u-1"),
        ("metadata", {"trace": "1"}),
        ("store", True),
        ("service_tier", "auto"),
        ("safety_identifier", "hash"),
        ("prompt_cache_key", "k"),
        ("prompt_cache_retention", "24h"),
        ("stream_options", {"include_usage": True}),
    ],
)
async def test_bookkeeping_fields_of_openai_are_accepted_and_change_nothing(
    client: httpx.AsyncClient, engine: ScriptedEngine, name: str, value: Any
) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, name: value})
    assert response.status_code == 200, response.text
    assert prompt_text(engine) == PLAIN_PROMPT


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("logit_bias", {"50256": -100}),
        ("prediction", {"type": "content", "content": "x"}),
        ("reasoning_effort", "high"),
        ("audio", {"voice": "alloy", "format": "mp3"}),
        ("functions", [{"name": "f", "parameters": {}}]),
        ("function_call", {"name": "f"}),
        ("verbosity", "low"),
        ("web_search_options", {}),
        ("min_tokens", 5),
        ("repetition_penalty", 1.2),
        ("prompt_logprobs", True),
        ("top_prompt_logprobs", 3),
        ("guardrails", [{"type": "moderation_llm_v2"}]),
        ("prompt_mode", "reasoning"),
    ],
)
async def test_a_field_aimi_does_not_apply_is_refused_with_a_422_naming_it(
    client: httpx.AsyncClient, engine: ScriptedEngine, name: str, value: Any
) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, name: value})
    error = assert_error(response, 422, "parameter_not_supported")
    assert error["error"]["param"] == name
    assert error["detail"][0]["loc"] == ["body", name]
    assert error["detail"][0]["input"] == value
    assert engine.requests == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("logit_bias", {}),
        ("logit_bias", None),
        ("reasoning_effort", "none"),
        ("repetition_penalty", 1.0),
        ("min_tokens", 0),
        ("prediction", {"type": "content", "content": ""}),
        ("verbosity", "medium"),
    ],
)
async def test_a_field_aimi_does_not_apply_is_accepted_with_a_value_that_asks_for_nothing(
    client: httpx.AsyncClient, name: str, value: Any
) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, name: value})
    assert response.status_code == 200, response.text


@pytest.mark.anyio
async def test_a_boolean_is_not_taken_for_the_neutral_number_of_a_field_aimi_does_not_apply(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/chat/completions", json={**HI, "repetition_penalty": True})
    assert_error(response, 422, "parameter_not_supported")


def test_every_chat_field_of_the_openai_sdk_is_known_to_the_mistral_route() -> None:
    """A field the installed `openai` SDK can send is applied, ignored or refused, never unknown: when
    the SDK grows one, this test asks for its decision."""
    from openai.types.chat.completion_create_params import CompletionCreateParamsBase

    fields = set(CompletionCreateParamsBase.__annotations__)
    assert fields - MISTRAL_PARAMETERS == set()
    assert fields - KNOWN == set()


def test_every_chat_field_of_the_mistralai_sdk_is_known_to_the_mistral_route() -> None:
    from mistralai.client.models import ChatCompletionRequest

    fields = {info.alias or name for name, info in ChatCompletionRequest.model_fields.items()}
    assert fields - MISTRAL_PARAMETERS == set()
    assert fields - KNOWN == set()
