"""`GET /metrics`: Prometheus text, read from the engines' own counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aimi.inference.fleet import Fleet


class EngineCollector(Collector):
    """One sample per deployment for each engine counter."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "running": GaugeMetricFamily("aimi_engine_running_sequences", "Sequences decoding now",
                                         labels=["deployment"]),
            "waiting": GaugeMetricFamily("aimi_engine_waiting_requests", "Requests waiting for a slot",
                                         labels=["deployment"]),
            "slots": GaugeMetricFamily("aimi_engine_slots", "Sequence slots", labels=["deployment"]),
            "requests": CounterMetricFamily("aimi_engine_requests", "Requests admitted",
                                            labels=["deployment"]),
            "prompt_tokens": CounterMetricFamily("aimi_engine_prompt_tokens", "Prompt tokens admitted",
                                                 labels=["deployment"]),
            "prompt_tokens_reused": CounterMetricFamily(
                "aimi_engine_prompt_tokens_reused", "Prompt tokens served from the prefix cache",
                labels=["deployment"]),
            "prompt_tokens_shared": CounterMetricFamily(
                "aimi_engine_prompt_tokens_shared",
                "Prompt tokens of the reused ones copied from another slot's cache", labels=["deployment"]),
            "generated_tokens": CounterMetricFamily("aimi_engine_generated_tokens", "Tokens generated",
                                                    labels=["deployment"]),
            "decode_steps": CounterMetricFamily("aimi_engine_decode_steps", "llama_decode calls",
                                                labels=["deployment"]),
            "decode_seconds": CounterMetricFamily("aimi_engine_decode_seconds", "Time inside decode",
                                                  labels=["deployment"]),
        }  # fmt: skip
        hit_rate = GaugeMetricFamily(
            "aimi_engine_prefix_cache_hit_rate",
            "Share of prompt tokens served from the prefix cache",
            labels=["deployment"],
        )
        for served in self._fleet.all():
            name = served.deployment.name
            stats = served.service.engine.stats()
            for field, family in families.items():
                family.add_metric([name], float(getattr(stats, field)))
            rate = stats.prompt_tokens_reused / stats.prompt_tokens if stats.prompt_tokens else 0.0
            hit_rate.add_metric([name], rate)
        yield from families.values()
        yield hit_rate


def registry_for(fleet: Fleet) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(fleet))
    return registry


async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
