"""Publishing a package into a directory registry (the local registry or any `file://` one).

Order matters for readers that never lock: blobs first, then the manifest blob, then the
index line. A reader sees either nothing or a complete version.

Stale temp files: every writer of `blobs/` and `index/` (publish, yank) holds the registry's
`.publish.lock` while it writes, so any `.tmp-*` file found there while holding that lock belongs to
a writer that is gone (killed mid-copy). `clean_stale_temps` removes those; every publish runs it, and
so will `registry build`. Temps older than STALE_TEMP_SECONDS are removed even without the lock
(a network file system may not honour it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .._fs import TEMP_PREFIX, atomic_write, file_digest, sha256_bytes, write_blob
from ..errors import AdapterError, InvalidPackageError, NotFoundError, storage_error
from ..manifest import canonical_name, dumps_manifest, parse_version
from . import layout
from .client import parse_jsonl

# Fields that may differ between two publishes of the same content.
_VOLATILE = ("created", "tool")
LOCK_FILE = ".publish.lock"
STALE_TEMP_SECONDS = 3600.0  # without the lock: a temp this old has no live writer
_WRITTEN_DIRS = ("blobs", "index", "by-base")  # where publish, yank and `registry build` write through temps


def clean_stale_temps(root: Path, *, locked: bool = False) -> tuple[int, int]:
    """Remove temp files killed writers (publish, yank, `registry build`) left; (files removed, bytes freed).

    `locked`: the caller holds `.publish.lock`, so every temp is stale; otherwise the lock is taken
    (waiting at most a second) and, if it is busy, only temps older than STALE_TEMP_SECONDS go."""
    if not locked:
        lock = FileLock(str(root / LOCK_FILE))
        try:
            lock.acquire(timeout=1)
        except (Timeout, OSError):  # busy, or a registry we cannot lock: the age rule alone
            return _remove_temps(root, time.time() - STALE_TEMP_SECONDS)
        try:
            return _remove_temps(root, None)
        finally:
            lock.release()
    return _remove_temps(root, None)


def _remove_temps(root: Path, older_than: float | None) -> tuple[int, int]:
    """Temps under blobs/, index/ and by-base/ and beside search.jsonl; a temp of config.json only when
    old (publish writes config.json before it takes the lock, so a young one may have a live writer)."""
    stale = time.time() - STALE_TEMP_SECONDS
    candidates: list[tuple[Path, float | None]] = []
    for sub in _WRITTEN_DIRS:
        for dirpath, _, files in os.walk(root / sub):
            candidates += [(Path(dirpath) / n, older_than) for n in files if n.startswith(TEMP_PREFIX)]
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if name.startswith(f"{TEMP_PREFIX}{layout.SEARCH_PATH}."):
                candidates.append((root / name, older_than))
            elif name.startswith(f"{TEMP_PREFIX}{layout.CONFIG_PATH}."):
                candidates.append((root / name, stale if older_than is None else min(older_than, stale)))
    removed = freed = 0
    for path, before in candidates:
        try:
            st = path.stat()
            if before is None or st.st_mtime < before:
                path.unlink()
                removed, freed = removed + 1, freed + st.st_size
        except FileNotFoundError:
            continue
    return removed, freed


def _same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def strip(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k not in _VOLATILE}

    return strip(a) == strip(b)


def jsonl_line(item: dict[str, Any]) -> bytes:
    """One line of an index, reverse-index or search file, as publish appends it (and build rewrites it)."""
    return (json.dumps(item, sort_keys=True, separators=(",", ":")) + "\n").encode()


def base_index_line(entry: dict[str, Any]) -> dict[str, Any]:
    """The reverse-index line of a published version (`entry`: its index line)."""
    return {"name": entry["name"], "version": entry["version"], "type": entry.get("type")}


def search_line(entry: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The search.jsonl line of a published version: the index line's facts and the manifest's words."""
    return {
        "name": entry["name"],
        "version": entry["version"],
        "description": manifest.get("description", "")[:300],
        "tags": manifest.get("tags", []),
        "type": entry["type"],
        "base": entry["base"]["name"],
    }


def _append_line(path: Path, item: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = jsonl_line(item)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_registry(root: Path, name: str | None = None) -> None:
    config = root / layout.CONFIG_PATH
    if not config.exists():
        data = {"protocol": layout.PROTOCOL_VERSION, "blobs": "blobs/"}
        if name:
            data["name"] = name
        try:
            root.mkdir(parents=True, exist_ok=True)
            atomic_write(config, json.dumps(data, indent=2) + "\n", mode=0o644)  # served by any web server
        except OSError as exc:
            mapped = storage_error(exc, root, instead="another registry (--registry)")
            raise mapped or AdapterError(f"cannot create a registry at {root}: {exc.strerror or exc}") from None


def index_entry(manifest: dict[str, Any], manifest_bytes: bytes) -> dict[str, Any]:
    base = manifest["base_model"]
    fp = base.get("fingerprint") or {}
    return {
        "name": canonical_name(manifest["name"]),
        "version": manifest["version"],
        "manifest": {"sha256": sha256_bytes(manifest_bytes), "size": len(manifest_bytes)},
        "type": manifest["adapter"]["type"],
        "base": {"name": base.get("name"), "fingerprint": fp.get("content"), "architecture": fp.get("architecture")},
        "deps": [
            {"name": canonical_name(d["name"]), "specifier": d.get("specifier", "")}
            for d in manifest.get("dependencies", [])
        ],
        "size": sum(f["size"] for f in manifest["files"]),
        "yanked": False,
        "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def publish_directory(root: Path, package_dir: Path, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Publish a validated, completed manifest and its files. Returns (index entry, created).
    A full, read-only or forbidden registry directory is a StorageError naming it."""
    try:
        return _publish_directory(root, package_dir, manifest)
    except OSError as exc:
        mapped = storage_error(exc, root, instead="another registry (--registry)")
        if mapped is None:
            raise
        raise mapped from None


def _publish_directory(root: Path, package_dir: Path, manifest: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    name = canonical_name(manifest["name"])
    version = parse_version(manifest["version"])
    manifest_bytes = dumps_manifest(manifest)
    ensure_registry(root)
    with FileLock(str(root / LOCK_FILE)):
        clean_stale_temps(root, locked=True)
        index_file = root / layout.index_path(name)
        existing = list(parse_jsonl(index_file.read_bytes(), str(index_file))) if index_file.exists() else []
        for item in existing:
            if parse_version(item["version"]) == version:
                old = json.loads(_read_blob(root, item["manifest"]["sha256"]))
                if _same_content(old, manifest):
                    return item, False
                raise InvalidPackageError(
                    f"{name} {version} is already published with different content; publish a new version"
                )
        for f in manifest["files"]:
            source = package_dir / f["path"]
            sha, size = file_digest(source)  # the package may have changed since it was validated
            if (sha, size) != (f["sha256"], f["size"]):
                raise InvalidPackageError(f"{source}: changed while publishing")
            write_blob(root / layout.blob_path(sha), source)
        entry = index_entry(manifest, manifest_bytes)
        write_blob(root / layout.blob_path(entry["manifest"]["sha256"]), manifest_bytes)
        _append_line(index_file, entry)
        if entry["base"]["fingerprint"]:
            _append_line(root / layout.base_index_path(entry["base"]["fingerprint"]), base_index_line(entry))
        _append_line(root / layout.SEARCH_PATH, search_line(entry, manifest))
    return entry, True


def _read_blob(root: Path, sha256: str) -> bytes:
    try:
        return (root / layout.blob_path(sha256)).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"registry {root} is missing blob {sha256}") from None


def set_yanked(root: Path, name: str, version: str, yanked: bool = True) -> None:
    """The one edit the index allows: flip `yanked` on one line (atomic rewrite)."""
    name = canonical_name(name)
    wanted = parse_version(version)
    with FileLock(str(root / LOCK_FILE)):
        index_file = root / layout.index_path(name)
        if not index_file.exists():
            raise NotFoundError(f"{name} is not in registry {root}")
        lines = list(parse_jsonl(index_file.read_bytes(), str(index_file)))
        hits = [item for item in lines if parse_version(item["version"]) == wanted]
        if not hits:
            raise NotFoundError(f"{name} has no version {version} in registry {root}")
        for item in hits:
            item["yanked"] = yanked
        atomic_write(index_file, b"".join(jsonl_line(i) for i in lines), mode=0o644)
