"""The engines aimi ships, registered the way a plug-in registers its own: `register(engines)`.

- `embedded`: the model aimi ships (SmolLM2-135M-Instruct), on llama.cpp;
- `url`: an OpenAI-compatible server at an http(s) URL (vLLM, llama-server, Ollama, the Mistral
  API, another aimi), forwarded to;
- `gguf`: a GGUF file on this machine, on llama.cpp (asked last: it takes whatever else is a path).

Engines are imported when one is built, not when the registry is made: validating a source never
loads llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

from aimi.engines.base import ChatModel
from aimi.engines.llamacpp.embedded import EMBEDDED
from aimi.engines.llamacpp.sources import check_gguf
from aimi.engines.registry import EngineRegistry, EngineSetup
from aimi.engines.upstream.source import check_url, is_url


def register(engines: EngineRegistry) -> None:
    engines.add("gguf", claims=lambda source: True, check=check_gguf, build=_llamacpp)
    engines.add("url", claims=is_url, check=check_url, build=_upstream)
    engines.add("embedded", claims=lambda source: source == EMBEDDED, build=_llamacpp)


def _llamacpp(source: str, setup: EngineSetup) -> ChatModel:
    from aimi.engines.llamacpp import LlamaCppEngine
    from aimi.engines.llamacpp.embedded import embedded_model_path

    settings = setup.settings
    return LlamaCppEngine(
        embedded_model_path() if source == EMBEDDED else Path(source),
        name=setup.offer.name,
        provider=setup.offer.provider,
        context_size=settings.context_size,
        slots=settings.parallel,
        shared_kv_cache=settings.kv_cache == "shared",
        threads=settings.threads,
        max_waiting=settings.max_queue,
        prompt_cache_bytes=settings.prompt_cache_mb << 20,
        jump_forward=settings.jump_forward,
        on_progress=setup.on_progress,
    )


def _upstream(source: str, setup: EngineSetup) -> ChatModel:
    from aimi.engines.upstream import UpstreamEngine

    return UpstreamEngine(
        source,
        name=setup.offer.name,
        provider=setup.offer.provider,
        context_length=setup.offer.context_length,
        api_key=setup.settings.upstream_key(source),
    )
