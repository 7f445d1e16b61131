"""Keys: two per deployment (primary and secondary) and the admin key. 32 characters, shown in full
once, kept only as SHA-256 hashes; rotating one leaves the other working."""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aimi.db.database import Database
from aimi.db.tables import AdminKey, DeploymentKey, DeploymentRow
from aimi.errors import InvalidRequest, NotFound

KEY_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits
Which = Literal["primary", "secondary"]
WHICH: tuple[Which, ...] = ("primary", "secondary")


def new_key() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(KEY_LENGTH))


def key_hash(key: str) -> str:
    """Looking a key up by its SHA-256 makes the lookup's timing say nothing about the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A key as it is shown, once."""

    which: str
    key: str

    @property
    def hint(self) -> str:
        return self.key[-4:]


@dataclass(frozen=True)
class KeyInfo:
    id: int
    which: str
    hint: str
    created_at: datetime


@dataclass(frozen=True)
class Principal:
    """Who a request is: a deployment key."""

    key_id: int
    deployment_id: int
    deployment_name: str


def check_key(key: str) -> None:
    if len(key) < 16 or any(c.isspace() for c in key):
        raise InvalidRequest("A key needs at least 16 characters and no spaces.", param="key")


class KeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def issue(self, session: Session, deployment_id: int, which: Which, key: str | None = None) -> IssuedKey:
        """Set `which` key of a deployment (a new random one unless `key` is given)."""
        key = key or new_key()
        check_key(key)
        session.execute(
            delete(DeploymentKey).where(
                DeploymentKey.deployment_id == deployment_id, DeploymentKey.which == which
            )
        )
        session.flush()
        session.add(
            DeploymentKey(deployment_id=deployment_id, which=which, key_hash=key_hash(key), hint=key[-4:])
        )
        return IssuedKey(which, key)

    def regenerate(self, deployment: str, which: Which, key: str | None = None) -> IssuedKey:
        if which not in WHICH:
            raise InvalidRequest("Choose the 'primary' or the 'secondary' key.", param="which")
        with self._db.session() as s:
            return self.issue(s, _deployment_id(s, deployment), which, key)

    def show(self, deployment: str) -> list[KeyInfo]:
        with self._db.session() as s:
            rows = s.scalars(
                select(DeploymentKey)
                .where(DeploymentKey.deployment_id == _deployment_id(s, deployment))
                .order_by(DeploymentKey.which)
            )
            return [KeyInfo(r.id, r.which, r.hint, r.created_at) for r in rows]

    def lookup(self, key: str) -> Principal | None:
        with self._db.session() as s:
            row = s.execute(
                select(DeploymentKey.id, DeploymentRow.id, DeploymentRow.name)
                .join(DeploymentRow, DeploymentRow.id == DeploymentKey.deployment_id)
                .where(DeploymentKey.key_hash == key_hash(key))
            ).first()
            return Principal(row[0], row[1], row[2]) if row else None

    # -- the admin key ---------------------------------------------------------------------------

    def ensure_admin(self, key: str | None) -> IssuedKey | None:
        """Make `key` the admin key; with none, create one if there is none yet (returned to show)."""
        with self._db.session() as s:
            if key is not None:
                check_key(key)
                if s.scalar(select(AdminKey.id).where(AdminKey.key_hash == key_hash(key))) is None:
                    s.execute(delete(AdminKey))
                    s.add(AdminKey(key_hash=key_hash(key), hint=key[-4:]))
                return None
            if s.scalar(select(AdminKey.id).limit(1)) is not None:
                return None
            issued = IssuedKey("admin", new_key())
            s.add(AdminKey(key_hash=key_hash(issued.key), hint=issued.hint))
            return issued

    def is_admin(self, key: str) -> bool:
        with self._db.session() as s:
            return s.scalar(select(AdminKey.id).where(AdminKey.key_hash == key_hash(key))) is not None


def _deployment_id(session: Session, name: str) -> int:
    found = session.scalar(select(DeploymentRow.id).where(DeploymentRow.name == name))
    if found is None:
        raise NotFound(f"Deployment '{name}' not found.")
    return found
