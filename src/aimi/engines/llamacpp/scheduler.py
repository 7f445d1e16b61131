"""The engine thread: one llama.cpp context, N sequence slots, one decode step for all of them.

Between steps it admits waiting requests into free slots (their prompts are prefilled in chunks so a
long prompt does not stall running streams), decodes one token for every running sequence in one
batch, samples each with its own chain and hands every token to its request as soon as it exists.
A sequence's slot and KV cells are released the moment it finishes or its consumer goes away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as ll

from aimi.engines.base import Event, Finish, FinishReason, GenerationRequest, Token, TokenLogprob
from aimi.engines.llamacpp.model import LlamaModel
from aimi.engines.llamacpp.sampler import Sampler, logprobs

log = logging.getLogger("aimi.engines.llamacpp")


@dataclass(eq=False)
class Sequence:
    """One request's life inside the engine."""

    request: GenerationRequest
    emit: Callable[[Event], None]
    slot: int = -1
    prefilled: int = 0
    generated: int = 0
    next_token: int | None = None
    output_index: int = -1
    sampler: Sampler | None = None
    cancelled: bool = False
    done: bool = False

    @property
    def position(self) -> int:
        return len(self.request.prompt) + self.generated - (1 if self.next_token is not None else 0)


@dataclass
class SchedulerConfig:
    context_size: int
    """Cells per sequence slot: the most prompt + completion tokens one request may use."""
    slots: int
    threads: int
    max_waiting: int
    prefill_chunk: int = 256


@dataclass
class _Shared:
    waiting: deque[Sequence] = field(default_factory=deque)
    running: list[Sequence] = field(default_factory=list)
    draining: bool = False
    abort: bool = False
    stopped: bool = False


class Scheduler:
    """Owns the llama.cpp context; every call into it happens on this object's thread."""

    def __init__(self, model: LlamaModel, config: SchedulerConfig) -> None:
        self.model = model
        self.config = config
        self._cv = threading.Condition()
        self._shared = _Shared()
        self._free_slots = list(range(config.slots - 1, -1, -1))
        params = ll.llama_context_default_params()
        params.n_ctx = config.context_size * config.slots
        params.n_seq_max = config.slots
        params.n_batch = max(512, config.prefill_chunk + config.slots)
        params.n_ubatch = params.n_batch
        params.n_threads = config.threads
        params.n_threads_batch = config.threads
        params.kv_unified = False  # each slot gets its own `context_size` cells
        params.no_perf = True
        self._ctx: Any = ll.llama_init_from_model(model.ptr, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create a context (out of memory?)")
        self._mem = ll.llama_get_memory(self._ctx)
        self._batch = ll.llama_batch_init(params.n_batch, 0, 1)
        self._n_batch = params.n_batch
        self._thread = threading.Thread(target=self._run, name="aimi-llamacpp", daemon=True)

    # -- called from other threads ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, sequence: Sequence) -> bool:
        """Queue a sequence; False when the engine is draining or the waiting line is full."""
        with self._cv:
            shared = self._shared
            if shared.draining or shared.stopped:
                return False
            beyond_slots = len(shared.waiting) - len(self._free_slots)
            if beyond_slots >= self.config.max_waiting:
                return False
            shared.waiting.append(sequence)
            self._cv.notify()
            return True

    def cancel(self, sequence: Sequence) -> None:
        with self._cv:
            sequence.cancelled = True
            self._cv.notify()

    def load(self) -> tuple[int, int]:
        with self._cv:
            return len(self._shared.running), len(self._shared.waiting)

    def drain(self, grace_s: float) -> None:
        """Stop admitting, let running sequences finish for `grace_s`, end the rest, stop the thread."""
        deadline = time.monotonic() + grace_s
        with self._cv:
            self._shared.draining = True
            for seq in self._shared.waiting:
                seq.emit(Finish("error", len(seq.request.prompt), 0, "the server is shutting down"))
                seq.done = True
            self._shared.waiting.clear()
            self._cv.notify()
            while self._shared.running and time.monotonic() < deadline:
                self._cv.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._shared.abort = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def close(self) -> None:
        if self._thread.is_alive():
            self.drain(0.0)
        if self._ctx:
            ll.llama_batch_free(self._batch)
            ll.llama_free(self._ctx)
            self._ctx = None

    # -- the engine thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except Exception:  # a bug in the loop itself: end every request rather than hang them
            log.exception("the llama.cpp engine loop failed")
            with self._cv:
                for seq in [*self._shared.running, *self._shared.waiting]:
                    self._finish(seq, "error", "the engine failed")
                self._shared.waiting.clear()
        finally:
            with self._cv:
                self._shared.stopped = True
                self._cv.notify_all()

    def _step(self) -> bool:
        with self._cv:
            shared = self._shared
            while not shared.abort and not shared.running and not shared.waiting:
                if shared.draining:
                    return False
                self._cv.wait()
            if shared.abort:
                for seq in shared.running:
                    self._finish(seq, "error", "the server is shutting down")
                return False
            for seq in [s for s in shared.running if s.cancelled]:
                self._release(seq)
            for seq in [s for s in shared.waiting if s.cancelled]:
                shared.waiting.remove(seq)
            while shared.waiting and self._free_slots:
                seq = shared.waiting.popleft()
                seq.slot = self._free_slots.pop()
                shared.running.append(seq)
            running = list(shared.running)
        if not running:
            return True
        for seq in running:
            if seq.sampler is None:
                try:
                    seq.sampler = Sampler(self.model, seq.request.sampling, max_tokens=seq.request.max_tokens)
                except Exception as exc:
                    self._finish(seq, "error", f"could not build the sampler: {exc}")
        running = [s for s in running if not s.done]
        batch = self._fill_batch(running)
        if not batch:
            return True
        rc = ll.llama_decode(self._ctx, self._batch)
        if rc != 0:
            self._decode_failed(batch, rc)
            return True
        for seq in batch:
            if seq.output_index >= 0:
                self._sample(seq)
        return True

    def _fill_batch(self, running: list[Sequence]) -> list[Sequence]:
        """Decode tokens first (one per generating sequence), then prompt chunks in the room left."""
        b = self._batch
        n = 0
        members: list[Sequence] = []

        def add(seq: Sequence, token: int, pos: int, output: bool) -> None:
            nonlocal n
            b.token[n] = token
            b.pos[n] = pos
            b.n_seq_id[n] = 1
            b.seq_id[n][0] = seq.slot
            b.logits[n] = 1 if output else 0
            n += 1

        for seq in running:
            seq.output_index = -1
            if seq.next_token is not None:
                seq.output_index = n
                add(seq, seq.next_token, seq.position, True)
                members.append(seq)
        budget = min(self.config.prefill_chunk, self._n_batch - n)
        for seq in running:
            remaining = len(seq.request.prompt) - seq.prefilled
            if seq.next_token is not None or remaining <= 0 or budget <= 0:
                continue
            take = min(remaining, budget)
            for i in range(seq.prefilled, seq.prefilled + take):
                last = i == len(seq.request.prompt) - 1
                if last:
                    seq.output_index = n
                add(seq, seq.request.prompt[i], i, last)
            seq.prefilled += take
            budget -= take
            members.append(seq)
        b.n_tokens = n
        return members

    def _decode_failed(self, batch: list[Sequence], rc: int) -> None:
        # Each slot owns `context_size` cells and no sequence may outgrow them, so a failed decode
        # is not a capacity problem of one request: end the requests of this batch, keep serving.
        log.error("llama_decode failed (%d) for a batch of %d sequences", rc, len(batch))
        for seq in batch:
            self._finish(seq, "error", f"llama_decode failed ({rc})")

    def _sample(self, seq: Sequence) -> None:
        request = seq.request
        try:
            assert seq.sampler is not None
            token = seq.sampler.sample(self._ctx, seq.output_index)
            logprob: float | None = None
            top: tuple[TokenLogprob, ...] = ()
            if request.logprobs is not None:
                logprob, top = logprobs(self.model, self._ctx, seq.output_index, token, request.logprobs)
        except Exception as exc:
            log.exception("sampling failed")
            self._finish(seq, "error", f"sampling failed: {exc}")
            return
        if token in self.model.eog_tokens and not request.sampling.ignore_eos:
            self._finish(seq, "stop")
            return
        seq.generated += 1
        seq.next_token = token
        seq.emit(Token(token, self.model.piece(token), logprob, top))
        if (
            seq.generated >= request.max_tokens
            or len(request.prompt) + seq.generated >= self.config.context_size
        ):
            self._finish(seq, "length")

    def _finish(self, seq: Sequence, reason: FinishReason, message: str | None = None) -> None:
        if not seq.done:
            seq.done = True
            seq.emit(Finish(reason, len(seq.request.prompt), seq.generated, message))
        self._release(seq)

    def _release(self, seq: Sequence) -> None:
        seq.done = True
        with self._cv:
            if seq in self._shared.running:
                self._shared.running.remove(seq)
                ll.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
                self._free_slots.append(seq.slot)
                self._cv.notify_all()
        if seq.sampler is not None:
            seq.sampler.close()
            seq.sampler = None
