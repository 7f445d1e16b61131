"""The chat-completions request body, as the Azure AI Model Inference and Mistral APIs send it.

Inbound bodies keep unknown keys (`extra="allow"`) so the `extra-parameters` policy can judge them;
fields are strict so that `"5"` is not silently taken for `5`. Every rule a body must follow is checked
here, with the message a client sees; what a deployment cannot do (more than one choice, images,
tools other than functions) is refused when the body becomes a domain request (`api/convert.py`).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aimi.api.schemas.messages import ChatMessage
from aimi.api.schemas.refusal import refuse
from aimi.api.schemas.tools import FunctionTool, NamedToolChoice, OtherTool, ResponseFormat, Tool, ToolChoice

MAX_STOP_SEQUENCES = 16


class AzureChatCompletionsBody(BaseModel):
    """The body of the Azure AI Model Inference API's `POST /chat/completions`. Any other key is an
    extra parameter: a 400 unless the `extra-parameters` header says `drop` or `pass-through`."""

    model_config = ConfigDict(extra="allow", strict=True)

    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    """Up to 16 sequences, none empty; the answer ends before the first that appears."""
    stream: bool | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    modalities: list[str] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise refuse(f"'stop' takes at most {MAX_STOP_SEQUENCES} sequences.")
        if any(s == "" for s in stops):
            raise refuse("Invalid value for 'stop': stop sequences must not be empty.")
        return value

    @field_validator("tools")
    @classmethod
    def _tool_names_differ(cls, tools: list[FunctionTool | OtherTool] | None) -> Any:
        seen: set[str] = set()
        for i, tool in enumerate(tools or []):
            if isinstance(tool, FunctionTool):
                if tool.function.name in seen:
                    raise refuse(f"Two tools are named '{tool.function.name}'.", at=f"[{i}].function.name")
                seen.add(tool.function.name)
        return tools

    @model_validator(mode="after")
    def _tool_choice_has_its_tools(self) -> Self:
        choice = self.tool_choice
        if choice in ("required", "any") and not self.tools:
            raise refuse(f"tool_choice '{choice}' needs 'tools'.", at="tool_choice")
        if isinstance(choice, NamedToolChoice):
            name = choice.function.name
            if not any(isinstance(t, FunctionTool) and t.function.name == name for t in self.tools or []):
                raise refuse(f"tool_choice names '{name}', which is not in 'tools'.", at="tool_choice")
        return self


class ChatCompletionsBody(AzureChatCompletionsBody):
    """The body of Mistral's `POST /v1/chat/completions`: the Azure fields and the extras aimi
    honours (Mistral's and OpenAI's). A key aimi does not know is a 422 naming it, unless the
    `extra-parameters` header says `drop`. Both routes parse their bodies with it (on the Azure route
    the extras reach it only with `extra-parameters: pass-through`)."""

    random_seed: int | None = Field(default=None, ge=0, lt=2**63)
    safe_prompt: bool | None = None
    safe_mode: bool | None = None
    safemode: bool | None = None
    ignore_eos: bool | None = None
    logprobs: bool | int | None = None
    """true, false, or (Mistral's) the number of alternatives, 0-20."""
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: int | None = Field(default=None, ge=1)
    top_k: int | None = Field(default=None, ge=0)
    parallel_tool_calls: bool | None = None
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    max_completion_tokens: int | None = Field(default=None, ge=0)
    """OpenAI's newer name for `max_tokens` (what the `openai` SDK and LangChain send)."""

    @field_validator("logprobs")
    @classmethod
    def _logprobs_count(cls, value: bool | int | None) -> bool | int | None:
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 20:
            raise refuse("Invalid value for 'logprobs': use true, false or 0-20.")
        return value

    @model_validator(mode="after")
    def _one_token_limit(self) -> Self:
        if (
            self.max_completion_tokens is not None
            and self.max_tokens is not None
            and self.max_tokens != self.max_completion_tokens
        ):
            raise refuse(
                f"'max_tokens' ({self.max_tokens}) and 'max_completion_tokens' "
                f"({self.max_completion_tokens}) are the same limit; send one, or the same value in both.",
                at="max_completion_tokens",
            )
        return self


# The fields of the Azure AI Model Inference API; anything else is an extra parameter there.
AZURE_PARAMETERS = frozenset(AzureChatCompletionsBody.model_fields)

# The fields of Mistral's own `/v1/chat/completions`, and of OpenAI's chat completions (the `openai`
# SDK, LangChain and LiteLLM post OpenAI's to the same route): each is applied, ignored (IGNORED_EXTRAS)
# or refused when it asks for something (NOT_APPLIED); any other key is unknown (a 422 there).
MISTRAL_PARAMETERS = AZURE_PARAMETERS | frozenset(
    {
        # Mistral's
        "random_seed",
        "safe_prompt",
        "n",
        "parallel_tool_calls",
        "prediction",
        "min_tokens",
        "logprobs",
        "top_logprobs",
        "prompt_logprobs",
        "top_prompt_logprobs",
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
        # OpenAI's
        "max_completion_tokens",
        "logit_bias",
        "store",
        "safety_identifier",
        "prompt_cache_retention",
        "prompt_cache_options",
        "audio",
        "functions",
        "function_call",
        "verbosity",
        "web_search_options",
        "moderation",
    }
)

# Extras aimi accepts and has nothing to do with: bookkeeping and caching hints of other APIs, whose
# absence changes nothing in the answer (usage is always on the last stream chunk, so
# `stream_options.include_usage` is met; nothing is stored, so `store` has nothing to keep).
IGNORED_EXTRAS = frozenset(
    {
        "user",
        "metadata",
        "stream_options",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
    }
)

# Fields aimi knows but does not apply, with the values that ask for nothing (accepted as such); any
# other value is refused with a 422 naming the field, never dropped without a word.
NOT_APPLIED: dict[str, tuple[Any, ...]] = {
    "logit_bias": ({},),
    "prediction": ({"type": "content", "content": ""},),
    "min_tokens": (0,),
    "repetition_penalty": (1, 1.0),
    "reasoning_effort": ("none",),
    "prompt_mode": (),
    "guardrails": ([],),
    "prompt_logprobs": (False,),
    "top_prompt_logprobs": (0,),
    "audio": (),
    "functions": ([],),
    "function_call": ("none", "auto"),
    "verbosity": ("medium",),
    "web_search_options": (),
    "moderation": (),
}

# Every key `ChatCompletionsBody` knows how to honour.
HONOURED = frozenset(ChatCompletionsBody.model_fields)

# Every top-level key aimi knows; the `extra-parameters` policy `pass-through` refuses any other.
KNOWN = HONOURED | IGNORED_EXTRAS | frozenset(NOT_APPLIED)
