"""Cache layout and the content-addressed blob store.

<cache>/CACHEDIR.TAG
<cache>/blobs/sha256/<ab>/<hex>       verified, read-only, stored once
<cache>/partial/<hex>.part            a download in progress (resumable across processes)
<cache>/locks/<key>.lock              file locks: one per blob, one per installed version
<cache>/installed/<org>/<name>/<ver>/ installed view: manifest.json + files (hard links)
<cache>/http/<registry>/...           index files with their ETag, for revalidation
<cache>/fingerprints/                 per-file base-model fingerprints (basemodel.fingerprint)
<cache>/hub/<org>--<repo>/<commit>-<key>.json, refs.json (revision -> commit, as last seen online)
                                      the manifest derived from a Hugging Face repo at a commit (its sha256
                                      and size; the blob is in blobs/): the same manifest every time, offline
<cache>/archives/<sha256>/            an AdapterHub archive (zip, by its sha256), extracted after its checks
<cache>/quarantine/<when>-<name>/     what `verify` (or a re-hash on read) found corrupt, moved aside with
                                      note.json (what, where from, why, when); `cache prune` keeps it as
                                      evidence, `cache clean` removes it
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._fs import atomic_write, sha256_bytes, write_blob
from ..errors import AdapterError, IntegrityError, storage_error

RECORD_FILE = ".install.json"  # in each installed view: what was installed, from where, when
FINGERPRINTS = "fingerprints"  # the one name of the fingerprint cache's folder under a cache root
QUARANTINE = "quarantine"
QUARANTINE_NOTE = "note.json"
SUBDIRS = ("blobs", "partial", "locks", "installed", "tmp", "http", "hub", "archives", FINGERPRINTS, QUARANTINE)
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by adapterhub-client.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """What `adapters cache info` reports: counts and bytes of verified blobs and partial downloads."""

    path: Path
    blobs: int
    blob_bytes: int
    partial: int
    partial_bytes: int
    installed: int  # installed adapter versions (complete views)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "blobs": self.blobs,
            "blob_bytes": self.blob_bytes,
            "partial": self.partial,
            "partial_bytes": self.partial_bytes,
            "installed": self.installed,
        }


def _count_files(path: Path) -> tuple[int, int]:
    count = total = 0
    if path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                count += 1
                total += p.stat().st_size
    return count, total


class Cache:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # --- layout -----------------------------------------------------------------
    def ensure(self) -> Cache:
        try:
            if not (self.root / "CACHEDIR.TAG").exists():
                atomic_write(self.root / "CACHEDIR.TAG", CACHEDIR_TAG)
            for sub in ("blobs/sha256", "partial", "locks", "installed", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)  # http/, fingerprints/ on demand
        except OSError as exc:
            mapped = storage_error(exc, self.root)
            raise mapped or AdapterError(f"cannot use the cache directory {self.root}: {exc.strerror or exc}") from None
        return self

    @property
    def fingerprints_dir(self) -> Path:
        """Where base-model fingerprints are cached: pass it as `cache_dir` to basemodel.fingerprint."""
        return self.root / FINGERPRINTS

    def stats(self) -> CacheStats:
        """Counts and sizes of what the cache holds (read-only; an absent cache is empty)."""
        blobs, blob_bytes = _count_files(self.root / "blobs")
        partial, partial_bytes = _count_files(self.root / "partial")
        installed = sum(1 for _ in self.iter_installed())
        return CacheStats(self.root, blobs, blob_bytes, partial, partial_bytes, installed)

    def iter_installed(self) -> Iterator[tuple[dict[str, Any], Path]]:
        """(install record, view directory) of every complete installed view, in path order."""
        base = self.root / "installed"
        if not base.is_dir():
            return
        for record_file in sorted(base.glob(f"*/*/*/{RECORD_FILE}")):
            try:
                record = json.loads(record_file.read_text())
            except (OSError, ValueError):
                continue
            yield record, record_file.parent

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

    def adopt_file(self, source: Path, sha256: str, size: int, what: str) -> Path:
        """Make another cache's file (the Hugging Face cache's) a blob without a second copy where the
        file system allows: a hard link, else a copy; hashed first either way, visible only if it matches."""
        target = self.blob_path(sha256)
        if target.is_file():
            return target
        real = Path(os.path.realpath(source))
        tmp = self.root / "tmp" / f"adopt-{sha256}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.link(real, tmp)
        except OSError:  # another file system, or links refused: copy
            shutil.copyfile(real, tmp)
        try:
            from .._fs import file_digest

            got, got_size = file_digest(tmp)
            if got_size != size or got != sha256:
                raise IntegrityError(
                    f"{what}: {got_size} bytes with sha256 {got[:12]}…, expected {size} bytes with sha256 "
                    f"{sha256[:12]}…; nothing was installed"
                )
            # read-only like every blob (a link shares the mode with the other cache's file: editing an
            # installed view in place must not change what transformers loads from there either)
            os.chmod(tmp, 0o444)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return target

    def hub_refs_path(self, repo: str) -> Path:
        """The revisions of a Hugging Face repo last seen online, and their commits (for offline use)."""
        return self.root / "hub" / repo.replace("/", "--") / "refs.json"

    def hub_pointer_path(self, repo: str, commit: str, subfolder: str | None, version: str) -> Path:
        """Where the manifest derived from a Hugging Face repo at `commit` (a subfolder of it, as a version)
        is recorded; the subfolder and version are hashed into the name, so no two keys share a file."""
        key = sha256_bytes(json.dumps([subfolder, version]).encode())[:32]
        return self.root / "hub" / repo.replace("/", "--") / f"{commit}-{key}.json"

    def put_bytes(self, data: bytes, sha256: str, *, durable: bool = True) -> Path:
        """Store a small verified blob (a manifest) atomically and read-only. `durable=False` skips the
        fsync, for what can be derived again (a torn write fails its hash on the next read)."""
        if sha256_bytes(data) != sha256:
            raise IntegrityError(f"blob {sha256}: content does not match its sha256")
        return write_blob(self.blob_path(sha256), data, tmp_dir=self.root / "tmp", fsync=durable)

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        base = self.root / "blobs" / "sha256"
        if not base.exists():
            return
        for shard in sorted(base.iterdir()):
            for blob in sorted(shard.iterdir()):
                if len(blob.name) == 64:
                    yield blob.name, blob

    def quarantine(self, path: Path, what: str, reason: str) -> Path:
        """Move a corrupt file or view aside (same file system: a rename) with a note, never deleting evidence.

        Returns where it now lies; `what` says what it was ("blob <sha>", "view <name> <version>")."""
        folder = self.root / QUARANTINE
        folder.mkdir(parents=True, exist_ok=True)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        box = Path(tempfile.mkdtemp(dir=folder, prefix=f"{when.replace(':', '')}-{path.name[:64]}-"))
        moved = box / path.name
        os.rename(path, moved)
        note = {"what": what, "from": str(path), "path": str(moved), "reason": reason, "when": when}
        atomic_write(box / QUARANTINE_NOTE, json.dumps(note, indent=2) + "\n")
        return moved

    def remove_blob(self, sha256: str) -> None:
        self.blob_path(sha256).unlink(missing_ok=True)

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
