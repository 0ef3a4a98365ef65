"""`adapters pack`, `adapters export` and `adapters convert`: converting between our package directory
and PEFT / AdapterHub directories, and pickled weights to safetensors (no registry, no network)."""

from __future__ import annotations

import click

from .output import emit_json, json_option, say


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="The package directory to write.")
@click.option("--name", help="org/name (default: local/<directory name>).")
@click.option("--version", "version_", metavar="VERSION", help="Version (default: 0.0.0).")
@click.option("--base", type=click.Path(file_okay=False), help="Base model directory: records its fingerprint.")
@json_option
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache directory (fingerprints are kept there).")
def pack(
    directory: str,
    output: str,
    name: str | None,
    version_: str | None,
    base: str | None,
    as_json: bool,
    cache_dir: str | None,
) -> None:
    """Turn a PEFT or AdapterHub adapter DIRECTORY into a package directory (its files unchanged, plus
    manifest.json) that `adapters publish`, `adapters install` and load_adapter take."""
    from ..hub import Hub

    with Hub(cache_dir=cache_dir) as hub:
        done = hub.pack(directory, output, name=name, version=version_, base=base)
    if as_json:
        emit_json(done.to_json())
        return
    say(f"packed {done.name} {done.version} ({done.format} {done.type}) -> {done.output}")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(["peft"]), default="peft", show_default=True, help="The layout to write."
)
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="The directory to write.")
@json_option
def export(directory: str, fmt: str, output: str, as_json: bool) -> None:
    """Write the LoRA package in DIRECTORY (a package or an installed adapter's directory) as a PEFT
    adapter directory, which PeftModel.from_pretrained loads."""
    from ..hub import Hub

    with Hub() as hub:
        done = hub.export(directory, output, fmt)
    if as_json:
        emit_json(done.to_json())
        return
    say(f"exported {done.name} {done.version} as {done.format} -> {done.output}")


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False), help="The directory to write.")
@click.option(
    "--allow-pickle", is_flag=True, help="Required: the pickles are read (with weights_only=True) to be rewritten."
)
@json_option
def convert(directory: str, output: str, allow_pickle: bool, as_json: bool) -> None:
    """Rewrite an AdapterHub or PEFT adapter DIRECTORY whose weights are pickles (pytorch_adapter.bin,
    pytorch_model_head.bin, adapter_model.bin) as safetensors, once, so that no later install or attach
    needs --allow-pickle. The other files are copied."""
    from ..hub import Hub

    if not allow_pickle:
        raise click.UsageError("reading pickled weights needs --allow-pickle (they load with weights_only=True)")
    with Hub() as hub:
        done = hub.convert(directory, output, allow_pickle=True)
    if as_json:
        emit_json(done.to_json())
        return
    say(f"converted {done.source} -> {done.output} ({', '.join(done.files)})")
