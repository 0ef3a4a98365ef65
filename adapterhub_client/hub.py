"""The facade over every layer: resolve -> fetch -> check -> install / publish.

`Hub` is what the CLI and Python users call. It imports no torch at module level; the
tensor-touching parts (attach) import `nn` lazily.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .config import RegistrySpec, Settings, load_settings
from .errors import (
    IncompatibleError,
    InvalidPackageError,
    LockMismatchError,
    NotFoundError,
    OfflineMissError,
    RegistryError,
    UsageError,
)
from .manifest import MANIFEST_FILE, canonical_name, dumps_manifest, parse_version
from .refs import HubRef, LocalRef, Requirement, parse_ref
from .registry.client import IndexEntry, RegistryClient
from .registry.transport import FileTransport, HttpTransport
from .resolve import Resolver, dependency_requirement
from .store.cache import Cache
from .store.download import Downloader
from .store import install as views

PARALLEL_DOWNLOADS = 4
ManifestCheck = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class Installed:
    name: str
    version: str
    path: Path
    source: str
    manifest_sha256: str
    already: bool  # was installed before this call

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": str(self.path), "source": self.source,
                "manifest_sha256": self.manifest_sha256, "already_installed": self.already}


@dataclasses.dataclass
class Resolved:
    """One pinned version: where it comes from and its (verified) manifest."""

    name: str
    version: str
    source: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    manifest_sha256: str
    entry: IndexEntry | None = None
    local_dir: Path | None = None


class Hub:
    def __init__(self, registry: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 offline: bool | None = None, token: str | None = None, settings: Settings | None = None,
                 progress: bool | None = None) -> None:
        self.settings = settings or load_settings(registry=registry, cache_dir=cache_dir, offline=offline, token=token)
        self.cache = Cache(self.settings.cache_dir)
        self._clients: dict[str, RegistryClient] = {}
        self._http: dict[str | None, Any] = {}
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.downloader = Downloader(self.cache, self._default_http, self.offline)

    @property
    def offline(self) -> bool:
        return self.settings.offline

    # --- registries -------------------------------------------------------------------
    def _http_client(self, spec: RegistrySpec | None) -> Any:
        key = spec.url if spec and spec.token else None
        if key not in self._http:
            from .net import make_client

            self._http[key] = make_client(spec.token, spec.url) if key else make_client()
        return self._http[key]

    def _default_http(self) -> Any:
        return self._http_client(None)

    def client(self, spec: RegistrySpec) -> RegistryClient:
        if spec.url not in self._clients:
            if spec.url.startswith("file:"):
                transport = FileTransport(spec.url)
            elif spec.url.startswith(("http://", "https://")):
                self.cache.ensure()
                transport = HttpTransport(spec.url, self._http_client(spec), self.cache.root, self.offline)
            else:
                raise UsageError(f"unsupported registry URL {spec.url!r} (file://, http:// on loopback, https://)")
            self._clients[spec.url] = RegistryClient(spec, transport)
        return self._clients[spec.url]

    def registries(self) -> list[RegistryClient]:
        return [self.client(spec) for spec in self.settings.registries]

    def close(self) -> None:
        for client in self._http.values():
            client.close()
        self._http.clear()

    def __enter__(self) -> "Hub":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- resolution ---------------------------------------------------------------------
    def candidates(self, name: str, registry_url: str | None = None) -> list[IndexEntry]:
        """All versions of `name` from the first registry that lists it."""
        clients = [self.client(self.settings.spec_for_url(registry_url))] if registry_url else self.registries()
        offline_misses: list[OfflineMissError] = []
        for client in clients:
            try:
                return client.entries(name)
            except OfflineMissError as exc:
                offline_misses.append(exc)
            except NotFoundError:
                continue
            # A RegistryError propagates: skipping an unreachable registry would let a later
            # one serve a name the earlier one may own.
        if offline_misses:
            raise offline_misses[0]
        where = ", ".join(c.name for c in clients)
        raise NotFoundError(f"{name}: no such adapter in {where}")

    def _provider(self, bound: dict[str, str]) -> Any:
        hub = self

        class _Provider:
            def candidates(self, name: str) -> list[IndexEntry]:
                return hub.candidates(name, bound.get(name))

        return _Provider()

    def resolve(self, refs: Sequence[str | Requirement | LocalRef], pre: bool = False,
                check: ManifestCheck | None = None) -> list[Resolved]:
        """Pin every reference and its dependencies; fetch and verify their manifests.

        `check` runs on each manifest right after it is fetched, before any other file.
        """
        requirements: list[Requirement] = []
        resolved: list[Resolved] = []
        for ref in refs:
            parsed = parse_ref(ref) if isinstance(ref, str) else ref
            if isinstance(parsed, LocalRef):
                resolved.append(self._resolve_local(parsed.path))
            elif isinstance(parsed, HubRef):
                raise UsageError(f"hf://{parsed.repo}: Hugging Face Hub sources are not supported yet")
            else:
                requirements.append(parsed)
        for item in resolved:
            requirements.extend(dependency_requirement(dep) for dep in item.manifest.get("dependencies", []))
        if requirements:
            bound = {r.name: r.registry_url for r in requirements if r.registry_url}
            picked = Resolver(self._provider(bound), pre=pre).resolve(requirements)
            for entry in picked.values():
                resolved.append(self._resolved_entry(entry))
        if check:
            for item in resolved:
                check(item.manifest)
        return resolved

    def _resolved_entry(self, entry: IndexEntry) -> Resolved:
        raw = self._manifest_bytes(entry)
        manifest = entry.registry.manifest_from_bytes(entry, raw)
        return Resolved(entry.name, manifest["version"], entry.registry.url, manifest, raw,
                        entry.manifest_sha256, entry=entry)

    def _manifest_bytes(self, entry: IndexEntry) -> bytes:
        sha = entry.manifest_sha256
        blob = self.cache.blob_path(sha)
        if blob.is_file():
            return blob.read_bytes()
        if self.offline and not isinstance(entry.registry.transport, FileTransport):
            raise OfflineMissError(f"offline: the manifest of {entry.name} {entry.version} is not in the cache")
        raw = entry.registry.read_blob(sha)
        self.cache.ensure().put_bytes(raw, sha)
        return raw

    def _resolve_local(self, path: Path) -> Resolved:
        """A local package directory; sizes and hashes are computed if the manifest lacks them."""
        from .pack import prepare_package

        if not (path / MANIFEST_FILE).is_file():
            raise InvalidPackageError(f"{path}: no {MANIFEST_FILE} (publish or save the adapter as a package first)")
        manifest = prepare_package(path)
        canonical = dumps_manifest(manifest)
        return Resolved(canonical_name(manifest["name"]), manifest["version"], path.as_uri(), manifest, canonical,
                        hashlib.sha256(canonical).hexdigest(), local_dir=path)

    # --- against a local model --------------------------------------------------------------
    def local_model(self, model: Any) -> Any:
        """A `fingerprint.LocalModel` for a directory or an nn.Module (directory results cached)."""
        from .basemodel.fingerprint import LocalModel

        return LocalModel.of(model, self.cache.root / "fingerprints")

    def check(self, manifest: dict[str, Any], model: Any, strict: bool = False) -> Any:
        """The compatibility verdict of `manifest` against `model`; raises IncompatibleError (exit 5)."""
        from .basemodel.compat import ensure_compatible

        return ensure_compatible(manifest["base_model"], self.local_model(model), strict=strict)

    def select_for_model(self, requirement: Requirement, model: Any, pre: bool = False) -> tuple[IndexEntry, Any]:
        """The highest version trained on exactly this model, else the highest architecture-compatible
        one; else IncompatibleError listing the versions and their bases."""
        from .basemodel.compat import ARCHITECTURE, EXACT, check_compat
        from .basemodel.fingerprint import algorithm_of
        from .resolve import Demand, select

        local = self.local_model(model)
        entries = select(self.candidates(requirement.name, requirement.registry_url),
                         [Demand(requirement, "the command line")], pre)
        if not entries:
            Resolver(self._provider({}), pre).resolve([requirement])  # raises with the usual message
        for entry in entries:  # exact matches from the index lines alone: no manifest fetched
            fp = entry.base_fingerprint
            if fp and local.content(algorithm_of(fp)) == fp:
                manifest = self._resolved_entry(entry).manifest
                return entry, check_compat(manifest["base_model"], local)
        verdicts = []
        for entry in entries:
            manifest = self._resolved_entry(entry).manifest
            verdict = check_compat(manifest["base_model"], local)
            if verdict.kind in (EXACT, ARCHITECTURE):
                return entry, verdict
            base = manifest["base_model"]
            fp = (base.get("fingerprint") or {}).get("content")
            verdicts.append(f"{entry.version} (base {base.get('name') or '?'}{', ' + fp[:20] + '…' if fp else ''}: {verdict.kind})")
        raise IncompatibleError(
            f"no version of {requirement.name} fits {local.source}: " + "; ".join(verdicts)
        )

    def install_for_model(self, ref: str, model: Any, pre: bool = False, strict: bool = False) -> tuple[list[Installed], Any]:
        """`adapters install REF --for-model DIR`: pick the version by the model, then install it."""
        from .basemodel.compat import EXACT

        parsed = parse_ref(ref)
        if isinstance(parsed, LocalRef):
            item = self._resolve_local(parsed.path)
            verdict = self.check(item.manifest, model, strict=strict)
            return self.install_resolved([item]), verdict
        if not isinstance(parsed, Requirement):
            raise UsageError(f"{ref}: --for-model needs a registry reference")
        entry, verdict = self.select_for_model(parsed, model, pre=pre)
        if strict and verdict.kind != EXACT:
            raise IncompatibleError(verdict.message + " (strict: the exact base weights are required)")
        pinned = Requirement(parsed.name, parsed.specifier, parsed.registry_url, entry.version)
        return self.install([pinned], pre=pre), verdict

    def search_for_model(self, model: Any) -> list[dict[str, Any]]:
        """Every adapter trained on exactly this model: one reverse-index request per registry."""
        fp = self.local_model(model).content()  # publishers record the default (blake3) fingerprint
        hits = []
        for client in self.registries():
            try:
                lines = client.by_base(fp)
            except (RegistryError, NotFoundError):
                continue
            hits.extend({**line, "registry": client.name, "base_fingerprint": fp} for line in lines)
        return hits

    def resolve_for_attach(self, refs: Sequence[str], model: Any, strict: bool = False) -> tuple[list[Resolved], list[Any]]:
        """Resolve `refs` and check every manifest against `model` before any weight is downloaded."""
        verdicts: list[Any] = []
        local = self.local_model(model)
        items = self.resolve(refs, check=lambda manifest: verdicts.append(self.check(manifest, local, strict=strict)))
        return items, verdicts

    def attach(self, model: Any, ref: str, name: str | None = None, strict: bool = False) -> str:
        """Check `ref` against `model`, install it if needed, attach it with the built-in modules;
        return the adapter name. An architecture-only match warns (refused with strict=True)."""
        import warnings

        from .basemodel.compat import EXACT
        from .nn.model import load_adapter

        items, verdicts = self.resolve_for_attach([ref], model, strict=strict)
        for verdict in verdicts:
            if verdict.kind != EXACT:
                warnings.warn(verdict.message, stacklevel=2)
        installed = self.install_resolved(items)
        return load_adapter(model, installed[_root_index(items, ref)].path, name=name)

    # --- install --------------------------------------------------------------------------
    def install(self, refs: Sequence[str | Requirement | LocalRef], pre: bool = False,
                check: ManifestCheck | None = None) -> list[Installed]:
        return self.install_resolved(self.resolve(refs, pre=pre, check=check))

    def install_resolved(self, items: Sequence[Resolved]) -> list[Installed]:
        self.cache.ensure()
        already = {id(i): views.is_installed(self.cache, i.name, i.version, i.manifest_sha256) for i in items}
        jobs: list[tuple[Resolved, dict[str, Any]]] = [
            (i, f) for i in items if not already[id(i)] for f in i.manifest["files"]
        ]
        self._fetch_files(jobs)
        results = []
        for item in items:
            try:
                path = views.make_view(self.cache, item.manifest, item.manifest_bytes, item.source, item.manifest_sha256)
            except views.BlobMissingError:  # pruned meanwhile by another process: fetch again, once
                self._fetch_files([(item, f) for f in item.manifest["files"]])
                path = views.make_view(self.cache, item.manifest, item.manifest_bytes, item.source, item.manifest_sha256)
            results.append(Installed(item.name, item.version, path, item.source, item.manifest_sha256, already[id(item)]))
        return results

    def _fetch_files(self, jobs: list[tuple[Resolved, dict[str, Any]]]) -> None:
        missing = [(i, f) for i, f in jobs if not self.cache.touch(f["sha256"])]
        if not missing:
            return
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=sum(f["size"] for _, f in missing), unit="B", unit_scale=True, file=sys.stderr,
                       desc="downloading")
        update = bar.update if bar is not None else None

        def fetch(job: tuple[Resolved, dict[str, Any]]) -> None:
            item, f = job
            label = f"{item.name} {item.version}: {f['path']}"
            if item.local_dir is not None:
                url = (item.local_dir / f["path"]).resolve().as_uri()
            else:
                assert item.entry is not None
                url = item.entry.registry.blob_url(f["sha256"])
            client = self._http_client(item.entry.registry.spec) if item.entry is not None else None
            self.downloader.fetch(url, f["sha256"], f["size"], label, update, client=client)

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

    # --- lockfile -----------------------------------------------------------------------
    def lock(self, refs: Sequence[str], path: str | os.PathLike[str] | None = None, pre: bool = False) -> dict[str, Any]:
        from . import lockfile

        data = self._lock_data(refs, self.resolve(refs, pre=pre))
        lockfile.write_lock(path or lockfile.LOCK_FILE, data)
        return data

    def _lock_data(self, refs: Sequence[str], items: Sequence[Resolved]) -> dict[str, Any]:
        from . import lockfile

        return lockfile.make_lock(list(refs), [
            lockfile.lock_entry(i.name, i.version, i.source, i.manifest_sha256, len(i.manifest_bytes), i.manifest)
            for i in items
        ])

    def install_locked(self, path: str | os.PathLike[str] | None = None, refs: Sequence[str] | None = None,
                       pre: bool = False) -> list[Installed]:
        """`--locked`: resolve again and refuse if the result differs from the lockfile."""
        from . import lockfile

        lock_path = path or lockfile.LOCK_FILE
        lock = lockfile.read_lock(lock_path)
        refs = list(refs) if refs else list(lock["requirements"])
        items = self.resolve(refs, pre=pre)
        fresh = self._lock_data(refs, items)
        if not lockfile.same_resolution(lock, fresh):
            raise LockMismatchError(f"{lock_path} is out of date with a fresh resolution; run `adapters lock` to update it")
        return self.install_resolved(items)

    def install_frozen(self, path: str | os.PathLike[str] | None = None) -> list[Installed]:
        """`--frozen`: install exactly the lockfile, without consulting any index."""
        from . import lockfile

        lock = lockfile.read_lock(path or lockfile.LOCK_FILE)
        return self.install_resolved([self._resolve_pinned(pinned) for pinned in lock["adapters"]])

    def _resolve_pinned(self, pinned: dict[str, Any]) -> Resolved:
        from .errors import IntegrityError

        source, sha = pinned["source"], pinned["manifest"]["sha256"]
        local = FileTransport(source).root if source.startswith("file:") else None
        if local is not None and (local / MANIFEST_FILE).is_file():  # a local package directory
            item = self._resolve_local(local)
            if item.manifest_sha256 != sha:
                raise IntegrityError(f"{pinned['name']} {pinned['version']}: {local} no longer matches the lockfile")
            return item
        data = {"name": pinned["name"], "version": pinned["version"], "manifest": pinned["manifest"], "yanked": False}
        entry = IndexEntry(data, parse_version(pinned["version"]), self.client(self.settings.spec_for_url(source)))
        return self._resolved_entry(entry)

    # --- queries ----------------------------------------------------------------------
    def info(self, ref: str, pre: bool = False) -> dict[str, Any]:
        parsed = parse_ref(ref)
        if isinstance(parsed, LocalRef):
            item = self._resolve_local(parsed.path)
            return {"manifest": item.manifest, "source": item.source, "versions": [item.version]}
        if isinstance(parsed, HubRef):
            raise UsageError(f"hf://{parsed.repo}: Hugging Face Hub sources are not supported yet")
        resolver = Resolver(self._provider({parsed.name: parsed.registry_url} if parsed.registry_url else {}), pre)
        item = self._resolved_entry(resolver.resolve([parsed])[parsed.name])
        entries = resolver.entries(parsed.name)
        return {
            "manifest": item.manifest,
            "source": item.source,
            "manifest_sha256": item.manifest_sha256,
            "versions": [f"{e.version}{' (yanked)' if e.yanked else ''}" for e in sorted(entries, key=lambda e: e.version)],
        }

    def search(self, query: str | None = None) -> list[dict[str, Any]]:
        """Latest version of each adapter whose name, description or tags contain `query`."""
        latest: dict[str, dict[str, Any]] = {}
        needle = (query or "").lower()
        for client in self.registries():
            try:
                lines = client.search_lines()
            except (RegistryError, NotFoundError):
                continue
            for line in lines:
                text = " ".join([line.get("name", ""), line.get("description", ""), *line.get("tags", [])]).lower()
                if needle and needle not in text:
                    continue
                name = line.get("name")
                try:
                    version = parse_version(str(line.get("version")))
                except InvalidPackageError:
                    continue
                current = latest.get(name)
                if current is None or (current["registry"] == client.name and parse_version(current["version"]) < version):
                    latest[name] = {**line, "registry": client.name}
        return sorted(latest.values(), key=lambda x: x["name"])

    def installed(self) -> list[dict[str, Any]]:
        return [dict(record, path=str(path)) for record, path in views.iter_installed(self.cache)]

    def installed_view(self, ref: str) -> Path:
        """The installed view matching `ref` (highest matching version), without any network."""
        parsed = parse_ref(ref)
        if isinstance(parsed, LocalRef):
            return parsed.path
        if not isinstance(parsed, Requirement):
            raise UsageError(f"{ref}: not an installed adapter reference")
        matches = [
            (parse_version(r["version"]), p) for r, p in views.iter_installed(self.cache)
            if r["name"] == parsed.name and parsed.allows(parse_version(r["version"]), pre=True)
        ]
        if not matches:
            raise NotFoundError(f"{ref}: not installed")
        return max(matches)[1]

    def uninstall(self, refs: Iterable[str]) -> list[dict[str, str]]:
        removed = []
        for ref in refs:
            parsed = parse_ref(ref)
            if not isinstance(parsed, Requirement):
                raise UsageError(f"{ref}: give an adapter name, optionally with a version")
            hits = [r for r, _ in views.iter_installed(self.cache)
                    if r["name"] == parsed.name and parsed.allows(parse_version(r["version"]), pre=True)]
            if not hits:
                raise NotFoundError(f"{ref}: not installed")
            for record in hits:
                views.uninstall(self.cache, record["name"], record["version"])
                removed.append({"name": record["name"], "version": record["version"]})
        return removed

    def verify(self) -> dict[str, Any]:
        """Re-hash every installed file; report problems (the CLI exits 4 on any)."""
        checked, problems = 0, []
        for record, path in views.iter_installed(self.cache):
            checked += 1
            problems.extend(views.verify_view(self.cache, path, record))
        leftovers = sorted(p.name for p in (self.cache.root / "tmp").glob("view-*")) if (self.cache.root / "tmp").exists() else []
        return {"checked": checked, "problems": problems, "incomplete_views": leftovers}

    # --- publishing -----------------------------------------------------------------------
    def publish(self, path: str | os.PathLike[str], registry: str | None = None, name: str | None = None,
                version: str | None = None, base: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        from .pack import prepare_package
        from .registry.publish import publish_directory

        manifest = prepare_package(path, name=name, version=version, base=base)
        spec = self.settings.registry(registry) if registry else self.settings.registries[0]
        client = self.client(spec)
        root = client.local_root
        if root is None:
            raise UsageError(f"publishing to {spec.url} is not supported yet: publish to a local or file:// registry")
        entry, created = publish_directory(root, Path(path), manifest)
        return {"name": entry["name"], "version": entry["version"], "registry": spec.name, "url": spec.url,
                "manifest_sha256": entry["manifest"]["sha256"], "created": created}

    def yank(self, ref: str, registry: str | None = None, undo: bool = False) -> dict[str, Any]:
        from .registry.publish import set_yanked

        parsed = parse_ref(ref)
        if not isinstance(parsed, Requirement) or parsed.pinned is None:
            raise UsageError(f"{ref}: yank needs an exact version, e.g. org/name@1.0.0")
        spec = self.settings.registry(registry) if registry else self.settings.registries[0]
        root = self.client(spec).local_root
        if root is None:
            raise UsageError(f"yanking on {spec.url} is not supported: edit the index where it is hosted")
        set_yanked(root, parsed.name, str(parsed.pinned), not undo)
        return {"name": parsed.name, "version": str(parsed.pinned), "yanked": not undo}


def _root_index(items: Sequence[Resolved], ref: str) -> int:
    """Which resolved item `ref` itself names (the others are its dependencies)."""
    parsed = parse_ref(ref)
    for i, item in enumerate(items):
        if isinstance(parsed, LocalRef) and item.local_dir == parsed.path:
            return i
        if isinstance(parsed, Requirement) and item.name == parsed.name:
            return i
    return 0
