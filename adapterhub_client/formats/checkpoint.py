"""Streaming merge of LoRA adapters into a safetensors checkpoint directory.

The output has the base's file layout (same shards, same headers, same config and tokenizer
files), so transformers loads it like the base. Tensors are processed one at a time in file
order: an untouched tensor is copied as bytes, a touched one is read, merged in fp32 and written
back in its own dtype. Peak memory is about one tensor plus the adapters, whatever the model size.

The math is the in-memory layers': the LoRA delta and scaling rules of ``nn.lora``, DoRA's
rescaling from :mod:`adapterhub_client.nn.dora`, the weight layouts of
:mod:`adapterhub_client.nn.layout`, and module paths mapped by :func:`~..modpaths.align_paths`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .._fs import is_pickle_name
from ..basemodel.fingerprint import read_model_type, weight_files
from ..basemodel.safetensors_header import read_header
from ..errors import InvalidPackageError, UsageError
from ..manifest import read_manifest
from ..modpaths import align_paths
from ..nn.dora import dora_merge
from ..nn.layout import CONV1D_MODEL_TYPES, guess_kind, is_transposed
from ..nn.lora import LoRAConfig
from ..nn.targets import pattern_value
from .package import read_package

COPY_CHUNK = 8 << 20
# weight files of other frameworks, not copied next to the merged safetensors
_OTHER_WEIGHTS = (".msgpack", ".h5")
__all__ = ["CONV1D_MODEL_TYPES", "LoRAWeights", "merge_checkpoint", "read_lora_package"]
_TORCH_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}


@dataclasses.dataclass
class LoRAWeights:
    """One adapter to merge: its config, its tensors with package keys (`<path>.lora_A`, ...), and
    how each touched base weight is laid out (`linear` [out, in], `conv1d` [in, out],
    `embedding` [num, dim]) when the manifest records it."""

    config: LoRAConfig
    tensors: dict[str, torch.Tensor]
    weight: float = 1.0
    layers: dict[str, str] = dataclasses.field(default_factory=dict)

    def modules(self) -> list[str]:
        return sorted(k[: -len(".lora_A")] for k in self.tensors if k.endswith(".lora_A"))

    def biases(self) -> dict[str, torch.Tensor]:
        """Base biases trained with the adapter (`bias="all"|"lora_only"`): they replace the base's."""
        return {k[: -len(".bias")]: t for k, t in self.tensors.items() if k.endswith(".bias")}


def read_lora_package(path: str | os.PathLike[str]) -> LoRAWeights:
    """The LoRA weights of an installed package (ours, or one wrapping a PEFT directory)."""
    config, tensors, name = read_package(path)
    if not isinstance(config, LoRAConfig):
        raise UsageError(f"{name}: a {config.kind} adapter cannot be merged into the base weights")
    modules = ((read_manifest(path)["base_model"].get("architecture") or {}).get("modules")) or {}
    return LoRAWeights(config, tensors, layers={p: m["layer"] for p, m in modules.items() if m.get("layer")})


def _delta(adapter: LoRAWeights, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(s * B @ A in fp32 as [out, in], DoRA magnitude or None) for one module."""
    a = adapter.tensors[f"{path}.lora_A"].float()
    b = adapter.tensors[f"{path}.lora_B"].float()
    r = a.shape[0]
    alpha = pattern_value(adapter.config.alpha_pattern, path, adapter.config.alpha)
    scale = adapter.config.scaling(r, alpha) * adapter.weight
    magnitude = adapter.tensors.get(f"{path}.lora_magnitude_vector")
    return (b @ a) * scale, (magnitude.float() if magnitude is not None else None)


def _orient(
    delta: torch.Tensor, shape: tuple[int, ...], layer: str | None, model_type: str | None, key: str
) -> tuple[torch.Tensor, bool]:
    """Lay `delta` ([out, in]) out like the stored weight: as is (Linear) or transposed (Conv1D,
    Embedding). Manifests record the layer kind; for older ones :func:`~..nn.layout.guess_kind`."""
    if layer is None:
        layer = guess_kind(shape, delta.shape, key, model_type)
    transposed = is_transposed(layer)
    oriented = delta.T if transposed else delta
    if tuple(oriented.shape) != tuple(shape):
        raise InvalidPackageError(f"{key}: adapter delta {list(delta.shape)} does not fit the weight {list(shape)}")
    return oriented, transposed


def merge_checkpoint(
    base_dir: str | os.PathLike[str], adapters: Iterable[LoRAWeights], out_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """Write `base_dir` with every adapter merged into `out_dir` (new or empty); return a report.

    The result is assembled in a sibling temp directory and renamed into place at the end."""
    base_root, files = weight_files(base_dir)
    out = Path(out_dir)
    if out.resolve() == base_root.resolve():
        raise UsageError("--output must differ from the base model directory")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--output {out} exists and is not an empty directory")
    adapters = list(adapters)
    model_type = read_model_type(base_root)
    headers = {rel: read_header(base_root / rel) for rel in files}
    weights = {name[: -len(".weight")] for h in headers.values() for name in h.tensors if name.endswith(".weight")}
    tensor_names = {name for h in headers.values() for name in h.tensors}
    # which checkpoint tensor each adapted module lands on (prefix differences allowed)
    plan: dict[str, list[tuple[LoRAWeights, str]]] = {}
    replace: dict[str, torch.Tensor] = {}
    for adapter in adapters:
        paths = adapter.modules()
        mapped = align_paths(paths, weights).to_local
        for path in paths:
            if mapped(path) not in weights:
                raise InvalidPackageError(f"adapter module {path} has no weight in {base_root}")
            plan.setdefault(f"{mapped(path)}.weight", []).append((adapter, path))
        for path, bias in adapter.biases().items():
            if f"{mapped(path)}.bias" not in tensor_names:
                raise InvalidPackageError(f"adapter bias {path}.bias has no bias in {base_root}")
            replace[f"{mapped(path)}.bias"] = bias

    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    peak = merged = 0
    try:
        weight_set = set(files)
        for item in base_root.iterdir():  # config, tokenizer, index json... as they are
            if item.name in weight_set or is_pickle_name(item.name) or item.name.lower().endswith(_OTHER_WEIGHTS):
                continue
            if item.is_dir():
                shutil.copytree(item, work / item.name)
            else:
                shutil.copy2(item, work / item.name)
        for rel, header in headers.items():
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(base_root / rel, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(_Limited(src, header.data_offset), dst)  # identical header
                position = header.data_offset
                for info in header.in_file_order():
                    if info.start != position:  # keep any padding byte-for-byte
                        src.seek(position)
                        dst.write(src.read(info.start - position))
                    src.seek(info.start)
                    if info.name in plan:
                        data = bytearray(src.read(info.nbytes))
                        dst.write(_merge_tensor(data, info, plan[info.name], model_type))
                        peak = max(peak, info.nbytes)
                        merged += 1
                    elif info.name in replace:
                        dst.write(_tensor_bytes(replace[info.name], info))
                        merged += 1
                    else:
                        shutil.copyfileobj(_Limited(src, info.nbytes), dst, COPY_CHUNK)
                    position = info.end
                src.seek(position)
                dst.write(src.read())
        if out.exists():
            out.rmdir()  # checked empty above
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(work, 0o777 & ~umask)  # mkdtemp made it 0700: the output is a plain directory
        os.rename(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"output": str(out), "files": files, "merged_tensors": merged, "largest_tensor_bytes": peak}


class _Limited:
    """A file-like reading at most `n` bytes from `f` (for shutil.copyfileobj)."""

    def __init__(self, f: Any, n: int) -> None:
        self.f, self.left = f, n

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.f.read(size)
        self.left -= len(data)
        return data


def _merge_tensor(data: bytearray, info: Any, todo: list[tuple[LoRAWeights, str]], model_type: str | None) -> bytes:
    dtype = _TORCH_DTYPES.get(info.dtype)
    if dtype is None:
        raise InvalidPackageError(f"{info.name}: cannot merge into a {info.dtype} weight (quantized base?)")
    weight = torch.frombuffer(data, dtype=dtype).reshape(info.shape).float()
    for adapter, path in todo:
        delta, magnitude = _delta(adapter, path)
        delta, transposed = _orient(delta, info.shape, adapter.layers.get(path), model_type, info.name)
        if magnitude is None:
            weight += delta
            continue
        # DoRA on [out, in] rows; the norm from this weight (with the adapters merged before it)
        rows, rows_delta = (weight.T, delta.T) if transposed else (weight, delta)
        rows, _ = dora_merge(rows, rows_delta, magnitude)
        weight = rows.T if transposed else rows
    if not bool(torch.isfinite(weight).all()):
        raise InvalidPackageError(f"{info.name}: merging produced non-finite values; nothing written")
    return _tensor_bytes(weight, info)


def _tensor_bytes(tensor: torch.Tensor, info: Any) -> bytes:
    """`tensor` in the stored dtype and shape of `info`, as raw little-endian bytes."""
    dtype = _TORCH_DTYPES.get(info.dtype)
    if dtype is None or tuple(tensor.shape) != tuple(info.shape):
        raise InvalidPackageError(
            f"{info.name}: cannot write a {list(tensor.shape)} tensor over {list(info.shape)} {info.dtype}"
        )
    return tensor.detach().to("cpu", dtype).contiguous().view(torch.uint8).numpy().tobytes()
