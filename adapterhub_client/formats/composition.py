"""Recipes: a composition of adapters (a block tree of :mod:`..nn.compose`) as a package of its own whose
manifest lists its parts as dependencies, so that installing the recipe pulls and pins every part.

The layout is our package format: ``adapter.type`` is ``"composition"``, ``adapter.config`` is
``{"block": <the block as JSON>}`` with the adapter names the parts had on the model that saved it,
``adapter.parts`` maps each of those names to its package, and ``dependencies`` lists the packages
with their version specifiers. The one file, ``composition.json``, repeats the block and the parts (a
package lists at least one file). ``base_model`` is the saving model's, with every module the parts
touch, so the recipe itself is checked against a model like any adapter. A part may be a fusion
package (:mod:`.fusion`): a Fuse in the block then finds it on the model as usual.

:func:`load_composition` activates a recipe on a model that has its parts (``adapters`` maps the saved
names to the names there); ``Hub.attach(model, "org/recipe")`` fetches and attaches the parts first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InvalidPackageError, UsageError
from ..manifest import complete_package, new_manifest, read_manifest, write_manifest
from ..nn.base import adapter_state, check_model
from ..nn.compose import Block, Fuse, FusionLookup, child_from_json, child_to_json
from ..nn.model import set_active_adapters
from .files import input_dir, output_dir
from .package import base_model_record
from .recipe_layout import COMPOSITION, PARTS, RECIPE_FILE

__all__ = ["load_composition", "part_dependencies", "save_composition"]


def part_dependencies(
    what: str, adapters: list[str], parts: Mapping[str, str | Mapping[str, str]]
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The manifest's ``dependencies`` and ``adapter.parts`` for `adapters`, each given its package in
    `parts` by name (``"acme/sentiment"``: any version) or as a dependency entry (``{"name": ...,
    "specifier": ">=1.0,<2"}``). Every adapter needs one; no other may be named."""
    if not isinstance(parts, Mapping):
        raise UsageError(f"parts must map each adapter of {what} to its package, got {type(parts).__name__}")
    missing = [a for a in adapters if a not in parts]
    extra = sorted(set(parts) - set(adapters))
    if missing or extra:
        raise UsageError(
            f"{what} uses {adapters}: parts must name the package of each"
            + (f"; missing {missing}" if missing else "")
            + (f"; not used: {extra}" if extra else "")
        )
    dependencies: list[dict[str, str]] = []
    by_package: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for adapter in adapters:
        part = parts[adapter]
        entry = {"name": part} if isinstance(part, str) else dict(part) if isinstance(part, Mapping) else None
        if entry is None or not isinstance(entry.get("name"), str):
            raise UsageError(f"parts[{adapter!r}] must be a package name or {{'name': ..., 'specifier': ...}}")
        names[adapter] = entry["name"]
        if entry["name"] in by_package:  # one package under two names: one dependency
            if by_package[entry["name"]] != entry:
                raise UsageError(f"parts name {entry['name']} twice with different specifiers")
            continue
        by_package[entry["name"]] = entry
        dependencies.append(entry)  # the manifest's schema checks names and specifiers
    return dependencies, names


def save_composition(
    model: nn.Module,
    block: Block,
    out_dir: str | os.PathLike[str],
    /,
    *,
    name: str,
    version: str = "0.1.0",
    parts: Mapping[str, str | Mapping[str, str]],
    **manifest_fields: Any,
) -> Path:
    """Write `block` (a composition of adapters on `model`) as a recipe package; return the directory.

    `parts` gives the package of every adapter the block names, and of every fusion a Fuse in it runs
    (by the fusion's adapter name), as a package name or a dependency entry with a specifier.
    """
    check_model(model)
    if not isinstance(block, Block):
        raise UsageError(f"expected a composition block (Stack, Parallel, ...), got {type(block).__name__}")
    data = block.to_dict()
    configs = adapter_state(model).configs
    unknown = [a for a in block.names() if a not in configs]
    if unknown:
        raise UsageError(f"the composition names {unknown}, which the model does not have")
    lookup = FusionLookup(configs)
    used = block.names() + list(dict.fromkeys(lookup.find(f) for f in _fuses(block)))
    dependencies, names = part_dependencies(f"the composition {block!r}", used, parts)
    out = output_dir(out_dir)
    recipe = {"block": data, PARTS: names}
    (out / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    manifest = new_manifest(
        name,
        version,
        COMPOSITION,
        {"block": data},
        base_model=base_model_record(model, used),
        files=[RECIPE_FILE],
        **manifest_fields,
    )
    manifest["dependencies"] = dependencies
    manifest["adapter"][PARTS] = names
    write_manifest(out, complete_package(out, manifest))
    return out


def _fuses(block: Block) -> list[Fuse]:
    found = [block] if isinstance(block, Fuse) else []
    for child in block.children:
        if isinstance(child, Block):
            found += _fuses(child)
    return found


def read_composition(package_dir: str | os.PathLike[str]) -> tuple[Block, dict[str, str]]:
    """A recipe package's block and parts (saved adapter name -> package name)."""
    root = input_dir(package_dir)
    manifest = read_manifest(root)
    adapter = manifest["adapter"]
    if adapter["type"] != COMPOSITION:
        raise UsageError(f"{manifest['name']}: a {adapter['type']} package, not a composition")
    parts = adapter.get(PARTS)
    if not isinstance(parts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parts.items()):
        raise InvalidPackageError(f"{root / 'manifest.json'}: adapter.parts must map adapter names to package names")
    try:
        block = Block.from_dict(adapter["config"].get("block"))
    except UsageError as exc:
        raise InvalidPackageError(f"{root / 'manifest.json'}: adapter.config.block: {exc}") from None
    return block, dict(parts)


def load_composition(
    model: nn.Module, path: str | os.PathLike[str], *, adapters: Mapping[str, str] | None = None
) -> Block:
    """Activate the recipe in `path` on a model that has its parts; return the block as activated.

    The parts are found by the names they had when saved, or through `adapters` (saved name -> name
    on this model)."""
    check_model(model)
    block, _parts = read_composition(path)
    if adapters is not None:
        if not isinstance(adapters, Mapping) or not all(isinstance(v, str) for v in adapters.values()):
            raise UsageError(f"adapters must map saved adapter names to this model's, got {adapters!r}")
        renamed = renamed_child(block, adapters)
        assert isinstance(renamed, Block)
        block = renamed
    set_active_adapters(model, block)
    return block


def renamed_child(child: str | Block, names: Mapping[str, str]) -> str | Block:
    """`child` with every adapter name (and a Fuse's fusion name) mapped through `names`."""
    return child_from_json(_renamed_json(child_to_json(child), names))


def _renamed_json(data: object, names: Mapping[str, str]) -> object:
    if isinstance(data, str):
        return names.get(data, data)
    assert isinstance(data, dict)
    out = {**data, "children": [_renamed_json(c, names) for c in data["children"]]}
    if data.get("block") == Fuse.kind and isinstance(data.get("name"), str):
        out["name"] = names.get(data["name"], data["name"])
    return out
