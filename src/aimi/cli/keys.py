"""`aimi keys show|regenerate`: a deployment's two keys."""

from __future__ import annotations

from pathlib import Path

import click

from aimi.cli.context import fail, open_from, platform_options
from aimi.errors import AimiError


@click.group()
def keys() -> None:
    """A deployment's primary and secondary keys (rotate one while the other keeps working)."""


@keys.command("show")
@click.option("--deployment", required=True)
@platform_options
def show(deployment: str, data_dir: Path | None, database_url: str | None) -> None:
    """Which keys exist and how they end (keys are stored hashed; they are shown in full only once)."""
    try:
        found = open_from(data_dir, database_url).keys.show(deployment)
    except AimiError as exc:
        raise fail(exc) from exc
    for k in found:
        click.echo(f"{k.which:10} …{k.hint}  created {k.created_at:%Y-%m-%d %H:%M:%S}")


@keys.command("regenerate")
@click.option("--deployment", required=True)
@click.option("--which", type=click.Choice(["primary", "secondary"]), required=True)
@platform_options
def regenerate(deployment: str, which: str, data_dir: Path | None, database_url: str | None) -> None:
    """Replace one key; the other one keeps working, so clients can move over without downtime."""
    try:
        issued = open_from(data_dir, database_url).keys.regenerate(deployment, which)  # type: ignore[arg-type]
    except AimiError as exc:
        raise fail(exc) from exc
    click.echo(f"new {issued.which} key for {deployment}: {issued.key}")
    click.echo("Shown once; the old one no longer works.")
