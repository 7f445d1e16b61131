"""Checking a streamed completion as it grows, over a sliding window.

Every `every` new characters, the window checks the text it has not checked yet together with the
`size - every` characters before it (so at least the last `size` characters). Text split across
stream chunks is joined before it is checked, and any harmful passage up to `size - every`
characters long lies wholly inside one check. The cost is bounded both ways:

- harmful text is reported at most `every` characters (about `every / 4` tokens, plus the chunk
  that carries it) after it is complete, so a stream is cut within that many characters;
- a check sees at most `size` characters plus what one chunk added, and runs once per `every`
  characters, so the time it adds per token is the filters' time for `size` characters divided
  by `every / 4` (measured figures in docs/safety.md).

Only the last `size - every` characters are kept between checks, so memory does not grow with the
length of the stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aimi.safety.policy import Decision, combine

Check = Callable[[str], Awaitable[Decision]]


class OutputWindow:
    """Feeds a completion's pieces to `check` in overlapping windows (see the module docstring)."""

    def __init__(self, check: Check, *, size: int = 400, every: int = 100) -> None:
        if not 0 < every < size:
            raise ValueError(f"the window needs 0 < every < size (got every={every}, size={size})")
        self._check = check
        self.size = size
        self.every = every
        self._context = ""  # the checked text kept as left context for the next check
        self._pending = ""  # text not checked yet
        self._decision: Decision | None = None

    @property
    def decision(self) -> Decision | None:
        """All checks so far combined (per category the worst); None before the first check."""
        return self._decision

    @property
    def filtered(self) -> bool:
        return self._decision is not None and self._decision.filtered

    async def feed(self, piece: str) -> Decision | None:
        """Add a piece of the stream. Returns the combined decision when this piece triggered a
        check (cut the stream if it is `filtered`), else None. Once filtered, nothing more is checked."""
        if self.filtered:
            return self._decision
        self._pending += piece
        if len(self._pending) < self.every:
            return None
        return await self._run()

    async def close(self) -> Decision | None:
        """Check what the stream ended with and return the combined decision for the whole stream."""
        if self._pending and not self.filtered:
            await self._run()
        return self._decision

    async def _run(self) -> Decision:
        text = self._context + self._pending
        overlap = self.size - self.every
        self._context = text[-overlap:]
        self._pending = ""
        decision = await self._check(text)
        self._decision = decision if self._decision is None else combine(self._decision, decision)
        return self._decision
