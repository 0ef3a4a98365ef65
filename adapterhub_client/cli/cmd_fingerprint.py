"""`adapters fingerprint DIR [--json]`: fingerprints of a local base model directory."""

from __future__ import annotations

import click

from .output import emit_json, human_size


@click.command("fingerprint")
@click.argument("directory", type=click.Path(file_okay=True, dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--no-cache", is_flag=True, help="Hash every file again, ignoring and not updating the cache.")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Cache directory, as for every command (fingerprints are kept in its fingerprints/ folder).",
)
def fingerprint(directory: str, as_json: bool, no_cache: bool, cache_dir: str | None) -> None:
    """Content, architecture and file fingerprints of a safetensors model DIRECTORY.

    Errors (missing directory, no safetensors, pickle-only checkpoint) are raised as
    NotFoundError / InvalidPackageError for the CLI to print as one line."""
    from ..operations.fingerprint import fingerprint as run

    done = run(directory, cache_dir, use_cache=not no_cache)
    if as_json:
        emit_json(done.to_json())
        return
    result = done.fingerprint
    click.echo(f"model:        {directory}" + (f" ({result['model_type']})" if result["model_type"] else ""))
    click.echo(f"content:      {result['content']}")
    click.echo(f"architecture: {result['architecture']}")
    click.echo(f"tensors:      {result['tensor_count']} counted (floating-point), {human_size(result['total_bytes'])}")
    click.echo("files:")
    for rel, sha in sorted(result["files"].items()):
        click.echo(f"  {sha}  {rel}")
    click.echo(f"time:         {done.seconds * 1000:.1f} ms")
