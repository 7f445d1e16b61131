"""`aimi usage`: requests, tokens and cost from the usage ledger."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from aimi.cli.context import console, fail, open_from, platform_options
from aimi.errors import AimiError
from aimi.platform.usage import parse_since


@click.command()
@click.option("--deployment")
@click.option("--since", help="A date, a date-time, or a span back from now: 30m, 12h, 7d")
@click.option("--by", type=click.Choice(["hour", "day"]), help="One line per deployment per hour or day")
@platform_options
def usage(
    deployment: str | None, since: str | None, by: str | None, data_dir: Path | None, database_url: str | None
) -> None:
    """Requests, tokens and cost per deployment, with totals."""
    try:
        start = parse_since(since) if since else None
        lines, total = open_from(data_dir, database_url).ledger.summary(
            deployment=deployment,
            since=start,
            by=by,  # type: ignore[arg-type]
        )
    except AimiError as exc:
        raise fail(exc) from exc
    table = Table(
        "period", "deployment", "requests", "prompt tokens", "completion tokens", "total tokens", "cost ($)"
    )
    for line in [*lines, total]:
        table.add_row(
            line.period or ("" if line is total else "all"),
            line.deployment,
            str(line.requests),
            str(line.prompt_tokens),
            str(line.completion_tokens),
            str(line.total_tokens),
            f"{line.cost:.6f}",
            end_section=line is lines[-1] if lines else False,
        )
    console().print(table)
