"""Jump-forward (`aimi.engines.llamacpp.jump`): the text a grammar forces, found character by
character, tokenized canonically, and appended in one decode step, with the real SmolLM2 model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonschema
import llama_cpp as ll
import numpy as np
import pytest

from aimi.engines.base import Finish, GenerationRequest, Grammar, Sampling, Token
from aimi.engines.llamacpp import LlamaCppEngine
from aimi.engines.llamacpp.embedded import embedded_model_path
from aimi.engines.llamacpp.jump import Allowed, Prober, byte_tokens, canonical_tokens, forced_text
from aimi.engines.llamacpp.model import LlamaModel
from aimi.engines.llamacpp.sampler import Sampler, _grammar_sampler
from aimi.inference.chat import Message, ToolSpec
from aimi.inference.prompts import ChatTemplateRenderer
from aimi.inference.schemas import schema_to_gbnf
from aimi.inference.tools import TaggedCalls
from tests.engines.generations import cancel, run

pytestmark = pytest.mark.anyio

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "employed": {"type": "boolean"},
        "role": {"enum": ["engineer", "teacher", "doctor"]},
    },
    "required": ["name", "age", "city", "employed", "role"],
}
FLIGHT = ToolSpec(
    "get_flight_info",
    "Returns the next flight between two cities.",
    {
        "type": "object",
        "properties": {"origin_city": {"type": "string"}, "destination_city": {"type": "string"}},
        "required": ["origin_city", "destination_city"],
    },
)


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    loaded = LlamaModel(embedded_model_path())
    yield loaded
    loaded.close()


@pytest.fixture
def person_grammar(model: LlamaModel) -> Iterator[Any]:
    grammar = _grammar_sampler(model, Grammar(schema_to_gbnf(PERSON)))
    yield grammar
    ll.llama_sampler_free(grammar)


def tokens(model: LlamaModel, text: str) -> list[int]:
    return model.tokenize(text, add_bos=False, special=False)


def accept(grammar: Any, ids: list[int]) -> None:
    for token in ids:
        ll.llama_sampler_accept(grammar, token)


# -- finding the forced text ------------------------------------------------------------------


def test_every_byte_a_smollm2_token_starts_with_has_a_single_byte_token(model: LlamaModel) -> None:
    table = byte_tokens(model)
    assert table.complete
    assert {model.piece(int(t)) for t in table.ids} == {bytes([b]) for b in table.values}


def test_after_an_opening_quote_a_schema_forces_the_key_and_its_closing_quote(
    model: LlamaModel, person_grammar: Any
) -> None:
    prober = Prober(model, byte_tokens(model))
    accept(person_grammar, tokens(model, '{"'))
    forced, after = forced_text(prober, person_grammar)
    assert forced == b'name"'
    assert set(after.values) == set(b" :") and after.forced is None


def test_where_the_grammar_allows_two_characters_nothing_is_forced(
    model: LlamaModel, person_grammar: Any
) -> None:
    prober = Prober(model, byte_tokens(model))
    accept(person_grammar, tokens(model, "{"))  # then a space or the key's quote
    forced, after = forced_text(prober, person_grammar)
    assert forced == b""
    assert after.values == b' "'


def test_finding_the_forced_text_leaves_the_grammar_where_it_was(
    model: LlamaModel, person_grammar: Any
) -> None:
    prober = Prober(model, byte_tokens(model))
    accept(person_grammar, tokens(model, '{"'))
    before = prober.allowed(person_grammar)
    forced_text(prober, person_grammar)
    assert prober.allowed(person_grammar) == before == Allowed(b"n", end=False)


def test_a_complete_grammar_allows_only_the_end(model: LlamaModel) -> None:
    grammar = _grammar_sampler(model, Grammar('root ::= "ok"'))
    try:
        prober = Prober(model, byte_tokens(model))
        assert forced_text(prober, grammar) == (b"ok", Allowed(b"", end=True))
    finally:
        ll.llama_sampler_free(grammar)


# -- canonical tokens ---------------------------------------------------------------------------


def test_the_forced_text_is_tokenized_as_the_tokenizer_would_and_its_seam_is_left_to_the_model(
    model: LlamaModel,
) -> None:
    # `{"name": ...` is `{"` `name` `":` ...: the closing quote joins the colon, so it is held back
    context = tokens(model, '{"')
    appended = canonical_tokens(model, context, b'name"', Allowed(b" :", end=False))
    assert appended == tokens(model, "name")
    assert tokens(model, '{"name":')[: len(context) + 1] == context + appended


def test_nothing_is_appended_where_the_last_token_would_merge_with_the_forced_text(model: LlamaModel) -> None:
    # after `{` the tokenizer writes `{"` as one token: appending `"` ... would not be canonical
    assert canonical_tokens(model, tokens(model, "{"), b'"name"', Allowed(b" :", end=False)) == []


def test_a_forced_run_that_ends_inside_a_character_is_cut_back_to_the_last_whole_one(
    model: LlamaModel,
) -> None:
    appended = canonical_tokens(
        model, tokens(model, ' "'), "caf\u00e9".encode()[:-1], Allowed(b"\xa9", end=False)
    )
    assert b"".join(model.piece(t) for t in appended) in (b"", b"c", b"ca", b"caf")


def test_a_jump_accepts_its_tokens_into_the_grammar_and_says_when_only_the_end_is_left(
    model: LlamaModel,
) -> None:
    sampler = Sampler(
        model,
        Sampling(temperature=0),
        max_tokens=32,
        grammar=Grammar('root ::= [ab] " = " [0-9] " done."'),
        jump_forward=True,
    )
    try:
        assert sampler.initial.tokens == ()  # `a` or `b`: no choice is made for the model
        accept(sampler.grammar, tokens(model, "a"))
        jump = sampler.jump(tokens(model, "a"), room=32)
        # what the tokenizer writes for `a = 7` before the digit (SmolLM2 splits digits off)
        assert list(jump.tokens) == tokens(model, "a = 7")[1:-1]
        assert not jump.end
        accept(sampler.grammar, tokens(model, "7"))
        last = sampler.jump(tokens(model, "a = 7"), room=32)
        assert b"".join(model.piece(t) for t in last.tokens) == b" done."
        assert last.end
    finally:
        sampler.close()


def test_a_jump_appends_no_more_than_the_room_it_is_given(model: LlamaModel) -> None:
    sampler = Sampler(
        model,
        Sampling(temperature=0),
        max_tokens=2,
        grammar=Grammar('root ::= "The quick brown fox jumps over the lazy dog."'),
        jump_forward=True,
    )
    try:
        assert len(sampler.initial.tokens) == 2
    finally:
        sampler.close()


def test_without_jump_forward_a_sampler_never_jumps(model: LlamaModel) -> None:
    sampler = Sampler(model, Sampling(temperature=0), max_tokens=8, grammar=Grammar('root ::= "yes"'))
    try:
        assert not sampler.jumps
        assert sampler.initial.tokens == ()
    finally:
        sampler.close()


# -- the engine, with the real model -----------------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def engines() -> AsyncIterator[dict[bool, LlamaCppEngine]]:
    started = {
        jump: LlamaCppEngine(embedded_model_path(), context_size=1024, slots=2, threads=2, jump_forward=jump)
        for jump in (True, False)
    }
    for engine in started.values():
        await engine.start()
    yield started
    for engine in started.values():
        await engine.stop()


def renderer(engine: LlamaCppEngine) -> ChatTemplateRenderer:
    return ChatTemplateRenderer(engine.info.chat_template or "", engine.info, engine.tokenize)


def person_request(engine: LlamaCppEngine, **kwargs: Any) -> GenerationRequest:
    ask = (
        Message("system", "You reply only with JSON."),
        Message("user", "Describe a fictional person: name, age, city, whether employed, role."),
    )
    options: dict[str, Any] = {"sampling": Sampling(temperature=0), "max_tokens": 120}
    options.update(kwargs)
    return GenerationRequest(
        prompt=renderer(engine).render(ask), grammar=Grammar(schema_to_gbnf(PERSON)), **options
    )


def call_request(engine: LlamaCppEngine, *, lazy: bool = False, **kwargs: Any) -> GenerationRequest:
    ask = (Message("user", "When is the next flight from Miami to Seattle?"),)
    options: dict[str, Any] = {"sampling": Sampling(temperature=0), "max_tokens": 80}
    options.update(kwargs)
    grammar = TaggedCalls().grammar((FLIGHT,), parallel=True, lazy=lazy)
    return GenerationRequest(prompt=renderer(engine).render(ask, (FLIGHT,)), grammar=grammar, **options)


def calls_of(text: str) -> list[tuple[str, Any]]:
    """The calls written in `text` (name and arguments; ids are made up anew each time)."""
    calls = TaggedCalls().parse(text) or []
    return [(c.name, json.loads(c.arguments)) for c in calls]


async def answer(
    engine: LlamaCppEngine, request: GenerationRequest
) -> tuple[str, list[Token], Finish, int, int]:
    """The text, tokens and finish of one generation, the decode steps it took, the tokens jumped."""
    before = engine.stats()
    got, finish = await run(engine, request)
    after = engine.stats()
    text = b"".join(t.piece for t in got).decode()
    return (
        text,
        got,
        finish,
        after.decode_steps - before.decode_steps,
        after.jumped_tokens - before.jumped_tokens,
    )


async def test_a_schema_constrained_answer_is_valid_and_means_the_same_with_fewer_steps(
    engines: dict[bool, LlamaCppEngine],
) -> None:
    text, got, finish, steps, jumped = await answer(engines[True], person_request(engines[True]))
    plain, _, plain_finish, plain_steps, plain_jumped = await answer(
        engines[False], person_request(engines[False])
    )
    assert finish.reason == plain_finish.reason == "stop"
    jsonschema.validate(json.loads(text), PERSON)
    assert json.loads(text) == json.loads(plain)
    assert plain_jumped == 0 and jumped > 0
    assert steps <= plain_steps - jumped
    assert finish.completion_tokens == len(got)  # jumped tokens count as completion tokens


async def test_a_tool_call_is_the_same_call_in_about_half_the_steps(
    engines: dict[bool, LlamaCppEngine],
) -> None:
    text, got, finish, steps, jumped = await answer(engines[True], call_request(engines[True]))
    plain, _, _, plain_steps, _ = await answer(engines[False], call_request(engines[False]))
    assert calls_of(text) == calls_of(plain)
    assert calls_of(text)[0][0] == "get_flight_info"
    assert text.startswith("<tool_call>")
    assert jumped >= 10  # `<tool_call>`, the keys, the function's name
    assert steps < plain_steps * 0.7
    assert finish.completion_tokens == len(got)


async def test_a_lazy_tool_grammar_appends_nothing_while_it_waits_for_its_trigger(
    engines: dict[bool, LlamaCppEngine],
) -> None:
    text, _, _, _, jumped = await answer(engines[True], call_request(engines[True], lazy=True))
    plain, _, _, _, _ = await answer(engines[False], call_request(engines[False], lazy=True))
    assert "<tool_call>" not in text  # SmolLM2 answers in prose when the call is its choice
    assert text == plain
    assert jumped == 0


def test_a_lazy_tool_grammar_jumps_once_the_call_is_opened(model: LlamaModel) -> None:
    grammar = TaggedCalls().grammar((FLIGHT,), parallel=True, lazy=True)
    sampler = Sampler(model, Sampling(temperature=0), max_tokens=64, grammar=grammar, jump_forward=True)
    written: list[int] = []
    try:
        assert sampler.initial.tokens == () and not sampler.jumps
        for token in tokens(model, "<tool_call>") + tokens(model, '[{"'):
            logits = np.zeros(model.n_vocab, dtype=np.float32)
            logits[token] = 10.0  # the model's pick
            written.append(sampler.pick(logits))
        assert b"".join(model.piece(t) for t in written) == b'<tool_call>[{"'
        assert sampler.jumps
        jump = sampler.jump(written, room=64)
        assert list(jump.tokens) == tokens(model, "name")
    finally:
        sampler.close()


@pytest.mark.parametrize("max_tokens", [1, 3, 6, 9])
async def test_a_jump_never_takes_the_answer_past_max_tokens(
    engines: dict[bool, LlamaCppEngine], max_tokens: int
) -> None:
    engine = engines[True]
    full, _, _, _, _ = await answer(engine, call_request(engine))
    text, got, finish, _, _ = await answer(engine, call_request(engine, max_tokens=max_tokens))
    assert finish.reason == "length"
    assert len(got) == finish.completion_tokens == max_tokens
    assert full.startswith(text)


async def test_jumped_tokens_carry_the_models_own_logprobs(engines: dict[bool, LlamaCppEngine]) -> None:
    _, got, _, _, jumped = await answer(engines[True], call_request(engines[True], logprobs=2))
    _, plain, _, _, _ = await answer(engines[False], call_request(engines[False], logprobs=2))
    assert jumped > 0
    assert [t.id for t in got] == [t.id for t in plain]
    for a, b in zip(got, plain, strict=True):
        assert a.logprob is not None and b.logprob is not None
        assert a.logprob == pytest.approx(b.logprob, abs=0.05)
        assert len(a.top) == 2


async def test_a_seeded_sampled_answer_with_jump_forward_is_the_same_twice(
    engines: dict[bool, LlamaCppEngine],
) -> None:
    engine = engines[True]
    seeded = Sampling(temperature=0.8, seed=11)
    first, _, _, _, _ = await answer(engine, person_request(engine, sampling=seeded))
    second, _, _, _, _ = await answer(engine, person_request(engine, sampling=seeded))
    assert first == second
    jsonschema.validate(json.loads(first), PERSON)


async def test_cancelling_between_jumps_frees_the_slot_and_keeps_only_evaluated_cells(
    engines: dict[bool, LlamaCppEngine],
) -> None:
    engine = engines[True]
    scheduler = engine._scheduler
    assert scheduler is not None
    request = call_request(engine)
    stream = engine.generate(request)
    seen: list[Token] = []
    async for event in stream:
        assert isinstance(event, Token)
        seen.append(event)
        if len(seen) >= 8:  # inside the call, past the initial jump
            break
    await cancel(engine, stream)
    for slot in range(scheduler.config.slots):
        cached = scheduler._cached[slot]
        # every cell the slot says it holds is in llama.cpp's cache, and no more
        assert ll.llama_memory_seq_pos_max(scheduler._mem, slot) == len(cached) - 1
    again, _, finish, _, _ = await answer(engine, request)
    assert finish.reason == "stop" and again.startswith(b"".join(t.piece for t in seen).decode())


async def test_a_finished_jumped_answer_leaves_one_cell_per_token_it_evaluated(
    engines: dict[bool, LlamaCppEngine],
) -> None:
    engine = engines[True]
    scheduler = engine._scheduler
    assert scheduler is not None
    request = call_request(engine)
    _, got, _, _, jumped = await answer(engine, request)
    assert jumped > 0
    slot = next(
        s
        for s in range(scheduler.config.slots)
        if scheduler._cached[s][: len(request.prompt)] == request.prompt
    )
    cached = scheduler._cached[slot]
    assert cached[len(request.prompt) :] == [t.id for t in got][: len(cached) - len(request.prompt)]
    assert ll.llama_memory_seq_pos_max(scheduler._mem, slot) == len(cached) - 1
