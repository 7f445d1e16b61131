"""Deployments: a name (part of the endpoint URL) bound to a model, its engine and its keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aimi.errors import NotFound, Unauthorized
from aimi.inference.pipeline import ChatService
from aimi.platform.keys import key_hash, matches

NAME_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def slug(text: str) -> str:
    """A deployment name from free text: lowercase letters, digits and single dashes."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:64].rstrip("-") or "model"


@dataclass
class Deployment:
    name: str
    model_name: str
    provider: str
    service: ChatService
    key_hashes: list[bytes] = field(default_factory=list)

    def opens(self, key: str) -> bool:
        # Check every stored hash so the time taken does not tell which one matched.
        found = False
        for stored in self.key_hashes:
            found |= matches(key, stored)
        return found


class Deployments:
    """The deployments this process serves, found by name or by key."""

    def __init__(self) -> None:
        self._by_name: dict[str, Deployment] = {}

    def add(self, deployment: Deployment, *, keys: list[str]) -> None:
        deployment.key_hashes = [key_hash(k) for k in keys]
        self._by_name[deployment.name] = deployment

    def all(self) -> list[Deployment]:
        return list(self._by_name.values())

    def named(self, name: str) -> Deployment:
        deployment = self._by_name.get(name)
        if deployment is None:
            raise NotFound(f"Deployment '{name}' not found.")
        return deployment

    def authorize(self, key: str | None, *, name: str | None = None) -> Deployment:
        """The deployment this key opens (the named one, when a name is given)."""
        if name is not None:
            deployment = self.named(name)
            if key and deployment.opens(key):
                return deployment
            raise Unauthorized()
        if key:
            opened = [d for d in self._by_name.values() if d.opens(key)]
            if opened:
                return opened[0]
        raise Unauthorized()
