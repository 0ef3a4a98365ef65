"""Adapter files: read them onto a model, write a model's adapters out. ``nn`` stays in memory; this
package owns every byte on disk.

* :func:`load_adapter` - detect the format (:func:`.files.detect_format`), let that format's reader
  turn the files into a config and package-keyed tensors, then attach them through the one strict
  ``nn.model.attach_weights``: our package (:mod:`.package`), PEFT (:mod:`.peft`), AdapterHub
  (:mod:`.adapterhub`);
* :func:`save_adapter` - our package format; :func:`export_peft` - PEFT's;
* task heads (``nn.heads``: PEFT's ``modules_to_save``, AdapterHub's prediction heads) load, save
  and export with their adapter: each reader returns them next to the adapter's config;
* :func:`convert_package` - an AdapterHub or PEFT directory with pickled weights -> the same
  directory with safetensors (:mod:`.convert`), so that installing it needs no pickle;
* torch-free parts, importable without torch: :mod:`.files` (JSON, directories, detection),
  :mod:`.peft_layout` and :mod:`.adapterhub_layout` (file and key names), :mod:`.pack` (a directory
  -> a validated manifest, for publishing); :mod:`.checkpoint` streams LoRA merges into checkpoints.

This module imports no torch: readers and writers are imported when called.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IncompatibleError, UsageError
from .files import (
    ADAPTERHUB,
    FORMATS,
    PACKAGE,
    PEFT,
    detect_format,
    find_adapter_dir,
    verify_listed_files,
    wrapped_format,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..nn.base import AdapterConfig
    from ..nn.heads import HeadSpec

    Reader = Callable[
        ..., tuple[AdapterConfig, dict[str, torch.Tensor], str, Callable[[str], str] | None, list[HeadSpec]]
    ]

__all__ = [
    "ADAPTERHUB",
    "FORMATS",
    "PACKAGE",
    "PEFT",
    "convert_package",
    "detect_format",
    "export_package_peft",
    "export_peft",
    "find_adapter_dir",
    "load_adapter",
    "save_adapter",
]


def _reader(fmt: str) -> Reader:
    """``read_for_model(model, root, *, allow_pickle)`` of format `fmt`, imported on first use."""
    if fmt == PACKAGE:
        from .package import read_for_model
    elif fmt == PEFT:
        from .peft import read_for_model
    else:
        from .adapterhub import read_for_model
    return read_for_model


def _default_name(model: nn.Module, hint: str) -> str:
    """An adapter name from the package name or directory (``org/my.adapter`` -> ``my_adapter``),
    numbered if the model already has one by that name."""
    from ..nn.base import adapter_state

    base = hint.rsplit("/", 1)[-1].replace(".", "_") or "adapter"
    name, i = base, 1
    while name in adapter_state(model).configs:
        i += 1
        name = f"{base}_{i}"
    return name


def load_adapter(
    model: nn.Module,
    path: str | os.PathLike[str],
    name: str | None = None,
    *,
    trainable: bool = False,
    activate: bool = True,
    allow_pickle: bool = False,
) -> str:
    """Load an adapter from our package dir, a PEFT dir or an AdapterHub dir; return its name.

    The format is detected from the files: ``manifest.json`` (package), ``adapter_config.json``
    nesting a ``config`` (AdapterHub) or any other ``adapter_config.json`` (PEFT). Loading is
    strict (every tensor must land, every module get its weights) and all or nothing. The adapter is
    frozen unless ``trainable`` and made the only active one if ``activate``; pickled weights load
    only with ``allow_pickle``. An adapter whose modules the model lacks is an
    :class:`~..errors.IncompatibleError`. Its task heads come with it: a PEFT ``modules_to_save``
    module runs as the adapter's trained copy while it is active, an AdapterHub prediction head is
    placed at ``model.heads[name]`` (``nn.model.head_output(model, outputs)`` runs it).
    """
    from ..nn.base import check_model
    from ..nn.model import attach_weights
    from ..nn.targets import TargetError

    check_model(model)
    if name is not None and not isinstance(name, str):
        raise UsageError(f"expected an adapter name (a string) or None, got {name!r}")
    fmt, root = detect_format(path, name)
    if fmt == PACKAGE and wrapped_format(root) == ADAPTERHUB:
        verify_listed_files(root)  # the package reader checks its own files; this one reads AdapterHub's
        fmt = ADAPTERHUB
    config, tensors, hint, source_key, heads = _reader(fmt)(model, root, allow_pickle=allow_pickle)
    name = name or _default_name(model, hint)
    try:
        return attach_weights(
            model,
            name,
            config,
            tensors,
            trainable=trainable,
            activate=activate,
            where=str(root),
            source_key=source_key,
            heads=heads,
        )
    except TargetError as exc:
        raise IncompatibleError(f"{root}: the adapter does not fit this model: {exc}") from None


def save_adapter(
    model: nn.Module,
    adapter: str,
    out_dir: str | os.PathLike[str],
    /,
    *,
    name: str | None = None,
    version: str = "0.1.0",
    **manifest_fields: Any,
) -> Path:
    """Write adapter `adapter` as a publishable package dir (``manifest.json`` + ``adapter.safetensors``)."""
    from .package import save_package

    return save_package(model, adapter, out_dir, name=name or f"local/{adapter}", version=version, **manifest_fields)


def export_peft(model: nn.Module, adapter: str, out_dir: str | os.PathLike[str]) -> Path:
    """Write a LoRA adapter in PEFT's format (loads with ``PeftModel.from_pretrained``); its module
    copies become ``modules_to_save``."""
    from .peft import write_peft

    return write_peft(model, adapter, out_dir)


def export_package_peft(package_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> Path:
    """`adapters export --format peft`: a LoRA package directory -> a PEFT directory that
    ``PeftModel.from_pretrained`` loads, without a model: keys renamed by :mod:`.peft_layout` (which
    modules are embeddings comes from the manifest), the config by :func:`.peft.config_to_peft`."""
    from ..errors import InvalidPackageError, UnsupportedAdapterError
    from ..manifest import MANIFEST_FILE, read_manifest
    from ..nn.heads import HeadConfig, ModuleCopy
    from ..nn.layout import CONV1D, EMBEDDING
    from ..nn.lora import LoRAConfig
    from . import peft_layout
    from .files import input_dir, output_dir
    from .package import heads_from_manifest
    from .tensors import load_tensors, save_tensors

    root = input_dir(package_dir)
    if not (root / MANIFEST_FILE).is_file():
        raise InvalidPackageError(f"{root}: not a package directory (no {MANIFEST_FILE}); `adapters pack` makes one")
    manifest = read_manifest(root)
    adapter = manifest["adapter"]
    if adapter["type"] != "lora":
        raise UsageError(f"{manifest['name']}: a {adapter['type']} adapter; PEFT export covers LoRA only")
    verify_listed_files(root)
    fmt = adapter["config"].get("format")
    if fmt == ADAPTERHUB:
        raise UnsupportedAdapterError(
            f"{manifest['name']}: an AdapterHub LoRA; export to PEFT covers our own and PEFT-made packages"
        )
    out = output_dir(out_dir)
    if fmt == PEFT:  # the package keeps PEFT's files as they are
        import shutil

        for name in (peft_layout.CONFIG_FILE, peft_layout.WEIGHTS_FILE):
            shutil.copyfile(root / name, out / name)
        return out
    config = LoRAConfig.from_dict(adapter["config"])
    if not isinstance(config, LoRAConfig):
        raise InvalidPackageError(f"{root}: adapter config is not a LoRA config")
    heads = heads_from_manifest(adapter, str(root / MANIFEST_FILE))
    if any(isinstance(h, HeadConfig) for h in heads):
        raise UsageError(f"{manifest['name']}: the adapter has a prediction head, which PEFT has no form of")
    copies = [h.path for h in heads if isinstance(h, ModuleCopy)]
    weights = [f["path"] for f in manifest["files"] if f["path"].endswith(".safetensors")]
    if len(weights) != 1:
        raise InvalidPackageError(f"{root}: expected one weights file, found {weights or 'none'}")
    modules = (manifest["base_model"].get("architecture") or {}).get("modules") or {}
    tensors = load_tensors(root / weights[0])
    adapted = {k.rpartition(".")[0] for k in tensors if k.endswith(".lora_A")}
    peft_tensors = {}
    for key, t in tensors.items():
        if any(key.startswith(p + ".") for p in copies):
            peft_tensors[peft_layout.saved_module_key(key)] = t
            continue
        path = key.rpartition(".")[0]
        embedding = (modules.get(path) or {}).get("layer") == EMBEDDING
        peft_tensors[peft_layout.to_peft_key(key, embedding=embedding, wrapped=path in adapted)] = t
    save_tensors(peft_tensors, out / peft_layout.WEIGHTS_FILE)
    from .peft import config_to_peft

    fan_in_fan_out = any(m.get("layer") == CONV1D for p, m in modules.items() if p in adapted)
    data = config_to_peft(
        config, fan_in_fan_out=fan_in_fan_out, base_model=manifest["base_model"].get("name"), saved_modules=copies
    )
    import json

    try:
        (out / peft_layout.CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"{out / peft_layout.CONFIG_FILE}: cannot write ({exc.strerror or exc})") from None
    return out


def convert_package(
    src_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], allow_pickle: bool = False
) -> Path:
    """`adapters convert`: an AdapterHub or PEFT directory whose weights are pickles -> `out_dir`, the
    same directory with safetensors weights (:func:`.convert.convert_package`)."""
    from .convert import convert_package as convert

    return convert(src_dir, out_dir, allow_pickle=allow_pickle)
