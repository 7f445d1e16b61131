"""Wire <-> domain: the request body to a `ChatRequest`, answers back to response and chunk bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, TypedDict

from pydantic import ValidationError

from aimi.api.schemas.chat import NOT_APPLIED, ChatCompletionsBody, ChatMessage
from aimi.engines.base import Sampling
from aimi.errors import InvalidRequest, ParameterNotSupported
from aimi.inference.chat import (
    ChatRequest,
    ChatResult,
    Delta,
    Done,
    Message,
    ResponseFormat,
    TokenLogprobs,
    ToolCall,
    ToolChoice,
    ToolSpec,
)
from aimi.inference.tools import new_call_id
from aimi.safety import Decision

MAX_STOP_SEQUENCES = 16
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


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
    tools = _tools(body.tools)
    return ChatRequest(
        tools=tools,
        tool_choice=_tool_choice(body.tool_choice, tools),
        parallel_tool_calls=body.parallel_tool_calls is not False,
        response_format=_response_format(body.response_format),
        messages=tuple(_message(i, m) for i, m in enumerate(body.messages)),
        sampling=sampling,
        max_tokens=_max_tokens(body),
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
    extra = body.model_extra or {}
    for key, neutral in NOT_APPLIED.items():
        value = extra.get(key)
        if value is not None and not any(type(value) is type(n) and value == n for n in neutral):
            raise ParameterNotSupported(
                f"The parameter '{key}' is not supported by this deployment.", param=key, value=value
            )


def _max_tokens(body: ChatCompletionsBody) -> int | None:
    """`max_completion_tokens` is OpenAI's newer name for the same limit."""
    if body.max_completion_tokens is None:
        return body.max_tokens
    if body.max_tokens is not None and body.max_tokens != body.max_completion_tokens:
        raise InvalidRequest(
            f"'max_tokens' ({body.max_tokens}) and 'max_completion_tokens' ({body.max_completion_tokens}) "
            "are the same limit; send one, or the same value in both.",
            param="max_completion_tokens",
        )
    return body.max_completion_tokens


def _response_format(raw: dict[str, Any] | None) -> ResponseFormat:
    if raw is None:
        return ResponseFormat()
    kind = raw.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise InvalidRequest(
            "Invalid value for 'response_format.type': use 'text', 'json_object' or 'json_schema'.",
            param="response_format.type",
        )
    spec = raw.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise InvalidRequest(
            "'response_format.json_schema' needs a 'schema' object.",
            param="response_format.json_schema.schema",
        )
    name = spec.get("name")
    if name is not None and not (isinstance(name, str) and _FUNCTION_NAME.match(name)):
        raise InvalidRequest(
            "Invalid value for 'response_format.json_schema.name': use 1-64 of a-z, A-Z, 0-9, '_' and '-'.",
            param="response_format.json_schema.name",
        )
    return ResponseFormat("json_schema", schema=spec["schema"], name=name)


def _tools(raw: list[dict[str, Any]] | None) -> tuple[ToolSpec, ...]:
    if not raw:
        return ()
    tools: list[ToolSpec] = []
    for i, item in enumerate(raw):
        where = f"tools[{i}]"
        if item.get("type", "function") != "function":
            raise ParameterNotSupported(
                f"Only function tools are supported, not '{item.get('type')}'.",
                param=f"{where}.type",
                value=item.get("type"),
            )
        function = item.get("function")
        if not isinstance(function, dict):
            raise InvalidRequest(f"'{where}.function' must be an object.", param=f"{where}.function")
        name = function.get("name")
        if not (isinstance(name, str) and _FUNCTION_NAME.match(name)):
            raise InvalidRequest(
                f"Invalid value for '{where}.function.name': use 1-64 of a-z, A-Z, 0-9, '_' and '-'.",
                param=f"{where}.function.name",
            )
        if any(t.name == name for t in tools):
            raise InvalidRequest(f"Two tools are named '{name}'.", param=f"{where}.function.name")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(
                f"'{where}.function.parameters' must be a JSON schema object.",
                param=f"{where}.function.parameters",
            )
        description = function.get("description") or ""
        tools.append(ToolSpec(name=name, description=str(description), parameters=parameters))
    return tuple(tools)


def _tool_choice(raw: str | dict[str, Any] | None, tools: tuple[ToolSpec, ...]) -> ToolChoice:
    if raw is None or raw == "auto":
        return ToolChoice("auto")
    if raw == "none":
        return ToolChoice("none")
    if raw in ("required", "any"):  # Mistral says "any" for what OpenAI calls "required"
        if not tools:
            raise InvalidRequest(f"tool_choice '{raw}' needs 'tools'.", param="tool_choice")
        return ToolChoice("required")
    if isinstance(raw, dict):
        function = raw.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest(
                "A named tool_choice is {'type': 'function', 'function': {'name': ...}}.", param="tool_choice"
            )
        if not any(t.name == name for t in tools):
            raise InvalidRequest(f"tool_choice names '{name}', which is not in 'tools'.", param="tool_choice")
        return ToolChoice("required", function=name)
    raise InvalidRequest(
        "Invalid value for 'tool_choice': use 'auto', 'none', 'required', 'any' or a named function.",
        param="tool_choice",
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
            id=call.id or new_call_id(),
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


class ResponseMeta(TypedDict):
    """What every response and chunk of one request repeats."""

    id: str
    created: int
    model: str


# -- responses ---------------------------------------------------------------------------------------


def logprobs_object(entries: Sequence[TokenLogprobs]) -> dict[str, Any]:
    """The shape the Mistral deployment guide documents (`tokens`, `token_logprobs`, `top_logprobs`,
    `text_offsets`), plus OpenAI's `content` list (with Mistral's `token_id`) for those clients."""
    return {
        "tokens": [e.token for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{e.token: e.logprob, **{t.token: t.logprob for t in e.top}} for e in entries],
        "text_offsets": [e.offset for e in entries],
        "content": [
            {
                "token": e.token,
                "token_id": e.id,
                "logprob": e.logprob,
                "bytes": list(e.raw),
                "top_logprobs": [
                    {"token": t.token, "token_id": t.id, "logprob": t.logprob, "bytes": list(t.raw)}
                    for t in e.top
                ],
            }
            for e in entries
        ],
    }


def wire_finish_reason(reason: str) -> str:
    """An answer the server cut off at shutdown ends as Mistral's API ends one it could not finish
    (`error`); the ledger keeps `interrupted`."""
    return "error" if reason == "interrupted" else reason


def usage_object(done: Done | ChatResult) -> dict[str, Any]:
    """With OpenAI's (and Azure OpenAI's) `prompt_tokens_details.cached_tokens`: the prompt tokens
    served from a cache instead of evaluated."""
    u = done.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def content_filter_results(decision: Decision | None, *, prompt: bool = False) -> dict[str, Any] | None:
    """Azure's per-category shape. A category no filter evaluated says so (`evaluated: false`)
    instead of claiming a severity; jailbreak is reported for prompts."""
    if decision is None or not decision.enabled:
        return None
    out: dict[str, Any] = {}
    for category, verdict in decision.categories.items():
        if verdict.evaluated or verdict.severity is not None:
            severity = verdict.severity.value if verdict.severity is not None else "safe"
            out[category.value] = {"filtered": verdict.filtered, "severity": severity}
        else:
            out[category.value] = {"filtered": False, "evaluated": False}
    if prompt and decision.jailbreak.detected is not None:
        out["jailbreak"] = {"filtered": decision.jailbreak.filtered, "detected": decision.jailbreak.detected}
    if decision.blocklist_matches:
        out["custom_blocklists"] = {
            "filtered": True,
            "details": [
                {"id": m.blocklist, "filtered": True, "terms": list(m.terms)}
                for m in decision.blocklist_matches
            ],
        }
    return out


def prompt_filter_results(decision: Decision | None) -> list[dict[str, Any]] | None:
    results = content_filter_results(decision, prompt=True)
    return None if results is None else [{"prompt_index": 0, "content_filter_results": results}]


def tool_calls_object(calls: Sequence[ToolCall], *, indexed: bool = False) -> list[dict[str, Any]]:
    """`arguments` as a JSON string; `index` only in stream deltas (where OpenAI clients need it)."""
    out = []
    for i, call in enumerate(calls):
        item: dict[str, Any] = {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        if indexed:
            item = {"index": i, **item}
        out.append(item)
    return out


def completion(*, id: str, created: int, model: str, result: ChatResult) -> dict[str, Any]:
    calls = tool_calls_object(result.tool_calls) if result.tool_calls else None
    body = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text, "tool_calls": calls},
                "finish_reason": wire_finish_reason(result.finish_reason),
                "logprobs": logprobs_object(result.logprobs) if result.logprobs is not None else None,
            }
        ],
        "usage": usage_object(result),
    }
    _add_safety(body, result.prompt_safety, result.output_safety)
    return body


def _add_safety(body: dict[str, Any], prompt: Decision | None, output: Decision | None) -> None:
    if (prompt_results := prompt_filter_results(prompt)) is not None:
        body["prompt_filter_results"] = prompt_results
    if (output_results := content_filter_results(output)) is not None:
        body["choices"][0]["content_filter_results"] = output_results


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


def first_chunk(*, id: str, created: int, model: str, prompt_safety: Decision | None) -> dict[str, Any]:
    body = chunk(id=id, created=created, model=model, delta={"role": "assistant", "content": ""})
    _add_safety(body, prompt_safety, None)
    return body


def final_chunk(*, id: str, created: int, model: str, done: Done) -> dict[str, Any]:
    """The last choice chunk: finish_reason, usage, and the whole of any tool calls (as Mistral's
    service sends them: complete, in one chunk)."""
    delta: dict[str, Any] = {"content": ""}
    if done.tool_calls:
        delta["tool_calls"] = tool_calls_object(done.tool_calls, indexed=True)
    body = chunk(
        id=id,
        created=created,
        model=model,
        delta=delta,
        finish_reason=wire_finish_reason(done.finish_reason),
        usage=usage_object(done),
    )
    _add_safety(body, None, done.output_safety)
    return body
