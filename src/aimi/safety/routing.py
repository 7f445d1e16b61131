"""A prompt's windows, cut and sent to their readers once for the whole semantic ensemble.

The semantic classifier (MiniLM) judges a prompt's windows in English, the multilingual member
those in its fifteen languages and the other-languages member the rest (`language.Reader`). Each
of them used to normalise, cut and language-test the whole prompt in its own thread: the same
windows three times at once, so the language test ran 13 to 14 times a prompt instead of once a
window (docs/safety.md, "Round 79, where it stands"; the gate's cache does not stop simultaneous
misses). A `WindowRouter` does it once (`route`): the first filter to ask for a prompt's
`Routing` starts it in a worker thread, and those asking while it runs wait for the same one
(`routing`). Each filter then judges only its readers' windows, and one given none answers on
the event loop, without a thread hop.

`cut` is the one way text becomes windows for a semantic reader: the router's, and that of a
filter that picks its own windows (`semantic.SemanticModel.scores`: completions, read in context,
and the per-filter path the benchmarks time).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aimi.safety.chunks import windows
from aimi.safety.language import LanguageGate, Reader
from aimi.safety.normalization import normalize

MAX_WORDS = 10_000
"""The longest prompt, in words, the semantic readers judge; a longer one is not cut at all."""


def cut(text: str, *, context: bool = False) -> list[str]:
    """The windows a semantic reader judges of `text`: normalised, then cut (`chunks.windows`,
    with `context` for completions)."""
    return windows(normalize(text), context=context)


@dataclass(frozen=True)
class Routing:
    """A prompt's windows (in order, each once) and the reader of each; none when its `words`
    are over the router's limit."""

    words: int
    windows: tuple[str, ...] = ()
    readers: tuple[Reader, ...] = ()

    def of(self, readers: frozenset[Reader]) -> list[str]:
        """The windows `readers` judge, in order."""
        return [w for w, reader in zip(self.windows, self.readers, strict=True) if reader in readers]


class WindowRouter:
    """Cuts a prompt into windows and asks `gate` who reads each, once for every reader; without
    a gate, every window is English's."""

    def __init__(self, gate: LanguageGate | None, *, max_words: int = MAX_WORDS) -> None:
        self.gate = gate
        self.max_words = max_words
        self._running: dict[str, asyncio.Task[Routing]] = {}

    def route(self, text: str) -> Routing:
        """`text`'s routing, computed here (CPU-bound: about 0.1 ms a window not seen lately)."""
        words = len(text.split())
        if words > self.max_words:
            return Routing(words)
        parts = tuple(cut(text))
        gate = self.gate
        readers = tuple(Reader.ENGLISH if gate is None else gate.reader(part) for part in parts)
        return Routing(words, parts, readers)

    async def routing(self, text: str) -> Routing:
        """`text`'s routing, from a worker thread; callers asking for the same text while it is
        computed share it. A caller cancelled while it waits (a filter's time limit) leaves it
        running for the others."""
        loop = asyncio.get_running_loop()
        task = self._running.get(text)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(asyncio.to_thread(self.route, text))
            self._running[text] = task
            task.add_done_callback(lambda done: self._finished(text, done))
        return await asyncio.shield(task)

    def _finished(self, text: str, task: asyncio.Task[Routing]) -> None:
        if self._running.get(text) is task:
            del self._running[text]
