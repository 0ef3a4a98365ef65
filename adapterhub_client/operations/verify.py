"""`adapters verify [--repair]`: re-hash every installed file and every cached blob against its digest.

What fails is never trusted again nor silently deleted: a corrupt blob is moved into the cache's
quarantine (with a note), and each view that failed is marked broken, so the next `install` fetches
the blob again and rebuilds the view. `--repair` does that rebuild at once for every broken view."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._fs import file_digest
from ..errors import AdapterError, IntegrityError
from ..store import install as views
from ..store.cache import Cache
from .results import SignatureReport, VerifyReport
from .session import Session

if TYPE_CHECKING:
    from ..signing import SignatureInfo
    from ..signing.policy import TrustPolicy


def _quarantine(cache: Cache, path: Path, what: str, reason: str, report: list[str], problems: list[str]) -> None:
    """Move `path` aside; a cache we may not write (another user's) keeps it, and says so."""
    try:
        report.append(str(cache.quarantine(path, what, reason)))
    except OSError as exc:
        problems.append(f"{path}: could not be moved into quarantine ({exc.strerror or exc})")


def verify(cache: Cache, trust: TrustPolicy | None = None) -> VerifyReport:
    """Problems with any installed view or cached blob (the CLI exits 4 on any), quarantining what is
    corrupt, and leftovers of interrupted installs. With `trust` (`--signatures`), every view's signature
    is checked by that policy too (a failure is a problem; the view is not marked broken: its bytes are
    what was installed, and a rebuild would give the same)."""
    checked = 0
    problems: list[str] = []
    broken: list[str] = []
    quarantined: list[str] = []
    signatures: list[tuple[str, str, SignatureInfo | None]] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of blobs already hashed through a view
    for record, path in views.iter_installed(cache):
        checked += 1
        found, bad = views.check_view(path, record)
        problems.extend(found)
        if trust is not None:
            problems.extend(_check_view_signature(trust, record, path, signatures))
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
    checked_signatures = signatures if trust is not None else None
    return VerifyReport(
        checked, problems, leftovers, quarantined=quarantined, broken=broken, signatures=checked_signatures
    )


def _check_view_signature(
    trust: TrustPolicy, record: dict[str, object], view: Path, out: list[tuple[str, str, SignatureInfo | None]]
) -> list[str]:
    from ..signing import SIGNATURE_FILE, signature_entry

    label = (str(record.get("name")), str(record.get("version")))
    try:
        manifest = views.read_view_manifest(view)
        signed = signature_entry(manifest) is not None
        read = lambda: (view / SIGNATURE_FILE).read_bytes() if signed else None
        info = trust.check(manifest, read, str(record.get("source") or ""))
    except (IntegrityError, OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{view}: {exc}"]
    out.append((*label, info))
    return []


def verify_signature_of(session: Session, ref: str, keys: Sequence[str] = ()) -> SignatureReport:
    """`adapters verify --signatures REF`: one version's signature checked without installing it (only its
    manifest and model.sig are read: an OCI version's signature artifact, a registry's blob, a package
    directory's file), by the trust policy or, given `keys` (PEM public keys or CA certificates), by those."""
    from ..config import TrustRule
    from ..manifest import MANIFEST_FILE
    from ..signing.policy import TrustPolicy
    from .install import check_signature
    from .resolution import resolve, root_index

    items = resolve(session, [ref])
    item = items[root_index(items, ref)]
    manifest_file = None
    if item.local_dir is not None:  # a directory another tool signed as it is: its manifest.json, as on disk
        from .publish import adopt_signature

        item.manifest = adopt_signature(item.local_dir, item.manifest)
        if (item.local_dir / MANIFEST_FILE).is_file():
            manifest_file = file_digest(item.local_dir / MANIFEST_FILE)[0]
    policy = session.trust
    if keys:
        policy = TrustPolicy([TrustRule("*", None, True, tuple(keys), "--key")])
    attached: list[bytes] = []
    if item.oci is not None:  # the signature artifacts on its manifest: no blob of the package is read
        from .oci_source import attached_signatures

        attached = attached_signatures(session, item)
    if not attached:
        info = check_signature(session, item, policy=policy, manifest_file_sha256=manifest_file)
    else:
        info = _first_passing(policy, item.manifest, attached)
    return SignatureReport(item.name, item.version, item.source, info)


def _first_passing(policy: TrustPolicy, manifest: dict[str, Any], bundles: list[bytes]) -> SignatureInfo | None:
    """A version with several signatures attached (re-signed, or by several keys) passes when one does."""
    failure: IntegrityError | None = None
    for bundle in bundles:
        try:
            return policy.check(manifest, functools.partial(bytes, bundle))
        except IntegrityError as exc:
            failure = failure or exc
    assert failure is not None
    raise failure


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
