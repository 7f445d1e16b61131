"""Grammar samplers built off the event loop and off the decode loop, on a budget
(`aimi.engines.llamacpp.grammars`), and the bounds a grammar is held to before llama.cpp parses it
(`aimi.engines.llamacpp.sampler`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

from aimi.engines.base import Finish, GenerationRequest, Grammar, Sampling
from aimi.engines.llamacpp import LlamaCppEngine, grammars, sampler
from aimi.engines.llamacpp.embedded import embedded_model_path
from aimi.engines.llamacpp.grammars import GrammarBuilds
from aimi.engines.llamacpp.model import LlamaModel
from aimi.engines.llamacpp.sampler import MAX_GBNF_CHARS, Sampler, check_gbnf
from aimi.errors import InvalidRequest, RateLimited
from aimi.inference.chat import ToolSpec
from aimi.inference.tools import TaggedCalls
from tests.engines.generations import run

pytestmark = pytest.mark.anyio

YES_NO = 'root ::= ("yes" | "no") "."'


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    loaded = LlamaModel(embedded_model_path())
    yield loaded
    loaded.close()


@pytest.fixture
def builds() -> Iterator[GrammarBuilds]:
    started = GrammarBuilds()
    started.start()
    yield started
    started.stop()


def constrained(gbnf: str, prompt: list[int] | None = None, max_tokens: int = 4) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt or [1], sampling=Sampling(temperature=0), max_tokens=max_tokens, grammar=Grammar(gbnf)
    )


class RecordingSampler(Sampler):
    threads: ClassVar[list[str]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        RecordingSampler.threads.append(threading.current_thread().name)
        super().__init__(*args, **kwargs)


# -- the bounds -------------------------------------------------------------------------------


def nested(levels: int) -> str:
    return "root ::= " + '("a" ' * levels + ")" * levels


@pytest.mark.parametrize(
    ("gbnf", "said"),
    [
        (nested(100_000), "nests groups 100,000 deep"),
        ('root ::= "' + "a" * MAX_GBNF_CHARS + '"', "characters long"),
        ('root ::= "a\x00"', "NUL"),
        ('root ::= "\ud800"', "not valid text"),
    ],
    ids=["nested", "long", "nul", "surrogate"],
)
def test_a_grammar_over_a_bound_is_refused_before_llama_cpp_parses_it(gbnf: str, said: str) -> None:
    with pytest.raises(InvalidRequest, match=said):
        check_gbnf(Grammar(gbnf))


def test_parentheses_in_literals_classes_and_comments_are_not_nesting() -> None:
    opaque = '"(((" [(] "\\"(" # ((((('
    assert check_gbnf(Grammar(f"root ::= {opaque * 1000}\n"))


async def test_a_grammar_nested_to_the_limit_builds_on_a_worker_stack(
    model: LlamaModel, builds: GrammarBuilds
) -> None:
    built = await builds.sampler(model, constrained(nested(sampler.MAX_GBNF_NESTING)))
    built.close()


# -- where and on what budget grammars are built ----------------------------------------------


async def test_a_grammar_sampler_is_built_on_a_worker_thread_not_the_event_loop(
    model: LlamaModel, builds: GrammarBuilds, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grammars, "Sampler", RecordingSampler)
    RecordingSampler.threads = []
    built = await builds.sampler(model, constrained(YES_NO))
    built.close()
    assert RecordingSampler.threads and RecordingSampler.threads[0].startswith("aimi-grammar-")


async def test_the_grammars_held_at_once_are_budgeted_and_released_when_closed(model: LlamaModel) -> None:
    builds = GrammarBuilds(held_chars=2 * len(YES_NO))
    builds.start()
    try:
        first = await builds.sampler(model, constrained(YES_NO))
        second = await builds.sampler(model, constrained(YES_NO))
        with pytest.raises(RateLimited):
            await builds.sampler(model, constrained(YES_NO))
        first.close()
        third = await builds.sampler(model, constrained(YES_NO))
        for done in (second, third):
            done.close()
        assert builds.held_chars == 0
    finally:
        builds.stop()


async def test_a_grammar_refused_by_llama_cpp_gives_its_budget_back(
    model: LlamaModel, builds: GrammarBuilds
) -> None:
    with pytest.raises(InvalidRequest):
        await builds.sampler(model, constrained("root ::= ("))
    assert builds.held_chars == 0


async def test_a_build_over_the_time_budget_is_refused(model: LlamaModel) -> None:
    builds = GrammarBuilds(seconds=0.0)
    builds.start()
    try:
        with pytest.raises(InvalidRequest, match="budget"):
            await builds.sampler(model, constrained(YES_NO))
        assert builds.held_chars == 0
    finally:
        builds.stop()


async def test_a_full_waiting_line_of_builds_is_told_to_retry(model: LlamaModel) -> None:
    builds = GrammarBuilds(workers=0, max_queued=1)  # nothing builds: the first one waits
    waiting = asyncio.ensure_future(builds.sampler(model, constrained(YES_NO)))
    await asyncio.sleep(0.05)
    with pytest.raises(RateLimited):
        await builds.sampler(model, constrained(YES_NO))
    waiting.cancel()


async def test_a_sampler_built_for_a_request_that_went_away_is_closed(
    model: LlamaModel, builds: GrammarBuilds, monkeypatch: pytest.MonkeyPatch
) -> None:
    class SlowSampler(Sampler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.3)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(grammars, "Sampler", SlowSampler)
    waiting = asyncio.ensure_future(builds.sampler(model, constrained(YES_NO)))
    await asyncio.sleep(0.05)
    waiting.cancel()
    for _ in range(100):
        await asyncio.sleep(0.05)
        if builds.held_chars == 0:
            break
    assert builds.held_chars == 0


# -- the engine -------------------------------------------------------------------------------


@pytest.fixture
async def engine() -> AsyncIterator[LlamaCppEngine]:
    e = LlamaCppEngine(embedded_model_path(), context_size=512, slots=2, threads=2, max_waiting=4)
    await e.start()
    yield e
    await e.stop()


def prompt(engine: LlamaCppEngine, text: str) -> list[int]:
    chat = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
    return engine.tokenize(chat, add_bos=False, special=True)


async def test_the_engine_builds_grammars_on_its_worker_threads(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(grammars, "Sampler", RecordingSampler)
    RecordingSampler.threads = []
    _, finish = await run(engine, constrained(YES_NO, prompt(engine, "Yes or no?"), max_tokens=8))
    assert finish.reason == "stop"
    assert RecordingSampler.threads and RecordingSampler.threads[0].startswith("aimi-grammar-")


async def test_a_grammar_too_costly_to_match_ends_its_sequence_and_the_engine_goes_on() -> None:
    engine = LlamaCppEngine(
        embedded_model_path(), context_size=512, slots=2, threads=2, max_waiting=4, grammar_step_s=0.0
    )
    await engine.start()
    try:
        tokens, finish = await run(engine, constrained(YES_NO, prompt(engine, "Yes or no?"), max_tokens=8))
        assert (finish.reason, tokens) == ("error", [])
        assert finish.message and "Matching the output constraint" in finish.message
        _, after = await run(engine, GenerationRequest(prompt(engine, "Hi"), Sampling(temperature=0), 4))
        assert isinstance(after, Finish) and after.reason in ("stop", "length")
    finally:
        await engine.stop()


# -- a lazy grammar's trigger -----------------------------------------------------------------


def test_a_token_that_completes_the_trigger_and_goes_on_past_it_is_not_drawn(model: LlamaModel) -> None:
    # llama.cpp replays `<tool_call>.` through the grammar when `>.` completes the trigger, and
    # aborts the process on the `.`: the pick must be `>` alone, and the grammar then holds.
    grammar = TaggedCalls().grammar([ToolSpec("f")], parallel=True, lazy=True)
    lazy = Sampler(model, Sampling(temperature=0), max_tokens=16, grammar=grammar)
    tokens = model.tokenize("Sure <tool_call>.", add_bos=False, special=False)
    assert [model.piece(t) for t in tokens][-2:] == [b"call", b">."]
    (closing,) = model.tokenize(">", add_bos=False, special=False)
    (bracket,) = model.tokenize("[", add_bos=False, special=False)

    def favouring(*ranked: int) -> np.ndarray:
        row = np.full(model.n_vocab, -10.0, dtype=np.float32)
        for rank, token in enumerate(ranked):
            row[token] = 10.0 - rank
        return row

    try:
        picks = [lazy.pick(favouring(t, closing)) for t in tokens]
        assert picks == [*tokens[:-1], closing]
        assert lazy.pick(favouring(tokens[-1], bracket)) == bracket  # `.` after the trigger: refused
    finally:
        lazy.close()
