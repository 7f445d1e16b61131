"""Domain types of a chat request and its answer. No wire details here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aimi.engines.base import Sampling

Role = Literal["system", "user", "assistant", "tool"]
ChatFinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


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


@dataclass(frozen=True, slots=True)
class TokenLogprobs:
    token: str
    logprob: float
    offset: int
    """Where this token's text starts in the completion."""
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

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


ChatEvent = Delta | Done


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A whole answer: the stream folded."""

    text: str
    finish_reason: ChatFinishReason
    usage: Usage
    logprobs: tuple[TokenLogprobs, ...] | None
