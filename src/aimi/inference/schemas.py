"""JSON Schema → GBNF grammar, refusing what the grammar cannot enforce.

The grammar comes from llama.cpp's own schema converter (shipped in `llama_cpp.llama_grammar`). That
converter quietly ignores keywords it does not know, which would let output that breaks the schema
through; so every schema is first walked here, and a keyword the converter would not enforce is a 400
naming the keyword and where it is, before any token is generated. Never fail open.

Before that, the schema is held to the limits in `schema_limits` (a hostile number must not become a
grammar that exhausts memory or the C stack), and the converter runs on a budget of grammar size and
time. Converting is CPU work that can take a while: call `schema_to_gbnf` off the event loop.
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

from aimi.errors import InvalidRequest
from aimi.inference.literals import LiteralTree
from aimi.inference.schema_limits import LIMITS, GrammarBudget, SchemaLimits, check_schema_limits

# Keywords that describe without constraining: always fine.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
     "readOnly", "writeOnly", "$defs", "definitions", "nullable", "strict"}
)  # fmt: skip
_TYPES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array"})
_FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
# Per keyword: the types it applies to (None: any).
_ENFORCED: dict[str, frozenset[str] | None] = {
    "type": None, "enum": None, "const": None, "anyOf": None, "$ref": None, "allOf": None,
    "properties": frozenset({"object"}), "required": frozenset({"object"}),
    "additionalProperties": frozenset({"object"}),
    "items": frozenset({"array"}), "prefixItems": frozenset({"array"}),
    "minItems": frozenset({"array"}), "maxItems": frozenset({"array"}),
    "minLength": frozenset({"string"}), "maxLength": frozenset({"string"}),
    "pattern": frozenset({"string"}), "format": frozenset({"string"}),
}  # fmt: skip
_WHY = {
    "oneOf": "exactly-one-of cannot be enforced while generating; use anyOf",
    "not": "negation cannot be enforced while generating",
    "minimum": "numeric bounds are not enforced",
    "maximum": "numeric bounds are not enforced",
    "exclusiveMinimum": "numeric bounds are not enforced",
    "exclusiveMaximum": "numeric bounds are not enforced",
    "multipleOf": "multipleOf is not enforced", "uniqueItems": "uniqueItems is not enforced",
}  # fmt: skip


def json_object_gbnf() -> str:
    """Any JSON object (JSON mode)."""
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


def schema_to_gbnf(schema: Any, *, where: str = "schema", limits: SchemaLimits = LIMITS) -> str:
    """A GBNF grammar whose every complete output validates against `schema`."""
    check_schema_limits(schema, where=where, limits=limits)
    check_enforceable(schema, where=where)
    converter = _Converter(GrammarBudget(where, limits))
    try:
        copy = _inline_single_allof(schema)  # a copy: resolving references rewrites them in place
        converter.visit(converter.resolve_refs(copy, "stdin"), "")
        gbnf = converter.format_grammar()
    except _CONVERTER_ERRORS as exc:
        raise InvalidRequest(f"The JSON schema at '{where}' cannot be compiled into a grammar: {exc}",
                             param=where) from exc  # fmt: skip
    return _strict_json_strings(gbnf)


# What the converter raises on a schema it cannot read (an unbalanced pattern, a quantifier with
# nothing before it, 'properties' that is a list, ...).
_CONVERTER_ERRORS = (
    AssertionError, AttributeError, IndexError, KeyError, ValueError, TypeError, RecursionError,
)  # fmt: skip
_UNIONS = frozenset({"$ref", "anyOf", "oneOf"})


class _Converter(SchemaConverter):
    """llama.cpp's converter on a budget, writing `enum` and `const` as a prefix tree."""

    def __init__(self, budget: GrammarBudget) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self._budget = budget
        self._literal_sets = 0

    def _add_rule(self, name: str, rule: str) -> str:
        self._budget.spend(len(name) + len(rule))
        return str(super()._add_rule(name, rule))

    def visit(self, schema: Any, name: str) -> str:
        self._budget.tick()
        if schema is True:
            schema = {}  # any value, as the enforceability check reads it
        literals = isinstance(schema, dict) and ("const" in schema or "enum" in schema)
        if literals and not _UNIONS & schema.keys():
            # Before `type`: the converter reads a list of types first and would drop the enum. As
            # a tree: one alternative per value (as the converter writes them) stalls the engine.
            values = [schema["const"]] if "const" in schema else schema["enum"]
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, self._one_of_literals(values))
        return str(super().visit(schema, name))

    def _one_of_literals(self, values: list[Any]) -> str:
        self._literal_sets += 1
        return LiteralTree(values).gbnf(self._add_rule, f"literal{self._literal_sets}")


_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _strict_json_strings(gbnf: str) -> str:
    """The converter lets raw control characters (a newline, say) into strings, which JSON forbids;
    its string rule is tightened so every string the grammar allows parses."""
    return gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)


def check_enforceable(schema: Any, *, where: str = "schema") -> None:
    """Raise InvalidRequest naming the first keyword (and its path) that would not be enforced."""
    _check(schema, where, root=schema, seen=set())


def _fail(path: str, keyword: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"The JSON schema keyword '{keyword}' at '{path}' cannot be enforced: {why}. "
        "Remove it or express the constraint another way.",
        param=path,
    )


def _check(node: Any, path: str, *, root: Any, seen: set[int], depth: int = 0) -> None:
    if depth > 64:
        raise InvalidRequest(f"The JSON schema at '{path}' is nested too deeply.", param=path)
    if node is True or node == {}:
        return
    if not isinstance(node, dict):
        raise InvalidRequest(f"The JSON schema at '{path}' must be an object, not {json.dumps(node)[:40]}.",
                             param=path)  # fmt: skip
    types = node.get("type")
    declared = {types} if isinstance(types, str) else set(types) if isinstance(types, list) else None
    if declared is not None and not declared <= _TYPES:
        raise _fail(path, "type", f"unknown type {sorted(declared - _TYPES)}")
    for keyword, value in node.items():
        here = f"{path}.{keyword}"
        if keyword in _ANNOTATIONS:
            continue
        if keyword not in _ENFORCED:
            raise _fail(path, keyword, _WHY.get(keyword, "the grammar compiler does not support it"))
        applies = _ENFORCED[keyword]
        if applies is not None and declared is not None and not (declared & applies):
            continue  # e.g. minLength on an integer: meaningless, and harmless
        if applies is not None and declared is not None and len(declared) > 1:
            raise _fail(path, keyword, "it is only enforced when 'type' names a single type")
        _check_keyword(node, keyword, value, here, path, root=root, seen=seen, depth=depth)


def _check_keyword(
    node: dict[str, Any],
    keyword: str,
    value: Any,
    here: str,
    path: str,
    *,
    root: Any,
    seen: set[int],
    depth: int,
) -> None:
    if keyword == "format" and value not in _FORMATS:
        raise _fail(path, "format", f"format '{value}' is not supported (supported: {sorted(_FORMATS)})")
    if keyword in ("minLength", "maxLength") and ("pattern" in node or "format" in node):
        raise _fail(path, keyword, "length limits are not enforced together with 'pattern' or 'format'")
    if keyword == "pattern" and not (
        isinstance(value, str) and value.startswith("^") and value.endswith("$")
    ):
        raise _fail(path, "pattern", "patterns must be anchored with '^' and '$'")
    if keyword in ("minItems", "maxItems") and not isinstance(node.get("items"), dict):
        raise _fail(path, keyword, "item counts are only enforced together with a schema in 'items'")
    if keyword == "items" and not isinstance(value, dict | bool):
        raise _fail(path, "items", "a list in 'items' is the old tuple form; use 'prefixItems'")
    if keyword == "items" and "prefixItems" in node:
        raise _fail(path, "items", "'items' together with 'prefixItems' is not enforced")
    if keyword == "$ref" and not (isinstance(value, str) and value.startswith("#")):
        raise _fail(path, "$ref", "only references inside the schema ('#/...') are resolved")
    if keyword == "$ref" and _resolve(root, value) is None:
        raise _fail(path, "$ref", f"'{value}' does not point into the schema")
    if keyword == "allOf" and not (isinstance(value, list) and len(value) == 1):
        raise _fail(path, "allOf", "only a single-element allOf is enforced")
    if keyword == "additionalProperties" and isinstance(value, dict) and "properties" not in node and value:
        return _check(value, here, root=root, seen=seen, depth=depth + 1)
    children: list[tuple[str, Any]] = []
    if keyword == "properties" and isinstance(value, dict):
        children = [(f"{here}.{name}", sub) for name, sub in value.items()]
    elif keyword in ("anyOf", "allOf", "prefixItems") and isinstance(value, list):
        children = [(f"{here}[{i}]", sub) for i, sub in enumerate(value)]
    elif keyword in ("items", "additionalProperties") and isinstance(value, dict):
        children = [(here, value)]
    for child_path, child in children:
        _check(child, child_path, root=root, seen=seen, depth=depth + 1)
    if keyword == "$ref":
        # check each definition once, where it is first referenced from (also from a definition)
        target = _resolve(root, value)
        if target is not node and id(target) not in seen:
            seen.add(id(target))
            _check(target, value, root=root, seen=seen, depth=depth + 1)
    return None


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for part in ref.lstrip("#").split("/"):
        if not part:
            continue
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _inline_single_allof(node: Any) -> Any:
    """`allOf: [X]` (as pydantic writes a described `$ref`) is X; the converter only merges objects."""
    if isinstance(node, dict):
        out = {k: _inline_single_allof(v) for k, v in node.items()}
        inner = out.get("allOf")
        if isinstance(inner, list) and len(inner) == 1 and isinstance(inner[0], dict):
            merged = {k: v for k, v in out.items() if k != "allOf"}
            merged.update(inner[0])
            return merged
        return out
    if isinstance(node, list):
        return [_inline_single_allof(v) for v in node]
    return node
