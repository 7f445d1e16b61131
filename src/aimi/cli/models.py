"""`aimi models list|show|add`: the model catalog."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import click
from rich.table import Table

from aimi.cli.context import console, fail, open_from, platform_options
from aimi.errors import AimiError
from aimi.platform.catalog import Offer


@click.group()
def models() -> None:
    """The model catalog."""


@models.command("list")
@platform_options
def list_models(data_dir: Path | None, database_url: str | None) -> None:
    """Every model in the catalog."""
    platform = open_from(data_dir, database_url)
    table = Table("model", "provider", "type", "context", "tools", "json", "$/1K in", "$/1K out", "source")
    for o in platform.catalog.list():
        caps = o.capabilities
        table.add_row(
            o.name,
            o.provider,
            o.model_type,
            str(o.context_length),
            _yes(caps.get("tools")),
            _yes(caps.get("json_mode")),
            str(o.price_input_per_1k),
            str(o.price_output_per_1k),
            o.source or "(needs a source)",
        )
    console().print(table)


@models.command("show")
@click.argument("name")
@platform_options
def show_model(name: str, data_dir: Path | None, database_url: str | None) -> None:
    """One catalog entry, with its terms."""
    try:
        o = open_from(data_dir, database_url).catalog.get(name)
    except AimiError as exc:
        raise fail(exc) from exc
    for label, value in [
        ("model", o.name),
        ("provider", o.provider),
        ("type", o.model_type),
        ("context length", o.context_length),
        ("capabilities", o.capabilities),
        ("price per 1K input tokens", f"${o.price_input_per_1k}"),
        ("price per 1K output tokens", f"${o.price_output_per_1k}"),
        ("source", o.source or "(none: give one when deploying)"),
        ("terms", o.terms),
    ]:
        click.echo(f"{label + ':':28}{value}")


@models.command("add")
@click.argument("name")
@click.option("--provider", required=True)
@click.option("--context-length", type=int, required=True)
@click.option(
    "--price-input", type=Decimal, default=Decimal(0), show_default=True, help="USD per 1K input tokens"
)
@click.option(
    "--price-output", type=Decimal, default=Decimal(0), show_default=True, help="USD per 1K output tokens"
)
@click.option("--terms", default="", help="Terms a project accepts with its first deployment of this model")
@click.option("--tools/--no-tools", default=False, help="Trained for tool calling")
@click.option("--source", help="A GGUF file or an upstream URL")
@platform_options
def add_model(
    name: str,
    provider: str,
    context_length: int,
    price_input: Decimal,
    price_output: Decimal,
    terms: str,
    tools: bool,
    source: str | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Add a model to the catalog."""
    offer = Offer(
        name=name,
        provider=provider,
        context_length=context_length,
        price_input_per_1k=price_input,
        price_output_per_1k=price_output,
        terms=terms,
        capabilities={"chat": True, "tools": tools, "json_mode": True},
        source=source,
    )
    try:
        open_from(data_dir, database_url).catalog.add(offer)
    except AimiError as exc:
        raise fail(exc) from exc
    click.echo(f"added {name}")


def _yes(value: object) -> str:
    return "yes" if value else "no"
