"""What the chat routes answer: a completion, the chunks of a stream, and the content-safety results
both carry, as the Azure AI Model Inference API (and OpenAI's and Mistral's) define them.

A key that is `null` on the wire stays there; a key that aimi leaves out when it has nothing to say
(`usage` on all but the last chunk, `role` on all but the first delta, the content-safety results
when safety is off, a tool call's `index` outside a stream) is declared `omitted()`, so the documents
and the answers agree.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def _is_none(value: Any) -> bool:
    return value is None


def omitted() -> Any:
    """A key that is left out of the answer, rather than sent as `null`, when there is nothing in it."""
    return Field(default=None, exclude_if=_is_none)


class _Out(BaseModel):
    # Python's json module writes a log-probability of -inf as -Infinity; so does this.
    model_config = ConfigDict(ser_json_inf_nan="constants")


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]
"""`error`: the server could not finish the answer (it was shutting down, or its engine failed)."""


# -- logprobs ----------------------------------------------------------------------------------------


class TopLogprob(_Out):
    token: str
    token_id: int
    logprob: float
    bytes: list[int]


class TokenLogprob(_Out):
    token: str
    token_id: int
    """Mistral's: the token's id in the model's vocabulary."""
    logprob: float
    bytes: list[int]
    """The token's own UTF-8 bytes (a character may span several tokens)."""
    top_logprobs: list[TopLogprob]


class Logprobs(_Out):
    """The shape the Mistral deployment guide documents (`tokens`, `token_logprobs`, `top_logprobs`,
    `text_offsets`), plus OpenAI's `content` list (with Mistral's `token_id`) for those clients."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offsets: list[int]
    content: list[TokenLogprob]


# -- content safety ----------------------------------------------------------------------------------


SeverityName = Literal["safe", "low", "medium", "high"]


class CategoryResult(_Out):
    """`{filtered, severity}`, or `{filtered: false, evaluated: false}` for a category no filter
    evaluated (instead of claiming a severity)."""

    filtered: bool
    severity: SeverityName | None = omitted()
    evaluated: bool | None = omitted()


class JailbreakResult(_Out):
    filtered: bool
    detected: bool


class BlocklistMatch(_Out):
    id: str
    """The blocklist's name."""
    filtered: bool
    terms: list[str]


class BlocklistResults(_Out):
    filtered: bool
    details: list[BlocklistMatch]


class ContentFilterResults(_Out):
    """Azure's per-category verdicts; `jailbreak` on prompts only."""

    hate: CategoryResult | None = omitted()
    sexual: CategoryResult | None = omitted()
    violence: CategoryResult | None = omitted()
    self_harm: CategoryResult | None = omitted()
    jailbreak: JailbreakResult | None = omitted()
    custom_blocklists: BlocklistResults | None = omitted()


class PromptFilterResult(_Out):
    prompt_index: int
    content_filter_results: ContentFilterResults


# -- usage and tool calls ----------------------------------------------------------------------------


class PromptTokensDetails(_Out):
    cached_tokens: int
    """The prompt tokens served from a cache instead of evaluated."""


class Usage(_Out):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class FunctionCallOut(_Out):
    name: str
    arguments: str
    """The arguments as JSON text."""


class ToolCallOut(_Out):
    index: int | None = omitted()
    """In stream deltas only, where OpenAI's clients need it."""
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


# -- the completion ----------------------------------------------------------------------------------


class AssistantMessageOut(_Out):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None
    """`null` when the answer calls no tool."""


class Choice(_Out):
    index: int = 0
    message: AssistantMessageOut
    finish_reason: FinishReason
    logprobs: Logprobs | None
    content_filter_results: ContentFilterResults | None = omitted()


class ChatCompletion(_Out):
    """A whole answer (`stream` false or absent)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    """Unix time, in seconds."""
    model: str
    choices: Annotated[list[Choice], Field(min_length=1, max_length=1)]
    usage: Usage
    prompt_filter_results: list[PromptFilterResult] | None = omitted()


# -- the stream --------------------------------------------------------------------------------------


class ChunkDelta(_Out):
    role: Literal["assistant"] | None = omitted()
    """On the first chunk only."""
    content: str
    tool_calls: list[ToolCallOut] | None = omitted()
    """On the last chunk only, every call whole (as Mistral's service sends them)."""


class ChunkChoice(_Out):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    """`null` until the last chunk."""
    logprobs: Logprobs | None = None
    content_filter_results: ContentFilterResults | None = omitted()


class ChatCompletionChunk(_Out):
    """One server-sent event of a stream: `data: <chunk>`, the role first, then the text, then
    `finish_reason` and `usage` on the last; `data: [DONE]` ends the stream."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: Annotated[list[ChunkChoice], Field(min_length=1, max_length=1)]
    usage: Usage | None = omitted()
    """On the last chunk only."""
    prompt_filter_results: list[PromptFilterResult] | None = omitted()
    """On the first chunk only."""


class ModelInfo(_Out):
    """`GET /info`: the deployed model."""

    model_name: str
    model_type: Literal["chat-completions"] = "chat-completions"
    model_provider_name: str


class Readiness(_Out):
    """`GET /readyz`: 200 `ready`; 503 `starting`, `draining`, or `degraded` with the `reason`."""

    status: Literal["ready", "starting", "draining", "degraded"]
    reason: str | None = omitted()
