"""What `aimi serve` sets up when told a model, a name or a key on its command line: a deployment of
that model in the `default` project, so that one command gives a working endpoint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from aimi.engines.llamacpp.embedded import EMBEDDED
from aimi.errors import Conflict, NotFound
from aimi.platform.catalog import Offer
from aimi.platform.deployments import Deployment, DeploymentStore, slug

DEFAULT_PROJECT = "default"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
_OWN_WEIGHTS = (
    "Bring-your-own weights: the file was added by the operator, who is responsible for its license."
)


@dataclass(frozen=True)
class ServeTarget:
    deployment: Deployment
    key: str | None
    """The primary key in full when it was just set (shown once); None when it was set before."""
    key_hint: str


def ensure_served(
    store: DeploymentStore,
    *,
    model: Path | None,
    name: str | None,
    api_key: str | None,
    context_length: int,
    safety: bool | None = None,
) -> ServeTarget:
    target = _ensure(store, model=model, name=name, api_key=api_key, context_length=context_length)
    current = target.deployment.safety
    if safety is not None and current.enabled != safety:
        updated = store.set_safety(target.deployment.name, current.model_copy(update={"enabled": safety}))
        target = ServeTarget(updated, target.key, target.key_hint)
    return target


def _ensure(
    store: DeploymentStore, *, model: Path | None, name: str | None, api_key: str | None, context_length: int
) -> ServeTarget:
    offer = _offer_for(store, model, context_length)
    existing = store.find(DEFAULT_PROJECT, offer.name)
    wanted = name or (existing.name if existing else slug(offer.name))
    if existing is not None and existing.name != wanted:
        raise Conflict(
            f"'{offer.name}' is already deployed in project '{DEFAULT_PROJECT}' as '{existing.name}'; "
            f"serve it with --name {existing.name}, or delete it first "
            f"(aimi deployments delete {existing.name})."
        )
    if existing is None:
        try:
            other = store.get(wanted)
        except NotFound:
            other = None
        if other is not None:
            raise Conflict(
                f"The name '{wanted}' is taken by a deployment of '{other.model}'; choose another --name."
            )
        created = store.create(
            project=DEFAULT_PROJECT, model=offer.name, name=wanted, source=offer.source, primary_key=api_key
        )
        primary = created.keys[0]
        return ServeTarget(created.deployment, primary.key, primary.hint)
    if api_key is not None:
        current = store.keys.lookup(api_key)
        if current is None or current.deployment_name != existing.name:
            store.keys.regenerate(existing.name, "primary", api_key)
        return ServeTarget(existing, api_key, api_key[-4:])
    hint = next((k.hint for k in store.keys.show(existing.name) if k.which == "primary"), "????")
    return ServeTarget(existing, None, hint)


def _offer_for(store: DeploymentStore, model: Path | None, context_length: int) -> Offer:
    if model is None:
        return store.catalog.get(EMBEDDED_MODEL)
    source = store.check_source(str(model))
    for offer in store.catalog.list():
        if offer.source == source:
            return offer
    name = model.name.removesuffix(".gguf")
    if any(o.name == name for o in store.catalog.list()):
        name = f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:6]}"
    return store.catalog.add(
        Offer(
            name=name,
            provider="local",
            context_length=context_length,
            price_input_per_1k=Decimal(0),
            price_output_per_1k=Decimal(0),
            terms=_OWN_WEIGHTS,
            capabilities={"chat": True, "tools": True, "json_mode": True},
            source=source,
        )
    )


__all__ = ["EMBEDDED", "ServeTarget", "ensure_served"]
