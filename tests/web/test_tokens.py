"""Tokens scoped to one deployment (`KeyStore.mint_token`): what the playground calls with."""

from __future__ import annotations

import pytest

from aimi.errors import NotFound
from aimi.platform.deployments import DeploymentStore
from aimi.platform.keys import KeyStore

SMOLLM2 = "SmolLM2-135M-Instruct"


@pytest.fixture
def stores(deployments: DeploymentStore) -> tuple[DeploymentStore, KeyStore]:
    deployments.create(project="p", model=SMOLLM2, name="one")
    deployments.create(project="q", model=SMOLLM2, name="two")
    return deployments, deployments.keys


def test_a_token_names_its_deployment_and_no_key(stores: tuple[DeploymentStore, KeyStore]) -> None:
    _, keys = stores
    minted = keys.mint_token("one", owner="s1")
    principal = keys.lookup(minted.token)
    assert principal is not None
    assert (principal.deployment_name, principal.key_id) == ("one", None)
    assert keys.lookup(minted.token + "x") is None


def test_a_token_expires(stores: tuple[DeploymentStore, KeyStore]) -> None:
    deployments, _ = stores
    now = [1000.0]
    keys = KeyStore(deployments.keys._db, clock=lambda: now[0])
    minted = keys.mint_token("one", owner="s1", ttl_s=60)
    assert keys.lookup(minted.token) is not None
    now[0] += 61
    assert keys.lookup(minted.token) is None


def test_revoking_an_owner_ends_its_tokens_only(stores: tuple[DeploymentStore, KeyStore]) -> None:
    _, keys = stores
    mine, theirs = keys.mint_token("one", owner="s1"), keys.mint_token("two", owner="s2")
    assert keys.revoke_tokens("s1") == 1
    assert keys.lookup(mine.token) is None
    assert keys.lookup(theirs.token) is not None


def test_no_token_for_a_deployment_that_does_not_exist(stores: tuple[DeploymentStore, KeyStore]) -> None:
    _, keys = stores
    with pytest.raises(NotFound):
        keys.mint_token("nope", owner="s1")


def test_a_deleted_deployment_refuses_its_tokens(stores: tuple[DeploymentStore, KeyStore]) -> None:
    deployments, keys = stores
    minted = keys.mint_token("two", owner="s1")
    deployments.delete("two")
    assert keys.lookup(minted.token) is None
