"""Cache layout and the content-addressed blob store.

    <cache>/CACHEDIR.TAG
    <cache>/blobs/sha256/<ab>/<hex>       verified, read-only, stored once
    <cache>/partial/<hex>.part            a download in progress (resumable across processes)
    <cache>/locks/<key>.lock              file locks: one per blob, one per installed version
    <cache>/installed/<org>/<name>/<ver>/ installed view: manifest.json + files (hard links)
    <cache>/http/<registry>/...           index files with their ETag, for revalidation
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import AdapterError, IntegrityError

SUBDIRS = ("blobs", "partial", "locks", "installed", "tmp", "http", "fingerprints")
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by adapterhub-client.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


class Cache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # --- layout -----------------------------------------------------------------
    def ensure(self) -> "Cache":
        from .._fs import atomic_write

        try:
            if not (self.root / "CACHEDIR.TAG").exists():
                atomic_write(self.root / "CACHEDIR.TAG", CACHEDIR_TAG)
            for sub in ("blobs/sha256", "partial", "locks", "installed", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)  # http/, fingerprints/ on demand
        except OSError as exc:
            raise AdapterError(f"cannot use the cache directory {self.root}: {exc.strerror or exc}") from None
        return self

    def blob_path(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def partial_path(self, sha256: str) -> Path:
        return self.root / "partial" / f"{sha256}.part"

    def has_blob(self, sha256: str) -> bool:
        return self.blob_path(sha256).is_file()

    def touch(self, sha256: str) -> bool:
        """Mark a blob as used now (`cache prune` keeps recently used blobs); False if absent."""
        try:
            os.utime(self.blob_path(sha256))
            return True
        except FileNotFoundError:
            return False
        except OSError:  # a shared cache with blobs of another user: present, just not ours to touch
            return self.has_blob(sha256)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An inter-process lock. No timeout: a dead holder releases it, and a live one may be
        downloading many GB; waiting is what a second installer should do, saying so once."""
        from filelock import FileLock, Timeout  # deferred: 18 ms, and `adapters list` never locks

        lock = FileLock(str(self.root / "locks" / f"{key}.lock"))
        try:
            lock.acquire(timeout=2)
        except Timeout:
            print(f"waiting for another adapters process (lock {key[:24]})", file=sys.stderr, flush=True)
            lock.acquire(timeout=-1)
        try:
            yield
        finally:
            lock.release()

    def tmp_dir(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix=prefix))

    # --- blobs ------------------------------------------------------------------
    def commit_blob(self, source: Path, sha256: str) -> Path:
        """Make a fully verified file visible as a blob (atomic rename, read-only)."""
        target = self.blob_path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(source, 0o444)
        os.replace(source, target)
        return target

    def put_bytes(self, data: bytes, sha256: str) -> Path:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"blob {sha256}: content does not match its sha256")
        target = self.blob_path(sha256)
        if target.exists():
            return target
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="blob-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return self.commit_blob(Path(tmp), sha256)

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        base = self.root / "blobs" / "sha256"
        if not base.exists():
            return
        for shard in sorted(base.iterdir()):
            for blob in sorted(shard.iterdir()):
                if len(blob.name) == 64:
                    yield blob.name, blob

    def remove_blob(self, sha256: str) -> None:
        try:
            self.blob_path(sha256).unlink()
        except FileNotFoundError:
            pass

    def clean(self) -> None:
        """Remove what this cache holds (its own subdirectories only, locks included), keeping the
        directory and its tag; refuse a directory that is not one of our caches."""
        try:
            tagged = (self.root / "CACHEDIR.TAG").read_text().startswith(CACHEDIR_TAG.splitlines()[0])
        except OSError:  # untagged is still ours if it holds nothing but our own subdirectories
            tagged = {p.name for p in self.root.iterdir()} <= set(SUBDIRS)
        if not tagged:
            raise AdapterError(f"{self.root} is not an adapters cache (no CACHEDIR.TAG of ours); nothing removed")
        for name in SUBDIRS:
            child = self.root / name
            if child.is_dir() and not child.is_symlink():
                for dirpath, _, _ in os.walk(child):
                    os.chmod(dirpath, 0o755)
                shutil.rmtree(child)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
