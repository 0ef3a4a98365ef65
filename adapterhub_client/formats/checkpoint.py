"""Streaming merge of LoRA adapters into a safetensors checkpoint directory.

The output has the base's file layout (same shards, same headers, same config and tokenizer
files), so transformers loads it like the base. Tensors are processed one at a time in file
order: an untouched tensor is copied as bytes, a touched one is read, merged in fp32 and written
back in its own dtype. Peak memory is about one tensor plus the adapters, whatever the model size.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import struct
from pathlib import Path
from typing import Any, Iterable

import torch

from ..compat import align_paths
from ..errors import InvalidPackageError, UsageError
from ..fingerprint import read_model_type, weight_files
from ..nn.lora import LoRAConfig
from ..nn.targets import pattern_value
from ..safetensors_header import read_header

COPY_CHUNK = 8 << 20
# model types whose attention/MLP projections are GPT-2 `Conv1D` ([in, out] weights)
CONV1D_MODEL_TYPES = {"gpt2", "openai-gpt", "imagegpt", "decision_transformer"}
_TORCH_DTYPES = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
}


@dataclasses.dataclass
class LoRAWeights:
    """One adapter to merge: its config and its tensors with package keys (`<path>.lora_A`, ...)."""

    config: LoRAConfig
    tensors: dict[str, torch.Tensor]
    weight: float = 1.0

    def modules(self) -> list[str]:
        return sorted(k[: -len(".lora_A")] for k in self.tensors if k.endswith(".lora_A"))


def read_lora_package(path: str | os.PathLike[str]) -> LoRAWeights:
    """The LoRA weights of an installed package (ours, or one wrapping a PEFT directory)."""
    from .package import read_package

    config, tensors, name = read_package(path)
    if not isinstance(config, LoRAConfig):
        raise UsageError(f"{name}: a {config.kind} adapter cannot be merged into the base weights")
    return LoRAWeights(config, tensors)


def _delta(adapter: LoRAWeights, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(s * B @ A in fp32 as [out, in], DoRA magnitude or None) for one module."""
    a = adapter.tensors[f"{path}.lora_A"].float()
    b = adapter.tensors[f"{path}.lora_B"].float()
    r = a.shape[0]
    alpha = pattern_value(adapter.config.alpha_pattern, path, adapter.config.alpha)
    scale = adapter.config.scaling(r, alpha) * adapter.weight
    magnitude = adapter.tensors.get(f"{path}.lora_magnitude_vector")
    return (b @ a) * scale, (magnitude.float() if magnitude is not None else None)


def _orient(delta: torch.Tensor, weight_shape: tuple[int, ...], transposed_hint: bool, key: str) -> tuple[torch.Tensor, bool]:
    """Lay `delta` ([out, in]) out like the stored weight: as is, or transposed (Conv1D, Embedding)."""
    shape = tuple(weight_shape)
    if tuple(delta.shape) == shape and not (transposed_hint and shape[0] == shape[1]):
        return delta, False
    if tuple(delta.T.shape) == shape:
        return delta.T, True
    raise InvalidPackageError(f"{key}: adapter delta {list(delta.shape)} does not fit the weight {list(shape)}")


def merge_checkpoint(base_dir: str | os.PathLike[str], adapters: Iterable[LoRAWeights],
                     out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write `base_dir` with every adapter merged into `out_dir`; return a report."""
    base_root, files = weight_files(base_dir)
    out = Path(out_dir)
    if out.resolve() == base_root.resolve():
        raise UsageError("--output must differ from the base model directory")
    adapters = list(adapters)
    model_type = read_model_type(base_root)
    headers = {rel: read_header(base_root / rel) for rel in files}
    weights = {name[: -len(".weight")]: (rel, info) for rel, h in headers.items() for name, info in h.tensors.items()
               if name.endswith(".weight")}
    # which checkpoint tensor each adapted module lands on (prefix differences allowed)
    plan: dict[str, list[tuple[LoRAWeights, str]]] = {}
    for adapter in adapters:
        paths = adapter.modules()
        strip, add = align_paths(paths, weights)
        for path in paths:
            target = add + path[len(strip):] if path.startswith(strip) else path
            if target not in weights:
                raise InvalidPackageError(f"adapter module {path} has no weight in {base_root}")
            plan.setdefault(f"{target}.weight", []).append((adapter, path))

    out.mkdir(parents=True, exist_ok=True)
    tmp_files: list[tuple[Path, Path]] = []
    peak = 0
    merged = 0
    try:
        for rel, header in headers.items():
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".partial")
            tmp_files.append((tmp, target))
            with open(base_root / rel, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(_Limited(src, header.data_offset), dst)  # identical header
                position = header.data_offset
                for info in header.in_file_order():
                    if info.start != position:  # keep any padding byte-for-byte
                        src.seek(position)
                        dst.write(src.read(info.start - position))
                    src.seek(info.start)
                    todo = plan.get(info.name)
                    if not todo:
                        shutil.copyfileobj(_Limited(src, info.nbytes), dst, COPY_CHUNK)
                    else:
                        data = bytearray(src.read(info.nbytes))
                        dst.write(_merge_tensor(data, info, todo, model_type))
                        peak = max(peak, info.nbytes)
                        merged += 1
                    position = info.end
                rest = src.read()
                dst.write(rest)
        for tmp, target in tmp_files:
            os.replace(tmp, target)
    except BaseException:
        for tmp, _ in tmp_files:
            tmp.unlink(missing_ok=True)
        raise
    weight_set = set(files)
    for item in base_root.iterdir():  # config, tokenizer, index json... as they are
        if item.name in weight_set or item.name.endswith((".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5")):
            continue
        dest = out / item.name
        if item.is_dir():
            shutil.copytree(item, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dest)
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
    conv1d_hint = model_type in CONV1D_MODEL_TYPES
    for adapter, path in todo:
        delta, magnitude = _delta(adapter, path)
        delta, transposed = _orient(delta, info.shape, conv1d_hint, info.name)
        if magnitude is None:
            weight += delta
            continue
        # DoRA: W' = m * (W + sBA) / ||W + sBA|| with the norm per output feature
        combined = weight + delta
        rows = combined.T if transposed else combined
        norm = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
        rows = rows * (magnitude.view(-1, 1) / norm)
        weight = rows.T if transposed else rows
    if not bool(torch.isfinite(weight).all()):
        raise InvalidPackageError(f"{info.name}: merging produced non-finite values; nothing written")
    result = weight.to(dtype).contiguous()
    return result.view(torch.uint8).numpy().tobytes() if dtype != torch.float32 else result.numpy().tobytes()
