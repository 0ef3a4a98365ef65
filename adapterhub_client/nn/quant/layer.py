"""The 4-bit linear layer, and its state dict in bitsandbytes' serialized layout.

:class:`Linear4bit` holds a weight as 4-bit codes plus its :class:`~.blockwise.QuantState` in
buffers and stands in for ``nn.Linear`` (or GPT-2's ``Conv1D``, stored transposed to ``[out, in]`` as
transformers' bitsandbytes integration does). Its forward dequantizes the weight into the compute
dtype (one layer at a time, into a reused buffer) and runs ``F.linear``; where bitsandbytes is
importable and the codes are on CUDA, bitsandbytes' kernels run instead. With gradients it keeps no
dequantized weight between forward and backward: backward dequantizes again (as QLoRA does), except
in a reentrant gradient checkpoint's recomputation, whose backward follows at once (our kernels only,
within a bound: KEEP_RECOMPUTED_BYTES).

Its ``state_dict`` has the keys of a bitsandbytes ``Linear4bit`` / a transformers bnb-4bit checkpoint:
``weight`` (the uint8 codes ``(ceil(n / 2), 1)``), ``weight.absmax``, ``weight.quant_map``, with double
quantization ``weight.nested_absmax`` and ``weight.nested_quant_map``, and
``weight.quant_state.bitsandbytes__<nf4|fp4>`` (the other fields as UTF-8 JSON bytes), then ``bias``.
It loads that layout, or a plain float ``weight`` (quantized on load).

``weight`` reads as the dequantized ``[out, in]`` weight (a fresh tensor that refuses in-place writes,
which would change nothing), so code that only reads a base layer's weight (LoRA's shapes, DoRA's
norms) works on top, and code that would write into it (a merge) fails loudly.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...bnb_layout import QUANT_STATE_KEY, WEIGHT, is_bnb_quant_key, parse_state_json
from ...errors import InvalidPackageError, UsageError
from ..layout import CONV1D, LINEAR
from .blockwise import (
    BLOCKSIZES,
    FLOAT_DTYPES,
    NF4,
    QUANT_TYPES,
    QuantState,
    check_quant_type,
    dequantize_4bit,
    dequantize_into,
    packed_numel,
    pair_values,
    quantize_4bit,
    weight_scratch,
)

_BUFFERS = ("codes", "absmax", "quant_map", "offset", "nested_absmax", "nested_quant_map")


def check_compute_dtype(dtype: object) -> torch.dtype | None:
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype) or dtype not in FLOAT_DTYPES:
        raise UsageError(f"compute_dtype must be torch.float32, torch.float16, torch.bfloat16 or None, got {dtype!r}")
    return dtype


# --- bitsandbytes' serialized layout -----------------------------------------------------------


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def bnb_tensors(codes: torch.Tensor, state: QuantState) -> dict[str, torch.Tensor]:
    """The tensors bitsandbytes' ``Linear4bit`` saves for its weight, keyed relative to the module
    (``weight``, ``weight.absmax``, ...), as its ``QuantState.as_dict(packed=True)`` writes them."""
    out = {WEIGHT: codes, f"{WEIGHT}.absmax": state.absmax, f"{WEIGHT}.quant_map": state.code}
    fields: dict[str, Any] = {
        "quant_type": state.quant_type,
        "blocksize": state.blocksize,
        "dtype": _dtype_name(state.dtype),
        "shape": list(state.shape),
    }
    if state.nested:
        assert state.nested_absmax is not None and state.nested_code is not None and state.offset is not None
        out[f"{WEIGHT}.nested_absmax"] = state.nested_absmax
        out[f"{WEIGHT}.nested_quant_map"] = state.nested_code
        fields.update(
            nested_blocksize=state.nested_blocksize,
            nested_dtype=_dtype_name(state.nested_dtype),
            nested_offset=state.offset.item(),
        )
    blob = json.dumps(fields).encode("utf-8")
    out[f"{WEIGHT}.{QUANT_STATE_KEY}{state.quant_type}"] = torch.frombuffer(bytearray(blob), dtype=torch.uint8)
    return out


def bnb_state(tensors: Mapping[str, torch.Tensor], where: str) -> tuple[torch.Tensor, QuantState]:
    """``(codes, state)`` from the tensors :func:`bnb_tensors` describes (keys relative to the module);
    :class:`~...errors.InvalidPackageError` naming `where` and the problem if they do not make one weight."""
    blob_keys = [k for k in tensors if k.startswith(f"{WEIGHT}.{QUANT_STATE_KEY}")]
    if len(blob_keys) != 1:
        raise InvalidPackageError(
            f"{where}: expected one {WEIGHT}.{QUANT_STATE_KEY}<nf4|fp4> tensor, found {blob_keys}"
        )
    fields = parse_state_json(bytes(tensors[blob_keys[0]].reshape(-1).to("cpu", torch.uint8).tolist()))
    if fields is None:
        raise InvalidPackageError(f"{where}: {blob_keys[0]} is not a UTF-8 JSON object")
    quant_type = fields.get("quant_type")
    if quant_type not in QUANT_TYPES or blob_keys[0] != f"{WEIGHT}.{QUANT_STATE_KEY}{quant_type}":
        raise InvalidPackageError(f"{where}: unknown 4-bit quant_type {quant_type!r}")
    blocksize, shape = fields.get("blocksize"), fields.get("shape")
    if blocksize not in BLOCKSIZES:
        raise InvalidPackageError(f"{where}: 4-bit blocksize {blocksize!r} is not one of {list(BLOCKSIZES)}")
    if not (isinstance(shape, list) and len(shape) == 2 and all(_positive_int(s) for s in shape)):
        raise InvalidPackageError(f"{where}: a 4-bit linear weight needs a [out, in] shape, got {shape!r}")
    dtype = _float_dtype(fields.get("dtype"), where)
    nested = f"{WEIGHT}.nested_absmax" in tensors
    needed = [WEIGHT, f"{WEIGHT}.absmax", f"{WEIGHT}.quant_map"]
    needed += [f"{WEIGHT}.nested_quant_map"] if nested else []
    missing = [k for k in needed if k not in tensors]
    if missing:
        raise InvalidPackageError(f"{where}: missing 4-bit tensors {missing}")
    codes, absmax, code = tensors[WEIGHT], tensors[f"{WEIGHT}.absmax"], tensors[f"{WEIGHT}.quant_map"]
    numel = math.prod(shape)
    blocks = -(-numel // blocksize)
    problems = []
    if codes.dtype != torch.uint8 or codes.numel() != packed_numel(numel):
        problems.append(f"weight is {codes.dtype} x {codes.numel()}, expected uint8 x {packed_numel(numel)}")
    if absmax.numel() != blocks or absmax.dtype != (torch.uint8 if nested else torch.float32):
        problems.append(f"absmax is {absmax.dtype} x {absmax.numel()} for {blocks} blocks")
    if code.numel() != 16 or code.dtype not in FLOAT_DTYPES:
        problems.append(f"quant_map has {code.numel()} {code.dtype} values, expected 16")
    state = QuantState(absmax, torch.Size(shape), dtype, blocksize, quant_type, code.float())
    if nested:
        nested_blocksize = fields.get("nested_blocksize")
        offset = fields.get("nested_offset")
        if not isinstance(nested_blocksize, int) or nested_blocksize <= 0 or not isinstance(offset, (int, float)):
            raise InvalidPackageError(f"{where}: double quantization needs nested_blocksize and nested_offset")
        nested_absmax, nested_code = tensors[f"{WEIGHT}.nested_absmax"], tensors[f"{WEIGHT}.nested_quant_map"]
        if nested_absmax.numel() != -(-blocks // nested_blocksize) or nested_absmax.dtype not in FLOAT_DTYPES:
            problems.append(f"nested_absmax has {nested_absmax.numel()} values for {blocks} blocks")
        if nested_code.numel() != 256 or nested_code.dtype not in FLOAT_DTYPES:
            problems.append(f"nested_quant_map has {nested_code.numel()} values, expected 256")
        state.offset = torch.tensor(float(offset), dtype=torch.float32, device=absmax.device)
        state.nested_absmax, state.nested_code = nested_absmax.float(), nested_code.float()
        state.nested_blocksize = int(nested_blocksize)
        state.nested_dtype = _float_dtype(fields.get("nested_dtype", "float32"), where)
    if problems:
        raise InvalidPackageError(f"{where}: 4-bit tensors do not fit a {shape} weight ({'; '.join(problems)})")
    return codes.reshape(-1, 1), state


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _float_dtype(name: object, where: str) -> torch.dtype:
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dtype, torch.dtype) or dtype not in FLOAT_DTYPES:
        raise InvalidPackageError(f"{where}: 4-bit weight dtype {name!r} is not float32, float16 or bfloat16")
    return dtype


# --- the layer ---------------------------------------------------------------------------------


@functools.cache
def _bnb_importable() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _bnb_state(state: QuantState) -> Any:
    """Our state as bitsandbytes' ``QuantState`` (the same tensors, no copies)."""
    from bitsandbytes.functional import QuantState as BnbQuantState

    nested = None
    if state.nested:
        nested = BnbQuantState(
            absmax=state.nested_absmax,
            code=state.nested_code,
            blocksize=state.nested_blocksize,
            dtype=state.nested_dtype,
        )
    return BnbQuantState(
        absmax=state.absmax,
        shape=state.shape,
        code=state.code,
        blocksize=state.blocksize,
        quant_type=state.quant_type,
        dtype=state.dtype,
        offset=state.offset,
        state2=nested,
    )


class DequantizedWeight(torch.Tensor):
    """What :attr:`Linear4bit.weight` returns: the dequantized weight, readable like any tensor; changing it
    in place (``add_``, ``copy_``, ``w[...] = ...``) raises, since it would change a copy and nothing else
    (a LoRA merge into it would silently vanish)."""

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: dict[str, Any] | None = None) -> Any:
        name = getattr(func, "__name__", "")
        writes = name == "__setitem__" or (name.endswith("_") and not name.endswith("__"))
        if (writes and args and isinstance(args[0], cls)) or isinstance((kwargs or {}).get("out"), cls):
            raise UsageError(
                f"Linear4bit.weight is a dequantized copy of 4-bit codes; {name} on it would change nothing. "
                "Work on a dense copy (Linear4bit.dequantize()) and quantize again if needed"
            )
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


# what a reentrant checkpoint's recomputation may keep of dequantized weights at once (the rest dequantize
# again in backward): a decoder layer of a small model, never a dense copy of a large one
KEEP_RECOMPUTED_BYTES = 256 * 2**20
_kept = [0]  # bytes kept now; each kept tensor gives its share back when freed (weakref.finalize)
_kept_lock = threading.Lock()


def _reentrant_recompute() -> bool:
    """Whether this forward is a reentrant gradient checkpoint recomputing a segment: it runs inside a
    backward pass, and its own backward follows at once. (A non-reentrant checkpoint recomputes under
    saved-tensor hooks, only to restore saved tensors: the recomputed graph's backward never runs.)"""
    task_id = getattr(torch._C, "_current_graph_task_id", None)
    hooks = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
    return task_id is not None and hooks is not None and task_id() != -1 and hooks(False) is None


def _release(nbytes: int) -> None:
    with _kept_lock:
        _kept[0] -= nbytes


def _kept_dense(layer: Linear4bit, dtype: torch.dtype) -> torch.Tensor | None:
    """The layer's weight dequantized into a tensor of its own, to keep for the backward, or None once
    KEEP_RECOMPUTED_BYTES are kept."""
    nbytes = layer.out_features * layer.in_features * dtype.itemsize
    with _kept_lock:
        if _kept[0] + nbytes > KEEP_RECOMPUTED_BYTES:
            return None
        _kept[0] += nbytes
    dense = layer._dense(dtype, scratch=False)
    weakref.finalize(dense, _release, nbytes)
    return dense


class _Linear4bitFunction(torch.autograd.Function):
    """``x @ W^T + b`` with W dequantized in forward and again in backward, not kept in between, except
    in a reentrant checkpoint's recomputation: there this layer's backward comes next, within the same
    segment, so the dequantized weight is kept for it (up to KEEP_RECOMPUTED_BYTES at once) instead of
    being dequantized a third time."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bias: torch.Tensor | None, layer: Linear4bit) -> torch.Tensor:
        ctx.layer = layer
        ctx.has_bias = bias is not None
        ctx.dense = None
        # under autocast F.linear would run in another dtype than the kept weight's: nothing kept there
        if ctx.needs_input_grad[0] and not torch.is_autocast_enabled(x.device.type) and _reentrant_recompute():
            ctx.dense = _kept_dense(layer, x.dtype)
            if ctx.dense is not None:
                return F.linear(x, ctx.dense, bias)
        return layer._linear(x, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            # a kept weight has the output's dtype, as the gradient has (no autocast: nothing is kept there)
            grad_x = grad @ (ctx.dense if ctx.dense is not None else ctx.layer._dense(grad.dtype))
        ctx.dense = None
        if ctx.has_bias and ctx.needs_input_grad[1]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_bias, None


class Linear4bit(nn.Module):
    """A linear layer whose weight is stored as 4-bit NF4 / FP4 codes (bitsandbytes' format).

    Build one with :meth:`from_linear`, or empty (on the meta device) to be filled by ``load_state_dict``
    or :meth:`quantize_weight`. ``compute_dtype`` is what the matmul runs in (None: the input's dtype);
    outputs come back in the input's dtype.
    """

    layout_kind: ClassVar[str] = LINEAR  # what nn.targets.kind_of reports: a weight laid out [out, in]
    # what nn.lora reads: the forward is row by row over the last dimension, and on a 2-D input returns a
    # tensor that no autograd node saved (a cast or a fresh GEMM output), so an adapter may run it on the
    # flattened input and add its delta into the output in place, without copying it (unless hooks watch it)
    fresh_output: ClassVar[bool] = True

    codes: torch.Tensor
    absmax: torch.Tensor
    quant_map: torch.Tensor
    offset: torch.Tensor | None
    nested_absmax: torch.Tensor | None
    nested_quant_map: torch.Tensor | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        quant_type: str = NF4,
        blocksize: int = 64,
        double_quant: bool = True,
        compute_dtype: torch.dtype | None = torch.bfloat16,
        weight_dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not (_positive_int(in_features) and _positive_int(out_features)):
            raise UsageError(f"Linear4bit needs positive in/out features, got {in_features!r}, {out_features!r}")
        self.in_features, self.out_features = in_features, out_features
        self.compute_dtype = check_compute_dtype(compute_dtype)
        # the source weight was [in, out] (GPT-2's Conv1D): fingerprints and manifests describe the base
        # as its checkpoint stores it, so the layer remembers (set by from_linear)
        self.transposed = False
        weight = torch.empty(out_features, in_features, dtype=weight_dtype, device="meta")
        codes, state = quantize_4bit(weight, blocksize, check_quant_type(quant_type), bool(double_quant))
        self._set_state(codes, state)
        self.bias = nn.Parameter(torch.empty(out_features, dtype=weight_dtype, device="meta")) if bias else None

    @classmethod
    def from_linear(
        cls,
        linear: nn.Module,
        *,
        quant_type: str = NF4,
        blocksize: int = 64,
        double_quant: bool = True,
        compute_dtype: torch.dtype | None = torch.bfloat16,
        transposed: bool = False,
    ) -> Linear4bit:
        """`linear` (``nn.Linear``; a ``[in, out]`` weight such as GPT-2's ``Conv1D`` with `transposed`)
        quantized; the bias is the same Parameter object."""
        weight = getattr(linear, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise UsageError(f"cannot quantize a {type(linear).__name__}: it has no 2-D weight")
        dense = weight.detach().T if transposed else weight.detach()
        out_features, in_features = dense.shape
        layer = cls(
            in_features,
            out_features,
            bias=False,
            quant_type=quant_type,
            blocksize=blocksize,
            double_quant=double_quant,
            compute_dtype=compute_dtype,
            weight_dtype=dense.dtype,
        )
        layer.transposed = transposed
        layer.quantize_weight(dense)
        bias = getattr(linear, "bias", None)
        layer.bias = bias if isinstance(bias, nn.Parameter) else None
        return layer

    # --- state ---------------------------------------------------------------------------------

    @property
    def quant_state(self) -> QuantState:
        """The codes' state (the layer's buffers, not copies)."""
        return QuantState(
            self.absmax,
            torch.Size((self.out_features, self.in_features)),
            self.weight_dtype,
            self.blocksize,
            self.quant_type,
            self.quant_map,
            offset=self.offset,
            nested_absmax=self.nested_absmax,
            nested_code=self.nested_quant_map,
            nested_blocksize=self.nested_blocksize,
        )

    @property
    def source_shape(self) -> tuple[int, int]:
        """The unquantized weight's shape as the base stores it: ``[out, in]``, or ``[in, out]`` if transposed."""
        return (self.in_features, self.out_features) if self.transposed else (self.out_features, self.in_features)

    @property
    def source_layout(self) -> str:
        """The layout kind (nn.layout) of the unquantized weight: what a manifest records for the module."""
        return CONV1D if self.transposed else LINEAR

    @property
    def double_quant(self) -> bool:
        return self.nested_absmax is not None

    def _set_state(self, codes: torch.Tensor, state: QuantState) -> None:
        if tuple(state.shape) != (self.out_features, self.in_features):
            raise UsageError(
                f"a {list(state.shape)} 4-bit weight does not fit Linear4bit({self.in_features}, {self.out_features})"
            )
        self.quant_type, self.blocksize, self.weight_dtype = state.quant_type, state.blocksize, state.dtype
        self.nested_blocksize = state.nested_blocksize
        tensors = {
            "codes": codes.reshape(-1, 1),
            "absmax": state.absmax,
            "quant_map": state.code.float(),
            "offset": state.offset,
            "nested_absmax": state.nested_absmax,
            "nested_quant_map": state.nested_code,
        }
        for name, tensor in tensors.items():
            # not persistent: the state dict is bitsandbytes' layout, written by _save_to_state_dict
            self.register_buffer(name, tensor, persistent=False)

    def quantize_weight(self, weight: torch.Tensor) -> None:
        """Quantize a float ``[out, in]`` `weight` into this layer (its type, blocksize, double quantization)."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise UsageError(
                f"a {list(weight.shape)} weight does not fit Linear4bit({self.in_features}, {self.out_features})"
            )
        codes, state = quantize_4bit(weight, self.blocksize, self.quant_type, self.double_quant)
        self._set_state(codes, state)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The ``[out, in]`` weight the codes stand for, in `dtype` (default: the weight's original dtype)."""
        return dequantize_4bit(self.codes, self.quant_state, dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (a fresh, read-only :class:`DequantizedWeight` each time; the layer keeps
        only codes)."""
        return self.dequantize().as_subclass(DequantizedWeight)

    def quantized_nbytes(self) -> int:
        """Bytes of the codes and every scale and map (what the weight costs in memory)."""
        return sum(t.numel() * t.element_size() for t in self.quant_state_tensors())

    def quant_state_tensors(self) -> list[torch.Tensor]:
        return [self.codes, *self.quant_state.tensors()]

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        tensors = bnb_tensors(self.codes, self.quant_state)
        destination[prefix + WEIGHT] = tensors.pop(WEIGHT)
        if self.bias is not None:  # in bitsandbytes' order: parameters, then the quantization state
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()
        for key, tensor in tensors.items():
            destination[prefix + key] = tensor

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        mine = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        known = {WEIGHT, "bias"} | {k for k in mine if is_bnb_quant_key(k)}
        unexpected_keys.extend(prefix + k for k in mine if k not in known)
        if WEIGHT not in mine:
            missing_keys.append(prefix + WEIGHT)
        else:
            try:
                self.load_weight_tensors({k: v for k, v in mine.items() if k != "bias"}, prefix.rstrip(".") or WEIGHT)
            except (InvalidPackageError, UsageError) as exc:
                error_msgs.append(str(exc))
        if self.bias is not None:
            if "bias" not in mine:
                missing_keys.append(prefix + "bias")
            elif tuple(mine["bias"].shape) != tuple(self.bias.shape):
                error_msgs.append(f"{prefix}bias: shape {list(mine['bias'].shape)} != {list(self.bias.shape)}")
            else:
                self._set_bias(mine["bias"])
        elif "bias" in mine:
            unexpected_keys.append(prefix + "bias")

    def load_weight_tensors(self, tensors: Mapping[str, torch.Tensor], where: str) -> None:
        """Load ``weight`` and its bitsandbytes quantization tensors (keys relative to this layer), or a
        plain float ``weight`` (quantized here)."""
        weight = tensors[WEIGHT]
        if weight.dtype in FLOAT_DTYPES and not any(is_bnb_quant_key(k) for k in tensors):
            self.quantize_weight(weight.to(self.codes.device) if not self.codes.is_meta else weight)
            return
        codes, state = bnb_state(tensors, where)
        device = self.codes.device if not self.codes.is_meta else codes.device
        self._set_state(codes.to(device), state.to(device))

    def _set_bias(self, value: torch.Tensor) -> None:
        assert self.bias is not None
        with torch.no_grad():
            if self.bias.is_meta:
                self.bias = nn.Parameter(value.detach().clone(), requires_grad=self.bias.requires_grad)
            else:
                self.bias.copy_(value)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Linear4bit:
        """Device moves apply to the codes and scales; dtype casts (``model.half()``) do not: the scales are
        part of the format (bitsandbytes keeps them out of such casts too)."""
        buffers = {name: self._buffers.pop(name) for name in _BUFFERS if name in self._buffers}
        try:
            super()._apply(fn, recurse)
        finally:
            for name, tensor in buffers.items():
                if tensor is not None:
                    moved = fn(tensor)
                    tensor = moved if moved.dtype == tensor.dtype else tensor.to(moved.device)
                self._buffers[name] = tensor
        return self

    # --- forward -------------------------------------------------------------------------------

    def _dense(self, dtype: torch.dtype, scratch: bool = True) -> torch.Tensor:
        """The weight in `dtype`, in this thread's reused buffer (valid until the next layer's forward), or
        with `scratch` false in a tensor of its own."""
        numel = self.out_features * self.in_features
        device = self.codes.device
        out = weight_scratch(numel, dtype, device) if scratch else torch.empty(numel, dtype=dtype, device=device)
        pairs = self.__dict__.get("_pairs")
        if pairs is None or pairs[0] is not self.quant_map:  # built once per quant_map (replaced on load / move)
            pairs = self.__dict__["_pairs"] = (self.quant_map, pair_values(self.quant_map))
        dequantize_into(out, self.codes, pairs[1], self.quant_state.block_absmax(), self.blocksize)
        return out.view(self.out_features, self.in_features)

    def _bnb_linear(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``x @ W^T + b`` by bitsandbytes' ``matmul_4bit`` on this layer's codes and state (no copies): what
        runs on CUDA, where its kernels are. Its autograd dequantizes again in backward too. (No GPU in CI:
        tests/interop runs this same call on the CPU, where bitsandbytes has kernels as well.)"""
        import bitsandbytes as bnb

        return bnb.matmul_4bit(x, self.codes, quant_state=_bnb_state(self.quant_state), bias=bias)

    def _linear(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, self._dense(x.dtype), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        compute = self.compute_dtype or x.dtype
        bias = None if self.bias is None else self.bias.to(compute)
        if self.codes.is_cuda and x.is_cuda and _bnb_importable():
            out = self._bnb_linear(x.to(compute), bias)
        elif torch.is_grad_enabled() and (x.requires_grad or (bias is not None and bias.requires_grad)):
            out = _Linear4bitFunction.apply(x.to(compute), bias, self)
        else:
            out = self._linear(x.to(compute), bias)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"quant_type={self.quant_type}, blocksize={self.blocksize}, double_quant={self.double_quant}, "
            f"compute_dtype={self.compute_dtype}"
        )
