"""The engine registry: built-in kinds of source, and the engine each one builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimi.engines.base import ModelCard
from aimi.engines.llamacpp import LlamaCppEngine
from aimi.engines.registry import EngineRegistry, EngineSetup, engine_registry
from aimi.engines.upstream import UpstreamEngine
from aimi.errors import InvalidRequest
from aimi.settings import Settings

OFFER = ModelCard(name="Some-Model", provider="someone", context_length=8192)


def setup(tmp_path: Path, **settings: object) -> EngineSetup:
    return EngineSetup(OFFER, Settings(data_dir=tmp_path, **settings))  # type: ignore[arg-type]


def test_the_built_in_kinds_are_asked_embedded_first_and_gguf_files_last() -> None:
    registry = engine_registry(plugins=False)
    assert registry.kinds == ["embedded", "url", "gguf"]
    assert registry.kind_of("embedded").name == "embedded"
    assert registry.kind_of("https://api.mistral.ai/v1#model=mistral-small-latest").name == "url"
    assert registry.kind_of("/models/x.gguf").name == "gguf"


def test_a_gguf_source_is_stored_as_its_resolved_path(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(16))
    assert engine_registry(plugins=False).check(str(tmp_path / "." / "m.gguf")) == str(model.resolve())
    (tmp_path / "not.gguf").write_bytes(b"PK\x03\x04")
    with pytest.raises(InvalidRequest, match="is not a GGUF file"):
        engine_registry(plugins=False).check(str(tmp_path / "not.gguf"))


def test_a_url_source_with_credentials_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="carries credentials") as refused:
        engine_registry(plugins=False).check("https://user:secret@api.example/v1")
    assert refused.value.param == "source"


def test_a_url_builds_an_upstream_engine_with_the_key_the_settings_give_that_server(tmp_path: Path) -> None:
    registry = engine_registry(plugins=False)
    engine = registry.build("https://api.mistral.ai/v1", setup(tmp_path, upstream_api_key="sk-1"))
    assert isinstance(engine, UpstreamEngine)
    assert engine.port == "chat"
    assert engine.source.base == "https://api.mistral.ai"


def test_a_gguf_file_builds_a_llama_cpp_engine_with_the_offer_s_names(tmp_path: Path) -> None:
    engine = engine_registry(plugins=False).build(str(tmp_path / "m.gguf"), setup(tmp_path, parallel=2))
    assert isinstance(engine, LlamaCppEngine)
    assert engine.port == "token"  # built, not loaded: nothing is read until it starts


def test_jump_forward_is_on_unless_the_settings_or_the_environment_turn_it_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, path = engine_registry(plugins=False), str(tmp_path / "m.gguf")
    on = registry.build(path, setup(tmp_path))
    off = registry.build(path, setup(tmp_path, jump_forward=False))
    assert isinstance(on, LlamaCppEngine) and isinstance(off, LlamaCppEngine)
    assert on.jump_forward and not off.jump_forward
    monkeypatch.setenv("AIMI_JUMP_FORWARD", "false")
    assert not Settings(data_dir=tmp_path).jump_forward


def test_a_kind_registered_later_is_asked_first_and_a_name_registered_again_replaces_it() -> None:
    registry = EngineRegistry()
    registry.add("files", claims=lambda source: True, build=lambda source, setup: None)  # type: ignore[arg-type,return-value]
    registry.add("toy", claims=lambda source: source.startswith("toy:"), build=lambda s, e: None)  # type: ignore[arg-type,return-value]
    assert registry.kind_of("toy:1").name == "toy"
    registry.add("toy", claims=lambda source: False, build=lambda s, e: None)  # type: ignore[arg-type,return-value]
    assert registry.kind_of("toy:1").name == "files"


def test_a_source_no_kind_claims_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="No engine serves the source 'x'"):
        EngineRegistry().check("x")
