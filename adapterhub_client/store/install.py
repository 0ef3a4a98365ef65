"""Installed views: `installed/<org>/<name>/<version>/` = manifest.json + the files, hard-linked
from verified blobs. A view is built in `tmp/` and renamed into place, so it is either
complete or absent. A view `verify` found corrupt keeps its place but is marked broken in its
install record: no install treats it as installed, and the rebuild moves it into quarantine.

`ADAPTERS_TEST_PAUSE_AT=<point>` stops the process (SIGSTOP) at a named point, so that kill tests
can SIGKILL it exactly there: `view-rename` (the view is built in tmp/, nothing renamed yet) and
`view-swapped` (an older view was moved aside, the new one is not yet in place)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._fs import atomic_write, sha256_file
from ..errors import AdapterError, InvalidPackageError, NotFoundError
from ..manifest import MANIFEST_FILE, canonical_name, check_relative_path
from .cache import RECORD_FILE, Cache

BROKEN = "broken"  # key of an install record: set by `verify` on a view that failed its re-hash
PAUSE_ENV = "ADAPTERS_TEST_PAUSE_AT"


class BlobMissingError(NotFoundError):
    """A blob disappeared between download and linking (a concurrent `cache prune`); install fetches
    it once more, and says so if it vanishes again."""

    def __init__(self, sha256: str) -> None:
        super().__init__(
            f"blob {sha256} left the cache while it was being installed (a concurrent "
            "`adapters cache prune`?); run the install again"
        )
        self.sha256 = sha256


def pause_point(name: str) -> None:
    """A kill test's hook: stop this process here when ADAPTERS_TEST_PAUSE_AT names this point."""
    if os.environ.get(PAUSE_ENV) == name:
        os.kill(os.getpid(), signal.SIGSTOP)


def view_dir(cache: Cache, name: str, version: str) -> Path:
    org, base = canonical_name(name).split("/")
    return cache.root / "installed" / org / base / version


def read_record(cache: Cache, name: str, version: str) -> dict[str, Any] | None:
    try:
        return json.loads((view_dir(cache, name, version) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None


def is_installed(cache: Cache, name: str, version: str, manifest_sha256: str | None = None) -> bool:
    """A complete, sound view exists (and, given `manifest_sha256`, it holds exactly that manifest)."""
    record = read_record(cache, name, version)
    if record is None or record.get(BROKEN):
        return False
    return manifest_sha256 is None or record.get("manifest_sha256") == manifest_sha256


def mark_broken(view: Path, record: dict[str, Any], problems: list[str]) -> None:
    """Record in the view's install record that it failed verification, so the next install rebuilds it."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    marked = {**record, BROKEN: {"since": when, "problems": problems}}
    atomic_write(view / RECORD_FILE, json.dumps(marked, indent=2) + "\n")


def _link_or_copy(blob: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(blob, target)
    except FileExistsError:
        raise InvalidPackageError(f"{target.name}: listed twice in the package") from None
    except OSError:  # another filesystem, or no hard links: copy (still read-only)
        shutil.copyfile(blob, target)
        os.chmod(target, 0o444)


def make_view(
    cache: Cache,
    manifest: dict[str, Any],
    manifest_bytes: bytes,
    source: str,
    manifest_sha256: str,
    force: bool = False,
) -> Path:
    """Build the view aside and rename it into place; a view of other content (or any, with `force`) is
    replaced, and a view marked broken goes into quarantine rather than away."""
    name, version = canonical_name(manifest["name"]), manifest["version"]
    final = view_dir(cache, name, version)
    if not force and is_installed(cache, name, version, manifest_sha256):
        return final
    with cache.lock(f"install-{name.replace('/', '--')}-{version}"):
        if not force and is_installed(cache, name, version, manifest_sha256):
            return final
        tmp = cache.tmp_dir("view-")
        try:
            # our own files first, exclusively: a listed file can never land on (and write through) them
            with open(tmp / MANIFEST_FILE, "xb") as fh:
                fh.write(manifest_bytes)
            record = {
                "name": name,
                "version": version,
                "source": source,
                "manifest_sha256": manifest_sha256,
                "installed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            with open(tmp / RECORD_FILE, "x") as fh:
                fh.write(json.dumps(record, indent=2) + "\n")
            for f in manifest["files"]:
                check_relative_path(f["path"], f"manifest of {name} {version}")
                if not cache.touch(f["sha256"]):  # pruned since it was fetched
                    raise BlobMissingError(f["sha256"])
                _link_or_copy(cache.blob_path(f["sha256"]), tmp / f["path"])
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700; a view is as readable as any file
            pause_point("view-rename")
            if final.exists():  # another content for this version, or a broken older view: swap it out
                old = read_record(cache, name, version)
                if old is not None and old.get(BROKEN):
                    cache.quarantine(final, f"view {name} {version}", "replaced after it failed verification")
                    pause_point("view-swapped")
                else:
                    graveyard = cache.tmp_dir("replaced-")
                    os.rename(final, graveyard / "view")
                    pause_point("view-swapped")
                    remove_tree(graveyard)
            os.rename(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
    return final


def _umask() -> int:
    """The process umask (read by setting and restoring it: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
    """(install record, view directory) of every complete installed view."""
    return cache.iter_installed()


def read_view_manifest(view: Path) -> dict[str, Any]:
    return json.loads((view / MANIFEST_FILE).read_bytes())


def verify_view(cache: Cache, view: Path, record: dict[str, Any]) -> list[str]:
    """Re-hash an installed view: its manifest against the install record, every listed file
    against the manifest, and nothing else present."""
    return check_view(view, record)[0]


def check_view(view: Path, record: dict[str, Any]) -> tuple[list[str], list[tuple[Path, dict[str, Any]]]]:
    """(problems, listed files whose content is wrong) of one view; the second tells `verify` which
    blobs may be corrupt too (a view file is a hard link to its blob)."""
    manifest_file = view / MANIFEST_FILE
    try:
        if sha256_file(manifest_file) != record.get("manifest_sha256"):
            return [f"{manifest_file}: does not match the installed manifest sha256"], []
        manifest = read_view_manifest(view)
    except (OSError, ValueError) as exc:
        return [f"{view}: unreadable manifest ({exc})"], []
    problems: list[str] = []
    bad: list[tuple[Path, dict[str, Any]]] = []
    listed = {MANIFEST_FILE, RECORD_FILE}
    for f in manifest.get("files", []):
        target = view / f["path"]
        listed.add(f["path"])
        if not target.is_file():
            problems.append(f"{target}: missing")
        elif target.stat().st_size != f["size"] or sha256_file(target) != f["sha256"]:
            problems.append(f"{target}: content does not match sha256 {f['sha256']}")
            bad.append((target, f))
    present = (str(p.relative_to(view)) for p in view.rglob("*") if p.is_file())
    extra = sorted(rel for rel in present if rel not in listed)
    problems.extend(f"{view / e}: not part of the package" for e in extra)
    if not problems and record.get(BROKEN):
        problems.append(f"{view}: marked broken by an earlier verify (run `adapters verify --repair`)")
    return problems, bad


def prune(cache: Cache, grace_seconds: float = 600.0) -> tuple[int, int]:
    """Remove blobs no installed view uses, stale partial downloads and leftovers; (removed, freed).

    Entries used within `grace_seconds` stay: a concurrent install touches the blobs it is about to
    link and may be building a view in tmp/. Partial downloads are removed under their blob lock."""
    keep: set[str] = set()
    for record, path in iter_installed(cache):
        keep.add(record.get("manifest_sha256", ""))
        try:
            keep.update(f["sha256"] for f in read_view_manifest(path).get("files", []))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            # its blobs would look unused: stop rather than delete what a repair needs
            raise AdapterError(f"{path}: unreadable installed manifest; run `adapters verify` and reinstall") from None
    cutoff = time.time() - grace_seconds
    removed = freed = 0

    def age_ok(p: Path) -> int | None:
        try:
            stat = p.stat()
        except FileNotFoundError:  # removed or committed meanwhile by another process
            return None
        return stat.st_size if stat.st_mtime < cutoff else None

    for sha, blob in list(cache.iter_blobs()):
        size = age_ok(blob)
        if sha not in keep and size is not None:
            cache.remove_blob(sha)
            removed, freed = removed + 1, freed + size
    for sub in ("partial", "tmp"):
        folder = cache.root / sub
        for leftover in list(folder.iterdir()) if folder.is_dir() else []:
            if age_ok(leftover) is None:
                continue
            with cache.lock(leftover.name.split(".")[0]) if sub == "partial" else contextlib.nullcontext():
                freed += (age_ok(leftover) or 0) if leftover.is_file() else 0
                remove_tree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)
                removed += 1
    return removed, freed
