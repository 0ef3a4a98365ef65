"""References -> pinned versions with verified manifests: the step every workflow starts with.

A manifest is fetched (or read from the cache), checked against the sha256 the index lists and
validated before any other file of its package is touched."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._fs import sha256_bytes
from ..errors import IntegrityError, InvalidPackageError, OfflineMissError
from ..manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, canonical_name, dumps_manifest
from ..refs import AdapterHubRef, HubRef, LocalRef, OciRef, Ref, Requirement, parse_ref
from ..registry.client import IndexEntry
from ..resolve import Resolver, dependency_requirement
from .results import Resolved
from .session import Session

ManifestCheck = Callable[[dict[str, Any]], None]
RefLike = str | Requirement | LocalRef | HubRef | OciRef


def parse(ref: RefLike) -> Ref:
    """A reference as typed, or already parsed."""
    return parse_ref(ref) if isinstance(ref, str) else ref


def resolve(
    session: Session, refs: Sequence[RefLike], pre: bool = False, check: ManifestCheck | None = None
) -> list[Resolved]:
    """Pin every reference and its dependencies; fetch and verify their manifests.

    `check` runs on each manifest right after it is fetched, before any other file."""
    requirements: list[Requirement] = []
    resolved: list[Resolved] = []
    for ref in refs:
        parsed = parse(ref)
        if isinstance(parsed, LocalRef):
            resolved.append(resolve_local(session, parsed.path))
        elif isinstance(parsed, HubRef):
            from .hub_source import resolve_hub

            resolved.append(resolve_hub(session, parsed))
        elif isinstance(parsed, AdapterHubRef):
            from .adapterhub_source import resolve_adapterhub

            resolved.append(resolve_adapterhub(session, parsed))
        elif isinstance(parsed, OciRef):
            from .oci_source import resolve_oci

            resolved.append(resolve_oci(session, parsed))
        else:
            assert isinstance(parsed, Requirement)
            requirements.append(parsed)
    for item in resolved:
        requirements.extend(dependency_requirement(dep) for dep in item.manifest.get("dependencies", []))
    if requirements:
        bound = {r.name: r.registry_url for r in requirements if r.registry_url}
        picked = Resolver(session.provider(bound), pre=pre).resolve(requirements)
        resolved.extend(resolved_entry(session, entry) for entry in picked.values())
    if check:
        from .hub_source import with_base_hint

        for item in resolved:
            check(with_base_hint(session, item))
    return resolved


def resolved_entry(session: Session, entry: IndexEntry) -> Resolved:
    """An index entry with its manifest fetched and verified."""
    raw = manifest_bytes(session, entry)
    manifest = entry.registry.manifest_from_bytes(entry, raw)
    return Resolved(
        entry.name, manifest["version"], entry.registry.url, manifest, raw, entry.manifest_sha256, entry=entry
    )


def manifest_bytes(session: Session, entry: IndexEntry) -> bytes:
    """The manifest blob of `entry`: from the cache, re-hashed on every read (it is small), else from its
    registry (then cached). A cached copy that fails its hash is quarantined and fetched again."""
    sha = entry.manifest_sha256
    blob = session.cache.blob_path(sha)
    tampered = False
    if blob.is_file():
        raw = blob.read_bytes()
        if sha256_bytes(raw) == sha:
            return raw
        tampered = True
        with contextlib.suppress(OSError):  # a cache we may not write: use the registry's copy, uncached
            session.cache.quarantine(blob, f"blob {sha} (manifest of {entry.name} {entry.version})", "failed its hash")
    if session.offline and not entry.registry.reads_locally:
        if tampered:
            raise IntegrityError(
                f"the cached manifest of {entry.name} {entry.version} does not match its sha256 (quarantined); "
                "offline, it cannot be fetched again"
            )
        raise OfflineMissError(f"offline: the manifest of {entry.name} {entry.version} is not in the cache")
    raw = entry.registry.read_blob(
        sha, limit=min(entry.manifest_size, MAX_MANIFEST_BYTES)
    )  # no byte past the listed size
    if not blob.exists():
        session.cache.ensure().put_bytes(raw, sha)
    return raw


def resolve_local(session: Session, path: Path) -> Resolved:
    """A local package directory, or a raw PEFT / AdapterHub directory (its manifest derived in memory,
    named `local/<dir name>` 0.0.0); sizes and hashes are computed if the manifest lacks them."""
    from ..formats.pack import prepare_package, raw_format

    if not (path / MANIFEST_FILE).is_file() and raw_format(path) is None:
        raise InvalidPackageError(
            f"{path}: not an adapter: no {MANIFEST_FILE}, and not a PEFT or AdapterHub adapter directory"
        )
    manifest = prepare_package(path, fingerprint_cache=session.cache.fingerprints_dir, raw_defaults=True)
    canonical = dumps_manifest(manifest)
    return Resolved(
        canonical_name(manifest["name"]),
        manifest["version"],
        path.as_uri(),
        manifest,
        canonical,
        sha256_bytes(canonical),
        local_dir=path,
    )


def root_index(items: Sequence[Resolved], ref: str) -> int:
    """Which resolved item `ref` itself names (the others are its dependencies)."""
    parsed = parse_ref(ref)
    for i, item in enumerate(items):
        if isinstance(parsed, LocalRef) and item.local_dir == parsed.path:
            return i
        if isinstance(parsed, HubRef) and item.hub is not None and item.hub.repo == parsed.repo:
            return i
        if isinstance(parsed, OciRef) and item.oci is not None and item.oci.repository == parsed.repository:
            return i
        if isinstance(parsed, AdapterHubRef) and (item.hub is not None or item.name.lower().startswith("adapterhub/")):
            return i
        if isinstance(parsed, Requirement) and item.name == parsed.name:
            return i
    return 0
