"""Chat messages, a tagged union on `role`, and their content parts, a tagged union on `type`.

Keys the server itself emits when a client sends an answer back (`tool_calls: null`, `refusal`,
Mistral's `prefix`) are tolerated on every role, as are keys of other APIs (`extra="allow"`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from aimi.api.schemas.refusal import INVALID_REQUEST, refuse


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


# -- content -----------------------------------------------------------------------------------------


class TextPart(_Wire):
    type: Literal["text"]
    text: str

    @model_validator(mode="before")
    @classmethod
    def _text_is_a_string(cls, data: Any) -> Any:
        if isinstance(data, dict) and not isinstance(data.get("text"), str):
            raise refuse("Invalid value for '{where}': expected a string.", at=".text")
        return data


class OtherPart(_Wire):
    """An image, audio or any other part: valid on the wire, refused with a 422 by a deployment,
    whose models take text only."""

    type: Any = None


def _part_kind(value: Any) -> str | None:
    if not isinstance(value, dict | TextPart | OtherPart):
        return None
    kind = value.get("type") if isinstance(value, dict) else value.type
    return "text part" if kind == "text" else "other part"


ContentPart = Annotated[
    Annotated[TextPart, Tag("text part")] | Annotated[OtherPart, Tag("other part")],
    Discriminator(
        _part_kind,
        custom_error_type=INVALID_REQUEST,
        custom_error_message="Invalid value for '{where}': Input should be a valid dictionary.",
    ),
]


def _content_kind(value: Any) -> str | None:
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "parts"
    return None


Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ContentPart], Tag("parts")],
    Discriminator(
        _content_kind,
        custom_error_type=INVALID_REQUEST,
        custom_error_message="Invalid value for '{where}': Input should be a valid string or a list of "
        "content parts.",
    ),
]
"""Text, or a list of parts (whose texts are joined with newlines)."""


# -- tool calls --------------------------------------------------------------------------------------


class FunctionCall(_Wire):
    name: str
    arguments: str | dict[str, Any] = "{}"
    """JSON text (OpenAI), or the object itself (Mistral's API accepts both)."""


class ToolCall(_Wire):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


# -- messages ----------------------------------------------------------------------------------------


class _Message(_Wire):
    name: str | None = None
    prefix: bool = False
    """Mistral's: the answer must continue this (assistant) message."""


class _NeedsContent(_Message):
    content: Content | None = None

    @model_validator(mode="after")
    def _has_content(self) -> _NeedsContent:
        if self.content is None:
            role = getattr(self, "role", "")
            raise refuse(f"Invalid value for '{{where}}': a {role} message needs content.", at=".content")
        return self


class SystemMessage(_NeedsContent):
    """`developer` is OpenAI's newer name for `system`."""

    role: Literal["system", "developer"]


class UserMessage(_NeedsContent):
    role: Literal["user"]


class AssistantMessage(_Message):
    """An earlier answer: text, tool calls, or both."""

    role: Literal["assistant"]
    content: Content | None = None
    tool_calls: list[ToolCall] | None = None


class ToolMessage(_Message):
    """The result of a tool call, answering the call `tool_call_id`."""

    role: Literal["tool"]
    content: Content | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _answers_a_call(self) -> ToolMessage:
        if not self.tool_call_id:
            raise refuse(
                "Invalid value for '{where}': a tool message needs the id of the call it answers.",
                at=".tool_call_id",
            )
        return self


ChatMessage = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]
