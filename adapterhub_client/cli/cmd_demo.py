"""`adapters demo`: the main job end to end on the embedded local registry, no server, no network."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .output import emit_json, json_option, say, table, warn

if TYPE_CHECKING:
    from ..demo.run import Step


@click.command()
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    help="Run in this directory (registry, cache) and keep it; default: a temporary one, removed after.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory and print where it is.")
@json_option
def demo(home: str | None, keep: bool, as_json: bool) -> None:
    """Publish the shipped demo adapter (LoRA for SMS spam on all-MiniLM-L6-v2), search for it,
    install it, check it against the base model, attach it and show how predictions change.

    \b
    Your own registry, cache and config are left untouched: everything happens in a temporary
    directory (or --home DIR)."""
    from ..demo.run import run_demo

    def show(step: Step) -> None:
        say(f"{step.step:<8} {step.verdict:<13} {step.seconds:7.2f} s  {step.detail}")

    report = run_demo(home=home, keep=keep, on_step=None if as_json else show)
    if as_json:
        emit_json(report.to_json())
        return
    if not report.real_base:
        warn("predictions come from a random base: install adapterhub-client[demo] for the real one")
    say()
    rows = [[e.label, e.before, e.after, e.text if len(e.text) <= 70 else e.text[:67] + "..."] for e in report.examples]
    table(rows, ["label", "before", "after", "message"])
    n = len(report.examples)
    held = report.held_out
    say()
    say(
        f"{report.correct('before')}/{n} right before attach, {report.correct('after')}/{n} after; "
        f"held-out accuracy when trained: {held['accuracy_before']:.1%} -> {held['accuracy_after']:.1%} "
        f"({held['messages']} messages)"
    )
    if report.home:
        say(f"kept: {report.home} (ADAPTERS_HOME={report.home} adapters list)")
