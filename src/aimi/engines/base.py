"""The Engine port and the types that cross it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "content_filter", "error", "interrupted"]
"""`content_filter`: a server an engine forwards to withheld the rest (aimi's own filter is above).
`interrupted`: the server stopped the generation (a shutdown whose grace ran out); the tokens so far
stand, unlike after an `error`."""

TOOL_CALLS_TOKEN = -2
"""The id of a `Token` whose piece is tool calls an engine that templates itself read from its server:
a JSON list of `{"id", "name", "arguments"}` (no vocabulary has negative ids)."""


@dataclass(frozen=True, slots=True)
class Sampling:
    """How one sequence picks its next token."""

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True, slots=True)
class Grammar:
    """A GBNF grammar every generated token must keep the output inside.

    With `triggers` it is lazy: text is free until a trigger pattern (a regular expression over the
    generated text) or trigger token appears, and from there on the grammar constrains the rest."""

    gbnf: str
    root: str = "root"
    trigger_patterns: tuple[str, ...] = ()
    trigger_tokens: tuple[int, ...] = ()

    @property
    def lazy(self) -> bool:
        return bool(self.trigger_patterns or self.trigger_tokens)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A chat as an engine that templates itself takes it: the OpenAI chat-completions shapes of the
    messages and of the options such a server applies itself (it lays out the tools and enforces the
    response format; no grammar comes with it)."""

    messages: tuple[dict[str, Any], ...]
    estimated_prompt_tokens: int
    """aimi's estimate of the prompt's length (for quota admission, and for usage when the server
    reports none)."""
    max_tokens: int | None = None
    """What the client asked for; None leaves it to the server (`GenerationRequest.max_tokens` is then
    what aimi reserved)."""
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: dict[str, Any] | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What an engine generates from: a prompt already rendered to token ids, or, for an engine that
    templates itself, the conversation (and `prompt` is empty)."""

    prompt: list[int]
    sampling: Sampling
    max_tokens: int
    logprobs: int | None = None
    """None: no log-probabilities; k >= 0: the sampled token's and the top k alternatives'."""
    grammar: Grammar | None = None
    conversation: Conversation | None = None

    @property
    def prompt_tokens(self) -> int:
        """The prompt's length in tokens; an estimate for a conversation."""
        if self.conversation is not None:
            return self.conversation.estimated_prompt_tokens
        return len(self.prompt)


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: int
    piece: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class Token:
    """One sampled token; `piece` is its raw bytes (a UTF-8 character may span several tokens).
    An engine that does not see token ids (a server it forwards to) gives `id` -1."""

    id: int
    piece: bytes
    logprob: float | None = None
    top: tuple[TokenLogprob, ...] = ()
    cached_tokens: int = 0
    """On a generation's first token: how many prompt tokens came from a cache (as in `Finish`), so
    that an answer cut short by a stop sequence still reports it."""


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of every generation."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    message: str | None = None
    """Why an `error` finish happened, for the log and the final event."""
    cached_tokens: int = 0
    """Prompt tokens served from a cache rather than evaluated (an engine that does not know: 0)."""


Event = Token | Finish


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the rest of aimi needs to know about the loaded model."""

    name: str
    provider: str
    context_length: int
    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool
    vocab_size: int
    metadata: dict[str, str] = field(default_factory=dict)
    templates_itself: bool = False
    """True for an engine that takes `GenerationRequest.conversation` instead of prompt token ids
    (it renders the prompt, tools and response format itself, and its `tokenize` is an estimate)."""


@dataclass(frozen=True, slots=True)
class EngineStats:
    """Counters since start, and the current load."""

    running: int = 0
    waiting: int = 0
    slots: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    """Prompt tokens whose KV cache was kept from an earlier request with the same prefix."""
    prompt_tokens_shared: int = 0
    """Of those, the tokens copied from another sequence slot (a prefix the request's own slot lacked)."""
    prompt_tokens_restored: int = 0
    """Of those, the tokens restored from the host-memory prompt cache."""
    generated_tokens: int = 0
    decode_steps: int = 0
    decode_seconds: float = 0.0


@runtime_checkable
class Engine(Protocol):
    """A model behind a scheduler. `generate` always streams; a full response is the stream folded."""

    @property
    def info(self) -> ModelInfo: ...

    async def start(self) -> None: ...

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop admitting; let running generations go on for `grace_s`, then end them (`error`)."""
        ...

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]: ...

    def stats(self) -> EngineStats: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Yield tokens, then one `Finish`. Admission errors (busy, a grammar the engine cannot
        compile) raise on the first iteration; closing the iterator early cancels the generation
        and frees its slot."""
        ...
