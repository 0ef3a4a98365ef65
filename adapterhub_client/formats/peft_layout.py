"""PEFT's LoRA files and key names, once, torch-free: the PEFT reader/writer and the manifest builder
(publishing a PEFT directory) both read them from here.

A PEFT LoRA directory holds ``adapter_config.json`` (with ``peft_type``) and
``adapter_model.safetensors`` (or a pickled ``adapter_model.bin``). Key mapping (PEFT -> package),
with PEFT's ``base_model.model.`` prefix standing for the model the adapter is attached to:

* ``base_model.model.<path>.lora_A.weight`` / ``lora_B.weight`` -> ``<path>.lora_A`` / ``lora_B``;
* ``<path>.lora_embedding_A`` / ``lora_embedding_B`` (embeddings) -> ``<path>.lora_A`` / ``lora_B``;
* ``<path>.lora_magnitude_vector`` (DoRA; older files add ``.weight``) -> the same name;
* ``<path>.bias`` (``bias="all"|"lora_only"``; ``<path>.base_layer.bias`` too) -> ``<path>.bias``;
* ``<path>.base_layer.weight``: a full base weight PEFT saves next to embedding LoRA
  (``save_embedding_layers``); not an adapter tensor (:data:`SAVED_BASE_WEIGHT`);
* ``base_model.model.<module path>.<param>`` of a ``modules_to_save`` module (PEFT's
  ``ModulesToSaveWrapper`` saves its trained copy's ``state_dict()`` without the
  ``modules_to_save.<adapter>.`` hop and restores that hop on load) -> ``<module path>.<param>``, the
  package key of a module copy (``nn.heads.ModuleCopy``).

Which modules ``modules_to_save`` names: every module whose path *ends with* an entry, as a plain
string (``_set_trainable``: ``pre_classifier`` ends with ``classifier``) (:func:`saves_module`); and
LoRA never targets a module at or under an entry (``check_target_module_exists``:
``(^|.*\\.)<entry>($|\\..*)``) (:func:`lora_skips`). A ``SEQ_CLS`` config adds ``classifier`` and
``score`` to the list.
"""

from __future__ import annotations

import re
from typing import Any

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_FILE = "adapter_model.bin"
PREFIX = "base_model.model."
SAVED_BASE_WEIGHT = ".base_layer.weight"
MODULES_TO_SAVE = "modules_to_save"
# pickled weight file -> the safetensors file PEFT writes instead (safe_serialization, the default)
SAFETENSORS_FOR_PICKLE = {PICKLE_FILE: WEIGHTS_FILE}

# PEFT key suffix -> package key suffix; the first match wins
_TO_PACKAGE = (
    (".lora_A.weight", ".lora_A"),
    (".lora_B.weight", ".lora_B"),
    (".lora_embedding_A", ".lora_A"),
    (".lora_embedding_B", ".lora_B"),
    (".lora_magnitude_vector.weight", ".lora_magnitude_vector"),
    (".base_layer.bias", ".bias"),
)
# LoRA factors in PEFT keys: suffix -> (factor, on an embedding)
_FACTORS = {
    ".lora_A.weight": ("A", False),
    ".lora_B.weight": ("B", False),
    ".lora_embedding_A": ("A", True),
    ".lora_embedding_B": ("B", True),
}


def is_peft_config(meta: Any) -> bool:
    """Whether parsed ``adapter_config.json`` contents are PEFT's (they name a ``peft_type``)."""
    return isinstance(meta, dict) and "peft_type" in meta


def to_package_key(key: str) -> str:
    """A PEFT tensor key as the package format names it (module path + parameter, no prefix)."""
    if key.startswith(PREFIX):
        key = key[len(PREFIX) :]
    for old, new in _TO_PACKAGE:
        if key.endswith(old):
            return key[: -len(old)] + new
    return key


def to_peft_key(key: str, *, embedding: bool, wrapped: bool) -> str:
    """A package key as PEFT writes it; `embedding`: the module is an embedding LoRA, `wrapped`: an
    adapter layer wraps it (PEFT keeps such a module's own bias under ``base_layer``)."""
    path, _, param = key.rpartition(".")
    if param in ("lora_A", "lora_B"):
        param = param.replace("lora_", "lora_embedding_") if embedding else f"{param}.weight"
    elif param == "bias" and wrapped:
        param = "base_layer.bias"
    return f"{PREFIX}{path}.{param}"


def saved_module_key(key: str) -> str:
    """A module copy's package key (``classifier.weight``) as PEFT saves it."""
    return PREFIX + key


def saves_module(modules_to_save: list[str], path: str) -> bool:
    """Whether PEFT wraps the module at `path` for ``modules_to_save`` (a plain suffix match)."""
    return any(path.endswith(entry) for entry in modules_to_save)


def lora_skips(modules_to_save: list[str], path: str) -> bool:
    """Whether PEFT keeps LoRA off the module at `path` because of ``modules_to_save``."""
    return any(re.match(rf"(^|.*\.){entry}($|\..*)", path) for entry in modules_to_save)


def lora_skip_pattern(modules_to_save: list[str]) -> str:
    """:func:`lora_skips` as one regex for ``re.fullmatch`` (a LoRA ``exclude_modules`` string)."""
    return "|".join(rf"(?:^|.*\.)(?:{entry})(?:$|\..*)" for entry in modules_to_save)


def lora_factor(key: str) -> tuple[str, str, bool] | None:
    """``(module path, "A" | "B", on an embedding)`` of a PEFT LoRA factor key, None for other keys."""
    path = key[len(PREFIX) :] if key.startswith(PREFIX) else key
    for suffix, (factor, embedding) in _FACTORS.items():
        if path.endswith(suffix):
            return path[: -len(suffix)], factor, embedding
    return None
