"""The fingerprint cache: per-file results in one JSON file, so a repeated check reads only headers.

Owns FINGERPRINT.md § Cache: the file format, validity by file identity (`scan.file_identity`), the
LRU bound and the merge-on-write. Where the file lives is the caller's choice (`cache_dir`): this
package reads no settings.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict, TypeGuard

from ..._fs import atomic_write

CACHE_FILE = "fingerprints.json"
CACHE_VERSION = 1
CACHE_MAX_ENTRIES = 1024


class CacheEntry(TypedDict):
    """What one weight file contributed: tensor digests per algorithm, its sha256 once computed."""

    id: list[int]  # scan.file_identity() when the entry was made
    digests: dict[str, dict[str, str]]  # algorithm -> tensor name -> digest
    sha256: str | None
    used: NotRequired[int]  # unix time of the last put, for the LRU bound


def empty_entry(identity: list[int]) -> CacheEntry:
    """A fresh entry for a file nothing is known about yet."""
    return {"id": identity, "digests": {}, "sha256": None}


def _valid(entry: object, identity: list[int]) -> TypeGuard[CacheEntry]:
    """Whether a stored entry is for this very file and well-formed (the file is shared: trust nothing)."""
    return (
        isinstance(entry, dict)
        and entry.get("id") == identity
        and isinstance(entry.get("digests"), dict)
        and all(isinstance(v, dict) for v in entry["digests"].values())
        and isinstance(entry.get("sha256"), (str, type(None)))
    )


def _last_used(entry: Any) -> int:
    """An entry's `used` time; 0 (forgotten first) for one written by something else."""
    used = entry.get("used", 0) if isinstance(entry, dict) else 0
    return used if isinstance(used, int) else 0


class FingerprintCache:
    """Per-file results keyed by real path and identity (size, mtime_ns, ctime_ns, inode, device).

    One small JSON file, `<cache_dir>/fingerprints.json`; written with `_fs.atomic_write`, merged with
    what is on disk at write time, so concurrent writers can lose an entry but never corrupt the file."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.path = Path(cache_dir) / CACHE_FILE
        self._entries = self._load()
        self._dirty: dict[str, CacheEntry] = {}

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        entries = data.get("files")
        return entries if isinstance(entries, dict) else {}

    def get(self, real_path: str, identity: list[int]) -> CacheEntry:
        """The stored entry while the file is unchanged, else a fresh one to fill."""
        entry = self._entries.get(real_path)
        if _valid(entry, identity):
            return entry
        return empty_entry(identity)

    def put(self, real_path: str, entry: CacheEntry) -> None:
        entry["used"] = int(time.time())
        self._entries[real_path] = entry
        self._dirty[real_path] = entry

    def flush(self) -> None:
        """Write what put() added, if anything; a read-only cache only costs speed, so OSError is ignored."""
        if not self._dirty:
            return
        merged = self._load()
        merged.update(self._dirty)
        if len(merged) > CACHE_MAX_ENTRIES:  # forget the least recently used
            keep = sorted(merged, key=lambda k: _last_used(merged[k]), reverse=True)[:CACHE_MAX_ENTRIES]
            merged = {k: merged[k] for k in keep}
        try:
            atomic_write(self.path, json.dumps({"version": CACHE_VERSION, "files": merged}, separators=(",", ":")))
        except OSError:
            return
        self._entries = merged
        self._dirty = {}
