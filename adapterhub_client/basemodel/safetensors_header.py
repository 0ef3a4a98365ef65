"""Read safetensors headers and tensor byte ranges without torch.

A safetensors file is: 8 bytes little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`),
then the tensor data; offsets are relative to the end of the header.
Reading the header is one small read, so this costs microseconds at any model size.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from math import prod
from typing import Any

from ..errors import InvalidPackageError, NotFoundError

# The format's own limit (safetensors refuses larger headers).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype code -> (canonical name used in manifests, bytes per element; 0 = sub-byte).
DTYPES: dict[str, tuple[str, float]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1),
    "F6_E2M3": ("float6_e2m3", 0.75),
    "F6_E3M2": ("float6_e3m2", 0.75),
    "F4": ("float4_e2m1", 0.5),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "C64": ("complex64", 8),
}
FLOAT_CODES = frozenset(code for code in DTYPES if code.startswith(("F", "BF")))

# Every spelling of a dtype we may meet in a manifest -> canonical name ("float32").
_DTYPE_ALIASES: dict[str, str] = {}
for _code, (_name, _size) in DTYPES.items():
    _DTYPE_ALIASES[_code.lower()] = _name
    _DTYPE_ALIASES[_name] = _name
_DTYPE_ALIASES.update(
    {
        "fp32": "float32",
        "float": "float32",
        "fp16": "float16",
        "half": "float16",
        "bf16": "bfloat16",
        "double": "float64",
        "long": "int64",
        "int": "int32",
    }
)


def canonical_dtype(dtype: Any) -> str:
    """`F32`, `float32`, `torch.float32`, `fp32` -> `float32`; unknown names pass through lowercased."""
    text = str(dtype).strip().lower().removeprefix("torch.")
    return _DTYPE_ALIASES.get(text, text)


def is_float_dtype(dtype: str) -> bool:
    """True for floating-point dtypes, given any spelling (`F32`, `float32`, `bfloat16`...)."""
    return canonical_dtype(dtype).startswith(("float", "bfloat"))


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str  # canonical name, e.g. "float32"
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int  # absolute, exclusive

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def is_float(self) -> bool:
        return is_float_dtype(self.dtype)


@dataclass(frozen=True)
class SafetensorsHeader:
    path: str
    data_offset: int  # where tensor data begins (8 + header length)
    file_size: int
    tensors: dict[str, TensorInfo]  # in header order
    metadata: dict[str, str] = field(default_factory=dict)

    def in_file_order(self) -> list[TensorInfo]:
        return sorted(self.tensors.values(), key=lambda t: t.start)


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """Parse and validate one file's header; raises InvalidPackageError on a malformed file."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            file_size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise InvalidPackageError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
                raise InvalidPackageError(f"{path}: not a safetensors file (header length {header_len})")
            raw = fh.read(header_len)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidPackageError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise InvalidPackageError(f"{path}: not a safetensors file (header is not an object)")
    metadata = header.pop("__metadata__", None) or {}
    data_offset = 8 + header_len
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _tensor_info(path, name, entry, data_offset, file_size)
    return SafetensorsHeader(path, data_offset, file_size, tensors, metadata)


def _tensor_info(path: str, name: str, entry: Any, data_offset: int, file_size: int) -> TensorInfo:
    try:
        code = entry["dtype"]
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(x) for x in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise InvalidPackageError(f"{path}: tensor {name!r}: malformed header entry") from None
    if code not in DTYPES:
        raise InvalidPackageError(f"{path}: tensor {name!r}: unknown dtype {code!r}")
    dtype, itemsize = DTYPES[code]
    expected = prod(shape) * itemsize
    if any(d < 0 for d in shape) or not 0 <= begin <= end or end - begin != expected:
        raise InvalidPackageError(f"{path}: tensor {name!r}: byte range does not match dtype and shape")
    if data_offset + end > file_size:
        raise InvalidPackageError(f"{path}: tensor {name!r}: data runs past the end of the file (truncated?)")
    return TensorInfo(name, dtype, shape, data_offset + begin, data_offset + end)
