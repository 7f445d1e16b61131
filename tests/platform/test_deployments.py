"""`aimi.platform.deployments`: the rules a deployment follows (names, one per model per project,
terms, sources, quotas) and what deleting one takes with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from aimi.db.database import Database
from aimi.db.tables import DeploymentKey, Project, TermsAcceptance
from aimi.engines.llamacpp.embedded import EMBEDDED
from aimi.errors import Conflict, InvalidRequest, NotFound
from aimi.platform.deployments import DeploymentStore, check_source, slug
from aimi.platform.keys import KeyStore

SMOLLM2 = "SmolLM2-135M-Instruct"


def acceptances(database: Database, project: str | None = None) -> list[tuple[str, str]]:
    with database.session() as s:
        query = select(Project.name, TermsAcceptance.model_name).join(
            Project, Project.id == TermsAcceptance.project_id
        )
        if project is not None:
            query = query.where(Project.name == project)
        return sorted(tuple(row) for row in s.execute(query))  # type: ignore[misc]


def test_a_deployment_gets_two_keys_and_the_default_quotas(deployments: DeploymentStore) -> None:
    created = deployments.create(project="research", model=SMOLLM2, name="smol")
    d = created.deployment
    assert (d.name, d.project, d.model, d.source) == ("smol", "research", SMOLLM2, EMBEDDED)
    assert (d.requests_per_minute, d.tokens_per_minute) == (1000, 200_000)
    assert [k.which for k in created.keys] == ["primary", "secondary"]
    assert created.keys[0].key != created.keys[1].key
    assert deployments.get("smol") == d
    assert deployments.list() == [d]


def test_quotas_can_be_chosen_and_must_be_at_least_one(deployments: DeploymentStore) -> None:
    d = deployments.create(
        project="p", model=SMOLLM2, name="slow", requests_per_minute=3, tokens_per_minute=500
    ).deployment
    assert (d.requests_per_minute, d.tokens_per_minute) == (3, 500)
    for quota in ({"requests_per_minute": 0}, {"tokens_per_minute": 0}):
        with pytest.raises(InvalidRequest) as refused:
            deployments.create(project="q", model=SMOLLM2, name="none", **quota)  # type: ignore[arg-type]
        assert refused.value.param == "quota"


def test_deployment_names_are_unique_across_projects(deployments: DeploymentStore) -> None:
    deployments.create(project="a", model=SMOLLM2, name="chat")
    with pytest.raises(Conflict, match="'chat' already exists"):
        deployments.create(project="b", model=SMOLLM2, name="chat")
    assert [d.project for d in deployments.list()] == ["a"]


@pytest.mark.parametrize("name", ["a", "chat-1", "9", "a-b-c", "x" * 64])
def test_a_name_of_lowercase_letters_digits_and_inner_dashes_is_accepted(
    deployments: DeploymentStore, name: str
) -> None:
    assert deployments.create(project="p", model=SMOLLM2, name=name).deployment.name == name


@pytest.mark.parametrize(
    "name", ["", "Chat", "-chat", "chat-", "chat_1", "chat.1", "chat 1", "x" * 65, "chät", "a/b", "chat\n"]
)
def test_a_name_that_cannot_be_part_of_a_url_is_refused(deployments: DeploymentStore, name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        deployments.create(project="p", model=SMOLLM2, name=name)
    assert refused.value.param == "name"
    assert deployments.list() == []


def test_a_second_deployment_of_a_model_in_the_same_project_is_a_conflict(
    deployments: DeploymentStore,
) -> None:
    deployments.create(project="research", model=SMOLLM2, name="first")
    with pytest.raises(Conflict, match="one deployment per model per project") as refused:
        deployments.create(project="research", model=SMOLLM2, name="second")
    assert "'first'" in refused.value.message
    assert [d.name for d in deployments.list()] == ["first"]


def test_the_same_model_can_be_deployed_once_in_each_project(deployments: DeploymentStore) -> None:
    deployments.create(project="research", model=SMOLLM2, name="first")
    deployments.create(project="production", model=SMOLLM2, name="second")
    assert [d.name for d in deployments.list("production")] == ["second"]
    assert [d.name for d in deployments.list("research")] == ["first"]
    assert deployments.find("production", SMOLLM2) is not None
    assert deployments.find("nowhere", SMOLLM2) is None


def test_two_models_can_be_deployed_in_one_project(deployments: DeploymentStore, gguf: Path) -> None:
    deployments.create(project="research", model=SMOLLM2, name="smol")
    deployments.create(project="research", model="Mistral-Large", name="large", source=str(gguf))
    assert [d.name for d in deployments.list("research")] == ["large", "smol"]


def test_the_first_deployment_of_an_offer_in_a_project_records_the_terms_acceptance(
    database: Database, deployments: DeploymentStore
) -> None:
    first = deployments.create(project="research", model=SMOLLM2, name="first")
    assert first.terms_accepted
    assert acceptances(database) == [("research", SMOLLM2)]


def test_terms_are_accepted_once_per_project_not_again_on_a_later_deployment(
    database: Database, deployments: DeploymentStore
) -> None:
    deployments.create(project="research", model=SMOLLM2, name="first")
    deployments.delete("first")
    again = deployments.create(project="research", model=SMOLLM2, name="again")
    assert not again.terms_accepted
    assert acceptances(database) == [("research", SMOLLM2)]


def test_another_project_accepts_the_terms_for_itself(
    database: Database, deployments: DeploymentStore, gguf: Path
) -> None:
    deployments.create(project="research", model=SMOLLM2, name="first")
    other = deployments.create(project="production", model=SMOLLM2, name="second")
    large = deployments.create(project="research", model="Mistral-Large", name="large", source=str(gguf))
    assert other.terms_accepted and large.terms_accepted
    assert acceptances(database) == [
        ("production", SMOLLM2),
        ("research", "Mistral-Large"),
        ("research", SMOLLM2),
    ]


def test_a_catalog_model_whose_weights_are_not_here_needs_a_source(deployments: DeploymentStore) -> None:
    with pytest.raises(InvalidRequest, match="not on this machine") as refused:
        deployments.create(project="p", model="Mistral-Large", name="large")
    assert refused.value.param == "source"
    assert deployments.list() == []


def test_a_gguf_file_is_a_source_and_is_kept_as_an_absolute_path(
    deployments: DeploymentStore, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(gguf.parent.parent)
    d = deployments.create(
        project="p", model="Mistral-Large", name="large", source="weights/my-model.gguf"
    ).deployment
    assert d.source == str(gguf.resolve())


@pytest.mark.parametrize(
    "url", ["http://10.0.0.7:8080", "https://mistral.example.com/v1", "http://vllm:8000#model=org/Model-7B"]
)
def test_an_upstream_server_url_is_a_source(deployments: DeploymentStore, url: str) -> None:
    assert (
        deployments.create(project="p", model="Mistral-Small", name="small", source=url).deployment.source
        == url
    )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://user:secret@10.0.0.7:8080", "carries credentials"),
        ("https://:sk-123@api.example.com", "carries credentials"),
        ("http://10.0.0.7:8080#key=abc", "'#model=ID' names"),
    ],
)
def test_an_upstream_url_with_a_secret_or_an_unknown_fragment_is_refused(
    deployments: DeploymentStore, url: str, reason: str
) -> None:
    with pytest.raises(InvalidRequest, match=reason) as refused:
        deployments.create(project="p", model="Mistral-Small", name="small", source=url)
    assert refused.value.param == "source"
    assert deployments.list() == []


def test_a_source_that_is_neither_a_file_nor_an_http_url_is_refused(
    deployments: DeploymentStore, tmp_path: Path
) -> None:
    text = tmp_path / "model.gguf"
    text.write_text("not really a model")
    for source, reason in [
        (str(tmp_path / "missing.gguf"), "neither a file"),
        ("ftp://example.com/model.gguf", "neither a file"),
        (str(tmp_path), "neither a file"),
        (str(text), "not a GGUF file"),
    ]:
        with pytest.raises(InvalidRequest, match=reason) as refused:
            deployments.create(project="p", model="Mistral-Large", name="large", source=source)
        assert refused.value.param == "source"
    assert deployments.list() == []


def test_a_bad_source_is_refused_even_for_a_model_with_weights_here(deployments: DeploymentStore) -> None:
    with pytest.raises(InvalidRequest):
        deployments.create(project="p", model=SMOLLM2, name="smol", source="/nowhere/smol.gguf")


def test_check_source_accepts_the_embedded_model() -> None:
    assert check_source(EMBEDDED) == EMBEDDED


def test_a_deployment_of_a_model_the_catalog_lacks_is_not_found(deployments: DeploymentStore) -> None:
    with pytest.raises(NotFound):
        deployments.create(project="p", model="GPT-5", name="gpt")


@pytest.mark.parametrize("project", ["", "p" * 129])
def test_a_project_needs_a_name(deployments: DeploymentStore, project: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        deployments.create(project=project, model=SMOLLM2, name="smol")
    assert refused.value.param == "project"


def test_deleting_a_deployment_deletes_its_keys(
    database: Database, deployments: DeploymentStore, keys: KeyStore
) -> None:
    gone = deployments.create(project="p", model=SMOLLM2, name="gone")
    kept = deployments.create(project="q", model=SMOLLM2, name="kept")
    deployments.delete("gone")
    assert [d.name for d in deployments.list()] == ["kept"]
    with pytest.raises(NotFound):
        deployments.get("gone")
    assert all(keys.lookup(k.key) is None for k in gone.keys)
    assert all(keys.lookup(k.key) is not None for k in kept.keys)
    with database.session() as s:
        assert s.scalar(select(func.count()).select_from(DeploymentKey)) == 2


def test_a_deleted_name_can_be_used_again(deployments: DeploymentStore) -> None:
    deployments.create(project="p", model=SMOLLM2, name="chat")
    deployments.delete("chat")
    assert deployments.create(project="q", model=SMOLLM2, name="chat").deployment.project == "q"


def test_deleting_or_showing_an_unknown_deployment_is_not_found(deployments: DeploymentStore) -> None:
    with pytest.raises(NotFound, match="'ghost' not found"):
        deployments.delete("ghost")
    with pytest.raises(NotFound):
        deployments.get("ghost")


def test_the_offer_of_a_deployment_is_its_catalog_entry(deployments: DeploymentStore) -> None:
    d = deployments.create(project="p", model=SMOLLM2, name="smol").deployment
    assert deployments.offer(d) == deployments.catalog.get(SMOLLM2)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("SmolLM2-135M-Instruct", "smollm2-135m-instruct"),
        ("Mistral 7B (v0.3).Q4_K_M", "mistral-7b-v0-3-q4-k-m"),
        ("---", "model"),
        ("A" * 80, "a" * 64),
    ],
)
def test_slug_makes_a_valid_deployment_name_from_free_text(text: str, name: str) -> None:
    assert slug(text) == name
