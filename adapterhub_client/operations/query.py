"""Read-only questions: what a reference resolves to (`info`), what the registries offer (`search`),
what is installed (`list`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import Info, InstalledAdapter, SearchHit

if TYPE_CHECKING:
    from packaging.version import Version

    from ..registry.client import IndexEntry, RegistryClient
    from ..signing import SignatureInfo
    from ..store.cache import Cache
    from .results import Resolved
    from .session import Session

# Resolution and registry code is imported by the functions that use it: `adapters list` imports this
# module and must start as fast as reading the cache allows.


def info(session: Session, ref: str, pre: bool = False) -> Info:
    """The manifest `ref` resolves to (by the rule install uses), whether that version is yanked, and
    every listed version of its name (one index request)."""
    from ..refs import AdapterHubRef, HubRef, LocalRef, OciRef, Requirement
    from ..resolve import Resolver
    from .resolution import parse, resolve_local, resolved_entry

    parsed = parse(ref)
    if isinstance(parsed, LocalRef):
        item = resolve_local(session, parsed.path)
        return Info(item.manifest, item.source, [item.version], signature=_signature(session, item))
    if isinstance(parsed, HubRef):
        from .hub_source import resolve_hub

        item = resolve_hub(session, parsed)
        versions = session.hub().versions(parsed.repo)
        return Info(item.manifest, item.source, versions, item.manifest_sha256, signature=_signature(session, item))
    if isinstance(parsed, OciRef):
        from .oci_source import resolve_oci

        item = resolve_oci(session, parsed)
        return Info(
            item.manifest, item.source, [item.version], item.manifest_sha256, signature=_signature(session, item)
        )
    if isinstance(parsed, AdapterHubRef):
        from .adapterhub_source import resolve_adapterhub

        item = resolve_adapterhub(session, parsed)
        return Info(
            item.manifest, item.source, [item.version], item.manifest_sha256, signature=_signature(session, item)
        )
    assert isinstance(parsed, Requirement)
    resolver = Resolver(session.provider({parsed.name: parsed.registry_url} if parsed.registry_url else {}), pre)
    entry = resolver.resolve([parsed])[parsed.name]
    item = resolved_entry(session, entry)
    entries = sorted(resolver.entries(parsed.name), key=lambda e: e.version)
    versions = [f"{e.version}{' (yanked)' if e.yanked else ''}" for e in entries]
    signature = _signature(session, item)
    return Info(item.manifest, item.source, versions, item.manifest_sha256, yanked=entry.yanked, signature=signature)


def _signature(session: Session, item: Resolved) -> SignatureInfo | None:
    """Who signed the version (its model.sig fetched, nothing else): verified when a trust rule covers it;
    a signature that fails the policy is an IntegrityError, as it would be for install."""
    from .install import check_signature

    return check_signature(session, item)


def _skipped(client: RegistryClient, exc: Exception) -> None:
    from ..errors import AdapterWarning

    warnings.warn(AdapterWarning(f"search skipped registry {client.name} ({client.url}): {exc}"), stacklevel=3)


def _entries(client: RegistryClient, name: str) -> list[IndexEntry] | None:
    """The index entries of `name` in `client`, or None when they cannot be read (offline, gone)."""
    from ..errors import InvalidPackageError, NotFoundError, RegistryError

    try:
        return client.entries(name)
    except NotFoundError:
        return None
    except (RegistryError, InvalidPackageError) as exc:
        _skipped(client, exc)
        return None


def search(session: Session, query: str | None = None, pre: bool = False) -> list[SearchHit]:
    """For each adapter whose name, description or tags contain `query`: the version `install` would
    pick (:func:`~..resolve.latest`: the highest non-yanked, stable unless `pre`), else the newest listed
    one, marked yanked or pre-release. A name listed by several registries is reported from the first
    one (as resolution would pick it); a registry that cannot be read is skipped with an AdapterWarning."""
    from ..errors import InvalidPackageError, NotFoundError, RegistryError
    from ..manifest import parse_version
    from ..resolve import latest, newest_first

    needle = (query or "").lower()
    owner: dict[str, tuple[RegistryClient, list[Mapping[str, Any]]]] = {}
    for client in session.registries():
        try:
            lines = client.search_lines()
        except (RegistryError, NotFoundError, InvalidPackageError) as exc:
            _skipped(client, exc)
            continue
        for line in lines:
            name = line.get("name")
            if not isinstance(name, str) or not name:
                continue
            if name not in owner:
                owner[name] = (client, [])
            if owner[name][0] is client:
                owner[name][1].append(line)
    hits: list[SearchHit] = []
    for name in sorted(owner):
        client, listed = owner[name]
        entries = _entries(client, name)
        yanked = False
        if entries:
            shown = latest(entries, pre) or newest_first(entries)[0]
            version, yanked = shown.version, shown.yanked
        else:  # no index to consult (offline, say): the newest line the search file lists
            parsed = []
            for served in listed:
                try:
                    parsed.append((parse_version(str(served.get("version", ""))), served))
                except InvalidPackageError:
                    continue
            if not parsed:
                continue
            version = max(parsed, key=lambda p: p[0])[0]
        chosen = next((ln for ln in reversed(listed) if _version_of(ln) == version), listed[-1])
        hit = SearchHit.from_line(chosen, client.name, version=str(version), yanked=yanked)
        if needle and needle not in " ".join([hit.name, hit.description, *hit.tags]).lower():
            continue
        hits.append(hit)
    return hits


def _version_of(line: Mapping[str, Any]) -> Version | None:
    from ..errors import InvalidPackageError
    from ..manifest import parse_version

    try:
        return parse_version(str(line.get("version", "")))
    except InvalidPackageError:
        return None


def installed(cache: Cache) -> list[InstalledAdapter]:
    """Every installed adapter version, from the cache alone (no registry, no network)."""
    return [InstalledAdapter.from_record(record, path) for record, path in cache.iter_installed()]


def search_hub(session: Session, query: str | None = None, model: Any = None) -> list[SearchHit]:
    """Adapter repos on the Hugging Face Hub matching `query` (PEFT and AdapterHub libraries); with
    `model` (a local base model directory) only those tagged as adapters of its Hub id."""
    base = None
    if model is not None:
        from ..formats.pack import base_metadata

        base = base_metadata(Path(model))["name"]
        if base is None:
            from ..errors import UsageError

            raise UsageError(f"{model}: its Hub id is unknown (no Hugging Face cache path, no config _name_or_path)")
    hits = []
    for info in session.hub().search(query, base_model=base):
        tags = tuple(str(t) for t in (getattr(info, "tags", None) or ()))
        library = getattr(info, "library_name", None) or ("peft" if "peft" in tags else "adapter-transformers")
        card = getattr(info, "card_data", None)
        base_name = card.get("base_model") if card is not None and hasattr(card, "get") else None
        kind = "lora" if library == "peft" else "bottleneck"
        base_id = base_name if isinstance(base_name, str) else None
        name = f"hf://{info.id}"
        line = {"name": name, "type": kind, "library": library, "tags": list(tags), "base": base_id}
        hits.append(SearchHit(name, "main", "hf", type=kind, tags=tags, base=base_id, line=line))
    return hits
