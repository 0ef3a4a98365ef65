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
from typing import Any

from ..errors import InvalidPackageError, NotFoundError

# The format's own limit (safetensors refuses larger headers).
MAX_HEADER_BYTES = 100 * 1024 * 1024

# Offsets are u64 in the format: no tensor can be larger.
MAX_TENSOR_BYTES = 2**64

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
    """Parse and fully validate one file's header; InvalidPackageError (naming the file and the
    reason) on anything safetensors itself would refuse, so no loader ever meets a malformed file.

    Checked: the length is bounded and inside the file; the header is UTF-8 JSON, an object of
    tensor entries (names unique) plus an optional ``__metadata__`` of strings; each dtype is known,
    each shape a list of non-negative ints, each ``data_offsets`` two non-negative ints spanning
    exactly shape x dtype size; the tensors tile the data section from 0 to the end of the file,
    without overlap or gap."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            file_size = os.fstat(fh.fileno()).st_size
            head = fh.read(8)
            if len(head) < 8:
                raise _invalid(path, "shorter than 8 bytes")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > MAX_HEADER_BYTES:
                raise _invalid(path, f"header length {header_len} is over the {MAX_HEADER_BYTES} byte limit")
            if 8 + header_len > file_size:
                raise _invalid(path, f"header length {header_len} runs past the end of the file ({file_size} bytes)")
            raw = fh.read(header_len)
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InvalidPackageError(f"{path}: is a directory, not a safetensors file") from None
    except OSError as exc:
        raise InvalidPackageError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    header = _parse_json(path, raw)
    metadata = _metadata(path, header.pop("__metadata__", None))
    data_offset = 8 + header_len
    data_size = file_size - data_offset
    tensors: dict[str, TensorInfo] = {}
    for name, entry in header.items():
        tensors[name] = _tensor_info(path, name, entry, data_offset, data_size)
    _check_layout(path, tensors, data_offset, data_size)
    return SafetensorsHeader(path, data_offset, file_size, tensors, metadata)


def _invalid(path: str, reason: str) -> InvalidPackageError:
    return InvalidPackageError(f"{path}: not a valid safetensors file: {reason}")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json object hook: a name given twice is refused (which entry would count?)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    pass


def _parse_json(path: str, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(path, f"header is not UTF-8 (byte {exc.start})") from None
    try:
        header = json.loads(text, object_pairs_hook=_unique_object)
    except _DuplicateKey as exc:
        raise _invalid(path, f"tensor {exc.args[0]!r} is named twice in the header") from None
    except RecursionError:
        raise _invalid(path, "header JSON is nested too deeply") from None
    except ValueError as exc:
        raise _invalid(path, f"header is not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(header, dict):
        raise _invalid(path, f"header is not a JSON object (a {type(header).__name__})")
    return header


def _metadata(path: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _invalid(path, "'__metadata__' must be an object of strings")
    return value


def _ints(value: Any) -> list[int] | None:
    """`value` as a list of non-negative ints (no bools, floats or 1e999), else None."""
    if not isinstance(value, list) or not all(type(x) is int and x >= 0 for x in value):
        return None
    return value


def _elements(shape: list[int], limit: int) -> int | None:
    """The product of `shape`, or None once it exceeds `limit` (never a huge multiplication)."""
    if 0 in shape:
        return 0
    total = 1
    for d in shape:
        total *= d
        if total > limit:
            return None
    return total


def _tensor_info(path: str, name: str, entry: Any, data_offset: int, data_size: int) -> TensorInfo:
    where = f"tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise _invalid(path, f"{where}: malformed header entry (needs dtype, shape and data_offsets)")
    code = entry["dtype"]
    if not isinstance(code, str) or code not in DTYPES:
        raise _invalid(path, f"{where}: unknown dtype {code!r}")
    dtype, itemsize = DTYPES[code]
    bits = round(itemsize * 8)
    shape = _ints(entry["shape"])
    if shape is None:
        raise _invalid(path, f"{where}: shape {_short(entry['shape'])} is not a list of non-negative integers")
    offsets = _ints(entry["data_offsets"])
    if offsets is None or len(offsets) != 2:
        raise _invalid(path, f"{where}: data_offsets {_short(entry['data_offsets'])} are not two non-negative integers")
    begin, end = offsets
    elements = _elements(shape, MAX_TENSOR_BYTES * 8 // bits)
    if elements is None:
        raise _invalid(path, f"{where}: shape {_short(shape)} is larger than any file (over 2**64 bytes)")
    if elements * bits % 8:
        raise _invalid(path, f"{where}: {elements} {code} elements do not fill whole bytes")
    if begin > end or end - begin != elements * bits // 8:
        raise _invalid(
            path,
            f"{where}: data_offsets [{begin}, {end}] do not match dtype and shape "
            f"({code} {shape} is {elements * bits // 8} bytes)",
        )
    if end > data_size:
        raise _invalid(path, f"{where}: data runs past the end of the file (truncated?)")
    return TensorInfo(name, dtype, tuple(shape), data_offset + begin, data_offset + end)


def _check_layout(path: str, tensors: dict[str, TensorInfo], data_offset: int, data_size: int) -> None:
    """The tensors tile the data section: contiguous from 0, no overlap, no gap, no trailing bytes."""
    position = data_offset
    for info in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start < position:
            raise _invalid(path, f"tensor {info.name!r} overlaps the tensor before it")
        if info.start > position:
            raise _invalid(path, f"gap of {info.start - position} bytes before tensor {info.name!r}")
        position = info.end
    if position != data_offset + data_size:
        raise _invalid(path, f"{data_offset + data_size - position} bytes after the last tensor")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
