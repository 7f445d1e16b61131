"""`aimi`: the command line entry point."""

from __future__ import annotations

import click

import aimi
from aimi.cli.serve import serve


@click.group()
@click.version_option(aimi.__version__, prog_name="aimi")
def main() -> None:
    """aimi: the Azure AI Model Inference and Mistral chat APIs on your own machine."""


main.add_command(serve)
