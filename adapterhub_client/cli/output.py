"""Printing results: `--json` on stdout for machines, short lines for people."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .._text import format_table, human_size  # noqa: F401 (human_size re-exported)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def table(rows: list[list[str]], headers: list[str]) -> None:
    if rows:
        click.echo(format_table(rows, headers))


def is_tty() -> bool:
    return sys.stderr.isatty()
