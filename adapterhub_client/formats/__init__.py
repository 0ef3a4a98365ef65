"""Adapter files: read them onto a model, write a model's adapters out. ``nn`` stays in memory; this
package owns every byte on disk.

* :func:`load_adapter` - detect the format (:func:`.files.detect_format`), let that format's reader
  turn the files into a config and package-keyed tensors, then attach them through the one strict
  ``nn.model.attach_weights``: our package (:mod:`.package`), PEFT (:mod:`.peft`), AdapterHub
  (:mod:`.adapterhub`);
* :func:`save_adapter` - our package format; :func:`export_peft` - PEFT's;
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
from .files import ADAPTERHUB, FORMATS, PACKAGE, PEFT, detect_format, find_adapter_dir

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..nn.base import AdapterConfig

    Reader = Callable[..., tuple[AdapterConfig, dict[str, torch.Tensor], str, Callable[[str], str] | None]]

__all__ = [
    "ADAPTERHUB",
    "FORMATS",
    "PACKAGE",
    "PEFT",
    "detect_format",
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
    :class:`~..errors.IncompatibleError`.
    """
    from ..nn.base import check_model
    from ..nn.model import attach_weights
    from ..nn.targets import TargetError

    check_model(model)
    if name is not None and not isinstance(name, str):
        raise UsageError(f"expected an adapter name (a string) or None, got {name!r}")
    fmt, root = detect_format(path, name)
    config, tensors, hint, source_key = _reader(fmt)(model, root, allow_pickle=allow_pickle)
    name = name or _default_name(model, hint)
    try:
        return attach_weights(
            model, name, config, tensors, trainable=trainable, activate=activate, where=str(root), source_key=source_key
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
    """Write a LoRA adapter in PEFT's format (loads with ``PeftModel.from_pretrained``)."""
    from .peft import write_peft

    return write_peft(model, adapter, out_dir)
