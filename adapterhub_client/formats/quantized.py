"""QLoRA base models: quantized in memory with their full-precision fingerprint kept, and 4-bit models on
disk in bitsandbytes' serialized layout (a transformers bnb-4bit checkpoint).

* :func:`quantize` replaces the linear layers (``nn.quant.quantize_modules``), first recording the digest
  of every weight it replaces (``basemodel.fingerprint.record_unquantized``), so the model's fingerprint,
  and the manifest of an adapter trained on it, stay those of the unquantized base;
* :func:`save_quantized` writes ``model.safetensors`` (each 4-bit layer as bitsandbytes'
  ``Linear4bit`` saves itself: ``weight`` codes, ``weight.absmax``, ``weight.quant_map``, ...) and, for a
  transformers model, ``config.json`` with its ``quantization_config``, so ``from_pretrained`` loads it
  into bitsandbytes' layers;
* :func:`load_quantized` builds the model from its config with every parameter on the meta device,
  then streams the checkpoint one tensor at a time (plain reads, no memory map that would stay
  resident): a float linear weight is quantized as it arrives, a bitsandbytes-quantized one is taken
  as stored, anything else is assigned. Peak memory is the quantized model plus about one tensor, so a
  base that does not fit in memory in fp32 can still be loaded. Each float weight is hashed as it passes
  (the unquantized fingerprint); a checkpoint :func:`save_quantized` wrote carries those digests in its
  safetensors metadata (``UNQUANTIZED_KEY``), so it keeps the fingerprint of the base it came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..basemodel.fingerprint import default_algorithm, read_headers, record_unquantized, tensor_digest_of, weight_files
from ..basemodel.safetensors_header import SafetensorsHeader, TensorInfo
from ..bnb_layout import UNQUANTIZED_KEY, WEIGHT, parse_unquantized_digests, split_bnb_quant_key
from ..errors import InvalidPackageError, UsageError
from ..modpaths import align_paths
from ..nn.base import AdapterLayer, adapter_state
from ..nn.layout import CONV1D
from ..nn.quant import NF4, Linear4bit, Quantization, quantization_of, quantize_modules, quantize_targets
from ..nn.targets import base_of, get_module, is_linear, iter_modules, kind_of
from .files import output_dir
from .tensors import _first_line, save_tensors

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
BNB_METHOD = "bitsandbytes"
_meta_lock = threading.Lock()


def quantize(
    model: nn.Module,
    quant_type: str = NF4,
    blocksize: int = 64,
    double_quant: bool = True,
    compute_dtype: torch.dtype | None = torch.bfloat16,
    skip: Sequence[str] = (),
) -> Quantization:
    """Replace every ``nn.Linear`` (and GPT-2 ``Conv1D``) of `model` by a :class:`Linear4bit`, one layer at
    a time; the LM head (``lm_head``) and the modules named in `skip` (a name matches a path equal to it
    or ending in ``.name``) stay as they are. The replaced weights' digests are recorded first, so the
    model's fingerprint stays the unquantized base's. Works on the meta device (the layers are filled
    later, e.g. while streaming a checkpoint). Returns what was replaced."""
    paths = quantize_targets(model, skip)
    digests = dict(adapter_state(model).unquantized_digests)
    record_unquantized(model, [p for p in paths if not isinstance(base_of(get_module(model, p)), Linear4bit)])
    try:
        return quantize_modules(model, paths, quant_type, blocksize, double_quant, compute_dtype)
    except BaseException:
        adapter_state(model).unquantized_digests = digests  # refused: nothing changed
        raise


def bnb_quantization_config(quantization: Quantization, keep: Sequence[str]) -> dict[str, Any]:
    """transformers' ``BitsAndBytesConfig`` for a checkpoint quantized like this; `keep` names the linear
    modules left in full precision (transformers must not replace them by 4-bit layers)."""
    compute = quantization.compute_dtype or torch.float32
    return {
        "quant_method": BNB_METHOD,
        "load_in_4bit": True,
        "load_in_8bit": False,
        "bnb_4bit_quant_type": quantization.quant_type,
        "bnb_4bit_use_double_quant": quantization.double_quant,
        "bnb_4bit_compute_dtype": str(compute).removeprefix("torch."),
        "bnb_4bit_quant_storage": "uint8",
        "llm_int8_skip_modules": list(keep),
    }


def save_quantized(model: nn.Module, out_dir: str | os.PathLike[str]) -> Path:
    """Write a quantized `model` to `out_dir` as a bnb-4bit checkpoint; returns the weights file."""
    quantization = quantization_of(model)
    if quantization is None:
        raise UsageError("the model has no 4-bit layers; quantize it first")
    if any(isinstance(m, AdapterLayer) for m in model.modules()):
        raise UsageError("the model carries adapters: save the quantized base without them (adapters: save_adapter)")
    out = output_dir(out_dir)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int, tuple[int, ...], tuple[int, ...], torch.dtype]] = set()
    for name, tensor in model.state_dict().items():
        if tensor.is_meta:
            raise UsageError(f"cannot save {name}: it is on the meta device (not loaded)")
        view = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        if tensor.numel() and view in seen:
            continue  # a tied copy (the LM head of tied embeddings): loaders tie it back
        seen.add(view)
        tensors[name] = tensor
    path = out / WEIGHTS_FILE
    digests = adapter_state(model).unquantized_digests
    save_tensors(tensors, path, {UNQUANTIZED_KEY: json.dumps(digests, sort_keys=True)} if digests else None)
    config = getattr(model, "config", None)
    if config is not None and callable(getattr(config, "to_json_string", None)):
        keep = [p for p, m, _, _ in iter_modules(model) if p and is_linear(m) and not isinstance(m, Linear4bit)]
        data = json.loads(config.to_json_string(use_diff=False))
        data["architectures"] = data.get("architectures") or [type(model).__name__]
        data["quantization_config"] = bnb_quantization_config(quantization, keep)
        try:
            (out / CONFIG_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{out / CONFIG_FILE}: cannot write ({exc.strerror or exc})") from None
    return path


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device and their buffers computed as usual
    (rotary frequencies, position ids: a checkpoint does not store them)."""
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        register(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    with _meta_lock:
        nn.Module.register_parameter = on_meta  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            nn.Module.register_parameter = register  # type: ignore[method-assign]


def is_4bit_config(config: Any) -> bool:
    """Whether a transformers config describes a bitsandbytes 4-bit checkpoint (`load_quantized` reads it)."""
    quantization = getattr(config, "quantization_config", None)
    if quantization is not None and not isinstance(quantization, dict):
        quantization = getattr(quantization, "to_dict", dict)()
    return (
        isinstance(quantization, dict)
        and quantization.get("quant_method") == BNB_METHOD
        and bool(quantization.get("load_in_4bit"))
    )


def saved_model_class(config: Any) -> Any:
    """The transformers class a checkpoint was saved from (its config's `architectures`: heads such as
    lm_head exist then), else ``AutoModel``."""
    import transformers

    named = [getattr(transformers, a) for a in config.architectures or [] if hasattr(transformers, a)]
    return named[0] if named else transformers.AutoModel


def _build(config: Any, model_class: Any) -> nn.Module:
    """`model_class`, else the class the checkpoint was saved from (`saved_model_class`), built from `config`."""
    import transformers

    model_class = model_class or saved_model_class(config)
    if model_class is transformers.AutoModel:
        return transformers.AutoModel.from_config(config)
    return model_class(config)


def _torch_dtype(info: TensorInfo) -> torch.dtype:
    dtype = getattr(torch, info.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise InvalidPackageError(f"{info.name}: tensors of dtype {info.dtype} cannot be loaded")
    return dtype


def _read_tensor(fh: Any, info: TensorInfo, into: torch.Tensor | None = None) -> torch.Tensor:
    """One tensor of an open safetensors file (headers are validated first), read into `into` (a uint8
    buffer at least that large, reused for tensors that are only passing through) or fresh memory."""
    data = torch.empty(info.nbytes, dtype=torch.uint8) if into is None else into[: info.nbytes]
    fh.seek(info.start)
    if info.nbytes and fh.readinto(data.numpy().data) != info.nbytes:
        raise InvalidPackageError(f"{fh.name}: {info.name} is cut short")
    return data.view(_torch_dtype(info)).reshape(info.shape)


def _assign(model: nn.Module, name: str, value: torch.Tensor) -> None:
    """Put `value` where the (meta) parameter or buffer `name` is, keeping the object (ties stay tied)."""
    module_path, _, attr = name.rpartition(".")
    module = model.get_submodule(module_path)
    old = module._parameters.get(attr) if attr in module._parameters else module._buffers.get(attr)
    if old is None:
        raise InvalidPackageError(f"{name}: the model has no such tensor")
    if tuple(old.shape) != tuple(value.shape):
        raise InvalidPackageError(
            f"{name}: shape {list(value.shape)} in the checkpoint, {list(old.shape)} in the model"
        )
    if not old.is_meta:
        with torch.no_grad():
            old.copy_(value)
        return
    new = nn.Parameter(value, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter) else value
    torch.utils.swap_tensors(old, new)


def load_quantized(
    model_dir: str | os.PathLike[str],
    *,
    quant_type: str = NF4,
    blocksize: int = 64,
    double_quant: bool = True,
    compute_dtype: torch.dtype | None = torch.bfloat16,
    skip: Sequence[str] = (),
    model_class: Any = None,
) -> nn.Module:
    """The transformers model of `model_dir` with its linear layers in 4 bits, streamed from its safetensors
    checkpoint (see the module docstring); equal to loading it whole and calling ``quantize`` with these
    arguments. A bnb-4bit checkpoint loads as it was quantized (its layers, types and blocksizes; only
    `compute_dtype` applies). `model_class`: the transformers class to build (default: the one its
    config names, else ``AutoModel``). Returned in eval mode."""
    root, files = weight_files(model_dir)
    headers = read_headers(root, files)
    try:
        import transformers
    except ImportError:
        raise UsageError(
            "loading a model directory needs transformers: pip install 'adapterhub-client[transformers]'"
        ) from None
    try:
        config = transformers.AutoConfig.from_pretrained(str(root))
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidPackageError(f"{root}: cannot read the model's config ({_first_line(exc)})") from None
    with _parameters_on_meta():
        model = _build(config, model_class)
    local_names = set(model.state_dict().keys())
    # checkpoint name -> (module, key relative to it) for bitsandbytes' quantization tensors
    quant_keys = {n: split for h in headers.values() for n in h.tensors if (split := split_bnb_quant_key(n))}
    stored_names = {
        f"{quant_keys[n][0]}.{WEIGHT}" if n in quant_keys else n for h in headers.values() for n in h.tensors
    }
    rewrite = align_paths(sorted(stored_names), local_names)
    conv1d = {path for path, module, _, _ in iter_modules(model) if kind_of(module) == CONV1D}
    prequantized = sorted(
        {rewrite.to_local(f"{module}.{WEIGHT}")[: -len(WEIGHT) - 1] for module, _ in quant_keys.values()}
    )
    if prequantized:  # quantized as stored: the layers take their settings from the files
        quantize_modules(model, prequantized, compute_dtype=compute_dtype)
        recorded = _recorded_digests(headers, rewrite.to_local)
    else:
        quantize_modules(model, quantize_targets(model, skip), quant_type, blocksize, double_quant, compute_dtype)
        recorded = {}
    algorithm = default_algorithm()
    layers = {path: m for path, m, _, _ in iter_modules(model) if isinstance(m, Linear4bit)}
    pending: dict[str, dict[str, torch.Tensor]] = {path: {} for path in prequantized}
    # float weights to quantize pass through one reused buffer: no allocator churn of a layer per layer
    passing = [
        info.nbytes
        for h in headers.values()
        for info in h.tensors.values()
        if info.name not in quant_keys and rewrite.to_local(info.name).rpartition(".")[0] in layers
    ]
    staging = torch.empty(max(passing, default=0), dtype=torch.uint8)
    for rel, header in headers.items():
        with open(root / rel, "rb") as fh:
            for info in header.in_file_order():
                split = quant_keys.get(info.name)
                local = rewrite.to_local(f"{split[0]}.{WEIGHT}" if split else info.name)
                path, _, attr = local.rpartition(".")
                if path in pending:  # bitsandbytes' tensors: kept until the layer has them all
                    pending[path][split[1] if split else attr] = _read_tensor(fh, info)
                elif path in layers and attr == WEIGHT:
                    weight = _read_tensor(fh, info, staging)
                    recorded[local] = f"{algorithm}:{tensor_digest_of(weight, algorithm)}"
                    layers[path].quantize_weight(weight.T if path in conv1d else weight)
                elif local in local_names:
                    _assign(model, local, _read_tensor(fh, info))
    for path, tensors in pending.items():
        bias = tensors.pop("bias", None)
        layers[path].load_weight_tensors(tensors, f"{root}: {path}")
        if bias is not None:
            _assign(model, f"{path}.bias", bias)
    missing = [n for n, t in model.named_parameters() if t.is_meta]
    missing += [f"{path}.{WEIGHT}" for path, layer in layers.items() if layer.codes.is_meta]
    if missing:
        raise InvalidPackageError(
            f"{root}: the checkpoint lacks {len(missing)} tensors of the model ({', '.join(missing[:5])})"
        )
    adapter_state(model).unquantized_digests.update(recorded)
    return model.eval()


def _recorded_digests(headers: Mapping[str, SafetensorsHeader], to_local: Callable[[str], str]) -> dict[str, str]:
    """The unquantized weights' digests save_quantized wrote into the checkpoint's metadata, by local name."""
    out: dict[str, str] = {}
    for header in headers.values():
        raw = header.metadata.get(UNQUANTIZED_KEY)
        if raw is None:
            continue
        digests = parse_unquantized_digests(raw)
        if digests is None:
            raise InvalidPackageError(f"{header.path}: metadata {UNQUANTIZED_KEY} is not an object of digests")
        out.update({to_local(name): digest for name, digest in digests.items()})
    return out
