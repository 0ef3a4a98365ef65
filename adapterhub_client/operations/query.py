"""Read-only questions: what a reference resolves to (`info`), what the registries offer (`search`),
what is installed (`list`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .results import Info, InstalledAdapter, SearchHit

if TYPE_CHECKING:
    from ..store.cache import Cache
    from .session import Session

# Resolution and registry code is imported by the functions that use it: `adapters list` imports this
# module and must start as fast as reading the cache allows.


def info(session: Session, ref: str, pre: bool = False) -> Info:
    """The manifest `ref` resolves to, with every listed version of its name (one index request)."""
    from ..refs import LocalRef, Requirement
    from ..resolve import Resolver
    from .resolution import parse, resolve_local, resolved_entry

    parsed = parse(ref)
    if isinstance(parsed, LocalRef):
        item = resolve_local(session, parsed.path)
        return Info(item.manifest, item.source, [item.version])
    assert isinstance(parsed, Requirement)
    resolver = Resolver(session.provider({parsed.name: parsed.registry_url} if parsed.registry_url else {}), pre)
    item = resolved_entry(session, resolver.resolve([parsed])[parsed.name])
    entries = sorted(resolver.entries(parsed.name), key=lambda e: e.version)
    versions = [f"{e.version}{' (yanked)' if e.yanked else ''}" for e in entries]
    return Info(item.manifest, item.source, versions, item.manifest_sha256)


def search(session: Session, query: str | None = None) -> list[SearchHit]:
    """The latest version of each adapter whose name, description or tags contain `query`.

    A name listed by several registries is reported from the first one (as resolution would pick it)."""
    from ..errors import InvalidPackageError, NotFoundError, RegistryError
    from ..manifest import parse_version

    latest: dict[str, SearchHit] = {}
    needle = (query or "").lower()
    for client in session.registries():
        try:
            lines = client.search_lines()
        except (RegistryError, NotFoundError):
            continue
        for line in lines:
            hit = SearchHit.from_line(line, client.name)
            if not hit.name:
                continue
            if needle and needle not in " ".join([hit.name, hit.description, *hit.tags]).lower():
                continue
            try:
                version = parse_version(hit.version)
            except InvalidPackageError:
                continue
            current = latest.get(hit.name)
            if current is None or (current.registry == client.name and parse_version(current.version) < version):
                latest[hit.name] = hit
    return sorted(latest.values(), key=lambda h: h.name)


def installed(cache: Cache) -> list[InstalledAdapter]:
    """Every installed adapter version, from the cache alone (no registry, no network)."""
    return [InstalledAdapter.from_record(record, path) for record, path in cache.iter_installed()]
