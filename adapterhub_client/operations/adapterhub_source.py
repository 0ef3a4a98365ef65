"""AdapterHub identifiers (`ah:sentiment/sst-2@ukp`) as sources: resolved through AdapterHub's archived
index (shipped as package data, `registry.adapterhub`) for a base model name and optionally an
architecture, then installed from the Hugging Face repo the adapter moved to (`AdapterHub/<name>`, its
versions as branches) or, with `source="archive"`, from the archived zip checked against the index's
sha256 and extracted safely (`_zip`).

A migrated repo's `adapter_config.json` is in the `adapters` 1.x format, so its config hash differs
from the index's: the architecture is compared by meaning (`same_architecture`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from .._fs import file_digest, sha256_bytes
from ..errors import InvalidPackageError, RegistryError, UsageError
from ..manifest import dumps_manifest, normalized_version, validate_manifest
from ..refs import AdapterHubRef, HubRef
from .results import Resolved
from .session import Session

MAX_ARCHIVE_BYTES = 2 * 1024**3  # an archived adapter (bottleneck + head) is a few MB
MAX_ARCHIVE_MEMBERS = 64


def model_name_of(model: Any) -> str | None:
    """The name AdapterHub knows a local model by: its config's `_name_or_path` (a Hub id or a legacy
    name such as bert-base-uncased), or the Hub id of a Hugging Face cache snapshot."""
    if not isinstance(model, (str, os.PathLike)):
        config = getattr(model, "config", None)
        named = getattr(config, "_name_or_path", None) or getattr(config, "name_or_path", None)
        return named if isinstance(named, str) and named and not os.path.isabs(named) else None
    from ..formats.pack import hub_id_of_path

    cached = hub_id_of_path(Path(model).resolve())
    if cached is not None:
        return cached[0]
    try:
        config = json.loads((Path(model) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    named = config.get("_name_or_path") if isinstance(config, dict) else None
    return named if isinstance(named, str) and named and not os.path.isabs(named) and ".." not in named else None


def resolve_adapterhub(session: Session, ref: AdapterHubRef, model: Any = None) -> Resolved:
    """An `ah:` identifier -> a verified manifest, from the migrated Hugging Face repo or the archive; the
    index's version either way (the repo's branch, or the archive's), so both give the same package."""
    from ..registry.adapterhub import parse_adapterhub_id
    from ..registry.adapterhub import resolve_adapterhub as pick
    from .hub_source import package_name, resolve_hub

    options = session.adapterhub
    base_name = options.base_name or (model_name_of(model) if model is not None else None)
    if not base_name:
        raise UsageError(
            f"ah:{ref.text}: an AdapterHub identifier needs the base model: add --base-name NAME "
            "(e.g. bert-base-uncased) or --for-model DIR"
        )
    match = pick(parse_adapterhub_id("ah:" + ref.text), base_name, options.architecture, options.version)
    version = normalized_version(match.version, f"{match.identifier}: version")
    if options.source == "archive":
        where = f"{match.identifier} {match.version} (archive)"
        directory = fetch_archive(session, match.archive_url, match.archive_sha256, where)
        item = archive_dir_resolved(directory, package_name(match.hf_repo), version, match.archive_url, where)
    else:
        item = resolve_hub(session, HubRef(match.hf_repo, match.hf_revision), version=version)
        where = f"{match.identifier}: hf://{match.hf_repo}@{match.hf_revision}"
    config = item.manifest["adapter"]["config"]
    if config.get("format") == "adapterhub" and not _same(config, match.config):
        raise InvalidPackageError(f"{where} holds another architecture than AdapterHub's index records for it")
    return item


def _same(repo_config: dict[str, Any], index_config: dict[str, Any]) -> bool:
    from ..registry.adapterhub import same_architecture

    return same_architecture({k: v for k, v in repo_config.items() if k != "format"}, index_config)


ARCHIVE_PIN = "#sha256="  # an archive's source: its original URL and the sha256 the index gives it


def archive_pin_of_source(source: str) -> tuple[str, str] | None:
    """(url, sha256) of an archive source as install records and lockfiles keep it."""
    url, sep, sha = source.partition(ARCHIVE_PIN)
    if not sep or not url.startswith(("https://", "http://")) or len(sha) != 64:
        return None
    return url, sha


def resolve_archive_pin(session: Session, url: str, sha256: str, name: str, version: str) -> Resolved:
    """A locked archive: the same zip (by its sha256), the same derived manifest."""
    where = f"{name} {version} (archive)"
    return archive_dir_resolved(fetch_archive(session, url, sha256, where), name, version, url, where)


def fetch_archive(session: Session, url: str, sha256: str, where: str) -> Path:
    """The archived zip, extracted once into the cache: fetched (resumable, verified against `sha256`),
    every member checked before anything is written."""
    from .._zip import extract_zip

    cache = session.cache.ensure()
    target = cache.root / "archives" / sha256
    if (target / "adapter_config.json").is_file():
        return target
    fetch_from = archive_url(url, session.settings.adapterhub_mirror)
    size = _archive_size(session, fetch_from, where)
    blob = session.downloader.fetch(fetch_from, sha256, size, where)
    staging = cache.tmp_dir("archive-")
    try:
        extract_zip(blob, staging, expected_sha256=sha256, max_bytes=MAX_ARCHIVE_BYTES, max_members=MAX_ARCHIVE_MEMBERS)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging, target)
        except OSError:  # another process extracted it first: the same bytes
            if not (target / "adapter_config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def archive_dir_resolved(directory: Path, name: str, version: str, url: str, where: str) -> Resolved:
    """An extracted archive as a package: its manifest derived from adapter_config.json, files hashed;
    its source the archive's URL and sha256 (what a lockfile pins)."""
    from ..formats.pack import adapterhub_manifest_from, read_json

    meta = read_json(directory / "adapter_config.json")
    if not isinstance(meta, dict):
        raise InvalidPackageError(f"{where}: adapter_config.json in the archive is not a JSON object")
    present = [p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()]
    manifest = adapterhub_manifest_from(meta, None, present, name, version, where)
    manifest.pop("created", None)
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "README.md"]
    for entry in manifest["files"]:
        sha, size = file_digest(directory / entry["path"])
        entry["sha256"], entry["size"] = sha, size
    manifest = validate_manifest(manifest, where)
    raw = dumps_manifest(manifest)
    source = f"{url}{ARCHIVE_PIN}{directory.name}"
    return Resolved(name, manifest["version"], source, manifest, raw, sha256_bytes(raw), local_dir=directory)


def archive_url(url: str, mirror: str | None) -> str:
    """The archive's URL, or its path under a mirror of AdapterHub's file server (the setting
    ADAPTERS_ADAPTERHUB_MIRROR: the original server may not answer any more; the index's sha256 still
    decides what is accepted)."""
    if not mirror:
        return url
    from urllib.parse import urlsplit

    return mirror.rstrip("/") + urlsplit(url).path


def _archive_size(session: Session, url: str, label: str) -> int:
    """The archive's length (a HEAD request), refused past MAX_ARCHIVE_BYTES before any byte is fetched."""
    from ..net import check_url, redact

    check_url(url)
    try:
        response = session.default_http().head(url, follow_redirects=True)
    except Exception as exc:  # httpx transport errors
        raise RegistryError(f"{label}: cannot reach {redact(url)} ({type(exc).__name__})") from None
    if response.status_code == 404:
        from ..errors import NotFoundError

        raise NotFoundError(f"{label}: {redact(url)} not found")
    if response.status_code != 200:
        raise RegistryError(f"{label}: HTTP {response.status_code} from {redact(url)}")
    try:
        size = int(response.headers.get("Content-Length", ""))
    except ValueError:
        raise RegistryError(f"{label}: {redact(url)} does not say its length") from None
    if size > MAX_ARCHIVE_BYTES:
        raise InvalidPackageError(f"{label}: the archive is {size} bytes; at most {MAX_ARCHIVE_BYTES} are accepted")
    return size
