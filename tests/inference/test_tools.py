"""Tool-call grammars (`aimi.inference.tools`): every tool's parameters are held to the schema limits
before a grammar is built, one by one and all together."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aimi.engines.llamacpp.embedded import embedded_model_path
from aimi.engines.llamacpp.model import LlamaModel
from aimi.errors import InvalidRequest
from aimi.inference.chat import ToolSpec
from aimi.inference.tools import MistralCalls, TaggedCalls, ToolFormat
from tests.grammar_checks import compiles

FLIGHT = ToolSpec(
    "get_flight_info",
    parameters={
        "type": "object",
        "properties": {"origin_city": {"type": "string"}, "destination_city": {"type": "string"}},
        "required": ["origin_city", "destination_city"],
    },
)
FORMATS = [TaggedCalls(), MistralCalls(tool_calls_token=5)]


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    loaded = LlamaModel(embedded_model_path())
    yield loaded
    loaded.close()


def refusal(tool_format: ToolFormat, tools: list[ToolSpec]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        tool_format.grammar(tools, parallel=True, lazy=False)
    return caught.value


@pytest.mark.parametrize("tool_format", FORMATS, ids=["tagged", "mistral"])
@pytest.mark.parametrize(
    ("x", "offending"),
    [
        ({"type": "string", "maxLength": 10**9}, "maxLength"),
        ({"type": "string", "pattern": "^a{1,99999}$"}, "pattern"),
        ({"enum": list(range(30_000))}, "enum"),
    ],
    ids=["length", "pattern", "enum"],
)
def test_a_hostile_tool_is_refused_naming_its_parameters_path(
    tool_format: ToolFormat, x: dict[str, Any], offending: str
) -> None:
    parameters = {"type": "object", "properties": {"x": x}}
    error = refusal(tool_format, [FLIGHT, ToolSpec("hostile", parameters=parameters)])
    assert error.param == f"tools[1].function.parameters.properties.x.{offending}"


def test_more_tools_than_can_be_enforced_at_once_are_refused() -> None:
    tools = [ToolSpec(f"tool_{i}") for i in range(129)]
    assert refusal(TaggedCalls(), tools).param == "tools"


def test_tools_each_within_the_limits_are_also_held_to_them_together() -> None:
    tool = {"type": "object", "description": "x" * 20_000, "properties": {"a": {"type": "string"}}}
    tools = [ToolSpec(f"tool_{i}", parameters=tool) for i in range(20)]
    error = refusal(TaggedCalls(), tools)
    assert error.param == "tools"
    assert "262,144" in error.message


@pytest.mark.parametrize("lazy", [False, True], ids=["forced", "lazy"])
def test_legitimate_tools_still_compile_in_llama_cpp(model: LlamaModel, lazy: bool) -> None:
    tools = [FLIGHT, ToolSpec("get_time"), ToolSpec("pick", parameters={"enum": ["a", "b"]})]
    grammar = TaggedCalls().grammar(tools, parallel=True, lazy=lazy)
    assert compiles(model, grammar.gbnf)
