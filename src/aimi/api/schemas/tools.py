"""`tools`, `tool_choice` and `response_format`, as tagged unions (their `type`, or for `tool_choice`
whether it is a word or an object), the way OpenAI, Mistral and the Azure AI Model Inference API
define them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from aimi.api.schemas.refusal import INVALID_REQUEST, refuse

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


def _function_name(value: Any) -> Any:
    if not (isinstance(value, str) and _NAME.match(value)):
        raise refuse("Invalid value for '{where}': use 1-64 of a-z, A-Z, 0-9, '_' and '-'.")
    return value


FunctionName = Annotated[
    str, BeforeValidator(_function_name), Field(pattern=_NAME.pattern, examples=["get_weather"])
]
"""1-64 of a-z, A-Z, 0-9, `_` and `-`: what every API that takes tools accepts."""


# -- tools -------------------------------------------------------------------------------------------


class FunctionDefinition(_Wire):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """A JSON schema for the arguments; absent, the function takes none."""
    strict: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _parameters_are_an_object(cls, data: Any) -> Any:
        parameters = data.get("parameters") if isinstance(data, dict) else None
        if parameters is not None and not isinstance(parameters, dict):
            raise refuse("'{where}' must be a JSON schema object.", at=".parameters")
        return data


class FunctionTool(_Wire):
    """A function the model may call (`type` may be left out, as Mistral's API allows)."""

    type: Literal["function"] = "function"
    function: FunctionDefinition

    @model_validator(mode="before")
    @classmethod
    def _function_is_an_object(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("function"), dict):
            raise refuse("'{where}' must be an object.", at=".function")
        return data


class OtherTool(_Wire):
    """A tool of another kind (web search, code interpreter…): valid on the wire, and refused with a
    422 by a deployment, which can only call functions."""

    type: Any = None


def _tool_kind(value: Any) -> str | None:
    if not isinstance(value, dict | FunctionTool | OtherTool):
        return None
    kind = value.get("type", "function") if isinstance(value, dict) else value.type
    return "function tool" if kind == "function" else "other tool"


# Tags are never keys of the document (`function` is), so that an error's path is the document's.
Tool = Annotated[
    Annotated[FunctionTool, Tag("function tool")] | Annotated[OtherTool, Tag("other tool")],
    Discriminator(
        _tool_kind,
        custom_error_type=INVALID_REQUEST,
        custom_error_message="Invalid value for '{where}': Input should be a valid dictionary.",
    ),
]


# -- tool_choice -------------------------------------------------------------------------------------

ToolChoiceMode = Literal["auto", "none", "required", "any"]
"""`any` is Mistral's word for what OpenAI calls `required`."""
_MODES = ("auto", "none", "required", "any")


class FunctionChoice(_Wire):
    name: str


class NamedToolChoice(_Wire):
    """`{"type": "function", "function": {"name": ...}}`: this function must be called."""

    type: Literal["function"] = "function"
    function: FunctionChoice

    @model_validator(mode="before")
    @classmethod
    def _names_a_function(cls, data: Any) -> Any:
        function = data.get("function") if isinstance(data, dict) else None
        if not (isinstance(function, dict) and isinstance(function.get("name"), str)):
            raise refuse("A named tool_choice is {'type': 'function', 'function': {'name': ...}}.")
        return data


def _tool_choice_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "mode"
    if isinstance(value, dict | NamedToolChoice):
        return "named function"
    return None


def _known_tool_choice(value: Any) -> Any:
    if (isinstance(value, str) and value in _MODES) or isinstance(value, dict | NamedToolChoice):
        return value
    raise refuse("Invalid value for '{where}': use 'auto', 'none', 'required', 'any' or a named function.")


ToolChoice = Annotated[
    Annotated[ToolChoiceMode, Tag("mode")] | Annotated[NamedToolChoice, Tag("named function")],
    Discriminator(_tool_choice_kind),
    BeforeValidator(_known_tool_choice),
]


# -- response_format ---------------------------------------------------------------------------------


class TextFormat(_Wire):
    type: Literal["text"]


class JsonObjectFormat(_Wire):
    """Any JSON object."""

    type: Literal["json_object"]


class JsonSchema(_Wire):
    name: FunctionName | None = None
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class JsonSchemaFormat(_Wire):
    """JSON that follows `json_schema.schema`."""

    type: Literal["json_schema"]
    json_schema: JsonSchema

    @model_validator(mode="before")
    @classmethod
    def _has_a_schema(cls, data: Any) -> Any:
        spec = data.get("json_schema") if isinstance(data, dict) else None
        if isinstance(data, dict) and not (isinstance(spec, dict) and isinstance(spec.get("schema"), dict)):
            raise refuse("'response_format.json_schema' needs a 'schema' object.", at=".json_schema.schema")
        return data


_FORMATS = {"text": "text format", "json_object": "json_object format", "json_schema": "json_schema format"}


def _format_kind(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return _FORMATS.get(kind) if isinstance(kind, str) else None


def _known_format(value: Any) -> Any:
    if not isinstance(value, dict | TextFormat | JsonObjectFormat | JsonSchemaFormat):
        raise refuse("Invalid value for '{where}': Input should be a valid dictionary.")
    if _format_kind(value) is None:
        raise refuse("Invalid value for '{where}': use 'text', 'json_object' or 'json_schema'.", at=".type")
    return value


# Tagged by `type`; the tags are never keys of the document (`json_schema` is), so that an error's
# path is the document's.
ResponseFormat = Annotated[
    Annotated[TextFormat, Tag("text format")]
    | Annotated[JsonObjectFormat, Tag("json_object format")]
    | Annotated[JsonSchemaFormat, Tag("json_schema format")],
    Discriminator(_format_kind),
    BeforeValidator(_known_format),
]
