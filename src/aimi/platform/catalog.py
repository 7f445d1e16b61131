"""The model catalog: offers, with what they can do, what they cost and the terms to accept."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from aimi.db.database import Database
from aimi.db.tables import CatalogModel
from aimi.engines.llamacpp.embedded import EMBEDDED
from aimi.errors import Conflict, InvalidRequest, NotFound

_APACHE = (
    "Apache License 2.0. The weights are published under the Apache License, Version 2.0; by "
    "deploying you accept its terms (https://www.apache.org/licenses/LICENSE-2.0)."
)
_MISTRAL_COMMERCIAL = (
    "Mistral AI commercial terms. This premium model is offered by Mistral AI; deploying it subscribes "
    "the project to the offer and accepts Mistral AI's terms of use for it. Bring the weights or an "
    "upstream endpoint you are licensed to use."
)


@dataclass(frozen=True)
class Offer:
    """A model in the catalog. Prices are per 1,000 tokens, in USD, and are the operator's to set."""

    name: str
    provider: str
    context_length: int
    price_input_per_1k: Decimal
    price_output_per_1k: Decimal
    terms: str
    capabilities: dict[str, Any] = field(default_factory=dict)
    model_type: str = "chat-completions"
    source: str | None = None
    builtin: bool = False

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (prompt_tokens * self.price_input_per_1k + completion_tokens * self.price_output_per_1k) / 1000


def _caps(*, tools: bool, json_mode: bool = True, instruct: bool = True) -> dict[str, Any]:
    return {"chat": instruct, "tools": tools, "json_mode": json_mode}


BUILTIN_OFFERS: tuple[Offer, ...] = (
    Offer(
        "SmolLM2-135M-Instruct",
        "HuggingFaceTB",
        8192,
        Decimal("0.0001"),
        Decimal("0.0002"),
        _APACHE,
        _caps(tools=False),
        source=EMBEDDED,
        builtin=True,
    ),
    Offer(
        "Mistral-Large",
        "MistralAI",
        32768,
        Decimal("0.004"),
        Decimal("0.012"),
        _MISTRAL_COMMERCIAL,
        _caps(tools=True),
        builtin=True,
    ),
    Offer(
        "Mistral-Small",
        "MistralAI",
        32768,
        Decimal("0.001"),
        Decimal("0.003"),
        _MISTRAL_COMMERCIAL,
        _caps(tools=True),
        builtin=True,
    ),
    Offer(
        "Mixtral-8x7B-Instruct-v01",
        "MistralAI",
        32768,
        Decimal("0.0007"),
        Decimal("0.0007"),
        _APACHE,
        _caps(tools=False),
        builtin=True,
    ),
    Offer(
        "Mixtral-8x7B-v01",
        "MistralAI",
        32768,
        Decimal("0.0007"),
        Decimal("0.0007"),
        _APACHE,
        _caps(tools=False, json_mode=False, instruct=False),
        model_type="text-generation",
        builtin=True,
    ),
    Offer(
        "Mistral-7B-Instruct-v01",
        "MistralAI",
        8192,
        Decimal("0.00025"),
        Decimal("0.00025"),
        _APACHE,
        _caps(tools=False),
        builtin=True,
    ),
    Offer(
        "Mistral-7B-v01",
        "MistralAI",
        8192,
        Decimal("0.00025"),
        Decimal("0.00025"),
        _APACHE,
        _caps(tools=False, json_mode=False, instruct=False),
        model_type="text-generation",
        builtin=True,
    ),
)


def _offer(row: CatalogModel) -> Offer:
    return Offer(
        name=row.name,
        provider=row.provider,
        context_length=row.context_length,
        price_input_per_1k=Decimal(row.price_input_per_1k),
        price_output_per_1k=Decimal(row.price_output_per_1k),
        terms=row.terms,
        capabilities=dict(row.capabilities or {}),
        model_type=row.model_type,
        source=row.source,
        builtin=row.builtin,
    )


class Catalog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def seed(self) -> None:
        """Add the built-in offers that are missing (an operator's edits to existing ones stay).
        Several processes may seed at once: each insert is its own savepoint, and losing a race
        to another process's identical insert is fine."""
        with self._db.session() as s:
            present = set(s.scalars(select(CatalogModel.name)))
            for offer in BUILTIN_OFFERS:
                if offer.name in present:
                    continue
                try:
                    with s.begin_nested():
                        s.add(_row(offer))
                except IntegrityError:
                    continue

    def list(self) -> list[Offer]:
        with self._db.session() as s:
            return [_offer(r) for r in s.scalars(select(CatalogModel).order_by(CatalogModel.name))]

    def get(self, name: str) -> Offer:
        with self._db.session() as s:
            row = s.get(CatalogModel, name)
            if row is None:
                raise NotFound(f"There is no model '{name}' in the catalog.")
            return _offer(row)

    def add(self, offer: Offer) -> Offer:
        if not offer.name or len(offer.name) > 128:
            raise InvalidRequest("A model name needs 1-128 characters.", param="name")
        if offer.price_input_per_1k < 0 or offer.price_output_per_1k < 0:
            raise InvalidRequest("Prices cannot be negative.", param="price")
        with self._db.session() as s:
            if s.get(CatalogModel, offer.name) is not None:
                raise Conflict(f"The catalog already has a model named '{offer.name}'.")
            s.add(_row(offer))
        return offer


def _row(offer: Offer) -> CatalogModel:
    return CatalogModel(
        name=offer.name,
        provider=offer.provider,
        model_type=offer.model_type,
        context_length=offer.context_length,
        capabilities=offer.capabilities,
        price_input_per_1k=offer.price_input_per_1k,
        price_output_per_1k=offer.price_output_per_1k,
        terms=offer.terms,
        source=offer.source,
        builtin=offer.builtin,
    )
