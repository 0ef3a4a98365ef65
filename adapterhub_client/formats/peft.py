"""PEFT's LoRA format, read and written without importing peft: configs both ways, tensors renamed
to and from the package format's keys (the names themselves: :mod:`.peft_layout`).

PEFT options whose math the built-in LoRA does not reproduce (``modules_to_save``, base-rewriting
inits such as PiSSA/OLoRA/LoftQ, other ``peft_type`` s, ...) are refused with
:class:`~..errors.UnsupportedAdapterError` naming the option, rather than loaded wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AdapterConfigError, IncompatibleError, InvalidPackageError, UnsupportedAdapterError, UsageError
from ..nn.base import adapter_state, check_model
from ..nn.lora import LoRAConfig, LoRAEmbedding
from ..nn.model import adapter_layers, adapter_tensors
from ..nn.targets import TargetError, base_of, get_module, weight_of
from . import peft_layout
from .files import output_dir, read_json
from .tensors import load_tensors, save_tensors

# kept importable under their old names
CONFIG_FILE = peft_layout.CONFIG_FILE
WEIGHTS_FILE = peft_layout.WEIGHTS_FILE
PICKLE_FILE = peft_layout.PICKLE_FILE
PREFIX = peft_layout.PREFIX

# PEFT config key -> LoRAConfig field
_FIELDS = {
    "r": "r",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "target_modules": "target_modules",
    "exclude_modules": "exclude_modules",
    "bias": "bias",
    "use_rslora": "rslora",
    "use_dora": "dora",
    "layers_to_transform": "layers_to_transform",
    "layers_pattern": "layers_pattern",
    "rank_pattern": "rank_pattern",
    "alpha_pattern": "alpha_pattern",
}
# PEFT options that change the math or add tensors we do not model: refuse rather than be wrong
_UNSUPPORTED = (
    "modules_to_save",
    "lora_bias",
    "use_qalora",
    "target_parameters",
    "trainable_token_indices",
    "layer_replication",
    "alora_invocation_tokens",
    "arrow_config",
    "use_bdlora",
    "velora_config",
    "monteclora_config",
    "kasa_config",
    "megatron_config",
)


# `init_lora_weights` values whose init also rewrites the base weights (PEFT's pissa_init, olora_init,
# corda_init, loftq_init, lora_ga_init): the saved A/B only fit that rewritten base, so loading them as
# plain LoRA onto the original base would give wrong outputs without any error
_BASE_CHANGING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")


def _check_init(data: dict[str, Any], where: str) -> None:
    init = data.get("init_lora_weights")
    if not isinstance(init, str) or not init.lower().startswith(_BASE_CHANGING_INITS):
        return  # True/False/"gaussian"/"eva"/"orthogonal"/...: only the adapter's own start values
    if init.lower().startswith("loftq"):
        how = (
            "LoftQ pairs the adapter with the quantized base weights it was initialised against, and "
            "PEFT has no conversion of it to plain LoRA; merge it in PEFT instead (merge_and_unload)"
        )
    else:
        how = (
            "convert it to plain LoRA in PEFT first: save it with "
            "save_pretrained(out_dir, path_initial_model_for_weight_conversion=<dir of the adapter as "
            "initialised, before training>), which gives an adapter for the original base"
        )
    raise UnsupportedAdapterError(
        f"{where}: init_lora_weights={init!r} changes the base model's weights when the adapter is created, so "
        f"these weights are not a plain LoRA on the original base; {how}"
    )


def peft_to_config(data: dict[str, Any], where: str = CONFIG_FILE) -> LoRAConfig:
    if not isinstance(data, dict):
        raise InvalidPackageError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.get("peft_type") != "LORA":
        raise UnsupportedAdapterError(f"{where}: peft_type {data.get('peft_type')!r} is not supported (only LORA)")
    used = [k for k in _UNSUPPORTED if data.get(k)]
    if used:
        raise UnsupportedAdapterError(f"{where}: PEFT options not supported: {', '.join(used)}")
    _check_init(data, where)
    kw = {field: data[key] for key, field in _FIELDS.items() if data.get(key) is not None}
    try:
        return LoRAConfig(**kw)
    except AdapterConfigError as exc:
        raise InvalidPackageError(f"{where}: {exc}") from None


def config_to_peft(
    config: LoRAConfig,
    *,
    fan_in_fan_out: bool = False,
    base_model: str | None = None,
) -> dict[str, Any]:
    """PEFT's ``adapter_config.json`` for a LoRA config."""
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


def drop_saved_base_weights(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Drop the full embedding matrices PEFT saves next to embedding LoRA (``save_embedding_layers``).

    They are the base's own weights unless the vocabulary was resized; a copy that differs from the
    model's would replace base weights, which an adapter load must not do: refuse it.
    """
    out = {}
    for key, t in tensors.items():
        if not key.endswith(peft_layout.SAVED_BASE_WEIGHT):
            out[key] = t
            continue
        path = key[: -len(peft_layout.SAVED_BASE_WEIGHT)]
        try:
            weight = weight_of(base_of(get_module(model, path)))
        except TargetError:
            weight = None
        if weight is None:
            raise IncompatibleError(f"{where}: {key} matches no module of the model")
        if weight.shape != t.shape or not torch.equal(weight.detach().cpu(), t.to(weight.dtype)):
            raise UnsupportedAdapterError(
                f"{where}: {key} replaces the base weights (resized or retrained embeddings); not supported"
            )
    return out


def _read(root: Path, allow_pickle: bool) -> tuple[LoRAConfig, dict[str, torch.Tensor], dict[str, str]]:
    """``(config, tensors with package keys, package key -> PEFT key)``."""
    where = str(root / CONFIG_FILE)
    config = peft_to_config(read_json(root / CONFIG_FILE), where)
    if (root / WEIGHTS_FILE).is_file():
        raw = load_tensors(root / WEIGHTS_FILE)
    elif (root / PICKLE_FILE).is_file():
        raw = load_tensors(root / PICKLE_FILE, allow_pickle=allow_pickle)
    else:
        raise InvalidPackageError(f"{root}: no {WEIGHTS_FILE}")
    names = {peft_layout.to_package_key(k): k for k in raw}
    return config, {peft_layout.to_package_key(k): v for k, v in raw.items()}, names


def read_peft(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
) -> tuple[LoRAConfig, dict[str, torch.Tensor]]:
    """Read a PEFT LoRA dir: ``(config, tensors with package keys)``."""
    config, tensors, _ = _read(Path(path), allow_pickle)
    return config, tensors


def read_for_model(
    model: nn.Module,
    root: Path,
    *,
    allow_pickle: bool = False,
) -> tuple[LoRAConfig, dict[str, torch.Tensor], str, Callable[[str], str] | None]:
    """What ``formats.load_adapter`` attaches: ``(config, package-keyed tensors, name hint, key namer)``;
    errors name the keys as the PEFT file has them."""
    config, tensors, names = _read(root, allow_pickle)
    tensors = drop_saved_base_weights(model, tensors, str(root))
    return config, tensors, root.name, lambda key: names.get(key, key)


def write_peft(model: nn.Module, adapter: str, out_dir: str | os.PathLike[str]) -> Path:
    """Export LoRA adapter `adapter` in PEFT's layout; ``PeftModel.from_pretrained(model, out_dir)`` loads it."""
    layers = dict(adapter_layers(check_model(model), adapter))
    config = adapter_state(model).configs[adapter]
    if not isinstance(config, LoRAConfig):
        raise UsageError(f"adapter {adapter!r} is a {config.kind} adapter; PEFT export covers LoRA only")
    tensors: dict[str, torch.Tensor] = {}
    for key, t in adapter_tensors(model, adapter).items():
        layer = layers.get(key.rpartition(".")[0])
        peft_key = peft_layout.to_peft_key(key, embedding=isinstance(layer, LoRAEmbedding), wrapped=layer is not None)
        tensors[peft_key] = t
    out = output_dir(out_dir)
    save_tensors(tensors, out / WEIGHTS_FILE)
    fan_in_fan_out = any(getattr(layer, "fan_in_fan_out", False) for layer in layers.values())
    model_config = getattr(model, "config", None)
    data = config_to_peft(
        config, fan_in_fan_out=fan_in_fan_out, base_model=getattr(model_config, "name_or_path", None) or None
    )
    try:
        (out / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"{out / CONFIG_FILE}: cannot write ({exc.strerror or exc})") from None
    return out
