"""`adapters.lock`: exact versions, sources and hashes (schema: registry_schema/lockfile.schema.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypedDict, cast

from .errors import AdapterError, InvalidPackageError, NotFoundError
from .manifest import validate_schema

LOCK_FILE = "adapters.lock"
LOCK_VERSION = 1


class BlobRef(TypedDict):
    sha256: str
    size: int


class LockedFile(TypedDict):
    path: str
    sha256: str
    size: int


class _LockEntryRequired(TypedDict):
    name: str
    version: str
    source: str  # the registry URL, or the file: URL of a local package directory
    manifest: BlobRef
    files: list[LockedFile]


class LockEntry(_LockEntryRequired, total=False):
    """One pinned adapter: exactly what `--frozen` installs."""

    dependencies: list[str]  # optional in the schema; always written
    signer: str  # sha256:<hex> of the key that signed the version (signed versions only)


class LockData(TypedDict):
    """The whole lockfile (schema: registry_schema/lockfile.schema.json)."""

    lock_version: int
    requirements: list[str]
    adapters: list[LockEntry]


def make_lock(requirements: list[str], resolved: list[LockEntry]) -> LockData:
    return {
        "lock_version": LOCK_VERSION,
        "requirements": list(requirements),
        "adapters": sorted(resolved, key=lambda a: a["name"]),
    }


def lock_entry(
    name: str,
    version: str,
    source: str,
    manifest_sha256: str,
    manifest_size: int,
    manifest: dict[str, Any],
    signer: str | None = None,
) -> LockEntry:
    entry: LockEntry = {
        "name": name,
        "version": version,
        "source": source,
        "manifest": {"sha256": manifest_sha256, "size": manifest_size},
        "files": [{"path": f["path"], "sha256": f["sha256"], "size": f["size"]} for f in manifest["files"]],
        "dependencies": sorted(d["name"] for d in manifest.get("dependencies", [])),
    }
    if signer is not None:
        entry["signer"] = signer
    return entry


def read_lock(path: str | os.PathLike[str]) -> LockData:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no lockfile at {path} (run `adapters lock REF...` first)") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidPackageError(f"{path}: not valid JSON") from None
    validate_schema(data, "lockfile", str(path))
    return cast(LockData, data)


def write_lock(path: str | os.PathLike[str], data: LockData) -> Path:
    from ._fs import atomic_write

    try:
        return atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise AdapterError(f"cannot write the lockfile {path}: {exc.strerror or exc}") from None


def same_resolution(a: LockData, b: LockData) -> bool:
    """Two locks pin the same versions, sources and manifest hashes."""

    def key(lock: LockData) -> list[tuple[str, str, str, str]]:
        return sorted((x["name"], x["version"], x["source"], x["manifest"]["sha256"]) for x in lock["adapters"])

    return key(a) == key(b) and sorted(a["requirements"]) == sorted(b["requirements"])
