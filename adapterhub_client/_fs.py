"""The filesystem helpers every writer and hasher shares: one of each.

* :func:`atomic_write` - small files (configs, index lines, lockfiles): temp file + rename.
* :func:`write_blob` - a content-addressed file (bytes or a copy of a file), fsynced, read-only,
  renamed into place: readers see the whole blob or none.
* :func:`sha256_file` / :func:`file_digest` / :func:`sha256_bytes` / :func:`hash_into` (a running hash,
  for resumed downloads) - the one way to hash.
* :func:`is_pickle_name` - the one list of pickle suffixes, compared case-insensitively.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

HASH_CHUNK = 1 << 20
TEMP_PREFIX = ".tmp-"  # every temp file a writer leaves next to its target starts with this

# Suffixes of pickle-based weight files (torch.save, PyTorch Lightning, joblib/pickle). Never
# loaded unless a caller opts in, and then only with torch.load(weights_only=True).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def is_pickle_name(name: str | os.PathLike[str]) -> bool:
    """Whether a file name has a pickle suffix (``adapter.BIN`` included)."""
    return os.fspath(name).lower().endswith(PICKLE_SUFFIXES)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_into(path: str | os.PathLike[str], h: hashlib._Hash) -> int:
    """Feed a file's bytes into a running hash (a resumable download continues it); return the size."""
    with open(path, "rb") as fh:
        return _hash_stream(fh, h)


def _hash_stream(fh: BinaryIO, h: hashlib._Hash) -> int:
    size = 0
    while chunk := fh.read(HASH_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return size


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """``(sha256 hex, size in bytes)`` of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        size = _hash_stream(fh, h)
    return h.hexdigest(), size


def sha256_file(path: str | os.PathLike[str]) -> str:
    return file_digest(path)[0]


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int | None = None) -> Path:
    """Write `data` to `path` through a unique temp file and a rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_blob(
    target: str | os.PathLike[str],
    source: bytes | str | os.PathLike[str],
    *,
    tmp_dir: str | os.PathLike[str] | None = None,
    fsync: bool = True,
) -> Path:
    """Place `source` (bytes, or a file to copy) at `target` atomically and read-only.

    The temp file lives in `tmp_dir` (same filesystem as `target`) or next to the target. An existing
    target is left alone: blobs are content-addressed, so an existing one already holds these bytes.
    """
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or target.parent, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(source, bytes):
                out.write(source)
            else:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, out, HASH_CHUNK)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target
