from __future__ import annotations

import click


@click.group()
def cli() -> None:
    """adapters: pip for model adapters."""


def main() -> None:
    cli()
