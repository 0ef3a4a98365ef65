"""PEFT's LoRA format, read and written without importing peft: configs both ways, tensors renamed
to and from the package format's keys (the names themselves: :mod:`.peft_layout`).

``modules_to_save`` (the classifier a ``SEQ_CLS`` adapter trains, ...) loads as module copies
(``nn.heads.ModuleCopy``): the entries are matched against the model by PEFT's rule
(:func:`.peft_layout.saves_module`), LoRA is kept off those modules as PEFT keeps it
(:func:`.peft_layout.lora_skips`), and every saved tensor must land on a copy. Exporting writes
the copies back as ``modules_to_save`` with PEFT's keys; a prediction head (AdapterHub's) has no
PEFT form and is refused.

PEFT options whose math the built-in LoRA does not reproduce (base-rewriting inits such as
PiSSA/OLoRA/LoftQ, ``bias="all"`` next to ``modules_to_save``, other ``peft_type`` s, ...) are
refused with :class:`~..errors.UnsupportedAdapterError` naming the option, rather than loaded wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import AdapterConfigError, IncompatibleError, InvalidPackageError, UnsupportedAdapterError, UsageError
from ..nn.base import adapter_state, check_model
from ..nn.heads import HeadConfig, HeadSpec, ModuleCopy
from ..nn.lora import LoRAConfig, LoRAEmbedding
from ..nn.model import adapter_heads, adapter_layers, adapter_tensors
from ..nn.targets import TargetError, base_of, get_module, iter_modules, select_modules, weight_of
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


def modules_to_save(data: dict[str, Any], where: str = CONFIG_FILE) -> list[str]:
    """The config's ``modules_to_save`` entries (``[]`` when none)."""
    value = data.get(peft_layout.MODULES_TO_SAVE)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidPackageError(f"{where}: modules_to_save must be a list of module names, got {value!r}")
    return list(dict.fromkeys(value))


def peft_to_config(data: dict[str, Any], where: str = CONFIG_FILE) -> LoRAConfig:
    """Our LoRA config for PEFT's ``adapter_config.json`` (``modules_to_save``: :func:`modules_to_save`)."""
    if not isinstance(data, dict):
        raise InvalidPackageError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data.get("peft_type") != "LORA":
        raise UnsupportedAdapterError(f"{where}: peft_type {data.get('peft_type')!r} is not supported (only LORA)")
    used = [k for k in _UNSUPPORTED if data.get(k)]
    if used:
        raise UnsupportedAdapterError(f"{where}: PEFT options not supported: {', '.join(used)}")
    if modules_to_save(data, where) and data.get("bias") == "all":
        # PEFT then saves the copy's and the original's biases under keys of their own
        raise UnsupportedAdapterError(f"{where}: PEFT option bias='all' next to modules_to_save is not supported")
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
    saved_modules: list[str] | None = None,
) -> dict[str, Any]:
    """PEFT's ``adapter_config.json`` for a LoRA config; `saved_modules`: the paths of its module copies."""
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
        "modules_to_save": list(saved_modules) if saved_modules else None,
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


@dataclasses.dataclass
class PeftFiles:
    """A PEFT directory as read: the config, tensors with package keys, package key -> PEFT key, and
    ``modules_to_save`` as the config names them (matched against a model by :func:`read_for_model`)."""

    config: LoRAConfig
    tensors: dict[str, torch.Tensor]
    names: dict[str, str]
    modules_to_save: list[str]


def read_files(root: Path, allow_pickle: bool = False) -> PeftFiles:
    """Read a PEFT LoRA dir (no model needed)."""
    where = str(root / CONFIG_FILE)
    data = read_json(root / CONFIG_FILE)
    config = peft_to_config(data, where)
    if (root / WEIGHTS_FILE).is_file():
        raw = load_tensors(root / WEIGHTS_FILE)
    elif (root / PICKLE_FILE).is_file():
        raw = load_tensors(root / PICKLE_FILE, allow_pickle=allow_pickle)
    else:
        raise InvalidPackageError(f"{root}: no {WEIGHTS_FILE}")
    names = {peft_layout.to_package_key(k): k for k in raw}
    tensors = {peft_layout.to_package_key(k): v for k, v in raw.items()}
    return PeftFiles(config, tensors, names, modules_to_save(data, where))


def read_peft(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
) -> tuple[LoRAConfig, dict[str, torch.Tensor]]:
    """Read a PEFT LoRA dir: ``(config, tensors with package keys)``. A ``modules_to_save`` adapter is
    refused here: which modules its tensors replace depends on the model (:func:`read_for_model`)."""
    files = read_files(Path(path), allow_pickle)
    if files.modules_to_save:
        raise UnsupportedAdapterError(
            f"{path}: modules_to_save {files.modules_to_save} replace modules of the model, which only loading "
            "onto a model applies (formats.load_adapter; `adapters attach` without --merge)"
        )
    return files.config, files.tensors


def _copied_paths(model: nn.Module, entries: list[str], where: str) -> list[str]:
    """The model's modules that ``modules_to_save`` `entries` name, by PEFT's rule; nested ones refused."""
    paths = [p for p, _, _, _ in iter_modules(model) if p and peft_layout.saves_module(entries, p)]
    paths = list(dict.fromkeys(paths))  # a tied module shows up under each of its names only once here
    nested = [p for p in paths if any(p.startswith(q + ".") for q in paths)]
    if nested:
        raise UnsupportedAdapterError(f"{where}: modules_to_save {entries} match nested modules ({nested[0]})")
    return paths


def _lora_off_copies(model: nn.Module, config: LoRAConfig, entries: list[str]) -> LoRAConfig:
    """`config`, with LoRA kept off the modules ``modules_to_save`` covers (PEFT's rule), if it would
    reach one; the exclusion joins ``exclude_modules`` as one regex."""
    try:
        reached = select_modules(
            model,
            config.target_modules,
            exclude_modules=config.exclude_modules,
            layers_to_transform=config.layers_to_transform,
            layers_pattern=config.layers_pattern,
            supported=lambda module: True,
        )
    except TargetError:
        return config  # LoRA's own injection names the problem
    if not any(peft_layout.lora_skips(entries, p) for p, _ in reached):
        return config
    old = config.exclude_modules
    parts = [peft_layout.lora_skip_pattern(entries)]
    if isinstance(old, str) and old:
        parts.append(f"(?:{old})")
    elif isinstance(old, list):
        parts += [rf"(?:(?:.*\.)?{re.escape(e)})" for e in old]
    return dataclasses.replace(config, exclude_modules="|".join(parts))


def read_for_model(
    model: nn.Module,
    root: Path,
    *,
    allow_pickle: bool = False,
) -> tuple[LoRAConfig, dict[str, torch.Tensor], str, Callable[[str], str] | None, list[HeadSpec]]:
    """What ``formats.load_adapter`` attaches: ``(config, package-keyed tensors, name hint, key namer,
    heads)``; errors name the keys as the PEFT file has them."""
    files = read_files(root, allow_pickle)
    tensors = drop_saved_base_weights(model, files.tensors, str(root))
    config, paths = files.config, list[str]()
    entries = files.modules_to_save
    if entries:
        where = str(root / CONFIG_FILE)
        paths = _copied_paths(model, entries, where)
        _check_saved_modules_exist(entries, paths, tensors, files.names, str(root))
        config = _lora_off_copies(model, config, entries)

    def source(key: str) -> str:  # as the file has it; a copy's key the file lacks, as PEFT would save it
        if key in files.names:
            return files.names[key]
        return peft_layout.saved_module_key(key) if any(key.startswith(p + ".") for p in paths) else key

    return config, tensors, root.name, source, [ModuleCopy(p) for p in paths]


def _check_saved_modules_exist(
    entries: list[str], paths: list[str], tensors: dict[str, torch.Tensor], names: dict[str, str], where: str
) -> None:
    """A saved module the model lacks (a SEQ_CLS adapter on a bare backbone) is an IncompatibleError."""
    unmatched = [e for e in entries if not any(peft_layout.saves_module([e], p) for p in paths)]
    for key in tensors:
        module = key.rpartition(".")[0]
        prefixes = [module.rsplit(".", i)[0] for i in range(module.count(".") + 1)]
        entry = next((e for e in unmatched if any(p.endswith(e) for p in prefixes)), None)
        if entry is not None and not any(key.startswith(p + ".") for p in paths):
            raise IncompatibleError(
                f"{where}: modules_to_save {entry!r} saved {names.get(key, key)}, and this model has no module "
                "of that name (load the adapter onto the model class it was trained with)"
            )


def write_peft(model: nn.Module, adapter: str, out_dir: str | os.PathLike[str]) -> Path:
    """Export LoRA adapter `adapter` in PEFT's layout; ``PeftModel.from_pretrained(model, out_dir)`` loads it.

    Its module copies become ``modules_to_save`` (their paths); a prediction head is refused."""
    layers = dict(adapter_layers(check_model(model), adapter))
    config = adapter_state(model).configs[adapter]
    if not isinstance(config, LoRAConfig):
        raise UsageError(f"adapter {adapter!r} is a {config.kind} adapter; PEFT export covers LoRA only")
    heads = adapter_heads(model, adapter)
    if any(isinstance(h, HeadConfig) for h in heads):
        raise UsageError(
            f"adapter {adapter!r} has a prediction head (model.heads), which PEFT has no form of; "
            "save it as a package instead (save_adapter)"
        )
    copies = [h.path for h in heads if isinstance(h, ModuleCopy)]
    tensors: dict[str, torch.Tensor] = {}
    for key, t in adapter_tensors(model, adapter).items():
        if any(key.startswith(p + ".") for p in copies):
            tensors[peft_layout.saved_module_key(key)] = t
            continue
        layer = layers.get(key.rpartition(".")[0])
        peft_key = peft_layout.to_peft_key(key, embedding=isinstance(layer, LoRAEmbedding), wrapped=layer is not None)
        tensors[peft_key] = t
    out = output_dir(out_dir)
    save_tensors(tensors, out / WEIGHTS_FILE)
    fan_in_fan_out = any(getattr(layer, "fan_in_fan_out", False) for layer in layers.values())
    model_config = getattr(model, "config", None)
    data = config_to_peft(
        config,
        fan_in_fan_out=fan_in_fan_out,
        base_model=getattr(model_config, "name_or_path", None) or None,
        saved_modules=copies,
    )
    try:
        (out / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise UsageError(f"{out / CONFIG_FILE}: cannot write ({exc.strerror or exc})") from None
    return out
