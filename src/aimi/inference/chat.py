"""Domain types of a chat request and its answer. No wire details here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from aimi.engines.base import Sampling, ToolCall  # a call is the same thing to engines and here
from aimi.safety.policy import Decision

Role = Literal["system", "user", "assistant", "tool"]
ChatFinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "interrupted"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def as_openai(self) -> dict[str, Any]:
        """As OpenAI's chat-completions API takes it (call arguments as JSON text)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        elif out["content"] is None:
            out["content"] = ""
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call."""

    name: str
    description: str = ""
    parameters: Any = None
    """A JSON schema for the arguments; None means the function takes none."""

    @property
    def schema(self) -> Any:
        return self.parameters if self.parameters is not None else {"type": "object", "properties": {}}

    def as_openai(self) -> dict[str, Any]:
        function = {"name": self.name, "description": self.description, "parameters": self.schema}
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required"] = "auto"
    function: str | None = None
    """With mode `required`: the one function that must be called."""

    def as_openai(self) -> str | dict[str, Any]:
        if self.function is not None:
            return {"type": "function", "function": {"name": self.function}}
        return self.mode


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: Any = None
    name: str | None = None

    def as_openai(self) -> dict[str, Any] | None:
        """None for plain text (nothing to ask of the server)."""
        if self.kind == "json_schema":
            return {
                "type": "json_schema",
                "json_schema": {"name": self.name or "response", "schema": self.schema},
            }
        return {"type": self.kind} if self.kind == "json_object" else None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request, validated and normalised by the API layer."""

    messages: tuple[Message, ...]
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    safe_prompt: bool = False
    logprobs: int | None = None
    """None: no log-probabilities; k: the chosen token's and the k most likely alternatives."""
    model: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    parallel_tool_calls: bool | None = None
    """None: the request did not say (calls in parallel are allowed, as on Mistral's and OpenAI's
    services, except where the server makes the model call: see `ChatService`)."""
    response_format: ResponseFormat = field(default_factory=ResponseFormat)

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice.mode != "none"

    @property
    def parallel_calls(self) -> bool:
        """Whether a turn may make more than one call."""
        return self.parallel_tool_calls is not False


@dataclass(frozen=True, slots=True)
class Alternative:
    """A token the model considered, with its log-probability."""

    id: int
    token: str
    raw: bytes
    """The token's own bytes (a character may span several tokens, so `token` alone can be U+FFFD)."""
    logprob: float


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    id: int
    token: str
    raw: bytes
    logprob: float
    offset: int
    """Where this token's text starts in the completion."""
    top: tuple[Alternative, ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """Of the prompt tokens, those served from a cache instead of evaluated."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer, in order."""

    text: str
    logprobs: tuple[TokenLogprobs, ...] = ()


@dataclass(frozen=True, slots=True)
class Done:
    """The end of an answer."""

    finish_reason: ChatFinishReason
    usage: Usage
    message: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    output_safety: Decision | None = None
    """The content-safety decision on the completion (None when safety is not configured)."""


ChatEvent = Delta | Done


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole answer: the stream folded."""

    text: str
    finish_reason: ChatFinishReason
    usage: Usage
    logprobs: tuple[TokenLogprobs, ...] | None
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_safety: Decision | None = None
    output_safety: Decision | None = None
    message: str | None = None
    """Why an `error` finish happened."""
