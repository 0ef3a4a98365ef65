"""Whole models: quantize their linear layers, say how a model is quantized, prepare it for QLoRA training."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...errors import UsageError
from ..base import AdapterLayer
from ..layout import CONV1D
from ..targets import (
    ALL_LINEAR,
    base_of,
    get_module,
    is_linear,
    iter_modules,
    kind_of,
    select_modules,
    set_module,
    weight_of,
)
from .blockwise import NF4, check_blocksize, check_quant_type
from .layer import Linear4bit, check_compute_dtype

LM_HEAD = "lm_head"


@dataclasses.dataclass(frozen=True)
class Quantization:
    """How a model's linear layers are quantized: what a QLoRA adapter's manifest records next to
    the fingerprint of the unquantized base."""

    quant_type: str
    blocksize: int
    double_quant: bool
    compute_dtype: torch.dtype | None
    modules: tuple[str, ...]  # logical paths, in model order
    source_bytes: int  # the replaced weights in their own dtype
    quantized_bytes: int  # their codes with every scale and map

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.quant_type,
            "blocksize": self.blocksize,
            "double_quant": self.double_quant,
            "compute_dtype": None if self.compute_dtype is None else str(self.compute_dtype).removeprefix("torch."),
            "modules": list(self.modules),
        }


def quantize_targets(model: nn.Module, skip: Sequence[str] = ()) -> list[str]:
    """The paths ``ah.quantize`` (formats.quantized) replaces: every linear layer (and GPT-2 ``Conv1D``) but
    the LM head (``lm_head``, the output embeddings) and those named in `skip` (a name matches a path equal
    to it or ending in ``.name``)."""
    if isinstance(skip, str) or not all(isinstance(s, str) for s in skip):
        raise UsageError(f"skip must be a list of module names, got {skip!r}")
    found = select_modules(model, ALL_LINEAR, exclude_modules=[LM_HEAD, *skip], what="quantize")
    return [path for path, _ in found]


def quantize_modules(
    model: nn.Module,
    paths: Sequence[str],
    quant_type: str = NF4,
    blocksize: int = 64,
    double_quant: bool = True,
    compute_dtype: torch.dtype | None = torch.bfloat16,
) -> Quantization:
    """Replace the linear modules at `paths` by :class:`Linear4bit` layers, one at a time (already quantized
    ones are left alone). Works on the meta device (the layers are filled later, e.g. while streaming a
    checkpoint). Returns what was replaced."""
    quant_type, blocksize = check_quant_type(quant_type), check_blocksize(blocksize)
    compute_dtype = check_compute_dtype(compute_dtype)
    if not isinstance(double_quant, bool):
        raise UsageError(f"double_quant must be True or False, got {double_quant!r}")
    modules = [(path, get_module(model, path)) for path in paths]
    wrapped = [path for path, module in modules if isinstance(module, AdapterLayer)]
    if wrapped:
        raise UsageError(f"quantize the base before adding adapters ({wrapped[0]} already has one)")
    other = [f"{path} ({type(m).__name__})" for path, m in modules if not is_linear(m)]
    if other:
        raise UsageError(f"only linear layers can be quantized, not {', '.join(other[:5])}")
    todo = [(path, module) for path, module in modules if not isinstance(module, Linear4bit)]
    source = quantized = 0
    for path, module in todo:
        weight = weight_of(module)
        assert weight is not None  # a linear layer
        source += weight.numel() * weight.element_size()
        layer = Linear4bit.from_linear(
            module,
            quant_type=quant_type,
            blocksize=blocksize,
            double_quant=double_quant,
            compute_dtype=compute_dtype,
            transposed=kind_of(module) == CONV1D,
        )
        quantized += layer.quantized_nbytes()
        set_module(model, path, layer)
    paths = tuple(path for path, _ in todo)
    return Quantization(quant_type, blocksize, double_quant, compute_dtype, paths, source, quantized)


def quantized_layers(model: nn.Module) -> list[tuple[str, Linear4bit]]:
    """``(logical path, layer)`` of every 4-bit layer, adapters' wrappers looked through."""
    return [
        (path, base) for path, module, _, _ in iter_modules(model) if isinstance(base := base_of(module), Linear4bit)
    ]


def quantization_of(model: nn.Module) -> Quantization | None:
    """How `model` is quantized (None if it has no 4-bit layer); mixed settings are refused."""
    layers = quantized_layers(model)
    if not layers:
        return None
    settings = {(layer.quant_type, layer.blocksize, layer.double_quant, layer.compute_dtype) for _, layer in layers}
    if len(settings) > 1:
        raise UsageError(f"the model's 4-bit layers are quantized in {len(settings)} different ways")
    ((quant_type, blocksize, double_quant, compute_dtype),) = settings
    source = sum(layer.out_features * layer.in_features * layer.weight_dtype.itemsize for _, layer in layers)
    quantized = sum(layer.quantized_nbytes() for _, layer in layers)
    paths = tuple(path for path, _ in layers)
    return Quantization(quant_type, blocksize, double_quant, compute_dtype, paths, source, quantized)


@dataclasses.dataclass(frozen=True)
class KbitTraining:
    """What :func:`prepare_for_kbit_training` changed."""

    frozen: int  # base parameters frozen
    upcast: tuple[str, ...]  # half-precision parameters now in fp32 (the norms' among them)
    input_grads: bool  # the input embeddings' output requires grad (reentrant checkpointing needs it)
    gradient_checkpointing: bool


def prepare_for_kbit_training(
    model: nn.Module,
    gradient_checkpointing: bool = True,
    gradient_checkpointing_kwargs: dict[str, Any] | None = None,
) -> KbitTraining:
    """Make a quantized model ready for adapters to train on top (PEFT's ``prepare_model_for_kbit_training``):
    every base parameter frozen (adapters already attached keep their state), half-precision parameters
    (norms among them) in fp32 for stable statistics, the input embeddings' output requiring grad, and
    gradient checkpointing on where the model supports it (transformers models)."""
    adapter_params = {
        id(p)
        for module in model.modules()
        if isinstance(module, AdapterLayer)
        for name in module.adapter_names
        for p in module.adapter_parameters(name)
    }
    frozen = 0
    for p in model.parameters():
        if id(p) not in adapter_params and p.requires_grad:
            p.requires_grad_(False)
            frozen += 1
    upcast = []
    # every half-precision parameter in fp32, norms above all (their statistics need the range); the
    # 4-bit codes are buffers and stay. Upcasting the norms alone leaves fp32 activations flowing into
    # half-precision layers (the LM head), which torch refuses
    for name, p in model.named_parameters():
        if p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.float()
            upcast.append(name)
    input_grads = _require_input_grads(model)
    checkpointing = False
    if gradient_checkpointing and getattr(model, "supports_gradient_checkpointing", False):
        # reentrant by default, as PEFT's preparation runs it: the input grads above make it work, and
        # it recomputes with less bookkeeping than saved-tensor hooks (a QLoRA step on MiniLM: 9% faster)
        kwargs = {"use_reentrant": True} if gradient_checkpointing_kwargs is None else gradient_checkpointing_kwargs
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers 5's name
        if callable(enable):
            enable(activation_checkpointing_kwargs=kwargs)
            checkpointing = True
        elif callable(enable := getattr(model, "gradient_checkpointing_enable", None)):
            enable(gradient_checkpointing_kwargs=kwargs)
            checkpointing = True
    return KbitTraining(frozen, tuple(upcast), input_grads, checkpointing)


def _require_input_grads(model: nn.Module) -> bool:
    enable = getattr(model, "enable_input_require_grads", None)
    if callable(enable):
        enable()
        return True
    getter = getattr(model, "get_input_embeddings", None)
    embeddings = getter() if callable(getter) else None
    if not isinstance(embeddings, nn.Module):
        return False

    def require_grad(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        output.requires_grad_(True)

    embeddings.register_forward_hook(require_grad)
    return True
