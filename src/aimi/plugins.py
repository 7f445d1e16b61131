"""Plug-ins: packages that add engines or safety filters through Python entry points, the way `llm`
and `datasette` load theirs. An entry point in a group names a registration function; aimi calls it
with the registry of that group:

    [project.entry-points."aimi.engines"]
    echo = "aimi_echo:register"          # def register(engines: EngineRegistry) -> None

    [project.entry-points."aimi.safety_filters"]
    shouting = "aimi_shouting:register"  # def register(filters: FilterRegistry) -> None

aimi's own engines and filters register through the same kind of function (called directly, so they
are there whether or not the package's entry points are installed). See docs/plugins.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

log = logging.getLogger("aimi.plugins")


class Registrations:
    """Remembers which registration functions ran, so that one reached twice (aimi's own, called
    directly and also named by an installed entry point) runs once."""

    def __init__(self) -> None:
        self._applied: set[object] = set()

    def apply(self, register: Callable[[Any], None], registry: object) -> None:
        if register in self._applied:
            return
        self._applied.add(register)
        register(registry)


def load_entry_points(
    group: str,
    apply: Callable[[Callable[[Any], None]], None],
    found: Iterable[EntryPoint] | None = None,
) -> list[str]:
    """Apply the registration function of every entry point in `group`; the names of those that
    loaded. A plug-in that fails to import or register is logged and left out; the others load."""
    loaded = []
    for entry in entry_points(group=group) if found is None else found:
        try:
            apply(entry.load())
        except Exception:
            log.exception(
                "the plug-in %s (%s, group %s) failed to load; left out", entry.name, entry.value, group
            )
        else:
            loaded.append(entry.name)
    return loaded
