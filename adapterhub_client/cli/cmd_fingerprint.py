"""`adapters fingerprint DIR [--json]`: fingerprints of a local base model directory."""

from __future__ import annotations

import json
import time

import click

from .output import human_size


@click.command("fingerprint")
@click.argument("directory", type=click.Path(file_okay=True, dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--no-cache", is_flag=True, help="Hash every file again, ignoring and not updating the cache.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Fingerprint cache directory (default: $ADAPTERS_CACHE_DIR/fingerprints or the user cache).")
def fingerprint(directory: str, as_json: bool, no_cache: bool, cache_dir: str | None) -> None:
    """Content, architecture and file fingerprints of a safetensors model DIRECTORY.

    Errors (missing directory, no safetensors, pickle-only checkpoint) are raised as
    NotFoundError / InvalidPackageError for the CLI to print as one line."""
    from ..basemodel.fingerprint import fingerprint_dir

    start = time.perf_counter()
    result = fingerprint_dir(directory, cache_dir, use_cache=not no_cache)
    elapsed = time.perf_counter() - start
    if as_json:
        click.echo(json.dumps({"path": directory, **result, "seconds": round(elapsed, 4)}, indent=2, sort_keys=True))
        return
    click.echo(f"model:        {directory}" + (f" ({result['model_type']})" if result["model_type"] else ""))
    click.echo(f"content:      {result['content']}")
    click.echo(f"architecture: {result['architecture']}")
    size = human_size(result["total_bytes"])
    click.echo(f"tensors:      {result['tensor_count']} counted (floating-point), {size}")
    click.echo("files:")
    for rel, sha in sorted(result["files"].items()):
        click.echo(f"  {sha}  {rel}")
    click.echo(f"time:         {elapsed * 1000:.1f} ms")
