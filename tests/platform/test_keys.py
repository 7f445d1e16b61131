"""`aimi.platform.keys`: deployment keys and the admin key, kept only as hashes; rotation."""

from __future__ import annotations

import hashlib
import string

import pytest
from sqlalchemy import select

from aimi.db.database import Database
from aimi.db.tables import Base, DeploymentKey
from aimi.errors import InvalidRequest, NotFound
from aimi.platform.deployments import Created, DeploymentStore
from aimi.platform.keys import KEY_LENGTH, KeyStore, key_hash, new_key

SMOLLM2 = "SmolLM2-135M-Instruct"


def everything_stored(database: Database) -> str:
    """Every row of every table, as text."""
    with database.session() as s:
        return "\n".join(
            repr(row) for table in Base.metadata.sorted_tables for row in s.execute(select(table))
        )


@pytest.fixture
def chat(deployments: DeploymentStore) -> Created:
    return deployments.create(project="p", model=SMOLLM2, name="chat")


def test_a_new_key_is_32_letters_and_digits_and_never_the_same() -> None:
    made = {new_key() for _ in range(200)}
    assert len(made) == 200
    assert all(len(k) == KEY_LENGTH == 32 for k in made)
    assert set("".join(made)) <= set(string.ascii_letters + string.digits)


def test_the_keys_of_a_new_deployment_are_32_characters(chat: Created) -> None:
    assert [len(k.key) for k in chat.keys] == [32, 32]


def test_only_hashes_of_the_keys_are_stored(database: Database, chat: Created) -> None:
    stored = everything_stored(database)
    assert "chat" in stored and SMOLLM2 in stored  # the dump does hold the deployment
    for issued in chat.keys:
        assert issued.key not in stored
        assert key_hash(issued.key) in stored
    with database.session() as s:
        rows = {r.which: r for r in s.scalars(select(DeploymentKey))}
    for issued in chat.keys:
        row = rows[issued.which]
        assert row.key_hash == hashlib.sha256(issued.key.encode()).hexdigest()
        assert row.hint == issued.key[-4:] == issued.hint


def test_a_regenerated_key_is_not_stored_either(database: Database, chat: Created, keys: KeyStore) -> None:
    issued = keys.regenerate("chat", "secondary")
    assert len(issued.key) == 32
    assert issued.key not in everything_stored(database)


def test_a_key_looks_up_its_own_deployment(chat: Created, keys: KeyStore) -> None:
    primary, secondary = (keys.lookup(k.key) for k in chat.keys)
    assert primary is not None and secondary is not None
    assert primary.deployment_name == secondary.deployment_name == "chat"
    assert primary.deployment_id == secondary.deployment_id == chat.deployment.id
    assert primary.key_id != secondary.key_id
    assert {k.id: k.which for k in keys.show("chat")} == {
        primary.key_id: "primary",
        secondary.key_id: "secondary",
    }


def test_an_unknown_key_looks_up_nothing(chat: Created, keys: KeyStore) -> None:
    assert keys.lookup(new_key()) is None
    assert keys.lookup(chat.keys[0].key[:-1]) is None
    assert keys.lookup(key_hash(chat.keys[0].key)) is None


def test_each_deployment_has_its_own_keys(
    deployments: DeploymentStore, chat: Created, keys: KeyStore
) -> None:
    other = deployments.create(project="q", model=SMOLLM2, name="other")
    assert {keys.lookup(k.key).deployment_name for k in other.keys} == {"other"}  # type: ignore[union-attr]
    assert {keys.lookup(k.key).deployment_name for k in chat.keys} == {"chat"}  # type: ignore[union-attr]


@pytest.mark.parametrize("which", ["primary", "secondary"])
def test_regenerating_one_key_leaves_the_other_working(chat: Created, keys: KeyStore, which: str) -> None:
    old = {k.which: k.key for k in chat.keys}
    other = "secondary" if which == "primary" else "primary"
    issued = keys.regenerate("chat", which)  # type: ignore[arg-type]
    assert issued.which == which
    assert issued.key != old[which]
    assert keys.lookup(old[which]) is None
    assert keys.lookup(issued.key).deployment_name == "chat"  # type: ignore[union-attr]
    assert keys.lookup(old[other]).deployment_name == "chat"  # type: ignore[union-attr]
    assert {k.which: k.hint for k in keys.show("chat")} == {which: issued.key[-4:], other: old[other][-4:]}


def test_a_chosen_key_can_replace_a_generated_one(chat: Created, keys: KeyStore) -> None:
    chosen = "my-own-key-of-twenty-chars"
    keys.regenerate("chat", "primary", chosen)
    assert keys.lookup(chosen).deployment_name == "chat"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["short", "sixteen chars ok", "tab\tinside-a-long-key"])
def test_a_chosen_key_must_be_long_and_without_spaces(chat: Created, keys: KeyStore, bad: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        keys.regenerate("chat", "primary", bad)
    assert refused.value.param == "key"
    assert keys.lookup(chat.keys[0].key) is not None


def test_regenerating_needs_primary_or_secondary_and_a_known_deployment(
    chat: Created, keys: KeyStore
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        keys.regenerate("chat", "tertiary")  # type: ignore[arg-type]
    assert refused.value.param == "which"
    with pytest.raises(NotFound):
        keys.regenerate("ghost", "primary")
    with pytest.raises(NotFound):
        keys.show("ghost")


def test_show_gives_hints_never_keys(chat: Created, keys: KeyStore) -> None:
    shown = keys.show("chat")
    assert [(k.which, k.hint) for k in shown] == [(k.which, k.key[-4:]) for k in chat.keys]
    assert all(k.created_at.tzinfo is not None for k in shown)


def test_the_first_start_makes_an_admin_key_and_shows_it_once(database: Database, keys: KeyStore) -> None:
    issued = keys.ensure_admin(None)
    assert issued is not None and len(issued.key) == 32
    assert keys.is_admin(issued.key)
    assert keys.ensure_admin(None) is None
    assert keys.is_admin(issued.key)
    assert issued.key not in everything_stored(database)


def test_a_given_admin_key_replaces_the_previous_one(keys: KeyStore) -> None:
    first = keys.ensure_admin(None)
    assert first is not None
    chosen = "an-admin-key-chosen-by-the-operator"
    assert keys.ensure_admin(chosen) is None
    assert keys.is_admin(chosen)
    assert not keys.is_admin(first.key)
    assert keys.ensure_admin(chosen) is None
    assert keys.ensure_admin(None) is None
    assert keys.is_admin(chosen)


def test_a_deployment_key_is_not_an_admin_key_and_an_admin_key_opens_no_deployment(
    chat: Created, keys: KeyStore
) -> None:
    admin = keys.ensure_admin(None)
    assert admin is not None
    assert not any(keys.is_admin(k.key) for k in chat.keys)
    assert keys.lookup(admin.key) is None


def test_an_admin_key_must_be_long_and_without_spaces(keys: KeyStore) -> None:
    with pytest.raises(InvalidRequest):
        keys.ensure_admin("short")


# -- the key ring: requests authenticated from memory -------------------------------------------


class Clock:
    """A monotonic clock that moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def database_away(keys: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, any use of the database fails."""

    def away() -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(keys._db, "session", away)


@pytest.mark.anyio
async def test_a_key_once_read_is_answered_from_memory_without_the_database(
    chat: Created, keys: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = await keys.principal(chat.keys[0].key)
    database_away(keys, monkeypatch)
    again = await keys.principal(chat.keys[0].key)
    assert again == primary
    assert again is not None and again.deployment_name == "chat" and again.key_id is not None
    secondary = await keys.principal(chat.keys[1].key)
    assert secondary is not None and secondary.key_id != again.key_id


@pytest.mark.anyio
async def test_a_regenerated_key_stops_working_at_once(chat: Created, keys: KeyStore) -> None:
    old = chat.keys[0].key
    assert await keys.principal(old) is not None
    issued = keys.regenerate("chat", "primary")
    assert await keys.principal(old) is None
    assert (await keys.principal(issued.key)).deployment_name == "chat"  # type: ignore[union-attr]
    assert await keys.principal(chat.keys[1].key) is not None


@pytest.mark.anyio
async def test_the_keys_of_a_deleted_deployment_stop_working_at_once(
    deployments: DeploymentStore, chat: Created, keys: KeyStore
) -> None:
    assert all([await keys.principal(k.key) is not None for k in chat.keys])
    deployments.delete("chat")
    assert [await keys.principal(k.key) for k in chat.keys] == [None, None]


@pytest.mark.anyio
async def test_a_key_made_by_another_process_works_at_once(
    database: Database, chat: Created, keys: KeyStore
) -> None:
    assert await keys.principal(chat.keys[0].key) is not None  # the ring is read
    elsewhere = KeyStore(database)  # the CLI, or another aimi on the same database
    issued = elsewhere.regenerate("chat", "secondary")
    assert (await keys.principal(issued.key)).deployment_name == "chat"  # type: ignore[union-attr]


async def revoked_elsewhere(database: Database, chat: Created) -> tuple[KeyStore, Clock, str]:
    """A key store whose ring holds the primary key, which another process then regenerates; its
    clock, and the old key."""
    clock = Clock()
    keys = KeyStore(database, monotonic=clock, ring_refresh_s=1.0, ring_max_age_s=2.0)
    old = chat.keys[0].key
    assert await keys.principal(old) is not None
    KeyStore(database).regenerate("chat", "primary")
    return keys, clock, old


@pytest.mark.anyio
async def test_a_key_revoked_by_another_process_stops_working_once_the_ring_is_too_old(
    database: Database, chat: Created
) -> None:
    keys, clock, old = await revoked_elsewhere(database, chat)
    clock.now += 2.0
    assert await keys.principal(old) is None


@pytest.mark.anyio
async def test_a_ring_past_its_refresh_age_is_read_again_in_the_background(
    database: Database, chat: Created
) -> None:
    keys, clock, old = await revoked_elsewhere(database, chat)
    clock.now += 1.5
    assert await keys.principal(old) is not None  # answered from the ring it had, which is read again
    reading = keys._reading
    assert reading is not None
    await reading
    assert await keys.principal(old) is None


@pytest.mark.anyio
async def test_an_unknown_key_is_no_one(chat: Created, keys: KeyStore) -> None:
    assert await keys.principal(new_key()) is None
    assert await keys.principal(key_hash(chat.keys[0].key)) is None


@pytest.mark.anyio
async def test_a_scoped_token_opens_its_deployment_until_the_deployment_is_deleted(
    deployments: DeploymentStore, chat: Created, keys: KeyStore
) -> None:
    token = keys.mint_token("chat", owner="session-1")
    opened = await keys.principal(token.token)
    assert opened is not None and (opened.key_id, opened.deployment_name) == (None, "chat")
    deployments.delete("chat")
    deployments.create(project="p", model=SMOLLM2, name="chat")  # a namesake is another deployment
    assert await keys.principal(token.token) is None
