"""Workflows against a local base model: check a manifest, pick the version trained on the model,
install it, find every adapter trained on it.

Fingerprints of model directories are cached in the cache's `fingerprints/` folder."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import IncompatibleError, InvalidPackageError, NotFoundError, RegistryError, UsageError
from ..refs import AdapterHubRef, HubRef, LocalRef, Requirement, parse_ref
from ..registry.client import IndexEntry
from ..resolve import Demand, Resolver, select
from .install import install, install_resolved
from .resolution import resolve_local, resolved_entry
from .results import ModelInstall, SearchHit
from .session import Session

if TYPE_CHECKING:
    from ..basemodel.compat import Verdict
    from ..basemodel.fingerprint import LocalModel


def local_model(session: Session, model: Any) -> LocalModel:
    """A `LocalModel` for a directory, an nn.Module or a LocalModel (directory fingerprints cached)."""
    from ..basemodel.fingerprint import LocalModel

    return LocalModel.of(model, session.cache.fingerprints_dir)


def check(session: Session, manifest: dict[str, Any], model: Any, strict: bool = False) -> Verdict:
    """The compatibility verdict of `manifest` against `model`; raises IncompatibleError (exit 5)."""
    from ..basemodel.compat import ensure_compatible

    return ensure_compatible(manifest["base_model"], local_model(session, model), strict=strict)


def select_for_model(
    session: Session, requirement: Requirement, model: Any, pre: bool = False
) -> tuple[IndexEntry, Verdict]:
    """The highest version trained on exactly this model, else the highest architecture-compatible
    one; else IncompatibleError listing the versions and their bases."""
    from ..basemodel.compat import check_compat
    from ..basemodel.fingerprint import algorithm_of

    local = local_model(session, model)
    bound = {requirement.name: requirement.registry_url} if requirement.registry_url else {}
    entries = select(
        session.candidates(requirement.name, requirement.registry_url), [Demand(requirement, "the command line")], pre
    )
    if not entries:
        Resolver(session.provider(bound), pre).resolve([requirement])  # raises with the usual message
    for entry in entries:  # exact matches from the index lines alone: no manifest fetched
        fp = entry.base_fingerprint
        if fp and local.content(algorithm_of(fp)) == fp:
            manifest = resolved_entry(session, entry).manifest
            return entry, check_compat(manifest["base_model"], local)
    verdicts = []
    for entry in entries:
        manifest = resolved_entry(session, entry).manifest
        verdict = check_compat(manifest["base_model"], local)
        if verdict.ok:
            return entry, verdict
        base = manifest["base_model"]
        fp = (base.get("fingerprint") or {}).get("content")
        recorded = f", {fp[:20]}…" if fp else ""
        verdicts.append(f"{entry.version} (base {base.get('name') or '?'}{recorded}: {verdict.kind})")
    raise IncompatibleError(f"no version of {requirement.name} fits {local.source}: " + "; ".join(verdicts))


def install_for_model(session: Session, ref: str, model: Any, pre: bool = False, strict: bool = False) -> ModelInstall:
    """`adapters install REF --for-model DIR`: pick the version by the model, then install it."""
    parsed = parse_ref(ref)
    if isinstance(parsed, (LocalRef, HubRef, AdapterHubRef)):  # one manifest: checked before any weight
        if isinstance(parsed, LocalRef):
            item = resolve_local(session, parsed.path)
        elif isinstance(parsed, HubRef):
            from .hub_source import resolve_hub

            item = resolve_hub(session, parsed)
        else:
            from .adapterhub_source import resolve_adapterhub

            item = resolve_adapterhub(session, parsed, model=model)
        from .hub_source import with_base_hint

        verdict = check(session, with_base_hint(session, item), model, strict=strict)
        return ModelInstall(install_resolved(session, [item]), verdict)
    if not isinstance(parsed, Requirement):
        raise UsageError(f"{ref}: --for-model needs a registry reference")
    entry, verdict = select_for_model(session, parsed, model, pre=pre)
    if strict and not verdict.exact:
        raise IncompatibleError(verdict.message + " (strict: the exact base weights are required)")
    pinned = Requirement(parsed.name, parsed.specifier, parsed.registry_url, entry.version)
    return ModelInstall(install(session, [pinned], pre=pre), verdict)


def search_for_model(session: Session, model: Any) -> list[SearchHit]:
    """Every adapter version trained on exactly this model: one reverse-index request per registry, then
    each name's index for its yanked versions. By name, newest version first; yanked ones marked."""
    from ..manifest import parse_version

    fp = local_model(session, model).content()  # publishers record the default (blake3) fingerprint
    if fp is None:
        return []
    hits: list[tuple[SearchHit, Any]] = []
    for client in session.registries():
        try:
            lines = client.by_base(fp)
        except (RegistryError, NotFoundError):
            continue
        yanked: dict[str, set[Any]] = {}
        for name in sorted({str(line.get("name", "")) for line in lines}):
            try:
                yanked[name] = {e.version for e in client.entries(name) if e.yanked}
            except (RegistryError, NotFoundError, InvalidPackageError):
                yanked[name] = set()
        for line in lines:
            try:
                version = parse_version(str(line.get("version", "")))
            except InvalidPackageError:
                continue
            name = str(line.get("name", ""))
            hit = SearchHit.from_line(line, client.name, base_fingerprint=fp, yanked=version in yanked.get(name, set()))
            hits.append((hit, version))
    unique = {(h.registry, h.name, v): (h, v) for h, v in hits}.values()
    ordered = sorted(unique, key=lambda hv: hv[1], reverse=True)
    return [h for h, _ in sorted(ordered, key=lambda hv: hv[0].name)]
