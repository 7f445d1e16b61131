"""`GET /metrics` (admin key): Prometheus text, read from the engines' own counters at scrape time.

Deployments that serve the same model source share one engine, so engine counters are reported once
per engine, labelled by that source (`engine`) and the model's name (`model`); which deployments an
engine serves is a separate series, `aimi_deployment_info{deployment, model, engine} 1`.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aimi.api.management import require_admin
from aimi.api.services import services
from aimi.inference.fleet import Fleet

_ENGINE = ["engine", "model"]


def engine_label(source: str) -> str:
    """A model source as a label: a URL without its query or fragment (which could carry a secret)."""
    if source.startswith(("http://", "https://")):
        parts = urlsplit(source)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    return source


class EngineCollector(Collector):
    """One sample per engine for each engine counter, and one info sample per deployment."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "running": GaugeMetricFamily("aimi_engine_running_sequences", "Sequences decoding now",
                                         labels=_ENGINE),
            "waiting": GaugeMetricFamily("aimi_engine_waiting_requests", "Requests waiting for a slot",
                                         labels=_ENGINE),
            "slots": GaugeMetricFamily("aimi_engine_slots", "Sequence slots", labels=_ENGINE),
            "requests": CounterMetricFamily("aimi_engine_requests", "Requests admitted", labels=_ENGINE),
            "prompt_tokens": CounterMetricFamily("aimi_engine_prompt_tokens", "Prompt tokens admitted",
                                                 labels=_ENGINE),
            "prompt_tokens_reused": CounterMetricFamily(
                "aimi_engine_prompt_tokens_reused", "Prompt tokens served from the prefix cache",
                labels=_ENGINE),
            "prompt_tokens_shared": CounterMetricFamily(
                "aimi_engine_prompt_tokens_shared",
                "Prompt tokens of the reused ones copied from another slot's cache", labels=_ENGINE),
            "prompt_tokens_restored": CounterMetricFamily(
                "aimi_engine_prompt_tokens_restored",
                "Prompt tokens of the reused ones restored from the host-memory prompt cache",
                labels=_ENGINE),
            "generated_tokens": CounterMetricFamily("aimi_engine_generated_tokens", "Tokens generated",
                                                    labels=_ENGINE),
            "jumped_tokens": CounterMetricFamily(
                "aimi_engine_jumped_tokens",
                "Tokens generated that a grammar forced, appended without sampling (jump-forward)",
                labels=_ENGINE),
            "decode_steps": CounterMetricFamily("aimi_engine_decode_steps", "llama_decode calls",
                                                labels=_ENGINE),
            "decode_seconds": CounterMetricFamily("aimi_engine_decode_seconds", "Time inside decode",
                                                  labels=_ENGINE),
            "prompt_cache_bytes": GaugeMetricFamily(
                "aimi_engine_prompt_cache_bytes",
                "Host memory held by the prompt cache (sequence states kept beyond the slots)",
                labels=_ENGINE),
            "prompt_cache_entries": GaugeMetricFamily(
                "aimi_engine_prompt_cache_entries", "Sequence states in the prompt cache", labels=_ENGINE),
        }  # fmt: skip
        hit_rate = GaugeMetricFamily(
            "aimi_engine_prefix_cache_hit_rate",
            "Share of prompt tokens served from the prefix cache",
            labels=_ENGINE,
        )
        deployments = GaugeMetricFamily(
            "aimi_deployment_info",
            "A deployment this process serves, and the engine that serves it",
            labels=["deployment", *_ENGINE],
        )
        seen: set[int] = set()
        for served in self._fleet.all():
            engine = served.service.engine
            labels = [engine_label(served.deployment.source), served.offer.name]
            deployments.add_metric([served.deployment.name, *labels], 1.0)
            if id(engine) in seen:
                continue  # shared with a deployment already reported
            seen.add(id(engine))
            stats = engine.stats()
            for field, family in families.items():
                family.add_metric(labels, float(getattr(stats, field)))
            rate = stats.prompt_tokens_reused / stats.prompt_tokens if stats.prompt_tokens else 0.0
            hit_rate.add_metric(labels, rate)
        yield from families.values()
        yield hit_rate
        yield deployments


def registry_for(fleet: Fleet) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(fleet))
    return registry


async def metrics(request: Request) -> Response:
    """Behind the admin key, as `/api/` is: the names and load of every deployment are not public."""
    await require_admin(request)
    return Response(generate_latest(services(request).metrics), media_type=CONTENT_TYPE_LATEST)
