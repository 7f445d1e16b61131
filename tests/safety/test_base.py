from __future__ import annotations

from aimi.safety.base import Category, FilterResult, Severity, worst


def test_severities_are_ordered_from_safe_to_high() -> None:
    assert [s.rank for s in Severity] == [0, 1, 2, 3]
    assert Severity.HIGH.at_least(Severity.MEDIUM)
    assert Severity.MEDIUM.at_least(Severity.MEDIUM)
    assert not Severity.LOW.at_least(Severity.MEDIUM)


def test_the_worst_of_no_severities_is_safe() -> None:
    assert worst([]) is Severity.SAFE
    assert worst([Severity.LOW, Severity.HIGH, Severity.SAFE]) is Severity.HIGH


def test_categories_and_severities_are_spelled_as_on_the_wire() -> None:
    assert [c.value for c in Category] == ["hate", "sexual", "violence", "self_harm"]
    assert Severity("medium") is Severity.MEDIUM


def test_a_result_with_an_error_is_not_ok_and_evaluates_nothing() -> None:
    result = FilterResult(filter="x", error="boom")
    assert not result.ok
    assert result.evaluated == frozenset()
