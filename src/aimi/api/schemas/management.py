"""Bodies of the management API (`/api/...`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelIn(_Body):
    name: str = Field(min_length=1, max_length=128)
    provider: str = Field(min_length=1, max_length=128)
    context_length: int = Field(ge=64)
    price_input_per_1k: Decimal = Field(ge=0)
    price_output_per_1k: Decimal = Field(ge=0)
    terms: str = ""
    capabilities: dict[str, Any] = Field(
        default_factory=lambda: {"chat": True, "tools": False, "json_mode": True}
    )
    model_type: str = "chat-completions"
    source: str | None = None


class ModelOut(BaseModel):
    name: str
    provider: str
    model_type: str
    context_length: int
    capabilities: dict[str, Any]
    price_input_per_1k: Decimal
    price_output_per_1k: Decimal
    terms: str
    source: str | None
    builtin: bool


class DeploymentIn(_Body):
    project: str = Field(min_length=1, max_length=128)
    model: str
    name: str
    source: str | None = None
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)


class KeyOut(BaseModel):
    id: int
    which: str
    hint: str
    """The key's last four characters."""
    created_at: datetime


class DeploymentOut(BaseModel):
    name: str
    project: str
    model: str
    source: str
    requests_per_minute: int
    tokens_per_minute: int
    created_at: datetime
    endpoint: str
    keys: list[KeyOut] = []


class IssuedKeyOut(BaseModel):
    which: str
    key: str
    """Shown this once; only its hash is kept."""


class CreatedOut(BaseModel):
    deployment: DeploymentOut
    keys: list[IssuedKeyOut]
    terms_accepted: bool
    terms: str


class UsageLineOut(BaseModel):
    deployment: str
    period: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: Decimal


class UsageOut(BaseModel):
    lines: list[UsageLineOut]
    total: UsageLineOut


Period = Literal["hour", "day"]


Level = Literal["low", "medium", "high"] | None


class Thresholds(_Body):
    hate: Level = "medium"
    sexual: Level = "medium"
    violence: Level = "medium"
    self_harm: Level = "medium"


class BlocklistIn(_Body):
    name: str = Field(min_length=1, max_length=64)
    terms: list[str] = []
    patterns: list[str] = []


class SafetyIn(_Body):
    enabled: bool = True
    input: Thresholds | None = None
    output: Thresholds | None = None
    block_jailbreak: bool = True
    blocklists: list[BlocklistIn] = []
    fail_closed: bool = False
    judge: str | None = None
    """A chat deployment to ask for a second opinion (a constrained JSON verdict)."""
