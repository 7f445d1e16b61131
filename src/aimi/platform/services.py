"""The platform's services on one database, built once: for the server (`create_app`) and for every
management command of the CLI alike."""

from __future__ import annotations

from dataclasses import dataclass

from aimi.db.database import Database, sqlite_url
from aimi.platform.catalog import Catalog
from aimi.platform.deployments import DeploymentStore, Sources
from aimi.platform.inflight import InFlight
from aimi.platform.keys import KeyStore
from aimi.platform.quotas import MemoryQuotaStore, QuotaStore, RedisQuotaStore
from aimi.platform.usage import UsageLedger
from aimi.settings import Settings


@dataclass
class Platform:
    """The platform services, built once per process."""

    db: Database
    catalog: Catalog
    keys: KeyStore
    deployments: DeploymentStore
    ledger: UsageLedger
    quotas: QuotaStore
    inflight: InFlight
    """Keeps the requests this process serves in the ledger while they run (started by the server)."""

    async def close(self) -> None:
        """What `open_platform` opened, closed (the server's in-flight keeper first)."""
        await self.inflight.stop()
        await self.quotas.close()
        self.db.close()


def open_platform(settings: Settings, sources: Sources | None = None) -> Platform:
    """Open (and migrate) the database and build the services on it. `sources`: what judges a
    deployment's source (default: the engine registry, with plug-ins)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url or sqlite_url(settings.data_dir))
    db.migrate()
    catalog = Catalog(db)
    catalog.seed()
    keys = KeyStore(db)
    quotas: QuotaStore = RedisQuotaStore(settings.redis_url) if settings.redis_url else MemoryQuotaStore()
    ledger = UsageLedger(db)
    inflight = InFlight(
        ledger,
        quotas,
        interval_s=settings.ledger_progress_interval_s,
        stale_after_s=settings.ledger_stale_after_s,
    )
    deployments = DeploymentStore(db, catalog, keys, sources=sources)
    return Platform(db, catalog, keys, deployments, ledger, quotas, inflight)
