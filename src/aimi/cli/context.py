"""The platform a management command works on: the same data dir / database as `aimi serve`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from aimi.errors import AimiError
from aimi.platform.services import Platform, open_platform
from aimi.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def platform_options(command: F) -> F:
    """`--data-dir` and `--database-url`, as for `aimi serve` (and their AIMI_* variables)."""
    command = click.option("--database-url", help="SQLAlchemy URL.  [env AIMI_DATABASE_URL]")(command)
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="aimi's data dir.  [env AIMI_DATA_DIR]",
    )(command)
    return command


def open_from(data_dir: Path | None, database_url: str | None) -> Platform:
    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    if database_url is not None:
        settings = settings.model_copy(update={"database_url": database_url})
    return open_platform(settings)


def fail(exc: AimiError) -> click.ClickException:
    return click.ClickException(exc.message)


def console() -> Console:
    """Tables at full width when the output is not a terminal (a pipe or a file)."""
    return Console(width=None if sys.stdout.isatty() else 200)
