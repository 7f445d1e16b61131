"""The Mistral prompt and tool-call format, checked token by token on a tiny random-weight Mistral.

The model (`tests/fixtures/tiny_mistral.py`) has Mistral 7B v0.3's architecture and mistral-common's
v3 vocabulary, so aimi picks mistral-common to render its prompts and reads calls after the
`[TOOL_CALLS]` control token. Its weights are random, so its text is gibberish: whatever it says, a
constrained answer must still be a valid call (or valid JSON), and a cut-off one must not pass for one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest

from aimi.engines.base import (
    EngineStats,
    Finish,
    FinishReason,
    GenerationRequest,
    ModelInfo,
    Sampling,
    Token,
    ToolCall,
)
from aimi.engines.llamacpp import LlamaCppEngine
from aimi.engines.llamacpp.model import LlamaModel
from aimi.errors import InvalidRequest
from aimi.inference.chat import (
    ChatRequest,
    ChatResult,
    Delta,
    Done,
    Message,
    ResponseFormat,
    ToolChoice,
    ToolSpec,
)
from aimi.inference.pipeline import ChatService
from aimi.inference.prompts import MistralCommonRenderer, renderer_for
from aimi.inference.tools import MistralCalls, mistral_call_id
from tests.conftest import Server, start_server, stop_server
from tests.fixtures.tiny_mistral import NAME

pytestmark = pytest.mark.anyio

BOS, EOS, INST, END_INST = 1, 2, 3, 4
TOOL_CALLS, AVAILABLE_TOOLS, END_AVAILABLE_TOOLS, TOOL_RESULTS, END_TOOL_RESULTS = 5, 6, 7, 8, 9
CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")
CONTEXT = 2048
THREADS = min(4, os.cpu_count() or 1)

# Tools whose arguments are bounded (enums, lengths, patterns, item counts), so that even gibberish
# weights finish a call well inside max_tokens; and one without parameters.
TOOLS_OPENAI: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 12},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "book_flight",
            "description": "Book a flight",
            "parameters": {
                "type": "object",
                "properties": {
                    "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    "passengers": {"type": "integer"},
                    "refundable": {"type": "boolean"},
                    "seats": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["aisle", "window"]},
                        "maxItems": 2,
                    },
                    "note": {"type": "string", "maxLength": 8},
                },
                "required": ["origin", "destination", "passengers", "refundable", "seats"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "description": "The time now"}},
]
TOOLS = tuple(
    ToolSpec(t["function"]["name"], t["function"]["description"], t["function"].get("parameters"))
    for t in TOOLS_OPENAI
)
TOOL_BY_NAME = {t.name: t for t in TOOLS}
# For the rendering tests: the same, with get_time's (empty) parameters spelled out.
RENDER_TOOLS_OPENAI: list[Any] = [
    *TOOLS_OPENAI[:2],
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The time now",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]
RENDER_TOOLS = tuple(
    ToolSpec(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
    for t in RENDER_TOOLS_OPENAI
)  # fmt: skip

SAMPLINGS = [
    Sampling(temperature=0.0),
    Sampling(temperature=0.7, seed=1),
    Sampling(temperature=1.0, seed=2),
    Sampling(temperature=1.0, top_p=0.9, seed=3),
]
SAMPLING_IDS = ["greedy", "t0.7-s1", "t1.0-s2", "t1.0-p0.9-s3"]


@cache
def v3() -> Any:
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.v3()


def mistral_common_tokens(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """What mistral-common itself makes of an OpenAI-style conversation."""
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    request = ChatCompletionRequest.from_openai(messages=messages, tools=tools)
    return list(v3().encode_chat_completion(request).tokens)


def text_of(model: LlamaModel, tokens: Sequence[int]) -> str:
    """The tokens' text, control tokens spelled out, from the GGUF's own pieces."""
    return b"".join(model.piece(t, special=True) for t in tokens).decode()


def ask(*messages: Message, **kwargs: Any) -> ChatRequest:
    return ChatRequest(messages=messages or (Message("user", "Weather in Paris?"),), **kwargs)


async def events_of(service: ChatService, request: ChatRequest) -> list[Delta | Done]:
    """Every event of one answer, as the streaming API sees them."""
    answer = await service.open(request)
    return [event async for event in answer.events]


def prompt_of(service: ChatService, request: ChatRequest) -> list[int]:
    """The prompt token ids a token engine would be given for `request`."""
    prepared = service.prepare(request)
    assert isinstance(prepared, GenerationRequest)
    return prepared.prompt


def assert_valid_calls(result: ChatResult, offered: Sequence[ToolSpec]) -> None:
    """finish_reason tool_calls, and every call an offered tool with arguments valid for it."""
    assert result.finish_reason == "tool_calls", (result.finish_reason, result.text)
    assert result.tool_calls
    names = {t.name: t for t in offered}
    for call in result.tool_calls:
        assert CALL_ID.fullmatch(call.id), call.id
        assert call.name in names, call.name
        arguments = json.loads(call.arguments)
        jsonschema.validate(arguments, names[call.name].schema)
    assert len({c.id for c in result.tool_calls}) == len(result.tool_calls)


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_mistral_gguf: Path) -> Iterator[LlamaModel]:
    model = LlamaModel(tiny_mistral_gguf)
    yield model
    model.close()


@pytest.fixture
async def tiny_engine(tiny_mistral_gguf: Path) -> AsyncIterator[LlamaCppEngine]:
    engine = LlamaCppEngine(tiny_mistral_gguf, context_size=CONTEXT, slots=2, threads=THREADS)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


@pytest.fixture
def tiny(tiny_engine: LlamaCppEngine) -> ChatService:
    """The chat service as `aimi serve` builds it for the tiny model."""
    return ChatService(engine=tiny_engine, renderer=renderer_for(tiny_engine.info, tiny_engine.tokenize))


@pytest.fixture
async def eager(eager_tiny_mistral_gguf: Path) -> AsyncIterator[ChatService]:
    engine = LlamaCppEngine(eager_tiny_mistral_gguf, context_size=CONTEXT, slots=2, threads=THREADS)
    await engine.start()
    try:
        yield ChatService(engine=engine, renderer=renderer_for(engine.info, engine.tokenize))
    finally:
        await engine.stop()


class ReplayEngine:
    """Emits fixed token ids, with the tiny model's own pieces: what a model that generated exactly
    these tokens would hand the pipeline."""

    port: Literal["token"] = "token"

    def __init__(self, model: LlamaModel, tokens: Sequence[int]) -> None:
        self.model = model
        self.tokens = list(tokens)
        self.requests: list[GenerationRequest] = []

    @property
    def info(self) -> ModelInfo:
        return self.model.info(context_length=CONTEXT)

    async def start(self) -> None:
        pass

    async def stop(self, grace_s: float = 0.0) -> None:
        pass

    def stats(self) -> EngineStats:
        return EngineStats(slots=1, requests=len(self.requests))

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self.model.tokenize(text, add_bos=add_bos, special=special)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Token | Finish]:
        self.requests.append(request)
        emitted = self.tokens[: request.max_tokens]
        for token in emitted:
            yield Token(token, self.model.piece(token))
        reason: FinishReason = "length" if len(self.tokens) > request.max_tokens else "stop"
        yield Finish(reason, len(request.prompt), len(emitted))


def replay(model: LlamaModel, tokens: Sequence[int]) -> ChatService:
    engine = ReplayEngine(model, tokens)
    return ChatService(engine=engine, renderer=renderer_for(engine.info, engine.tokenize))


# -- the model and its vocabulary ----------------------------------------------------------------


async def test_llama_cpp_loads_the_tiny_model_as_a_mistral_v3_model(tiny_engine: LlamaCppEngine) -> None:
    info = tiny_engine.info
    assert info.name == NAME
    assert info.vocab_size == 32768
    assert info.context_length == CONTEXT
    assert (info.bos_token, info.eos_token, info.add_bos) == ("<s>", "</s>", True)
    assert info.metadata["general.architecture"] == "llama"
    assert info.metadata["tokenizer.ggml.model"] == "llama"

    renderer = renderer_for(info, tiny_engine.tokenize)
    assert isinstance(renderer, MistralCommonRenderer)
    assert isinstance(renderer.tool_format, MistralCalls)
    assert renderer.tool_format.token == TOOL_CALLS


@pytest.mark.parametrize(
    ("text", "token"),
    [("[INST]", INST), ("[/INST]", END_INST), ("[TOOL_CALLS]", TOOL_CALLS),
     ("[AVAILABLE_TOOLS]", AVAILABLE_TOOLS), ("[/AVAILABLE_TOOLS]", END_AVAILABLE_TOOLS),
     ("[TOOL_RESULTS]", TOOL_RESULTS), ("[/TOOL_RESULTS]", END_TOOL_RESULTS)],
)  # fmt: skip
def test_the_control_tokens_are_special_in_the_gguf_and_only_parsed_as_such_on_request(
    tiny_model: LlamaModel, text: str, token: int
) -> None:
    assert v3().instruct_tokenizer.tokenizer.get_special_token(text) == token
    assert tiny_model.tokenize(text, add_bos=False, special=True) == [token]
    assert token not in tiny_model.tokenize(text, add_bos=False, special=False)  # user text stays text
    assert tiny_model.piece(token, special=True).decode() == text
    assert tiny_model.piece(token) == b""  # not shown in generated text


@pytest.mark.parametrize(
    "text",
    [
        "Hello world!",
        "What's the weather like in Paris today?",
        '[{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}]',
        "Привет, 世界! Ünïcödé façade — naïve café 🙂🚀",
        "def f(x):\n    return x ** 2  # squared\n\n\nprint(f(3))",
        "tabs\tand  double  spaces, 1234567890 3.14159 -42",
        "[INST] not a control token [/INST] [TOOL_CALLS]",
    ],
)
def test_the_gguf_vocabulary_tokenizes_text_exactly_as_mistral_common(
    tiny_model: LlamaModel, text: str
) -> None:
    raw = v3().instruct_tokenizer.tokenizer
    assert tiny_model.tokenize(text, add_bos=False, special=False) == raw.encode(text, bos=False, eos=False)


# -- rendering, token by token -------------------------------------------------------------------


async def test_system_and_user_render_exactly_as_mistral_common(
    tiny: ChatService, tiny_model: LlamaModel
) -> None:
    request = ask(Message("system", "You are terse."), Message("user", "Hi there"))
    prompt = prompt_of(tiny, request)
    expected = mistral_common_tokens(
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"}]
    )
    assert prompt == expected
    assert prompt[:2] == [BOS, INST]
    assert prompt[-1] == END_INST
    assert not {TOOL_CALLS, AVAILABLE_TOOLS, TOOL_RESULTS} & set(prompt)
    assert text_of(tiny_model, prompt) == "<s>[INST] You are terse.\n\nHi there[/INST]"


async def test_tools_render_exactly_as_mistral_common_before_the_last_user_turn(
    tiny: ChatService, tiny_model: LlamaModel
) -> None:
    messages = (
        Message("system", "Be helpful."),
        Message("user", "Hi"),
        Message("assistant", "Hello! How can I help?"),
        Message("user", "Weather in Paris?"),
    )
    prompt = prompt_of(tiny, ask(*messages, tools=RENDER_TOOLS))
    expected = mistral_common_tokens(
        [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello! How can I help?"},
         {"role": "user", "content": "Weather in Paris?"}],
        RENDER_TOOLS_OPENAI,
    )  # fmt: skip
    assert prompt == expected
    assert prompt.count(AVAILABLE_TOOLS) == 1 and prompt.count(END_AVAILABLE_TOOLS) == 1
    last_inst = len(prompt) - 1 - prompt[::-1].index(INST)
    assert prompt[last_inst - 1] == END_AVAILABLE_TOOLS  # the tools come right before the last [INST]
    start = prompt.index(AVAILABLE_TOOLS)
    assert prompt[start - 1] == EOS  # ...after the first exchange
    listed = json.loads(text_of(tiny_model, prompt[start + 1 : last_inst - 1]))
    assert [t["function"]["name"] for t in listed] == [t.name for t in RENDER_TOOLS]
    assert prompt[-1] == END_INST


async def test_tool_choice_none_leaves_the_tools_out_of_the_prompt(tiny: ChatService) -> None:
    prompt = prompt_of(tiny, ask(tools=TOOLS, tool_choice=ToolChoice("none")))
    assert AVAILABLE_TOOLS not in prompt
    assert prompt == mistral_common_tokens([{"role": "user", "content": "Weather in Paris?"}])


def _tool_history(
    first: str, second: str, *, mapped: bool
) -> tuple[tuple[Message, ...], list[dict[str, Any]]]:
    """A turn with two calls and their two results; as aimi's messages and as the OpenAI-style
    messages mistral-common is given (ids mapped to Mistral's 9 alphanumerics where `mapped`)."""
    weather_args = '{"city": "Paris", "unit": "celsius"}'
    aimi = (
        Message("system", "You are a travel agent."),
        Message("user", "Weather in Paris, and the time?"),
        Message(
            "assistant",
            None,
            tool_calls=(ToolCall(first, "get_weather", weather_args), ToolCall(second, "get_time", "{}")),
        ),
        Message("tool", '{"temperature": 21}', tool_call_id=first, name="get_weather"),
        Message("tool", "12:30", tool_call_id=second, name="get_time"),
    )
    a, b = (mistral_call_id(first), mistral_call_id(second)) if mapped else (first, second)
    wire: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": "Weather in Paris, and the time?"},
        {"role": "assistant", "tool_calls": [
            {"id": a, "type": "function", "function": {"name": "get_weather", "arguments": weather_args}},
            {"id": b, "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": a, "name": "get_weather", "content": '{"temperature": 21}'},
        {"role": "tool", "tool_call_id": b, "name": "get_time", "content": "12:30"},
    ]  # fmt: skip
    return aimi, wire


@pytest.mark.parametrize(
    ("first", "second"),
    [("abcDEF123", "XYZ987uvw"), ("call_abc123", "call_Zx9_long-id-from-elsewhere"), ("abcDEF123", "call_1")],
    ids=["mistral-ids", "foreign-ids", "mixed-ids"],
)
async def test_a_past_call_and_its_results_render_exactly_as_mistral_common(
    tiny: ChatService, tiny_model: LlamaModel, first: str, second: str
) -> None:
    messages, wire = _tool_history(first, second, mapped=True)
    prompt = prompt_of(tiny, ask(*messages, tools=RENDER_TOOLS))
    assert prompt == mistral_common_tokens(wire, RENDER_TOOLS_OPENAI)

    # [AVAILABLE_TOOLS] before the (only, so last) [INST]; the call right after [/INST], closed by
    # </s>; then one [TOOL_RESULTS]...[/TOOL_RESULTS] per result, the prompt ending with the last.
    assert prompt[1] == AVAILABLE_TOOLS
    assert prompt[prompt.index(END_AVAILABLE_TOOLS) + 1] == INST
    call_at = prompt.index(TOOL_CALLS)
    assert prompt[call_at - 1] == END_INST
    call_end = prompt.index(EOS, call_at)
    assert prompt[call_end + 1] == TOOL_RESULTS
    assert prompt.count(TOOL_CALLS) == 1
    assert prompt.count(TOOL_RESULTS) == 2 and prompt.count(END_TOOL_RESULTS) == 2
    assert prompt[-1] == END_TOOL_RESULTS

    a, b = mistral_call_id(first), mistral_call_id(second)
    calls = json.loads(text_of(tiny_model, prompt[call_at + 1 : call_end]))
    assert calls == [
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, "id": a},
        {"name": "get_time", "arguments": {}, "id": b},
    ]
    results = text_of(tiny_model, prompt[call_end + 1 :])
    assert results == (
        f'[TOOL_RESULTS] {{"content": {{"temperature": 21}}, "call_id": "{a}"}}[/TOOL_RESULTS]'
        f'[TOOL_RESULTS] {{"content": "12:30", "call_id": "{b}"}}[/TOOL_RESULTS]'
    )
    for original in (first, second):
        if original != mistral_call_id(original):
            assert original not in text_of(tiny_model, prompt)


async def test_a_conversation_that_goes_on_after_the_results_renders_exactly_as_mistral_common(
    tiny: ChatService,
    tiny_model: LlamaModel,
) -> None:
    messages, wire = _tool_history("call_abc123", "abcDEF123", mapped=True)
    messages += (Message("assistant", "21 °C at 12:30."), Message("user", "Thanks! And tomorrow?"))
    wire += [
        {"role": "assistant", "content": "21 °C at 12:30."},
        {"role": "user", "content": "Thanks! And tomorrow?"},
    ]
    prompt = prompt_of(tiny, ask(*messages, tools=RENDER_TOOLS))
    assert prompt == mistral_common_tokens(wire, RENDER_TOOLS_OPENAI)
    # v3: the tools move to just before the last [INST]; the system prompt joins the last user turn
    last_inst = len(prompt) - 1 - prompt[::-1].index(INST)
    assert prompt[last_inst - 1] == END_AVAILABLE_TOOLS
    assert text_of(tiny_model, prompt[last_inst:]) == (
        "[INST] You are a travel agent.\n\nThanks! And tomorrow?[/INST]"
    )
    assert prompt.index(TOOL_CALLS) < prompt.index(TOOL_RESULTS) < prompt.index(AVAILABLE_TOOLS)


async def test_a_tool_without_parameters_renders_as_mistral_common_renders_it(
    tiny: ChatService, tiny_model: LlamaModel
) -> None:
    """`parameters` is optional; mistral-common encodes a tool without it as `"parameters": {}`."""
    tool = {"type": "function", "function": {"name": "get_time", "description": "The time now"}}
    spec = ToolSpec("get_time", "The time now", None)
    prompt = prompt_of(tiny, ask(tools=(spec,)))
    expected = mistral_common_tokens([{"role": "user", "content": "Weather in Paris?"}], [tool])
    assert text_of(tiny_model, prompt) == text_of(tiny_model, expected)
    assert prompt == expected


async def test_an_assistant_turn_with_text_and_calls_is_accepted_back(tiny_model: LlamaModel) -> None:
    """aimi itself answers with text and calls in one message when the model writes text before
    `[TOOL_CALLS]` (as the eager model does in `test_auto_single_calls_are_valid_and_text_...`); a
    client that appends that message to the conversation, as every SDK's tool loop does, must not
    get a 400 next time.

    mistral-common's v3 validator refuses an assistant message with both content and tool_calls
    ("Assistant message must have either content or tool_calls, but not both."): v2/v3 cannot encode
    both, and the call alone is what these models were trained to see."""
    call = ToolCall("abcDEF123", "get_weather", '{"city": "Paris", "unit": "celsius"}')
    messages = (
        Message("user", "Weather in Paris?"),
        Message("assistant", "Let me check.", tool_calls=(call,)),
        Message("tool", '{"temperature": 21}', tool_call_id="abcDEF123"),
    )
    service = replay(tiny_model, [])
    prompt = prompt_of(service, ask(*messages, tools=RENDER_TOOLS))
    wire: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [{"id": "abcDEF123", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}]},
        {"role": "tool", "tool_call_id": "abcDEF123", "content": '{"temperature": 21}'},
    ]  # fmt: skip
    assert prompt == mistral_common_tokens(wire, RENDER_TOOLS_OPENAI)


async def test_a_conversation_mistral_cannot_encode_is_a_400_before_generating(
    tiny_model: LlamaModel,
) -> None:
    service = replay(tiny_model, [])
    with pytest.raises(InvalidRequest):
        service.prepare(ask(Message("tool", "42", tool_call_id="abcDEF123")))  # no call to answer
    assert service.engine.requests == []  # type: ignore[union-attr]


# -- reading calls back, token by token ----------------------------------------------------------


def _trained_call_tokens(calls: list[dict[str, Any]]) -> list[int]:
    """The tokens of an assistant tool-call turn, as mistral-common encodes one in a conversation
    (from [TOOL_CALLS] up to, not including, the </s> the engine stops at)."""
    wire: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "tool_calls": [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
            for c in calls
        ]},
        *({"role": "tool", "tool_call_id": c["id"], "content": "{}"} for c in calls),
    ]  # fmt: skip
    tokens = mistral_common_tokens(wire, TOOLS_OPENAI)
    start = tokens.index(TOOL_CALLS)
    return tokens[start : tokens.index(EOS, start)]


def _generated_call_tokens(payload: Any) -> list[int]:
    """The tokens a v3 model writes for a call (no ids: the server assigns them)."""
    raw = v3().instruct_tokenizer.tokenizer
    return [TOOL_CALLS, *raw.encode(json.dumps(payload, ensure_ascii=False), bos=False, eos=False)]


WEATHER = {"city": "Paris", "unit": "celsius"}
FLIGHT = {"origin": "CDG", "destination": "JFK", "passengers": 2, "refundable": False, "seats": ["aisle"]}


@pytest.mark.parametrize("form", ["as-trained-with-ids", "as-generated"])
async def test_calls_after_the_tool_calls_token_are_read_back_whole(
    tiny_model: LlamaModel, form: str
) -> None:
    calls = [
        {"name": "get_weather", "arguments": WEATHER, "id": "aaaaaaaa1"},
        {"name": "book_flight", "arguments": FLIGHT, "id": "bbbbbbbb2"},
        {"name": "get_time", "arguments": {}, "id": "ccccccccc"},
    ]
    if form == "as-generated":
        tokens = _generated_call_tokens([{"name": c["name"], "arguments": c["arguments"]} for c in calls])
    else:
        tokens = _trained_call_tokens(calls)
    assert tokens[0] == TOOL_CALLS and TOOL_CALLS not in tokens[1:]
    service = replay(tiny_model, tokens)
    request = ask(tools=TOOLS)

    events = await events_of(service, request)
    deltas = [e for e in events if isinstance(e, Delta)]
    assert all(d.text == "" for d in deltas)  # nothing of the call leaks out as content
    done = events[-1]
    assert isinstance(done, Done)
    assert done.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in done.tool_calls] == [
        (c["name"], c["arguments"]) for c in calls
    ]
    assert all(CALL_ID.fullmatch(c.id) for c in done.tool_calls)
    assert len({c.id for c in done.tool_calls}) == 3
    assert done.usage.completion_tokens == len(tokens)


async def test_with_parallel_tool_calls_false_only_the_first_call_is_kept(tiny_model: LlamaModel) -> None:
    tokens = _generated_call_tokens(
        [{"name": "get_weather", "arguments": WEATHER}, {"name": "get_time", "arguments": {}}]
    )
    result = await replay(tiny_model, tokens).complete(ask(tools=TOOLS, parallel_tool_calls=False))
    assert result.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("get_weather", WEATHER)]


async def test_text_before_the_tool_calls_token_stays_content(tiny_model: LlamaModel) -> None:
    raw = v3().instruct_tokenizer.tokenizer
    text = raw.encode("Let me check.", bos=False, eos=False)
    tokens = text + _generated_call_tokens([{"name": "get_weather", "arguments": WEATHER}])
    result = await replay(tiny_model, tokens).complete(ask(tools=TOOLS))
    assert result.text.strip() == "Let me check."
    assert result.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in result.tool_calls] == [("get_weather", WEATHER)]


@pytest.mark.parametrize("cut", [1, 3, 10, -1])
async def test_a_call_cut_off_by_max_tokens_is_length_and_its_text_is_content(
    tiny_model: LlamaModel, cut: int
) -> None:
    tokens = _generated_call_tokens([{"name": "get_weather", "arguments": WEATHER}])
    max_tokens = cut if cut > 0 else len(tokens) - 1
    result = await replay(tiny_model, tokens).complete(ask(tools=TOOLS, max_tokens=max_tokens))
    assert result.finish_reason == "length"
    assert result.tool_calls == ()
    partial = b"".join(tiny_model.piece(t) for t in tokens[:max_tokens]).decode()
    assert result.text == partial
    assert json.dumps([{"name": "get_weather", "arguments": WEATHER}]).startswith(result.text.strip())


async def test_an_unreadable_call_is_content_not_a_call(tiny_model: LlamaModel) -> None:
    raw = v3().instruct_tokenizer.tokenizer
    tokens = [TOOL_CALLS, *raw.encode('[{"nam": 1}]', bos=False, eos=False)]
    result = await replay(tiny_model, tokens).complete(ask(tools=TOOLS))
    assert result.finish_reason == "stop"
    assert result.tool_calls == ()
    assert result.text.strip() == '[{"nam": 1}]'


async def test_without_tools_the_tool_calls_token_is_not_read_as_a_call(tiny_model: LlamaModel) -> None:
    tokens = _generated_call_tokens([{"name": "get_weather", "arguments": WEATHER}])
    result = await replay(tiny_model, tokens).complete(ask())
    assert result.finish_reason == "stop"
    assert result.tool_calls == ()


# -- constrained calls on gibberish weights ------------------------------------------------------


GREEDY, T07, T10, TOP_P = SAMPLINGS
FORCED = [
    ("required", T07), ("required", T10), ("required", TOP_P),
    ("named", GREEDY), ("named", T07), ("named", T10),
    ("required-single", GREEDY), ("required-single", T07), ("required-single", TOP_P),
    ("named-single", GREEDY), ("named-single", T10),
]  # fmt: skip
FORCED_MAX_TOKENS = 400


@pytest.mark.parametrize(
    ("choice", "sampling"),
    FORCED,
    ids=[f"{c}-{SAMPLING_IDS[SAMPLINGS.index(s)]}" for c, s in FORCED],
)
async def test_forced_calls_on_gibberish_weights_are_valid_calls(
    tiny: ChatService, choice: str, sampling: Sampling
) -> None:
    named = choice.startswith("named")
    tool_choice = ToolChoice("required", function="book_flight" if named else None)
    parallel = not choice.endswith("single")
    request = ask(
        tools=TOOLS,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        sampling=sampling,
        max_tokens=FORCED_MAX_TOKENS,
    )
    events = await events_of(tiny, request)
    done = events[-1]
    assert isinstance(done, Done)
    result = ChatResult("", done.finish_reason, done.usage, None, done.tool_calls)
    if parallel and done.finish_reason == "length":
        # The grammar lets a turn hold any number of calls, and a degenerate model can go on adding
        # them; cut off, the turn is no call at all and its partial text comes back as content.
        assert done.tool_calls == ()
        assert done.usage.completion_tokens == FORCED_MAX_TOKENS
        return
    # the forced turn starts with [TOOL_CALLS] (an empty piece): no content streams before the end
    assert all(isinstance(e, Delta) and e.text == "" for e in events[:-1])
    offered = [TOOL_BY_NAME["book_flight"]] if named else TOOLS
    assert_valid_calls(result, offered)
    if not parallel:
        assert len(done.tool_calls) == 1


@pytest.mark.parametrize("max_tokens", [3, 8, 20])
@pytest.mark.parametrize("sampling", SAMPLINGS[:2], ids=SAMPLING_IDS[:2])
async def test_a_forced_call_cut_off_by_max_tokens_is_length_without_calls(
    tiny: ChatService, max_tokens: int, sampling: Sampling
) -> None:
    request = ask(tools=TOOLS, tool_choice=ToolChoice("required"), sampling=sampling, max_tokens=max_tokens)
    result = await tiny.complete(request)
    assert result.finish_reason == "length"
    assert result.tool_calls == ()
    assert result.usage.completion_tokens == max_tokens
    assert result.text.lstrip().startswith("[")  # the partial call, as content


@pytest.mark.parametrize("sampling", [GREEDY, T10], ids=["greedy", "t1.0-s2"])
async def test_auto_calls_the_model_starts_are_constrained_to_valid_calls(
    eager: ChatService, sampling: Sampling
) -> None:
    """The eager model writes `[TOOL_CALLS]` on its own; from there the lazily triggered grammar
    keeps it to valid calls, as many as it makes."""
    result = await eager.complete(ask(tools=TOOLS, sampling=sampling, max_tokens=400))
    assert_valid_calls(result, TOOLS)


async def test_auto_single_calls_are_valid_and_text_before_a_call_stays_content(eager: ChatService) -> None:
    """With `parallel_tool_calls: false`, one call. Some samplings of the eager model write a little
    gibberish before `[TOOL_CALLS]`: that text is the content, and the call after it is still whole."""
    texts = []
    for sampling in SAMPLINGS:
        request = ask(tools=TOOLS, sampling=sampling, max_tokens=300, parallel_tool_calls=False)
        result = await eager.complete(request)
        assert_valid_calls(result, TOOLS)
        assert len(result.tool_calls) == 1
        assert '"name"' not in result.text and '"arguments"' not in result.text
        texts.append(result.text)
    assert any(texts), texts


async def test_tool_choice_none_never_answers_with_calls(eager: ChatService) -> None:
    for sampling in SAMPLINGS[:2]:
        request = ask(tools=TOOLS, tool_choice=ToolChoice("none"), sampling=sampling, max_tokens=40)
        result = await eager.complete(request)
        assert result.tool_calls == ()
        assert result.finish_reason in ("stop", "length")


# -- JSON modes on gibberish weights -------------------------------------------------------------

BOUNDED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer"},
        "member": {"type": "boolean"},
        "tier": {"enum": ["gold", "silver", None]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}$"},
        "score": {"type": "number"},
    },
    "required": ["name", "age", "member", "tier", "tags", "code"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("sampling", [GREEDY, T07, TOP_P], ids=["greedy", "t0.7-s1", "t1.0-p0.9-s3"])
async def test_json_schema_output_on_gibberish_weights_validates(
    tiny: ChatService, sampling: Sampling
) -> None:
    fmt = ResponseFormat("json_schema", schema=BOUNDED_SCHEMA, name="person")
    result = await tiny.complete(ask(response_format=fmt, sampling=sampling, max_tokens=400))
    assert result.finish_reason == "stop", result.text
    jsonschema.validate(json.loads(result.text), BOUNDED_SCHEMA)


@pytest.mark.parametrize("model", ["plain", "eager"])
async def test_json_object_output_on_gibberish_weights_parses_whenever_it_completes(
    tiny: ChatService, eager: ChatService, model: str
) -> None:
    """The plain model's strings rarely end (any token but a quote may go on), so it mostly runs into
    max_tokens; the eager one closes what it opens, so its answers end. Each that ends parses."""
    service = tiny if model == "plain" else eager
    samplings = SAMPLINGS if model == "eager" else [GREEDY, T10]
    max_tokens = 300 if model == "eager" else 120
    finishes = []
    for sampling in samplings:
        request = ask(response_format=ResponseFormat("json_object"), sampling=sampling, max_tokens=max_tokens)
        result = await service.complete(request)
        finishes.append(result.finish_reason)
        assert result.finish_reason in ("stop", "length")
        if result.finish_reason == "stop":
            assert isinstance(json.loads(result.text), dict), result.text
        else:
            assert result.usage.completion_tokens == max_tokens
            assert result.text.lstrip().startswith("{")
    if model == "eager":
        assert finishes == ["stop"] * len(samplings)


# -- streaming through a real `aimi serve` -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_server(tiny_mistral_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("tiny-serve"),
        "--model", str(tiny_mistral_gguf), "--context-size", str(CONTEXT), "--parallel", "2",
        "--threads", str(THREADS),
        name="tiny-mistral",
    )  # fmt: skip
    yield running
    stop_server(running)


def _sse(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            events.append(json.loads(line[len("data: ") :]))
    return events


def _check_wire_calls(calls: list[dict[str, Any]], offered: Sequence[ToolSpec]) -> None:
    names = {t.name: t for t in offered}
    for i, call in enumerate(calls):
        assert call["index"] == i
        assert CALL_ID.fullmatch(call["id"])
        assert call["type"] == "function"
        assert call["function"]["name"] in names
        assert isinstance(call["function"]["arguments"], str)
        jsonschema.validate(json.loads(call["function"]["arguments"]), names[call["function"]["name"]].schema)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("tool_choice", "parallel"),
    # named with parallel calls off: on gibberish weights parallel calls can run on to max_tokens
    [("required", True), ("any", False), ({"type": "function", "function": {"name": "get_weather"}}, False)],
    ids=["required", "mistral-any-single", "named"],
)
def test_a_streamed_call_arrives_whole_in_one_chunk_with_finish_reason_tool_calls(
    tiny_server: Server, tool_choice: Any, parallel: bool
) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS_OPENAI,
        "tool_choice": tool_choice,
        "parallel_tool_calls": parallel,
        "stream": True,
        "max_tokens": 400,
        "temperature": 0.7,
        # on gibberish weights a seed decides whether the call ends before max_tokens; the draws
        # also depend on how the prompt was batched (seed 7 ran on once prompts went in one step)
        "seed": 11,
    }
    with httpx.stream(
        "POST", f"{tiny_server.endpoint}/v1/chat/completions", json=body,
        headers={"authorization": f"Bearer {tiny_server.key}"}, timeout=120,
    ) as response:  # fmt: skip
        assert response.status_code == 200, response.read()
        events = _sse(response)
    choices = [e["choices"][0] for e in events if e.get("choices")]
    with_calls = [c for c in choices if c["delta"].get("tool_calls")]
    assert len(with_calls) == 1, (len(choices), choices[-3:])
    final = with_calls[0]
    assert final is choices[-1]
    assert final["finish_reason"] == "tool_calls"
    assert all(c["finish_reason"] is None for c in choices[:-1])
    assert all(not c["delta"].get("content") for c in choices)
    offered = [TOOL_BY_NAME["get_weather"]] if isinstance(tool_choice, dict) else TOOLS
    _check_wire_calls(final["delta"]["tool_calls"], offered)
    if not parallel:
        assert len(final["delta"]["tool_calls"]) == 1


@pytest.mark.e2e
def test_the_openai_sdk_streams_and_sends_back_a_call(tiny_server: Server) -> None:
    # (get_time's empty parameters spelled out: see the test of a tool without parameters)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    with openai.OpenAI(
        base_url=f"{tiny_server.endpoint}/v1", api_key=tiny_server.key, max_retries=0
    ) as client:
        stream = client.chat.completions.create(
            model="tiny", messages=messages, tools=RENDER_TOOLS_OPENAI, tool_choice="required",
            stream=True, max_tokens=400, temperature=0.5, seed=3,
        )  # fmt: skip
        chunks = list(stream)
        finals = [c.choices[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        assert len(finals) == 1 and finals[0].finish_reason == "tool_calls"
        calls = finals[0].delta.tool_calls or []
        for call in calls:
            assert call.id and CALL_ID.fullmatch(call.id)
            assert call.type == "function"
            assert call.function and call.function.name in TOOL_BY_NAME
            jsonschema.validate(
                json.loads(call.function.arguments or ""), TOOL_BY_NAME[call.function.name].schema
            )

        # The tool loop: the call goes back with results (under its own id and a foreign one).
        messages.append({
            "role": "assistant", "content": None,
            "tool_calls": [{"id": c.id, "type": "function",
                            "function": {"name": c.function.name, "arguments": c.function.arguments}}
                           for c in calls if c.function],
        })  # fmt: skip
        messages += [{"role": "tool", "tool_call_id": c.id, "content": '{"ok": true}'} for c in calls]
        answer = client.chat.completions.create(
            model="tiny",
            messages=messages,
            tools=RENDER_TOOLS_OPENAI,
            max_tokens=5,
            temperature=0,
        )
        assert answer.usage is not None
        assert answer.usage.prompt_tokens == len(mistral_common_tokens(messages, RENDER_TOOLS_OPENAI))

        # The same loop from a client that got its ids elsewhere: mapped the same way in both places.
        foreign = json.loads(json.dumps(messages))
        for message in foreign:
            for call in message.get("tool_calls") or []:
                call["id"] = f"call_{call['id']}"
            if message["role"] == "tool":
                message["tool_call_id"] = f"call_{message['tool_call_id']}"
        renamed = client.chat.completions.create(
            model="tiny",
            messages=foreign,
            tools=RENDER_TOOLS_OPENAI,
            max_tokens=5,
            temperature=0,
        )
        mapped = json.loads(json.dumps(foreign))
        for message in mapped:
            for call in message.get("tool_calls") or []:
                call["id"] = mistral_call_id(call["id"])
            if message["role"] == "tool":
                message["tool_call_id"] = mistral_call_id(message["tool_call_id"])
        assert renamed.usage is not None
        assert renamed.usage.prompt_tokens == len(mistral_common_tokens(mapped, RENDER_TOOLS_OPENAI))


@pytest.mark.e2e
def test_a_streamed_call_cut_off_by_max_tokens_ends_with_length_and_no_calls(tiny_server: Server) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS_OPENAI,
        "tool_choice": "required",
        "stream": True,
        "max_tokens": 10,
    }
    with httpx.stream(
        "POST", f"{tiny_server.endpoint}/v1/chat/completions", json=body,
        headers={"authorization": f"Bearer {tiny_server.key}"}, timeout=120,
    ) as response:  # fmt: skip
        assert response.status_code == 200
        events = _sse(response)
    choices = [e["choices"][0] for e in events if e.get("choices")]
    assert choices[-1]["finish_reason"] == "length"
    assert not any(c["delta"].get("tool_calls") for c in choices)
    text = "".join(c["delta"].get("content") or "" for c in choices)
    assert text.lstrip().startswith("[")


# -- call ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("call_id", ["abcDEF123", "000000000", "ZZZZZZZZZ"])
def test_mistral_call_id_keeps_valid_ids(call_id: str) -> None:
    assert mistral_call_id(call_id) == call_id


@pytest.mark.parametrize(
    "call_id",
    ["call_abc123", "call_1", "", "abcDEF12", "abcDEF1234", "abc_EF123", "toolu_01A09q90qw90lq917835lq9",
     "ünïcödé99", "a" * 500],
)  # fmt: skip
def test_mistral_call_id_maps_other_ids_to_9_alphanumerics_deterministically(call_id: str) -> None:
    mapped = mistral_call_id(call_id)
    assert CALL_ID.fullmatch(mapped)
    assert mapped != call_id
    assert mistral_call_id(call_id) == mapped
    assert mistral_call_id(mapped) == mapped


def test_mistral_call_id_keeps_different_ids_apart() -> None:
    ids = [f"call_{i}" for i in range(2000)]
    assert len({mistral_call_id(i) for i in ids}) == len(ids)
