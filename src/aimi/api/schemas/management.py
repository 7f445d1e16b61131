"""Bodies of the management API (`/api/...`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_INT = 2**31 - 1
"""The largest count a database integer column holds (PostgreSQL's INTEGER)."""


class _Body(BaseModel):
    """Strict (`0` is not `false`, `"5"` is not `5`), and bounded as the database columns are, so that
    no body can fail in the database (a 500)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if _holds_nul(value):
            raise ValueError("text must not contain NUL (U+0000), which the database cannot store")
        return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False  # numbers, booleans, and nested bodies (checked by their own validator)


class ModelIn(_Body):
    name: str = Field(min_length=1, max_length=128)
    provider: str = Field(min_length=1, max_length=128)
    context_length: int = Field(ge=64, le=MAX_INT)
    # Prices: "0.25" or 0.25 (a JSON number may not hold a decimal exactly); six decimals at most.
    price_input_per_1k: Decimal = Field(ge=0, max_digits=12, decimal_places=6, strict=False)
    price_output_per_1k: Decimal = Field(ge=0, max_digits=12, decimal_places=6, strict=False)
    terms: str = ""
    capabilities: dict[str, Any] = Field(
        default_factory=lambda: {"chat": True, "tools": False, "json_mode": True}
    )
    model_type: str = Field(default="chat-completions", min_length=1, max_length=64)
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
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT)
    accept_terms: bool | None = None
    """The model's terms, accepted (true) or not (false: refused); unset accepts them implicitly."""


class DeploymentPatch(_Body):
    """What can change on a live deployment; unset fields stay as they are."""

    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT)
    tokens_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT)


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


def _is_none(value: Any) -> bool:
    return value is None


class ThresholdsOut(BaseModel):
    """Per category, the lowest severity that is blocked; null: never blocked."""

    hate: str | None
    sexual: str | None
    violence: str | None
    self_harm: str | None


class BlocklistOut(BaseModel):
    name: str
    terms: list[str]
    patterns: list[str]


class SafetyOut(BaseModel):
    """A deployment's content-safety policy, as it is in force."""

    enabled: bool
    input: ThresholdsOut
    output: ThresholdsOut
    block_jailbreak: bool
    blocklists: list[BlocklistOut]
    fail_closed: bool
    judge: str | None = Field(default=None, exclude_if=_is_none)
    """The deployment asked for a second opinion; absent when there is none."""
