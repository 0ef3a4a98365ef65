"""Reading one weight file's bytes: per-tensor digests over a memory map, and the file's sha256.

Owns the only place tensor data is read from disk for fingerprints (FINGERPRINT.md § Content
fingerprint, "Bytes are hashed where they lie") and the file identity the cache is keyed by.
"""

from __future__ import annotations

import mmap
import os
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from ..._fs import sha256_file
from ..safetensors_header import SafetensorsHeader, TensorInfo
from .spec import tensor_digest


def file_identity(path: str | os.PathLike[str]) -> list[int]:
    """[size, mtime_ns, ctime_ns, inode, device]: a cache entry is valid while this is unchanged."""
    st = os.stat(path)  # follows symlinks: Hub snapshots point into blobs/
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def scan_file(
    path: str | os.PathLike[str], header: SafetensorsHeader, algorithm: str | None, want_sha256: bool
) -> tuple[dict[str, str], str | None]:
    """Digests of every tensor (none when algorithm is None) and the file's sha256 (None unless wanted).

    Hashers release the GIL, so the whole-file sha256 (`_fs.sha256_file`, the one way to hash a
    file) runs on its own thread beside the tensor digests; BLAKE3 spreads a large tensor over
    cores itself, while single-threaded SHA-256 digests run one tensor per thread."""
    tensors = header.in_file_order() if algorithm is not None else []
    workers = 1 if algorithm == "blake3" else max(1, min(len(tensors), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers + want_sha256) as pool:
        sha = pool.submit(sha256_file, path) if want_sha256 else None
        digests = _tensor_digests(Path(path), tensors, algorithm, pool if workers > 1 else None)
        return digests, sha.result() if sha is not None else None


def _tensor_digests(
    path: Path, tensors: list[TensorInfo], algorithm: str | None, pool: Executor | None
) -> dict[str, str]:
    """Each tensor's digest over its byte range of one read-only mapping of the file.

    Not a whole-file hash (those go through `_fs`): slices of the mapping are hashed in place, so a
    tensor is never copied; `pool` runs them one per thread, None runs them here in file order."""
    if algorithm is None or not tensors:
        return {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:

            def digest(t: TensorInfo) -> str:
                return tensor_digest(algorithm, t.dtype, t.shape, view[t.start : t.end])

            if pool is not None:
                return dict(zip((t.name for t in tensors), pool.map(digest, tensors)))
            return {t.name: digest(t) for t in tensors}
        finally:
            view.release()
