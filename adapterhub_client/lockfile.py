"""`adapters.lock`: exact versions, sources and hashes (schema: registry_schema/lockfile.schema.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import AdapterError, InvalidPackageError, NotFoundError
from .manifest import validate_schema

LOCK_FILE = "adapters.lock"
LOCK_VERSION = 1


def make_lock(requirements: list[str], resolved: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lock_version": LOCK_VERSION,
        "requirements": list(requirements),
        "adapters": sorted(resolved, key=lambda a: a["name"]),
    }


def lock_entry(name: str, version: str, source: str, manifest_sha256: str, manifest_size: int,
               manifest: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "source": source,
        "manifest": {"sha256": manifest_sha256, "size": manifest_size},
        "files": [{"path": f["path"], "sha256": f["sha256"], "size": f["size"]} for f in manifest["files"]],
        "dependencies": sorted(d["name"] for d in manifest.get("dependencies", [])),
    }


def read_lock(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no lockfile at {path} (run `adapters lock REF...` first)") from None
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidPackageError(f"{path}: not valid JSON") from None
    validate_schema(data, "lockfile", str(path))
    return data


def write_lock(path: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    from ._fs import atomic_write

    try:
        return atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise AdapterError(f"cannot write the lockfile {path}: {exc.strerror or exc}") from None


def same_resolution(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two locks pin the same versions, sources and manifest hashes."""
    key = lambda lock: sorted((x["name"], x["version"], x["source"], x["manifest"]["sha256"]) for x in lock["adapters"])  # noqa: E731
    return key(a) == key(b) and sorted(a["requirements"]) == sorted(b["requirements"])
