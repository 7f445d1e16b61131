"""The Engine port and the types that cross it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "error"]


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
    """What an engine generates from: a prompt already rendered to token ids."""

    prompt: list[int]
    sampling: Sampling
    max_tokens: int
    logprobs: int | None = None
    """None: no log-probabilities; k >= 0: the sampled token's and the top k alternatives'."""
    grammar: Grammar | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: int
    piece: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class Token:
    """One sampled token; `piece` is its raw bytes (a UTF-8 character may span several tokens)."""

    id: int
    piece: bytes
    logprob: float | None = None
    top: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of every generation."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    message: str | None = None
    """Why an `error` finish happened, for the log and the final event."""


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
