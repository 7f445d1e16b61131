"""The safety filter registry: the built-in filters, and filters of plug-ins found through entry
points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aimi.safety import ClassifierFilter, JailbreakFilter, PatternFilter
from aimi.safety.heads import OUTPUT_HEADS_FILE, Heads
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


def test_the_semantic_ensemble_loads_its_encoder_once_and_judges_completions_by_their_own_heads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[int] = []
    besides: list[Heads] = []
    model, answers = object.__new__(SemanticModel), object.__new__(SemanticModel)
    model.heads = answers.heads = type("H", (), {"labels": ("hate", "jailbreak")})()  # type: ignore[assignment]

    def load(cls: type[SemanticModel]) -> SemanticModel:
        loads.append(1)
        return model

    def beside(self: SemanticModel, heads: Heads) -> SemanticModel:
        assert self is model
        besides.append(heads)
        return answers

    monkeypatch.setattr(SemanticModel, "load", classmethod(load))
    monkeypatch.setattr(SemanticModel, "beside", beside)
    registry = filter_registry(plugins=False, ensemble="semantic")
    inputs, outputs = registry.filters()
    assert loads == [1] and len(besides) == 1
    shipped, given = Heads.load(OUTPUT_HEADS_FILE).output_thresholds, besides[0].output_thresholds
    assert shipped is not None and given is not None and np.array_equal(given, shipped)
    assert isinstance(inputs[0], SemanticFilter) and inputs[0].jailbreak and inputs[0].model is model
    assert isinstance(outputs[0], SemanticFilter) and not outputs[0].jailbreak and outputs[0].model is answers
    assert [type(f) for f in inputs[1:]] == [PatternFilter, JailbreakFilter]
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
