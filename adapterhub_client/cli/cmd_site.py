"""`adapters registry site DIR [--out SITE_DIR]`: the catalogue website of a directory registry
(docs/SITE.md); `registry build --site` and `publish --site` report through :func:`say_site` too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .output import emit_json, json_option, say, warn

if TYPE_CHECKING:
    from ..site import SiteReport


def say_site(report: SiteReport) -> None:
    """The site's one summary line, and a warning for each adapter it could not show."""
    say(report.summary())
    for problem in report.problems:
        warn(f"site: {problem}")
    if report.problem_count > len(report.problems):
        warn(f"site: ... and {report.problem_count - len(report.problems)} more")


@click.command(name="site")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Where the site goes (default DIRECTORY/site/, served with the registry by the same host).",
)
@json_option
def registry_site(directory: str, out: str | None, as_json: bool) -> None:
    """Write the catalogue website of a directory registry: a home page with counts and live search, a
    page per adapter, lists by base model, type, tag and task. Run again after publishing: only pages whose
    content changed are rewritten. Exit 7 naming each adapter that cannot be shown (the rest is written)."""
    from ..errors import InvalidPackageError
    from ..hub import Hub

    with Hub() as hub:
        report = hub.build_site(Path(directory), None if out is None else Path(out))
    if as_json:
        emit_json(report.to_json())
    else:
        say_site(report)
    if not report.ok:
        more = f" (and {report.problem_count - 1} more)" if report.problem_count > 1 else ""
        raise InvalidPackageError(f"{directory}: left off the site: {report.problems[0]}{more}")
