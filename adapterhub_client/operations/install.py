"""Install resolved packages: fetch the missing blobs in parallel (with progress), then build each
installed view; a view whose blob was pruned meanwhile is fetched and built once more."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .._fs import file_digest
from .._text import human_size
from ..errors import NotFoundError, StorageError, UsageError, storage_error
from ..manifest import parse_version
from ..refs import Requirement, parse_ref
from ..store import install as views
from ..store.cache import Cache
from .resolution import ManifestCheck, RefLike, resolve
from .results import Installed, Removed, Resolved
from .session import Session

if TYPE_CHECKING:
    from ..signing import SignatureInfo
    from ..signing.policy import TrustPolicy

PARALLEL_DOWNLOADS = 4
FileJob = tuple[Resolved, dict[str, Any]]  # a package and one entry of its manifest's "files"


def install(
    session: Session,
    refs: Sequence[RefLike],
    pre: bool = False,
    check: ManifestCheck | None = None,
    reinstall: bool = False,
) -> list[Installed]:
    return install_resolved(session, resolve(session, refs, pre=pre, check=check), reinstall=reinstall)


def install_resolved(
    session: Session, items: Sequence[Resolved], reinstall: bool = False, signers: Mapping[str, str] | None = None
) -> list[Installed]:
    """Make every item an installed view (those already installed with this manifest stay, unless
    `reinstall`: then their cached blobs are re-hashed, the corrupt ones fetched again, and every
    view rebuilt). Signatures are checked by the trust policy before any view is built; `signers`
    (name -> key fingerprint, from a lockfile) must be who signed. A full, read-only or forbidden
    cache is a StorageError naming the directory."""
    cache = session.cache.ensure()
    try:
        return _install(session, cache, items, reinstall, signers or {})
    except OSError as exc:
        mapped = storage_error(exc, cache.root)
        if mapped is None:
            raise
        raise mapped from None


def _install(
    session: Session, cache: Cache, items: Sequence[Resolved], reinstall: bool, signers: Mapping[str, str]
) -> list[Installed]:
    already = {id(i): not reinstall and views.is_installed(cache, i.name, i.version, i.manifest_sha256) for i in items}
    jobs = [(i, f) for i in items if not already[id(i)] for f in i.manifest["files"]]
    if reinstall:
        rehash_blobs(cache, jobs)
    fetch_files(session, jobs)
    for item in items:  # every file is in the cache and hashed: check signatures before any view appears
        check_signature(session, item, signers.get(item.name))
    results = []
    for item in items:
        build = (cache, item.manifest, item.manifest_bytes, item.source, item.manifest_sha256)
        try:
            path = views.make_view(*build, force=reinstall)
        except views.BlobMissingError:  # pruned meanwhile by another process: fetch again, once
            fetch_files(session, [(item, f) for f in item.manifest["files"]])
            path = views.make_view(*build, force=reinstall)
        results.append(Installed(item.name, item.version, path, item.source, item.manifest_sha256, already[id(item)]))
    return results


def check_signature(
    session: Session,
    item: Resolved,
    expected_signer: str | None = None,
    *,
    policy: TrustPolicy | None = None,
    manifest_file_sha256: str | None = None,
) -> SignatureInfo | None:
    """The trust policy (the session's, unless `policy`) applied to one resolved version; its model.sig is
    read from the cache, fetched (and hash-checked) first when missing there."""
    from ..signing import signature_entry

    entry = signature_entry(item.manifest)
    registry = item.entry.registry.url if item.entry is not None else None

    def read() -> bytes | None:
        if entry is None:
            return None
        blob = session.cache.blob_path(entry["sha256"])
        if not blob.is_file():  # pruned since it was fetched, or never fetched (info, lock): fetch it now
            session.cache.ensure()
            fetch_files(session, [(item, entry)])
        return blob.read_bytes()

    return (policy or session.trust).check(item.manifest, read, registry, expected_signer, manifest_file_sha256)


def rehash_blobs(cache: Cache, jobs: list[FileJob]) -> None:
    """`--reinstall`: every cached blob these files use is hashed again; a corrupt one goes into quarantine,
    so that it is fetched again (a sound one is the very bytes a download would give)."""
    for sha in {f["sha256"] for _, f in jobs}:
        blob = cache.blob_path(sha)
        if blob.is_file() and file_digest(blob)[0] != sha:
            cache.quarantine(blob, f"blob {sha}", "failed its re-hash on install --reinstall")


def _drop_wrong_sizes(cache: Cache, jobs: list[FileJob]) -> None:
    """A cached blob of the wrong size (truncated, appended to) is quarantined: a stat, no hashing."""
    for _, f in jobs:
        blob = cache.blob_path(f["sha256"])
        try:
            size = blob.stat().st_size
        except FileNotFoundError:
            continue
        if size != f["size"]:
            cache.quarantine(blob, f"blob {f['sha256']}", f"{size} bytes where the manifest lists {f['size']}")


def check_free_space(cache: Cache, missing: list[FileJob]) -> None:
    """Refuse before downloading what cannot fit (bytes still to fetch, less what partial files hold)."""
    needed = 0
    for _, f in {f["sha256"]: (i, f) for i, f in missing}.values():
        try:
            have = cache.partial_path(f["sha256"]).stat().st_size
        except OSError:
            have = 0
        needed += max(0, f["size"] - have)
    try:
        free = shutil.disk_usage(cache.root).free
    except OSError:
        return
    if needed > free:
        raise StorageError(
            f"no space left for {human_size(needed)} of downloads on {cache.root} ({human_size(free)} free); "
            "free some space or choose another --cache-dir"
        )


def fetch_files(session: Session, jobs: list[FileJob]) -> None:
    """Download the blobs the cache lacks (each once), in parallel, with one progress bar on a TTY."""
    _drop_wrong_sizes(session.cache, jobs)
    missing = [(i, f) for i, f in jobs if not session.cache.touch(f["sha256"])]
    if not missing:
        return
    check_free_space(session.cache, missing)
    bar = None
    if session.progress:
        from tqdm import tqdm

        bar = tqdm(
            total=sum(f["size"] for _, f in missing), unit="B", unit_scale=True, file=sys.stderr, desc="downloading"
        )
    update = bar.update if bar is not None else None

    def fetch(job: FileJob) -> None:
        item, f = job
        label = f"{item.name} {item.version}: {f['path']}"
        if item.hub is not None:
            from .hub_source import fetch_hub_file

            fetch_hub_file(session, item, f)
            if update is not None:
                update(f["size"])
            return
        if item.oci is not None:
            from .oci_source import fetch_oci_file

            fetch_oci_file(session, item, f, update)
            return
        if item.local_dir is not None:
            url, client = (item.local_dir / f["path"]).resolve().as_uri(), None
        else:
            assert item.entry is not None
            registry = item.entry.registry
            url = registry.blob_url(f["sha256"])
            oci = getattr(registry, "oci", None)  # an OCI registry by name: its client carries its auth
            if oci is not None:
                oci.prepare_blob_auth(url, label)
                client = oci.http
            else:  # the registry's own client (its scoped token); a blob on this machine needs none
                client = None if url.startswith("file:") else session.http_client(registry.spec)
        session.downloader.fetch(url, f["sha256"], f["size"], label, update, client=client)

    try:
        unique = list({f["sha256"]: (i, f) for i, f in missing}.values())
        if len(unique) == 1 or all(_in_hf_cache(session, i, f) for i, f in unique):  # local: hash and link
            for job in unique:
                fetch(job)
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_DOWNLOADS, len(unique))) as pool:
                for future in [pool.submit(fetch, job) for job in unique]:
                    future.result()
    finally:
        if bar is not None:
            bar.close()


def _in_hf_cache(session: Session, item: Resolved, entry: dict[str, Any]) -> bool:
    hub = item.hub
    return hub is not None and session.hub().cached(hub.repo, hub.commit, entry["path"], hub.subfolder) is not None


def uninstall(session: Session, refs: Iterable[str]) -> list[Removed]:
    """Remove every installed version each reference matches (pre-releases included)."""
    removed = []
    for ref in refs:
        parsed = parse_ref(ref)
        if not isinstance(parsed, Requirement):
            raise UsageError(f"{ref}: give an adapter name, optionally with a version")
        hits = [
            r
            for r, _ in views.iter_installed(session.cache)
            if r["name"] == parsed.name and parsed.allows(parse_version(r["version"]), pre=True)
        ]
        if not hits:
            raise NotFoundError(f"{ref}: not installed")
        for record in hits:
            views.uninstall(session.cache, record["name"], record["version"])
            removed.append(Removed(record["name"], record["version"]))
    return removed
