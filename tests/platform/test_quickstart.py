"""`aimi.platform.quickstart`: what `aimi serve` sets up from its command line, a deployment of the
served model in project `default`, made once and found again at every start."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from aimi.engines.llamacpp.embedded import EMBEDDED
from aimi.errors import Conflict, InvalidRequest
from aimi.platform.deployments import DeploymentStore
from aimi.platform.quickstart import DEFAULT_PROJECT, EMBEDDED_MODEL, ensure_served
from tests.platform.conftest import write_gguf

KEY = "q" * 32


def test_the_first_start_deploys_the_embedded_model_in_the_default_project(
    deployments: DeploymentStore,
) -> None:
    target = ensure_served(deployments, model=None, name=None, api_key=None, context_length=4096)
    d = target.deployment
    assert (d.name, d.project, d.model, d.source) == (
        "smollm2-135m-instruct",
        DEFAULT_PROJECT,
        EMBEDDED_MODEL,
        EMBEDDED,
    )
    assert target.key is not None and len(target.key) == 32
    assert target.key_hint == target.key[-4:]
    assert deployments.keys.lookup(target.key).deployment_name == d.name  # type: ignore[union-attr]


def test_a_given_name_and_key_are_used(deployments: DeploymentStore) -> None:
    target = ensure_served(deployments, model=None, name="smol", api_key=KEY, context_length=4096)
    assert (target.deployment.name, target.key, target.key_hint) == ("smol", KEY, KEY[-4:])
    assert deployments.keys.lookup(KEY).deployment_name == "smol"  # type: ignore[union-attr]


def test_a_later_start_finds_the_deployment_and_does_not_show_its_key_again(
    deployments: DeploymentStore,
) -> None:
    first = ensure_served(deployments, model=None, name="smol", api_key=None, context_length=4096)
    again = ensure_served(deployments, model=None, name=None, api_key=None, context_length=4096)
    assert again.deployment == first.deployment
    assert again.key is None
    assert again.key_hint == first.key_hint
    assert len(deployments.list()) == 1
    assert deployments.keys.lookup(first.key).deployment_name == "smol"  # type: ignore[arg-type,union-attr]


def test_a_later_start_with_a_key_makes_it_the_primary_key_and_keeps_the_secondary(
    deployments: DeploymentStore,
) -> None:
    first = ensure_served(deployments, model=None, name="smol", api_key=None, context_length=4096)
    secondary = deployments.keys.show("smol")[1]
    again = ensure_served(deployments, model=None, name="smol", api_key=KEY, context_length=4096)
    assert again.key == KEY
    assert deployments.keys.lookup(KEY).deployment_name == "smol"  # type: ignore[union-attr]
    assert deployments.keys.lookup(first.key) is None  # type: ignore[arg-type]
    assert deployments.keys.show("smol")[1] == secondary


def test_restarting_with_the_same_key_keeps_it_working(deployments: DeploymentStore) -> None:
    ensure_served(deployments, model=None, name="smol", api_key=KEY, context_length=4096)
    ensure_served(deployments, model=None, name="smol", api_key=KEY, context_length=4096)
    assert deployments.keys.lookup(KEY).deployment_name == "smol"  # type: ignore[union-attr]


def test_restarting_with_the_same_key_keeps_the_key_as_it_was(deployments: DeploymentStore) -> None:
    """`aimi serve --api-key K` at every start: the key is not replaced by itself, so its id (which
    the ledger's rows carry) and its date stay."""
    ensure_served(deployments, model=None, name="smol", api_key=KEY, context_length=4096)
    before = deployments.keys.show("smol")
    key_id = deployments.keys.lookup(KEY).key_id  # type: ignore[union-attr]
    ensure_served(deployments, model=None, name="smol", api_key=KEY, context_length=4096)
    assert deployments.keys.show("smol") == before
    assert deployments.keys.lookup(KEY).key_id == key_id  # type: ignore[union-attr]


def test_serving_the_deployed_model_under_another_name_is_a_conflict_that_names_the_old_one(
    deployments: DeploymentStore,
) -> None:
    ensure_served(deployments, model=None, name="smol", api_key=None, context_length=4096)
    with pytest.raises(Conflict, match="--name smol"):
        ensure_served(deployments, model=None, name="other", api_key=None, context_length=4096)
    assert [d.name for d in deployments.list()] == ["smol"]


def test_a_name_taken_by_a_deployment_of_another_model_is_a_conflict(
    deployments: DeploymentStore, gguf: Path
) -> None:
    deployments.create(project="elsewhere", model="Mistral-Large", name="smol", source=str(gguf))
    with pytest.raises(Conflict, match="taken by a deployment of 'Mistral-Large'"):
        ensure_served(deployments, model=None, name="smol", api_key=None, context_length=4096)


def test_the_embedded_model_deployed_in_another_project_does_not_count(deployments: DeploymentStore) -> None:
    deployments.create(project="research", model=EMBEDDED_MODEL, name="research-smol")
    target = ensure_served(deployments, model=None, name="smol", api_key=None, context_length=4096)
    assert (target.deployment.project, target.deployment.name) == (DEFAULT_PROJECT, "smol")


def test_a_gguf_file_becomes_a_free_catalog_entry_of_its_own(
    deployments: DeploymentStore, gguf: Path
) -> None:
    target = ensure_served(deployments, model=gguf, name=None, api_key=None, context_length=2048)
    offer = deployments.catalog.get("my-model")
    assert (offer.provider, offer.source, offer.context_length, offer.builtin) == (
        "local",
        str(gguf.resolve()),
        2048,
        False,
    )
    assert offer.price_input_per_1k == offer.price_output_per_1k == Decimal(0)
    assert "Bring-your-own weights" in offer.terms
    assert (target.deployment.name, target.deployment.model) == ("my-model", "my-model")


def test_serving_the_same_file_again_reuses_its_catalog_entry(
    deployments: DeploymentStore, gguf: Path
) -> None:
    ensure_served(deployments, model=gguf, name=None, api_key=None, context_length=2048)
    again = ensure_served(deployments, model=gguf, name=None, api_key=None, context_length=2048)
    assert again.key is None
    assert [o.name for o in deployments.catalog.list() if not o.builtin] == ["my-model"]


def test_another_file_with_the_same_name_gets_a_catalog_entry_of_its_own(
    deployments: DeploymentStore, gguf: Path, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    twin = write_gguf(tmp_path / "other" / gguf.name)
    ensure_served(deployments, model=gguf, name="one", api_key=None, context_length=2048)
    ensure_served(deployments, model=twin, name="two", api_key=None, context_length=2048)
    local = {o.name: o.source for o in deployments.catalog.list() if not o.builtin}
    assert len(local) == 2
    assert local["my-model"] == str(gguf.resolve())
    [twin_name] = set(local) - {"my-model"}
    assert twin_name.startswith("my-model-")
    assert local[twin_name] == str(twin.resolve())


def test_a_file_that_is_not_gguf_is_refused(deployments: DeploymentStore, tmp_path: Path) -> None:
    notes = tmp_path / "notes.gguf"
    notes.write_text("hello")
    with pytest.raises(InvalidRequest, match="not a GGUF file"):
        ensure_served(deployments, model=notes, name=None, api_key=None, context_length=2048)
    assert deployments.list() == []
