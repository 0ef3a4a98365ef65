"""A recipe package's names, and its block tree as one line of text (torch-free: `info` shows it)."""

from __future__ import annotations

from collections.abc import Mapping

COMPOSITION = "composition"  # adapter.type of a recipe
PARTS = "parts"  # adapter.parts: saved adapter name -> package name (recipes and fusions)
RECIPE_FILE = "composition.json"

_TITLES = {"stack": "Stack", "parallel": "Parallel", "average": "Average", "batch_split": "BatchSplit", "fuse": "Fuse"}
_SETTINGS = ("weights", "batch_sizes", "name")


def describe_block(data: object, parts: Mapping[str, str] | None = None, depth: int = 0) -> str:
    """``Stack(acme/a, Fuse(acme/b, acme/c))``: a block's JSON with adapter names shown as their packages."""
    parts = parts or {}
    if isinstance(data, str):
        return parts.get(data, data)
    if not isinstance(data, Mapping) or depth > 32:
        return "?"
    title = _TITLES.get(str(data.get("block")), str(data.get("block")))
    children = data.get("children")
    shown = [describe_block(c, parts, depth + 1) for c in children] if isinstance(children, list) else []
    shown += [f"{k}={data[k]!r}" for k in _SETTINGS if data.get(k) is not None]
    return f"{title}({', '.join(shown)})"
