"""Package-manager commands. None of them imports torch."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..errors import EXIT_INTEGRITY
from .output import emit_json, human_size, table, warn

if TYPE_CHECKING:
    from ..hub import Hub
    from ..operations.results import Installed


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes: --json and the configuration overrides."""

    @click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
    @click.option("--registry", "registry", metavar="NAME|URL", help="Use only this registry.")
    @click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache directory.")
    @click.option("--offline", is_flag=True, default=None, help="Use only the cache; no network.")
    @functools.wraps(func)
    def wrapper(*args: Any, registry: str | None, cache_dir: str | None, offline: bool | None, **kw: Any) -> Any:
        from ..hub import Hub

        with Hub(registry=registry, cache_dir=cache_dir, offline=offline or None) as hub:
            return func(hub, *args, **kw)

    return wrapper


@click.command()
@click.argument("refs", nargs=-1)
@click.option("--pre", is_flag=True, help="Allow pre-release versions.")
@click.option("--locked", is_flag=True, help="Refuse if resolution would change adapters.lock.")
@click.option("--frozen", is_flag=True, help="Install exactly adapters.lock, without resolving.")
@click.option(
    "--lockfile", type=click.Path(dir_okay=False), default=None, help="Lockfile path (default ./adapters.lock)."
)
@click.option(
    "--for-model",
    "for_model",
    type=click.Path(exists=True, file_okay=False),
    help="Pick the version trained on this base model directory (exact, else same architecture).",
)
@click.option("--strict", is_flag=True, help="With --for-model: require the exact base weights.")
@common
def install(
    hub: Hub,
    refs: tuple[str, ...],
    pre: bool,
    locked: bool,
    frozen: bool,
    lockfile: str | None,
    for_model: str | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Install REFS: org/name[@spec], a package directory, or REGISTRY_URL/org/name."""
    start = time.perf_counter()
    compatibility: dict[str, Any] | None = None
    results: list[Installed]
    if for_model:
        if frozen or locked or len(refs) != 1:
            raise click.UsageError("--for-model takes exactly one reference (and no --frozen/--locked)")
        results, verdict = hub.install_for_model(refs[0], for_model, pre=pre, strict=strict)
        compatibility = verdict.to_json()
        if verdict.kind != "exact" and not as_json:
            warn(verdict.message)
    elif frozen:
        if refs:
            raise click.UsageError("--frozen installs the lockfile only; give no references")
        results = hub.install_frozen(lockfile)
    elif locked:
        results = hub.install_locked(lockfile, refs)
    else:
        if not refs:
            raise click.UsageError("give at least one adapter reference (or --frozen / --locked)")
        results = hub.install(refs, pre=pre)
    if as_json:
        data: dict[str, Any] = {"installed": [r.to_json() for r in results], "downloads": hub.downloader.downloads}
        if compatibility is not None:
            data["compatibility"] = compatibility
        emit_json(data)
        return
    for r in results:
        state = "already installed" if r.already else "installed"
        click.echo(f"{state} {r.name} {r.version} -> {r.path}")
    click.echo(f"done in {time.perf_counter() - start:.2f}s ({hub.downloader.downloads} downloads)", err=True)


@click.command()
@click.argument("refs", nargs=-1, required=True)
@common
def uninstall(hub: Hub, refs: tuple[str, ...], as_json: bool) -> None:
    """Remove installed adapters (all matching versions)."""
    removed = hub.uninstall(refs)
    if as_json:
        emit_json({"removed": [r.to_json() for r in removed]})
        return
    for r in removed:
        click.echo(f"removed {r.name} {r.version}")


@click.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache directory.")
def list_(as_json: bool, cache_dir: str | None) -> None:
    """List installed adapters."""
    # Reads the cache only: no Hub, no registry or HTTP code imported, so it starts fast.
    from ..config import load_settings
    from ..operations.query import installed
    from ..store.cache import Cache

    items = installed(Cache(load_settings(cache_dir=cache_dir).cache_dir))
    if as_json:
        emit_json({"installed": [i.to_json() for i in items]})
        return
    if not items:
        click.echo("no adapters installed", err=True)
        return
    table([[i.name, i.version, i.source] for i in items], ["NAME", "VERSION", "SOURCE"])


@click.command()
@click.argument("ref")
@click.option("--pre", is_flag=True, help="Allow pre-release versions.")
@common
def info(hub: Hub, ref: str, pre: bool, as_json: bool) -> None:
    """Show the manifest that REF resolves to."""
    data = hub.info(ref, pre=pre)
    if as_json:
        emit_json(data.to_json())
        return
    m = data.manifest
    base = m["base_model"]
    fp = (base.get("fingerprint") or {}).get("content")
    click.echo(f"{m['name']} {m['version']}  ({m['adapter']['type']})")
    if m.get("description"):
        click.echo(f"  {m['description']}")
    click.echo(f"  source:     {data.source}")
    click.echo(f"  base model: {base.get('name') or '?'}" + (f"  [{fp}]" if fp else ""))
    modules = (base.get("architecture") or {}).get("modules") or {}
    if modules:
        click.echo(f"  touches:    {len(modules)} modules")
    click.echo("  files:      " + ", ".join(f"{f['path']} ({human_size(f['size'])})" for f in m["files"]))
    if m.get("dependencies"):
        click.echo("  depends on: " + ", ".join(f"{d['name']}{d.get('specifier', '')}" for d in m["dependencies"]))
    click.echo(f"  versions:   {', '.join(data.versions)}")


@click.command()
@click.argument("query", required=False)
@click.option(
    "--for-model",
    "for_model",
    type=click.Path(exists=True, file_okay=False),
    help="List adapters trained on exactly this base model directory.",
)
@common
def search(hub: Hub, query: str | None, for_model: str | None, as_json: bool) -> None:
    """Search adapter names, descriptions and tags in every configured registry."""
    if for_model:
        hits = hub.search_for_model(for_model)
        if query:
            hits = [h for h in hits if query.lower() in h.name]
        if as_json:
            emit_json({"results": [h.to_json() for h in hits]})
        elif not hits:
            click.echo("no adapters for this base model", err=True)
        else:
            table([[h.name, h.version, h.type, h.registry] for h in hits], ["NAME", "VERSION", "TYPE", "REGISTRY"])
        return
    hits = hub.search(query)
    if as_json:
        emit_json({"results": [h.to_json() for h in hits]})
        return
    if not hits:
        click.echo("no matches", err=True)
        return
    table(
        [[h.name, h.version, h.type, h.base or "", h.description[:50]] for h in hits],
        ["NAME", "VERSION", "TYPE", "BASE", "DESCRIPTION"],
    )


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", help="org/name (required for a PEFT directory).")
@click.option("--version", "version_", metavar="VERSION", help="Version (required for a PEFT directory).")
@click.option("--base", type=click.Path(file_okay=False), help="Base model directory: records its fingerprint.")
@common
def publish(hub: Hub, path: str, name: str | None, version_: str | None, base: str | None, as_json: bool) -> None:
    """Publish PATH (a package directory or a PEFT LoRA directory)."""
    result = hub.publish(path, name=name, version=version_, base=base)
    if as_json:
        emit_json(result.to_json())
        return
    verb = "published" if result.created else "already published (identical content)"
    click.echo(f"{verb} {result.name} {result.version} to {result.registry} ({result.url})")


@click.command()
@click.argument("ref")
@click.option("--undo", is_flag=True, help="Un-yank.")
@common
def yank(hub: Hub, ref: str, undo: bool, as_json: bool) -> None:
    """Yank ORG/NAME@VERSION in a local or file:// registry."""
    result = hub.yank(ref, undo=undo)
    if as_json:
        emit_json(result.to_json())
        return
    click.echo(f"{'yanked' if result.yanked else 'un-yanked'} {result.name} {result.version}")


@click.command()
@common
def verify(hub: Hub, as_json: bool) -> None:
    """Re-hash every installed file against its manifest (exit 4 on any mismatch)."""
    report = hub.verify()
    if as_json:
        emit_json(report.to_json())
    else:
        for problem in report.problems:
            click.echo(problem)
        click.echo(f"checked {report.checked} installed adapters: {len(report.problems)} problems", err=True)
    if not report.ok:
        raise SystemExit(EXIT_INTEGRITY)


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.option("--pre", is_flag=True, help="Allow pre-release versions.")
@click.option(
    "--lockfile", type=click.Path(dir_okay=False), default=None, help="Where to write (default ./adapters.lock)."
)
@common
def lock(hub: Hub, refs: tuple[str, ...], pre: bool, lockfile: str | None, as_json: bool) -> None:
    """Resolve REFS and record exact versions, sources and hashes in adapters.lock."""
    locked = hub.lock(refs, lockfile, pre=pre)
    if as_json:
        emit_json(locked.to_json())
        return
    for a in locked.adapters:
        click.echo(f"locked {a['name']} {a['version']} from {a['source']}")


# --- registry ------------------------------------------------------------------------------
@click.group()
def registry() -> None:
    """Manage the registries searched by install and search (in order)."""


@registry.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option("--token", help="Token sent (only) to this registry's host.")
@click.option("--json", "as_json", is_flag=True)
def registry_add(name: str, url: str, token: str | None, as_json: bool) -> None:
    """Add registry NAME at URL (file://, https://, or http:// on loopback)."""
    from ..config import add_registry

    spec = add_registry(name, url, token)
    if as_json:
        emit_json({"name": spec.name, "url": spec.url})
    else:
        click.echo(f"added registry {spec.name} ({spec.url})")


@registry.command(name="list")
@click.option("--json", "as_json", is_flag=True)
def registry_list(as_json: bool) -> None:
    """List registries in search order."""
    from ..config import load_settings

    registries = load_settings().registries
    if as_json:
        emit_json({"registries": [{"name": r.name, "url": r.url, "token": bool(r.token)} for r in registries]})
        return
    table([[r.name, r.url, "yes" if r.token else ""] for r in registries], ["NAME", "URL", "TOKEN"])


@registry.command(name="remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def registry_remove(name: str, as_json: bool) -> None:
    """Remove registry NAME."""
    from ..config import remove_registry

    remove_registry(name)
    if as_json:
        emit_json({"removed": name})
    else:
        click.echo(f"removed registry {name}")


# --- cache ---------------------------------------------------------------------------------
@click.group()
def cache() -> None:
    """Inspect and tidy the cache."""


@cache.command(name="info")
@common
def cache_info(hub: Hub, as_json: bool) -> None:
    """Where the cache is and what it holds."""
    stats = hub.cache.stats()
    if as_json:
        emit_json(stats.to_json())
        return
    click.echo(f"cache:     {stats.path}")
    click.echo(f"blobs:     {stats.blobs} ({human_size(stats.blob_bytes)})")
    click.echo(f"partial:   {stats.partial} ({human_size(stats.partial_bytes)})")
    click.echo(f"installed: {stats.installed} adapter versions")


@cache.command(name="prune")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Keep entries used in the last SECONDS (an install may be about to use them).",
)
@common
def cache_prune(hub: Hub, grace: float, as_json: bool) -> None:
    """Remove blobs no installed adapter uses, partial downloads and leftovers."""
    from ..store.install import prune

    removed, freed = prune(hub.cache, grace)
    if as_json:
        emit_json({"removed": removed, "freed_bytes": freed})
    else:
        click.echo(f"removed {removed} entries, freed {human_size(freed)}")


@cache.command(name="clean")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@common
def cache_clean(hub: Hub, yes: bool, as_json: bool) -> None:
    """Remove everything from the cache (installed adapters included)."""
    if not yes and not as_json:
        click.confirm(f"remove everything under {hub.cache.root}?", abort=True)
    if hub.cache.root.exists():
        hub.cache.clean()
    if as_json:
        emit_json({"cleaned": str(hub.cache.root)})
    else:
        click.echo(f"cleaned {hub.cache.root}")
