"""Keys: two per deployment (primary and secondary) and the admin key. 32 characters, shown in full
once, kept only as SHA-256 hashes; rotating one leaves the other working.

Beside them, short-lived tokens scoped to one deployment, minted for a signed-in portal session (the
playground calls the real inference routes with one, never with the admin key). They live in this
process only, expire after minutes, and are revoked at sign-out.

Requests are authenticated from memory (`KeyStore.principal`): the deployment keys (their hashes)
and the deployments they open are read into a key ring, so a request makes no database round trip.
A change made through this process (a key regenerated, a deployment created or deleted) drops the
ring at once, after its commit. A change made by another process (the CLI, another aimi on the same
PostgreSQL) is seen when the ring is read again: in the background once it is `RING_REFRESH_S` old,
and before answering once it is `RING_MAX_AGE_S` old, so a key revoked elsewhere stops working here
within `RING_MAX_AGE_S`. A key the ring does not hold is looked up in the database, so one made
elsewhere works at once."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aimi.db.database import Database
from aimi.db.tables import AdminKey, DeploymentKey, DeploymentRow
from aimi.errors import InvalidRequest, NotFound

log = logging.getLogger("aimi.platform")

KEY_LENGTH = 32
_ALPHABET = string.ascii_letters + string.digits
Which = Literal["primary", "secondary"]
WHICH: tuple[Which, ...] = ("primary", "secondary")
TOKEN_PREFIX = "aimi-pt-"
"""Scoped tokens are told apart from keys by this prefix (keys are 32 letters and digits)."""
TOKEN_TTL_S = 15 * 60
RING_REFRESH_S = 1.0
"""Once the key ring is this old, a request has it read again in the background."""
RING_MAX_AGE_S = 2.0
"""A ring this old is read again before a request is answered: the longest a change made by another
process goes unseen here."""


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
    """Who a request is: a deployment key, or a token scoped to the deployment (`key_id` None)."""

    key_id: int | None
    deployment_id: int
    deployment_name: str


@dataclass(frozen=True)
class ScopedToken:
    """A token as it is handed to its holder, once."""

    token: str
    deployment: str
    expires_at: datetime


@dataclass(frozen=True)
class _Minted:
    deployment_id: int
    deployment_name: str
    deployment_created_at: datetime
    """With the id, tells the deployment apart from a later one of the same name (ids are reused)."""
    owner: str
    expires: float


@dataclass(frozen=True)
class _Ring:
    """The keys and deployments as read at `read_at` (monotonic), for changes up to `generation`."""

    generation: int
    read_at: float
    keys: dict[str, Principal]
    """By key hash."""
    deployments: dict[str, tuple[int, datetime]]
    """By name: the id and the creation time (together they tell a deployment from a later namesake)."""


def check_key(key: str) -> None:
    if len(key) < 16 or any(c.isspace() for c in key):
        raise InvalidRequest("A key needs at least 16 characters and no spaces.", param="key")


class KeyStore:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        ring_refresh_s: float = RING_REFRESH_S,
        ring_max_age_s: float = RING_MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._clock = clock
        self._tokens: dict[str, _Minted] = {}
        self._tokens_lock = threading.Lock()
        self._monotonic = monotonic
        self._ring_refresh_s = ring_refresh_s
        self._ring_max_age_s = ring_max_age_s
        self._ring: _Ring | None = None
        self._generation = 0
        self._reading: asyncio.Task[_Ring] | None = None

    def issue(self, session: Session, deployment_id: int, which: Which, key: str | None = None) -> IssuedKey:
        """Set `which` key of a deployment (a new random one unless `key` is given); the caller calls
        `changed` once `session` is committed."""
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
            issued = self.issue(s, _deployment_id(s, deployment), which, key)
        self.changed()
        return issued

    def show(self, deployment: str) -> list[KeyInfo]:
        with self._db.session() as s:
            rows = s.scalars(
                select(DeploymentKey)
                .where(DeploymentKey.deployment_id == _deployment_id(s, deployment))
                .order_by(DeploymentKey.which)
            )
            return [KeyInfo(r.id, r.which, r.hint, r.created_at) for r in rows]

    def lookup(self, key: str) -> Principal | None:
        """Who `key` is, as the database says now (a round trip; requests use `principal`)."""
        if key.startswith(TOKEN_PREFIX):
            return self._token_principal(key)
        with self._db.session() as s:
            row = s.execute(
                select(DeploymentKey.id, DeploymentRow.id, DeploymentRow.name)
                .join(DeploymentRow, DeploymentRow.id == DeploymentKey.deployment_id)
                .where(DeploymentKey.key_hash == key_hash(key))
            ).first()
            return Principal(row[0], row[1], row[2]) if row else None

    # -- the key ring: requests authenticated from memory ---------------------------------------

    def changed(self) -> None:
        """Keys or deployments changed (committed): the ring is read again before the next lookup.
        Every change this process makes calls it; thread-safe."""
        with self._tokens_lock:
            self._generation += 1

    async def principal(self, key: str) -> Principal | None:
        """Who `key` is, from the key ring (see the module docstring); None for no one."""
        ring = await self._current_ring()
        hashed = key_hash(key)
        if key.startswith(TOKEN_PREFIX):
            minted = self._live_token(hashed)
            return _scoped(minted, ring.deployments.get(minted.deployment_name)) if minted else None
        found = ring.keys.get(hashed)
        if found is not None:
            return found
        # Not in the ring: a key made by another process since the ring was read, or no key at all.
        return await asyncio.to_thread(self.lookup, key)

    async def _current_ring(self) -> _Ring:
        ring, now = self._ring, self._monotonic()
        if ring is not None and ring.generation == self._generation:
            age = now - ring.read_at
            if age < self._ring_refresh_s:
                return ring
            if age < self._ring_max_age_s:
                self._read_ring()  # in the background; this request is answered from the ring it has
                return ring
        return await asyncio.shield(self._read_ring())

    def _read_ring(self) -> asyncio.Task[_Ring]:
        """The read in flight, or a new one: at most one at a time."""
        reading = self._reading
        if reading is None or reading.done():
            reading = self._reading = asyncio.ensure_future(self._reread())
            reading.add_done_callback(_log_failure)
        return reading

    async def _reread(self) -> _Ring:
        while True:
            generation, read_at = self._generation, self._monotonic()
            ring = await asyncio.to_thread(self._load_ring, generation, read_at)
            self._ring = ring
            if ring.generation == self._generation:
                return ring
            # changed while it was read: what was read may predate the change, so read it again

    def _load_ring(self, generation: int, read_at: float) -> _Ring:
        with self._db.session() as s:
            keys = {
                hashed: Principal(key_id, deployment_id, name)
                for hashed, key_id, deployment_id, name in s.execute(
                    select(
                        DeploymentKey.key_hash, DeploymentKey.id, DeploymentRow.id, DeploymentRow.name
                    ).join(DeploymentRow, DeploymentRow.id == DeploymentKey.deployment_id)
                )
            }
            deployments = {
                name: (deployment_id, created_at)
                for deployment_id, name, created_at in s.execute(
                    select(DeploymentRow.id, DeploymentRow.name, DeploymentRow.created_at)
                )
            }
        return _Ring(generation, read_at, keys, deployments)

    # -- tokens scoped to one deployment --------------------------------------------------------

    def mint_token(self, deployment: str, *, owner: str, ttl_s: float = TOKEN_TTL_S) -> ScopedToken:
        """A token that opens `deployment` only, for `ttl_s` seconds, on behalf of `owner`."""
        with self._db.session() as s:
            row = s.execute(
                select(DeploymentRow.id, DeploymentRow.created_at).where(DeploymentRow.name == deployment)
            ).first()
        if row is None:
            raise NotFound(f"Deployment '{deployment}' not found.")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        with self._tokens_lock:
            self._tokens = {h: m for h, m in self._tokens.items() if m.expires > now}
            self._tokens[key_hash(token)] = _Minted(row[0], deployment, row[1], owner, now + ttl_s)
        return ScopedToken(token, deployment, datetime.fromtimestamp(now + ttl_s, UTC))

    def revoke_tokens(self, owner: str) -> int:
        """Forget every token minted for `owner`; how many there were."""
        with self._tokens_lock:
            kept = {h: m for h, m in self._tokens.items() if m.owner != owner}
            revoked = len(self._tokens) - len(kept)
            self._tokens = kept
        return revoked

    def _token_principal(self, token: str) -> Principal | None:
        minted = self._live_token(key_hash(token))
        if minted is None:
            return None
        with self._db.session() as s:
            current = s.execute(
                select(DeploymentRow.id, DeploymentRow.created_at).where(
                    DeploymentRow.name == minted.deployment_name
                )
            ).first()
        return _scoped(minted, tuple(current) if current else None)

    def _live_token(self, hashed: str) -> _Minted | None:
        """The minted token with this hash, unless it has expired."""
        with self._tokens_lock:
            minted = self._tokens.get(hashed)
        return minted if minted is not None and minted.expires > self._clock() else None

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


def _scoped(minted: _Minted, current: tuple[Any, ...] | None) -> Principal | None:
    """A live token's principal, if its deployment (`current`: its id and creation time now) is the
    one it was minted for: not deleted, nor deleted and made again under the same name."""
    if current != (minted.deployment_id, minted.deployment_created_at):
        return None
    return Principal(None, minted.deployment_id, minted.deployment_name)


def _log_failure(reading: asyncio.Task[_Ring]) -> None:
    """A read nobody awaited (in the background) that failed: said in the log; the next request
    tries again, and one that finds the ring too old waits for its own read."""
    if not reading.cancelled() and reading.exception() is not None:
        log.warning("could not read the keys", exc_info=reading.exception())


def _deployment_id(session: Session, name: str) -> int:
    found = session.scalar(select(DeploymentRow.id).where(DeploymentRow.name == name))
    if found is None:
        raise NotFound(f"Deployment '{name}' not found.")
    return found
