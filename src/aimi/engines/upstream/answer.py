"""One answer read from an upstream server's chat-completions stream (server-sent events, or a whole
JSON answer from a server that did not stream): content as tokens (one per log-probability entry
when the server gives them), tool-call pieces put together into one `ToolCalls` event, the finish
reason and the usage."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from aimi.engines.events import Event, Finish, FinishReason, Token, TokenLogprob, ToolCall, ToolCalls
from aimi.engines.upstream.refusals import error_for, error_of, status_of

_PIECES = re.compile(r" ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]|\s+")
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "tool_calls": "stop",  # the calls themselves come as a `ToolCalls` event
    "function_call": "stop",
    "length": "length",
    "model_length": "length",  # Mistral's: the context is full
    "content_filter": "content_filter",
    "error": "error",
}


def estimate_tokens(text: str) -> int:
    """About what a BPE tokenizer makes of `text`: one token per word (one more per further 8 letters
    of a long word), per group of up to 3 digits, per other character, per run of whitespace."""
    return sum(1 + max(0, len(piece) - 2) // 8 for piece in _PIECES.findall(text))


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Answer:
    """One answer read from the server's chunks: content as tokens, calls put together, usage."""

    estimated_prompt_tokens: int
    started: bool = False
    done: bool = False
    """The server said the answer is complete (`[DONE]`, or a whole JSON answer)."""
    reason: str | None = None
    usage: tuple[int, int] | None = None
    tokens: int = 0
    text: list[str] = field(default_factory=list)
    calls: dict[int, _Call] = field(default_factory=dict)
    failure: str | None = None

    async def events(self, response: httpx.Response) -> AsyncIterator[Event]:
        if response.headers.get("content-type", "").startswith("application/json"):
            # asked for whole (the client does not stream), or a server that does not stream
            for event in self._read(_json(await response.aread())):
                yield event
            self.done = True
            return
        async for data in sse_data(response):
            if data.strip() == b"[DONE]":
                self.done = True
                break
            if data.strip():
                for event in self._read(_json(data)):
                    yield event
            if self.failure is not None:
                break

    def _read(self, chunk: Any) -> Iterator[Event]:
        if not isinstance(chunk, dict):
            self.failure = "the upstream server sent something that is not a chat-completions chunk"
            return
        if "error" in chunk or chunk.get("object") == "error":
            error = error_of(chunk)
            if not self.started:
                raise error_for(status_of(chunk), error.message, error.code, error.param, retry_after=5)
            self.failure = f"the upstream server failed: {error.message}"
            return
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            self.usage = (usage["prompt_tokens"], int(usage.get("completion_tokens") or 0))
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            yield from self._content(_text(delta.get("content")), choice.get("logprobs"))
            for i, raw in enumerate(delta.get("tool_calls") or ()):
                self._call(i, raw)
            if choice.get("finish_reason"):
                self.reason = str(choice["finish_reason"])

    def _content(self, text: str, logprobs: Any) -> Iterator[Token]:
        if not text:
            return
        self.started = True
        self.text.append(text)
        entries = logprobs.get("content") if isinstance(logprobs, dict) else None
        tokens = [_token(e) for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        if not tokens or b"".join(t.piece for t in tokens) != text.encode():
            tokens = [Token(-1, text.encode())]  # no logprobs, or ones that do not spell this text
        self.tokens += len(tokens)
        yield from tokens

    def _call(self, position: int, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        self.started = True
        index = raw.get("index", position)
        call = self.calls.setdefault(index if isinstance(index, int) else position, _Call())
        function = raw.get("function") or {}
        call.id = call.id or str(raw.get("id") or "")
        call.name = call.name or str(function.get("name") or "")
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments += arguments
        elif arguments is not None:  # some servers send an object
            call.arguments += json.dumps(arguments, ensure_ascii=False)

    def end(self, failure: str | None, *, interrupted: bool = False) -> Iterator[Event]:
        """The last events; `interrupted`: aimi itself cut the answer off (a shutdown)."""
        failure = failure or self.failure
        if failure is None and self.reason is None and not self.done:
            failure = "the upstream server ended the answer early"
        calls = [self.calls[i] for i in sorted(self.calls)]
        if calls:
            yield ToolCalls(tuple(ToolCall(c.id, c.name, c.arguments or "{}") for c in calls))
        reason: FinishReason = _FINISH.get(self.reason or "stop", "stop")
        if failure:
            reason = "interrupted" if interrupted else "error"
        if self.usage is not None:
            prompt_tokens, completion_tokens = self.usage
        else:  # the server said nothing: estimate
            written = "".join(self.text) + "".join(c.name + c.arguments for c in calls)
            prompt_tokens = self.estimated_prompt_tokens
            completion_tokens = max(self.tokens, estimate_tokens(written))
        yield Finish(reason, prompt_tokens, completion_tokens, message=failure)


def _token(entry: dict[str, Any]) -> Token:
    top = tuple(
        TokenLogprob(_id(t), _piece(t), _logprob(t))
        for t in entry.get("top_logprobs") or ()
        if isinstance(t, dict)
    )
    return Token(_id(entry), _piece(entry), _logprob(entry), top)


def _id(entry: dict[str, Any]) -> int:
    value = entry.get("token_id")
    return value if isinstance(value, int) else -1


def _logprob(entry: dict[str, Any]) -> float:
    value = entry.get("logprob")
    return float(value) if isinstance(value, int | float) else 0.0


def _piece(entry: dict[str, Any]) -> bytes:
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    return str(entry.get("token", "")).encode()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Mistral's chunked content: keep the text parts
        return "".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    return ""


def _json(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


async def sse_data(response: httpx.Response) -> AsyncIterator[bytes]:
    """The `data` of each server-sent event (its `data:` lines joined), as bytes (`json.loads` takes
    them). Read as the bytes arrive, split here: httpx's text and line layers cost an async generator
    each per chunk, and a chunk is one token."""
    encoded = response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
    chunks = response.aiter_bytes() if encoded else response.aiter_raw()
    lines: list[bytes] = []
    pending = b""
    async for chunk in chunks:
        pending += chunk
        # Up to the last line ending; a CR at the very end may be the first half of a CRLF.
        end = max(pending.rfind(b"\n"), pending.rfind(b"\r", 0, len(pending) - 1))
        if end < 0:
            continue
        complete, pending = pending[: end + 1], pending[end + 1 :]
        for line in complete.splitlines():  # LF, CRLF and CR, as SSE allows
            if not line:
                if lines:
                    yield b"\n".join(lines)
                    lines = []
            elif line.startswith(b"data:"):
                lines.append(_field_value(line))
    lines += [_field_value(line) for line in pending.splitlines() if line.startswith(b"data:")]
    if lines:
        yield b"\n".join(lines)


def _field_value(line: bytes) -> bytes:
    """A `data:` line's value: after the colon and one space, if there is one."""
    return line[6:] if line[5:6] == b" " else line[5:]
