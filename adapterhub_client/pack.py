"""Turning a directory into a publishable package: our own package dirs and PEFT LoRA dirs.

A PEFT directory keeps its files as they are (so it still loads in PEFT); the manifest is
derived from `adapter_config.json` and the safetensors header alone, without torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InvalidPackageError, NotFoundError
from .manifest import MANIFEST_FILE, complete_package, new_manifest

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidPackageError(f"{path}: not valid JSON ({exc})") from None


def is_peft_dir(path: Path) -> bool:
    cfg = path / PEFT_CONFIG
    if not cfg.is_file():
        return False
    try:
        return "peft_type" in json.loads(cfg.read_text())
    except (ValueError, OSError):
        return False


def base_fingerprint(base_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fingerprint, architecture table) of a local base model directory."""
    from .basemodel.fingerprint import architecture_dir, fingerprint_dir

    fp = fingerprint_dir(base_dir)
    return {k: fp[k] for k in ("content", "architecture", "files") if fp.get(k)}, architecture_dir(base_dir)


def _peft_modules(weights: Path, fan_in_fan_out: bool) -> dict[str, dict[str, Any]]:
    """Base weight shape and dtype of every module a PEFT LoRA file touches."""
    from .basemodel.safetensors_header import read_header

    header = read_header(weights)
    a_shapes: dict[str, tuple[int, ...]] = {}
    b_shapes: dict[str, tuple[int, ...]] = {}
    embeddings: set[str] = set()
    for key, info in header.tensors.items():
        path = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        for marker, table in ((".lora_A.weight", a_shapes), (".lora_B.weight", b_shapes),
                              (".lora_embedding_A", a_shapes), (".lora_embedding_B", b_shapes)):
            if path.endswith(marker):
                module = path[: -len(marker)]
                table[module] = info.shape
                if "embedding" in marker:
                    embeddings.add(module)
    modules: dict[str, dict[str, Any]] = {}
    for module, a in a_shapes.items():
        b = b_shapes.get(module)
        if b is None or len(a) != 2 or len(b) != 2:
            raise InvalidPackageError(f"{weights}: module {module!r} has lora_A without a matching lora_B")
        in_features, out_features = a[1], b[0]
        layer = "embedding" if module in embeddings else "conv1d" if fan_in_fan_out else "linear"
        # Embedding [num, dim] and GPT-2 Conv1D [in, out] store the weight transposed to Linear [out, in].
        shape = [out_features, in_features] if layer == "linear" else [in_features, out_features]
        # The adapter file does not tell the base's dtype (PEFT keeps LoRA in fp32 on half bases):
        # unknown until --base fills it in.
        modules[module] = {"shape": shape, "dtype": None, "layer": layer}
    if not modules:
        raise InvalidPackageError(f"{weights}: no LoRA tensors found")
    return modules


def peft_manifest(directory: Path, name: str, version: str) -> dict[str, Any]:
    cfg = _read_json(directory / PEFT_CONFIG)
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise InvalidPackageError(
            f"{directory / PEFT_CONFIG}: field 'peft_type': only LORA adapters can be published, not {cfg.get('peft_type')!r}"
        )
    weights = directory / PEFT_WEIGHTS
    if not weights.is_file():
        if (directory / "adapter_model.bin").is_file():
            raise InvalidPackageError(
                f"{directory}: only a pickle adapter_model.bin is present; save with safe_serialization=True"
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
        name, version, "lora", config,
        {"name": cfg.get("base_model_name_or_path"), "revision": cfg.get("revision"),
         "architecture": {"model_type": None, "modules": modules}},
        files,
        task=cfg.get("task_type"),
        tags=["lora", "peft"],
    )


def prepare_package(directory: str | Path, *, name: str | None = None, version: str | None = None,
                    base: str | Path | None = None) -> dict[str, Any]:
    """Validate a package directory (ours or PEFT) and return its completed manifest."""
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
        fingerprint, arch = base_fingerprint(Path(base))
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
    for module, info in modules.items():
        found = by_module.get(module) or next(
            (t for key, t in by_module.items() if key.endswith(f".{module}")), None
        )
        if found is not None:
            info["dtype"] = found["dtype"]
