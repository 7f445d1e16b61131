from __future__ import annotations

import pytest

from aimi.engines.base import ToolCall
from aimi.errors import InvalidRequest
from aimi.inference.chat import Message
from aimi.inference.prompts import SAFE_PROMPT, ChatTemplateRenderer, with_safe_prompt
from tests.fakes import FAKE_INFO

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def renderer(template: str = SMOLLM2_TEMPLATE) -> ChatTemplateRenderer:
    return ChatTemplateRenderer(template, FAKE_INFO, lambda text, **_: list(text.encode()))


def test_the_chat_template_renders_roles_and_the_generation_prompt() -> None:
    text = renderer().render_text((Message("system", "Be brief."), Message("user", "Hi")))
    assert (
        text
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_past_tool_call_is_written_into_its_assistant_turn_for_templates_without_tools() -> None:
    call = ToolCall("abcDEF123", "f", '{"x": 1}')
    text = renderer().render_text(
        (
            Message("user", "Hi"),
            Message("assistant", None, tool_calls=(call,)),
            Message("tool", "42", tool_call_id="abcDEF123"),
        )
    )
    assert (
        '<|im_start|>assistant\n<tool_call>[{"name": "f", "arguments": {"x": 1}}]</tool_call><|im_end|>'
        in text
    )
    assert "<|im_start|>tool\n42<|im_end|>" in text


def test_a_template_that_raises_gives_a_clear_invalid_request() -> None:
    strict = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    with pytest.raises(InvalidRequest, match="no system role"):
        renderer(strict).render_text((Message("system", "S"),))


def test_the_safe_prompt_joins_a_leading_system_message() -> None:
    messages = with_safe_prompt((Message("system", "You are a helpful assistant."), Message("user", "Hi")))
    assert messages[0] == Message("system", f"{SAFE_PROMPT}\n\nYou are a helpful assistant.")
    assert messages[1] == Message("user", "Hi")


def test_the_safe_prompt_becomes_the_system_message_when_there_is_none() -> None:
    messages = with_safe_prompt((Message("user", "Hi"),))
    assert messages == (Message("system", SAFE_PROMPT), Message("user", "Hi"))


def test_the_safe_prompt_is_mistral_s_exact_text() -> None:
    assert SAFE_PROMPT == (
        "Always assist with care, respect, and truth. Respond with utmost utility yet securely. "
        "Avoid harmful, unethical, prejudiced, or negative content. Ensure replies promote fairness "
        "and positivity."
    )
