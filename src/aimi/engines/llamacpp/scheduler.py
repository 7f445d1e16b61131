"""The engine thread: one llama.cpp context, N sequence slots, one decode step for all of them.

Between steps it admits waiting requests into free slots (their prompts are prefilled in chunks so a
long prompt does not stall running streams), decodes one token for every running sequence in one
batch, samples each with its own chain and hands every token to its request as soon as it exists.
Where a sequence's grammar forces the next text, its tokens are appended at once and evaluated in
that sequence's next step, several tokens in one (`jump.py`).
A finished sequence's slot is free at once; its KV cells stay, so the next request that starts with
the same tokens (same system prompt, a growing conversation) skips evaluating them again.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import llama_cpp as ll

from aimi.engines.base import (
    EngineStats,
    Finish,
    FinishReason,
    GenerationRequest,
    Token,
    TokenEvent,
    TokenLogprob,
)
from aimi.engines.llamacpp.jump import CONTEXT_TOKENS
from aimi.engines.llamacpp.model import LlamaModel
from aimi.engines.llamacpp.prefill import PrefillBudget
from aimi.engines.llamacpp.prompt_cache import MIN_RESTORE, PromptCache
from aimi.engines.llamacpp.prompt_cache import common_prefix as _common_prefix
from aimi.engines.llamacpp.queueing import count_overtaken, next_to_admit, prefill_order
from aimi.engines.llamacpp.sampler import Sampler, logprobs

log = logging.getLogger("aimi.engines.llamacpp")


@dataclass(eq=False)
class Sequence:
    """One request's life inside the engine."""

    request: GenerationRequest
    sampler: Sampler
    emit: Callable[[TokenEvent], None]
    slot: int = -1
    prefilled: int = 0
    """Prompt tokens in the KV cache (or in the batch being decoded)."""
    tokens: list[int] = field(default_factory=list)
    """Generated tokens, in order."""
    decoded: int = 0
    """Generated tokens already in the KV cache (the last sampled one is not, until the next step,
    nor are the tokens a jump appended after it)."""
    emitted: int = 0
    """Generated tokens handed to the request. Jumped tokens of a request that wants logprobs wait
    for the step that evaluates them (their logprobs come from its rows)."""
    output_index: int = -1
    """The batch row whose logits the next token is sampled from."""
    rows: list[int] = field(default_factory=list)
    """Batch rows holding the logits of the tokens `emitted` on (logprobs of jumped tokens)."""
    batch_decoded: int = 0
    """Generated tokens this step's batch evaluates for it."""
    decoding: bool = False
    cancelled: bool = False
    done: bool = False
    cached: int = 0
    """Prompt tokens that were not evaluated for it: kept in its slot, copied from another slot or
    restored from the prompt cache (`usage.prompt_tokens_details.cached_tokens`)."""
    source: Sequence | None = None
    """A running sequence whose prompt starts like this one's: this one waits for it to evaluate
    the first `shared` tokens, copies them and evaluates only the rest."""
    shared: int = 0
    overtaken: int = 0
    """How many times a later request went first (`queueing.py`)."""

    @property
    def reuses_prefix(self) -> bool:
        # A seeded request promises the same text for the same request. KV reused from another
        # batch shape can round differently, so seeded requests always evaluate their whole prompt.
        return self.request.sampling.seed is None


MIN_SHARED_PREFIX = 32
"""Fewest prompt tokens worth copying from another slot instead of evaluating them. With one KV
stream per slot llama.cpp copies a stream whole (every cell of every layer): a few milliseconds for a
small model, and never more than evaluating 32 tokens costs."""


@dataclass
class SchedulerConfig:
    context_size: int
    """Cells per sequence slot: the most prompt + completion tokens one request may use."""
    slots: int
    threads: int
    max_waiting: int
    prefill_chunk: int = 256
    """The fewest prompt tokens per step beside running streams (`prefill.py`)."""
    prefill_max: int = 2048
    """Prompt tokens per step when no stream is running."""
    prefill_step_s: float = 0.5
    """The longest a step with prompt tokens may take while streams run (their inter-token latency)."""
    shared_kv_cache: bool = False
    """One KV cell pool for every slot (llama.cpp's `kv_unified`), or one stream per slot."""
    prompt_cache_bytes: int = 0
    """Host memory for sequence states beyond the slots (`prompt_cache.py`); 0 turns it off."""
    join_timeout_s: float = 30.0
    """How long a drain waits for the engine thread to stop after the grace (a step in progress)."""


@dataclass
class _Counters:
    requests: int = 0
    prompt_tokens: int = 0
    prompt_tokens_reused: int = 0
    prompt_tokens_shared: int = 0
    prompt_tokens_restored: int = 0
    generated_tokens: int = 0
    jumped_tokens: int = 0
    decode_steps: int = 0
    decode_seconds: float = 0.0


class Scheduler:
    """Owns the llama.cpp context; every call into it happens on this object's thread.

    By default each slot has its own KV stream of `context_size` cells. With `shared_kv_cache` the
    slots share one pool of `context_size * slots` cells (llama.cpp's `kv_unified`), which always has
    room: a sequence never holds more than `context_size` cells, and a slot's cached prefix is dropped
    before a new sequence takes that slot. With short prompts a shared pool decodes 8 sequences in
    ~30 ms a step against ~36-48 ms per slot; but every token attends over all the pool's used cells
    (masked), so with long prompts one stream per slot costs less."""

    def __init__(self, model: LlamaModel, config: SchedulerConfig) -> None:
        self.model = model
        self.config = config
        self._cv = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._draining = self._abort = self._stopped = False
        self._free_slots = list(range(config.slots))
        self._cached: list[list[int]] = [[] for _ in range(config.slots)]
        self._last_used = [0] * config.slots
        self._counters = _Counters()
        self._prompt_cache = PromptCache(config.prompt_cache_bytes) if config.prompt_cache_bytes > 0 else None
        self._outbox: list[tuple[Sequence, TokenEvent]] = []
        """Events of the current step, handed over together once its sampling is done."""
        self._prefill = PrefillBudget(config.prefill_chunk, config.prefill_max, config.prefill_step_s)
        params = ll.llama_context_default_params()
        params.n_ctx = config.context_size * config.slots
        params.n_seq_max = config.slots
        params.n_ubatch = max(512, config.prefill_chunk + config.slots)
        params.n_batch = max(params.n_ubatch, config.prefill_max + config.slots)
        params.n_threads = config.threads
        params.n_threads_batch = config.threads
        params.kv_unified = config.shared_kv_cache
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
            if self._draining or self._stopped:
                return False
            if len(self._waiting) - len(self._free_slots) >= self.config.max_waiting:
                return False
            self._waiting.append(sequence)
            self._cv.notify()
            return True

    def cancel(self, sequence: Sequence) -> None:
        with self._cv:
            sequence.cancelled = True
            self._cv.notify()

    def stats(self) -> EngineStats:
        cache = self._prompt_cache
        with self._cv:
            return EngineStats(
                running=len(self._running),
                waiting=len(self._waiting),
                slots=self.config.slots,
                **dataclasses.asdict(self._counters),
                prompt_cache_bytes=cache.stats.bytes if cache else 0,
                prompt_cache_entries=cache.stats.entries if cache else 0,
            )

    def drain(self, grace_s: float) -> None:
        """Stop admitting, let running sequences finish for `grace_s`, end the rest, stop the thread."""
        deadline = time.monotonic() + grace_s
        with self._cv:
            self._draining = True
            for seq in self._waiting:
                seq.done = True
                seq.sampler.close()
                seq.emit(Finish("error", len(seq.request.prompt), 0, "the server is shutting down"))
            self._waiting.clear()
            self._cv.notify()
            while self._running and time.monotonic() < deadline:
                self._cv.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._abort = True
            self._cv.notify()
        self._thread.join(timeout=self.config.join_timeout_s)

    def close(self) -> bool:
        """Free the context, once the engine thread has stopped; False (and nothing freed) when it
        did not stop in time: freeing memory a live `llama_decode` uses would crash the process, and
        the memory goes back with the process anyway."""
        if self._thread.is_alive():
            self.drain(0.0)
        if self._thread.is_alive():
            log.error("the llama.cpp engine thread did not stop; its context is left to the process exit")
            return False
        if self._ctx:
            ll.llama_batch_free(self._batch)
            ll.llama_free(self._ctx)
            self._ctx = None
        return True

    # -- the engine thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                self._hand_over()
        except Exception:  # a bug in the loop itself: end every request rather than hang them
            log.exception("the llama.cpp engine loop failed")
            with self._cv:
                for seq in [*self._running, *self._waiting]:
                    self._finish(seq, "error", "the engine failed")
                self._waiting.clear()
        finally:
            self._hand_over()
            with self._cv:
                self._stopped = True
                self._cv.notify_all()

    def _hand_over(self) -> None:
        """Give the step's events to their requests, all at once after the step's Python work: a
        consumer woken per token would take the GIL (and a core) while this thread still samples,
        and every step would wait for it."""
        outbox, self._outbox = self._outbox, []
        for seq, event in outbox:
            seq.emit(event)

    def _step(self) -> bool:
        with self._cv:
            while not self._abort and not self._running and not self._waiting:
                if self._draining:
                    return False
                self._cv.wait()
            if self._abort:
                for seq in list(self._running):
                    # what it generated stands; only sequences with no token yet end in an error
                    reason: FinishReason = "interrupted" if seq.emitted else "error"
                    self._finish(seq, reason, "the server is shutting down")
                return False
            for seq in [s for s in self._running if s.cancelled]:
                self._release(seq)
            for seq in [s for s in self._waiting if s.cancelled]:
                self._waiting.remove(seq)
                seq.sampler.close()
            while self._waiting and self._free_slots:
                self._admit(next_to_admit(self._waiting, len(self._free_slots), self._left_to_evaluate))
            for seq in self._running:
                if seq.source is not None:
                    self._take_shared_prefix(seq)
            running = list(self._running)
        if not running:
            return True
        batch = self._fill_batch(running)
        if not batch:
            return True
        streaming = sum(seq.decoding for seq in batch)
        started = time.perf_counter()
        rc = ll.llama_decode(self._ctx, self._batch)
        elapsed = time.perf_counter() - started
        self._prefill.observe(self._batch.n_tokens - streaming, streaming, elapsed)
        with self._cv:
            self._counters.decode_steps += 1
            self._counters.decode_seconds += elapsed
        if rc != 0:
            self._decode_failed(batch, rc)
            return True
        for seq in batch:
            seq.decoded += seq.batch_decoded
            if seq.output_index >= 0:
                self._evaluated(seq)
        return True

    def _admit(self, seq: Sequence) -> None:
        """Give `seq` the free slot whose cached tokens share the longest prefix with its prompt; when
        none shares a prefix that counts (`_counts`: every chat prompt starts with the same few
        template tokens), the one whose cache is worth least (empty, else the least recently used), so
        that a conversation's cache waits in its slot for the conversation to come back. A longer
        prefix in the prompt cache is restored into that slot. What the slot drops goes to the prompt
        cache first."""
        prompt = seq.request.prompt
        best_slot, best, best_shared = self._free_slots[0], -1, 0
        for slot in self._free_slots:
            shared = _common_prefix(self._cached[slot], prompt) if seq.reuses_prefix else 0
            useful = shared if _counts(shared, len(prompt), len(self._cached[slot])) else 0
            if useful > best or (useful == best and self._worth(slot) < self._worth(best_slot)):
                best_slot, best, best_shared = slot, useful, shared
        reuse = min(best_shared, len(prompt) - 1)  # the last prompt token is evaluated for its logits
        self._free_slots.remove(best_slot)
        self._keep_beyond(best_slot, reuse)
        if seq.reuses_prefix and self._prompt_cache is not None:
            reuse = self._restore(best_slot, prompt, reuse)
        ll.llama_memory_seq_rm(self._mem, best_slot, reuse, -1)
        self._cached[best_slot] = []
        seq.slot, seq.prefilled, seq.cached = best_slot, reuse, reuse
        self._running.append(seq)
        self._take_initial_jump(seq)
        c = self._counters
        c.requests += 1
        c.prompt_tokens += len(prompt)
        c.prompt_tokens_reused += reuse
        if seq.reuses_prefix:
            self._find_shared_prefix(seq)

    def _left_to_evaluate(self, seq: Sequence) -> int:
        """How many prompt tokens a waiting request would evaluate if admitted now: what a free slot
        or the prompt cache holds of its prompt is not evaluated again."""
        prompt = seq.request.prompt
        if not seq.reuses_prefix:
            return len(prompt)
        held = max((_common_prefix(self._cached[slot], prompt) for slot in self._free_slots), default=0)
        if self._prompt_cache is not None:
            held = max(held, self._prompt_cache.longest(prompt)[1])
        return len(prompt) - min(held, len(prompt) - 1)

    def _worth(self, slot: int) -> tuple[bool, int]:
        """How much a free slot's cache is worth keeping, for choosing which one to give away."""
        return bool(self._cached[slot]), self._last_used[slot]

    def _keep_beyond(self, slot: int, keep: int) -> None:
        """The slot is about to drop its cached tokens past `keep`: save them in the prompt cache
        first, unless they are few or already there."""
        cache, tokens = self._prompt_cache, self._cached[slot]
        if cache is None or len(tokens) - keep < MIN_RESTORE or cache.covers(tokens):
            return
        size = ll.llama_state_seq_get_size(self._ctx, slot)
        if size <= 0 or size > cache.limit_bytes:
            return
        state = (ctypes.c_uint8 * size)()
        if ll.llama_state_seq_get_data(self._ctx, state, size, slot) == size:
            cache.put(tokens, state)

    def _restore(self, slot: int, prompt: list[int], reuse: int) -> int:
        """Restore the prompt cache's longest prefix of `prompt` into `slot` when it is worth more
        than the `reuse` tokens the slot keeps anyway; how many prompt tokens the slot now holds."""
        assert self._prompt_cache is not None
        entry, shared = self._prompt_cache.longest(prompt)
        n = min(shared, len(prompt) - 1)
        if entry is None or n < reuse + MIN_RESTORE:
            return reuse
        ll.llama_memory_seq_rm(self._mem, slot, -1, -1)
        if ll.llama_state_seq_set_data(self._ctx, entry.state, entry.size, slot) != entry.size:
            log.warning("restoring %d cached prompt tokens failed; evaluating them", n)
            ll.llama_memory_seq_rm(self._mem, slot, -1, -1)
            return 0
        self._prompt_cache.used(entry)
        self._counters.prompt_tokens_restored += n - reuse
        return n

    def _find_shared_prefix(self, seq: Sequence) -> None:
        """Take a longer prefix of `seq`'s prompt from a running sequence than `seq`'s own slot kept
        (the free slot with the longest one was chosen already): copy it if that sequence has it in
        its cache, else (requests with the same system prompt arriving together) wait until it does.
        The source evaluates the shared prefix first (it is the start of its prompt), and takes the
        prefill budget before the waiting one would have unless its own prompt has more left after
        the prefix (`queueing.py`): waiting for it takes about as long as evaluating the prefix
        again, and evaluates it once."""
        prompt = seq.request.prompt
        want = seq.prefilled + MIN_SHARED_PREFIX
        for other in self._running:
            if other is seq or other.done:
                continue
            n = _reusable(other.request.prompt + other.tokens[: other.decoded], prompt)
            if n >= want:
                seq.source, seq.shared, want = other, n, n + 1
        self._take_shared_prefix(seq)

    def _take_shared_prefix(self, seq: Sequence) -> None:
        """Copy the prefix `seq` waits for once its source has it in the cache. A source that ended
        first left what it had evaluated in its slot: copy that, if it is worth it, and evaluate the
        rest."""
        source = seq.source
        if source is None:
            return
        if source.done:
            seq.source = None
            slot = source.slot
            n = _reusable(self._cached[slot], seq.request.prompt)
            if slot in self._free_slots and n >= seq.prefilled + MIN_SHARED_PREFIX:
                self._copy_prefix(seq, slot, n)
            return
        if source.prefilled + source.decoded >= seq.shared:  # nothing is decoded before the prompt
            seq.source = None
            self._copy_prefix(seq, source.slot, seq.shared)

    def _copy_prefix(self, seq: Sequence, slot: int, n: int) -> None:
        """Make the first `n` tokens of `slot`'s cache the first `n` of `seq`'s."""
        if self.config.shared_kv_cache:  # one pool: the cells get a second owner, nothing is copied
            ll.llama_memory_seq_rm(self._mem, seq.slot, -1, -1)
            ll.llama_memory_seq_cp(self._mem, slot, seq.slot, 0, n)
        else:  # llama.cpp copies across streams only whole, at the next decode, before its batch
            ll.llama_memory_seq_cp(self._mem, slot, seq.slot, -1, -1)
            ll.llama_memory_seq_rm(self._mem, seq.slot, n, -1)
        gained = n - seq.prefilled
        seq.prefilled = n
        seq.cached += gained
        self._counters.prompt_tokens_reused += gained
        self._counters.prompt_tokens_shared += gained

    def _fill_batch(self, running: list[Sequence]) -> list[Sequence]:
        """The next token of every generating sequence, and prompt chunks in the room left.

        Sequences go into the batch in slot order, each one's tokens together. With one KV stream
        per slot, llama.cpp splits a batch into ubatches of sequences whose ids follow each other in
        batch order (`split_equal`), and every ubatch is a full pass over the weights: a batch in
        admission order (slots 3, 0, 5, 1, ...) took up to four passes where one does."""
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

        generating = pending = 0
        for seq in running:
            seq.output_index = -1
            seq.rows = []
            seq.batch_decoded = 0
            seq.decoding = seq.prefilled == len(seq.request.prompt) and len(seq.tokens) > seq.decoded
            generating += seq.decoding
            pending += len(seq.tokens) - seq.decoded  # with what a jump forced before the first token
        budget = min(self._prefill.tokens(generating), self._n_batch - pending)
        chunks: dict[int, int] = {}  # slot -> prompt tokens this step; the fewest left first
        wanting = [s for s in running if not s.decoding and s.source is None and _prompt_left(s) > 0]
        for seq in prefill_order(wanting, _prompt_left):
            if budget <= 0:
                break
            chunks[seq.slot] = take = min(_prompt_left(seq), budget)
            budget -= take
        count_overtaken(wanting, lambda s: s.slot in chunks)

        def add_generated(seq: Sequence) -> None:
            """The sequence's generated tokens not yet in the cache: the last one sampled and those
            a jump appended after it. A row's logits give the next token's: the last row's are
            sampled from, the others' give jumped tokens their logprobs."""
            nonlocal n
            start = len(seq.request.prompt)
            want = seq.request.logprobs is not None
            for i in range(seq.decoded, len(seq.tokens)):
                last = i == len(seq.tokens) - 1
                rowed = want and not last and i + 1 >= seq.emitted
                if last:
                    seq.output_index = n
                elif rowed:
                    seq.rows.append(n)
                add(seq, seq.tokens[i], start + i, last or rowed)
            seq.batch_decoded = len(seq.tokens) - seq.decoded

        for seq in sorted(running, key=_slot_of):
            if seq.decoding:
                add_generated(seq)
                members.append(seq)
                continue
            take = chunks.get(seq.slot, 0)
            if not take:
                continue
            prompt = seq.request.prompt
            forced = bool(seq.tokens)  # a jump before the first token: evaluated with the prompt's end
            for i in range(seq.prefilled, seq.prefilled + take):
                last = i == len(prompt) - 1
                rowed = last and forced and seq.request.logprobs is not None
                if last and not forced:
                    seq.output_index = n
                elif rowed:
                    seq.rows.append(n)
                add(seq, prompt[i], i, (last and not forced) or rowed)
            seq.prefilled += take
            if forced and seq.prefilled == len(prompt):
                add_generated(seq)
            members.append(seq)
        b.n_tokens = n
        return members

    def _decode_failed(self, batch: list[Sequence], rc: int) -> None:
        # Each slot owns `context_size` cells and no sequence may outgrow them, so a failed decode
        # is not a capacity problem of one request: end the requests of this batch, keep serving.
        log.error("llama_decode failed (%d) for a batch of %d sequences", rc, len(batch))
        for seq in batch:
            seq.prefilled = seq.decoded = 0  # what reached the cache is unknown: do not reuse it
            self._finish(seq, "error", f"llama_decode failed ({rc})")

    def _evaluated(self, seq: Sequence) -> None:
        """After a step that evaluated the sequence up to its end: hand over the jumped tokens that
        waited for their logprobs, then sample the next token, unless the limit is reached."""
        request = seq.request
        try:
            for row in seq.rows:
                token = seq.tokens[seq.emitted]
                assert request.logprobs is not None
                self._emit(seq, *logprobs(self.model, self._ctx, row, token, request.logprobs))
        except Exception as exc:
            log.exception("logprobs failed")
            self._finish(seq, "error", f"sampling failed: {exc}")
            return
        while seq.emitted < len(seq.tokens):  # a jump before the first token, without logprobs
            self._emit(seq, None, ())
        if self._at_limit(seq):
            self._finish(seq, "length")
        else:
            self._sample(seq)

    def _emit(self, seq: Sequence, logprob: float | None, top: tuple[TokenLogprob, ...]) -> None:
        """Hand the next generated token not yet handed over to its request."""
        i = seq.emitted
        token = seq.tokens[i]
        cached = seq.cached if i == 0 else 0
        self._outbox.append((seq, Token(token, self.model.piece(token), logprob, top, cached)))
        seq.emitted += 1

    def _at_limit(self, seq: Sequence) -> bool:
        used = len(seq.request.prompt) + len(seq.tokens)
        return len(seq.tokens) >= seq.request.max_tokens or used >= self.config.context_size

    def _room(self, seq: Sequence) -> int:
        """Tokens a jump may still append: the completion's and the context's limits."""
        used = len(seq.request.prompt) + len(seq.tokens)
        return min(seq.request.max_tokens - len(seq.tokens), self.config.context_size - used)

    def _sample(self, seq: Sequence) -> None:
        request = seq.request
        try:
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
        seq.tokens.append(token)
        self._emit(seq, logprob, top)
        if seq.sampler.jumps and not self._at_limit(seq) and self._jump(seq):
            return
        if self._at_limit(seq) and seq.emitted == len(seq.tokens):
            self._finish(seq, "length")

    def _jump(self, seq: Sequence) -> bool:
        """Append the tokens the grammar forces next, to be evaluated together in the next step;
        True when the sequence ended (the grammar allows nothing after them but the end)."""
        try:
            jump = seq.sampler.jump(seq.tokens[-CONTEXT_TOKENS:], self._room(seq))
        except Exception as exc:
            log.exception("jump-forward failed")
            self._finish(seq, "error", f"sampling failed: {exc}")
            return True
        seq.tokens.extend(jump.tokens)
        self._counters.jumped_tokens += len(jump.tokens)
        if seq.request.logprobs is None:
            while seq.emitted < len(seq.tokens):
                self._emit(seq, None, ())
            if jump.end:  # what sampling would pick next is the end: no step for it
                self._finish(seq, "stop")
                return True
        return False

    def _take_initial_jump(self, seq: Sequence) -> None:
        """What the grammar forces before the first token (`<tool_call>`, say), computed when the
        sampler was built, is evaluated together with the prompt's last chunk."""
        # Cut at the limits, the sequence then ends there ("length") without sampling.
        room = min(seq.request.max_tokens, self.config.context_size - len(seq.request.prompt))
        initial = seq.sampler.initial.tokens[: max(0, room)]
        seq.tokens.extend(initial)
        self._counters.jumped_tokens += len(initial)

    def _finish(self, seq: Sequence, reason: FinishReason, message: str | None = None) -> None:
        if not seq.done:
            seq.done = True
            del seq.tokens[seq.emitted :]  # jumped tokens never handed over are not part of the answer
            seq.decoded = min(seq.decoded, seq.emitted)
            finish = Finish(
                reason, len(seq.request.prompt), len(seq.tokens), message, cached_tokens=seq.cached
            )
            self._outbox.append((seq, finish))
        self._release(seq)

    def _release(self, seq: Sequence) -> None:
        seq.done = True
        with self._cv:
            if seq in self._running:
                self._running.remove(seq)
                slot = seq.slot
                self._cached[slot] = seq.request.prompt[: seq.prefilled] + seq.tokens[: seq.decoded]
                if not self._cached[slot]:
                    ll.llama_memory_seq_rm(self._mem, slot, -1, -1)
                self._last_used[slot] = self._counters.decode_steps
                self._free_slots.append(slot)
                self._counters.generated_tokens += len(seq.tokens)
                self._cv.notify_all()
        seq.sampler.close()


def _counts(shared: int, prompt: int, cached: int) -> bool:
    """Whether `shared` tokens in common with a slot's `cached` ones make it the slot to choose for
    a `prompt`: `MIN_SHARED_PREFIX` of them, or all of the prompt but its last token (the same short
    prompt again), or all the slot holds but its last token (a short conversation coming back).
    A stranger shares the chat template's first few tokens, which is none of these."""
    return shared > 0 and shared >= min(MIN_SHARED_PREFIX, prompt - 1, cached - 1)


def _slot_of(seq: Sequence) -> int:
    return seq.slot


def _prompt_left(seq: Sequence) -> int:
    return len(seq.request.prompt) - seq.prefilled


def _reusable(tokens: list[int], prompt: list[int]) -> int:
    """How many of `prompt`'s tokens a cache holding `tokens` can stand in for: their common prefix,
    short of the last prompt token, which is evaluated for its logits."""
    return min(_common_prefix(tokens, prompt), len(prompt) - 1)
