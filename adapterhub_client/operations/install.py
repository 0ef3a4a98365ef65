"""Install resolved packages: fetch the missing blobs in parallel (with progress), then build each
installed view; a view whose blob was pruned meanwhile is fetched and built once more."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import NotFoundError, UsageError
from ..manifest import parse_version
from ..refs import Requirement, parse_ref
from ..store import install as views
from .resolution import ManifestCheck, RefLike, resolve
from .results import Installed, Removed, Resolved
from .session import Session

PARALLEL_DOWNLOADS = 4
FileJob = tuple[Resolved, dict[str, Any]]  # a package and one entry of its manifest's "files"


def install(
    session: Session, refs: Sequence[RefLike], pre: bool = False, check: ManifestCheck | None = None
) -> list[Installed]:
    return install_resolved(session, resolve(session, refs, pre=pre, check=check))


def install_resolved(session: Session, items: Sequence[Resolved]) -> list[Installed]:
    """Make every item an installed view (those already installed with this manifest stay)."""
    cache = session.cache.ensure()
    already = {id(i): views.is_installed(cache, i.name, i.version, i.manifest_sha256) for i in items}
    fetch_files(session, [(i, f) for i in items if not already[id(i)] for f in i.manifest["files"]])
    results = []
    for item in items:
        try:
            path = views.make_view(cache, item.manifest, item.manifest_bytes, item.source, item.manifest_sha256)
        except views.BlobMissingError:  # pruned meanwhile by another process: fetch again, once
            fetch_files(session, [(item, f) for f in item.manifest["files"]])
            path = views.make_view(cache, item.manifest, item.manifest_bytes, item.source, item.manifest_sha256)
        results.append(Installed(item.name, item.version, path, item.source, item.manifest_sha256, already[id(item)]))
    return results


def fetch_files(session: Session, jobs: list[FileJob]) -> None:
    """Download the blobs the cache lacks (each once), in parallel, with one progress bar on a TTY."""
    missing = [(i, f) for i, f in jobs if not session.cache.touch(f["sha256"])]
    if not missing:
        return
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
        if item.local_dir is not None:
            url, client = (item.local_dir / f["path"]).resolve().as_uri(), None
        else:
            assert item.entry is not None
            registry = item.entry.registry
            url = registry.blob_url(f["sha256"])
            # the registry's own client (its scoped token); a blob on this machine needs none
            client = None if url.startswith("file:") else session.http_client(registry.spec)
        session.downloader.fetch(url, f["sha256"], f["size"], label, update, client=client)

    try:
        unique = list({f["sha256"]: (i, f) for i, f in missing}.values())
        if len(unique) == 1:
            fetch(unique[0])
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL_DOWNLOADS, len(unique))) as pool:
                for future in [pool.submit(fetch, job) for job in unique]:
                    future.result()
    finally:
        if bar is not None:
            bar.close()


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
