from __future__ import annotations

import json
from typing import Any

import pytest

from aimi.errors import EngineUnavailable
from aimi.safety.base import Category, Severity
from aimi.safety.judge import VERDICT_SCHEMA, JudgeFilter, parse_verdict

pytestmark = pytest.mark.anyio

VERDICT = {"hate": "safe", "sexual": "safe", "violence": "high", "self_harm": "safe", "jailbreak": False}


class ScriptedJudge:
    """An `Ask` that records what it was sent and answers with a fixed text (or raises)."""

    def __init__(self, answer: str | BaseException) -> None:
        self.answer = answer
        self.calls: list[tuple[list[dict[str, str]], dict[str, Any]]] = []

    async def __call__(self, messages: list[dict[str, str]], schema: dict[str, Any]) -> str:
        self.calls.append((messages, schema))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


async def test_the_judge_sends_the_text_quoted_with_the_verdict_schema() -> None:
    ask = ScriptedJudge(json.dumps(VERDICT))
    await JudgeFilter(ask).check("some </text> text")
    ((messages, schema),) = ask.calls
    assert schema is VERDICT_SCHEMA
    assert messages[0]["role"] == "system"
    assert messages[1]["content"] == "<text>\nsome </ text> text\n</text>"


async def test_a_valid_verdict_evaluates_every_category() -> None:
    result = await JudgeFilter(ScriptedJudge(json.dumps(VERDICT))).check("I will kill you")
    assert result.ok
    assert result.evaluated == frozenset(Category)
    assert result.severities[Category.VIOLENCE] is Severity.HIGH
    assert result.jailbreak is False
    assert result.evidence == ("judge rated violence high",)


@pytest.mark.parametrize(
    "answer",
    [
        "not json at all",
        '{"hate": "extreme", "sexual": "safe", "violence": "safe", "self_harm": "safe", "jailbreak": false}',
        '{"hate": "safe", "jailbreak": "yes"}',
        "[1, 2, 3]",
        "{}",
        '{"hate": ',
    ],
)
async def test_an_answer_that_is_not_a_verdict_leaves_every_category_not_evaluated(answer: str) -> None:
    result = await JudgeFilter(ScriptedJudge(answer)).check("hello")
    assert not result.ok
    assert result.evaluated == frozenset()
    assert result.severities == {}
    assert result.jailbreak is None


async def test_an_unreachable_judge_leaves_every_category_not_evaluated() -> None:
    result = await JudgeFilter(ScriptedJudge(EngineUnavailable("down"))).check("hello")
    assert not result.ok
    assert "could not answer" in (result.error or "")


async def test_empty_text_is_safe_without_asking_the_model() -> None:
    ask = ScriptedJudge("unused")
    result = await JudgeFilter(ask).check("  ")
    assert ask.calls == []
    assert result.evaluated == frozenset(Category)
    assert result.severities == {}


async def test_text_over_the_limit_is_not_sent() -> None:
    ask = ScriptedJudge(json.dumps(VERDICT))
    result = await JudgeFilter(ask, max_chars=10).check("x" * 11)
    assert ask.calls == []
    assert not result.ok


def test_the_parser_accepts_fences_case_and_a_hyphenated_self_harm() -> None:
    answer = '```json\n{"Hate": "LOW", "self-harm": "medium", "jailbreak": true}\n```'
    severities, jailbreak = parse_verdict(answer)
    assert severities == {Category.HATE: Severity.LOW, Category.SELF_HARM: Severity.MEDIUM}
    assert jailbreak is True


def test_a_category_the_answer_leaves_out_is_simply_not_evaluated() -> None:
    severities, jailbreak = parse_verdict('{"violence": "safe"}')
    assert severities == {Category.VIOLENCE: Severity.SAFE}
    assert jailbreak is None
