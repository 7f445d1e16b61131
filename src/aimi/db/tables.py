"""The tables. SQLite by default, PostgreSQL by URL; every change goes through a migration."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Numeric, String, Text, UniqueConstraint, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None


def now() -> datetime:
    return datetime.now(UTC)


Price = Numeric(12, 6)


class Base(DeclarativeBase):
    pass


class CatalogModel(Base):
    """A model offer: what it is, what it can do, what it costs, the terms to accept."""

    __tablename__ = "catalog_models"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    provider: Mapped[str] = mapped_column(String(128))
    model_type: Mapped[str] = mapped_column(String(64), default="chat-completions")
    context_length: Mapped[int]
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    price_input_per_1k: Mapped[Decimal] = mapped_column(Price)
    price_output_per_1k: Mapped[Decimal] = mapped_column(Price)
    terms: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Where the weights are: `embedded`, a GGUF path, or an upstream URL; None: not on this machine."""
    builtin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=now)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=now)


class TermsAcceptance(Base):
    """The first deployment of an offer in a project subscribes the project to it."""

    __tablename__ = "terms_acceptances"
    __table_args__ = (UniqueConstraint("project_id", "model_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_name: Mapped[str] = mapped_column(ForeignKey("catalog_models.name"))
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=now)
    accepted_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    """Who: `portal (admin key ending …)`, `api (admin key ending …)`; None from the CLI."""
    explicit: Mapped[bool] = mapped_column(default=False, server_default=false())
    """True when the terms were shown and ticked; False when a deployment accepted them implicitly."""


class DeploymentRow(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("project_id", "model_name", name="one_deployment_per_model_per_project"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    model_name: Mapped[str] = mapped_column(ForeignKey("catalog_models.name"))
    source: Mapped[str] = mapped_column(Text)
    requests_per_minute: Mapped[int]
    tokens_per_minute: Mapped[int]
    safety: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=now)


class DeploymentKey(Base):
    """Two per deployment; only the SHA-256 of a key is kept."""

    __tablename__ = "deployment_keys"
    __table_args__ = (UniqueConstraint("deployment_id", "which"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    which: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(8))
    """The last four characters, so a person can tell keys apart."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=now)


class AdminKey(Base):
    __tablename__ = "admin_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=now)


class UsageRecord(Base):
    """One row per request that reached a deployment: tokens, outcome, latency and cost."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_deployment_time", "deployment_name", "created_at"),
        Index("ix_usage_state", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=now, index=True)
    deployment_name: Mapped[str] = mapped_column(String(64))
    project_name: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[int | None]
    model_name: Mapped[str] = mapped_column(String(128))
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    status: Mapped[int]
    latency_ms: Mapped[int] = mapped_column(default=0)
    streamed: Mapped[bool] = mapped_column(default=False)
    cost: Mapped[Decimal] = mapped_column(Numeric(20, 10), default=Decimal(0))
    safety: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The content-safety verdicts: categories, severities and which filter said so."""
    state: Mapped[str] = mapped_column(String(16), default="completed", server_default="completed")
    """`in_progress` from admission until the request ends (`completed`); `interrupted` when the
    process serving it died first and a later start closed the row with its last recorded tokens."""
    instance: Mapped[str | None] = mapped_column(String(160), nullable=True)
    """The process that serves (or served) the request: host, pid and a token of that start."""
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    """When the serving process last recorded progress or said it was alive."""
    reservation: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The quota reservation's id, settled to the recorded tokens if the process dies."""
    reserved_tokens: Mapped[int | None] = mapped_column(nullable=True)
    cached_tokens: Mapped[int] = mapped_column(default=0, server_default="0")
    """Of the prompt tokens, those served from a cache (kept in a slot, copied, or restored)."""
