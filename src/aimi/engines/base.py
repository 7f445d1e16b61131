"""The engine ports and the types that cross them.

Every engine has a lifecycle (`Engine`: start, stop, stats, what model it serves). Chat answers come
through one of two ports, and both yield the same events (`aimi.engines.events`):

- a *token engine* (llama.cpp) takes prompt token ids, rendered by a `PromptRenderer` from its
  tokenizer and chat template (`aimi.inference.prompts`), with the grammar that keeps tool calls and
  response formats valid;
- a *chat engine* (an upstream server) takes the conversation itself, and templates, lays out tools
  and enforces response formats itself.

A further port (embeddings) joins as one more protocol on `Engine`, with its own request and result;
the chat ports do not change for it. Engines are found by the kind of source they serve
(`aimi.engines.registry`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aimi.engines.events import (
    Event,
    Finish,
    FinishReason,
    Token,
    TokenEvent,
    TokenLogprob,
    ToolCall,
    ToolCalls,
)

Port = Literal["token", "chat"]
"""Which port an engine implements (the embedding port will add its own name)."""


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
class GenerationRequest:
    """What a token engine generates from: a prompt already rendered to token ids."""

    prompt: list[int]
    sampling: Sampling
    max_tokens: int
    logprobs: int | None = None
    """None: no log-probabilities; k >= 0: the sampled token's and the top k alternatives'."""
    grammar: Grammar | None = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt)


@dataclass(frozen=True, slots=True)
class Conversation:
    """What a chat engine generates from: the OpenAI chat-completions shapes of the messages and of
    the options its server applies itself (it lays out the tools and enforces the response format;
    no grammar comes with it)."""

    messages: tuple[dict[str, Any], ...]
    sampling: Sampling
    estimated_prompt_tokens: int
    """aimi's estimate of the prompt's length (for quota admission, and for usage when the server
    reports none)."""
    reserved_tokens: int
    """The completion tokens aimi reserved in the quota: `max_tokens`, or what the context has left."""
    max_tokens: int | None = None
    """What the client asked for; None leaves it to the server."""
    logprobs: int | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    response_format: dict[str, Any] | None = None
    stop: tuple[str, ...] = ()
    streamed: bool = True
    """Whether the client reads the answer as it comes. When it only wants it whole, a server that
    aimi forwards to is asked for it whole too: neither side then handles an event per token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCard:
    """What every engine says of the model it serves."""

    name: str
    provider: str
    context_length: int
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo(ModelCard):
    """A token engine's model: the card, and what a prompt renderer needs of its tokenizer."""

    chat_template: str | None
    bos_token: str
    eos_token: str
    add_bos: bool
    vocab_size: int


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
    jumped_tokens: int = 0
    """Of those, the tokens a grammar forced and the engine appended without sampling them."""
    decode_steps: int = 0
    decode_seconds: float = 0.0
    prompt_cache_bytes: int = 0
    """Host memory the engine's prompt cache holds now (sequence states kept beyond the slots)."""
    prompt_cache_entries: int = 0


class Engine(Protocol):
    """What every engine has, whatever it generates: a model, a lifecycle, counters."""

    @property
    def port(self) -> str:
        """Which port it implements (`token`, `chat`)."""
        ...

    @property
    def info(self) -> ModelCard: ...

    async def start(self) -> None:
        """Load the model or reach the server; raises (an `AimiError`) saying why it cannot."""
        ...

    async def stop(self, grace_s: float = 0.0) -> None:
        """Stop admitting; let running generations go on for `grace_s`, then end them (`error`)."""
        ...

    def stats(self) -> EngineStats: ...


class TokenEngine(Engine, Protocol):
    """A model behind a scheduler, fed prompt token ids. `generate` always streams; a full response is
    the stream folded."""

    @property
    def port(self) -> Literal["token"]: ...

    @property
    def info(self) -> ModelInfo: ...

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]: ...

    def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        """Yield tokens, then one `Finish`. Admission errors (busy, a grammar the engine cannot
        compile) raise on the first iteration; closing the iterator early cancels the generation
        and frees its slot."""
        ...


class ChatEngine(Engine, Protocol):
    """A model that takes the conversation itself (a server aimi forwards to)."""

    @property
    def port(self) -> Literal["chat"]: ...

    def count_tokens(self, text: str) -> int:
        """About how many tokens `text` is (the engine may have no tokenizer aimi can run)."""
        ...

    def generate(self, request: Conversation) -> AsyncIterator[Event]:
        """Yield tokens, the calls the model made (if any), then one `Finish`; errors and closing
        as for a token engine."""
        ...


ChatModel = TokenEngine | ChatEngine
"""An engine that answers chat, through either port."""

__all__ = [
    "ChatEngine",
    "ChatModel",
    "Conversation",
    "Engine",
    "EngineStats",
    "Event",
    "Finish",
    "FinishReason",
    "GenerationRequest",
    "Grammar",
    "ModelCard",
    "ModelInfo",
    "Port",
    "Sampling",
    "Token",
    "TokenEngine",
    "TokenEvent",
    "TokenLogprob",
    "ToolCall",
    "ToolCalls",
]
