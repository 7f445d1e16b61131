"""Wire <-> domain: the request body to a `ChatRequest`, answers back to response and chunk bodies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypedDict

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from aimi.api.schemas.chat import NOT_APPLIED, ChatCompletionsBody
from aimi.api.schemas.completions import (
    AssistantMessageOut,
    BlocklistMatch,
    BlocklistResults,
    CategoryResult,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    ChunkDelta,
    ContentFilterResults,
    FinishReason,
    FunctionCallOut,
    JailbreakResult,
    Logprobs,
    PromptFilterResult,
    PromptTokensDetails,
    SeverityName,
    ToolCallOut,
    Usage,
)
from aimi.api.schemas.messages import (
    AssistantMessage,
    ChatMessage,
    OtherPart,
    TextPart,
    ToolMessage,
    UserMessage,
)
from aimi.api.schemas.refusal import INVALID_REQUEST, join
from aimi.api.schemas.tools import (
    FunctionTool,
    JsonObjectFormat,
    JsonSchemaFormat,
    NamedToolChoice,
    OtherTool,
    TextFormat,
)
from aimi.engines.base import Sampling, ToolCall
from aimi.errors import InvalidRequest, ParameterNotSupported
from aimi.inference.chat import (
    ChatFinishReason,
    ChatRequest,
    ChatResult,
    Delta,
    Done,
    Message,
    ResponseFormat,
    Role,
    TokenLogprobs,
    ToolChoice,
    ToolSpec,
)
from aimi.inference.tools import new_call_id
from aimi.safety import Decision


def parse_body(raw: dict[str, Any]) -> ChatCompletionsBody:
    """The body as its wire model; the first rule it breaks becomes a 400 naming the value."""
    try:
        return ChatCompletionsBody.model_validate(raw)
    except ValidationError as exc:
        raise _refusal(exc.errors()[0], raw) from exc


def _refusal(error: ErrorDetails, raw: Any) -> InvalidRequest:
    where = _location(error["loc"], raw, missing=error["type"] == "missing")
    ctx = error.get("ctx") or {}
    if error["type"] == INVALID_REQUEST:
        param = join(where, str(ctx.get("at", "")))
        return InvalidRequest(error["msg"].replace("{where}", param or "body"), param=param or None)
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # A tagged union refused its tag: say so of the tag field, as for any other field.
        param = join(where, str(ctx.get("discriminator", "")).strip("'"))
        expected = str(ctx.get("expected_tags", "")).rsplit(", ", 1)
        said = (
            "Field required"
            if error["type"] == "union_tag_not_found"
            else f"Input should be {' or '.join(expected)}"
        )
        return InvalidRequest(f"Invalid value for '{param}': {said}.", param=param)
    where = where or "body"
    return InvalidRequest(f"Invalid value for '{where}': {error['msg']}.", param=where)


def _location(loc: Sequence[int | str], raw: Any, *, missing: bool) -> str:
    """The JSON path of `loc` in the document the client sent. Pydantic's `loc` also names the union
    member it tried (`str`, a tag); those are not keys of the document, so they are left out."""
    out = ""
    node = raw
    for i, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            out += f"[{part}]"
            node = node[part]
        elif (
            isinstance(part, str)
            and isinstance(node, dict)
            and (part in node or (missing and i == len(loc) - 1))
        ):
            out += f".{part}" if out else part
            node = node.get(part)
    return out


def chat_request(body: ChatCompletionsBody) -> ChatRequest:
    """The domain request; refuses (422) what the wire allows and a deployment cannot do."""
    _refuse_unsupported(body)
    logprobs: int | None = None
    if body.logprobs is True:
        logprobs = body.top_logprobs or 0
    elif body.logprobs is not False and body.logprobs is not None:
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
        tool_choice=_tool_choice(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.response_format),
        messages=tuple(_message(i, m) for i, m in enumerate(body.messages)),
        sampling=sampling,
        max_tokens=body.max_tokens if body.max_completion_tokens is None else body.max_completion_tokens,
        stop=(body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ()),
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
    for i, tool in enumerate(body.tools or ()):
        if isinstance(tool, OtherTool):
            raise ParameterNotSupported(
                f"Only function tools are supported, not '{tool.type}'.",
                param=f"tools[{i}].type",
                value=tool.type,
            )
    for i, message in enumerate(body.messages):
        for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
            if isinstance(part, OtherPart):
                raise ParameterNotSupported(
                    f"This model accepts text content only, not '{part.type}'.",
                    param=f"messages[{i}].content[{j}]",
                    value=part.type,
                )


def _response_format(wire: TextFormat | JsonObjectFormat | JsonSchemaFormat | None) -> ResponseFormat:
    if wire is None:
        return ResponseFormat()
    if isinstance(wire, JsonSchemaFormat):
        return ResponseFormat("json_schema", schema=wire.json_schema.schema_, name=wire.json_schema.name)
    return ResponseFormat(wire.type)


def _tools(wire: Sequence[FunctionTool | OtherTool] | None) -> tuple[ToolSpec, ...]:
    return tuple(
        ToolSpec(
            name=tool.function.name,
            description=tool.function.description or "",
            parameters=tool.function.parameters,
        )
        for tool in wire or ()
        if isinstance(tool, FunctionTool)
    )


def _tool_choice(wire: str | NamedToolChoice | None) -> ToolChoice:
    if isinstance(wire, NamedToolChoice):
        return ToolChoice("required", function=wire.function.name)
    if wire in ("required", "any"):  # Mistral says "any" for what OpenAI calls "required"
        return ToolChoice("required")
    return ToolChoice("none") if wire == "none" else ToolChoice("auto")


def _message(index: int, wire: ChatMessage) -> Message:
    if isinstance(wire, AssistantMessage):
        calls = tuple(
            ToolCall(
                id=call.id or new_call_id(),
                name=call.function.name,
                arguments=call.function.arguments
                if isinstance(call.function.arguments, str)
                else json.dumps(call.function.arguments, ensure_ascii=False),
            )
            for call in wire.tool_calls or ()
        )
        return Message(role="assistant", content=_text(wire.content), tool_calls=calls, name=wire.name)
    if isinstance(wire, ToolMessage):
        return Message(
            role="tool", content=_text(wire.content), tool_call_id=wire.tool_call_id, name=wire.name
        )
    role: Role = "user" if isinstance(wire, UserMessage) else "system"  # developer is system
    return Message(role=role, content=_text(wire.content), name=wire.name)


def _text(content: str | list[TextPart | OtherPart] | None) -> str | None:
    """Parts are joined with newlines (every other kind of part was refused before)."""
    if content is None or isinstance(content, str):
        return content
    return "\n".join(part.text for part in content if isinstance(part, TextPart))


class ResponseMeta(TypedDict):
    """What every response and chunk of one request repeats."""

    id: str
    created: int
    model: str


# -- responses ---------------------------------------------------------------------------------------


def logprobs_object(entries: Sequence[TokenLogprobs]) -> Logprobs:
    # Validated from plain data in one call: this runs once per streamed token.
    return Logprobs.model_validate(
        {
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
    )


def wire_finish_reason(reason: ChatFinishReason) -> FinishReason:
    """An answer the server cut off at shutdown ends as Mistral's API ends one it could not finish
    (`error`); the ledger keeps `interrupted`."""
    return "error" if reason == "interrupted" else reason


def usage_object(done: Done | ChatResult) -> Usage:
    """With OpenAI's (and Azure OpenAI's) `prompt_tokens_details.cached_tokens`: the prompt tokens
    served from a cache instead of evaluated."""
    u = done.usage
    return Usage(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=u.cached_tokens),
    )


def content_filter_results(decision: Decision | None, *, prompt: bool = False) -> ContentFilterResults | None:
    """Azure's per-category shape. A category no filter evaluated says so (`evaluated: false`)
    instead of claiming a severity; jailbreak is reported for prompts."""
    if decision is None or not decision.enabled:
        return None
    categories: dict[str, CategoryResult] = {}
    for category, verdict in decision.categories.items():
        if verdict.evaluated or verdict.severity is not None:
            severity: SeverityName = verdict.severity.value if verdict.severity is not None else "safe"
            categories[category.value] = CategoryResult(filtered=verdict.filtered, severity=severity)
        else:
            categories[category.value] = CategoryResult(filtered=False, evaluated=False)
    results = ContentFilterResults.model_validate(categories)
    if prompt and decision.jailbreak.detected is not None:
        results.jailbreak = JailbreakResult(
            filtered=decision.jailbreak.filtered, detected=decision.jailbreak.detected
        )
    if decision.blocklist_matches:
        results.custom_blocklists = BlocklistResults(
            filtered=True,
            details=[
                BlocklistMatch(id=m.blocklist, filtered=True, terms=list(m.terms))
                for m in decision.blocklist_matches
            ],
        )
    return results


def prompt_filter_results(decision: Decision | None) -> list[PromptFilterResult] | None:
    results = content_filter_results(decision, prompt=True)
    return None if results is None else [PromptFilterResult(prompt_index=0, content_filter_results=results)]


def tool_calls_object(calls: Sequence[ToolCall], *, indexed: bool = False) -> list[ToolCallOut]:
    """`arguments` as a JSON string; `index` only in stream deltas (where OpenAI clients need it)."""
    return [
        ToolCallOut(
            index=i if indexed else None,
            id=call.id,
            function=FunctionCallOut(name=call.name, arguments=call.arguments),
        )
        for i, call in enumerate(calls)
    ]


def completion(*, id: str, created: int, model: str, result: ChatResult) -> ChatCompletion:
    message = AssistantMessageOut(
        content=result.text,
        tool_calls=tool_calls_object(result.tool_calls) if result.tool_calls else None,
    )
    choice = Choice(
        message=message,
        finish_reason=wire_finish_reason(result.finish_reason),
        logprobs=logprobs_object(result.logprobs) if result.logprobs is not None else None,
        content_filter_results=content_filter_results(result.output_safety),
    )
    return ChatCompletion(
        id=id,
        created=created,
        model=model,
        choices=[choice],
        usage=usage_object(result),
        prompt_filter_results=prompt_filter_results(result.prompt_safety),
    )


def delta_chunk(*, id: str, created: int, model: str, delta: Delta) -> ChatCompletionChunk:
    """A piece of text. Validated from plain data in one call: this runs once per streamed token."""
    logprobs = logprobs_object(delta.logprobs) if delta.logprobs else None
    return ChatCompletionChunk.model_validate(
        {
            "id": id,
            "created": created,
            "model": model,
            "choices": [{"delta": {"content": delta.text}, "logprobs": logprobs}],
        }
    )


def first_chunk(*, id: str, created: int, model: str, prompt_safety: Decision | None) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        id=id,
        created=created,
        model=model,
        choices=[ChunkChoice(delta=ChunkDelta(role="assistant", content=""))],
        prompt_filter_results=prompt_filter_results(prompt_safety),
    )


def final_chunk(*, id: str, created: int, model: str, done: Done) -> ChatCompletionChunk:
    """The last choice chunk: finish_reason, usage, and the whole of any tool calls (as Mistral's
    service sends them: complete, in one chunk)."""
    delta = ChunkDelta(
        content="", tool_calls=tool_calls_object(done.tool_calls, indexed=True) if done.tool_calls else None
    )
    choice = ChunkChoice(
        delta=delta,
        finish_reason=wire_finish_reason(done.finish_reason),
        content_filter_results=content_filter_results(done.output_safety),
    )
    return ChatCompletionChunk(
        id=id, created=created, model=model, choices=[choice], usage=usage_object(done)
    )
