"""AdapterHub's (`adapters` library) adapter files and key names, once, torch-free.

A directory holds ``adapter_config.json`` (``{name, model_class | model_name, model_type,
hidden_size, config: {...}}``) and ``adapter.safetensors`` or a pickled ``pytorch_adapter.bin``.
Bottleneck keys are ``<container>.adapters.<saved name>.<param>`` where the container is a block's
attention output (``...<i>.attention.output``) or FFN output (``...<i>.output``); LoRA keys are
``<module>.loras.<saved name>.<lora_A | lora_B>``.
"""

from __future__ import annotations

import re
from typing import Any

CONFIG_FILE = "adapter_config.json"
SAFE_WEIGHTS_FILE = "adapter.safetensors"
PICKLE_FILE = "pytorch_adapter.bin"
BOTTLENECK_MARK = ".adapters."
LORA_MARK = ".loras."
_LAYER_IDX = re.compile(r"(?:^|\.)(\d+)\.")


def is_adapterhub_config(meta: Any) -> bool:
    """Whether parsed ``adapter_config.json`` contents are AdapterHub's: they nest the adapter's own
    config under ``config`` (PEFT's are flat, with ``peft_type``)."""
    return isinstance(meta, dict) and "config" in meta and "peft_type" not in meta


def bottleneck_slot(container: str) -> tuple[str, str] | None:
    """``encoder.layer.3.attention.output`` -> ``("encoder.layer.3.", "attn")``; ``...3.output`` ->
    ``(..., "ffn")``: the block's path and which of its sites the adapter sits at. None without an index."""
    padded = container + "."
    m = _LAYER_IDX.search(padded)
    if m is None:
        return None
    return padded[: m.end()], "attn" if "att" in padded[m.end() :] else "ffn"
