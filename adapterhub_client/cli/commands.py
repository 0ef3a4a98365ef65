"""Package-manager commands. None of them imports torch."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from .._text import plural
from ..errors import EXIT_INTEGRITY
from .cmd_site import registry_site, say_site
from .output import adapter_warnings, emit_json, human_size, json_option, say, table, warn

if TYPE_CHECKING:
    from ..hub import Hub
    from ..operations.results import Installed


def common(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes: --json and the configuration overrides."""

    @json_option
    @click.option("--registry", "registry", metavar="NAME|URL", help="Use only this registry.")
    @click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache directory.")
    @click.option("--offline", is_flag=True, default=None, help="Use only the cache; no network.")
    @click.option(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="Longest wait on a registry without progress (default 15; ADAPTERS_TIMEOUT).",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any, registry: str | None, cache_dir: str | None, offline: bool | None, timeout: float | None, **kw: Any
    ) -> Any:
        from ..hub import Hub

        progress = False if kw.get("as_json") else None  # --json: machine output only, no progress bars
        with adapter_warnings():  # settings warnings (an unknown config.toml key), before the Hub exists
            hub = Hub(
                registry=registry, cache_dir=cache_dir, offline=offline or None, timeout=timeout, progress=progress
            )
        with hub, adapter_warnings():
            return func(hub, *args, **kw)

    return wrapper


def local_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--json and --cache-dir, for commands that only touch this machine (the cache, a local registry):
    registry choice and --offline would mean nothing there."""

    @json_option
    @click.option("--cache-dir", type=click.Path(file_okay=False), help="Cache directory.")
    @functools.wraps(func)
    def wrapper(*args: Any, cache_dir: str | None, **kw: Any) -> Any:
        from ..hub import Hub

        with Hub(cache_dir=cache_dir) as hub, adapter_warnings():
            return func(hub, *args, **kw)

    return wrapper


def adapterhub_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--base-name / --architecture / --source: how `ah:task/subtask@org` identifiers resolve. Put it
    under @common (it receives the Hub first)."""

    @click.option(
        "--base-name",
        "ah_base",
        metavar="MODEL",
        help="For ah: identifiers: the base model's name as AdapterHub knows it (e.g. bert-base-uncased).",
    )
    @click.option(
        "--architecture", "ah_arch", metavar="NAME", help="For ah: identifiers: pfeiffer, houlsby, seq_bn, ..."
    )
    @click.option(
        "--source",
        "ah_source",
        type=click.Choice(["hub", "archive"]),
        default="hub",
        show_default=True,
        help="For ah: identifiers: the Hugging Face repo it moved to, or AdapterHub's archived zip.",
    )
    @functools.wraps(func)
    def wrapper(hub: Hub, *args: Any, ah_base: str | None, ah_arch: str | None, ah_source: str, **kw: Any) -> Any:
        from ..operations.results import AdapterHubOptions

        hub.session.adapterhub = AdapterHubOptions(base_name=ah_base, architecture=ah_arch, source=ah_source)
        return func(hub, *args, **kw)

    return wrapper


_SPEC_WITHOUT_AT = re.compile(r"([^@\s]+/[^@\s=!<>~]+)\s*((?:===|==|!=|<=|>=|~=|<|>).*)")


def check_refs(refs: tuple[str, ...]) -> None:
    """`acme/x==1.0.0` (pip's spelling) -> a usage error suggesting `acme/x@==1.0.0`."""
    for ref in refs:
        m = _SPEC_WITHOUT_AT.fullmatch(ref.strip())
        if m and "://" not in ref:
            raise click.UsageError(f"{ref}: the version goes after '@': {m.group(1)}@{m.group(2)}")


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
@click.option(
    "--reinstall", is_flag=True, help="Re-hash the cached files, fetch any that fail, and rebuild even if installed."
)
@common
@adapterhub_options
def install(
    hub: Hub,
    refs: tuple[str, ...],
    pre: bool,
    locked: bool,
    frozen: bool,
    lockfile: str | None,
    for_model: str | None,
    strict: bool,
    reinstall: bool,
    as_json: bool,
) -> None:
    """Install REFS: org/name[@spec], a package directory, a PEFT or AdapterHub adapter directory
    (installed as local/<dir name> 0.0.0), or REGISTRY_URL/org/name. A yanked version installs only
    when pinned (org/name@1.0.0), with a warning."""
    check_refs(refs)
    if reinstall and (for_model or frozen or locked):
        raise click.UsageError("--reinstall takes adapter references (not --for-model, --frozen or --locked)")
    start = time.perf_counter()
    with adapter_warnings() as warned:
        results, compatibility = _install(
            hub, refs, pre, locked, frozen, lockfile, for_model, strict, reinstall, as_json
        )
    yanked = {(getattr(w, "name", None), str(getattr(w, "version", ""))) for w in warned}
    if as_json:
        data: dict[str, Any] = {
            "installed": [{**r.to_json(), "yanked": (r.name, r.version) in yanked} for r in results],
            "downloads": hub.downloader.downloads,
        }
        if compatibility is not None:
            data["compatibility"] = compatibility
        emit_json(data)
        return
    for r in results:
        state = "already installed" if r.already else "installed"
        mark = " (yanked)" if (r.name, r.version) in yanked else ""
        say(f"{state} {r.name} {r.version}{mark} -> {r.path}")
    say(f"done in {time.perf_counter() - start:.2f}s ({plural(hub.downloader.downloads, 'download')})", err=True)


def _install(
    hub: Hub,
    refs: tuple[str, ...],
    pre: bool,
    locked: bool,
    frozen: bool,
    lockfile: str | None,
    for_model: str | None,
    strict: bool,
    reinstall: bool,
    as_json: bool,
) -> tuple[list[Installed], dict[str, Any] | None]:
    """The install variants: --for-model, --frozen, --locked, or references."""
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
        results = hub.install(refs, pre=pre, reinstall=reinstall)
    return results, compatibility


@click.command()
@click.argument("refs", nargs=-1, required=True)
@local_options
def uninstall(hub: Hub, refs: tuple[str, ...], as_json: bool) -> None:
    """Remove installed adapters (all matching versions)."""
    removed = hub.uninstall(refs)
    if as_json:
        emit_json({"removed": [r.to_json() for r in removed]})
        return
    for r in removed:
        say(f"removed {r.name} {r.version}")


@click.command(name="list")
@json_option
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
        say("no adapters installed", err=True)
        return
    table([[i.name, i.version, i.source] for i in items], ["NAME", "VERSION", "SOURCE"])


@click.command()
@click.argument("ref")
@click.option("--pre", is_flag=True, help="Allow pre-release versions.")
@common
@adapterhub_options
def info(hub: Hub, ref: str, pre: bool, as_json: bool) -> None:
    """Show the manifest REF resolves to: the version install would pick (the highest non-yanked,
    stable unless --pre), or the one pinned; yanked versions are marked."""
    check_refs((ref,))
    data = hub.info(ref, pre=pre)
    if as_json:
        emit_json(data.to_json())
        return
    m = data.manifest
    base = m["base_model"]
    fp = (base.get("fingerprint") or {}).get("content")
    say(f"{m['name']} {m['version']}  ({m['adapter']['type']})" + ("  YANKED" if data.yanked else ""))
    if data.yanked:
        say("  yanked:     yes (installs only when pinned exactly)")
    if m.get("description"):
        say(f"  {m['description']}")
    say(f"  source:     {data.source}")
    say(f"  signed by:  {data.signature.label}" if data.signature else "  signed by:  nobody (unsigned)")
    say(f"  base model: {base.get('name') or '?'}" + (f"  [{fp}]" if fp else ""))
    if base.get("quantization"):  # QLoRA: trained on the 4-bit base (the fingerprint is the unquantized one's)
        from ..basemodel.compat import describe_quantization

        quantization = base["quantization"]
        say(f"  quantized:  {describe_quantization(quantization)} (attach with --quantize {quantization['type']})")
    modules = (base.get("architecture") or {}).get("modules") or {}
    if modules:
        say(f"  touches:    {plural(len(modules), 'module')}")
    serving = m["adapter"].get("serving")
    if serving:  # what a server groups adapters by for hot-swap slots and batched routing
        rank = (serving.get("rank") or {}).get("max")
        say(
            f"  serving:    {serving.get('variant')}, rank {rank}, {plural(serving.get('modules', 0), 'module')} "
            f"({', '.join(serving.get('target_modules') or [])})"
        )
    say("  files:      " + ", ".join(f"{f['path']} ({human_size(f['size'])})" for f in m["files"]))
    if data.composition:
        say(f"  recipe:     {data.composition}")
    if m.get("dependencies"):
        say("  depends on: " + ", ".join(f"{d['name']}{d.get('specifier', '')}" for d in m["dependencies"]))
    say(f"  versions:   {', '.join(data.versions)}")


@click.command()
@click.argument("query", required=False)
@click.option(
    "--for-model",
    "for_model",
    type=click.Path(exists=True, file_okay=False),
    help="List adapters trained on exactly this base model directory (every version, newest first).",
)
@click.option("--pre", is_flag=True, help="Show pre-releases as the latest version when they are.")
@click.option("--hf", is_flag=True, help="Search the Hugging Face Hub (PEFT and AdapterHub repos).")
@common
def search(hub: Hub, query: str | None, for_model: str | None, pre: bool, hf: bool, as_json: bool) -> None:
    """Search adapter names, descriptions and tags in every configured registry. Each adapter shows the
    version `install` would pick (the highest non-yanked, stable unless --pre). With --hf, search the
    Hugging Face Hub's PEFT and AdapterHub repos instead (with --for-model: those of the model's Hub id)."""
    if hf:
        hits = hub.search_hub(query, for_model)
        if as_json:
            emit_json({"results": [h.to_json() for h in hits]})
        elif not hits:
            say("no matches on the Hub", err=True)
        else:
            table([[h.name, h.type, h.base or ""] for h in hits], ["REPO", "TYPE", "BASE"])
        return
    if for_model:
        hits = hub.search_for_model(for_model)
        if query:
            hits = [h for h in hits if query.lower() in h.name]
        if as_json:
            emit_json({"results": [h.to_json() for h in hits]})
        elif not hits:
            say("no adapters for this base model", err=True)
        else:
            table(
                [[h.name, h.marked_version, h.type, h.registry] for h in hits], ["NAME", "VERSION", "TYPE", "REGISTRY"]
            )
        return
    hits = hub.search(query, pre=pre)
    if as_json:
        emit_json({"results": [h.to_json() for h in hits]})
        return
    if not hits:
        say("no matches", err=True)
        return
    table(
        [[h.name, h.marked_version, h.type, h.base or "", h.description[:50]] for h in hits],
        ["NAME", "VERSION", "TYPE", "BASE", "DESCRIPTION"],
    )


@click.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option("--name", help="org/name (required for a PEFT or AdapterHub directory).")
@click.option("--version", "version_", metavar="VERSION", help="Version (required for a PEFT or AdapterHub directory).")
@click.option(
    "--base",
    type=click.Path(file_okay=False),
    help="Base model directory: records its fingerprint, model type and Hub id (when known).",
)
@click.option("--base-name", metavar="ORG/NAME", help="The base model's Hugging Face Hub id.")
@click.option("--description", help="One line saying what the adapter does.")
@click.option("--license", "license_", metavar="SPDX", help="License, e.g. apache-2.0.")
@click.option("--tag", "tags", multiple=True, help="A search tag (repeat for several; replaces the package's).")
@click.option(
    "--registry",
    "target",
    metavar="NAME|URL|hf://ORG/REPO",
    help="The registry to publish to (default: the local one), or a Hugging Face Hub repo (HF_TOKEN).",
)
@click.option("--private", is_flag=True, help="With hf://: create the Hub repo as private.")
@click.option("--force", is_flag=True, help="With an OCI registry: move a tag that holds other content.")
@click.option("--site", is_flag=True, help="With a directory registry: then update its catalogue site (DIR/site/).")
@click.option("--sign", "sign_it", is_flag=True, help="Sign what is published (model.sig) with --key.")
@click.option("--key", "sign_key", type=click.Path(exists=True, dir_okay=False), help="With --sign: PEM private key.")
@click.option(
    "--cert-chain",
    "cert_chain",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="With --sign: the key's certificate chain (PEM; the key's certificate first).",
)
@local_options
def publish(
    hub: Hub,
    path: str,
    name: str | None,
    version_: str | None,
    base: str | None,
    base_name: str | None,
    description: str | None,
    license_: str | None,
    tags: tuple[str, ...],
    target: str | None,
    private: bool,
    force: bool,
    site: bool,
    sign_it: bool,
    sign_key: str | None,
    cert_chain: tuple[str, ...],
    as_json: bool,
) -> None:
    """Publish PATH (a package directory, or a PEFT or AdapterHub directory) to a local or file://
    registry, or to a Hugging Face Hub repo (--registry hf://org/repo: PEFT-compatible files, our
    manifest.json and a model card in one commit, tagged v<version>)."""
    if private and not (target or "").startswith("hf://"):
        raise click.UsageError("--private applies to --registry hf://org/repo only")
    result = hub.publish(
        path,
        target,
        name=name,
        version=version_,
        base=base,
        base_name=base_name,
        description=description,
        license=license_,
        tags=tags,
        private=private,
        force=force,
        site=site,
        sign_key=_sign_key(sign_it, sign_key, cert_chain),
        sign_cert_chain=cert_chain,
    )
    if as_json:
        emit_json(result.to_json())
        return
    verb = "published" if result.created else "already published (identical content)"
    where = result.url if result.registry == result.url else f"{result.registry} ({result.url})"
    say(f"{verb} {result.name} {result.version} to {where}")
    if result.site is not None:
        say_site(result.site)


def _sign_key(sign_it: bool, key: str | None, cert_chain: tuple[str, ...]) -> str | None:
    """publish's --sign takes --key (and maybe --cert-chain); neither means anything without it."""
    if sign_it and not key:
        raise click.UsageError("--sign needs --key KEY.pem")
    if (key or cert_chain) and not sign_it:
        raise click.UsageError("--key and --cert-chain sign the package: add --sign")
    return key if sign_it else None


@click.command()
@click.argument("ref")
@click.option("--undo", is_flag=True, help="Un-yank.")
@click.option("--registry", "target", metavar="NAME|URL", help="The registry to yank in (default: the local one).")
@local_options
def yank(hub: Hub, ref: str, undo: bool, target: str | None, as_json: bool) -> None:
    """Yank ORG/NAME@VERSION in a local or file:// registry: install then skips it unless pinned."""
    result = hub.yank(ref, target, undo=undo)
    if as_json:
        emit_json(result.to_json())
        return
    say(f"{'yanked' if result.yanked else 'un-yanked'} {result.name} {result.version}")


@click.command()
@click.argument("ref", required=False)
@click.option("--repair", is_flag=True, help="Fetch again and rebuild every view that fails (exit 0 when all are).")
@click.option("--signatures", is_flag=True, help="Check signatures too, by the [[trust]] rules (or --key).")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="PEM",
    help="With REF: verify with this public key or CA certificate instead of the trust rules (repeatable).",
)
@local_options
def verify(hub: Hub, ref: str | None, repair: bool, signatures: bool, keys: tuple[str, ...], as_json: bool) -> None:
    """Re-hash every installed file and cached blob (exit 4 on any mismatch); with --signatures, check
    every installed version's signature by the [[trust]] rules too.

    What fails is moved into the cache's quarantine/ folder and its view marked broken: the next install
    (or --repair, now) fetches it again.

    With REF (org/name@version, oci://host/repo:tag, a package directory, ...): check that version's
    signature without installing it; an OCI version through its signature artifact, pulling no blob of
    its files."""
    if ref is not None:
        if repair:
            raise click.UsageError("--repair rebuilds installed views: give no REF")
        _verify_ref(hub, ref, keys, as_json)
        return
    if keys:
        raise click.UsageError("--key verifies one REF: give the reference to check")
    if repair and signatures:
        raise click.UsageError("--repair rebuilds what fails its hashes; check --signatures on its own")
    report = hub.verify(repair=repair, signatures=signatures)
    if as_json:
        emit_json(report.to_json())
    else:
        for problem in report.problems:
            say(problem)
        say(
            f"checked {plural(report.checked, 'installed adapter')}: {plural(len(report.problems), 'problem')}",
            err=True,
        )
        if report.quarantined:
            say(
                f"moved {plural(len(report.quarantined), 'corrupt file')} into {hub.cache.root / 'quarantine'}",
                err=True,
            )
        for name in report.repaired:
            say(f"repaired {name}", err=True)
        for failure in report.unrepaired:
            say(failure, err=True)
        if report.broken and not repair:
            say("run `adapters verify --repair` (or `adapters install --reinstall NAME`) to fetch them again", err=True)
        for name, version, info in report.signatures or []:
            say(f"{name} {version}: " + (f"signed by {info.label}" if info else "unsigned"), err=True)
    if not report.ok:
        raise SystemExit(EXIT_INTEGRITY)


def _verify_ref(hub: Hub, ref: str, keys: tuple[str, ...], as_json: bool) -> None:
    """`verify REF`: one version's signature (exit 4 when it fails the policy or the keys given)."""
    check_refs((ref,))
    result = hub.verify_signature(ref, keys)
    if as_json:
        emit_json(result.to_json())
        return
    info = result.signature
    say(f"{result.name} {result.version} ({result.source}): " + (f"signed by {info.label}" if info else "unsigned"))


@click.command()
@click.argument("refs", nargs=-1)
@click.option("--pre", is_flag=True, help="Allow pre-release versions.")
@click.option(
    "--lockfile", type=click.Path(dir_okay=False), default=None, help="Where to write (default ./adapters.lock)."
)
@common
@adapterhub_options
def lock(hub: Hub, refs: tuple[str, ...], pre: bool, lockfile: str | None, as_json: bool) -> None:
    """Resolve REFS and record exact versions, sources and hashes in adapters.lock. Without REFS,
    re-resolve the requirements the lockfile already records (after a publish or a yank)."""
    check_refs(refs)
    locked = hub.lock(refs, lockfile, pre=pre)
    if as_json:
        emit_json(locked.to_json())
        return
    for a in locked.adapters:
        say(f"locked {a['name']} {a['version']} from {a['source']}")


# --- registry ------------------------------------------------------------------------------
@click.group()
def registry() -> None:
    """Manage the registries searched by install and search (in order)."""


@registry.command(name="add")
@click.argument("name")
@click.argument("url")
@click.option("--token", help="Token sent (only) to this registry's host.")
@json_option
def registry_add(name: str, url: str, token: str | None, as_json: bool) -> None:
    """Add registry NAME at URL (file://, https://, http:// on loopback, or oci://HOST[/NAMESPACE])."""
    from ..config import add_registry

    spec = add_registry(name, url, token)
    if as_json:
        emit_json({"name": spec.name, "url": spec.url})
    else:
        say(f"added registry {spec.name} ({spec.url})")


@registry.command(name="build")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--check", "check_only", is_flag=True, help="Report only; rewrite nothing.")
@click.option("--site", "with_site", is_flag=True, help="Then update the catalogue site (DIRECTORY/site/).")
@json_option
def registry_build(directory: str, check_only: bool, with_site: bool, as_json: bool) -> None:
    """Check a directory registry (every index line's manifest and blobs present with the right size and
    sha256) and rewrite what it derives (reverse index, search.jsonl, config.json), ready for any static
    host (docs/HOSTING.md). Exit 7 naming each inconsistency it cannot repair."""
    from pathlib import Path

    from ..errors import InvalidPackageError
    from ..hub import Hub

    if with_site and check_only:
        raise click.UsageError("--site writes the site's pages; --check writes nothing")
    with Hub() as hub:
        report = hub.build_registry(Path(directory), repair=not check_only)
        site = hub.build_site(Path(directory)) if with_site and report.ok else None
    if as_json:
        emit_json({**report.to_json(), **({"site": site.to_json()} if site else {})})
    else:
        for line in report.repaired:
            say(f"repaired {line}")
        say(
            f"checked {plural(report.versions, 'version')} of {plural(report.names, 'adapter')}, "
            f"{plural(report.blobs_checked, 'blob')} ({human_size(report.bytes_hashed)} hashed)"
        )
        if site is not None:
            say_site(site)
    if not report.ok:
        more = report.problem_count - len(report.problems)
        lines = report.problems + ([f"... and {more} more"] if more > 0 else [])
        raise InvalidPackageError(
            f"{directory}: {plural(report.problem_count, 'inconsistency', 'inconsistencies')} "
            f"cannot be repaired: " + "; ".join(lines)
        )


registry.add_command(registry_site)


@registry.command(name="list")
@json_option
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
@json_option
def registry_remove(name: str, as_json: bool) -> None:
    """Remove registry NAME."""
    from ..config import remove_registry

    remove_registry(name)
    if as_json:
        emit_json({"removed": name})
    else:
        say(f"removed registry {name}")


# --- cache ---------------------------------------------------------------------------------
@click.group()
def cache() -> None:
    """Inspect and tidy the cache."""


@cache.command(name="info")
@local_options
def cache_info(hub: Hub, as_json: bool) -> None:
    """Where the cache is and what it holds."""
    stats = hub.cache.stats()
    if as_json:
        emit_json(stats.to_json())
        return
    say(f"cache:     {stats.path}")
    say(f"blobs:     {stats.blobs} ({human_size(stats.blob_bytes)})")
    say(f"partial:   {stats.partial} ({human_size(stats.partial_bytes)})")
    say(f"installed: {plural(stats.installed, 'adapter version')}")


@cache.command(name="prune")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=600.0,
    show_default=True,
    help="Keep entries used in the last SECONDS (an install may be about to use them).",
)
@local_options
def cache_prune(hub: Hub, grace: float, as_json: bool) -> None:
    """Remove blobs no installed adapter uses, partial downloads and leftovers."""
    removed, freed = hub.prune(grace)
    if as_json:
        emit_json({"removed": removed, "freed_bytes": freed})
    else:
        say(f"removed {plural(removed, 'entry', 'entries')}, freed {human_size(freed)}")


@cache.command(name="clean")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@local_options
def cache_clean(hub: Hub, yes: bool, as_json: bool) -> None:
    """Remove everything from the cache (installed adapters included)."""
    if not yes and not as_json:
        click.confirm(f"remove everything under {hub.cache.root}?", abort=True)
    if hub.cache.root.exists():
        hub.cache.clean()
    if as_json:
        emit_json({"cleaned": str(hub.cache.root)})
    else:
        say(f"cleaned {hub.cache.root}")


@click.command()
@click.argument("host")
@click.option("--username", "-u", required=True, help="The registry user.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else prompted).")
@json_option
def login(host: str, username: str, password_stdin: bool, as_json: bool) -> None:
    """Store credentials for an OCI registry HOST (checked against it first; kept mode 0600 under the
    adapters home). The password is never echoed or printed."""
    import sys

    from ..hub import Hub

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else click.prompt("Password", hide_input=True)
    with Hub() as hub, adapter_warnings():
        store = hub.login(host, username, password)
    if as_json:
        emit_json({"host": host, "username": username, "store": store})
        return
    say(f"logged in to {host} as {username} (credentials in {store})")


@click.command()
@click.argument("host")
@json_option
def logout(host: str, as_json: bool) -> None:
    """Forget the stored credentials for an OCI registry HOST."""
    from ..hub import Hub

    with Hub() as hub:
        removed = hub.logout(host)
    if as_json:
        emit_json({"host": host, "removed": removed})
        return
    say(f"logged out of {host}" if removed else f"no stored credentials for {host}")
