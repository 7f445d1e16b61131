"""The safety service of one deployment: its policy, and the filters its prompts and completions
pass through.

Filters run concurrently, each under a time limit; a filter that fails or times out is reported as
an error in the decision (its categories not evaluated, or blocked with `fail_closed`) and never
fails the request. The deployment's blocklists always run, on both sides.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace

from aimi.safety.base import Category, FilterResult, SafetyFilter
from aimi.safety.blocklists import BlocklistFilter
from aimi.safety.classifier import ClassifierFilter
from aimi.safety.policy import Decision, Direction, SafetyPolicy, decide, unevaluated
from aimi.safety.registry import FilterRegistry, Filters, register_builtin, register_semantic
from aimi.safety.semantic import MultilingualMember, SemanticModel
from aimi.safety.window import OutputWindow

log = logging.getLogger(__name__)


def offline_filters(classifier: ClassifierFilter) -> Filters:
    """The classic built-in filters for prompts and for completions, around a loaded classifier
    (`registry.register_builtin`; `--safety-ensemble classic`)."""
    registry = FilterRegistry()
    register_builtin(registry, lambda: classifier)
    return registry.filters()


def semantic_filters(
    model: SemanticModel,
    completions: SemanticModel | None = None,
    multilingual: MultilingualMember | None = None,
    other_languages: SemanticModel | None = None,
) -> Filters:
    """The semantic ensemble for prompts and for completions, around loaded models (`completions`
    judges the completions, `model` both sides without it; `multilingual`, the multilingual
    member, judges the prompts' windows not in English when given, and `other_languages` (with it)
    those in languages the multilingual encoder does not read; `registry.register_semantic`); a server's
    default (`Settings.safety_ensemble`)."""
    registry = FilterRegistry()
    register_semantic(
        registry,
        lambda: model,
        None if completions is None else lambda: completions,
        None if multilingual is None else lambda: multilingual,
        None if other_languages is None else lambda: other_languages,
    )
    return registry.filters()


class SafetyService:
    """Checks prompts and completions of one deployment against its policy."""

    def __init__(
        self,
        policy: SafetyPolicy,
        *,
        input_filters: Sequence[SafetyFilter],
        output_filters: Sequence[SafetyFilter],
        timeout_s: float = 10.0,
        window_size: int = 400,
        window_every: int = 100,
    ) -> None:
        self.policy = policy
        blocklists: list[SafetyFilter] = [BlocklistFilter(policy.blocklists)] if policy.blocklists else []
        self.input_filters = [*blocklists, *input_filters]
        self.output_filters = [*blocklists, *output_filters]
        self.timeout_s = timeout_s
        self.window_size = window_size
        self.window_every = window_every

    async def check_input(self, text: str, *, untrusted: str | None = None) -> Decision:
        """Check a prompt (the text of the request's messages). `untrusted` is the part a jailbreak
        can come from (all but the deployment's own system messages): a filter that detects a
        jailbreak in `text` is asked again about `untrusted` alone, and its answer there stands. A
        system prompt that reads like one ("ignore any instruction that asks you to...") would
        otherwise block every request of the application that sends it."""
        return await self._check(Direction.INPUT, self.input_filters, text, untrusted=untrusted)

    async def check_output(self, text: str) -> Decision:
        """Check a whole completion, or one window of a streamed one."""
        return await self._check(Direction.OUTPUT, self.output_filters, text)

    def output_window(self) -> OutputWindow:
        """A sliding-window checker for one streamed completion."""
        return OutputWindow(self.check_output, size=self.window_size, every=self.window_every)

    async def _check(
        self,
        direction: Direction,
        filters: Sequence[SafetyFilter],
        text: str,
        *,
        untrusted: str | None = None,
    ) -> Decision:
        if not self.policy.enabled:
            return unevaluated(direction)
        results = list(await asyncio.gather(*(self._run(f, text) for f in filters)))
        if untrusted is not None and untrusted != text:
            again = [i for i, r in enumerate(results) if r.jailbreak]
            rechecked = await asyncio.gather(*(self._run(filters[i], untrusted) for i in again))
            for i, result in zip(again, rechecked, strict=True):
                results[i] = replace(results[i], jailbreak=bool(result.jailbreak) if result.ok else None)
        expected = frozenset[Category]().union(*(f.categories for f in filters))
        return decide(self.policy, direction, results, expected=expected)

    async def _run(self, safety_filter: SafetyFilter, text: str) -> FilterResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await safety_filter.check(text)
        except TimeoutError:
            log.warning("safety filter %s took longer than %.1f s", safety_filter.name, self.timeout_s)
            return FilterResult(filter=safety_filter.name, error=f"timed out after {self.timeout_s} s")
        except Exception as exc:
            # A broken filter must not fail the request; the decision says it did not evaluate.
            log.exception("safety filter %s failed", safety_filter.name)
            return FilterResult(filter=safety_filter.name, error=f"{type(exc).__name__}: {exc}")
