"""Fingerprints of a safetensors model directory: files + headers + scans, glued by the cache.

Owns `fingerprint_dir` (content, architecture and file digests of a directory) and `architecture_dir`
(headers only). The cache directory comes from the caller; None keeps no cache on disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...errors import InvalidPackageError
from ..safetensors_header import SafetensorsHeader
from .cache import CacheEntry, FingerprintCache, empty_entry
from .files import read_headers, read_model_type, weight_files, weights_from_headers
from .scan import file_identity, scan_file
from .spec import TensorSpec, architecture_fingerprint, combine_content, counted, default_algorithm


def architecture_dir(path: str | os.PathLike[str]) -> dict[str, TensorSpec]:
    """Every tensor of a safetensors model directory: name -> {"shape", "dtype"}; headers only."""
    root, files = weight_files(path)
    return weights_from_headers(read_headers(root, files))


def fingerprint_dir(
    directory: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    *,
    algorithm: str | None = None,
    file_digests: bool = True,
) -> dict[str, Any]:
    """Fingerprints of a safetensors model directory (single file or sharded), or of one `.safetensors` file.

    Returns {"content", "architecture", "files": {relpath: sha256}, "model_type", "tensor_count",
    "total_bytes"}; "files" is {} when file_digests=False. With a `cache_dir` (the directory holding
    the cache file) and use_cache, results per file are cached by file identity, so a repeated call
    reads only headers and the cache; with cache_dir=None nothing is stored."""
    algorithm = algorithm or default_algorithm()
    root, files = weight_files(directory)
    headers = read_headers(root, files)
    digests, shas = _scan_dir(root, files, headers, cache_dir if use_cache else None, algorithm, file_digests)
    weights = weights_from_headers(headers)
    names = counted({name: w["dtype"] for name, w in weights.items()})
    by_name = {t.name: t for h in headers.values() for t in h.tensors.values()}
    return {
        "content": combine_content(algorithm, (digests[name] for name in names)),
        "architecture": architecture_fingerprint(weights),
        "files": shas,
        "model_type": read_model_type(root),
        "tensor_count": len(names),
        "total_bytes": sum(by_name[name].nbytes for name in names),
    }


def tensor_digests(
    root: Path,
    files: list[str],
    headers: dict[str, SafetensorsHeader],
    cache_dir: str | os.PathLike[str] | None,
    algorithm: str,
) -> dict[str, str]:
    """{tensor name: digest} of every tensor of a model directory's weight files, whose headers the caller
    has read (cached per file under `cache_dir`, as fingerprint_dir caches them)."""
    return _scan_dir(root, files, headers, cache_dir, algorithm, False)[0]


def _scan_dir(
    root: Path,
    files: list[str],
    headers: dict[str, SafetensorsHeader],
    cache_dir: str | os.PathLike[str] | None,
    algorithm: str,
    file_digests: bool,
) -> tuple[dict[str, str], dict[str, str]]:
    """({tensor name: digest}, {relpath: sha256} when `file_digests`) of the weight files, through the cache."""
    cache = FingerprintCache(cache_dir) if cache_dir is not None else None
    digests: dict[str, str] = {}
    shas: dict[str, str] = {}
    for rel in files:
        entry = _file_entry(root / rel, cache, algorithm, file_digests, headers[rel])
        digests.update(entry["digests"][algorithm])
        if file_digests and entry["sha256"] is not None:
            shas[Path(rel).as_posix()] = entry["sha256"]
    if cache is not None:
        cache.flush()
    return digests, shas


def _file_entry(
    file_path: Path, cache: FingerprintCache | None, algorithm: str, file_digests: bool, header: SafetensorsHeader
) -> CacheEntry:
    """One file's digests (and sha256 if wanted): from the cache while the file is unchanged, else scanned."""
    real = os.path.realpath(file_path)
    identity = file_identity(file_path)
    entry = cache.get(real, identity) if cache is not None else empty_entry(identity)
    need_digests = algorithm not in entry["digests"]
    need_sha = file_digests and not entry["sha256"]
    if need_digests or need_sha:
        digest_map, sha = scan_file(file_path, header, algorithm if need_digests else None, need_sha)
        if file_identity(file_path) != identity:
            raise InvalidPackageError(f"{file_path}: changed while it was being hashed; try again")
        if need_digests:
            entry["digests"][algorithm] = digest_map
        if need_sha:
            entry["sha256"] = sha
        if cache is not None:
            cache.put(real, entry)
    return entry
