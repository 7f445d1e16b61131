"""Projects and deployments: a deployment is a model from the catalog, given a name that becomes
its endpoint URL (`{base}/deployments/{name}`), two keys, quotas and a safety policy. One deployment
per model per project; the first deployment of an offer in a project records the terms acceptance."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from aimi.db.database import Database
from aimi.db.tables import DeploymentRow, Project, TermsAcceptance
from aimi.engines.registry import engine_registry
from aimi.errors import Conflict, InvalidRequest, NotFound
from aimi.platform.catalog import Catalog, Offer
from aimi.platform.keys import IssuedKey, KeyStore
from aimi.safety.policy import SafetyPolicy

log = logging.getLogger("aimi.platform")

NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
DEFAULT_REQUESTS_PER_MINUTE = 1000
DEFAULT_TOKENS_PER_MINUTE = 200_000


def slug(text: str) -> str:
    """A deployment name from free text: lowercase letters, digits and single dashes."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:64].rstrip("-") or "model"


@dataclass(frozen=True)
class Deployment:
    id: int
    name: str
    project: str
    model: str
    source: str
    requests_per_minute: int
    tokens_per_minute: int
    created_at: datetime
    safety: SafetyPolicy = field(default_factory=SafetyPolicy)


@dataclass(frozen=True)
class Created:
    deployment: Deployment
    keys: tuple[IssuedKey, ...]
    terms_accepted: bool
    """True when this deployment subscribed its project to the offer (first of its kind there)."""


def check_name(name: str) -> None:
    """The rule for deployment names (they become part of the endpoint URL)."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            f"Invalid deployment name '{name}': use 1-64 lowercase letters, digits and dashes, "
            "starting and ending with a letter or digit.",
            param="name",
        )


def _taken(name: str) -> Conflict:
    return Conflict(f"A deployment named '{name}' already exists; names are unique.")


def _check_quotas(*limits: int) -> None:
    if any(limit < 1 for limit in limits):
        raise InvalidRequest("Quotas must be at least 1 per minute.", param="quota")


@dataclass(frozen=True)
class TermsRecord:
    """A project's acceptance of a model's terms: when, by whom, and whether it was explicit."""

    model: str
    project: str
    accepted_at: datetime
    accepted_by: str | None
    explicit: bool


class Sources(Protocol):
    """Which sources an engine can serve (the engine registry)."""

    def check(self, source: str) -> str:
        """The source as it is stored; raises `InvalidRequest` when no engine can serve it."""
        ...


def check_source(source: str, sources: Sources | None = None) -> str:
    """`embedded`, an existing GGUF file, an http(s) URL of an upstream server, or a source a plug-in
    engine serves, as the engine registry (by default the built-in engines and plug-ins) decides."""
    return (sources or engine_registry()).check(source)


def _policy(row: DeploymentRow) -> SafetyPolicy:
    """The stored policy; one that no longer validates (written by an older aimi) is read as the
    default policy, which blocks rather than lets through, and said so in the log."""
    try:
        return SafetyPolicy.parse(row.safety)
    except InvalidRequest as exc:
        log.warning("deployment %s: stored safety policy refused (%s); using the default", row.name, exc)
        return SafetyPolicy()


def _deployment(row: DeploymentRow, project: str) -> Deployment:
    return Deployment(
        id=row.id,
        name=row.name,
        project=project,
        model=row.model_name,
        source=row.source,
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        created_at=row.created_at,
        safety=_policy(row),
    )


class DeploymentStore:
    def __init__(
        self, db: Database, catalog: Catalog, keys: KeyStore, *, sources: Sources | None = None
    ) -> None:
        """`sources`: what judges a deployment's source (default: the engine registry with plug-ins)."""
        self._db = db
        self.catalog = catalog
        self.keys = keys
        self.sources: Sources = sources or engine_registry()

    def check_source(self, source: str) -> str:
        return self.sources.check(source)

    def create(
        self,
        *,
        project: str,
        model: str,
        name: str,
        source: str | None = None,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        primary_key: str | None = None,
        safety: SafetyPolicy | None = None,
        accept_terms: bool | None = None,
        accepted_by: str | None = None,
    ) -> Created:
        """`accept_terms`: False refuses (the terms were shown and not accepted); None accepts them
        implicitly, as the CLI and older API clients do. `accepted_by` says who, for the record."""
        check_name(name)
        if accept_terms is False:
            raise InvalidRequest(
                f"Accept the terms of '{model}' to deploy it (accept_terms: true).", param="accept_terms"
            )
        if not project or len(project) > 128:
            raise InvalidRequest("A project name needs 1-128 characters.", param="project")
        offer = self.catalog.get(model)
        chosen = source or offer.source
        if chosen is None:
            raise InvalidRequest(
                f"The weights of '{model}' are not on this machine: give a source, a GGUF file or the URL "
                "of an upstream server (aimi never downloads models).",
                param="source",
            )
        chosen = self.sources.check(chosen)
        rpm = requests_per_minute if requests_per_minute is not None else DEFAULT_REQUESTS_PER_MINUTE
        tpm = tokens_per_minute if tokens_per_minute is not None else DEFAULT_TOKENS_PER_MINUTE
        _check_quotas(rpm, tpm)
        try:
            with self._db.session() as s:
                if s.scalar(select(DeploymentRow.id).where(DeploymentRow.name == name)) is not None:
                    raise _taken(name)
                project_row = s.scalar(select(Project).where(Project.name == project))
                if project_row is None:
                    project_row = Project(name=project)
                    s.add(project_row)
                    s.flush()
                existing = s.scalar(
                    select(DeploymentRow.name).where(
                        DeploymentRow.project_id == project_row.id, DeploymentRow.model_name == offer.name
                    )
                )
                if existing is not None:
                    raise Conflict(
                        f"Project '{project}' already has a deployment of '{offer.name}' ('{existing}'); "
                        "there can be one deployment per model per project."
                    )
                accepted = s.scalar(
                    select(TermsAcceptance.id).where(
                        TermsAcceptance.project_id == project_row.id, TermsAcceptance.model_name == offer.name
                    )
                )
                if accepted is None:
                    s.add(
                        TermsAcceptance(
                            project_id=project_row.id,
                            model_name=offer.name,
                            accepted_by=accepted_by,
                            explicit=bool(accept_terms),
                        )
                    )
                row = DeploymentRow(
                    name=name,
                    project_id=project_row.id,
                    model_name=offer.name,
                    source=chosen,
                    requests_per_minute=rpm,
                    tokens_per_minute=tpm,
                    safety=(safety or SafetyPolicy()).to_json(),
                )
                s.add(row)
                s.flush()
                keys = (
                    self.keys.issue(s, row.id, "primary", primary_key),
                    self.keys.issue(s, row.id, "secondary"),
                )
                created = Created(_deployment(row, project), keys, terms_accepted=accepted is None)
        except IntegrityError as exc:  # a concurrent create won the race
            raise Conflict(
                f"A deployment named '{name}' (or of '{model}' in '{project}') already exists."
            ) from exc
        self.keys.changed()
        return created

    def list(self, project: str | None = None) -> list[Deployment]:
        with self._db.session() as s:
            query = select(DeploymentRow, Project.name).join(Project).order_by(DeploymentRow.name)
            if project is not None:
                query = query.where(Project.name == project)
            return [_deployment(row, p) for row, p in s.execute(query)]

    def get(self, name: str) -> Deployment:
        with self._db.session() as s:
            found = s.execute(
                select(DeploymentRow, Project.name).join(Project).where(DeploymentRow.name == name)
            ).first()
            if found is None:
                raise NotFound(f"Deployment '{name}' not found.")
            return _deployment(found[0], found[1])

    def check_new_name(self, name: str) -> None:
        """Raise what `create` would about this name: its form, or that it is taken."""
        check_name(name)
        with self._db.session() as s:
            if s.scalar(select(DeploymentRow.id).where(DeploymentRow.name == name)) is not None:
                raise _taken(name)

    def set_quotas(
        self, name: str, *, requests_per_minute: int | None = None, tokens_per_minute: int | None = None
    ) -> Deployment:
        """Change a deployment's limits (None keeps one); its keys and everything else stay."""
        _check_quotas(*(q for q in (requests_per_minute, tokens_per_minute) if q is not None))
        with self._db.session() as s:
            row = s.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            if row is None:
                raise NotFound(f"Deployment '{name}' not found.")
            if requests_per_minute is not None:
                row.requests_per_minute = requests_per_minute
            if tokens_per_minute is not None:
                row.tokens_per_minute = tokens_per_minute
        return self.get(name)

    def terms_acceptance(self, name: str) -> TermsRecord | None:
        """The acceptance of the terms that a deployment's project holds for its model."""
        with self._db.session() as s:
            found = s.execute(
                select(TermsAcceptance, Project.name)
                .join(Project, Project.id == TermsAcceptance.project_id)
                .join(DeploymentRow, DeploymentRow.project_id == Project.id)
                .where(DeploymentRow.name == name, TermsAcceptance.model_name == DeploymentRow.model_name)
            ).first()
            if found is None:
                return None
            row, project = found
            return TermsRecord(row.model_name, project, row.accepted_at, row.accepted_by, row.explicit)

    def find(self, project: str, model: str) -> Deployment | None:
        return next((d for d in self.list(project) if d.model == model), None)

    def set_safety(self, name: str, policy: SafetyPolicy) -> Deployment:
        """Replace a deployment's content-safety policy: the one way a policy changes, for the
        management API, the CLI and the portal alike. The policy validated itself; what it cannot
        know is checked here: its judge must be another deployment (one that asks itself would ask
        forever)."""
        with self._db.session() as s:
            row = s.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            if row is None:
                raise NotFound(f"Deployment '{name}' not found.")
            if policy.judge == name:
                raise InvalidRequest(
                    f"Invalid value for 'judge': deployment '{name}' cannot be its own judge.", param="judge"
                )
            if policy.judge is not None and (
                s.scalar(select(DeploymentRow.id).where(DeploymentRow.name == policy.judge)) is None
            ):
                raise InvalidRequest(
                    f"Invalid value for 'judge': there is no deployment named '{policy.judge}'.",
                    param="judge",
                )
            row.safety = policy.to_json()
        return self.get(name)

    def delete(self, name: str) -> None:
        with self._db.session() as s:
            row = s.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
            if row is None:
                raise NotFound(f"Deployment '{name}' not found.")
            s.delete(row)
        self.keys.changed()  # its keys went with it

    def offer(self, deployment: Deployment) -> Offer:
        return self.catalog.get(deployment.model)
