"""`adapters verify [--repair]`: re-hash every installed file and every cached blob against its digest.

What fails is never trusted again nor silently deleted: a corrupt blob is moved into the cache's
quarantine (with a note), and each view that failed is marked broken, so the next `install` fetches
the blob again and rebuilds the view. `--repair` does that rebuild at once for every broken view."""

from __future__ import annotations

import os
from pathlib import Path

from .._fs import file_digest
from ..errors import AdapterError
from ..store import install as views
from ..store.cache import Cache
from .results import VerifyReport
from .session import Session


def _quarantine(cache: Cache, path: Path, what: str, reason: str, report: list[str], problems: list[str]) -> None:
    """Move `path` aside; a cache we may not write (another user's) keeps it, and says so."""
    try:
        report.append(str(cache.quarantine(path, what, reason)))
    except OSError as exc:
        problems.append(f"{path}: could not be moved into quarantine ({exc.strerror or exc})")


def verify(cache: Cache) -> VerifyReport:
    """Problems with any installed view or cached blob (the CLI exits 4 on any), quarantining what is
    corrupt, and leftovers of interrupted installs."""
    checked = 0
    problems: list[str] = []
    broken: list[str] = []
    quarantined: list[str] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of blobs already hashed through a view
    for record, path in views.iter_installed(cache):
        checked += 1
        found, bad = views.check_view(path, record)
        problems.extend(found)
        for target, f in bad:
            blob = cache.blob_path(f["sha256"])
            if blob.is_file() and os.path.samefile(blob, target):  # the view's link: the blob itself is bad
                _quarantine(cache, blob, f"blob {f['sha256']}", f"content of {target} changed", quarantined, problems)
        for f in views.read_view_manifest(path).get("files", []) if not found else []:
            stat = (path / f["path"]).stat()
            seen.add((stat.st_dev, stat.st_ino))
        if found:
            broken.append(f"{record.get('name')} {record.get('version')}")
            if not record.get(views.BROKEN):
                try:
                    views.mark_broken(path, record, found)
                except OSError as exc:
                    problems.append(f"{path}: could not be marked broken ({exc.strerror or exc})")
    for sha, blob in list(cache.iter_blobs()):
        try:
            stat = blob.stat()
            if (stat.st_dev, stat.st_ino) in seen:
                continue
            digest, _ = file_digest(blob)
        except FileNotFoundError:  # pruned meanwhile
            continue
        if digest != sha:
            problems.append(f"{blob}: cached blob does not match its sha256")
            _quarantine(cache, blob, f"blob {sha}", f"content hashes to {digest}", quarantined, problems)
    tmp = cache.root / "tmp"
    leftovers = sorted(p.name for p in tmp.glob("view-*")) if tmp.exists() else []
    return VerifyReport(checked, problems, leftovers, quarantined=quarantined, broken=broken)


def repair(session: Session) -> VerifyReport:
    """`verify --repair`: verify (quarantining), then fetch again and rebuild every broken view; ok when
    every one was rebuilt and a second verify finds nothing."""
    from .install import install_resolved
    from .lock import resolve_record

    first = verify(session.cache)
    repaired: list[str] = []
    unrepaired: list[str] = []
    failed: list[str] = []
    for record, path in list(views.iter_installed(session.cache)):
        if not record.get(views.BROKEN):
            continue
        label = f"{record.get('name')} {record.get('version')}"
        try:
            install_resolved(session, [resolve_record(session, record)], reinstall=True)
            repaired.append(label)
        except AdapterError as exc:
            unrepaired.append(f"could not repair {label}: {exc}")
            failed += [f"{path}{os.sep}", f"{path}:"]
    after = verify(session.cache)
    # a view that could not be rebuilt is reported once, by its failure, not again file by file
    unrepaired.extend(p for p in after.problems if not p.startswith(tuple(failed)))
    return VerifyReport(
        first.checked,
        first.problems,
        after.incomplete_views,
        quarantined=first.quarantined + after.quarantined,
        broken=first.broken,
        repaired=repaired,
        unrepaired=unrepaired,
        repair=True,
    )


def prune(cache: Cache, grace_seconds: float = 600.0) -> tuple[int, int]:
    """`adapters cache prune`: blobs no installed view uses, stale partials and leftovers; the
    quarantine stays (it is evidence). Returns (entries removed, bytes freed)."""
    return views.prune(cache, grace_seconds)
