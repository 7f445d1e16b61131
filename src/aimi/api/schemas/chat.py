"""The chat-completions request body, as the Azure AI Model Inference and Mistral APIs send it.

Inbound bodies keep unknown keys (`extra="allow"`) so the `extra-parameters` policy can judge them;
fields are strict so that `"5"` is not silently taken for `5`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class FunctionCall(_Wire):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCall(_Wire):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Wire):
    """Any role. Keys the server itself emits (`tool_calls: null`, `refusal`, `prefix`) are tolerated."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    prefix: bool = False


class ChatCompletionsBody(_Wire):
    """Standard fields first, then the extras aimi can honour (Mistral's and OpenAI's)."""

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    stream: bool | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    modalities: list[str] | None = None
    # Extras (Mistral-native fields; on the Azure route they need `extra-parameters: pass-through`).
    random_seed: int | None = Field(default=None, ge=0, lt=2**63)
    safe_prompt: bool | None = None
    safe_mode: bool | None = None
    safemode: bool | None = None
    ignore_eos: bool | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: int | None = Field(default=None, ge=1)
    top_k: int | None = Field(default=None, ge=0)
    parallel_tool_calls: bool | None = None
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None


# The fields of the Azure AI Model Inference API; anything else is an extra parameter there.
AZURE_PARAMETERS = frozenset(
    {
        "messages",
        "frequency_penalty",
        "stream",
        "presence_penalty",
        "temperature",
        "top_p",
        "max_tokens",
        "response_format",
        "stop",
        "tools",
        "tool_choice",
        "seed",
        "model",
        "modalities",
    }
)

# The fields of Mistral's own `/v1/chat/completions` (and what its SDK and OpenAI's send there).
MISTRAL_PARAMETERS = AZURE_PARAMETERS | frozenset(
    {
        "random_seed",
        "safe_prompt",
        "n",
        "parallel_tool_calls",
        "prediction",
        "min_tokens",
        "logprobs",
        "top_logprobs",
        "top_k",
        "stream_options",
        "user",
        "metadata",
        "ignore_eos",
        "safe_mode",
        "safemode",
        "prompt_mode",
        "reasoning_effort",
        "guardrails",
        "prompt_cache_key",
        "service_tier",
        "repetition_penalty",
    }
)

# Extras aimi accepts and has nothing to do with (bookkeeping keys of other APIs).
IGNORED_EXTRAS = frozenset({"user", "metadata", "stream_options", "prompt_cache_key", "service_tier"})

# Every key `ChatCompletionsBody` knows how to honour.
HONOURED = frozenset(ChatCompletionsBody.model_fields)
