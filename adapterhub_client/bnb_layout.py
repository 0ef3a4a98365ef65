"""bitsandbytes' serialized 4-bit layout, torch-free: which tensor names a 4-bit linear layer saves, the
JSON of its non-tensor fields, and the metadata key in which our 4-bit checkpoints keep the digests of
the unquantized weights. Read by nn.quant (the layer's state dict), formats.quantized (streaming
loads) and basemodel.fingerprint (checking a 4-bit checkpoint directory without torch).

A module at ``path`` saves ``path.weight`` (the packed uint8 codes), ``path.weight.absmax``,
``path.weight.quant_map``, with double quantization ``path.weight.nested_absmax`` and
``path.weight.nested_quant_map``, and ``path.weight.quant_state.bitsandbytes__<nf4|fp4>``: a uint8
tensor holding UTF-8 JSON ``{"quant_type", "blocksize", "dtype", "shape", ["nested_blocksize",
"nested_dtype", "nested_offset"]}`` (bitsandbytes' ``QuantState.as_dict(packed=True)``).
"""

from __future__ import annotations

import json
from typing import Any

WEIGHT = "weight"
NF4 = "nf4"
FP4 = "fp4"
QUANT_TYPES = (NF4, FP4)  # the 4-bit codebooks bitsandbytes serializes (nn.quant.blockwise holds their values)
QUANT_STATE_KEY = "quant_state.bitsandbytes__"  # + quant_type: the JSON of the non-tensor fields
STATE_TENSORS = ("absmax", "quant_map", "nested_absmax", "nested_quant_map")
# safetensors metadata of our 4-bit checkpoints: JSON {"<layer path>.weight": "<algorithm>:<digest>"} of
# the full-precision weights the codes came from (registry_schema/FINGERPRINT.md)
UNQUANTIZED_KEY = "adapterhub.unquantized_digests"
MAX_STATE_JSON_BYTES = 4096  # the fields are a few short values


def is_bnb_quant_key(key: str) -> bool:
    """Whether `key` (relative to a module) is one of the quantization tensors next to ``weight``."""
    rest = key.removeprefix(f"{WEIGHT}.")
    return rest != key and (rest in STATE_TENSORS or rest.startswith(QUANT_STATE_KEY))


def split_bnb_quant_key(name: str) -> tuple[str, str] | None:
    """``a.b.weight.absmax`` -> ``("a.b", "weight.absmax")``; None for a name that is no quantization tensor."""
    for suffix in (*STATE_TENSORS, *(QUANT_STATE_KEY + t for t in QUANT_TYPES)):
        tail = f"{WEIGHT}.{suffix}"
        if name == tail:
            return "", tail
        if name.endswith("." + tail):
            return name[: -len(tail) - 1], tail
    return None


def parse_state_json(raw: bytes) -> dict[str, Any] | None:
    """The fields of a ``quant_state`` tensor's bytes, or None when they are not a UTF-8 JSON object."""
    if len(raw) > MAX_STATE_JSON_BYTES:
        return None
    try:
        fields = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return fields if isinstance(fields, dict) else None


def parse_unquantized_digests(raw: str) -> dict[str, str] | None:
    """The ``UNQUANTIZED_KEY`` metadata value as {name: "<alg>:<hex>"}, or None when malformed."""
    try:
        digests = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(digests, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in digests.items()):
        return None
    return digests
