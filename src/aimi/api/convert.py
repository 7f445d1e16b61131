"""Wire <-> domain: the request body to a `ChatRequest`, answers back to response and chunk bodies."""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Sequence
from typing import Any, TypedDict

from pydantic import ValidationError

from aimi.api.schemas.chat import ChatCompletionsBody, ChatMessage
from aimi.engines.base import Sampling
from aimi.errors import InvalidRequest, ParameterNotSupported
from aimi.inference.chat import ChatRequest, ChatResult, Delta, Done, Message, TokenLogprobs, ToolCall

_UNHONOURED_MISTRAL = (
    "prediction",
    "min_tokens",
    "guardrails",
    "reasoning_effort",
    "prompt_mode",
    "repetition_penalty",
)
_ID_ALPHABET = string.ascii_letters + string.digits
MAX_STOP_SEQUENCES = 16


def parse_body(raw: dict[str, Any]) -> ChatCompletionsBody:
    try:
        return ChatCompletionsBody.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _location(first["loc"])
        raise InvalidRequest(f"Invalid value for '{where}': {first['msg']}.", param=where) from exc


def _location(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[dict[str,any]]", "function-after", "int", "bool", "float"):
            continue  # pydantic's union-member markers, not part of the user's document
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def chat_request(body: ChatCompletionsBody) -> ChatRequest:
    _refuse_unsupported(body)
    stop = _stop(body.stop)
    logprobs: int | None = None
    if body.logprobs is True:
        logprobs = body.top_logprobs or 0
    elif isinstance(body.logprobs, int) and body.logprobs is not False:
        if not 0 <= body.logprobs <= 20:
            raise InvalidRequest("Invalid value for 'logprobs': use true, false or 0-20.", param="logprobs")
        logprobs = body.logprobs
    seed = body.seed if body.seed is not None else body.random_seed
    sampling = Sampling(
        temperature=0.7 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=body.top_k or 0,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        seed=seed,
        ignore_eos=bool(body.ignore_eos),
    )
    return ChatRequest(
        messages=tuple(_message(i, m) for i, m in enumerate(body.messages)),
        sampling=sampling,
        max_tokens=body.max_tokens,
        stop=stop,
        stream=bool(body.stream),
        safe_prompt=bool(body.safe_prompt or body.safe_mode or body.safemode),
        logprobs=logprobs,
        model=body.model,
    )


def _refuse_unsupported(body: ChatCompletionsBody) -> None:
    if body.n is not None and body.n != 1:
        raise ParameterNotSupported(
            "Only one choice per request is supported ('n' must be 1).", param="n", value=body.n
        )
    if body.modalities and any(m != "text" for m in body.modalities):
        raise ParameterNotSupported(
            "This model only produces text.", param="modalities", value=body.modalities
        )
    fmt = body.response_format
    if fmt is not None:
        kind = fmt.get("type")
        if kind not in ("text", "json_object", "json_schema"):
            raise InvalidRequest(
                "Invalid value for 'response_format.type': use 'text', 'json_object' or 'json_schema'.",
                param="response_format",
            )
        if kind != "text":
            raise ParameterNotSupported(
                f"response_format '{kind}' is not supported by this deployment yet.",
                param="response_format",
                value=kind,
            )
    if body.tools:
        raise ParameterNotSupported(
            "Tools are not supported by this deployment yet.",
            param="tools",
            value=[t.get("function", {}).get("name") for t in body.tools],
        )
    extra = body.model_extra or {}
    for key in _UNHONOURED_MISTRAL:
        if extra.get(key) not in (None, False, 0, "", [], {}):
            raise ParameterNotSupported(
                f"The parameter '{key}' is not supported by this deployment.", param=key, value=extra[key]
            )


def _stop(raw: str | list[str] | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    stops = [raw] if isinstance(raw, str) else raw
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(f"'stop' takes at most {MAX_STOP_SEQUENCES} sequences.", param="stop")
    if any(s == "" for s in stops):
        raise InvalidRequest("Invalid value for 'stop': stop sequences must not be empty.", param="stop")
    return tuple(stops)


def _message(index: int, wire: ChatMessage) -> Message:
    where = f"messages[{index}]"
    role = "system" if wire.role == "developer" else wire.role
    content = _content(where, wire.content)
    if role in ("system", "user") and content is None:
        raise InvalidRequest(
            f"Invalid value for '{where}.content': a {wire.role} message needs content.",
            param=f"{where}.content",
        )
    if role == "tool" and not wire.tool_call_id:
        raise InvalidRequest(
            f"Invalid value for '{where}.tool_call_id': a tool message needs the id of the call it answers.",
            param=f"{where}.tool_call_id",
        )
    calls = tuple(
        ToolCall(
            id=call.id or new_tool_call_id(),
            name=call.function.name,
            arguments=call.function.arguments
            if isinstance(call.function.arguments, str)
            else json.dumps(call.function.arguments, ensure_ascii=False),
        )
        for call in (wire.tool_calls or [])
        if role == "assistant"
    )
    return Message(
        role=role, content=content, tool_calls=calls, tool_call_id=wire.tool_call_id, name=wire.name
    )


def _content(where: str, content: str | list[dict[str, Any]] | None) -> str | None:
    if content is None or isinstance(content, str):
        return content
    texts: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "text":
            raise InvalidRequest(
                f"Invalid value for '{where}.content[{j}].text': expected a string.",
                param=f"{where}.content[{j}].text",
            )
        else:
            raise ParameterNotSupported(
                f"This model accepts text content only, not '{kind}'.",
                param=f"{where}.content[{j}]",
                value=kind,
            )
    return "\n".join(texts)


def new_tool_call_id() -> str:
    """9 characters of [a-zA-Z0-9]: valid for Mistral's validator and for every OpenAI client."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(9))


class ResponseMeta(TypedDict):
    """What every response and chunk of one request repeats."""

    id: str
    created: int
    model: str


# -- responses ---------------------------------------------------------------------------------------


def logprobs_object(entries: Sequence[TokenLogprobs]) -> dict[str, Any]:
    """The Mistral/legacy shape the seeds document, plus OpenAI's `content` list for its clients."""
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{e.token: e.logprob, **{t: lp for t, lp in e.top}} for e in entries],
        "text_offsets": [e.offset for e in entries],
        "content": [
            {
                "token": e.token,
                "logprob": e.logprob,
                "bytes": list(e.token.encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in e.top],
            }
            for e in entries
        ],
    }


def usage_object(done: Done | ChatResult) -> dict[str, int]:
    u = done.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def completion(*, id: str, created: int, model: str, result: ChatResult) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text, "tool_calls": None},
                "finish_reason": result.finish_reason,
                "logprobs": logprobs_object(result.logprobs) if result.logprobs is not None else None,
            }
        ],
        "usage": usage_object(result),
    }


def chunk(
    *,
    id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    logprobs: dict[str, Any] | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": logprobs}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def delta_chunk(*, id: str, created: int, model: str, delta: Delta) -> dict[str, Any]:
    return chunk(
        id=id,
        created=created,
        model=model,
        delta={"content": delta.text},
        logprobs=logprobs_object(delta.logprobs) if delta.logprobs else None,
    )
