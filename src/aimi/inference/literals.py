"""`enum` and `const` values as a GBNF prefix tree.

llama.cpp keeps one parse open per alternative a grammar allows at the current point, and when it
constrains a step it compares each open parse with the whole vocabulary. An enum written as one
alternative per value (as the schema converter writes it) keeps every value open: thousands of values
cost seconds per token, for every sequence in the batch. Written as a tree of the values' JSON texts,
only the values that begin as the text so far stay apart, and values that differ in one character
only share a character class: a 5,000-value enum costs what a handful of alternatives does.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = {chr(c): f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_IN_LITERAL = str.maketrans({"\\": "\\\\", '"': '\\"', **_CONTROL})


def json_text(value: Any) -> str:
    """The value as the converter writes it (`json.dumps`), with characters other than ASCII as
    themselves; a lone surrogate, which UTF-8 cannot carry, stays an escape."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False))


class LiteralTree:
    """The distinct JSON texts of some values, as a tree whose branching points become rules."""

    def __init__(self, values: Iterable[Any]) -> None:
        texts = sorted({json_text(v) for v in values})
        self._texts = texts
        # Breadth first, children after their parent: (first text, end, characters shared).
        self._nodes: list[tuple[int, int, int]] = [(0, len(texts), 0)] if texts else []
        # Per node: its branches (text, node it leads to or -1 where the value ends).
        self._branches: list[list[tuple[str, int]]] = []
        for lo, hi, shared in self._nodes:  # grows as it goes
            out: list[tuple[str, int]] = []
            a = lo + 1 if len(texts[lo]) == shared else lo  # sorted: a value ending here comes first
            while a < hi:
                b = a + 1
                while b < hi and texts[b][shared] == texts[a][shared]:
                    b += 1
                if b - a == 1:
                    out.append((texts[a][shared:], -1))
                else:
                    common = len(os.path.commonprefix((texts[a], texts[b - 1])))  # noqa: RUF071 - text
                    self._nodes.append((a, b, common))
                    out.append((texts[a][shared:common], len(self._nodes) - 1))
                a = b
            self._branches.append(out)

    @property
    def widest(self) -> int:
        """The most alternatives the grammar keeps open at one point."""
        return max((len(_alternatives(branches)) for branches in self._branches), default=0)

    def gbnf(self, add_rule: Callable[[str, str], str], prefix: str) -> str:
        """The root's alternatives; `add_rule(name, body)` adds a rule and returns its name."""
        names = [""] * len(self._nodes)
        for k in range(len(self._nodes) - 1, -1, -1):  # children first: a rule names its children
            body = " | ".join(
                f"{head} {names[child]}" if child >= 0 else head
                for head, child in _alternatives(self._branches[k])
            )
            lo, _, shared = self._nodes[k]
            if len(self._texts[lo]) == shared:
                body = f"( {body} )?"
            names[k] = body if k == 0 else add_rule(f"{prefix}-{k}", body)
        return names[0]


def _alternatives(branches: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """GBNF for each branch, with values that end the same after one differing character merged
    into one character class (`"a" | "b"` is `[ab]`, one parse instead of two)."""
    ends: dict[str, list[str]] = {}
    out: list[tuple[str, int]] = []
    for text, child in branches:
        if child < 0:
            ends.setdefault(text[1:], []).append(text[0])
        else:
            out.append((_literal(text), child))
    for rest, firsts in ends.items():
        if len(firsts) == 1:
            out.append((_literal(firsts[0] + rest), -1))
        else:
            out.append((f"{_char_class(firsts)} {_literal(rest)}" if rest else _char_class(firsts), -1))
    return out


def _literal(text: str) -> str:
    return f'"{text.translate(_IN_LITERAL)}"'


def _char_class(chars: list[str]) -> str:
    """A class of the characters, runs of consecutive ones as ranges (llama.cpp checks a class's
    members one by one)."""
    codes = sorted(ord(c) for c in chars)
    parts: list[str] = []
    start = prev = codes[0]
    for code in [*codes[1:], -1]:
        if code == prev + 1:
            prev = code
            continue
        last = "" if start == prev else f"-{_class_member(prev)}"
        parts.append(_class_member(start) + last)
        start = prev = code
    return "[" + "".join(parts) + "]"


def _class_member(code: int) -> str:
    c = chr(code)
    return c if c.isascii() and c.isalnum() else f"\\U{code:08x}"
