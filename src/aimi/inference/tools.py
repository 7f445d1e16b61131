"""Tool calling: how tools and calls are written into prompts, the grammar that keeps calls valid,
and how calls are read back out of generated text.

Two formats:
- `TaggedCalls`: `<tool_call>[{"name": …, "arguments": {…}}, …]</tool_call>`, with the tools listed in
  the system prompt inside `<tools>…</tools>` (the function-calling format of SmolLM2's instruct data;
  Hermes/Qwen-style models write one object per tag, which is read too). Used for chat templates
  without tool support, and for templates that speak `<tool_call>` themselves.
- `MistralCalls`: `[TOOL_CALLS] [{"name": …, "arguments": {…}}]` after the `[TOOL_CALLS]` control token,
  as mistral-common encodes it for Mistral tokenizers (v2–v7).

A chat engine (a server aimi forwards to) lays out tools itself and hands over the calls its server
made as a typed `ToolCalls` event; `server_calls` reads them as these formats read theirs (a call
that carries an id keeps it, every other call gets a new one).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections.abc import Sequence
from typing import Any, Protocol

from aimi.engines.base import Grammar, ToolCall
from aimi.errors import InvalidRequest
from aimi.inference.chat import Message, ToolSpec
from aimi.inference.schema_limits import LIMITS
from aimi.inference.schemas import schema_to_gbnf

_ALPHANUMERIC = string.ascii_letters + string.digits
_MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


def new_call_id() -> str:
    """9 characters of [a-zA-Z0-9]: valid for Mistral's validator and for every OpenAI client."""
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(9))


def mistral_call_id(call_id: str) -> str:
    """Ids from other servers (`call_abc123`) mapped to 9 alphanumerics, the same way every time, so
    a call and the tool message answering it still match."""
    if _MISTRAL_ID.match(call_id):
        return call_id
    digest = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:16], "big")
    out = []
    for _ in range(9):
        digest, r = divmod(digest, len(_ALPHANUMERIC))
        out.append(_ALPHANUMERIC[r])
    return "".join(out)


def call_schema(tools: Sequence[ToolSpec]) -> dict[str, Any]:
    """One call: `{"name": <one of the tools>, "arguments": <that tool's parameters>}`."""
    options = [
        {"type": "object",
         "properties": {"name": {"const": t.name}, "arguments": t.schema},
         "required": ["name", "arguments"]}
        for t in tools
    ]  # fmt: skip
    return options[0] if len(options) == 1 else {"anyOf": options}


def _call_rules(tools: Sequence[ToolSpec]) -> str:
    """GBNF rules with `call` as the rule for one call (the converter's root renamed). Each tool's
    parameters are held to the schema limits, and so are all of them together."""
    if len(tools) > LIMITS.alternatives:
        raise InvalidRequest(
            f"{len(tools):,} tools are offered; at most {LIMITS.alternatives:,} can be enforced at once.",
            param="tools",
        )
    for i, tool in enumerate(tools):
        # validated one by one so that an error names the tool's own parameters
        schema_to_gbnf(tool.schema, where=f"tools[{i}].function.parameters")
    gbnf = schema_to_gbnf(call_schema(tools), where="tools")
    return re.sub(r"^root ::=", "call ::=", gbnf, count=1, flags=re.MULTILINE).replace(" root ", " call ")


class ToolFormat(Protocol):
    """How one family of models reads tools and writes calls."""

    def grammar(self, tools: Sequence[ToolSpec], *, parallel: bool, lazy: bool) -> Grammar: ...

    def start_marker(self) -> str | None:
        """Text that starts a call in the generated text (None: a special token does)."""
        ...

    @property
    def start_token(self) -> int | None:
        """The special token that starts a call (None: text does)."""
        ...

    def parse(self, text: str) -> list[ToolCall] | None:
        """The calls in `text` (which starts at the marker); None when it is not a complete call."""
        ...


def _decode_calls(payload: Any) -> list[ToolCall] | None:
    items = payload if isinstance(payload, list) else [payload]
    calls = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        arguments = item.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        given = item.get("id")
        call_id = given if isinstance(given, str) and given else new_call_id()
        calls.append(ToolCall(call_id, item["name"], json.dumps(arguments, ensure_ascii=False)))
    return calls


def server_calls(calls: Sequence[ToolCall]) -> list[ToolCall] | None:
    """Calls a chat engine's server made, read as the formats' own calls are: arguments written as
    aimi writes JSON, missing ids made; None when one of them is not readable (arguments that are
    not JSON: a call cut off by `max_tokens`)."""
    return _decode_calls([{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls])


def calls_as_text(calls: Sequence[ToolCall]) -> str:
    """Calls that cannot be given as calls, as text (nothing the model wrote is lost)."""
    payload = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
    return json.dumps(payload, ensure_ascii=False)


class TaggedCalls:
    OPEN, CLOSE = "<tool_call>", "</tool_call>"

    def start_marker(self) -> str | None:
        return self.OPEN

    @property
    def start_token(self) -> int | None:
        return None

    def grammar(self, tools: Sequence[ToolSpec], *, parallel: bool, lazy: bool) -> Grammar:
        calls = 'call ( "," space call )*' if parallel else "call"
        body = f'( "[" space {calls} "]" space | call )'
        root = f'root ::= "{self.OPEN}" "\\n"? space {body} "\\n"? "{self.CLOSE}"'
        gbnf = root + "\n" + _call_rules(tools)
        return Grammar(gbnf, trigger_patterns=(self.OPEN,) if lazy else ())

    def parse(self, text: str) -> list[ToolCall] | None:
        calls: list[ToolCall] = []
        for block in re.finditer(re.escape(self.OPEN) + r"(.*?)" + re.escape(self.CLOSE), text, re.DOTALL):
            try:
                found = _decode_calls(json.loads(block.group(1)))
            except ValueError:
                return None
            if found is None:
                return None
            calls.extend(found)
        return calls or None

    def system_prompt(self, tools: Sequence[ToolSpec]) -> str:
        listing = json.dumps([t.as_openai()["function"] for t in tools], ensure_ascii=False)
        return (
            "You are an expert in composing functions. You are given a question and a set of possible "
            "functions. Based on the question, you will need to make one or more function/tool calls to "
            "achieve the purpose. If none of the functions can be used, answer the question directly.\n\n"
            f"You have access to the following tools:\n<tools>{listing}</tools>\n\n"
            "To call tools, answer with nothing else than:\n"
            '<tool_call>[{"name": "func_name1", "arguments": {"argument1": "value1"}}, '
            "... (more tool calls as required)]</tool_call>"
        )

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        payload = [{"name": c.name, "arguments": _arguments(c.arguments)} for c in calls]
        return f"{self.OPEN}{json.dumps(payload, ensure_ascii=False)}{self.CLOSE}"

    def with_tools(self, messages: Sequence[Message], tools: Sequence[ToolSpec]) -> tuple[Message, ...]:
        """The conversation as a template without tool support sees it: tools in the system prompt,
        calls as tagged text, results as `tool` turns."""
        out: list[Message] = []
        instructions = self.system_prompt(tools) if tools else None
        for m in messages:
            if m.role == "assistant" and m.tool_calls:
                text = (m.content or "") + self.render_calls(m.tool_calls)
                out.append(Message("assistant", text))
            elif m.role == "tool":
                out.append(Message("tool", m.content or ""))
            else:
                out.append(m)
        if instructions:
            if out and out[0].role == "system":
                out[0] = Message("system", f"{out[0].content}\n\n{instructions}")
            else:
                out.insert(0, Message("system", instructions))
        return tuple(out)


class MistralCalls:
    def __init__(self, tool_calls_token: int) -> None:
        self.token = tool_calls_token

    def start_marker(self) -> str | None:
        return None

    @property
    def start_token(self) -> int | None:
        return self.token

    def grammar(self, tools: Sequence[ToolSpec], *, parallel: bool, lazy: bool) -> Grammar:
        calls = 'call ( "," space call )*' if parallel else "call"
        root = f'root ::= <[{self.token}]> " "? "[" space {calls} "]" space'
        gbnf = root + "\n" + _call_rules(tools)
        return Grammar(gbnf, trigger_tokens=(self.token,) if lazy else ())

    def parse(self, text: str) -> list[ToolCall] | None:
        try:
            payload, _ = json.JSONDecoder().raw_decode(text.strip())
        except ValueError:
            return None
        return _decode_calls(payload)


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
