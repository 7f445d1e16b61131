"""Which content-safety filters a deployment's prompts and completions pass through: filters register
by name, with a factory and the sides they check. aimi's own register through `register_builtin`; a
plug-in registers through a function named by an entry point in the group `aimi.safety_filters`
(see docs/plugins.md). The model judge is not here: it is per deployment (its policy names the judge
deployment), and the fleet adds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from aimi.plugins import Registrations, load_entry_points
from aimi.safety.base import SafetyFilter
from aimi.safety.classifier import ClassifierFilter
from aimi.safety.jailbreak import JailbreakFilter
from aimi.safety.patterns import DEFAULT_PATTERNS, PatternFilter
from aimi.safety.semantic import SemanticFilter, SemanticModel

ENTRY_POINTS = "aimi.safety_filters"

Filters = tuple[list[SafetyFilter], list[SafetyFilter]]
"""The filters for prompts, and those for completions."""


@dataclass(frozen=True)
class FilterKind:
    name: str
    make: Callable[[], SafetyFilter]
    """Builds the filter (once per process; it may load weights, and runs on a worker thread)."""
    inputs: bool = True
    outputs: bool = True


class FilterRegistry:
    """The safety filters this process knows, in the order they were registered."""

    def __init__(self) -> None:
        self._kinds: dict[str, FilterKind] = {}
        self._registrations = Registrations()

    def add(
        self, name: str, make: Callable[[], SafetyFilter], *, inputs: bool = True, outputs: bool = True
    ) -> None:
        """Register a filter for prompts (`inputs`), completions (`outputs`) or both; a name
        registered again replaces the earlier filter."""
        self._kinds.pop(name, None)
        self._kinds[name] = FilterKind(name, make, inputs, outputs)

    def apply(self, register: Callable[[FilterRegistry], None]) -> None:
        """Run a registration function (once, however often it is reached)."""
        self._registrations.apply(register, self)

    @property
    def names(self) -> list[str]:
        return list(self._kinds)

    def filters(self) -> Filters:
        """Every filter built once, on the sides it checks (one instance serves both sides)."""
        inputs: list[SafetyFilter] = []
        outputs: list[SafetyFilter] = []
        for kind in self._kinds.values():
            made = kind.make()
            if kind.inputs:
                inputs.append(made)
            if kind.outputs:
                outputs.append(made)
        return inputs, outputs


def register_builtin(
    filters: FilterRegistry, classifier: Callable[[], ClassifierFilter] | None = None
) -> None:
    """aimi's default offline filters: the toxicity classifier and the harm patterns on both sides,
    the jailbreak patterns on prompts only."""
    filters.add("classifier", classifier or ClassifierFilter.load)
    filters.add("patterns", PatternFilter)
    filters.add("jailbreak", JailbreakFilter, outputs=False)


def register_semantic(filters: FilterRegistry, model: Callable[[], SemanticModel] | None = None) -> None:
    """The semantic ensemble (opt-in, `safety_ensemble = "semantic"`): the semantic classifier
    on both sides (jailbreak on prompts only; completions judged sentence by sentence in context)
    with its model loaded once, the three harm patterns that
    add to it (`patterns.DEFAULT_PATTERNS`), the jailbreak patterns on prompts.

    Chosen by measuring each filter's contribution over the semantic classifier on the dev set
    (docs/safety.md): those patterns add detections it misses without flagging benign text; the
    toxicity classifier added more false flags than true ones."""
    loaded = functools.cache(model or SemanticModel.load)
    filters.add("semantic", lambda: SemanticFilter(loaded()), outputs=False)
    outputs = functools.partial(SemanticFilter, jailbreak=False, context=True)
    filters.add("semantic-outputs", lambda: outputs(loaded()), inputs=False)
    filters.add("patterns", lambda: PatternFilter(DEFAULT_PATTERNS))
    filters.add("jailbreak", JailbreakFilter, outputs=False)


ENSEMBLES: dict[str, Callable[[FilterRegistry], None]] = {
    "classic": register_builtin,
    "semantic": register_semantic,
}
"""The built-in ensembles a server can be started with (`Settings.safety_ensemble`)."""


def load_plugins(registry: FilterRegistry) -> list[str]:
    """Register the filters of installed plug-ins (entry points in the group `aimi.safety_filters`)."""
    return load_entry_points(ENTRY_POINTS, registry.apply)


def filter_registry(*, plugins: bool = True, ensemble: str = "classic") -> FilterRegistry:
    """The built-in filters of `ensemble`, and (with `plugins`) those of installed plug-ins."""
    registry = FilterRegistry()
    registry.apply(ENSEMBLES[ensemble])
    if plugins:
        load_plugins(registry)
    return registry
