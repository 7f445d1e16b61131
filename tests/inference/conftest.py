"""Fixtures for the inference tests: tiny random-weight Mistral models as GGUF files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_mistral import (
    JSON_CLOSERS,
    TOOL_CALLS_ID,
    TinyConfig,
    build_tiny_mistral_gguf,
    token_id,
)


@pytest.fixture(scope="session")
def tiny_mistral_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Mistral v0.3's architecture and v3 vocabulary at toy size, with seeded random weights."""
    return build_tiny_mistral_gguf(tmp_path_factory.mktemp("tiny-mistral") / "tiny-mistral.gguf")


@pytest.fixture(scope="session")
def eager_tiny_mistral_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, pulled towards `[TOOL_CALLS]` (it starts calls on its own) and towards closing
    quotes, braces and brackets (its JSON ends)."""
    path = tmp_path_factory.mktemp("tiny-mistral-eager") / "tiny-mistral-eager.gguf"
    bias = ((TOOL_CALLS_ID, 10.0), *((token_id(piece), 10.0) for piece in JSON_CLOSERS))
    return build_tiny_mistral_gguf(path, TinyConfig(logit_bias=bias))
