"""Which content-safety filters a deployment's prompts and completions pass through: filters register
by name, with a factory and the sides they check. aimi's own register through `register_builtin`; a
plug-in registers through a function named by an entry point in the group `aimi.safety_filters`
(see docs/plugins.md). The model judge is not here: it is per deployment (its policy names the judge
deployment), and the fleet adds it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aimi.plugins import Registrations, load_entry_points
from aimi.safety.base import SafetyFilter
from aimi.safety.classifier import ClassifierFilter
from aimi.safety.jailbreak import JailbreakFilter
from aimi.safety.patterns import PatternFilter

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


def register_builtin(filters: FilterRegistry) -> None:
    """aimi's offline filters: the classifier and the harm patterns on both sides, the jailbreak
    patterns on prompts only (as `offline_filters` lays them out)."""
    filters.add("classifier", ClassifierFilter.load)
    filters.add("patterns", PatternFilter)
    filters.add("jailbreak", JailbreakFilter, outputs=False)


def load_plugins(registry: FilterRegistry) -> list[str]:
    """Register the filters of installed plug-ins (entry points in the group `aimi.safety_filters`)."""
    return load_entry_points(ENTRY_POINTS, registry.apply)


def filter_registry(*, plugins: bool = True) -> FilterRegistry:
    """The built-in filters, and (with `plugins`) those of installed plug-ins."""
    registry = FilterRegistry()
    registry.apply(register_builtin)
    if plugins:
        load_plugins(registry)
    return registry
