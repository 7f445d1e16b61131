"""Settings: the upstream key chosen for a source URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimi.settings import Settings


def test_the_general_upstream_key_goes_to_every_upstream(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, upstream_api_key="general")
    assert settings.upstream_key("http://10.0.0.7:8000") == "general"
    assert Settings(data_dir=tmp_path).upstream_key("http://10.0.0.7:8000") is None


def test_a_key_for_a_url_prefix_wins_and_the_longest_prefix_first(tmp_path: Path) -> None:
    keys = {
        "https://api.mistral.ai": "mistral",
        "http://gpu:8000/": "gpu",
        "http://gpu:8000/deployments/big": "big",
    }
    settings = Settings(data_dir=tmp_path, upstream_api_key="general", upstream_api_keys=keys)
    assert settings.upstream_key("https://api.mistral.ai/v1#model=mistral-small-latest") == "mistral"
    assert settings.upstream_key("http://gpu:8000") == "gpu"
    assert settings.upstream_key("http://gpu:8000/deployments/big") == "big"
    assert settings.upstream_key("http://gpu:8000/deployments/bigger") == "gpu"
    assert settings.upstream_key("http://gpu:80001") == "general"  # not a prefix at a boundary


def test_upstream_keys_come_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIMI_UPSTREAM_API_KEYS", '{"http://a:1": "ka"}')
    monkeypatch.setenv("AIMI_UPSTREAM_API_KEY", "general")
    settings = Settings(data_dir=tmp_path)
    assert (settings.upstream_key("http://a:1/v1"), settings.upstream_key("http://b:1")) == ("ka", "general")
