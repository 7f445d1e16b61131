"""Grammar samplers built off the event loop and off the engine's decode thread, on a budget.

Building a llama.cpp grammar is one C call that cannot be interrupted: it parses the GBNF recursively,
expands repetitions into rules and computes every parse the first token may continue. Run on the
event loop it stalls every request of the process; run on the decode thread, every sequence of the
batch. So builds run on worker threads of their own, with a stack large enough for the deepest
grammar `check_gbnf` lets through whatever the platform's default, and within a budget: a build that
takes longer than `BUILD_SECONDS` is refused (a grammar that slow to build is as slow to match), and
the grammars an engine holds at once, queued or running, may not hold more than `HELD_GBNF_CHARS` of
grammar text (native memory grows with it, ~50 bytes a character at worst), nor wait more than
`MAX_QUEUED` to be built: beyond either the request is told to retry (429).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from aimi.engines.base import GenerationRequest
from aimi.engines.llamacpp.model import LlamaModel
from aimi.engines.llamacpp.sampler import MAX_GRAMMAR_STEP_SECONDS, Sampler
from aimi.errors import EngineUnavailable, InvalidRequest, RateLimited

BUILD_SECONDS = 10.0
HELD_GBNF_CHARS = 8 * 1024 * 1024
MAX_QUEUED = 64
WORKERS = 2
WORKER_STACK_BYTES = 64 * 1024 * 1024

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Sampler]", Callable[[], Sampler]]


class GrammarBuilds:
    """Worker threads that build the samplers of requests with a grammar, and the budget of the
    grammars held at once. `start` before use, `stop` after."""

    def __init__(
        self,
        *,
        workers: int = WORKERS,
        held_chars: int = HELD_GBNF_CHARS,
        max_queued: int = MAX_QUEUED,
        seconds: float = BUILD_SECONDS,
        step_seconds: float = MAX_GRAMMAR_STEP_SECONDS,
        jump_forward: bool = False,
    ) -> None:
        """`step_seconds`: the longest a sampler may take to match one token; `jump_forward`: its
        samplers append the text their grammar forces (see `Sampler`)."""
        self._workers = workers
        self._jump_forward = jump_forward
        self._step_seconds = step_seconds
        self._held_limit = held_chars
        self._seconds = seconds
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queued)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._held = 0
        self._stopped = False

    @property
    def held_chars(self) -> int:
        with self._lock:
            return self._held

    def start(self) -> None:
        # Stack sizes are process-wide and read when a thread starts: set for ours, then restored.
        before = threading.stack_size(WORKER_STACK_BYTES)
        try:
            for i in range(self._workers):
                thread = threading.Thread(target=self._work, name=f"aimi-grammar-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        finally:
            threading.stack_size(before)

    def stop(self) -> None:
        """No new builds; the workers end after the builds already waiting (they are daemons: a
        worker inside a long build does not hold up the process)."""
        self._stopped = True
        for _ in self._threads:
            with contextlib.suppress(queue.Full):
                self._jobs.put_nowait(None)
        self._threads.clear()

    async def sampler(self, model: LlamaModel, request: GenerationRequest) -> Sampler:
        """The sampler of a request with a grammar, built on a worker thread."""
        assert request.grammar is not None
        if self._stopped:
            raise EngineUnavailable("The engine is shutting down.")
        grammar = request.grammar
        release = self._reserve(len(grammar.gbnf))

        def build() -> Sampler:
            started = time.monotonic()
            try:
                sampler = Sampler(
                    model,
                    request.sampling,
                    max_tokens=request.max_tokens,
                    grammar=grammar,
                    on_close=release,
                    max_step_s=self._step_seconds,
                    jump_forward=self._jump_forward,
                )
            except BaseException:
                release()
                raise
            took = time.monotonic() - started
            if took > self._seconds:
                sampler.close()
                raise InvalidRequest(
                    f"Building the output constraint's grammar took {took:.1f} s, more than the "
                    f"{self._seconds:g} s budget. Simplify the schema."
                )
            return sampler

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Sampler] = loop.create_future()
        try:
            self._jobs.put_nowait((loop, future, build))
        except queue.Full:
            release()
            raise RateLimited(
                "Too many output constraints are being prepared at once. Try again in a moment.",
                retry_after=1,
            ) from None
        return await future  # cancelled: the worker closes what it built, which releases its budget

    def _reserve(self, chars: int) -> Callable[[], None]:
        with self._lock:
            if self._held and self._held + chars > self._held_limit:
                raise RateLimited(
                    "The engine holds as many output-constraint grammars as it has room for. "
                    "Try again in a moment.",
                    retry_after=1,
                )
            self._held += chars
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._held -= chars

        return release

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, build = job
            result: Sampler | None = None
            error: BaseException | None = None
            try:
                result = build()
            except Exception as exc:
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody is waiting
                if result is not None:
                    result.close()


def _settle(future: asyncio.Future[Any], result: Sampler | None, error: BaseException | None) -> None:
    if future.done():  # given up on (cancelled): what was built is nobody's
        if result is not None:
            result.close()
    elif error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
