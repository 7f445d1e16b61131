"""Which content-safety filters a deployment's prompts and completions pass through: filters register
by name, with a factory and the sides they check. aimi's own register through `register_builtin`; a
plug-in registers through a function named by an entry point in the group `aimi.safety_filters`
(see docs/plugins.md). A filter made for each deployment (the model judge, which asks the deployment
its policy names) registers through `add_for_deployment` and is given a typed `ForDeployment`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from aimi.plugins import Registrations, load_entry_points
from aimi.safety.base import SafetyFilter
from aimi.safety.classifier import ClassifierFilter
from aimi.safety.heads import OUTPUT_HEADS_FILE, Heads
from aimi.safety.jailbreak import JailbreakFilter
from aimi.safety.judge import AskDeployment, register_judge
from aimi.safety.patterns import DEFAULT_PATTERNS, PatternFilter
from aimi.safety.policy import SafetyPolicy
from aimi.safety.semantic import MultilingualMember, SemanticFilter, SemanticModel, load_other_languages

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


@dataclass(frozen=True)
class ForDeployment:
    """What a filter made for one deployment is given."""

    policy: SafetyPolicy
    ask: AskDeployment
    """Asks another chat deployment of this server, by name (the model judge's way to its model)."""


@dataclass(frozen=True)
class DeploymentFilterKind:
    name: str
    make: Callable[[ForDeployment], SafetyFilter | None]
    """Builds the filter for one deployment, or None when its policy asks for none."""
    inputs: bool = True
    outputs: bool = True


class FilterRegistry:
    """The safety filters this process knows, in the order they were registered."""

    def __init__(self) -> None:
        self._kinds: dict[str, FilterKind] = {}
        self._for_deployment: dict[str, DeploymentFilterKind] = {}
        self._registrations = Registrations()

    def add(
        self, name: str, make: Callable[[], SafetyFilter], *, inputs: bool = True, outputs: bool = True
    ) -> None:
        """Register a filter for prompts (`inputs`), completions (`outputs`) or both; a name
        registered again replaces the earlier filter."""
        self._kinds.pop(name, None)
        self._kinds[name] = FilterKind(name, make, inputs, outputs)

    def add_for_deployment(
        self,
        name: str,
        make: Callable[[ForDeployment], SafetyFilter | None],
        *,
        inputs: bool = True,
        outputs: bool = True,
    ) -> None:
        """Register a filter made for each deployment (from its policy), as `add` does."""
        self._for_deployment.pop(name, None)
        self._for_deployment[name] = DeploymentFilterKind(name, make, inputs, outputs)

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

    def filters_for(self, deployment: ForDeployment) -> Filters:
        """The filters made for one deployment, on the sides they check (cheap: no weights)."""
        inputs: list[SafetyFilter] = []
        outputs: list[SafetyFilter] = []
        for kind in self._for_deployment.values():
            made = kind.make(deployment)
            if made is not None and kind.inputs:
                inputs.append(made)
            if made is not None and kind.outputs:
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


def register_semantic(
    filters: FilterRegistry,
    model: Callable[[], SemanticModel] | None = None,
    completions: Callable[[], SemanticModel] | None = None,
    multilingual: Callable[[], MultilingualMember] | None = MultilingualMember.load,
    other_languages: Callable[[], SemanticModel] | None = load_other_languages,
) -> None:
    """The semantic ensemble (a server's default, `safety_ensemble = "semantic"`): the semantic
    classifier on both sides (jailbreak on prompts only; completions judged sentence by sentence in
    context, by their own heads at their own thresholds) with its encoder loaded once, its
    multilingual and other-languages members on prompts, the three
    harm patterns that add to it (`patterns.DEFAULT_PATTERNS`), the jailbreak patterns on prompts.
    `model` loads the prompts' model and `completions` the completions' (by default the shipped
    heads, `HEADS_FILE` and `OUTPUT_HEADS_FILE`, on one encoder); given `model` alone, both sides
    are judged by it. `multilingual` loads the multilingual member, which judges the windows of
    prompts that are not in English while the semantic classifier judges the others, each window
    routed once for all of them (`semantic.MultilingualMember`, `routing.WindowRouter`; None: no
    member, the classifier judges every window).
    `other_languages` loads the other-languages member's model, which judges the windows in
    languages the multilingual encoder does not read (`MultilingualMember.others_filter`; None, or
    no multilingual member: the multilingual member judges every window not in English).

    Chosen by measuring each filter's contribution over the semantic classifier on the dev set
    (docs/safety.md): those patterns add detections it misses without flagging benign text; the
    toxicity classifier added more false flags than true ones."""
    loaded = functools.cache(model or SemanticModel.load)
    if completions is None:
        completions = loaded if model is not None else lambda: loaded().beside(Heads.load(OUTPUT_HEADS_FILE))
    answers = functools.cache(completions)
    member = functools.cache(multilingual) if multilingual is not None else None
    others = functools.cache(other_languages) if other_languages is not None and member is not None else None

    def semantic() -> SemanticFilter:
        model = loaded()
        return member().english_filter(model) if member is not None else SemanticFilter(model)

    filters.add("semantic", semantic, outputs=False)
    if member is not None:
        filters.add(
            "semantic-multilingual", lambda: member().filter(others=others is not None), outputs=False
        )
    if member is not None and others is not None:
        filters.add("semantic-other-languages", lambda: member().others_filter(others()), outputs=False)
    outputs = functools.partial(SemanticFilter, jailbreak=False, context=True, completions=True)
    filters.add("semantic-outputs", lambda: outputs(answers()), inputs=False)
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
    """The built-in filters of `ensemble`, the model judge, and (with `plugins`) the filters of
    installed plug-ins."""
    registry = FilterRegistry()
    registry.apply(ENSEMBLES[ensemble])
    registry.apply(register_judge)
    if plugins:
        load_plugins(registry)
    return registry
