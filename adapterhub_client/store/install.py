"""Installed views: `installed/<org>/<name>/<version>/` = manifest.json + the files, hard-linked
from verified blobs. A view is built in `tmp/` and renamed into place, so it is either
complete or absent."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from ..manifest import MANIFEST_FILE, canonical_name, check_relative_path
from .cache import Cache, sha256_file

RECORD_FILE = ".install.json"


def view_dir(cache: Cache, name: str, version: str) -> Path:
    org, base = canonical_name(name).split("/")
    return cache.root / "installed" / org / base / version


def is_installed(cache: Cache, name: str, version: str) -> bool:
    return (view_dir(cache, name, version) / RECORD_FILE).is_file()


def _link_or_copy(blob: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(blob, target)
    except OSError:  # another filesystem, or no hard links: copy (still read-only)
        shutil.copyfile(blob, target)
        os.chmod(target, 0o444)


def make_view(cache: Cache, manifest: dict[str, Any], manifest_bytes: bytes, source: str,
              manifest_sha256: str) -> Path:
    name, version = canonical_name(manifest["name"]), manifest["version"]
    final = view_dir(cache, name, version)
    if (final / RECORD_FILE).is_file():
        return final
    with cache.lock(f"install-{name.replace('/', '--')}-{version}"):
        if (final / RECORD_FILE).is_file():
            return final
        if final.exists():  # a view without its record: an older, broken install; repair
            remove_tree(final)
        tmp = cache.tmp_dir("view-")
        try:
            for f in manifest["files"]:
                check_relative_path(f["path"], f"manifest of {name} {version}")
                _link_or_copy(cache.blob_path(f["sha256"]), tmp / f["path"])
            (tmp / MANIFEST_FILE).write_bytes(manifest_bytes)
            record = {
                "name": name,
                "version": version,
                "source": source,
                "manifest_sha256": manifest_sha256,
                "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
    return final


def remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for dirpath, _, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(path, ignore_errors=True)


def uninstall(cache: Cache, name: str, version: str) -> None:
    final = view_dir(cache, name, version)
    graveyard = cache.tmp_dir("remove-")
    os.rename(final, graveyard / "view")  # disappears atomically, then is deleted
    remove_tree(graveyard)


def iter_installed(cache: Cache) -> Iterator[tuple[dict[str, Any], Path]]:
    base = cache.root / "installed"
    if not base.is_dir():
        return
    for record_file in sorted(base.glob(f"*/*/*/{RECORD_FILE}")):
        try:
            record = json.loads(record_file.read_text())
        except (OSError, ValueError):
            continue
        yield record, record_file.parent


def read_view_manifest(view: Path) -> dict[str, Any]:
    return json.loads((view / MANIFEST_FILE).read_bytes())


def verify_view(cache: Cache, view: Path) -> list[str]:
    """Re-hash every file of an installed view; return the problems found."""
    problems: list[str] = []
    try:
        manifest = read_view_manifest(view)
    except (OSError, ValueError) as exc:
        return [f"{view}: unreadable manifest ({exc})"]
    for f in manifest.get("files", []):
        target = view / f["path"]
        if not target.is_file():
            problems.append(f"{target}: missing")
            continue
        if target.stat().st_size != f["size"] or sha256_file(target) != f["sha256"]:
            problems.append(f"{target}: content does not match sha256 {f['sha256'][:12]}…")
    return problems
