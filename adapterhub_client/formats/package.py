"""Our package format: ``manifest.json`` + ``adapter.safetensors``; reading, writing, and what a
manifest records about the base modules an adapter touches.

Tensor keys are ``<module path>.<param>``: the path of the adapted module as the plain model's
``named_modules()`` shows it (no adapter name, no ``base_layer`` hop), then the parameter name of
the adapter kind, e.g. ``encoder.layer.0.attention.self.query.lora_A`` (``lora_B``,
``lora_magnitude_vector`` for DoRA; ``<path>.bias`` for base biases saved with ``bias != "none"``).
The manifest's ``adapter`` holds the kind and its config (``AdapterConfig.to_dict``); its
``base_model.architecture.modules`` lists the base weight of every module the adapter touches, with
its layout kind (:mod:`adapterhub_client.nn.layout`). Weights are safetensors; pickles load only
with ``allow_pickle=True`` (:mod:`.tensors`).

Task heads (``nn.heads``) are listed in the manifest's ``adapter.heads`` and their tensors sit in the
same weights file:

* ``{"type": "module_copy", "path": "classifier"}``: a trained copy of the model's module at that
  path (PEFT's ``modules_to_save``); tensors ``<path>.<param>`` (``classifier.weight``), the copy's
  ``state_dict()``. The path also appears in ``base_model.architecture.modules`` (the module it
  replaces must exist in the base, with that shape);
* ``{"type": "prediction", "config": {...}}``: an AdapterHub-style prediction head
  (``HeadConfig.to_dict()``) placed at ``model.heads``; tensors ``heads.<index>.<param>``
  (``heads.1.weight``, AdapterHub's ``heads.<name>.1.weight`` without the name).

A package without ``adapter.heads`` has none (older readers ignore the key and would load only the
adapter, so :func:`read_package` -- what the streaming merge reads -- refuses packages with heads).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._fs import is_pickle_name
from ..errors import AdapterConfigError, InvalidPackageError, UnsupportedAdapterError, UsageError
from ..manifest import complete_package, new_manifest, read_manifest, write_manifest
from ..nn import bottleneck, fusion, lora  # noqa: F401  (registers the built-in kinds with AdapterConfig)
from ..nn.base import AdapterConfig, adapter_state, check_model
from ..nn.heads import HeadConfig, HeadSpec, ModuleCopy
from ..nn.hotswap import hotswap_metadata
from ..nn.model import adapter_heads, adapter_tensors, list_adapters
from ..nn.quant import Linear4bit, quantization_of
from ..nn.targets import base_of, get_module, kind_of
from . import peft, peft_layout
from .files import output_dir, verify_listed_file
from .recipe_layout import COMPOSITION
from .tensors import load_tensors, pickle_refused, save_tensors

WEIGHTS_FILE = "adapter.safetensors"
HEADS = "heads"  # adapter.heads in the manifest
MODULE_COPY = "module_copy"
PREDICTION = "prediction"


def base_fingerprint(model: nn.Module) -> dict[str, Any] | None:
    """The base model's fingerprint for the manifest; None while adapters are merged (the weights
    are not the base's)."""
    from ..basemodel.fingerprint import fingerprint_module

    if any(a.merged for a in list_adapters(model)):
        return None
    return fingerprint_module(model)  # it reads past adapter wrappers (base_layer hops)


def base_model_record(model: nn.Module, adapters: list[str]) -> dict[str, Any]:
    """The manifest's ``base_model`` for `adapters` of `model`: its name, fingerprints, the base modules they
    touch, and its quantization."""
    model_config = getattr(model, "config", None)
    modules: dict[str, Any] = {}
    for adapter in adapters:
        modules.update(base_architecture(model, adapter)["modules"])
    return {
        "name": getattr(model_config, "name_or_path", None) or None,
        "fingerprint": base_fingerprint(model),
        "architecture": {"model_type": getattr(model_config, "model_type", None), "modules": modules},
        "quantization": base_quantization(model),
    }


def base_quantization(model: nn.Module) -> dict[str, Any] | None:
    """How the base's linear layers are quantized (QLoRA: the adapter was trained on these 4-bit weights),
    recorded next to the fingerprint of the unquantized base; None in full precision."""
    quantization = quantization_of(model)
    return None if quantization is None else quantization.to_dict()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def base_architecture(model: nn.Module, adapter: str) -> dict[str, Any]:
    """``{"model_type", "modules": {path: {"shape", "dtype", "layer"}}}`` of the base weights `adapter`
    touches; ``layer`` says how the weight is laid out (streaming merges need it), and is left out
    for modules that are none of the layout kinds (a LayerNorm under a bottleneck)."""
    modules = {}
    for path in adapter_state(model).modules[adapter]:
        base = base_of(get_module(model, path))
        if isinstance(base, Linear4bit):  # the full-precision weight it stands for, as the base stores it
            dtype = _dtype_name(base.weight_dtype)
            modules[path] = {"shape": list(base.source_shape), "dtype": dtype, "layer": base.source_layout}
            continue
        weight = getattr(base, "weight", None)
        if isinstance(weight, torch.Tensor):
            entry: dict[str, Any] = {"shape": list(weight.shape), "dtype": _dtype_name(weight.dtype)}
            kind = kind_of(base)
            if kind is not None:
                entry["layer"] = kind
            modules[path] = entry
    config = getattr(model, "config", None)
    return {"model_type": getattr(config, "model_type", None), "modules": modules}


def save_package(
    model: nn.Module,
    adapter: str,
    out_dir: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    **manifest_fields: Any,
) -> Path:
    """Write `adapter` as a package dir; return the directory."""
    tensors = adapter_tensors(check_model(model), adapter)  # checks the name before anything is written
    out = output_dir(out_dir)
    save_tensors(tensors, out / WEIGHTS_FILE)
    config = adapter_state(model).configs[adapter]
    heads = adapter_heads(model, adapter)
    data = new_manifest(
        name,
        version,
        config.kind,
        config.to_dict(),
        base_model=base_model_record(model, [adapter]),
        files=[WEIGHTS_FILE],
        **manifest_fields,
    )
    if heads:
        data["adapter"][HEADS] = heads_to_manifest(heads)
    data["adapter"]["serving"] = hotswap_metadata(model, adapter)
    write_manifest(out, complete_package(out, data))
    return out


def heads_to_manifest(heads: list[HeadSpec]) -> list[dict[str, Any]]:
    """The manifest's ``adapter.heads`` entries."""
    return [
        {"type": MODULE_COPY, "path": h.path}
        if isinstance(h, ModuleCopy)
        else {"type": PREDICTION, "config": h.to_dict()}
        for h in heads
    ]


def heads_from_manifest(adapter: dict[str, Any], where: str) -> list[HeadSpec]:
    """The task heads a manifest's ``adapter`` lists (``[]`` without ``heads``)."""
    entries = adapter.get(HEADS)
    if entries is None:
        return []
    if not isinstance(entries, list) or len(entries) > 1000:
        raise InvalidPackageError(f"{where}: adapter.heads must be a list of head entries")
    out: list[HeadSpec] = []
    for entry in entries:
        kind = entry.get("type") if isinstance(entry, dict) else None
        try:
            if kind == MODULE_COPY:
                out.append(ModuleCopy(entry.get("path")))
            elif kind == PREDICTION:
                out.append(HeadConfig.from_dict(entry.get("config")))
            else:
                raise InvalidPackageError(
                    f"{where}: adapter.heads entries have type {MODULE_COPY!r} or {PREDICTION!r}, "
                    f"got {repr(entry)[:100]}"
                )
        except AdapterConfigError as exc:
            raise InvalidPackageError(f"{where}: adapter.heads: {exc}") from None
    return out


def read_package_heads(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
) -> tuple[AdapterConfig, dict[str, torch.Tensor], str, list[HeadSpec]]:
    """Read one of our package dirs: ``(config, tensors with package keys, package name, heads)``;
    checks sha256. (A package wrapping a PEFT directory needs the model: :func:`read_for_model`.)"""
    root = Path(path)
    manifest = read_manifest(root)
    adapter = manifest["adapter"]
    config: AdapterConfig
    entries = {f["path"]: f for f in manifest["files"]}
    if adapter["type"] == COMPOSITION:
        raise UsageError(
            f"{root}: {manifest['name']} is a recipe of other adapters: Hub.attach(model, {manifest['name']!r}) "
            "fetches and attaches its parts (formats.composition.load_composition, once the model has them)"
        )
    try:
        config = AdapterConfig.from_dict({**adapter["config"], "type": adapter["type"]})
    except AdapterConfigError as exc:
        raise InvalidPackageError(f"{root}: adapter config: {exc}") from None
    except UnsupportedAdapterError as exc:
        raise UnsupportedAdapterError(f"{root}: {exc}") from None
    heads = heads_from_manifest(adapter, str(root / "manifest.json"))
    weights = [p for p in entries if p.endswith(".safetensors")]
    pickled = [p for p in entries if is_pickle_name(p)]
    if not weights and pickled and not allow_pickle:
        raise pickle_refused(root / pickled[0])
    files = weights or pickled
    if len(files) != 1:
        raise InvalidPackageError(f"{root}: expected one weights file, found {files or 'none'}")
    target = verify_listed_file(root, entries[files[0]])
    return config, load_tensors(target, allow_pickle=allow_pickle), manifest["name"], heads


def _verify_peft_files(root: Path, manifest: dict[str, Any]) -> None:
    for entry in manifest["files"]:
        p = entry["path"]
        if p == peft_layout.CONFIG_FILE or p.startswith("adapter_model."):
            verify_listed_file(root, entry)


def read_package(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
) -> tuple[AdapterConfig, dict[str, torch.Tensor], str]:
    """Read a package dir: ``(config, tensors with package keys, package name)``; checks sha256.

    A package that wraps a PEFT directory (``adapter.config.format == "peft"``, as ``publish``
    makes from one) is read through :func:`.peft.read_peft` after the same checks. A package with
    task heads is refused: what reads only these (the streaming merge) would leave them out; such a
    package loads onto a model (:func:`read_for_model`).
    """
    root = Path(path)
    manifest = read_manifest(root)
    if manifest["adapter"]["config"].get("format") == "peft":
        _verify_peft_files(root, manifest)
        lora, tensors = peft.read_peft(root, allow_pickle=allow_pickle)
        return lora, tensors, manifest["name"]
    config, tensors, name, heads = read_package_heads(root, allow_pickle=allow_pickle)
    if heads:
        raise UnsupportedAdapterError(
            f"{name}: the adapter has task heads ({', '.join(_head_names(heads))}), which only loading onto a "
            "model applies (formats.load_adapter; `adapters attach` without --merge)"
        )
    return config, tensors, name


def _head_names(heads: list[HeadSpec]) -> list[str]:
    return [h.path if isinstance(h, ModuleCopy) else f"{h.head_type} head" for h in heads]


def read_for_model(
    model: nn.Module,
    root: Path,
    *,
    allow_pickle: bool = False,
) -> tuple[AdapterConfig, dict[str, torch.Tensor], str, Callable[[str], str] | None, list[HeadSpec]]:
    """What ``formats.load_adapter`` attaches: ``(config, package-keyed tensors, name hint, key namer, heads)``."""
    manifest = read_manifest(root)
    if manifest["adapter"]["config"].get("format") == "peft":  # PEFT's files, kept as they are
        _verify_peft_files(root, manifest)
        lora, tensors, _, source, heads = peft.read_for_model(model, root, allow_pickle=allow_pickle)
        return lora, tensors, manifest["name"], source, heads
    config, tensors, name, heads = read_package_heads(root, allow_pickle=allow_pickle)
    return config, peft.drop_saved_base_weights(model, tensors, str(root)), name, None, heads
