"""`aimi.db.database`: migrations to the newest schema on SQLite and PostgreSQL, and a restart that
loses nothing."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from aimi.db.database import MIGRATIONS, Database, sqlite_url
from aimi.db.tables import Base, CatalogModel, TermsAcceptance
from aimi.errors import Conflict
from aimi.platform.catalog import Catalog
from aimi.platform.deployments import DeploymentStore
from aimi.platform.keys import KeyStore
from aimi.platform.usage import UsageEntry, UsageLedger

TABLES = {table.name for table in Base.metadata.sorted_tables}


def newest_revision() -> str:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def revisions(db: Database) -> list[str]:
    with db.engine.connect() as connection:
        return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


def test_sqlite_lives_in_the_data_dir(tmp_path: Path) -> None:
    assert sqlite_url(tmp_path) == f"sqlite:///{tmp_path / 'aimi.db'}"


def test_migrating_creates_every_table_and_records_the_revision(database: Database) -> None:
    assert tables(database) == TABLES | {"alembic_version"}
    assert revisions(database) == [newest_revision()]


def test_the_migrations_create_what_the_tables_describe(database: Database) -> None:
    """Every column the code maps exists in the migrated schema (a model change without a migration
    would fail here)."""
    inspector = inspect(database.engine)
    for table in Base.metadata.sorted_tables:
        assert {c["name"] for c in inspector.get_columns(table.name)} == set(table.columns.keys()), table.name


def test_migrating_twice_is_harmless(database: Database) -> None:
    Catalog(database).seed()
    database.migrate()
    database.migrate()
    assert tables(database) == TABLES | {"alembic_version"}
    assert revisions(database) == [newest_revision()]
    assert len(Catalog(database).list()) == 7


def test_a_restart_loses_nothing(database_url: str, tmp_path: Path) -> None:
    first = Database(database_url)
    first.migrate()
    catalog = Catalog(first)
    catalog.seed()
    keys = KeyStore(first)
    store = DeploymentStore(first, catalog, keys)
    created = store.create(project="p", model="Mistral-Large", name="large", source="http://10.0.0.7:8080")
    rotated = keys.regenerate("large", "secondary")
    admin = keys.ensure_admin(None)
    assert admin is not None
    UsageLedger(first).record(
        UsageEntry("large", "p", "Mistral-Large", 1, 1000, 500, "stop", 200, 80, True, Decimal("0.01"))
    )
    before = (store.list(), keys.show("large"), UsageLedger(first).summary(by="hour"))
    first.close()

    second = Database(database_url)
    second.migrate()
    catalog = Catalog(second)
    catalog.seed()
    keys = KeyStore(second)
    store = DeploymentStore(second, catalog, keys)
    assert (store.list(), keys.show("large"), UsageLedger(second).summary(by="hour")) == before
    assert keys.lookup(created.keys[0].key).deployment_name == "large"  # type: ignore[union-attr]
    assert keys.lookup(rotated.key).deployment_name == "large"  # type: ignore[union-attr]
    assert keys.lookup(created.keys[1].key) is None
    assert keys.is_admin(admin.key)
    assert keys.ensure_admin(None) is None
    with second.session() as s:
        assert s.scalars(select(TermsAcceptance.model_name)).all() == ["Mistral-Large"]
        assert s.scalar(select(CatalogModel.source).where(CatalogModel.name == "Mistral-Large")) is None
    with pytest.raises(Conflict):  # the rules hold on what was there before the restart
        store.create(project="p", model="Mistral-Large", name="large-2", source="http://10.0.0.7:8080")
    second.close()


MIGRATE = """
import sys
from aimi.db.database import Database
db = Database(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
db.migrate()
print("migrated", flush=True)
"""


def test_several_processes_migrating_a_fresh_database_at_once_all_succeed(database_url: str) -> None:
    """As several `aimi serve` processes do when they start together on a new shared database."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE, database_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for process in processes:  # every one is connected and waits for the word
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [process.communicate(timeout=120) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    failures = [
        next((line for line in reversed(err.splitlines()) if "Error" in line), err)
        for out, err in results
        if "migrated" not in out
    ]
    assert failures == []
    db = Database(database_url)
    assert revisions(db) == [newest_revision()]
    db.close()
