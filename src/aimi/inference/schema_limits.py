"""The bounds a JSON schema (a response format, a tool's parameters) is held to before any grammar is
built from it.

The grammar llama.cpp's converter writes grows with the numbers in a schema: `maxLength: N` is N
nested optional groups, `{m,n}` in a pattern the same, an `enum` one alternative per value. Unbounded,
one request can exhaust the memory of the whole server, or overflow the C stack of llama.cpp's grammar
parser and take the process down. So every such number is checked here, by a walk that builds
nothing, and a schema over a limit is a 400 that names the limit, with the JSON path of the keyword as
`param`. What the walk cannot see (how big the grammar of many small parts gets, how long building
it takes) is held to a budget while the grammar is built (`GrammarBudget`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from aimi.errors import InvalidRequest
from aimi.inference.literals import LiteralTree


@dataclasses.dataclass(frozen=True, slots=True)
class SchemaLimits:
    """The documented limits (docs/api.md, "Structured-output limits")."""

    schema_chars: int = 256 * 1024
    """One schema as compact JSON; tools are held to it one by one and all together."""
    depth: int = 32
    """Subschemas nested in subschemas (properties, items, anyOf, definitions, ...)."""
    properties: int = 256
    """Properties of one object; entries of one `prefixItems`."""
    alternatives: int = 128
    """Alternatives open at one point: the values of an `enum` that part ways at the same character
    (those differing only in it count once); for an `anyOf`, what its entries open at their widest
    points added up (inner anyOfs and enums, also through `$ref`); the tools offered in one request."""
    names: int = 256
    """Characters of one property name or definition name."""
    enum_values: int = 5_000
    """Values of one `enum`."""
    literal_chars: int = 1_024
    """One `enum` value or `const`, as JSON."""
    repetition: int = 1_000
    """`minLength`, `maxLength`, `minItems`, `maxItems`; the bounds of the `{m,n}` of one pattern
    added up (each is written out as that many copies; llama.cpp refuses longer optional runs)."""
    pattern_chars: int = 1_000
    """One `pattern`."""
    pattern_groups: int = 32
    """Groups nested in groups in one `pattern`."""
    gbnf_chars: int = 1024 * 1024
    """The grammar one schema becomes."""
    seconds: float = 5.0
    """Time to write that grammar."""


LIMITS = SchemaLimits()

_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
# What a regular-expression escape may be followed by for llama.cpp's grammar parser to read it,
# after the converter has copied it over (outside a character class it also unescapes these).
_GBNF_ESCAPES = frozenset('xuUtrn\\"[]-')
_REGEX_ONLY_ESCAPES = frozenset("()|{}*+?")
_HEX_DIGITS = {"x": 2, "u": 4, "U": 8}


def over_limit(path: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"The JSON schema at '{path}' is over a limit: {what}.", param=path)


def check_schema_limits(schema: Any, *, where: str, limits: SchemaLimits = LIMITS) -> None:
    """Raise InvalidRequest (param: the JSON path of the offending keyword) unless every number in
    `schema` that the grammar grows with is within `limits`."""
    try:
        size = len(json.dumps(schema, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The JSON schema at '{where}' cannot be read: {exc}.", param=where) from exc
    if size > limits.schema_chars:
        raise over_limit(where, f"it is {size:,} characters of JSON, more than {limits.schema_chars:,}")
    _Walk(schema, where, limits).schema(schema, where, 0)


class _Walk:
    """One pass over a schema and everything it references, each node once."""

    def __init__(self, root: Any, where: str, limits: SchemaLimits) -> None:
        self.root = root
        self.where = where
        self.limits = limits
        self.seen: set[int] = set()
        self.widths: dict[int, int] = {}

    def schema(self, node: Any, path: str, depth: int) -> None:
        if not isinstance(node, dict) or id(node) in self.seen:
            return  # not a schema: the enforceability check says so, with its path
        self.seen.add(id(node))
        if depth > self.limits.depth:
            raise over_limit(path, f"subschemas are nested more than {self.limits.depth} deep")
        for keyword, value in node.items():
            here = f"{path}.{keyword}"
            if keyword in _SCHEMA_MAPS and isinstance(value, dict):
                self.members(value, here, depth, counted=keyword == "properties")
            elif keyword in _SCHEMA_LISTS and isinstance(value, list):
                self.entries(value, here, depth, keyword)
                if keyword in ("anyOf", "oneOf"):
                    self.open_alternatives(node, here)
            elif keyword in ("items", "additionalProperties"):
                if isinstance(value, list):  # the old tuple form: refused later, but bounded first
                    self.entries(value, here, depth, "prefixItems")
                else:
                    self.schema(value, here, depth + 1)
            elif keyword == "enum":
                self.enum(value, here)
            elif keyword == "const":
                self.literal(value, here)
            elif keyword in _COUNTS:
                self.count(value, here)
            elif keyword == "pattern" and isinstance(value, str):
                check_pattern(value, here, self.limits)
            elif keyword == "$ref" and isinstance(value, str):
                self.reference(value, depth)
        for low, high in (("minLength", "maxLength"), ("minItems", "maxItems")):
            if isinstance(node.get(low), int) and isinstance(node.get(high), int) and node[low] > node[high]:
                raise InvalidRequest(
                    f"The JSON schema at '{path}' cannot be met: '{low}' is greater than '{high}'.",
                    param=f"{path}.{low}",
                )

    def members(self, value: dict[str, Any], here: str, depth: int, *, counted: bool) -> None:
        if counted and len(value) > self.limits.properties:
            raise over_limit(here, f"{len(value):,} properties, more than {self.limits.properties:,}")
        for name, sub in value.items():
            if len(name) > self.limits.names:
                raise over_limit(f"{here}.{name[:40]}", f"a name longer than {self.limits.names} characters")
            self.schema(sub, f"{here}.{name}", depth + 1)

    def entries(self, value: list[Any], here: str, depth: int, keyword: str) -> None:
        limit = self.limits.properties if keyword == "prefixItems" else self.limits.alternatives
        if len(value) > limit:
            raise over_limit(here, f"{len(value):,} entries, more than {limit:,}")
        for i, sub in enumerate(value):
            self.schema(sub, f"{here}[{i}]", depth + 1)

    def enum(self, value: Any, here: str) -> None:
        if not isinstance(value, list) or not value:
            raise InvalidRequest(f"'enum' at '{here}' must be a list of at least one value.", param=here)
        if len(value) > self.limits.enum_values:
            raise over_limit(here, f"{len(value):,} values, more than {self.limits.enum_values:,}")
        for i, item in enumerate(value):
            self.literal(item, f"{here}[{i}]")
        width = LiteralTree(value).widest
        if width > self.limits.alternatives:
            raise over_limit(
                here, f"{width:,} alternatives open at one point, more than {self.limits.alternatives:,}"
            )

    def literal(self, value: Any, here: str) -> None:
        try:
            size = len(json.dumps(value, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidRequest(f"The value at '{here}' cannot be read: {exc}.", param=here) from exc
        if size > self.limits.literal_chars:
            limit = self.limits.literal_chars
            raise over_limit(here, f"a value of {size:,} characters of JSON, more than {limit:,}")

    def count(self, value: Any, here: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"'{here}' must be a non-negative integer.", param=here)
        if value > self.limits.repetition:
            raise over_limit(here, f"{value:,} is more than {self.limits.repetition:,}")

    def reference(self, ref: str, depth: int) -> None:
        """A reference may point anywhere in the document, even into an annotation, and the converter
        follows it: so is the walk."""
        node, path = self.resolve(ref)
        self.schema(node, path, depth + 1)

    def resolve(self, ref: str) -> tuple[Any, str]:
        """The node `ref` points to (None if none) and its JSON path."""
        if not ref.startswith("#/"):
            return None, ref  # refused by the enforceability check
        node, path = self.root, self.where
        for part in ref.split("#")[-1].split("/")[1:]:  # as the converter resolves it
            if not isinstance(node, dict) or part not in node:
                return None, ref
            node, path = node[part], f"{path}.{part}"
        return node, path

    def open_alternatives(self, node: dict[str, Any], here: str) -> None:
        width = self.width(node, here, set())
        if width > self.limits.alternatives:
            raise over_limit(
                here,
                f"{width:,} alternatives open at one point (those of an anyOf's entries add up), "
                f"more than {self.limits.alternatives:,}",
            )

    def width(self, node: Any, here: str, chain: set[int]) -> int:
        """How many alternatives a schema may keep open at once, at its widest point: the entries of
        an anyOf may all be alive together (when they begin alike), so their widths add up; llama.cpp
        keeps each open, and checks each against the whole vocabulary."""
        if not isinstance(node, dict) or id(node) in chain:
            return 1  # not a schema, or a reference back into itself
        if id(node) in self.widths:
            return self.widths[id(node)]
        if len(chain) > self.limits.depth:
            raise over_limit(here, f"anyOf and $ref nested more than {self.limits.depth} deep")
        chain.add(id(node))
        entries = [e for key in ("anyOf", "oneOf") if isinstance(node.get(key), list) for e in node[key]]
        if entries:
            width = sum(self.width(entry, here, chain) for entry in entries)
        elif isinstance(node.get("$ref"), str):
            width = self.width(self.resolve(node["$ref"])[0], here, chain)
        elif isinstance(node.get("enum"), list):
            width = LiteralTree(node["enum"]).widest
        else:
            width = max(
                (self.width(child, here, chain) for child in _subschemas(node)),
                default=len(node["type"]) if isinstance(node.get("type"), list) else 1,
            )
        chain.discard(id(node))
        self.widths[id(node)] = width
        return width


def _subschemas(node: dict[str, Any]) -> list[Any]:
    """The schemas directly inside `node` (not through `anyOf` or `$ref`)."""
    out: list[Any] = []
    if isinstance(node.get("properties"), dict):
        out.extend(node["properties"].values())
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out.append(node[key])
    for key in ("prefixItems", "allOf"):
        if isinstance(node.get(key), list):
            out.extend(node[key])
    return out


def check_pattern(pattern: str, here: str, limits: SchemaLimits = LIMITS) -> None:
    """Bound a `pattern` the way llama.cpp's converter reads it: its length, its groups, the counts in
    its `{m,n}` quantifiers, and escapes the grammar parser would not understand."""
    if len(pattern) > limits.pattern_chars:
        limit = limits.pattern_chars
        raise over_limit(here, f"a pattern of {len(pattern):,} characters, more than {limit:,}")
    if "\x00" in pattern or any("\ud800" <= c <= "\udfff" for c in pattern):
        why = "it contains a character a grammar cannot hold (NUL, or half a surrogate pair)"
        raise InvalidRequest(f"The pattern at '{here}' cannot be used: {why}.", param=here)
    depth, copies, i, n = 0, 0, 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i = _escape(pattern, i, here, in_class=False)
        elif c == "[":
            i += 1
            while i < n and pattern[i] != "]":
                i = _escape(pattern, i, here, in_class=True) if pattern[i] == "\\" else i + 1
            i += 1
        elif c == "(":
            depth += 1
            if depth > limits.pattern_groups:
                raise over_limit(here, f"groups nested more than {limits.pattern_groups} deep")
            i += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                break
            i += 1
        elif c == "{":
            end = pattern.find("}", i)
            if end < 0:
                return  # unbalanced: the converter refuses it
            copies += _quantifier(pattern[i + 1 : end], here)
            if copies > limits.repetition:
                raise over_limit(
                    here, f"its repetitions {{m,n}} add up to more than {limits.repetition:,} copies"
                )
            i = end + 1
        else:
            i += 1
    if depth:
        raise InvalidRequest(f"The pattern at '{here}' has unbalanced parentheses.", param=here)


def _escape(pattern: str, i: int, here: str, *, in_class: bool) -> int:
    """The index after the escape at `i`."""
    c = pattern[i + 1] if i + 1 < len(pattern) else ""
    if c and (c in _GBNF_ESCAPES or (not in_class and c in _REGEX_ONLY_ESCAPES)):
        digits = _HEX_DIGITS.get(c, 0)
        hex_part = pattern[i + 2 : i + 2 + digits]
        if len(hex_part) == digits and all(h in "0123456789abcdefABCDEF" for h in hex_part):
            return i + 2 + digits
    raise InvalidRequest(
        f"The pattern at '{here}' uses the escape '\\{c}', which the grammar cannot express; "
        "write a character class instead (e.g. '[0-9]' for '\\d', '[.]' for '\\.').",
        param=here,
    )


def _quantifier(body: str, here: str) -> int:
    """How many copies of its item the converter writes for `{body}`."""
    parts = [p.strip() for p in body.split(",")]
    if len(parts) > 2:
        return 0  # malformed: the converter refuses it
    try:
        # the converter reads the bounds with int(), which also takes '1_000' and other digits
        low = int(parts[0]) if parts[0] else 0
        high = (int(parts[1]) if parts[1] else None) if len(parts) == 2 else low
    except ValueError:
        return 0
    if low < 0 or (high is not None and high < low):
        raise InvalidRequest(f"The pattern at '{here}' has an empty repetition {{{body}}}.", param=here)
    return low if high is None else high


class GrammarBudget:
    """Room for the grammar one schema becomes, spent as it is written: its size, and the time
    taken writing it."""

    def __init__(self, where: str, limits: SchemaLimits = LIMITS) -> None:
        self.where = where
        self.limits = limits
        self.chars = 0
        self.deadline = time.monotonic() + limits.seconds

    def spend(self, chars: int) -> None:
        self.chars += chars
        if self.chars > self.limits.gbnf_chars:
            raise over_limit(
                self.where, f"its grammar would be more than {self.limits.gbnf_chars:,} characters long"
            )
        self.tick()

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise over_limit(self.where, f"writing its grammar takes more than {self.limits.seconds:g} s")
