"""`adapters lock`, `install --locked` (resolve again, refuse a different result) and `install --frozen`
(install exactly the lockfile, without consulting any index)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import lockfile
from ..errors import IntegrityError, LockMismatchError, UsageError
from ..lockfile import LockData, LockEntry
from ..registry.transport import local_package_dir
from .install import check_signature, install_resolved
from .resolution import manifest_bytes, resolve, resolve_local, resolved_entry
from .results import Installed, Locked, Resolved
from .session import Session

PathLike = str | os.PathLike[str]


def lock_data(refs: Sequence[str], items: Sequence[Resolved], signers: Mapping[str, str] | None = None) -> LockData:
    """The lockfile content for `refs` resolved to `items` (`signers`: name -> signing key fingerprint)."""
    signers = signers or {}
    return lockfile.make_lock(
        list(refs),
        [
            lockfile.lock_entry(
                i.name, i.version, i.source, i.manifest_sha256, len(i.manifest_bytes), i.manifest, signers.get(i.name)
            )
            for i in items
        ],
    )


def signers_of(session: Session, items: Sequence[Resolved]) -> dict[str, str]:
    """Who signed each signed item (model.sig fetched and checked by the trust policy, as install will)."""
    signers = {}
    for item in items:
        info = check_signature(session, item)
        if info is not None and info.signer.startswith("sha256:") and len(info.signer) == 71:
            signers[item.name] = info.signer
    return signers


def _check_locked_signer(session: Session, pinned: LockEntry, item: Resolved) -> None:
    """A pinned version whose content changed: when the lock records its signer, say whether the signer
    changed too (IntegrityError naming both), the likelier news for whoever reads the message."""
    if "signer" in pinned:
        check_signature(session, item, pinned["signer"])


def _locked_signers(data: LockData) -> dict[str, str]:
    return {a["name"]: a["signer"] for a in data["adapters"] if "signer" in a}


def lock(session: Session, refs: Sequence[str], path: PathLike | None = None, pre: bool = False) -> Locked:
    """Resolve `refs` and write the lockfile; without refs, re-lock the requirements it records."""
    if not refs:
        refs = list(lockfile.read_lock(path or lockfile.LOCK_FILE)["requirements"])
        if not refs:
            raise UsageError("the lockfile records no requirements: give adapter references")
    items = resolve(session, refs, pre=pre)
    data = lock_data(refs, items, signers_of(session, items))
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
    return install_resolved(session, items, signers=_locked_signers(current))


def install_frozen(session: Session, path: PathLike | None = None) -> list[Installed]:
    """`--frozen`: install exactly the lockfile, without consulting any index; every file the lock
    lists must be the manifest's (path, size, sha256) before anything is downloaded."""
    current = lockfile.read_lock(path or lockfile.LOCK_FILE)
    items = [resolve_pinned(session, pinned) for pinned in current["adapters"]]
    for pinned, item in zip(current["adapters"], items, strict=True):
        check_locked_files(pinned, item)
    return install_resolved(session, items, signers=_locked_signers(current))


def check_locked_files(pinned: LockEntry, item: Resolved) -> None:
    """The lock's file list equals the manifest's; IntegrityError (exit 4) naming the first file that differs."""
    where = f"{pinned['name']} {pinned['version']}"
    locked = {f["path"]: (f["size"], f["sha256"]) for f in pinned["files"]}
    listed = {f["path"]: (f["size"], f["sha256"]) for f in item.manifest["files"]}
    for file_path in sorted(locked.keys() | listed.keys()):
        if file_path not in listed:
            raise IntegrityError(f"{where}: the lockfile lists {file_path}, which the manifest does not")
        if file_path not in locked:
            raise IntegrityError(f"{where}: the manifest lists {file_path}, which the lockfile does not")
        if locked[file_path] != listed[file_path]:
            (size, sha), (want_size, want_sha) = locked[file_path], listed[file_path]
            raise IntegrityError(
                f"{where}: {file_path} is locked as sha256 {sha[:12]}… ({size} bytes) but the manifest has "
                f"{want_sha[:12]}… ({want_size} bytes); run `adapters lock` again if the change is intended"
            )


def resolve_record(session: Session, record: dict[str, Any]) -> Resolved:
    """What an install record names (`verify --repair`): its source and manifest sha256, re-resolved."""
    name, version, source, sha = (str(record.get(k, "")) for k in ("name", "version", "source", "manifest_sha256"))
    if (
        local_package_dir(source) is not None
        or source.startswith("hf://")
        or "#sha256=" in source
        or "@sha256:" in source
    ):
        return resolve_pinned(session, _pin(name, version, source, sha, 0))
    client = session.client_for_url(source)
    raw = manifest_bytes(session, client.pinned(name, version, {"sha256": sha, "size": 0}))
    return resolved_entry(session, client.pinned(name, version, {"sha256": sha, "size": len(raw)}))


def _pin(name: str, version: str, source: str, sha: str, size: int) -> LockEntry:
    return {"name": name, "version": version, "source": source, "manifest": {"sha256": sha, "size": size}, "files": []}


def resolve_pinned(session: Session, pinned: LockEntry) -> Resolved:
    """One lockfile entry: a local package directory (re-hashed) or a registry entry built from the pin."""
    source, sha = pinned["source"], pinned["manifest"]["sha256"]
    from .adapterhub_source import archive_pin_of_source, resolve_archive_pin
    from .hub_source import hub_ref_of_source, resolve_hub
    from .oci_source import pinned_ref as oci_pinned_ref
    from .oci_source import resolve_oci

    hub_ref = hub_ref_of_source(source)
    archived = archive_pin_of_source(source)
    oci_ref = oci_pinned_ref(source)
    if hub_ref is not None or archived is not None or oci_ref is not None:  # the pin must give the locked manifest
        if hub_ref is not None:
            item = resolve_hub(session, hub_ref, version=pinned["version"])
        elif oci_ref is not None:
            item = resolve_oci(session, oci_ref, version=pinned["version"])
        else:
            assert archived is not None
            item = resolve_archive_pin(session, archived[0], archived[1], pinned["name"], pinned["version"])
        if item.manifest_sha256 != sha:
            _check_locked_signer(session, pinned, item)
            raise IntegrityError(f"{pinned['name']} {pinned['version']}: {source} no longer matches the lockfile")
        return item
    local = local_package_dir(source)
    if local is not None:
        item = resolve_local(session, local)
        if item.manifest_sha256 != sha:
            _check_locked_signer(session, pinned, item)
            raise IntegrityError(f"{pinned['name']} {pinned['version']}: {local} no longer matches the lockfile")
        return item
    entry = session.client_for_url(source).pinned(pinned["name"], pinned["version"], dict(pinned["manifest"]))
    return resolved_entry(session, entry)
