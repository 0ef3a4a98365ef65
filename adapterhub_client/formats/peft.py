"""PEFT's LoRA format: ``adapter_config.json`` + ``adapter_model.safetensors``; no peft import.

Key mapping (PEFT -> package), with PEFT's ``base_model.model.`` prefix standing for the model the
adapter is attached to (a ``BertModel`` given to us has direct paths):

* ``base_model.model.<path>.lora_A.weight`` / ``lora_B.weight`` -> ``<path>.lora_A`` / ``lora_B``;
* ``<path>.lora_embedding_A`` / ``lora_embedding_B`` (embeddings) -> ``<path>.lora_A`` / ``lora_B``;
* ``<path>.lora_magnitude_vector`` (DoRA; older files add ``.weight``) -> the same name;
* ``<path>.bias`` (``bias="all"|"lora_only"``; ``<path>.base_layer.bias`` too) -> ``<path>.bias``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import InvalidPackageError, UsageError
from ..nn.base import adapter_state
from ..nn.lora import LoRAConfig, LoRAEmbedding

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
PREFIX = "base_model.model."

# PEFT config key -> LoRAConfig field
_FIELDS = {
    "r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules",
    "exclude_modules": "exclude_modules", "bias": "bias", "use_rslora": "rslora", "use_dora": "dora",
    "layers_to_transform": "layers_to_transform", "layers_pattern": "layers_pattern",
    "rank_pattern": "rank_pattern", "alpha_pattern": "alpha_pattern",
}
# PEFT options that change the math or add tensors we do not model: refuse rather than be wrong
_UNSUPPORTED = ("modules_to_save", "lora_bias", "use_qalora", "target_parameters", "trainable_token_indices",
                "layer_replication", "alora_invocation_tokens", "arrow_config", "use_bdlora", "velora_config",
                "monteclora_config", "kasa_config", "megatron_config")


# `init_lora_weights` values whose init also rewrites the base weights (PEFT's pissa_init, olora_init,
# corda_init, loftq_init, lora_ga_init): the saved A/B only fit that rewritten base, so loading them as
# plain LoRA onto the original base would give wrong outputs without any error
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


def _check_init(data: dict[str, Any], where: str) -> None:
    init = data.get("init_lora_weights")
    if not isinstance(init, str) or not init.lower().startswith(_BASE_CHANGING_INITS):
        return  # True/False/"gaussian"/"eva"/"orthogonal"/...: only the adapter's own start values
    if init.lower().startswith("loftq"):
        how = ("LoftQ pairs the adapter with the quantized base weights it was initialised against, and "
               "PEFT has no conversion of it to plain LoRA; merge it in PEFT instead (merge_and_unload)")
    else:
        how = ("convert it to plain LoRA in PEFT first: save it with "
               "save_pretrained(out_dir, path_initial_model_for_weight_conversion=<dir of the adapter as "
               "initialised, before training>), which gives an adapter for the original base")
    raise InvalidPackageError(
        f"{where}: init_lora_weights={init!r} changes the base model's weights when the adapter is created, so "
        f"these weights are not a plain LoRA on the original base; {how}"
    )


def peft_to_config(data: dict[str, Any], where: str = CONFIG_FILE) -> LoRAConfig:
    if data.get("peft_type") != "LORA":
        raise InvalidPackageError(f"{where}: peft_type {data.get('peft_type')!r} is not supported (only LORA)")
    used = [k for k in _UNSUPPORTED if data.get(k)]
    if used:
        raise InvalidPackageError(f"{where}: PEFT options not supported: {', '.join(used)}")
    _check_init(data, where)
    kw = {field: data[key] for key, field in _FIELDS.items() if data.get(key) is not None}
    try:
        return LoRAConfig(**kw)
    except (TypeError, UsageError) as exc:
        raise InvalidPackageError(f"{where}: {exc}") from None


def config_to_peft(config: LoRAConfig, *, fan_in_fan_out: bool = False, base_model: str | None = None) -> dict[str, Any]:
    return {
        "peft_type": "LORA",
        "task_type": None,
        "base_model_name_or_path": base_model,
        "revision": None,
        "inference_mode": True,
        "r": config.r,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": config.target_modules,
        "exclude_modules": config.exclude_modules,
        "bias": config.bias,
        "use_rslora": config.rslora,
        "use_dora": config.dora,
        "fan_in_fan_out": fan_in_fan_out,
        "init_lora_weights": True,
        "layers_to_transform": config.layers_to_transform,
        "layers_pattern": config.layers_pattern,
        "rank_pattern": dict(config.rank_pattern),
        "alpha_pattern": dict(config.alpha_pattern),
        "modules_to_save": None,
        "lora_bias": False,
    }


def _to_package_key(key: str) -> str:
    if key.startswith(PREFIX):
        key = key[len(PREFIX):]
    for old, new in ((".lora_A.weight", ".lora_A"), (".lora_B.weight", ".lora_B"),
                     (".lora_embedding_A", ".lora_A"), (".lora_embedding_B", ".lora_B"),
                     (".lora_magnitude_vector.weight", ".lora_magnitude_vector"), (".base_layer.bias", ".bias")):
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def drop_saved_base_weights(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Drop the full embedding matrices PEFT saves next to embedding LoRA (``save_embedding_layers``).

    They are the base's own weights unless the vocabulary was resized; a copy that differs from the
    model's would replace base weights, which an adapter load must not do: refuse it.
    """
    from ..nn.targets import base_of, get_module

    out = {}
    for key, t in tensors.items():
        if not key.endswith(".base_layer.weight"):
            out[key] = t
            continue
        path = key[: -len(".base_layer.weight")]
        try:
            weight = base_of(get_module(model, path)).weight
        except (KeyError, AttributeError):
            raise InvalidPackageError(f"{where}: {key} matches no module of the model") from None
        if weight.shape != t.shape or not torch.equal(weight.detach().cpu(), t.to(weight.dtype)):
            raise InvalidPackageError(
                f"{where}: {key} replaces the base weights (resized or retrained embeddings); not supported"
            )
    return out


def read_peft(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> tuple[LoRAConfig, dict[str, torch.Tensor]]:
    """Read a PEFT LoRA dir: ``(config, tensors with package keys)``."""
    root = Path(path)
    where = str(root / CONFIG_FILE)
    try:
        data = json.loads((root / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise InvalidPackageError(f"{root}: no {CONFIG_FILE}") from None
    except ValueError as exc:
        raise InvalidPackageError(f"{where}: not valid JSON ({exc})") from None
    config = peft_to_config(data, where)
    if (root / WEIGHTS_FILE).is_file():
        raw = load_file(str(root / WEIGHTS_FILE))
    elif (root / PICKLE_FILE).is_file():
        if not allow_pickle:
            raise InvalidPackageError(f"{root}: weights are pickled ({PICKLE_FILE}); pass allow_pickle=True to load them")
        raw = torch.load(root / PICKLE_FILE, map_location="cpu", weights_only=True)
    else:
        raise InvalidPackageError(f"{root}: no {WEIGHTS_FILE}")
    return config, {_to_package_key(k): v for k, v in raw.items()}


def write_peft(model: nn.Module, adapter: str, out_dir: str | os.PathLike[str]) -> Path:
    """Export LoRA adapter `adapter` in PEFT's layout; ``PeftModel.from_pretrained(model, out_dir)`` loads it."""
    from ..nn.model import _layers_of, adapter_tensors

    state = adapter_state(model)
    config = state.configs.get(adapter)
    if not isinstance(config, LoRAConfig):
        raise UsageError(f"adapter {adapter!r} is not a LoRA adapter; PEFT export covers LoRA only")
    layers = dict(_layers_of(model, adapter))
    tensors: dict[str, torch.Tensor] = {}
    for key, t in adapter_tensors(model, adapter).items():
        path, _, param = key.rpartition(".")
        layer = layers.get(path)
        if param in ("lora_A", "lora_B"):
            peft_param = param.replace("lora_", "lora_embedding_") if isinstance(layer, LoRAEmbedding) else f"{param}.weight"
        elif param == "bias" and layer is not None:
            peft_param = "base_layer.bias"  # PEFT keeps a wrapped module's bias under its base_layer
        else:  # lora_magnitude_vector, other base biases
            peft_param = param
        tensors[f"{PREFIX}{path}.{peft_param}"] = t.detach().to("cpu").contiguous()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    fan_in_fan_out = any(getattr(layer, "fan_in_fan_out", False) for layer in layers.values())
    model_config = getattr(model, "config", None)
    data = config_to_peft(config, fan_in_fan_out=fan_in_fan_out,
                          base_model=getattr(model_config, "name_or_path", None) or None)
    (out / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")
    return out
