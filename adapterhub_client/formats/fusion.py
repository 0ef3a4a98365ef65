"""Fusion packages: an AdapterFusion's parameters (:mod:`..nn.fusion`) as a package of its own whose
manifest lists the fused adapters' packages as dependencies.

The layout is our package format (:mod:`.package`): ``adapter.type`` is ``"fusion"`` and
``adapter.config`` its ``FusionConfig`` (``children``: the Fuse's children, by adapter name);
``adapter.parts`` maps each fused adapter's name to its package, and ``dependencies`` lists those
packages with their version specifiers, so installing the fusion pulls its parts. The weights file
holds the fusion's tensors only, keyed ``<module path>.<query|key|value>.<weight|bias>`` (the paths of
the bottleneck sites), so the parts stay packages of their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InvalidPackageError, UsageError
from ..manifest import complete_package, read_manifest, write_manifest
from ..nn import fusion as nn_fusion
from ..nn.base import adapter_state, check_model
from ..nn.compose import Block, Fuse, child_from_json, child_to_json
from ..nn.model import attach_weights, set_active_adapters
from . import _default_name
from .composition import part_dependencies
from .files import input_dir
from .package import read_package_heads, save_package
from .recipe_layout import PARTS


def save_fusion(
    model: nn.Module,
    fusion: str | Fuse,
    out_dir: str | os.PathLike[str],
    /,
    *,
    name: str,
    version: str = "0.1.0",
    parts: Mapping[str, str | Mapping[str, str]],
    **manifest_fields: Any,
) -> Path:
    """Write fusion `fusion` (its name, or the Fuse it runs) as a package; return the directory.

    `parts` gives each fused adapter's package: its name (``"acme/sentiment"``, any version) or a
    manifest dependency entry (``{"name": "acme/sentiment", "specifier": ">=1.0,<2"}``).
    """
    fname = nn_fusion.fusion_name(check_model(model), fusion)
    config = adapter_state(model).configs[fname]
    assert isinstance(config, nn_fusion.FusionConfig)
    adapters = config.fuse(fname).names()
    dependencies, names = part_dependencies(f"fusion {fname!r}", adapters, parts)
    out = save_package(model, fname, out_dir, name=name, version=version, dependencies=dependencies, **manifest_fields)
    data = read_manifest(out)
    data["adapter"][PARTS] = names
    write_manifest(out, complete_package(out, data))
    return out


def fusion_parts(package_dir: str | os.PathLike[str]) -> dict[str, str]:
    """A fusion package's ``adapter.parts``: fused adapter name -> package name (torch work not needed)."""
    root = input_dir(package_dir)
    manifest = read_manifest(root)
    adapter = manifest["adapter"]
    if adapter["type"] != nn_fusion.KIND:
        raise UsageError(f"{manifest['name']}: a {adapter['type']} package, not a fusion")
    parts = adapter.get(PARTS)
    if not isinstance(parts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parts.items()):
        raise InvalidPackageError(f"{root / 'manifest.json'}: adapter.parts must map adapter names to package names")
    return dict(parts)


def load_fusion(
    model: nn.Module,
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    adapters: Mapping[str, str] | None = None,
    trainable: bool = False,
    activate: bool = True,
) -> str:
    """Load a fusion package onto a model that has its parts; return the fusion's name.

    The fused adapters are found by the names they had when saved, or by `adapters` (saved name ->
    name on this model). With `activate` the fusion's Fuse becomes the active composition.
    """
    check_model(model)
    root = input_dir(path)
    config, tensors, package, _heads = read_package_heads(root)
    if not isinstance(config, nn_fusion.FusionConfig):
        raise UsageError(f"{package}: a {config.kind} package, not a fusion (formats.load_adapter loads it)")
    if adapters is not None:
        if not isinstance(adapters, Mapping) or not all(isinstance(v, str) for v in adapters.values()):
            raise UsageError(f"adapters must map saved adapter names to this model's, got {adapters!r}")
        config = nn_fusion.FusionConfig(
            **{**config.to_dict(), "children": [_renamed(child_from_json(c), adapters) for c in config.children]}
        )
    fname = name or _default_name(model, package)
    attach_weights(model, fname, config, tensors, trainable=trainable, activate=False, where=str(root))
    if activate:
        set_active_adapters(model, fname)
    return fname


def _renamed(child: str | Block, names: Mapping[str, str]) -> object:
    """`child` as JSON with its adapter names mapped through `names`."""
    if isinstance(child, str):
        return names.get(child, child)
    data = child_to_json(child)
    assert isinstance(data, dict)
    data["children"] = [_renamed(c, names) for c in child.children]
    return data


__all__ = ["fusion_parts", "load_fusion", "save_fusion"]
