"""The embedded llama.cpp engine with the real SmolLM2 model (no fakes)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import math
import random
import threading
from collections.abc import AsyncIterator

import llama_cpp as ll
import pytest

from aimi.engines.base import Event, Finish, GenerationRequest, Grammar, Sampling, Token
from aimi.engines.llamacpp import LlamaCppEngine
from aimi.engines.llamacpp.embedded import embedded_model_path
from aimi.engines.llamacpp.model import LlamaModel
from aimi.engines.llamacpp.prompt_cache import PromptCache
from aimi.engines.llamacpp.prompt_cache import common_prefix as _common_prefix
from aimi.engines.llamacpp.sampler import Sampler
from aimi.engines.llamacpp.scheduler import Scheduler, SchedulerConfig, Sequence, _counts
from aimi.errors import InvalidRequest, RateLimited
from tests.engines.generations import cancel, run

pytestmark = pytest.mark.anyio


@pytest.fixture
async def engine() -> AsyncIterator[LlamaCppEngine]:
    e = LlamaCppEngine(embedded_model_path(), context_size=512, slots=2, threads=2, max_waiting=1)
    await e.start()
    yield e
    await e.stop()


def request(engine: LlamaCppEngine, text: str, **kwargs: object) -> GenerationRequest:
    prompt = engine.tokenize(
        f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", add_bos=False, special=True
    )
    options: dict[str, object] = {"sampling": Sampling(temperature=0), "max_tokens": 16}
    options.update(kwargs)
    return GenerationRequest(prompt=prompt, **options)  # type: ignore[arg-type]


async def test_the_model_info_comes_from_the_gguf(engine: LlamaCppEngine) -> None:
    assert engine.info.context_length == 512
    assert engine.info.chat_template is not None and "<|im_start|>" in engine.info.chat_template
    assert engine.info.vocab_size == 49152


async def test_generation_stops_at_max_tokens_with_length(engine: LlamaCppEngine) -> None:
    tokens, finish = await run(engine, request(engine, "Tell me a long story.", max_tokens=8))
    assert len(tokens) == 8
    assert (finish.reason, finish.completion_tokens) == ("length", 8)
    assert finish.prompt_tokens > 0


async def test_ignore_eos_keeps_generating_past_the_end_of_turn(engine: LlamaCppEngine) -> None:
    sampling = Sampling(temperature=0, ignore_eos=True)
    tokens, finish = await run(engine, request(engine, "Say OK.", max_tokens=40, sampling=sampling))
    assert len(tokens) == 40 and finish.reason == "length"
    assert not any(t.id in (0, 2) for t in tokens)


async def test_the_same_seed_gives_the_same_tokens(engine: LlamaCppEngine) -> None:
    sampling = Sampling(temperature=1.0, seed=1234)
    first, _ = await run(engine, request(engine, "Invent a word.", sampling=sampling))
    second, _ = await run(engine, request(engine, "Invent a word.", sampling=sampling))
    assert [t.id for t in first] == [t.id for t in second]


async def test_logprobs_are_log_probabilities_with_sorted_alternatives(engine: LlamaCppEngine) -> None:
    tokens, _ = await run(engine, request(engine, "Hi", logprobs=3))
    for token in tokens:
        assert token.logprob is not None and token.logprob <= 0
        assert len(token.top) == 3
        values = [t.logprob for t in token.top]
        assert values == sorted(values, reverse=True)
        assert sum(math.exp(v) for v in values) <= 1.0 + 1e-6
        # greedy sampling picks the most likely token
        assert token.id == token.top[0].token


async def test_concurrent_requests_beyond_the_slots_all_complete(engine: LlamaCppEngine) -> None:
    reqs = [request(engine, f"Count to {n}.", max_tokens=12) for n in range(3)]
    results = await asyncio.gather(*(run(engine, r) for r in reqs))
    assert [finish.reason for _, finish in results] == ["length"] * 3


async def test_a_full_waiting_line_is_refused_with_rate_limited(engine: LlamaCppEngine) -> None:
    long = [
        request(engine, "Write an essay.", max_tokens=200, sampling=Sampling(temperature=0, ignore_eos=True))
        for _ in range(3)
    ]
    streams = [engine.generate(r) for r in long]
    firsts = [asyncio.ensure_future(anext(aiter(s))) for s in streams]  # two run, one waits
    await asyncio.sleep(0.3)
    with pytest.raises(RateLimited):
        await anext(aiter(engine.generate(request(engine, "one more"))))
    for task in firsts:
        task.cancel()
    await asyncio.gather(*firsts, return_exceptions=True)
    for s in streams:
        await s.aclose()  # type: ignore[attr-defined]


async def test_closing_a_generation_frees_its_slot_within_a_step(engine: LlamaCppEngine) -> None:
    endless = Sampling(temperature=0, ignore_eos=True)
    stream = engine.generate(request(engine, "Go on forever.", max_tokens=400, sampling=endless))
    await anext(aiter(stream))
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(50):
        if engine.stats().running == 0:
            break
        await asyncio.sleep(0.02)
    assert (engine.stats().running, engine.stats().waiting) == (0, 0)


async def test_a_request_sharing_a_prompt_prefix_reuses_the_cached_tokens(engine: LlamaCppEngine) -> None:
    first = request(engine, "What is the capital of France? Answer briefly.", max_tokens=4)
    await run(engine, first)
    before = engine.stats()
    await run(engine, first)
    after = engine.stats()
    assert after.prompt_tokens_reused - before.prompt_tokens_reused == len(first.prompt) - 1


async def test_a_seeded_request_evaluates_its_whole_prompt(engine: LlamaCppEngine) -> None:
    seeded = request(engine, "Name a colour.", max_tokens=4, sampling=Sampling(temperature=0.7, seed=7))
    await run(engine, seeded)
    before = engine.stats()
    await run(engine, seeded)
    assert engine.stats().prompt_tokens_reused == before.prompt_tokens_reused


async def test_a_grammar_keeps_the_output_inside_it(engine: LlamaCppEngine) -> None:
    grammar = Grammar('root ::= ("yes" | "no") "."')
    tokens, finish = await run(
        engine,
        request(engine, "Write a poem.", max_tokens=10, grammar=grammar, sampling=Sampling(temperature=1.0)),
    )
    assert b"".join(t.piece for t in tokens) in (b"yes.", b"no.")
    assert finish.reason == "stop"


async def test_a_grammar_llama_cpp_cannot_compile_fails_before_queueing(engine: LlamaCppEngine) -> None:
    with pytest.raises(InvalidRequest):
        await anext(aiter(engine.generate(request(engine, "Hi", grammar=Grammar("root ::= (")))))
    assert engine.stats().requests == 0


async def test_presence_and_frequency_penalties_build_and_sample(engine: LlamaCppEngine) -> None:
    sampling = Sampling(temperature=0, presence_penalty=0.5, frequency_penalty=1.5)
    tokens, finish = await run(
        engine, request(engine, "Repeat the word cat ten times.", max_tokens=12, sampling=sampling)
    )
    assert finish.reason in ("stop", "length") and tokens
    ids = [t.id for t in tokens]
    assert len(set(ids)) > len(ids) // 2  # a strong frequency penalty keeps it from looping on one token


kv_layouts = pytest.mark.parametrize("shared", [True, False], ids=["shared-kv-cache", "kv-cache-per-slot"])


@contextlib.asynccontextmanager
async def started(
    *, context_size: int, slots: int, shared: bool, prompt_cache_bytes: int = 0
) -> AsyncIterator[LlamaCppEngine]:
    e = LlamaCppEngine(
        embedded_model_path(),
        context_size=context_size,
        slots=slots,
        shared_kv_cache=shared,
        threads=2,
        max_waiting=4,
        prompt_cache_bytes=prompt_cache_bytes,
    )
    await e.start()
    try:
        yield e
    finally:
        await e.stop()


@kv_layouts
async def test_slots_filled_to_their_context_round_after_round_never_run_out_of_cache(shared: bool) -> None:
    # Each slot may fill its whole context and keep it cached, whether the slots share one KV pool.
    async with started(context_size=64, slots=2, shared=shared) as small:
        endless = Sampling(temperature=0, ignore_eos=True)
        for round_ in range(3):
            reqs = [
                request(small, f"Tell story {round_}-{n}.", max_tokens=64, sampling=endless) for n in range(2)
            ]
            results = await asyncio.gather(*(run(small, r) for r in reqs))
            for req, (tokens, finish) in zip(reqs, results, strict=True):
                assert finish.reason == "length", finish.message
                assert len(req.prompt) + len(tokens) == 64


def test_a_step_batch_lists_sequences_in_slot_order_whatever_order_they_were_admitted() -> None:
    # With one KV stream per slot, llama.cpp decodes a batch in one pass only when its sequence ids
    # follow each other; admission order would split a step into several passes over the weights.
    model = LlamaModel(embedded_model_path())
    scheduler = Scheduler(model, SchedulerConfig(context_size=256, slots=4, threads=2, max_waiting=1))
    try:
        prompt = model.tokenize("<|im_start|>user\nHi<|im_end|>\n", add_bos=False, special=True)
        sequences = []
        for slot, generated in ((2, [11]), (0, [12]), (3, []), (1, [13])):
            request = GenerationRequest(prompt=prompt, sampling=Sampling(temperature=0), max_tokens=8)
            sampler = Sampler(model, request.sampling, max_tokens=8)
            prefilled = len(prompt) if generated else 0
            seq = Sequence(request, sampler, emit=lambda _: None, slot=slot, prefilled=prefilled)
            seq.tokens = generated
            sequences.append(seq)
        members = scheduler._fill_batch(sequences)
        batch = scheduler._batch
        slots = [batch.seq_id[i][0] for i in range(batch.n_tokens)]
        assert slots == [0, 1, 2] + [3] * len(prompt)
        assert [batch.token[i] for i in range(3)] == [12, 13, 11]
        assert [batch.pos[i] for i in range(3)] == [len(prompt)] * 3
        assert sorted(s.slot for s in members) == [0, 1, 2, 3]
        assert [s.output_index for s in sequences] == [2, 0, 3 + len(prompt) - 1, 1]
        for s in sequences:
            s.sampler.close()
    finally:
        scheduler.close()
        model.close()


def test_a_long_prompt_is_evaluated_in_one_step_when_no_stream_waits_and_in_chunks_beside_one() -> None:
    model = LlamaModel(embedded_model_path())
    config = SchedulerConfig(context_size=1024, slots=2, threads=2, max_waiting=1, prefill_chunk=64)
    scheduler = Scheduler(model, config)
    try:
        short = model.tokenize("<|im_start|>user\nHi<|im_end|>\n", add_bos=False, special=True)
        long = model.tokenize(" ".join(["bread"] * 700), add_bos=False, special=False)
        assert len(long) > 600

        def sequence(prompt: list[int], slot: int, generated: list[int]) -> Sequence:
            request = GenerationRequest(prompt=prompt, sampling=Sampling(temperature=0), max_tokens=8)
            seq = Sequence(request, Sampler(model, request.sampling, max_tokens=8), emit=lambda _: None)
            seq.slot, seq.tokens = slot, generated
            seq.prefilled = len(prompt) if generated else 0
            return seq

        alone = sequence(long, 0, [])
        scheduler._fill_batch([alone])
        assert alone.prefilled == len(long) and scheduler._batch.n_tokens == len(long)

        stream, beside = sequence(short, 0, [11]), sequence(long, 1, [])
        scheduler._fill_batch([stream, beside])
        assert beside.prefilled == 64  # the step costs are not known yet: the fixed chunk
        for s in (alone, stream, beside):
            s.sampler.close()
    finally:
        scheduler.close()
        model.close()


SYSTEM_PROMPT = (
    "You are the support assistant of a small bakery in Lyon. Answer in one short sentence, politely, "
    "and never invent prices, opening hours or ingredients that you were not told about. The bakery "
    "opens at seven, closes at one on Sundays, and bakes sourdough, croissants and brioche every day."
)


def with_system_prompt(engine: LlamaCppEngine, question: str, **kwargs: object) -> GenerationRequest:
    text = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
    prompt = engine.tokenize(text + "<|im_start|>assistant\n", add_bos=False, special=True)
    options: dict[str, object] = {"sampling": Sampling(temperature=0), "max_tokens": 8, **kwargs}
    return GenerationRequest(prompt=prompt, **options)  # type: ignore[arg-type]


@kv_layouts
async def test_requests_arriving_together_with_one_system_prompt_evaluate_it_once(shared: bool) -> None:
    async with started(context_size=512, slots=4, shared=shared) as e:
        questions = ["When do you open?", "Do you sell bread?", "Is there brioche?", "Sunday hours?"]
        reqs = [with_system_prompt(e, q, logprobs=5) for q in questions]
        common = min(_common_prefix(reqs[0].prompt, r.prompt) for r in reqs[1:])
        assert common > 64
        before = e.stats()
        results = await asyncio.gather(*(run(e, r) for r in reqs))
        after = e.stats()
        # One request evaluates the system prompt; the others copy it from a running one's slot
        # (or, had the first one ended before they came, find it cached in its slot).
        assert after.prompt_tokens_reused - before.prompt_tokens_reused == 3 * common
        assert after.prompt_tokens_shared - before.prompt_tokens_shared >= common
        for req, (tokens, _) in zip(reqs, results, strict=True):
            # A seeded request evaluates its whole prompt itself. Batches of other shapes round a
            # little differently (tenths of a nat), a missing or wrong cache changes everything.
            alone, _ = await run(e, dataclasses.replace(req, sampling=Sampling(temperature=0, seed=7)))
            got = {alt.token: alt.logprob for alt in tokens[0].top}
            for alt in alone[0].top[:3]:
                assert abs(got.get(alt.token, -math.inf) - alt.logprob) < 1.0


def test_a_request_waiting_for_a_prefix_takes_what_a_cancelled_source_had_evaluated() -> None:
    model = LlamaModel(embedded_model_path())
    config = SchedulerConfig(
        context_size=512, slots=2, threads=2, max_waiting=2, prefill_chunk=48, prefill_max=48
    )
    scheduler = Scheduler(model, config)  # its thread is not started: the test runs the steps
    try:
        prompts = [
            model.tokenize(
                f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n",
                add_bos=False,
                special=True,
            )
            for q in ("When do you open?", "Do you sell bread?")
        ]
        events: list[Event] = []
        first, second = (
            Sequence(
                request := GenerationRequest(prompt=p, sampling=Sampling(temperature=0), max_tokens=4),
                Sampler(model, request.sampling, max_tokens=4),
                emit=events.append,
            )
            for p in prompts
        )
        assert scheduler.submit(first) and scheduler.submit(second)
        scheduler._step()  # both admitted; the second waits while the first evaluates 48 tokens
        assert second.source is first and first.prefilled == 48 and second.prefilled == 0
        scheduler.cancel(first)
        scheduler._step()  # the first is gone: the second copies its 48 tokens from the free slot
        assert second.source is None
        assert scheduler.stats().prompt_tokens_shared == 48
        while not second.done:
            scheduler._step()
        scheduler._hand_over()
        finish = events[-1]
        assert isinstance(finish, Finish) and finish.reason in ("length", "stop")
        assert sum(isinstance(e, Token) for e in events) >= 1
    finally:
        scheduler.close()
        model.close()


def test_a_stranger_takes_an_empty_slot_and_leaves_a_finished_conversation_s_cache_in_its_own() -> None:
    model = LlamaModel(embedded_model_path())
    config = SchedulerConfig(context_size=512, slots=3, threads=2, max_waiting=2)
    scheduler = Scheduler(model, config)  # its thread is not started: the test runs the steps
    try:

        def answered(text: str) -> Sequence:
            prompt = model.tokenize(
                f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n", add_bos=False, special=True
            )
            request = GenerationRequest(prompt=prompt, sampling=Sampling(temperature=0), max_tokens=4)
            seq = Sequence(request, Sampler(model, request.sampling, max_tokens=4), emit=lambda _: None)
            assert scheduler.submit(seq)
            while not seq.done:
                scheduler._step()
            scheduler._hand_over()
            return seq

        conversation = answered("Tell me about the bakery in Lyon.")
        kept = conversation.slot
        others = [answered(q) for q in ("What is two plus two?", "Name a colour.")]
        # Two slots were empty: the unrelated requests took them, not the conversation's.
        assert {seq.slot for seq in others} == set(range(3)) - {kept}
        back = answered("Tell me about the bakery in Lyon. And its bread?")
        assert back.slot == kept and back.cached > 0
        # Every slot holds a cache now: the least recently used one goes to the next stranger.
        stranger = answered("Why is the sky blue?")
        assert stranger.slot == others[0].slot
    finally:
        scheduler.close()
        model.close()


def test_a_shared_prefix_chooses_the_slot_if_long_or_all_of_the_prompt_or_all_the_slot_holds() -> None:
    assert _counts(32, prompt=400, cached=600)
    assert _counts(19, prompt=20, cached=24)  # the same short prompt again
    assert _counts(24, prompt=60, cached=25)  # a short conversation coming back
    assert not _counts(3, prompt=60, cached=300)  # a stranger: the chat template's first tokens
    assert not _counts(31, prompt=400, cached=600)
    assert not _counts(0, prompt=1, cached=0)


def test_the_common_prefix_of_two_token_lists_is_their_longest_shared_start() -> None:
    rng = random.Random(5)
    for _ in range(500):
        a = [rng.randrange(3) for _ in range(rng.randrange(40))]
        b = a[: rng.randrange(len(a) + 1)] + [rng.randrange(3) for _ in range(rng.randrange(40))]
        shared = min(len(a), len(b))
        expected = next((i for i in range(shared) if a[i] != b[i]), shared)
        assert _common_prefix(a, b) == expected


async def test_stopping_interrupts_running_sequences_after_the_grace_and_fails_queued_ones() -> None:
    e = LlamaCppEngine(embedded_model_path(), context_size=512, slots=1, threads=2, max_waiting=4)
    await e.start()
    try:
        long = request(e, "Count to a thousand.", max_tokens=400, sampling=Sampling(ignore_eos=True))
        running = e.generate(long)
        assert isinstance(await anext(running), Token)
        queued = asyncio.ensure_future(run(e, request(e, "hi")))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(e.stop(grace_s=0.3), 30)
        rest = [event async for event in running]
    finally:
        await e.stop()
    finish = rest[-1]
    assert isinstance(finish, Finish)
    assert (finish.reason, finish.message) == ("interrupted", "the server is shutting down")
    assert finish.completion_tokens == len(rest)  # the first token plus every one after it but Finish
    tokens, queued_finish = await queued
    assert (tokens, queued_finish.reason, queued_finish.completion_tokens) == ([], "error", 0)


def test_closing_leaves_the_context_alone_while_the_engine_thread_is_still_running() -> None:
    model = LlamaModel(embedded_model_path())
    config = SchedulerConfig(context_size=256, slots=1, threads=2, max_waiting=1, join_timeout_s=0.2)
    scheduler = Scheduler(model, config)
    stuck, release = threading.Event(), threading.Event()

    def emit(_event: Event) -> None:  # a consumer that holds the engine thread up
        stuck.set()
        release.wait(30)

    prompt = model.tokenize("<|im_start|>user\nHi<|im_end|>\n", add_bos=False, special=True)
    request = GenerationRequest(prompt=prompt, sampling=Sampling(temperature=0), max_tokens=8)
    scheduler.start()
    try:
        assert scheduler.submit(Sequence(request, Sampler(model, request.sampling, max_tokens=8), emit=emit))
        assert stuck.wait(30)
        assert scheduler.close() is False
        assert scheduler._ctx  # not freed under the running thread
    finally:
        release.set()
        scheduler._thread.join(30)
        assert scheduler.close() is True
        model.close()


def conversation(engine: LlamaCppEngine, user: int, turns: int) -> GenerationRequest:
    """The prompt of one user's conversation after `turns` turns (each user's is different)."""
    text = f"<|im_start|>system\n{SYSTEM_PROMPT} You are talking to customer number {user}.<|im_end|>\n"
    for turn in range(turns):
        text += f"<|im_start|>user\nQuestion {turn} of customer {user} about bread.<|im_end|>\n"
        text += f"<|im_start|>assistant\nAnswer {turn} for customer {user}.<|im_end|>\n"
    prompt = engine.tokenize(text + "<|im_start|>assistant\n", add_bos=False, special=True)
    return GenerationRequest(prompt=prompt, sampling=Sampling(temperature=0), max_tokens=4, logprobs=5)


@kv_layouts
async def test_a_returning_conversation_whose_slot_went_to_others_is_restored_from_the_prompt_cache(
    shared: bool,
) -> None:
    async with started(context_size=512, slots=1, shared=shared, prompt_cache_bytes=64 << 20) as e:
        first = conversation(e, 1, 2)
        await run(e, first)
        await run(e, conversation(e, 2, 2))  # takes the only slot: user 1's cache goes to host memory
        before = e.stats()
        assert before.prompt_cache_entries == 1
        assert before.prompt_cache_bytes > 1000 * len(first.prompt)  # every cell of every layer
        back = conversation(e, 1, 3)  # user 1 returns with a longer history
        tokens, finish = await run(e, back)
        after = e.stats()
        shared_prefix = _common_prefix(first.prompt, back.prompt)
        restored = after.prompt_tokens_restored - before.prompt_tokens_restored
        # The slot kept the system prompt (user 2's began the same way); the rest came from the cache.
        assert restored >= 32
        assert finish.cached_tokens == shared_prefix > 100
        alone, _ = await run(e, dataclasses.replace(back, sampling=Sampling(temperature=0, seed=7)))
        got = {alt.token: alt.logprob for alt in tokens[0].top}
        for alt in alone[0].top[:3]:  # the restored cache answers as evaluating the prompt does
            assert abs(got.get(alt.token, -math.inf) - alt.logprob) < 1.0


@kv_layouts
async def test_a_restored_conversation_cancelled_before_its_answer_leaves_its_slot_consistent(
    shared: bool,
) -> None:
    async with started(context_size=512, slots=1, shared=shared, prompt_cache_bytes=64 << 20) as e:
        scheduler = e._scheduler
        assert scheduler is not None
        await run(e, conversation(e, 1, 2))
        await run(e, conversation(e, 2, 2))  # user 1's cache goes to host memory
        back = conversation(e, 1, 3)
        before = e.stats().prompt_tokens_restored
        stream = e.generate(back)
        first = await anext(stream)  # admitted, restored, its prompt's rest evaluated
        assert isinstance(first, Token)
        await cancel(e, stream)
        assert e.stats().prompt_tokens_restored - before >= 32
        cached = scheduler._cached[0]
        # every cell the slot says it holds is in llama.cpp's cache, and no more
        assert ll.llama_memory_seq_pos_max(scheduler._mem, 0) == len(cached) - 1
        await run(e, conversation(e, 3, 2))  # the slot goes to someone else again
        tokens, finish = await run(e, back)  # and the conversation comes back whole
        assert finish.cached_tokens >= _common_prefix(conversation(e, 1, 2).prompt, back.prompt)
        alone, _ = await run(e, dataclasses.replace(back, sampling=Sampling(temperature=0, seed=7)))
        got = {alt.token: alt.logprob for alt in tokens[0].top}
        for alt in alone[0].top[:3]:  # what was restored answers as evaluating the prompt does
            assert abs(got.get(alt.token, -math.inf) - alt.logprob) < 1.0


async def test_without_a_prompt_cache_a_returning_conversation_is_evaluated_again() -> None:
    async with started(context_size=512, slots=1, shared=False) as e:
        first, other = conversation(e, 1, 2), conversation(e, 2, 2)
        await run(e, first)
        await run(e, other)
        back = conversation(e, 1, 3)
        _, finish = await run(e, back)
        assert e.stats().prompt_tokens_restored == 0
        kept = _common_prefix(other.prompt, back.prompt)  # the system prompt, kept in the slot
        assert finish.cached_tokens == kept < _common_prefix(first.prompt, back.prompt)


def test_the_prompt_cache_evicts_the_least_recently_used_entries_past_its_bound() -> None:
    cache = PromptCache(limit_bytes=3000)
    state = lambda: (ctypes.c_uint8 * 1000)()  # noqa: E731
    a, b, c, d = ([n] * 40 for n in (1, 2, 3, 4))
    for tokens in (a, b, c):
        assert cache.put(tokens, state())
    entry, _ = cache.longest([*a, 9])
    assert entry is not None
    cache.used(entry)  # a is now the most recently used
    cache.put(d, state())
    assert cache.longest(b)[0] is None  # the oldest went
    assert cache.longest(a)[1] == 40 and cache.longest(d)[1] == 40
    assert (cache.stats.entries, cache.stats.bytes, cache.stats.evicted) == (3, 3000, 1)


def test_a_longer_copy_of_a_conversation_replaces_the_shorter_one() -> None:
    cache = PromptCache(limit_bytes=10_000)
    turn = list(range(100, 140))
    cache.put(turn, (ctypes.c_uint8 * 1000)())
    cache.put([*turn, 7, 8, 9], (ctypes.c_uint8 * 1000)())
    assert cache.stats.entries == 1
    assert cache.covers(turn) and cache.covers([*turn, 7, 8, 9])
    assert cache.longest([*turn, 7, 1])[1] == 41


def test_a_prompt_shorter_than_a_block_is_neither_kept_nor_looked_up() -> None:
    cache = PromptCache(limit_bytes=10_000)
    assert not cache.put([1] * 10, (ctypes.c_uint8 * 10)())
    assert cache.longest([1] * 10) == (None, 0)


async def waiting(engine: LlamaCppEngine, n: int) -> None:
    """Wait until `n` requests wait for a slot (the engine thread queues them on submit)."""
    for _ in range(1000):
        if engine.stats().waiting >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{n} requests never waited")


async def test_a_returning_conversation_goes_before_an_older_long_new_prompt_when_slots_are_short() -> None:
    async with started(context_size=1024, slots=1, shared=False, prompt_cache_bytes=64 << 20) as e:
        await run(e, conversation(e, 1, 2))
        holder = e.generate(dataclasses.replace(conversation(e, 2, 2), max_tokens=24))
        assert isinstance(await anext(holder), Token)  # user 2 holds the only slot; user 1 is cached
        new = dataclasses.replace(conversation(e, 3, 12), max_tokens=1)  # a long history, never seen
        back = dataclasses.replace(conversation(e, 1, 3), max_tokens=1)
        order: list[str] = []

        async def answer(name: str, request: GenerationRequest) -> None:
            await run(e, request)
            order.append(name)

        tasks = [asyncio.create_task(answer("new", new))]
        await waiting(e, 1)
        tasks.append(asyncio.create_task(answer("back", back)))
        await waiting(e, 2)
        async for _ in holder:
            pass
        await asyncio.gather(*tasks)
        # user 1 evaluates a few new tokens, the new user its whole history: user 1 goes first
        assert order == ["back", "new"]
