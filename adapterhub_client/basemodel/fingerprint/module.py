"""Fingerprints of an in-memory nn.Module, equal to those of its save_pretrained() output.

Owns FINGERPRINT.md's "From an in-memory nn.Module" rules: which state-dict entries count (the
base model's, adapters left out: `nn.model.base_state_dict`), tied aliases counted once, and the
little-endian byte view of each tensor. The only fingerprint module that touches torch, and only
inside its functions, so importing the package stays torch-free.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ...errors import InvalidPackageError
from ..safetensors_header import canonical_dtype
from .spec import TensorSpec, architecture_fingerprint, combine_content, counted, default_algorithm, tensor_digest

if TYPE_CHECKING:
    import torch
    from torch import nn

# A module with a child of this name wraps a base module (ours, or PEFT's LoRA layers).
ADAPTER_WRAPPER_CHILD = "base_layer"


def _base_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The plain model's state dict with adapters attached or not (`nn.model.base_state_dict`).

    That function already drops our adapter layers and their `base_layer` hops; wrappers from other
    libraries (PEFT's LoRA layers: any module with a `base_layer` child) are treated the same way here,
    so a PEFT-wrapped model keeps the plain model's fingerprints. Merged adapters change the base
    weights themselves: fingerprint with adapters unmerged."""
    from ...nn.model import base_state_dict
    from ...nn.targets import base_of, iter_modules

    state = base_state_dict(model)
    # under our wrappers base_of() is the plain module, so a `base_layer` child left there is foreign
    foreign = {
        path
        for path, module, _parent, _attr in iter_modules(model)
        if base_of(module)._modules.get(ADAPTER_WRAPPER_CHILD) is not None
    }
    if not foreign:
        return state
    base: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        kept: list[str] = []
        for i, part in enumerate(parts):
            if ".".join(parts[:i]) in foreign:
                if part != ADAPTER_WRAPPER_CHILD:
                    break  # an adapter's own tensor
                continue  # drop the hop
            kept.append(part)
        else:
            base[".".join(kept)] = tensor
    return base


def _quantized_weights(model: nn.Module) -> dict[str, TensorSpec]:
    """``"<path>.weight"`` -> the unquantized weight's shape and dtype, for every 4-bit layer: the base is
    described as its full-precision checkpoint stores it, not by its codes."""
    from ...nn.quant import quantized_layers

    return {
        f"{path}.weight": {"shape": list(layer.source_shape), "dtype": canonical_dtype(layer.weight_dtype)}
        for path, layer in quantized_layers(model)
    }


def _without_quantized(state: dict[str, torch.Tensor], quantized: dict[str, TensorSpec]) -> dict[str, torch.Tensor]:
    """`state` without the 4-bit layers' codes and quantization tensors (``<path>.weight``, ``<path>.weight.*``)."""
    if not quantized:
        return state
    return {
        k: t
        for k, t in state.items()
        if k not in quantized and k.rpartition(".weight.")[0] + ".weight" not in quantized
    }


def _counted_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) for the counted entries of the base state dict: parameters and persistent
    buffers (what save_pretrained writes); non-persistent buffers are not in state_dict(). 4-bit layers'
    weights are not among them (see `content_module`)."""
    state = _without_quantized(_base_tensors(model), _quantized_weights(model))
    out = []
    for name in counted({name: canonical_dtype(t.dtype) for name, t in state.items()}):
        tensor = state[name]
        if tensor.device.type == "meta":
            raise InvalidPackageError(f"tensor {name!r} is on the meta device: no weights to fingerprint")
        out.append((name, tensor))
    return out


def architecture_module(model: nn.Module) -> dict[str, TensorSpec]:
    """Every base state-dict entry of an nn.Module (tied aliases under each name; adapters left out):
    name -> {"shape", "dtype"}. What compat checks module shapes against."""
    quantized = _quantized_weights(model)
    state = _without_quantized(_base_tensors(model), quantized)
    return {
        **{name: {"shape": list(t.shape), "dtype": canonical_dtype(t.dtype)} for name, t in state.items()},
        **quantized,
    }


def untied_architecture(model: nn.Module) -> dict[str, TensorSpec]:
    """architecture_module() without tied aliases: the first name of each shared storage wins,
    as in save_pretrained, which keeps the input embedding and drops lm_head."""
    seen: set[tuple[object, ...]] = set()
    quantized = _quantized_weights(model)
    weights: dict[str, TensorSpec] = dict(quantized)
    for name, t in _without_quantized(_base_tensors(model), quantized).items():
        storage = (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset())
        key = (*storage, tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            continue
        seen.add(key)
        weights[name] = {"shape": list(t.shape), "dtype": canonical_dtype(t.dtype)}
    return weights


def tensor_digest_of(tensor: torch.Tensor, algorithm: str) -> str:
    """The FINGERPRINT.md digest of one in-memory tensor: its dtype, shape and C-order little-endian bytes."""
    if sys.byteorder != "little":
        raise InvalidPackageError("fingerprints of in-memory modules need a little-endian machine")
    import torch

    with torch.no_grad():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        data = flat.view(torch.uint8).numpy().data if flat.numel() else b""  # C-order bytes, no copy
        return tensor_digest(algorithm, canonical_dtype(tensor.dtype), tensor.shape, data)


def record_unquantized(model: nn.Module, paths: Iterable[str], algorithm: str | None = None) -> None:
    """Before the linear layers at `paths` are quantized: remember their weights' digests on the model, so its
    content fingerprint stays the unquantized base's (meta weights, not loaded yet, are left to the loader)."""
    from ...nn.base import adapter_state
    from ...nn.targets import get_module, weight_of

    algorithm = algorithm or default_algorithm()
    digests = adapter_state(model).unquantized_digests
    for path in paths:
        weight = weight_of(get_module(model, path))
        if weight is not None and not weight.is_meta:
            digests[f"{path}.weight"] = f"{algorithm}:{tensor_digest_of(weight, algorithm)}"


def content_module(model: nn.Module, algorithm: str | None = None) -> str:
    """The content fingerprint of a module's base weights: each counted tensor's C-order bytes; a 4-bit
    layer counts with the digest of the full-precision weight it was quantized from (recorded when it was
    quantized). Raises InvalidPackageError when that digest is not known for `algorithm`."""
    algorithm = algorithm or default_algorithm()
    recorded = unquantized_digests(model, algorithm)
    digests = [tensor_digest_of(tensor, algorithm) for _name, tensor in _counted_tensors(model)]
    return combine_content(algorithm, digests + list(recorded.values()))


def unquantized_digests(model: nn.Module, algorithm: str) -> dict[str, str]:
    """The recorded digest of every 4-bit layer's unquantized weight, by ``"<path>.weight"``; raises
    InvalidPackageError naming a layer whose weight was never seen in full precision with `algorithm`."""
    from ...nn.base import adapter_state

    quantized = _quantized_weights(model)
    if not quantized:
        return {}
    recorded = adapter_state(model).unquantized_digests
    out = {}
    for name in quantized:
        value = recorded.get(name, "")
        alg, _, digest = value.partition(":")
        if alg != algorithm or not digest:
            raise InvalidPackageError(
                f"{name} is 4-bit and its full-precision weights were not seen with {algorithm} "
                "(quantized from a 4-bit checkpoint, or hashed with another algorithm): no content fingerprint"
            )
        out[name] = digest
    return out


def fingerprint_module(model: nn.Module, *, algorithm: str | None = None) -> dict[str, str]:
    """{"content", "architecture"} of an in-memory nn.Module; equal to fingerprint_dir() of its
    save_pretrained() output (of the full-precision base, for a quantized one). Without "content" when a
    4-bit layer's full-precision weights were never seen (loaded quantized from a 4-bit checkpoint)."""
    architecture = {"architecture": architecture_fingerprint(untied_architecture(model))}
    try:
        return {"content": content_module(model, algorithm), **architecture}
    except InvalidPackageError:
        if not _quantized_weights(model):
            raise
        return architecture
