"""Turning a directory into a publishable package: a directory -> a completed, validated manifest.

Our own package dirs keep their manifest (name/version may be overridden); a PEFT LoRA directory
keeps its files as they are (so it still loads in PEFT) and its manifest is derived from
``adapter_config.json`` and the safetensors header alone. Torch-free: PEFT's file and key names
come from :mod:`.peft_layout`, the base-weight layouts from :mod:`adapterhub_client.nn.layout`, and
module paths are matched to a base model's by :func:`~..modpaths.align_paths`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import InvalidPackageError, NotFoundError
from ..manifest import MANIFEST_FILE, complete_package, new_manifest
from ..modpaths import align_paths
from ..nn.layout import CONV1D, EMBEDDING, LINEAR, weight_shape
from . import peft_layout
from .files import read_json

# kept importable under their old names
PEFT_CONFIG = peft_layout.CONFIG_FILE
PEFT_WEIGHTS = peft_layout.WEIGHTS_FILE
PEFT_PREFIX = peft_layout.PREFIX


def _read_json(path: Path) -> Any:
    return read_json(path, missing=NotFoundError)


def is_peft_dir(path: str | os.PathLike[str]) -> bool:
    """Whether `path` holds a PEFT ``adapter_config.json`` (one naming a ``peft_type``)."""
    cfg = Path(path) / PEFT_CONFIG
    if not cfg.is_file():
        return False
    try:
        return peft_layout.is_peft_config(read_json(cfg))
    except InvalidPackageError:
        return False


def base_fingerprint(base_dir: Path, cache_dir: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fingerprint, architecture table) of a local base model directory; `cache_dir` holds the
    fingerprint cache (None: nothing is cached)."""
    from ..basemodel.fingerprint import architecture_dir, fingerprint_dir

    fp = fingerprint_dir(base_dir, cache_dir=cache_dir)
    return {k: fp[k] for k in ("content", "architecture", "files") if fp.get(k)}, architecture_dir(base_dir)


def _peft_modules(weights: Path, fan_in_fan_out: bool) -> dict[str, dict[str, Any]]:
    """Base weight shape and layout of every module a PEFT LoRA file touches."""
    from ..basemodel.safetensors_header import read_header

    header = read_header(weights)
    a_shapes: dict[str, tuple[int, ...]] = {}
    b_shapes: dict[str, tuple[int, ...]] = {}
    embeddings: set[str] = set()
    for key, info in header.tensors.items():
        factor = peft_layout.lora_factor(key)
        if factor is None:
            continue
        module, which, embedding = factor
        (a_shapes if which == "A" else b_shapes)[module] = tuple(info.shape)
        if embedding:
            embeddings.add(module)
    modules: dict[str, dict[str, Any]] = {}
    for module, a in a_shapes.items():
        b = b_shapes.get(module)
        if b is None or len(a) != 2 or len(b) != 2:
            raise InvalidPackageError(f"{weights}: module {module!r} has lora_A without a matching lora_B")
        layer = EMBEDDING if module in embeddings else CONV1D if fan_in_fan_out else LINEAR
        # The adapter file does not tell the base's dtype (PEFT keeps LoRA in fp32 on half bases):
        # unknown until --base fills it in.
        modules[module] = {
            "shape": weight_shape(layer, out_features=b[0], in_features=a[1]),
            "dtype": None,
            "layer": layer,
        }
    if not modules:
        raise InvalidPackageError(f"{weights}: no LoRA tensors found")
    return modules


def peft_manifest(directory: Path, name: str, version: str) -> dict[str, Any]:
    """The manifest of a PEFT LoRA directory, derived without loading a tensor."""
    cfg = _read_json(directory / PEFT_CONFIG)
    if not isinstance(cfg, dict):
        raise InvalidPackageError(f"{directory / PEFT_CONFIG}: expected a JSON object")
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise InvalidPackageError(
            f"{directory / PEFT_CONFIG}: field 'peft_type': only LORA adapters can be published, "
            f"not {cfg.get('peft_type')!r}"
        )
    weights = directory / PEFT_WEIGHTS
    if not weights.is_file():
        if (directory / peft_layout.PICKLE_FILE).is_file():
            raise InvalidPackageError(
                f"{directory}: only a pickle {peft_layout.PICKLE_FILE} is present; save with safe_serialization=True"
            )
        raise InvalidPackageError(f"{directory}: no {PEFT_WEIGHTS}")
    modules = _peft_modules(weights, bool(cfg.get("fan_in_fan_out")))
    config = {
        "format": "peft",
        "r": cfg.get("r", 8),
        "alpha": cfg.get("lora_alpha", 8),
        "dropout": cfg.get("lora_dropout", 0.0),
        "target_modules": cfg.get("target_modules"),
        "rslora": bool(cfg.get("use_rslora", False)),
        "dora": bool(cfg.get("use_dora", False)),
        "bias": cfg.get("bias", "none"),
        "fan_in_fan_out": bool(cfg.get("fan_in_fan_out", False)),
        "rank_pattern": cfg.get("rank_pattern") or {},
        "alpha_pattern": cfg.get("alpha_pattern") or {},
        "modules_to_save": cfg.get("modules_to_save"),
    }
    files = [PEFT_WEIGHTS, PEFT_CONFIG] + (["README.md"] if (directory / "README.md").is_file() else [])
    return new_manifest(
        name,
        version,
        "lora",
        config,
        {
            "name": cfg.get("base_model_name_or_path"),
            "revision": cfg.get("revision"),
            "architecture": {"model_type": None, "modules": modules},
        },
        files,
        task=cfg.get("task_type"),
        tags=["lora", "peft"],
    )


def prepare_package(
    directory: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    base: str | os.PathLike[str] | None = None,
    fingerprint_cache: Path | None = None,
) -> dict[str, Any]:
    """Validate a package directory (ours or PEFT) and return its completed manifest.

    With `base` (a local base model directory) the manifest records its fingerprint and the base's
    dtype of every touched module; `fingerprint_cache` is the directory holding the fingerprint
    cache (None: nothing is cached).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise NotFoundError(f"{directory}: no such directory")
    if (directory / MANIFEST_FILE).is_file():
        data = _read_json(directory / MANIFEST_FILE)
        if not isinstance(data, dict):
            raise InvalidPackageError(f"{directory / MANIFEST_FILE}: expected a JSON object")
        if name:
            data["name"] = name
        if version:
            data["version"] = version
    elif is_peft_dir(directory):
        if not name or not version:
            raise InvalidPackageError(f"{directory}: a PEFT adapter needs --name org/name and --version V")
        data = peft_manifest(directory, name, version)
    else:
        raise InvalidPackageError(f"{directory}: neither {MANIFEST_FILE} nor a PEFT {PEFT_CONFIG} found")
    if base is not None:
        fingerprint, arch = base_fingerprint(Path(base), fingerprint_cache)
        if not isinstance(data.get("base_model"), dict):
            data["base_model"] = {"name": None}
        base_model = data["base_model"]
        base_model["fingerprint"] = fingerprint
        modules = (base_model.get("architecture") or {}).get("modules") or {}
        _fill_dtypes_from_base(modules, arch)
    return complete_package(directory, data)


def _fill_dtypes_from_base(modules: dict[str, dict[str, Any]], arch: dict[str, dict[str, Any]]) -> None:
    """Record the base's own dtype for each touched module (PEFT files only know the adapter's)."""
    by_module = {key[: -len(".weight")]: t for key, t in arch.items() if key.endswith(".weight")}
    rewrite = align_paths(modules, by_module)
    for module, info in modules.items():
        found = by_module.get(rewrite.to_local(module))
        if found is not None:
            info["dtype"] = found["dtype"]
