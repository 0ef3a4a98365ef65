"""Our package format: ``manifest.json`` + ``adapter.safetensors``.

Tensor keys are ``<module path>.<param>``: the path of the adapted module as the plain model's
``named_modules()`` shows it (no adapter name, no ``base_layer`` hop), then the parameter name of
the adapter kind, e.g. ``encoder.layer.0.attention.self.query.lora_A`` (``lora_B``,
``lora_magnitude_vector`` for DoRA; ``<path>.bias`` for base biases saved with ``bias != "none"``).
The manifest's ``adapter`` holds the kind and its config (``AdapterConfig.to_dict``); its
``base_model.architecture.modules`` lists the base weight of every module the adapter touches.
Weights are safetensors; pickle (``.bin``) loads only with ``allow_pickle=True``, as
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import IntegrityError, InvalidPackageError, UsageError
from ..manifest import complete_package, file_digest, new_manifest, read_manifest, write_manifest
from ..nn.base import AdapterConfig, adapter_state

WEIGHTS_FILE = "adapter.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


def _base_fingerprint(model: nn.Module) -> dict[str, Any] | None:
    """The base model's fingerprint for the manifest (hook into ``adapterhub_client.basemodel.fingerprint``).

    None while that module is absent, or while adapters are merged (the weights are not the base's).
    """
    try:
        from ..basemodel.fingerprint import fingerprint_module
    except ImportError:
        return None
    from ..nn.model import list_adapters

    if any(a.merged for a in list_adapters(model)):
        return None
    return fingerprint_module(model)  # it reads past adapter wrappers (base_layer hops)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def base_architecture(model: nn.Module, adapter: str) -> dict[str, Any]:
    """``{"model_type", "modules": {path: {"shape", "dtype", "layer"}}}`` of the base weights `adapter`
    touches; ``layer`` says how the weight is laid out (streaming merges need it)."""
    from ..nn.targets import base_of, get_module, is_conv1d

    modules = {}
    for path in adapter_state(model).modules[adapter]:
        base = base_of(get_module(model, path))
        weight = getattr(base, "weight", None)
        if isinstance(weight, torch.Tensor):
            layer = "embedding" if isinstance(base, nn.Embedding) else "conv1d" if is_conv1d(base) else "linear"
            modules[path] = {"shape": list(weight.shape), "dtype": _dtype_name(weight.dtype), "layer": layer}
    config = getattr(model, "config", None)
    return {"model_type": getattr(config, "model_type", None), "modules": modules}


def save_package(
    model: nn.Module, adapter: str, out_dir: str | os.PathLike[str], *, name: str, version: str,
    **manifest_fields: Any,
) -> Path:
    """Write `adapter` as a package dir; return the directory."""
    from ..nn.model import adapter_tensors

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: t.detach().to("cpu").contiguous() for k, t in adapter_tensors(model, adapter).items()}
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    config = adapter_state(model).configs[adapter]
    model_config = getattr(model, "config", None)
    data = new_manifest(
        name, version, config.kind, config.to_dict(),
        base_model={
            "name": getattr(model_config, "name_or_path", None) or None,
            "fingerprint": _base_fingerprint(model),
            "architecture": base_architecture(model, adapter),
        },
        files=[WEIGHTS_FILE],
        **manifest_fields,
    )
    write_manifest(out, complete_package(out, data))
    return out


def _import_kinds() -> None:
    """Register the built-in adapter kinds with ``AdapterConfig.registry``."""
    from ..nn import lora  # noqa: F401

    try:
        from ..nn import bottleneck  # noqa: F401
    except ImportError:
        pass


def _verify(root: Path, entry: dict[str, Any]) -> Path:
    target = root / entry["path"]
    try:
        sha, size = file_digest(target)
    except FileNotFoundError:
        raise InvalidPackageError(f"{target}: listed in the manifest but missing") from None
    if sha != entry["sha256"] or size != entry["size"]:
        raise IntegrityError(f"{target}: sha256/size do not match the manifest")
    return target


def read_package(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> tuple[AdapterConfig, dict[str, torch.Tensor], str]:
    """Read a package dir: ``(config, tensors with package keys, package name)``; checks sha256.

    A package that wraps a PEFT directory (``adapter.config.format == "peft"``, as ``publish``
    makes from one) is read through :func:`..formats.peft.read_peft` after the same checks.
    """
    root = Path(path)
    manifest = read_manifest(root)
    adapter = manifest["adapter"]
    entries = {f["path"]: f for f in manifest["files"]}
    if adapter["config"].get("format") == "peft":
        from .peft import CONFIG_FILE, read_peft

        for p in entries:
            if p == CONFIG_FILE or p.startswith("adapter_model."):
                _verify(root, entries[p])
        config, tensors = read_peft(root, allow_pickle=allow_pickle)
        return config, tensors, manifest["name"]
    _import_kinds()
    try:
        config = AdapterConfig.from_dict({**adapter["config"], "type": adapter["type"]})
    except (TypeError, ValueError, UsageError) as exc:
        raise InvalidPackageError(f"{root}: adapter config: {exc}") from None
    weights = [p for p in entries if p.endswith(".safetensors")]
    pickled = [p for p in entries if p.endswith(PICKLE_SUFFIXES)]
    if not weights and pickled and not allow_pickle:
        raise InvalidPackageError(f"{root}: weights are pickled ({pickled[0]}); pass allow_pickle=True to load them")
    files = weights or pickled
    if len(files) != 1:
        raise InvalidPackageError(f"{root}: expected one weights file, found {files or 'none'}")
    target = _verify(root, entries[files[0]])
    if weights:
        tensors = load_file(str(target))
    else:
        tensors = torch.load(target, map_location="cpu", weights_only=True)
    return config, tensors, manifest["name"]
