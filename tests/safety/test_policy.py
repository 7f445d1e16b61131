from __future__ import annotations

import pytest

from aimi.errors import InvalidRequest
from aimi.safety.base import BlocklistMatch, Category, FilterResult, Severity
from aimi.safety.policy import Direction, SafetyPolicy, Thresholds, combine, decide

H, S, V, SH = Category.HATE, Category.SEXUAL, Category.VIOLENCE, Category.SELF_HARM
IN, OUT = Direction.INPUT, Direction.OUTPUT


def classifier_result(**severities: Severity) -> FilterResult:
    return FilterResult(
        filter="clf",
        evaluated=frozenset({H, V}),
        severities={Category(k): s for k, s in severities.items()},
    )


def test_the_default_policy_blocks_medium_and_high_but_not_low() -> None:
    policy = SafetyPolicy()
    for severity, blocked in [(Severity.LOW, False), (Severity.MEDIUM, True), (Severity.HIGH, True)]:
        decision = decide(policy, IN, [classifier_result(violence=severity)])
        assert decision.categories[V].filtered is blocked
        assert decision.filtered is blocked


def test_a_category_no_filter_evaluates_is_reported_as_not_evaluated_never_safe() -> None:
    decision = decide(SafetyPolicy(), IN, [classifier_result(hate=Severity.SAFE)])
    assert decision.categories[H].evaluated
    assert decision.categories[H].severity is Severity.SAFE
    assert decision.categories[H].filters == ("clf",)
    for category in (S, SH):
        assert not decision.categories[category].evaluated
        assert decision.categories[category].severity is None


def test_evidence_from_a_filter_that_cannot_vouch_raises_severity_without_evaluating() -> None:
    patterns = FilterResult(filter="patterns", severities={SH: Severity.HIGH})
    decision = decide(SafetyPolicy(), IN, [classifier_result(), patterns])
    assert decision.categories[SH].severity is Severity.HIGH
    assert decision.categories[SH].filtered
    assert not decision.categories[SH].evaluated
    assert decision.reasons == ("self_harm high (patterns)",)


def test_the_worst_severity_wins_and_names_its_filter() -> None:
    other = FilterResult(filter="judge", evaluated=frozenset({V}), severities={V: Severity.HIGH})
    decision = decide(SafetyPolicy(), IN, [classifier_result(violence=Severity.LOW), other])
    assert decision.categories[V].severity is Severity.HIGH
    assert decision.categories[V].filters == ("judge",)


def test_thresholds_are_per_category_and_direction() -> None:
    policy = SafetyPolicy(input=Thresholds(violence=Severity.HIGH), output=Thresholds(violence=Severity.LOW))
    results = [classifier_result(violence=Severity.MEDIUM)]
    assert not decide(policy, IN, results).filtered
    assert decide(policy, OUT, results).filtered
    low = [classifier_result(violence=Severity.LOW)]
    assert decide(policy, OUT, low).filtered


def test_a_threshold_of_none_only_annotates() -> None:
    policy = SafetyPolicy(input=Thresholds(hate=None))
    decision = decide(policy, IN, [classifier_result(hate=Severity.HIGH)])
    assert decision.categories[H].severity is Severity.HIGH
    assert not decision.filtered


def test_a_threshold_of_safe_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        Thresholds(hate=Severity.SAFE)


def test_jailbreaks_block_prompts_only_and_can_be_allowed() -> None:
    found = [FilterResult(filter="jb", jailbreak=True)]
    assert decide(SafetyPolicy(), IN, found).jailbreak.filtered
    assert decide(SafetyPolicy(), IN, found).reasons == ("jailbreak (jb)",)
    assert not decide(SafetyPolicy(), OUT, found).filtered
    assert decide(SafetyPolicy(), OUT, found).jailbreak.detected is True
    assert not decide(SafetyPolicy(block_jailbreak=False), IN, found).filtered


def test_jailbreak_is_not_evaluated_when_no_filter_looks() -> None:
    assert decide(SafetyPolicy(), IN, [classifier_result()]).jailbreak.detected is None


def test_a_blocklist_match_blocks_both_ways() -> None:
    match = BlocklistMatch("brands", ("Globex",))
    results = [FilterResult(filter="blocklists", blocklist_matches=(match,))]
    for direction in (IN, OUT):
        decision = decide(SafetyPolicy(), direction, results)
        assert decision.filtered
        assert decision.blocklist_matches == (match,)
        assert decision.reasons == ("blocklist 'brands': Globex",)


def test_a_failed_filter_evaluates_nothing_and_its_error_is_kept() -> None:
    failed = FilterResult(filter="clf", error="timed out")
    decision = decide(SafetyPolicy(), IN, [failed], expected=frozenset({H, V}))
    assert not decision.filtered
    assert not decision.categories[H].evaluated
    assert decision.errors == ("clf: timed out",)


def test_fail_closed_blocks_what_a_failed_filter_should_have_evaluated() -> None:
    failed = FilterResult(filter="clf", error="timed out")
    decision = decide(SafetyPolicy(fail_closed=True), IN, [failed], expected=frozenset({H, V}))
    assert decision.categories[H].filtered and decision.categories[V].filtered
    assert not decision.categories[SH].filtered
    assert "hate None (not evaluated)" in decision.reasons


def test_a_disabled_policy_evaluates_and_blocks_nothing() -> None:
    decision = decide(SafetyPolicy(enabled=False), IN, [classifier_result(hate=Severity.HIGH)])
    assert not decision.enabled
    assert not decision.filtered
    assert all(not c.evaluated and c.severity is None for c in decision.categories.values())


def test_combining_window_decisions_keeps_the_worst_per_category() -> None:
    first = decide(SafetyPolicy(), OUT, [classifier_result(hate=Severity.LOW)])
    second = decide(SafetyPolicy(), OUT, [classifier_result(violence=Severity.HIGH)])
    both = combine(first, second)
    assert both.categories[H].severity is Severity.LOW
    assert both.categories[V].severity is Severity.HIGH
    assert both.filtered
    assert combine(second, first).filtered


def test_a_policy_read_from_json_writes_back_the_same_json_with_every_setting() -> None:
    written = {
        "enabled": True,
        "input": {"hate": "low", "sexual": "medium", "violence": None, "self_harm": "high"},
        "output": {"hate": "medium", "sexual": "medium", "violence": "medium", "self_harm": "medium"},
        "block_jailbreak": False,
        "blocklists": [{"name": "legal", "terms": ["lawsuit"], "patterns": [r"case-\d+"]}],
        "fail_closed": True,
        "judge": "mistral",
    }
    policy = SafetyPolicy.parse(written)
    assert policy.input.of(V) is None and policy.input.of(SH) is Severity.HIGH
    assert policy.blocklists[0].find("a lawsuit over case-12") == ("lawsuit", r"case-\d+")
    assert policy.to_json() == written
    assert SafetyPolicy.parse({}) == SafetyPolicy() and "judge" not in SafetyPolicy().to_json()


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"input": {"hate": "safe"}}, "input.hate"),
        ({"output": {"gore": "low"}}, "output.gore"),
        ({"fail_closed": "yes"}, "fail_closed"),
        ({"blocklists": [{"name": "x", "terms": "lawsuit"}]}, "blocklists[0].terms"),
        ({"blocklists": [{"name": "x"}] * 33}, "blocklists"),
        ({"judge": "j" * 65}, "judge"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_setting(raw: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        SafetyPolicy.parse(raw)
    assert refused.value.param == param and f"'{param}'" in refused.value.message
