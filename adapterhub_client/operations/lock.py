"""`adapters lock`, `install --locked` (resolve again, refuse a different result) and `install --frozen`
(install exactly the lockfile, without consulting any index)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .. import lockfile
from ..errors import IntegrityError, LockMismatchError
from ..lockfile import LockData, LockEntry
from ..registry.transport import local_package_dir
from .install import install_resolved
from .resolution import resolve, resolve_local, resolved_entry
from .results import Installed, Locked, Resolved
from .session import Session

PathLike = str | os.PathLike[str]


def lock_data(refs: Sequence[str], items: Sequence[Resolved]) -> LockData:
    """The lockfile content for `refs` resolved to `items`."""
    return lockfile.make_lock(
        list(refs),
        [
            lockfile.lock_entry(i.name, i.version, i.source, i.manifest_sha256, len(i.manifest_bytes), i.manifest)
            for i in items
        ],
    )


def lock(session: Session, refs: Sequence[str], path: PathLike | None = None, pre: bool = False) -> Locked:
    data = lock_data(refs, resolve(session, refs, pre=pre))
    written = lockfile.write_lock(path or lockfile.LOCK_FILE, data)
    return Locked(Path(written), data)


def install_locked(
    session: Session, path: PathLike | None = None, refs: Sequence[str] | None = None, pre: bool = False
) -> list[Installed]:
    """`--locked`: resolve again and refuse if the result differs from the lockfile."""
    lock_path = path or lockfile.LOCK_FILE
    current = lockfile.read_lock(lock_path)
    wanted = list(refs) if refs else list(current["requirements"])
    items = resolve(session, wanted, pre=pre)
    if not lockfile.same_resolution(current, lock_data(wanted, items)):
        raise LockMismatchError(f"{lock_path} is out of date with a fresh resolution; run `adapters lock` to update it")
    return install_resolved(session, items)


def install_frozen(session: Session, path: PathLike | None = None) -> list[Installed]:
    """`--frozen`: install exactly the lockfile, without consulting any index."""
    current = lockfile.read_lock(path or lockfile.LOCK_FILE)
    return install_resolved(session, [resolve_pinned(session, pinned) for pinned in current["adapters"]])


def resolve_pinned(session: Session, pinned: LockEntry) -> Resolved:
    """One lockfile entry: a local package directory (re-hashed) or a registry entry built from the pin."""
    source, sha = pinned["source"], pinned["manifest"]["sha256"]
    local = local_package_dir(source)
    if local is not None:
        item = resolve_local(session, local)
        if item.manifest_sha256 != sha:
            raise IntegrityError(f"{pinned['name']} {pinned['version']}: {local} no longer matches the lockfile")
        return item
    entry = session.client_for_url(source).pinned(pinned["name"], pinned["version"], dict(pinned["manifest"]))
    return resolved_entry(session, entry)
