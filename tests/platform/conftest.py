"""The platform's stores on an empty database, once per backend (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aimi.db.database import Database
from aimi.platform.catalog import Catalog
from aimi.platform.deployments import DeploymentStore
from aimi.platform.keys import KeyStore
from aimi.platform.usage import UsageLedger
from tests.databases import backend, database, database_url

__all__ = ["backend", "database", "database_url"]


@pytest.fixture
def catalog(database: Database) -> Catalog:
    """The catalog with its built-in offers, as every start of aimi leaves it."""
    seeded = Catalog(database)
    seeded.seed()
    return seeded


@pytest.fixture
def keys(database: Database) -> KeyStore:
    return KeyStore(database)


@pytest.fixture
def deployments(database: Database, catalog: Catalog, keys: KeyStore) -> DeploymentStore:
    return DeploymentStore(database, catalog, keys)


@pytest.fixture
def ledger(database: Database) -> UsageLedger:
    return UsageLedger(database)


def write_gguf(path: Path) -> Path:
    """A file aimi accepts as weights: it only looks at the GGUF magic before loading one."""
    path.write_bytes(b"GGUF" + bytes(60))
    return path


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    (tmp_path / "weights").mkdir()
    return write_gguf(tmp_path / "weights" / "my-model.gguf")
