"""A 4-bit checkpoint directory (bitsandbytes' serialized layout, as transformers + bitsandbytes and
``ah.save_quantized`` write it) seen as the full-precision base it stands for, without torch.

Owns FINGERPRINT.md's rule for 4-bit checkpoints: each 4-bit layer's tensors (codes, scales, state)
stand for one ``<path>.weight`` with the shape and dtype its quant-state JSON records; the digests of
those full-precision weights come from the checkpoint's ``adapterhub.unquantized_digests`` metadata
when ``ah.save_quantized`` wrote it, and are unknown otherwise (no content fingerprint then). The
quantization is read as the manifest records it (``base_model.quantization``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...bnb_layout import (
    MAX_STATE_JSON_BYTES,
    QUANT_STATE_KEY,
    QUANT_TYPES,
    UNQUANTIZED_KEY,
    WEIGHT,
    parse_state_json,
    parse_unquantized_digests,
    split_bnb_quant_key,
)
from ...errors import InvalidPackageError
from ..safetensors_header import SafetensorsHeader, canonical_dtype
from .files import weights_from_headers
from .spec import TensorSpec


@dataclass(frozen=True)
class QuantizedDir:
    """What a 4-bit checkpoint directory holds, as the unquantized base."""

    weights: dict[str, TensorSpec]  # every tensor as the full-precision base has it
    stored: frozenset[str]  # the checkpoint's tensor names that stand for 4-bit layers' weights
    quantization: dict[str, Any]  # the manifest's base_model.quantization form
    unquantized: dict[str, str]  # "<path>.weight" -> "<algorithm>:<hex>", for those recorded

    def unquantized_digest(self, name: str, algorithm: str) -> str | None:
        """The recorded hex digest of 4-bit weight `name` with `algorithm`, or None."""
        alg, _, digest = self.unquantized.get(name, "").partition(":")
        return digest if alg == algorithm and digest else None


def quantized_view(root: Path, headers: dict[str, SafetensorsHeader]) -> QuantizedDir | None:
    """The directory's 4-bit layers as their full-precision weights; None when it holds no 4-bit layer."""
    fields_of: dict[str, dict[str, Any]] = {}
    for rel, header in headers.items():
        states = [
            (split[0], info)
            for name, info in header.tensors.items()
            if (split := split_bnb_quant_key(name)) and split[1].startswith(f"{WEIGHT}.{QUANT_STATE_KEY}")
        ]
        if not states:
            continue
        with open(root / rel, "rb") as fh:  # each state is a few bytes: one open per file
            for module, info in states:
                where = f"{root / rel}: {info.name}"
                if info.nbytes > MAX_STATE_JSON_BYTES:
                    raise InvalidPackageError(f"{where}: {info.nbytes} bytes of 4-bit state; expected a JSON object")
                fh.seek(info.start)
                fields_of[module] = _checked(parse_state_json(fh.read(info.nbytes)), where)
    if not fields_of:
        return None
    settings = {(f["quant_type"], f["blocksize"], "nested_blocksize" in f) for f in fields_of.values()}
    if len(settings) > 1:
        raise InvalidPackageError(f"{root}: its 4-bit layers are quantized in {len(settings)} different ways")
    ((quant_type, blocksize, double_quant),) = settings
    stored = frozenset(
        name
        for header in headers.values()
        for name in header.tensors
        if (split := split_bnb_quant_key(name))
        and split[0] in fields_of
        or (name.endswith(f".{WEIGHT}") and name[: -len(WEIGHT) - 1] in fields_of)
    )
    weights = {n: w for n, w in weights_from_headers(headers).items() if n not in stored}
    for module, fields in fields_of.items():
        weights[f"{module}.{WEIGHT}"] = {"shape": list(fields["shape"]), "dtype": canonical_dtype(fields["dtype"])}
    unquantized: dict[str, str] = {}
    for header in headers.values():
        raw = header.metadata.get(UNQUANTIZED_KEY)
        if raw is not None:
            digests = parse_unquantized_digests(raw)
            if digests is None:
                raise InvalidPackageError(f"{header.path}: metadata {UNQUANTIZED_KEY} is not an object of digests")
            unquantized.update(digests)
    quantization = {
        "type": quant_type,
        "blocksize": blocksize,
        "double_quant": double_quant,
        "compute_dtype": _compute_dtype(root),
        "modules": sorted(fields_of),
    }
    return QuantizedDir(weights, stored, quantization, unquantized)


def _checked(fields: dict[str, Any] | None, where: str) -> dict[str, Any]:
    if fields is None:
        raise InvalidPackageError(f"{where}: not a UTF-8 JSON object")
    shape, blocksize = fields.get("shape"), fields.get("blocksize")
    ok = (
        fields.get("quant_type") in QUANT_TYPES
        and isinstance(blocksize, int)
        and blocksize > 0
        and isinstance(shape, list)
        and len(shape) == 2
        and all(isinstance(d, int) and d > 0 for d in shape)
        and isinstance(fields.get("dtype"), str)
    )
    if not ok:
        raise InvalidPackageError(f"{where}: 4-bit state needs quant_type, blocksize, a [out, in] shape and a dtype")
    return fields


def _compute_dtype(root: Path) -> str | None:
    """``bnb_4bit_compute_dtype`` of config.json's quantization_config (None when it names none)."""
    try:
        config = json.loads((root / "config.json").read_text())
        value = config["quantization_config"]["bnb_4bit_compute_dtype"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return value.removeprefix("torch.") if isinstance(value, str) else None
