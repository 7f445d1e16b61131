"""Which engine serves a source: engines register by the kind of source they serve (the embedded
model, a GGUF file, an upstream server's URL, ...). The platform asks the registry whether a source
is valid before it stores a deployment; the fleet asks it for the engine that serves one.

Built-in engines register through `aimi.engines.builtin.register`, the same function shape a third
party provides: a callable taking the registry, named by an entry point in the group `aimi.engines`
(as `llm` and `datasette` load their plugins):

    [project.entry-points."aimi.engines"]
    echo = "aimi_echo:register"

See docs/plugins.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aimi.engines.base import ChatModel
from aimi.errors import InvalidRequest
from aimi.plugins import Registrations, load_entry_points
from aimi.settings import Settings

ENTRY_POINTS = "aimi.engines"


class Offered(Protocol):
    """What an engine is told of the catalog offer it serves (the platform's `Offer` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def context_length(self) -> int: ...


@dataclass(frozen=True)
class EngineSetup:
    """What an engine is built with, besides its source."""

    offer: Offered
    settings: Settings
    on_progress: Callable[[float], None] | None = None
    """Called with the fraction of the weights loaded (an engine that loads weights may call it)."""


Build = Callable[[str, EngineSetup], ChatModel]
"""Makes the (not yet started) engine for a source; an engine class whose constructor takes
`(source, setup)` is one."""


def _as_given(source: str) -> str:
    return source


@dataclass(frozen=True)
class EngineKind:
    """One kind of source and the engine that serves it."""

    name: str
    claims: Callable[[str], bool]
    """Whether a source is of this kind (by its form only: cheap, no I/O)."""
    build: Build
    check: Callable[[str], str] = _as_given
    """Validates a source this kind claims and returns it as it is stored; raises `InvalidRequest`."""


class EngineRegistry:
    """The engine kinds this process knows. The kind registered last is asked first, so that a plug-in
    can claim sources before the built-in kinds (the GGUF file kind takes whatever nobody else does)."""

    def __init__(self) -> None:
        self._kinds: dict[str, EngineKind] = {}
        self._registrations = Registrations()

    def add(
        self,
        name: str,
        *,
        claims: Callable[[str], bool],
        build: Build,
        check: Callable[[str], str] = _as_given,
    ) -> None:
        """Register a kind of source; a name registered again replaces the earlier kind."""
        self._kinds.pop(name, None)
        self._kinds[name] = EngineKind(name, claims, build, check)

    def apply(self, register: Callable[[EngineRegistry], None]) -> None:
        """Run a registration function (once, however often it is reached)."""
        self._registrations.apply(register, self)

    @property
    def kinds(self) -> list[str]:
        """Kind names, in the order they are asked."""
        return list(reversed(self._kinds))

    def kind_of(self, source: str) -> EngineKind:
        for kind in reversed(self._kinds.values()):
            if kind.claims(source):
                return kind
        raise InvalidRequest(f"No engine serves the source '{source}'.", param="source")

    def check(self, source: str) -> str:
        """The source as it is stored, once the kind that claims it accepts it."""
        return self.kind_of(source).check(source)

    def build(self, source: str, setup: EngineSetup) -> ChatModel:
        return self.kind_of(source).build(source, setup)

    def loader(
        self, settings: Settings, *, on_progress: Callable[[float], None] | None = None
    ) -> Callable[[str, Offered], ChatModel]:
        """The fleet's engine factory: an engine per source and offer, built with these settings."""

        def load(source: str, offer: Offered) -> ChatModel:
            return self.build(source, EngineSetup(offer, settings, on_progress))

        return load


def load_plugins(registry: EngineRegistry) -> list[str]:
    """Register the engines of installed plug-ins (entry points in the group `aimi.engines`)."""
    return load_entry_points(ENTRY_POINTS, registry.apply)


def engine_registry(*, plugins: bool = True) -> EngineRegistry:
    """The built-in engine kinds, and (with `plugins`) those of installed plug-ins."""
    from aimi.engines import builtin

    registry = EngineRegistry()
    registry.apply(builtin.register)
    if plugins:
        load_plugins(registry)
    return registry
