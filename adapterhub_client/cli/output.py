"""Printing results: `--json` on stdout for machines, short lines for people.

Registry-controlled text (names, descriptions, base names, file names, messages quoting them) reaches a
person's terminal only through :func:`safe`: control characters and bidi overrides are shown escaped, so
an index line cannot move the cursor, clear the screen or set the window title. JSON stays exact."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import click

from .._text import format_table, human_size  # noqa: F401 (human_size re-exported)

# every command's --json flag (`common` adds it to most; the rest take it from here)
json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")

# C0 (tab and newline included: one record stays one line), DEL, C1, the bidi marks, embeddings,
# overrides and isolates, and the Unicode line/paragraph separators; ESC is C0, so every ESC-based
# sequence (CSI, OSC, ...) is neutralised.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(text: object) -> str:
    """`text` for a terminal: control characters and bidi overrides rendered as ``\\x1b`` / ``\\u202e``."""
    return _UNSAFE.sub(_escape, str(text))


def say(text: object = "", err: bool = False) -> None:
    """One human line (stdout, or stderr with `err`), escaped by :func:`safe`."""
    click.echo(safe(text), err=err)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def warn(message: str) -> None:
    say(f"warning: {message}", err=True)


def table(rows: list[list[str]], headers: list[str]) -> None:
    if rows:
        click.echo(format_table([[safe(c) for c in row] for row in rows], headers))


def is_tty() -> bool:
    return sys.stderr.isatty()


@contextlib.contextmanager
def adapter_warnings() -> Iterator[list[Warning]]:
    """Show the AdapterWarnings raised inside the block (a registry skipped, a yanked version chosen) as
    `warning:` lines on stderr, once the block ends; the yielded list then holds them."""
    from ..errors import AdapterWarning

    shown: list[Warning] = []
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always", AdapterWarning)
            caught = recorded
            yield shown
    finally:
        for w in caught:
            if isinstance(w.message, AdapterWarning):
                warn(str(w.message))
                shown.append(w.message)
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
