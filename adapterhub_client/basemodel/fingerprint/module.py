"""Fingerprints of an in-memory nn.Module, equal to those of its save_pretrained() output.

Owns FINGERPRINT.md's "From an in-memory nn.Module" rules: which state-dict entries count (the
base model's, adapters left out: `nn.model.base_state_dict`), tied aliases counted once, and the
little-endian byte view of each tensor. The only fingerprint module that touches torch, and only
inside its functions, so importing the package stays torch-free.
"""

from __future__ import annotations

import sys
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


def _counted_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, tensor) for the counted entries of the base state dict: parameters and persistent
    buffers (what save_pretrained writes); non-persistent buffers are not in state_dict()."""
    state = _base_tensors(model)
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
    return {
        name: {"shape": list(t.shape), "dtype": canonical_dtype(t.dtype)} for name, t in _base_tensors(model).items()
    }


def untied_architecture(model: nn.Module) -> dict[str, TensorSpec]:
    """architecture_module() without tied aliases: the first name of each shared storage wins,
    as in save_pretrained, which keeps the input embedding and drops lm_head."""
    seen: set[tuple[object, ...]] = set()
    weights: dict[str, TensorSpec] = {}
    for name, t in _base_tensors(model).items():
        storage = (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset())
        key = (*storage, tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            continue
        seen.add(key)
        weights[name] = {"shape": list(t.shape), "dtype": canonical_dtype(t.dtype)}
    return weights


def content_module(model: nn.Module, algorithm: str | None = None) -> str:
    """The content fingerprint of a module's base weights: each counted tensor's C-order bytes."""
    algorithm = algorithm or default_algorithm()
    if sys.byteorder != "little":
        raise InvalidPackageError("fingerprints of in-memory modules need a little-endian machine")
    import torch

    digests = []
    with torch.no_grad():
        for _name, tensor in _counted_tensors(model):
            flat = tensor.detach().to("cpu").contiguous().reshape(-1)
            data = flat.view(torch.uint8).numpy().data if flat.numel() else b""  # C-order bytes, no copy
            digests.append(tensor_digest(algorithm, canonical_dtype(tensor.dtype), tensor.shape, data))
    return combine_content(algorithm, digests)


def fingerprint_module(model: nn.Module, *, algorithm: str | None = None) -> dict[str, str]:
    """{"content", "architecture"} of an in-memory nn.Module; equal to fingerprint_dir() of its
    save_pretrained() output."""
    return {
        "content": content_module(model, algorithm),
        "architecture": architecture_fingerprint(untied_architecture(model)),
    }
