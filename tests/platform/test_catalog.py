"""`aimi.platform.catalog`: the built-in offers, what they say about themselves, and adding one."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from sqlalchemy import update

from aimi.db.database import Database
from aimi.db.tables import CatalogModel
from aimi.engines.llamacpp.embedded import EMBEDDED
from aimi.errors import Conflict, InvalidRequest, NotFound
from aimi.platform.catalog import Catalog, Offer

MISTRAL_MODELS = {
    "Mistral-Large",
    "Mistral-Small",
    "Mixtral-8x7B-Instruct-v01",
    "Mixtral-8x7B-v01",
    "Mistral-7B-Instruct-v01",
    "Mistral-7B-v01",
}
SMOLLM2 = "SmolLM2-135M-Instruct"


def an_offer(name: str = "My-Model", **changes: object) -> Offer:
    fields: dict[str, object] = {
        "name": name,
        "provider": "me",
        "context_length": 2048,
        "price_input_per_1k": Decimal("0.000125"),
        "price_output_per_1k": Decimal("0.5"),
        "terms": "Be nice.",
        "capabilities": {"chat": True, "tools": True, "json_mode": False},
        "source": "http://127.0.0.1:9000",
    }
    return Offer(**(fields | changes))  # type: ignore[arg-type]


def test_seeding_offers_the_embedded_model_and_the_mistral_models_of_the_seeds(catalog: Catalog) -> None:
    offers = {o.name: o for o in catalog.list()}
    assert set(offers) == MISTRAL_MODELS | {SMOLLM2}
    assert all(o.builtin for o in offers.values())
    assert {offers[name].provider for name in MISTRAL_MODELS} == {"MistralAI"}
    assert offers[SMOLLM2].provider == "HuggingFaceTB"


@pytest.mark.parametrize("name", sorted(MISTRAL_MODELS | {SMOLLM2}))
def test_every_built_in_offer_has_a_type_context_capabilities_prices_and_terms(
    catalog: Catalog, name: str
) -> None:
    offer = catalog.get(name)
    assert offer.model_type in {"chat-completions", "text-generation"}
    assert offer.context_length >= 8192
    assert set(offer.capabilities) >= {"tools", "json_mode"}
    assert all(isinstance(value, bool) for value in offer.capabilities.values())
    assert offer.price_input_per_1k > 0
    assert offer.price_output_per_1k > 0
    assert len(offer.terms) > 40


def test_the_built_in_offers_keep_their_exact_prices_and_context_lengths(catalog: Catalog) -> None:
    large = catalog.get("Mistral-Large")
    assert (large.context_length, large.price_input_per_1k, large.price_output_per_1k) == (
        32768,
        Decimal("0.004"),
        Decimal("0.012"),
    )
    small = catalog.get(SMOLLM2)
    assert (small.price_input_per_1k, small.price_output_per_1k) == (Decimal("0.0001"), Decimal("0.0002"))


def test_the_large_and_small_mistral_models_call_tools_and_the_base_models_only_generate_text(
    catalog: Catalog,
) -> None:
    assert catalog.get("Mistral-Large").capabilities["tools"] is True
    assert catalog.get("Mistral-Small").capabilities["tools"] is True
    for base in ("Mixtral-8x7B-v01", "Mistral-7B-v01"):
        offer = catalog.get(base)
        assert offer.model_type == "text-generation"
        assert offer.capabilities["json_mode"] is False
    assert catalog.get("Mistral-7B-Instruct-v01").capabilities["json_mode"] is True


def test_only_the_embedded_model_has_weights_on_this_machine(catalog: Catalog) -> None:
    assert catalog.get(SMOLLM2).source == EMBEDDED
    assert all(catalog.get(name).source is None for name in MISTRAL_MODELS)


def test_the_premium_mistral_offers_carry_mistral_terms_and_the_open_ones_apache(catalog: Catalog) -> None:
    assert "Mistral AI" in catalog.get("Mistral-Large").terms
    assert "Mistral AI" in catalog.get("Mistral-Small").terms
    assert "Apache" in catalog.get("Mixtral-8x7B-Instruct-v01").terms
    assert "Apache" in catalog.get(SMOLLM2).terms


def test_seeding_again_adds_nothing_and_keeps_the_operators_prices(
    database: Database, catalog: Catalog
) -> None:
    with database.session() as s:
        s.execute(
            update(CatalogModel)
            .where(CatalogModel.name == "Mistral-Large")
            .values(price_input_per_1k=Decimal("0.003"))
        )
    catalog.seed()
    Catalog(database).seed()
    assert len(catalog.list()) == len(MISTRAL_MODELS) + 1
    assert catalog.get("Mistral-Large").price_input_per_1k == Decimal("0.003")


def test_seeding_puts_back_a_built_in_offer_that_is_missing(database: Database, catalog: Catalog) -> None:
    with database.session() as s:
        s.delete(s.get(CatalogModel, "Mistral-Small"))
    catalog.seed()
    assert catalog.get("Mistral-Small").provider == "MistralAI"


def test_an_added_model_comes_back_as_it_was_given(catalog: Catalog) -> None:
    offer = an_offer()
    catalog.add(offer)
    assert catalog.get("My-Model") == offer
    assert "My-Model" in {o.name for o in catalog.list()}


def test_adding_a_model_under_a_name_the_catalog_has_is_a_conflict(catalog: Catalog) -> None:
    catalog.add(an_offer())
    with pytest.raises(Conflict, match="already has a model named 'My-Model'"):
        catalog.add(an_offer(provider="someone else"))
    with pytest.raises(Conflict):
        catalog.add(an_offer("Mistral-Large"))
    assert catalog.get("My-Model").provider == "me"


@pytest.mark.parametrize(
    ("offer", "param"),
    [
        (an_offer(""), "name"),
        (an_offer("x" * 129), "name"),
        (an_offer(price_input_per_1k=Decimal("-0.1")), "price"),
        (an_offer(price_output_per_1k=Decimal("-0.1")), "price"),
    ],
    ids=["empty-name", "long-name", "negative-input-price", "negative-output-price"],
)
def test_a_model_without_a_proper_name_or_with_a_negative_price_is_refused(
    catalog: Catalog, offer: Offer, param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        catalog.add(offer)
    assert refused.value.param == param


def test_an_unknown_model_is_not_found(catalog: Catalog) -> None:
    with pytest.raises(NotFound, match="no model 'GPT-5'"):
        catalog.get("GPT-5")


def test_the_cost_of_a_request_is_its_tokens_at_the_prices_per_thousand() -> None:
    offer = an_offer(price_input_per_1k=Decimal("0.004"), price_output_per_1k=Decimal("0.012"))
    assert offer.cost(1000, 0) == Decimal("0.004")
    assert offer.cost(0, 1000) == Decimal("0.012")
    assert offer.cost(250, 50) == Decimal("0.0016")
    assert offer.cost(0, 0) == 0


def test_several_processes_seeding_at_once_add_each_offer_once(database_url: str, database: Database) -> None:
    """Every `aimi serve` and every CLI command seeds the catalog when it opens the database; two
    starting together must not fail on each other's rows."""
    handles = [Database(database_url) for _ in range(4)]
    together = threading.Barrier(len(handles))
    failures: list[BaseException] = []

    def seed(db: Database) -> None:
        together.wait()
        try:
            Catalog(db).seed()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=seed, args=(db,)) for db in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for db in handles:
        db.close()
    assert [type(f).__name__ for f in failures] == []
    assert len(Catalog(database).list()) == len(MISTRAL_MODELS) + 1
