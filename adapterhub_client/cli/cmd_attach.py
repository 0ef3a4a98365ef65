"""`adapters attach`: check adapters against a local model, then attach them (or merge to disk)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..bnb_layout import QUANT_TYPES
from .commands import adapterhub_options, common
from .output import emit_json, say, warn

if TYPE_CHECKING:
    from ..hub import Hub
    from ..operations.results import CheckedAdapter


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="The local base model directory (safetensors, as save_pretrained writes it).",
)
@click.option("--check", "check_only", is_flag=True, help="Only check compatibility; download and load nothing.")
@click.option("--strict", is_flag=True, help="Require the exact base weights (refuse same-architecture matches).")
@click.option("--merge", is_flag=True, help="Merge the LoRA adapters into a copy of the checkpoint.")
@click.option("--output", type=click.Path(file_okay=False), help="Where --merge writes the merged checkpoint.")
@click.option("--allow-pickle", is_flag=True, help="Load pickled weights (with weights_only=True); refused by default.")
@click.option(
    "--quantize",
    type=click.Choice(QUANT_TYPES),
    help="Load the base's linear layers in 4 bits (blocksize 64, double quantization, bfloat16 compute), "
    "as QLoRA adapters were trained; the check compares the quantization too.",
)
@common
@adapterhub_options
def attach(
    hub: Hub,
    refs: tuple[str, ...],
    model_dir: str,
    check_only: bool,
    strict: bool,
    merge: bool,
    output: str | None,
    allow_pickle: bool,
    quantize: str | None,
    as_json: bool,
) -> None:
    """Check REFS against the model in --model, then attach them (proving the weights fit) or,
    with --merge --output OUT, write the base with the LoRA adapters merged, tensor by tensor.

    REFS are as for install: org/name[@spec], hf://org/repo[@rev], ah:task/subtask[@org] (for the
    model's name, or --base-name), package directories, or PEFT / AdapterHub adapter directories
    (taken as local/<dir name> 0.0.0)."""
    if merge and not output:
        raise click.UsageError("--merge needs --output OUT")
    if output and not merge:
        raise click.UsageError("--output is only used with --merge")

    def show_verdicts(adapters: list[CheckedAdapter]) -> None:  # before anything is downloaded
        for checked in adapters:
            say(f"{checked.name} {checked.version}: {checked.verdict.kind}")
            if checked.verdict.kind != "exact":
                warn(checked.verdict.message)

    report = hub.attach_dir(
        refs,
        model_dir,
        strict=strict,
        check_only=check_only,
        merge_to=output,
        on_checked=None if as_json else show_verdicts,
        allow_pickle=allow_pickle,
        quantize=quantize,
    )
    if as_json:
        emit_json(report.to_json())
        return
    if report.merged is not None:
        merged = report.merged
        say(f"merged {len(report.adapters)} adapter(s) into {merged.merged_tensors} tensors -> {merged.output}")
    for a in report.attached or []:
        say(
            f"attached {a.adapter}: {a.modules} modules, +{a.parameters:,} parameters "
            f"({a.parameters_share}), e.g. {', '.join(a.examples)}"
        )
