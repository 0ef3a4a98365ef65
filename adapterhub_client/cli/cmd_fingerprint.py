"""`adapters fingerprint DIR [--json]`: fingerprints of a local base model directory."""

from __future__ import annotations

import click

from .output import emit_json, human_size, say


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
    """Content, architecture and file fingerprints of a base model DIRECTORY (safetensors weights, as
    save_pretrained writes them): what a manifest records with `publish --base`, and what `attach` and
    `install --for-model` compare. Pickle-only checkpoints are refused (nothing is unpickled)."""
    from pathlib import Path

    from ..errors import UsageError

    root = Path(directory)
    if root.is_dir() and any((root / f).is_file() for f in ("manifest.json", "adapter_config.json")):
        raise UsageError(
            f"{directory} is an adapter, not a base model: fingerprint the base model's directory "
            "(see `adapters info` for the base an adapter records)"
        )
    from ..operations.fingerprint import fingerprint as run

    done = run(directory, cache_dir, use_cache=not no_cache)
    if as_json:
        emit_json(done.to_json())
        return
    result = done.fingerprint
    say(f"model:        {directory}" + (f" ({result['model_type']})" if result["model_type"] else ""))
    say(f"content:      {result['content']}")
    say(f"architecture: {result['architecture']}")
    say(f"tensors:      {result['tensor_count']} counted (floating-point), {human_size(result['total_bytes'])}")
    say("files:")
    for rel, sha in sorted(result["files"].items()):
        say(f"  {sha}  {rel}")
    say(f"time:         {done.seconds * 1000:.1f} ms")
