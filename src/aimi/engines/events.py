"""The events every chat-generating engine yields, whichever port it implements: tokens as they are
sampled, the tool calls a server made (an engine that templates itself), and one `Finish`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "content_filter", "error", "interrupted"]
"""`content_filter`: a server an engine forwards to withheld the rest (aimi's own filter is above).
`interrupted`: the server stopped the generation (a shutdown whose grace ran out); the tokens so far
stand, unlike after an `error`."""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: int
    piece: bytes
    logprob: float


@dataclass(frozen=True, slots=True)
class Token:
    """One sampled token; `piece` is its raw bytes (a UTF-8 character may span several tokens).
    An engine that does not see token ids (a server it forwards to) gives `id` -1, which is also what
    the wire shows as the token's id then."""

    id: int
    piece: bytes
    logprob: float | None = None
    top: tuple[TokenLogprob, ...] = ()
    cached_tokens: int = 0
    """On a generation's first token: how many prompt tokens came from a cache (as in `Finish`), so
    that an answer cut short by a stop sequence still reports it."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of one of the offered functions; `arguments` is JSON text, as the model wrote it. An
    empty `id` means the engine has none to give (aimi makes one)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """The calls a chat engine's server made, whole, after the answer's text and before `Finish`.
    (A token engine writes calls as text; its renderer's tool format reads them back.)"""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class Finish:
    """The last event of every generation: why it ended, and its usage."""

    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    message: str | None = None
    """Why an `error` finish happened, for the log and the final event."""
    cached_tokens: int = 0
    """Prompt tokens served from a cache rather than evaluated (an engine that does not know: 0)."""


TokenEvent = Token | Finish
"""What a token engine yields."""

Event = Token | ToolCalls | Finish
"""What a chat engine yields, and what the pipeline reads from either port."""
