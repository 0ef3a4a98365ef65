"""Which files of a model directory hold its weights, and what their safetensors headers say.

Owns weight-file discovery (FINGERPRINT.md § Which tensors count, as transformers chooses them),
the refusal of pickle-only checkpoints (`_fs.is_pickle_name`, the one pickle list), `config.json`'s
model_type, and headers: reads a few bytes per file, never tensor data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from ..._fs import is_pickle_name
from ...errors import InvalidPackageError, NotFoundError
from ..safetensors_header import SafetensorsHeader, read_header
from .spec import TensorSpec

SINGLE_FILE = "model.safetensors"
INDEX_GLOB = "*.safetensors.index.json"


def weight_files(path: str | os.PathLike[str]) -> tuple[Path, list[str]]:
    """(root, sorted relative paths of the safetensors weight files), chosen as transformers does:
    `model.safetensors`, else the shards named by `*.safetensors.index.json`, else every top-level
    `*.safetensors`. A path to a single `.safetensors` file is accepted too."""
    root = Path(path)
    if root.is_file() and root.name.endswith(".safetensors"):
        return root.parent, [root.name]
    if not root.is_dir():
        raise NotFoundError(f"{root}: no such model directory")
    if (root / SINGLE_FILE).is_file():
        return root, [SINGLE_FILE]
    indexes = sorted(root.glob(INDEX_GLOB))
    if indexes:
        return root, _indexed_shards(root, indexes)
    found = sorted(p.name for p in root.glob("*.safetensors") if p.is_file())
    if found:
        return root, found
    pickles = sorted(p.name for p in root.iterdir() if is_pickle_name(p.name))
    if pickles:
        raise InvalidPackageError(
            f"{root}: only pickle checkpoints ({pickles[0]}); fingerprints need safetensors "
            "(load it and save_pretrained(..., safe_serialization=True))"
        )
    raise NotFoundError(f"{root}: no *.safetensors weight files")


def _indexed_shards(root: Path, indexes: list[Path]) -> list[str]:
    """Every shard the index files name; refused when one lies outside `root` or is missing."""
    names: set[str] = set()
    for index in indexes:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names.update(str(v) for v in weight_map.values())
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise InvalidPackageError(f"{index}: malformed safetensors index (no 'weight_map')") from None
    unsafe = sorted(n for n in names if Path(n).is_absolute() or ".." in Path(n).parts)
    if unsafe:
        raise InvalidPackageError(f"{root}: the index names a shard outside the directory ({unsafe[0]!r})")
    missing = sorted(n for n in names if not (root / n).is_file())
    if missing:
        raise NotFoundError(f"{root}: shard {missing[0]} named by the index is missing ({len(missing)} missing)")
    return sorted(names)


def read_model_type(root: str | os.PathLike[str]) -> str | None:
    """`model_type` from the directory's config.json; None when absent or unreadable (it is only shown)."""
    try:
        value = json.loads((Path(root) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, str) else None


def read_headers(root: Path, files: list[str]) -> dict[str, SafetensorsHeader]:
    """{relpath: header} of each weight file; a tensor stored in two files is refused (which one counts?)."""
    headers = {rel: read_header(root / rel) for rel in files}
    seen: dict[str, str] = {}
    for rel, header in headers.items():
        for name in header.tensors:
            if name in seen:
                raise InvalidPackageError(f"{root}: tensor {name!r} is stored twice ({seen[name]} and {rel})")
            seen[name] = rel
    return headers


def weights_from_headers(headers: Mapping[str, SafetensorsHeader]) -> dict[str, TensorSpec]:
    """Every tensor of the files: name -> {"shape", "dtype"} (dtype canonical, from the header)."""
    return {t.name: {"shape": list(t.shape), "dtype": t.dtype} for h in headers.values() for t in h.tensors.values()}
