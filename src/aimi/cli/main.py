"""`aimi`: the command line entry point."""

from __future__ import annotations

import click

import aimi
from aimi.cli.deployments import deployments
from aimi.cli.keys import keys
from aimi.cli.models import models
from aimi.cli.serve import serve
from aimi.cli.usage import usage


@click.group()
@click.version_option(aimi.__version__, prog_name="aimi")
def main() -> None:
    """aimi: the Azure AI Model Inference and Mistral chat APIs on your own machine."""


for command in (serve, models, deployments, keys, usage):
    main.add_command(command)
