"""`aimi deployments create|list|show|delete`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from aimi.cli.context import console, fail, open_from, platform_options
from aimi.errors import AimiError
from aimi.safety.policy import SafetyPolicy


@click.group()
def deployments() -> None:
    """Deployments: a catalog model behind a named endpoint, with two keys and quotas."""


@deployments.command("create")
@click.option("--project", required=True)
@click.option("--model", required=True, help="A catalog model (aimi models list)")
@click.option("--name", required=True, help="Unique; becomes the endpoint URL: {base}/deployments/{name}")
@click.option(
    "--source",
    help="For models whose weights are not known here: a GGUF file, or the URL of an OpenAI-compatible "
    "server to forward to (ending in #model=ID to pick one of its models; its key: AIMI_UPSTREAM_API_KEY)",
)
@click.option("--requests-per-minute", type=int, help="Quota  [default: 1000]")
@click.option("--tokens-per-minute", type=int, help="Quota  [default: 200000]")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True, help="To print the endpoint")
@platform_options
def create(
    project: str,
    model: str,
    name: str,
    source: str | None,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
    base_url: str,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Deploy a catalog model. Its two keys are shown here, once."""
    platform = open_from(data_dir, database_url)
    try:
        created = platform.deployments.create(
            project=project,
            model=model,
            name=name,
            source=source,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        offer = platform.catalog.get(model)
    except AimiError as exc:
        raise fail(exc) from exc
    d = created.deployment
    if created.terms_accepted:
        click.echo(
            f"Project '{project}' is now subscribed to '{offer.name}'. Terms accepted:\n  {offer.terms}\n"
        )
    click.echo(f"deployment: {d.name} ({d.model} in project {d.project})")
    click.echo(f"endpoint:   {base_url.rstrip('/')}/deployments/{d.name}")
    for key in created.keys:
        click.echo(f"{key.which + ' key:':15}{key.key}")
    click.echo("Keep the keys: only their hashes are stored. A running `aimi serve` picks the deployment up.")


@deployments.command("list")
@click.option("--project")
@platform_options
def list_deployments(project: str | None, data_dir: Path | None, database_url: str | None) -> None:
    """Every deployment (of one project)."""
    table = Table("name", "project", "model", "source", "req/min", "tokens/min", "created")
    for d in open_from(data_dir, database_url).deployments.list(project):
        table.add_row(
            d.name,
            d.project,
            d.model,
            d.source,
            str(d.requests_per_minute),
            str(d.tokens_per_minute),
            d.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console().print(table)


@deployments.command("show")
@click.argument("name")
@platform_options
def show(name: str, data_dir: Path | None, database_url: str | None) -> None:
    """One deployment and its keys (their last four characters)."""
    platform = open_from(data_dir, database_url)
    try:
        d = platform.deployments.get(name)
        keys = platform.keys.show(name)
    except AimiError as exc:
        raise fail(exc) from exc
    for label, value in [
        ("deployment", d.name),
        ("project", d.project),
        ("model", d.model),
        ("source", d.source),
        ("requests/min", d.requests_per_minute),
        ("tokens/min", d.tokens_per_minute),
        ("created", d.created_at.isoformat()),
    ]:
        click.echo(f"{label + ':':15}{value}")
    for k in keys:
        click.echo(f"{k.which + ' key:':15}…{k.hint} (since {k.created_at:%Y-%m-%d %H:%M})")


@deployments.command("delete")
@click.argument("name")
@click.confirmation_option(prompt="Delete this deployment and its keys?")
@platform_options
def delete(name: str, data_dir: Path | None, database_url: str | None) -> None:
    """Delete a deployment; its keys stop working at once."""
    try:
        open_from(data_dir, database_url).deployments.delete(name)
    except AimiError as exc:
        raise fail(exc) from exc
    click.echo(f"deleted {name}")


@deployments.command("safety")
@click.argument("name")
@click.option("--on/--off", "enabled", default=None, help="Turn content safety on or off")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="CATEGORY=LEVEL",
    help="Block prompts at this severity: hate|sexual|violence|self_harm = low|medium|high|none",
)
@click.option("--output", "outputs", multiple=True, metavar="CATEGORY=LEVEL", help="The same for completions")
@click.option(
    "--jailbreak/--no-jailbreak", default=None, help="Block prompts with a detected jailbreak attempt"
)
@click.option(
    "--blocklist",
    "blocklists",
    multiple=True,
    metavar="NAME=TERM,TERM",
    help="A blocklist of exact terms (case-insensitive, whole words); repeat for more lists",
)
@click.option(
    "--blocklist-pattern", "patterns", multiple=True, metavar="NAME=REGEX", help="A regex blocklist"
)
@click.option("--judge", metavar="DEPLOYMENT", help="Also ask this chat deployment to classify (''=no judge)")
@platform_options
def safety(
    name: str,
    enabled: bool | None,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    jailbreak: bool | None,
    blocklists: tuple[str, ...],
    patterns: tuple[str, ...],
    judge: str | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Show or change a deployment's content-safety policy."""
    platform = open_from(data_dir, database_url)
    try:
        current = platform.deployments.get(name).safety.to_json()
        if enabled is not None:
            current["enabled"] = enabled
        for direction, settings in (("input", inputs), ("output", outputs)):
            for item in settings:
                category, _, level = item.partition("=")
                current[direction][category] = None if level == "none" else level
        if jailbreak is not None:
            current["block_jailbreak"] = jailbreak
        lists = {b["name"]: b for b in current["blocklists"]}
        for item in blocklists:
            list_name, _, terms = item.partition("=")
            lists.setdefault(list_name, {"name": list_name, "terms": [], "patterns": []})["terms"] += (
                terms.split(",")
            )
        for item in patterns:
            list_name, _, pattern = item.partition("=")
            lists.setdefault(list_name, {"name": list_name, "terms": [], "patterns": []})["patterns"].append(
                pattern
            )
        current["blocklists"] = list(lists.values())
        if judge is not None:
            current["judge"] = judge or None
        stored = platform.deployments.set_safety(name, SafetyPolicy.parse(current)).safety
    except AimiError as exc:
        raise fail(exc) from exc
    click.echo(json.dumps(stored.to_json(), indent=2))
