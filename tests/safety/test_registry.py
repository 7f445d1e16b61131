"""The safety filter registry: the built-in filters, and filters of plug-ins found through entry
points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aimi.safety import ClassifierFilter, JailbreakFilter, PatternFilter
from aimi.safety.heads import (
    HEADS_FILE,
    MULTILINGUAL_HEADS_FILE,
    OTHER_LANGUAGES_HEADS_FILE,
    OUTPUT_HEADS_FILE,
    Heads,
)
from aimi.safety.language import Reader
from aimi.safety.registry import FilterRegistry, filter_registry, load_plugins
from aimi.safety.semantic import SemanticFilter, SemanticModel
from tests.distributions import install

SHOUTING = """
from aimi.safety.base import FilterResult


class ShoutingFilter:
    name = "shouting"
    categories = frozenset()

    async def check(self, text):
        return FilterResult(filter=self.name)


def register(filters):
    filters.add("shouting", ShoutingFilter, outputs=False)
"""


def test_the_built_in_filters_are_registered_on_the_sides_offline_filters_puts_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ClassifierFilter, "load", classmethod(lambda cls: "classifier"))
    registry = filter_registry(plugins=False)
    assert registry.names == ["classifier", "patterns", "jailbreak"]
    inputs, outputs = registry.filters()
    assert inputs[0] == outputs[0] == "classifier"  # one instance serves both sides
    assert [type(f) for f in inputs[1:]] == [PatternFilter, JailbreakFilter]
    assert [type(f) for f in outputs[1:]] == [PatternFilter]


def test_the_semantic_ensemble_loads_each_model_once_and_has_heads_for_completions_and_other_languages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[Path] = []
    besides: list[Heads] = []
    model, answers, other, e5 = (object.__new__(SemanticModel) for _ in range(4))
    model.heads = answers.heads = other.heads = e5.heads = type("H", (), {"labels": ("hate", "jailbreak")})()  # type: ignore[assignment]

    def load(cls: type[SemanticModel], heads_file: Path = HEADS_FILE) -> SemanticModel:
        loads.append(heads_file)
        return {HEADS_FILE: model, MULTILINGUAL_HEADS_FILE: other, OTHER_LANGUAGES_HEADS_FILE: e5}[heads_file]

    def beside(self: SemanticModel, heads: Heads) -> SemanticModel:
        assert self is model
        besides.append(heads)
        return answers

    monkeypatch.setattr(SemanticModel, "load", classmethod(load))
    monkeypatch.setattr(SemanticModel, "beside", beside)
    registry = filter_registry(plugins=False, ensemble="semantic")
    inputs, outputs = registry.filters()
    assert loads == [HEADS_FILE, MULTILINGUAL_HEADS_FILE, OTHER_LANGUAGES_HEADS_FILE] and len(besides) == 1
    shipped, given = Heads.load(OUTPUT_HEADS_FILE).output_thresholds, besides[0].output_thresholds
    assert shipped is not None and given is not None and np.array_equal(given, shipped)
    assert isinstance(inputs[0], SemanticFilter) and inputs[0].jailbreak and inputs[0].model is model
    assert isinstance(outputs[0], SemanticFilter) and not outputs[0].jailbreak and outputs[0].model is answers
    member = inputs[1]
    assert (
        isinstance(member, SemanticFilter)
        and member.model is other
        and member.readers == {Reader.MULTILINGUAL}
    )
    assert member.name == "semantic-multilingual" and member.jailbreak and not member.completions
    others = inputs[2]
    assert isinstance(others, SemanticFilter) and others.model is e5 and others.readers == {Reader.OTHER}
    assert others.name == "semantic-other-languages" and others.jailbreak and not others.completions
    # Each window is judged by one of them: the members those the language gate finds foreign, each
    # in the languages its encoder reads; one router cuts and tests a prompt for all three.
    router = inputs[0].router
    assert router is not None and member.router is router and others.router is router
    english, spanish = "Good morning, how are you today?", "¿Dónde está la estación de tren más cercana?"
    swedish = "Kan du rekommendera en bra bok för sommaren?"
    routing = router.route(f"{english}\n{spanish}\n{swedish}")
    assert routing.of(inputs[0].readers) == [english]
    assert routing.of(member.readers) == [spanish] and routing.of(others.readers) == [swedish]
    assert outputs[0].select is None and outputs[0].router is None
    assert [type(f) for f in inputs[3:]] == [PatternFilter, JailbreakFilter]
    assert [type(f) for f in outputs[1:]] == [PatternFilter]


def test_a_filter_plug_in_joins_the_built_in_filters_on_its_sides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install(
        monkeypatch,
        tmp_path / "site",
        "aimi_shouting",
        SHOUTING,
        {"aimi.safety_filters": {"shouting": "aimi_shouting:register"}},
    )
    registry = filter_registry()
    assert registry.names == ["classifier", "patterns", "jailbreak", "shouting"]
    only_plug_ins = FilterRegistry()
    assert load_plugins(only_plug_ins) == ["shouting"]
    inputs, outputs = only_plug_ins.filters()
    assert [f.name for f in inputs] == ["shouting"]
    assert outputs == []
