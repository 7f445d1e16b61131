"""`aimi.db.tables`: times are stored and read back as UTC on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from aimi.db.database import Database
from aimi.db.tables import Project
from tests.databases import fresh_postgres_schema, needs_postgres, postgres_url

AT = datetime(2026, 11, 1, 1, 30, tzinfo=UTC)


def read_back(db: Database, at: datetime) -> datetime:
    with db.session() as s:
        s.add(Project(name="p", created_at=at))
    with db.session() as s:
        return s.scalars(select(Project.created_at)).one()


def test_an_aware_time_comes_back_as_the_same_moment_in_utc(database: Database) -> None:
    back = read_back(database, AT.astimezone(timezone(timedelta(hours=-5))))
    assert back == AT
    assert back.utcoffset() == timedelta(0)
    assert back.strftime("%Y-%m-%d %H:%M") == "2026-11-01 01:30"


def test_a_naive_time_is_refused(database: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), database.session() as s:
        s.add(Project(name="p", created_at=datetime(2026, 11, 1, 1, 30)))


@pytest.fixture
def st_johns() -> Iterator[Database]:
    """PostgreSQL sessions in a zone that is not UTC (a server's `timezone` setting, often the
    machine's own): half-hour offsets show any mix-up in hours and days."""
    with fresh_postgres_schema() as schema:
        db = Database(postgres_url(schema, timezone="America/St_Johns"))
        db.migrate()
        yield db
        db.close()


@needs_postgres
def test_times_come_back_in_utc_whatever_the_postgresql_session_time_zone(st_johns: Database) -> None:
    back = read_back(st_johns, AT)
    assert back == AT
    assert back.utcoffset() == timedelta(0)  # the usage ledger's hours and days are cut from this
    assert back.strftime("%Y-%m-%d %H:00") == "2026-11-01 01:00"
