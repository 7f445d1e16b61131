"""`LlamaCppEngine`: the asyncio face of the llama.cpp scheduler thread."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Literal

from aimi.engines.base import EngineStats, Finish, GenerationRequest, ModelInfo, TokenEvent
from aimi.engines.llamacpp.grammars import GrammarBuilds
from aimi.engines.llamacpp.model import LlamaModel
from aimi.engines.llamacpp.sampler import MAX_GRAMMAR_STEP_SECONDS, Sampler
from aimi.engines.llamacpp.scheduler import Scheduler, SchedulerConfig, Sequence
from aimi.errors import EngineUnavailable, RateLimited


class _Mailbox:
    """Carries events from the engine thread to one event loop, waking the loop once for all the
    events posted before it gets to them (a step's tokens for every stream), not once per token."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[tuple[asyncio.Queue[TokenEvent], TokenEvent]] = []

    def post(self, queue: asyncio.Queue[TokenEvent], event: TokenEvent) -> None:
        with self._lock:
            self._items.append((queue, event))
            if len(self._items) > 1:
                return  # a wake-up is already on its way
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for queue, event in items:
            queue.put_nowait(event)


class LlamaCppEngine:
    """One GGUF model, one context, `slots` sequences decoded together: the token engine port."""

    port: Literal["token"] = "token"

    def __init__(
        self,
        model_path: Path,
        *,
        context_size: int = 4096,
        slots: int = 4,
        shared_kv_cache: bool = False,
        threads: int | None = None,
        max_waiting: int = 64,
        prompt_cache_bytes: int = 0,
        on_progress: Callable[[float], None] | None = None,
        name: str | None = None,
        provider: str | None = None,
        grammar_step_s: float = MAX_GRAMMAR_STEP_SECONDS,
        jump_forward: bool = True,
    ) -> None:
        """`name` and `provider` override what the GGUF's metadata says (`general.name`, ...);
        `grammar_step_s` is the longest matching one token against a grammar may take before the
        sequence ends; `jump_forward` appends the text a grammar forces in one step (`jump.py`)."""
        self._path = model_path
        self._names = (name, provider)
        self._context_size = context_size
        self._slots = slots
        self._shared_kv_cache = shared_kv_cache
        self._threads = threads or os.cpu_count() or 1
        self._max_waiting = max_waiting
        self._prompt_cache_bytes = prompt_cache_bytes
        self._on_progress = on_progress
        self._model: LlamaModel | None = None
        self._scheduler: Scheduler | None = None
        self._info: ModelInfo | None = None
        self._stopping: asyncio.Future[None] | None = None
        self.jump_forward = jump_forward
        self._grammars = GrammarBuilds(step_seconds=grammar_step_s, jump_forward=jump_forward)
        self._mailboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Mailbox] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise EngineUnavailable("the model is not loaded yet")
        return self._info

    async def start(self) -> None:
        await asyncio.to_thread(self._load)
        self._grammars.start()

    def _load(self) -> None:
        model = LlamaModel(self._path, on_progress=self._on_progress)
        context = min(self._context_size, model.n_ctx_train) if model.n_ctx_train > 0 else self._context_size
        config = SchedulerConfig(
            context_size=context,
            slots=self._slots,
            threads=self._threads,
            max_waiting=self._max_waiting,
            shared_kv_cache=self._shared_kv_cache,
            prompt_cache_bytes=self._prompt_cache_bytes,
        )
        self._scheduler = Scheduler(model, config)
        info = model.info(context_length=context)
        name, provider = self._names
        self._info = dataclasses.replace(info, name=name or info.name, provider=provider or info.provider)
        self._model = model
        self._scheduler.start()

    async def stop(self, grace_s: float = 0.0) -> None:
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._shutdown(grace_s))
        await asyncio.shield(self._stopping)

    async def _shutdown(self, grace_s: float) -> None:
        self._grammars.stop()
        scheduler, model = self._scheduler, self._model
        freed = True
        if scheduler is not None:
            await asyncio.to_thread(scheduler.drain, grace_s)
            freed = scheduler.close()
        if model is not None and freed:  # weights a live engine thread still reads stay with the process
            model.close()
        self._scheduler = self._model = None

    def stats(self) -> EngineStats:
        return self._scheduler.stats() if self._scheduler else EngineStats(slots=self._slots)

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        if self._model is None:
            raise EngineUnavailable("the model is not loaded yet")
        return self._model.tokenize(text, add_bos=add_bos, special=special)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TokenEvent]:
        scheduler, model = self._scheduler, self._model
        if scheduler is None or model is None:
            raise EngineUnavailable("the engine is not running")
        # Built before the request is queued, so that a grammar llama.cpp rejects fails this request
        # up front; the engine thread owns the sampler from `submit` on. A grammar is built on a
        # worker thread: never on the event loop, nor on the engine thread's decode loop.
        if request.grammar is None:
            sampler = Sampler(model, request.sampling, max_tokens=request.max_tokens)
        else:
            sampler = await self._grammars.sampler(model, request)
        loop = asyncio.get_running_loop()
        mailbox = self._mailboxes.get(loop)
        if mailbox is None:
            mailbox = self._mailboxes[loop] = _Mailbox(loop)
        queue: asyncio.Queue[TokenEvent] = asyncio.Queue()

        def emit(event: TokenEvent) -> None:
            mailbox.post(queue, event)

        sequence = Sequence(request=request, sampler=sampler, emit=emit)
        if not scheduler.submit(sequence):
            sampler.close()
            waiting = scheduler.stats().waiting
            if waiting >= self._max_waiting:
                raise RateLimited(
                    "The engine is busy: every slot is in use and the waiting line is full. "
                    "Try again in a moment.",
                    retry_after=1 + waiting // max(1, self._slots),
                )
            raise EngineUnavailable("The engine is shutting down.")
        finished = False
        try:
            while True:
                event = await queue.get()
                if isinstance(event, Finish):
                    finished = True
                yield event
                if finished:
                    return
        finally:
            if not finished:
                scheduler.cancel(sequence)
