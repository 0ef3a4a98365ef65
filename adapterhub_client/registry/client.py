"""A registry client: config, sparse-index look-ups, manifests, reverse index, search lines."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from packaging.version import Version

from .._fs import sha256_bytes
from ..config import RegistrySpec
from ..errors import IntegrityError, InvalidPackageError, NotFoundError, OfflineMissError, RegistryError
from ..manifest import MAX_MANIFEST_BYTES, canonical_name, loads_manifest, parse_version, validate_schema
from . import layout
from .transport import Transport

# The most bytes read of each kind of registry file (decompressed, counted while streaming; REGISTRY.md
# lists them). A file past its limit is refused (InvalidPackageError, exit 7) before it is read whole.
MAX_CONFIG_BYTES = 1024 * 1024  # config.json: a few keys
MAX_INDEX_BYTES = 16 * 1024 * 1024  # one name's sparse-index file: tens of thousands of versions
MAX_SEARCH_BYTES = 64 * 1024 * 1024  # search.jsonl: one line per adapter of the registry
MAX_BASE_INDEX_BYTES = 16 * 1024 * 1024  # one base model's reverse-index file
CONFIG_MAX_AGE = 600.0  # config.json rarely changes: revalidate it at most every 10 minutes


@dataclasses.dataclass
class IndexEntry:
    """One published version, as listed in the sparse index."""

    data: dict[str, Any]
    version: Version
    registry: RegistryClient

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def yanked(self) -> bool:
        return bool(self.data.get("yanked"))

    @property
    def manifest_sha256(self) -> str:
        return self.data["manifest"]["sha256"]

    @property
    def manifest_size(self) -> int:
        return int(self.data["manifest"]["size"])

    @property
    def dependencies(self) -> list[dict[str, str]]:
        return list(self.data.get("deps", []))

    @property
    def base_fingerprint(self) -> str | None:
        return (self.data.get("base") or {}).get("fingerprint")


def parse_jsonl(raw: bytes, where: str) -> Iterator[dict[str, Any]]:
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            raise InvalidPackageError(f"{where} line {lineno}: malformed index line (not JSON)") from None
        if not isinstance(item, dict):
            raise InvalidPackageError(f"{where} line {lineno}: malformed index line (not an object)")
        yield item


class RegistryClient:
    def __init__(self, spec: RegistrySpec, transport: Transport) -> None:
        self.spec = spec
        self.transport = transport

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.transport.url

    @cached_property
    def config(self) -> dict[str, Any]:
        try:
            raw = self.transport.get(
                layout.CONFIG_PATH, limit=MAX_CONFIG_BYTES, what="registry config", max_age=CONFIG_MAX_AGE
            )
        except OfflineMissError:
            raise
        except NotFoundError:
            if self.transport.reads_locally:
                return {"protocol": layout.PROTOCOL_VERSION}  # an empty local registry
            # not "not found": skipping it would let a later registry serve names this one owns
            raise RegistryError(f"{self.url} is not an adapter registry (no {layout.CONFIG_PATH})") from None
        where = self.transport.location(layout.CONFIG_PATH)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidPackageError(f"{where}: not valid JSON") from None
        validate_schema(data, "registry-config", where)
        return data

    def blob_url(self, sha256: str) -> str:
        base = urljoin(self.url, self.config.get("blobs", "blobs/"))
        if not base.endswith("/"):
            base += "/"
        if not self.transport.reads_locally and not base.startswith(("http://", "https://")):
            # a remote registry must not point clients at files of their own machine
            raise InvalidPackageError(f"{self.url}config.json: 'blobs' must be an http(s) URL, not {base!r}")
        return urljoin(base, layout.blob_path(sha256)[len("blobs/") :])

    def entries(self, name: str) -> list[IndexEntry]:
        """Every version of `name` (canonical) listed here; NotFoundError if none."""
        self.config  # noqa: B018 - fail early with a clear message on a non-registry URL
        path = layout.index_path(name)
        raw = self.transport.get(path, limit=MAX_INDEX_BYTES, what="index file")
        where = self.transport.location(path)
        entries: list[IndexEntry] = []
        for item in parse_jsonl(raw, where):
            validate_schema(item, "index-entry", where)
            if item["name"] != name:
                raise InvalidPackageError(f"{where}: line for {item['name']!r} in the index of {name!r}")
            entries.append(IndexEntry(item, parse_version(item["version"], where), self))
        return entries

    def read_blob(self, sha256: str, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A whole (small) blob such as a manifest, at most `limit` bytes, verified against its digest."""
        raw = self.transport.get_url(self.blob_url(sha256), limit=limit, what="manifest")
        if sha256_bytes(raw) != sha256:
            raise IntegrityError(f"blob {sha256} from {self.name}: content does not match its sha256")
        return raw

    def manifest_from_bytes(self, entry: IndexEntry, raw: bytes) -> dict[str, Any]:
        where = f"manifest of {entry.name} {entry.version} from {self.name}"
        if len(raw) != entry.manifest_size:
            raise IntegrityError(f"{where}: {len(raw)} bytes, the index lists {entry.manifest_size}")
        manifest = loads_manifest(raw, where)
        if canonical_name(manifest["name"]) != entry.name or parse_version(manifest["version"]) != entry.version:
            raise InvalidPackageError(f"{where}: names {manifest['name']} {manifest['version']} instead")
        return manifest

    def by_base(self, fingerprint: str) -> list[dict[str, Any]]:
        """Entries of the reverse index for one base-model fingerprint (one request)."""
        path = layout.base_index_path(fingerprint)
        try:
            raw = self.transport.get(path, limit=MAX_BASE_INDEX_BYTES, what="reverse index file")
        except NotFoundError:
            return []
        return list(parse_jsonl(raw, self.transport.location(path)))

    def search_lines(self) -> list[dict[str, Any]]:
        try:
            raw = self.transport.get(layout.SEARCH_PATH, limit=MAX_SEARCH_BYTES, what="search file")
        except NotFoundError:
            return []
        return list(parse_jsonl(raw, self.transport.location(layout.SEARCH_PATH)))

    @property
    def local_root(self) -> Path | None:
        """The registry's directory when it is one on this machine (the only kind we publish to)."""
        return self.transport.local_root

    @property
    def reads_locally(self) -> bool:
        """Reads stay on this machine, so offline mode allows them."""
        return self.transport.reads_locally

    def pinned(self, name: str, version: str, manifest: dict[str, Any]) -> IndexEntry:
        """The entry a lockfile pins (`manifest`: its sha256 and size), built without reading the index:
        `--frozen` installs exactly what was locked."""
        data = {"name": name, "version": version, "manifest": dict(manifest), "yanked": False}
        return IndexEntry(data, parse_version(version), self)

    def close(self) -> None:
        self.transport.close()
