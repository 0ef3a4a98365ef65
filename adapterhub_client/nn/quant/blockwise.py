"""Blockwise 4-bit quantization (NF4, FP4) in plain torch, bit for bit as bitsandbytes 0.50.2 on the CPU.

The layout is bitsandbytes' (``functional.quantize_4bit`` / ``dequantize_4bit``):

* the weight is flattened row-major and cut into blocks of ``blocksize`` values (the last block may be
  short); each block is scaled by ``1 / absmax`` into ``[-1, 1]`` and every value becomes the index of
  the nearest codebook entry (ties to the lower one); the short block divides by its absmax instead,
  and its absmax is clamped to ``1e-38`` (bitsandbytes' own asymmetry, kept);
* two 4-bit codes per byte, the first value in the high nibble; an odd count is padded with the code
  of 0; the codes are stored as ``uint8`` of shape ``(ceil(n / 2), 1)``;
* double quantization ("nested", bitsandbytes' ``compress_statistics``) stores the absmax in 8 bits:
  its mean (``offset``) subtracted, then blockwise in blocks of 256 with bitsandbytes' signed dynamic
  map, quantized as its CPU library does (a 65536-bin table of the nearest code), one fp32 absmax per
  nested block;
* dequantization multiplies the code value by the block's absmax in fp32, then rounds to the target
  dtype, as bitsandbytes' kernels do.

bitsandbytes' AVX-512 CPU dequantization indexes the absmax by row when a row is a multiple of 16
values but not of ``blocksize``, which disagrees with its own quantizer (and its CUDA kernels); we
follow the flat layout of the quantizer, which is what its checkpoints mean.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading

import torch
import torch.nn.functional as F

from ...bnb_layout import FP4, NF4, QUANT_TYPES
from ...errors import UsageError

BLOCKSIZES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
NESTED_BLOCKSIZE = 256
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# bitsandbytes' get_4bit_type: NF4 (quantiles of N(0, 1)) and FP4 (1 sign, 2 exponent, 1 mantissa bit,
# in bit-pattern order), each divided by its largest magnitude
_CODE_VALUES = {
    NF4: (
        -1.0,
        -0.6961928009986877,
        -0.5250730514526367,
        -0.39491748809814453,
        -0.28444138169288635,
        -0.18477343022823334,
        -0.09105003625154495,
        0.0,
        0.07958029955625534,
        0.16093020141124725,
        0.24611230194568634,
        0.33791524171829224,
        0.44070982933044434,
        0.5626170039176941,
        0.7229568362236023,
        1.0,
    ),
    FP4: (0.0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0),
}
_LUT_BINS = 65536  # bitsandbytes' CPU 8-bit quantizer: [-1, 1] in 65536 bins, each mapped to its nearest code
# values dequantized per step: 2^18, several of torch's parallel grains (32768 elements), so the gather and
# the scaling run on every thread. Idle, against 32767 (one thread per op): 384x384 210 -> 162 us, 4096x4096
# 20.6 -> 10.5 ms; the QLoRA step on MiniLM 1.03 -> 0.98 of bitsandbytes + PEFT. With one core busy a single
# dequantization stalls more (a parallel region waits for its slowest thread: 384x384 216 -> 839 us), but
# the whole model does not lose against bitsandbytes (forward 1.11 -> 0.81 of it, the step 0.97 -> 0.99)
_CHUNK_VALUES = 262143
_QUANTIZE_CHUNK = 1 << 20  # values quantized per step


def check_quant_type(quant_type: object) -> str:
    if quant_type not in QUANT_TYPES:
        raise UsageError(f"quant_type must be one of {', '.join(QUANT_TYPES)}, got {quant_type!r}")
    return str(quant_type)


def check_blocksize(blocksize: object) -> int:
    if isinstance(blocksize, bool) or blocksize not in BLOCKSIZES:
        raise UsageError(f"blocksize must be one of {', '.join(map(str, BLOCKSIZES))}, got {blocksize!r}")
    return int(blocksize)


@functools.cache
def codebook(quant_type: str) -> torch.Tensor:
    """The 16 values a 4-bit code stands for (bitsandbytes' ``quant_map``), fp32 on the CPU; do not modify."""
    data = torch.tensor(_CODE_VALUES[check_quant_type(quant_type)], dtype=torch.float32)
    return data.div_(data.abs().max())


@functools.cache
def dynamic_map() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic map (``create_dynamic_map()``), the nested absmax codebook."""
    values: list[float] = []
    exponent_bits, non_sign_bits = 7, 7
    for i in range(exponent_bits):
        boundaries = torch.linspace(0.1, 1, 2 ** (i + non_sign_bits - exponent_bits) + 1, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        scale = 10 ** (-(exponent_bits - 1) + i)
        values += (scale * means).tolist() + (-scale * means).tolist()
    values += [0.0, 1.0]
    return torch.tensor(sorted(values), dtype=torch.float32)


@functools.cache
def _dynamic_lut(device: torch.device) -> torch.Tensor:
    """bin -> nearest code of :func:`dynamic_map`, built as bitsandbytes' CPU library builds it."""
    code = dynamic_map()
    midpoints = 0.5 * (code[:-1] + code[1:])
    bins = -1.0 + (2.0 * torch.arange(_LUT_BINS, dtype=torch.float32)) / float(_LUT_BINS - 1)
    return torch.searchsorted(midpoints, bins, side="left").to(torch.uint8).to(device)


@functools.cache
def _bounds(quant_type: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(midpoints between the sorted code values, the code of each sorted position; None for NF4: sorted)."""
    code = codebook(quant_type).to(device)
    order = torch.argsort(code)  # as bitsandbytes sorts it (FP4 has +0 and -0: the same call decides their order)
    midpoints = (code[order[:-1]] + code[order[1:]]) / 2
    return midpoints, None if quant_type == NF4 else order.to(torch.uint8)


class _Scratch(threading.local):
    """Per-thread buffers, reused from call to call: a fresh large buffer costs its page faults every time."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    def get(self, use: str, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (use, device, dtype)
        buf = self.buffers.get(key)
        if buf is None or buf.numel() < numel:
            with torch.inference_mode(False):  # a buffer made in inference mode could not be written outside it
                buf = self.buffers[key] = torch.empty(numel, dtype=dtype, device=device)
        return buf[:numel]


_scratch = _Scratch()


@dataclasses.dataclass(eq=False)
class QuantState:
    """Everything needed to restore a 4-bit weight (bitsandbytes' ``QuantState``).

    ``absmax`` is one fp32 scale per block, or (``nested``) one uint8 code per block, restored as
    ``nested_code[absmax] * nested_absmax[block // 256] + offset``.
    """

    absmax: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype  # of the weight that was quantized; dequantize's default
    blocksize: int
    quant_type: str
    code: torch.Tensor  # the 16 code values (bitsandbytes' quant_map)
    offset: torch.Tensor | None = None  # 0-dim fp32, nested only
    nested_absmax: torch.Tensor | None = None
    nested_code: torch.Tensor | None = None
    nested_blocksize: int = NESTED_BLOCKSIZE
    nested_dtype: torch.dtype = torch.float32

    @property
    def nested(self) -> bool:
        return self.nested_absmax is not None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def blocks(self) -> int:
        return -(-self.numel // self.blocksize)

    def block_absmax(self) -> torch.Tensor:
        """The fp32 scale of every block (double quantization undone, as bitsandbytes does it)."""
        if not self.nested:
            return self.absmax if self.absmax.dtype == torch.float32 else self.absmax.float()
        assert self.nested_absmax is not None and self.nested_code is not None and self.offset is not None
        return (
            _dequantize_8bit(self.absmax, self.nested_absmax.float(), self.nested_code.float(), self.nested_blocksize)
            + self.offset.float()
        )

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.absmax, self.code, self.offset, self.nested_absmax, self.nested_code) if t is not None]

    def to(self, device: torch.device | str) -> QuantState:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            absmax=self.absmax.to(device),
            code=self.code.to(device),
            offset=move(self.offset),
            nested_absmax=move(self.nested_absmax),
            nested_code=move(self.nested_code),
        )


def packed_numel(numel: int) -> int:
    """Bytes of codes for `numel` values: two per byte."""
    return (numel + 1) // 2


def quantize_4bit(
    weight: torch.Tensor, blocksize: int = 64, quant_type: str = NF4, double_quant: bool = True
) -> tuple[torch.Tensor, QuantState]:
    """``(codes, state)`` of `weight`: uint8 codes ``(ceil(n / 2), 1)``, equal to
    ``bitsandbytes.functional.quantize_4bit(weight, blocksize, quant_type=..., compress_statistics=...)``.

    A weight on the meta device gives meta tensors of the right shapes (quantize while loading)."""
    quant_type, blocksize = check_quant_type(quant_type), check_blocksize(blocksize)
    if not isinstance(weight, torch.Tensor) or weight.dtype not in FLOAT_DTYPES:
        what = weight.dtype if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise UsageError(f"4-bit quantization takes a float32, float16 or bfloat16 tensor, got {what}")
    n = weight.numel()
    if n == 0:
        raise UsageError("cannot quantize an empty tensor")
    shape, device = weight.shape, weight.device
    if weight.is_meta:
        return _meta_quantized(shape, weight.dtype, blocksize, quant_type, double_quant)
    flat = weight.detach().reshape(-1)
    full = n - n % blocksize  # values in whole blocks
    packed = torch.empty(packed_numel(n), dtype=torch.uint8, device=device)
    absmax = torch.empty(-(-n // blocksize), dtype=torch.float32, device=device)
    bounds, order = _bounds(quant_type, device)
    # a chunk of whole blocks at a time: a layer's temporaries stay small, whatever its size
    step = max(_QUANTIZE_CHUNK // blocksize, 1) * blocksize
    # temporaries in reused per-thread buffers: quantizing layer after layer (while loading) must not
    # leave the allocator's heap riddled with freed layer-sized holes
    for start in range(0, full, step):
        stop = min(start + step, full)
        chunk = flat[start:stop]
        if chunk.dtype != torch.float32:
            chunk = _scratch.get("quantize.float", stop - start, torch.float32, device).copy_(chunk)
        whole = chunk.view(-1, blocksize)
        scaled = _scratch.get("quantize.scaled", stop - start, torch.float32, device).view(-1, blocksize)
        scales = absmax[start // blocksize : stop // blocksize]
        torch.amax(torch.abs(whole, out=scaled), dim=1, out=scales)
        torch.mul(whole, (1.0 / scales.clamp(min=1e-38)).view(-1, 1), out=scaled).clamp_(-1, 1)
        _pack_codes(scaled.view(-1), bounds, order, packed[start // 2 : stop // 2])
    if full < n:  # the short last block: divided by its absmax, clamped to 1e-38 (bitsandbytes' rule)
        tail = flat[full:].float()
        tail_max = tail.abs().max().clamp(min=1e-38)
        absmax[-1] = tail_max
        scaled = torch.clamp(tail / tail_max, -1, 1)
        _pack_codes(F.pad(scaled, (0, (n - full) % 2)), bounds, order, packed[full // 2 :])
    packed = packed.unsqueeze(1)
    code = codebook(quant_type).to(device, copy=True)
    if not double_quant:
        return packed, QuantState(absmax, shape, weight.dtype, blocksize, quant_type, code)
    offset = absmax.mean()
    codes, nested_absmax = _quantize_8bit(absmax - offset)
    state = QuantState(
        codes,
        shape,
        weight.dtype,
        blocksize,
        quant_type,
        code,
        offset=offset,
        nested_absmax=nested_absmax,
        nested_code=dynamic_map().to(device, copy=True),
    )
    return packed, state


def _pack_codes(scaled: torch.Tensor, bounds: torch.Tensor, order: torch.Tensor | None, out: torch.Tensor) -> None:
    """Nearest-code indices of `scaled` (an even count, in [-1, 1]), two per byte, first in the high nibble;
    `order` maps a sorted position to its code (None: the codebook is sorted)."""
    n, device = scaled.numel(), scaled.device
    position = torch.bucketize(scaled, bounds, out_int32=True, out=_scratch.get("pack.int", n, torch.int32, device))
    codes = _scratch.get("pack.codes", n, torch.uint8, device)
    if order is None:
        codes.copy_(position)
    else:
        torch.index_select(order, 0, position, out=codes)
    high = torch.bitwise_left_shift(codes[::2], 4, out=_scratch.get("pack.high", n // 2, torch.uint8, device))
    torch.bitwise_or(high, codes[1::2], out=out)


def _meta_quantized(
    shape: torch.Size, dtype: torch.dtype, blocksize: int, quant_type: str, double_quant: bool
) -> tuple[torch.Tensor, QuantState]:
    n = math.prod(shape)
    blocks = -(-n // blocksize)
    meta = torch.device("meta")
    packed = torch.empty(packed_numel(n), 1, dtype=torch.uint8, device=meta)
    code = torch.empty(16, device=meta)
    if not double_quant:
        return packed, QuantState(torch.empty(blocks, device=meta), shape, dtype, blocksize, quant_type, code)
    state = QuantState(
        torch.empty(blocks, dtype=torch.uint8, device=meta),
        shape,
        dtype,
        blocksize,
        quant_type,
        code,
        offset=torch.empty((), device=meta),
        nested_absmax=torch.empty(-(-blocks // NESTED_BLOCKSIZE), device=meta),
        nested_code=torch.empty(256, device=meta),
    )
    return packed, state


def _quantize_8bit(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise 8-bit codes of `values` with the dynamic map, as bitsandbytes' CPU library computes them:
    ``lut[uint16((clamp(v / absmax) + 1) * 0.5 * 65535 + 0.5)]``; a block of zeros gets codes 0."""
    n = values.numel()
    blocks = -(-n // NESTED_BLOCKSIZE)
    padded = F.pad(values.reshape(-1), (0, blocks * NESTED_BLOCKSIZE - n)).view(blocks, NESTED_BLOCKSIZE)
    absmax = padded.abs().amax(dim=1)
    inverse = 1.0 / absmax
    scaled = torch.clamp(padded * inverse.view(-1, 1), -1.0, 1.0)
    bins = ((scaled + 1.0) * 0.5 * float(_LUT_BINS - 1) + 0.5).nan_to_num_(0.0).to(torch.int32)
    codes = _dynamic_lut(values.device)[bins]
    codes[absmax == 0] = 0
    return codes.reshape(-1)[:n], absmax


def _dequantize_8bit(codes: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    n = codes.numel()
    blocks = absmax.numel()
    values = torch.index_select(code, 0, codes.reshape(-1).int())  # index_select: far cheaper than code[...]
    if n % blocksize:
        values = F.pad(values, (0, blocks * blocksize - n))
    return (values.view(blocks, blocksize) * absmax.view(-1, 1)).view(-1)[:n]


def dequantize_4bit(packed: torch.Tensor, state: QuantState, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The weight `packed` and `state` stand for, in `dtype` (default: the quantized weight's), equal to
    ``bitsandbytes.functional.dequantize_4bit``."""
    dtype = state.dtype if dtype is None else dtype
    if dtype not in FLOAT_DTYPES:
        raise UsageError(f"4-bit weights dequantize to float32, float16 or bfloat16, not {dtype}")
    if packed.numel() != packed_numel(state.numel) or state.absmax.numel() != state.blocks:
        raise UsageError(
            f"4-bit codes ({packed.numel()} bytes, {state.absmax.numel()} scales) do not fit a "
            f"{list(state.shape)} weight in blocks of {state.blocksize}"
        )
    out = torch.empty(state.numel, dtype=dtype, device=packed.device)
    if not packed.is_meta:
        dequantize_into(out, packed, pair_values(state.code), state.block_absmax(), state.blocksize)
    return out.view(state.shape)


def pair_values(code: torch.Tensor) -> torch.Tensor:
    """byte -> (value of its high nibble, value of its low nibble), as one int64 per byte (two fp32): the
    table :func:`dequantize_into` gathers from."""
    code = code.float()
    pairs = torch.stack([code.repeat_interleave(16), code.repeat(16)], dim=1).contiguous()
    return pairs.view(torch.int64).view(256)


def weight_scratch(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A reusable per-thread buffer (contents undefined) for one layer's dequantized weight at a time."""
    return _scratch.get("weight", numel, dtype, device)


def dequantize_into(
    out: torch.Tensor, packed: torch.Tensor, pairs: torch.Tensor, absmax: torch.Tensor, blocksize: int
) -> torch.Tensor:
    """Write the dequantized values into the flat tensor `out` (any float dtype), a chunk at a time:
    a 256-entry byte -> two-values table gathered per byte, scaled per block in fp32, rounded into `out`."""
    n = out.numel()
    packed = packed.reshape(-1)
    absmax = absmax.float()
    chunk = max(_CHUNK_VALUES // blocksize, 1) * blocksize // 2  # pairs per step, whole blocks
    full = (n // blocksize) * blocksize  # values in whole blocks
    index = _scratch.get("index", chunk, torch.int32, out.device)
    gathered = _scratch.get("pairs", chunk, torch.int64, out.device)
    for start in range(0, full // 2, chunk):
        stop = min(start + chunk, full // 2)
        k = stop - start
        index[:k].copy_(packed[start:stop])
        torch.index_select(pairs, 0, index[:k], out=gathered[:k])
        values = gathered[:k].view(torch.float32).view(-1, blocksize)
        scales = absmax[2 * start // blocksize : 2 * stop // blocksize].view(-1, 1)
        torch.mul(values, scales, out=out[2 * start : 2 * stop].view(-1, blocksize))
    if full < n:  # the short last block (and an odd value count)
        tail = torch.index_select(pairs, 0, packed[full // 2 :].int()).view(torch.float32)[: n - full]
        out[full:] = tail * absmax[-1]
    return out
