"""JSON schemas into grammars (`aimi.inference.schemas`): the limits every schema is held to before
a grammar is built (`aimi.inference.schema_limits`), one family of hostile numbers at a time, and
the legitimate schemas that must still compile."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from aimi.engines.base import Sampling
from aimi.engines.llamacpp.embedded import embedded_model_path
from aimi.engines.llamacpp.model import LlamaModel
from aimi.errors import InvalidRequest
from aimi.inference import pipeline
from aimi.inference.chat import ChatRequest, Message, ResponseFormat
from aimi.inference.pipeline import ChatService
from aimi.inference.prompts import ChatTemplateRenderer
from aimi.inference.schemas import schema_to_gbnf
from tests.fakes import FAKE_INFO, ScriptedEngine
from tests.grammar_checks import accepts, compiles

WHERE = "response_format.json_schema.schema"


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    loaded = LlamaModel(embedded_model_path())
    yield loaded
    loaded.close()


def refusal(schema: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        schema_to_gbnf(schema, where=WHERE)
    return caught.value


def string(**keywords: Any) -> dict[str, Any]:
    return {"type": "string", **keywords}


def objects(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = {"type": "object", "properties": {"a": leaf}, "required": ["a"]}
    return leaf


# -- repetition counts in patterns ------------------------------------------------------------


def test_the_pattern_that_crashed_the_server_is_refused_naming_the_pattern_and_the_limit() -> None:
    error = refusal(string(pattern="^a{1,99999}b{1,99999}$"))
    assert error.param == f"{WHERE}.pattern"
    assert "1,000" in error.message


@pytest.mark.parametrize("quantifier", ["{1000000}", "{2000,}", "{ 0 , 5000 }", "{1_000_000}"])
def test_a_repetition_count_beyond_the_limit_is_refused_however_it_is_spelled(quantifier: str) -> None:
    assert refusal(string(pattern=f"^a{quantifier}$")).param == f"{WHERE}.pattern"


def test_the_repetitions_of_one_pattern_count_together() -> None:
    assert refusal(string(pattern="^(ab){0,600}(cd){0,600}$")).param == f"{WHERE}.pattern"
    assert schema_to_gbnf(string(pattern="^[0-9]{1,500}-(ab){0,500}$"))


def test_an_empty_repetition_is_refused() -> None:
    assert "empty repetition" in refusal(string(pattern="^a{5,2}$")).message


@pytest.mark.parametrize("pattern", ["^{3}$", "^*$", "^(a$", "^a)$"])
def test_a_pattern_the_converter_cannot_read_is_a_400_not_a_server_error(pattern: str) -> None:
    assert refusal(string(pattern=pattern)).param in (f"{WHERE}.pattern", WHERE)


@pytest.mark.parametrize(
    ("pattern", "said"),
    [
        ("^" + "a" * 1001 + "$", "1,000"),
        ("^" + "(" * 40 + "a" + ")" * 40 + "$", "nested"),
        ("^\\d+$", "'\\d'"),
        ("^a\\.b$", "'\\.'"),
        ("^a\x00b$", "NUL"),
    ],
    ids=["long", "nested-groups", "digit-escape", "dot-escape", "nul"],
)
def test_a_pattern_is_bounded_and_its_escapes_checked_up_front(pattern: str, said: str) -> None:
    error = refusal(string(pattern=pattern))
    assert error.param == f"{WHERE}.pattern"
    assert said in error.message


# -- string lengths and item counts -----------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "offending"),
    [
        ({"minLength": 100_000_000, "maxLength": 1_000_000_000}, "minLength"),
        ({"maxLength": 1_000_000_000}, "maxLength"),
        ({"maxLength": 1e9}, "maxLength"),
        ({"minLength": 1001}, "minLength"),
        ({"maxLength": -1}, "maxLength"),
        ({"maxLength": True}, "maxLength"),
    ],
)
def test_a_string_length_beyond_the_limit_is_refused_naming_the_keyword(
    keywords: dict[str, Any], offending: str
) -> None:
    assert refusal(string(**keywords)).param == f"{WHERE}.{offending}"


@pytest.mark.parametrize(
    ("keywords", "offending"),
    [({"maxItems": 1_000_000}, "maxItems"), ({"minItems": 5000}, "minItems")],
)
def test_an_item_count_beyond_the_limit_is_refused_naming_the_keyword(
    keywords: dict[str, Any], offending: str
) -> None:
    schema = {"type": "array", "items": {"type": "integer"}, **keywords}
    assert refusal(schema).param == f"{WHERE}.{offending}"


@pytest.mark.parametrize(
    "schema",
    [string(minLength=5, maxLength=2), {"type": "array", "items": {}, "minItems": 3, "maxItems": 1}],
)
def test_a_minimum_above_its_maximum_is_refused_as_unsatisfiable(schema: dict[str, Any]) -> None:
    assert "greater than" in refusal(schema).message


def test_a_hostile_number_hidden_behind_a_reference_into_an_annotation_is_found() -> None:
    schema = {"default": string(maxLength=1_000_000), "$ref": "#/default"}
    assert refusal(schema).param == f"{WHERE}.default.maxLength"


def test_lengths_and_counts_at_the_limit_compile_in_llama_cpp(model: LlamaModel) -> None:
    schema = {
        "type": "object",
        "properties": {
            "text": string(maxLength=1000),
            "code": string(pattern="^[A-Z]{2}[0-9]{0,998}$"),
            "list": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 1000},
        },
    }
    assert compiles(model, schema_to_gbnf(schema))


# -- enums and consts -------------------------------------------------------------------------


def test_an_enum_of_thirty_thousand_values_is_refused_naming_the_limit() -> None:
    error = refusal({"enum": list(range(30_000))})
    assert error.param == f"{WHERE}.enum"
    assert "5,000" in error.message


def test_an_enum_at_the_limit_keeps_few_alternatives_open_at_any_point(model: LlamaModel) -> None:
    values = [f"value-{i}" for i in range(5_000)]
    gbnf = schema_to_gbnf({"enum": values})
    assert max(line.count(" | ") for line in gbnf.splitlines()) < 20
    assert accepts(model, gbnf, '"value-4321"')
    assert not accepts(model, gbnf, '"value-5000"')


def test_an_enum_whose_values_part_ways_at_the_same_character_is_bounded() -> None:
    values = [chr(0x4E00 + i) * 2 for i in range(300)]  # 300 first characters, 300 different rests
    assert "alternatives open at one point" in refusal({"enum": values}).message
    assert schema_to_gbnf({"enum": [chr(0x4E00 + i) for i in range(3000)]})  # one character class


@pytest.mark.parametrize(
    ("schema", "offending"),
    [
        ({"enum": ["short", "x" * 2000]}, "enum[1]"),
        ({"const": {"blob": "x" * 2000}}, "const"),
        ({"enum": []}, "enum"),
        ({"enum": "abc"}, "enum"),
    ],
)
def test_enum_and_const_values_are_bounded(schema: dict[str, Any], offending: str) -> None:
    assert refusal(schema).param == f"{WHERE}.{offending}"


def test_enum_values_are_matched_exactly_as_json_even_with_quotes_and_escapes(model: LlamaModel) -> None:
    values = ['say "hi"', "back\\slash", "two\nlines", "café", 7, None, {"a": [1, 2]}]
    gbnf = schema_to_gbnf({"enum": values})
    for value in values:
        assert accepts(model, gbnf, json.dumps(value, ensure_ascii=False)), value
    assert not accepts(model, gbnf, '"say "')
    assert not accepts(model, gbnf, '"two\nlines"')  # a raw newline is not JSON


def test_an_enum_with_a_list_of_types_is_enforced_not_dropped(model: LlamaModel) -> None:
    gbnf = schema_to_gbnf({"type": ["string", "null"], "enum": ["a", None]})
    assert accepts(model, gbnf, '"a"') and accepts(model, gbnf, "null")
    assert not accepts(model, gbnf, '"b"')


# -- nesting and alternatives -----------------------------------------------------------------


def test_subschemas_nested_beyond_the_limit_are_refused_where_the_limit_is_crossed() -> None:
    error = refusal(objects(40, {"type": "integer"}))
    assert "32" in error.message
    assert error.param == WHERE + ".properties.a" * 33


def test_an_anyof_with_too_many_entries_is_refused() -> None:
    schema = {"anyOf": [{"const": i} for i in range(129)]}
    assert refusal(schema).param == f"{WHERE}.anyOf"


def test_alternatives_of_nested_anyofs_count_together() -> None:
    inner = [{"anyOf": [{"const": f"{i}-{j}"} for j in range(20)]} for i in range(20)]
    error = refusal({"anyOf": inner})
    assert error.param == f"{WHERE}.anyOf"
    assert "400 alternatives" in error.message


def test_alternatives_behind_references_count_too() -> None:
    schema = {
        "$defs": {"many": {"anyOf": [{"const": i} for i in range(100)]}},
        "anyOf": [{"$ref": "#/$defs/many"}, {"$ref": "#/$defs/many"}],
    }
    assert refusal(schema).param == f"{WHERE}.anyOf"


def test_entries_that_stay_open_together_count_at_their_widest_point() -> None:
    # Each enum opens 10 alternatives (its first digits); alike, all entries stay open together.
    digits = {"enum": list(range(1000))}
    error = refusal({"type": "array", "items": {"anyOf": [digits] * 13}})
    assert error.param == f"{WHERE}.items.anyOf"
    assert "130 alternatives" in error.message
    assert schema_to_gbnf({"anyOf": [digits] * 12})


def test_an_object_with_too_many_properties_is_refused() -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(300)}}
    assert refusal(schema).param == f"{WHERE}.properties"


def test_a_property_name_longer_than_the_limit_is_refused() -> None:
    assert refusal({"type": "object", "properties": {"n" * 300: {"type": "integer"}}}).param


def test_a_keyword_in_a_definition_reached_only_through_another_definition_is_checked() -> None:
    schema = {
        "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"type": "integer", "minimum": 0}},
        "$ref": "#/$defs/a",
    }
    assert "'minimum'" in refusal(schema).message


# -- total size -------------------------------------------------------------------------------


def test_a_schema_larger_than_the_limit_is_refused_before_it_is_walked() -> None:
    error = refusal({"type": "string", "description": "x" * 300_000})
    assert error.param == WHERE
    assert "262,144" in error.message


def test_a_schema_whose_grammar_would_outgrow_the_budget_is_refused_while_it_is_written() -> None:
    schema = {"type": "object", "properties": {f"p{i}": string(maxLength=1000) for i in range(200)}}
    error = refusal(schema)
    assert error.param == WHERE
    assert "grammar would be more than 1,048,576 characters" in error.message


# -- legitimate schemas -----------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
    },
    "required": ["name", "age", "hobbies"],
}
BOUNDED = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "member": {"type": "boolean"},
        "tier": {"enum": ["gold", "silver", None]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "code": {"type": "string", "pattern": "^[A-Z]{2}[0-9]{2}$"},
        "when": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "pair": {"type": "array", "prefixItems": [{"type": "number"}, {"const": "x"}]},
    },
    "required": ["name", "member", "tier", "tags", "code"],
    "additionalProperties": False,
}
PYDANTIC = {  # as pydantic writes a model with a nested model, an Optional and an Enum
    "$defs": {
        "Color": {"enum": ["red", "green"], "title": "Color", "type": "string"},
        "Item": {
            "properties": {"name": {"title": "Name", "type": "string"}},
            "required": ["name"],
            "title": "Item",
            "type": "object",
        },
    },
    "properties": {
        "item": {"allOf": [{"$ref": "#/$defs/Item"}], "description": "the item"},
        "color": {"anyOf": [{"$ref": "#/$defs/Color"}, {"type": "null"}], "default": None},
        "count": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    },
    "required": ["item"],
    "title": "Order",
    "type": "object",
}
TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
        }
    },
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/node"}},
}
FLIGHT = {
    "type": "object",
    "properties": {"origin_city": {"type": "string"}, "destination_city": {"type": "string"}},
    "required": ["origin_city", "destination_city"],
}


@pytest.mark.parametrize(
    "schema", [PERSON, BOUNDED, PYDANTIC, TREE, FLIGHT, objects(31, {"type": "integer"})],
    ids=["person", "bounded", "pydantic", "tree", "flight", "deep"],
)  # fmt: skip
def test_legitimate_schemas_still_compile_in_llama_cpp(model: LlamaModel, schema: dict[str, Any]) -> None:
    assert compiles(model, schema_to_gbnf(schema, where=WHERE))


# -- where the work happens -------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_response_schema_is_compiled_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []

    def recording(schema: Any, **kwargs: Any) -> str:
        threads.append(threading.current_thread())
        return schema_to_gbnf(schema, **kwargs)

    monkeypatch.setattr(pipeline, "schema_to_gbnf", recording)
    engine = ScriptedEngine()
    renderer = ChatTemplateRenderer(FAKE_INFO.chat_template or "", FAKE_INFO, engine.tokenize)
    service = ChatService(engine=engine, renderer=renderer)
    request = ChatRequest(
        messages=(Message("user", "hi"),),
        sampling=Sampling(temperature=0),
        response_format=ResponseFormat("json_schema", schema=PERSON, name="person"),
    )
    await service.complete(request)
    assert threads and threads[0] is not threading.current_thread()
