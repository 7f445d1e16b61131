"""Prompt rendering: chat messages to token ids, the way the model was trained to read them.

Two renderers: the GGUF's own Jinja chat template (as Hugging Face's `apply_chat_template` runs it),
and `mistral-common` for Mistral-family models whose tokenizer it ships (checked token for token
against the GGUF's vocabulary before it is trusted). Renderers go with token engines; a chat engine (a
server aimi forwards to) needs neither: it gets the messages, and aimi only estimates the prompt's
length.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from aimi.engines.base import ModelInfo
from aimi.errors import InvalidRequest
from aimi.inference.chat import Message, ToolSpec
from aimi.inference.tools import MistralCalls, TaggedCalls, ToolFormat, mistral_call_id

log = logging.getLogger("aimi.inference")

SAFE_PROMPT = (
    "Always assist with care, respect, and truth. Respond with utmost utility yet securely. "
    "Avoid harmful, unethical, prejudiced, or negative content. Ensure replies promote fairness and "
    "positivity."
)

# Used when a GGUF carries no chat template at all.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

Tokenize = Callable[..., list[int]]


class PromptRenderer(Protocol):
    """Turns a conversation (and the tools on offer) into the prompt token ids the engine evaluates."""

    name: str
    tool_format: ToolFormat

    def render(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> list[int]: ...


def with_safe_prompt(messages: Sequence[Message]) -> tuple[Message, ...]:
    """Prepend Mistral's safety system prompt, joined to a leading system message if there is one
    (as mistral-common joins system messages), so templates that take one system prompt keep it."""
    if messages and messages[0].role == "system":
        first = messages[0]
        joined = SAFE_PROMPT + ("\n\n" + first.content if first.content else "")
        return (Message(role="system", content=joined), *messages[1:])
    return (Message(role="system", content=SAFE_PROMPT), *messages)


def _message_dict(message: Message) -> dict[str, Any]:
    """The OpenAI shape as chat templates take it: content never None, call arguments as objects."""
    out = message.as_openai()
    out["content"] = out["content"] or ""
    for call in out.get("tool_calls", ()):
        call["function"]["arguments"] = _arguments(call["function"]["arguments"])
    return out


def estimate_prompt_tokens(
    messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]], count_tokens: Callable[[str], int]
) -> int:
    """The prompt a chat template would make of OpenAI-shaped messages, counted with a chat engine's
    (estimating) `count_tokens`: each message's text and calls, 3 tokens of markup per message and 3
    for the answer's opening (as OpenAI counts), and the tools' JSON."""

    def count(text: str) -> int:
        return count_tokens(text) if text else 0

    total = 3 + count(json.dumps(list(tools), ensure_ascii=False) if tools else "")
    for message in messages:
        calls = message.get("tool_calls")
        total += 3 + count(str(message.get("content") or ""))
        total += count(json.dumps(calls, ensure_ascii=False) if calls else "")
    return total


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class ChatTemplateRenderer:
    """Renders with the model's Jinja chat template in a sandbox, then tokenizes with specials."""

    name = "chat-template"

    def __init__(self, template: str, info: ModelInfo, tokenize: Tokenize) -> None:
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent
        )
        env.globals["raise_exception"] = _raise_template_error
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(template)
        except jinja2.TemplateError as exc:
            raise ValueError(f"the model's chat template does not compile: {exc}") from exc
        self._info = info
        self._tokenize = tokenize
        self._tagged = TaggedCalls()
        self.tool_format: ToolFormat = self._tagged
        # A template that lays out tools itself and reads `<tool_call>` (Hermes, Qwen) gets them as
        # structured data; any other template gets the tagged format written into the conversation.
        self.native_tools = "tools" in template and "<tool_call>" in template

    def render_text(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> str:
        extra: dict[str, object] = {}
        if self.native_tools:
            if tools:
                extra["tools"] = [t.as_openai() for t in tools]
        else:
            messages = self._tagged.with_tools(messages, tools)
        try:
            return self._template.render(
                messages=[_message_dict(m) for m in messages],
                add_generation_prompt=True,
                bos_token=self._info.bos_token,
                eos_token=self._info.eos_token,
                **extra,
            )
        except _TemplateRefusal as exc:
            raise InvalidRequest(f"The model's chat template refused the conversation: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise InvalidRequest(
                f"The model's chat template could not render the conversation: {exc}"
            ) from exc

    def render(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> list[int]:
        text = self.render_text(messages, tools)
        add_bos = self._info.add_bos and not (self._info.bos_token and text.startswith(self._info.bos_token))
        return self._tokenize(text, add_bos=add_bos, special=True)


class _TemplateRefusal(Exception):
    pass


def _raise_template_error(message: str) -> None:
    raise _TemplateRefusal(message)


class MistralCommonRenderer:
    """Encodes with `mistral-common`'s instruct tokenizer (system prompt placement, control tokens)."""

    name = "mistral-common"

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        raw = tokenizer.instruct_tokenizer.tokenizer
        try:
            tool_calls_token: int | None = raw.get_special_token("[TOOL_CALLS]")
        except Exception:  # a tokenizer without tool tokens may raise...
            tool_calls_token = None
        if tool_calls_token is not None and tool_calls_token <= 2:  # ...or answer <unk> (v1)
            tool_calls_token = None
        self._tagged = TaggedCalls() if tool_calls_token is None else None
        self.tool_format: ToolFormat = self._tagged or MistralCalls(tool_calls_token or 0)
        # Before v7 an assistant turn holds text or calls, not both (what the model was trained on).
        self._calls_replace_text = str(getattr(raw, "version", "v7")) in ("v1", "v2", "v3")

    def render(self, messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> list[int]:
        from mistral_common.exceptions import MistralCommonException
        from mistral_common.protocol.instruct.request import ChatCompletionRequest
        from pydantic import ValidationError

        if self._tagged is not None:
            messages, tools = self._tagged.with_tools(messages, tools), ()
        payload = [_mistral_message(m, calls_replace_text=self._calls_replace_text) for m in messages]
        try:
            request = ChatCompletionRequest.from_openai(
                messages=payload, tools=[_mistral_tool(t) for t in tools] or None
            )
            return list(self._tokenizer.encode_chat_completion(request).tokens)
        except (MistralCommonException, ValidationError, AssertionError, ValueError) as exc:
            raise InvalidRequest(f"The conversation is not valid for this model: {exc}") from exc


def _mistral_tool(tool: ToolSpec) -> dict[str, Any]:
    """As mistral-common encodes tools: a tool without parameters has `"parameters": {}`."""
    function: dict[str, Any] = {"name": tool.name, "description": tool.description}
    function["parameters"] = tool.parameters if tool.parameters is not None else {}
    return {"type": "function", "function": function}


def _mistral_message(message: Message, *, calls_replace_text: bool) -> dict[str, Any]:
    """OpenAI-style, with call ids made valid for Mistral (9 alphanumerics)."""
    out = _message_dict(message)
    for call in out.get("tool_calls", []):
        call["id"] = mistral_call_id(call["id"])
        call["function"]["arguments"] = json.dumps(call["function"]["arguments"], ensure_ascii=False)
    if "tool_call_id" in out:
        out["tool_call_id"] = mistral_call_id(out["tool_call_id"])
    if message.role == "assistant" and message.tool_calls and (calls_replace_text or not message.content):
        out.pop("content")
    return out


_PROBE = "Hello world! [INST] Привет, 世界 123 \n\n  done."


def mistral_tokenizer_for(info: ModelInfo, tokenize: Tokenize) -> Any | None:
    """The shipped mistral-common tokenizer whose vocabulary is the GGUF's, token for token."""
    try:
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    except ImportError:
        return None
    if info.metadata.get("tokenizer.ggml.model") not in ("llama", "gpt2", "tekken"):
        return None

    def single(text: str) -> bool:
        return len(tokenize(text, add_bos=False, special=True)) == 1

    candidates: list[Callable[[], Any]] = []
    if info.vocab_size == 32000:
        candidates.append(MistralTokenizer.v1)
    elif info.vocab_size == 32768 and single("[TOOL_CALLS]"):
        candidates.append(MistralTokenizer.v7 if single("[SYSTEM_PROMPT]") else MistralTokenizer.v3)
    elif info.vocab_size == 131072 and single("[TOOL_CALLS]") and not single("[SYSTEM_PROMPT]"):
        candidates.append(lambda: MistralTokenizer.v3(is_tekken=True))
    for make in candidates:
        try:
            tokenizer = make()
        except Exception as exc:  # a missing optional dependency (sentencepiece) or data file
            log.warning("mistral-common tokenizer unavailable: %s", exc)
            continue
        raw = tokenizer.instruct_tokenizer.tokenizer
        if raw.encode(_PROBE, bos=False, eos=False) == tokenize(_PROBE, add_bos=False, special=False):
            return tokenizer
    return None


def renderer_for(info: ModelInfo, tokenize: Tokenize) -> PromptRenderer:
    """mistral-common where it ships this model's tokenizer, else the GGUF's chat template."""
    tokenizer = mistral_tokenizer_for(info, tokenize)
    if tokenizer is not None:
        return MistralCommonRenderer(tokenizer)
    if info.chat_template is None:
        log.warning("the model has no chat template; using ChatML")
    return ChatTemplateRenderer(info.chat_template or CHATML_TEMPLATE, info, tokenize)
