"""An OCI registry configured by name with a prefix (`adapters registry add team oci://ghcr.io/acme`), behind
the same interface as a sparse-index registry (`RegistryClient`): adapter `org/name` lives in repository
`<prefix>/org/name`, its versions are its version tags, and an entry's manifest is the artifact's config
blob (fetched when first needed, its digest from the image manifest). OCI registries have no search: a
prefixed registry answers name look-ups only."""

from __future__ import annotations

import functools
from typing import Any

from packaging.version import InvalidVersion, Version

from ..config import RegistrySpec
from ..errors import InvalidPackageError, NotFoundError
from ..manifest import MAX_MANIFEST_BYTES, canonical_name, loads_manifest, parse_version
from ..refs import OciRef, parse_oci_ref
from .client import IndexEntry
from .oci import ANN_BASE_FINGERPRINT, Artifact, Descriptor, OciClient


def prefix_ref(url: str) -> tuple[OciRef, str]:
    """(the registry host's reference, the repository prefix) of `oci://host[:port]/prefix/`."""
    body = url[len("oci://") :].rstrip("/")
    host, _, prefix = body.partition("/")
    ref = parse_oci_ref(f"oci://{host}/{prefix or 'x'}")  # validates the host and the prefix
    return ref, (prefix + "/" if prefix else "")


class OciIndexEntry(IndexEntry):
    """One version tag of a repository; its manifest's digest and size come from the image manifest."""

    @functools.cached_property
    def artifact(self) -> Artifact:
        registry = self.registry
        assert isinstance(registry, OciIndex)
        return registry.oci.get_manifest(registry.repository(self.name), str(self.data["tag"]))

    @property
    def manifest_sha256(self) -> str:
        if "manifest" in self.data:
            return str(self.data["manifest"]["sha256"])
        if not self.artifact.is_package:
            raise InvalidPackageError(f"{self.name} {self.version}: the OCI artifact holds no adapter manifest")
        return self.artifact.config.sha256

    @property
    def manifest_size(self) -> int:
        if "manifest" in self.data:
            return int(self.data["manifest"]["size"])
        return int(self.artifact.config.size)

    @property
    def dependencies(self) -> list[dict[str, str]]:
        registry = self.registry
        assert isinstance(registry, OciIndex)
        manifest = registry.entry_manifest(self)
        return [
            {"name": canonical_name(d["name"]), "specifier": d.get("specifier", "")}
            for d in manifest.get("dependencies", [])
        ]

    @property
    def base_fingerprint(self) -> str | None:
        found = self.artifact.annotations.get(ANN_BASE_FINGERPRINT)
        return found if isinstance(found, str) and found else None


class OciIndex:
    """`RegistryClient`'s interface over an OCI registry with a repository prefix."""

    def __init__(self, spec: RegistrySpec, oci: OciClient, prefix: str) -> None:
        self.spec = spec
        self.oci = oci
        self.prefix = prefix
        self._repo_of_blob: dict[str, str] = {}  # manifest sha256 -> repository (read_blob has no name)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def url(self) -> str:
        return self.spec.url

    reads_locally = False
    local_root = None

    def repository(self, name: str) -> str:
        return self.prefix + canonical_name(name)

    def entries(self, name: str) -> list[IndexEntry]:
        repository = self.repository(name)
        try:
            tags = self.oci.list_tags(repository)
        except NotFoundError:
            raise NotFoundError(f"{name}: not in {self.name} ({self.url})") from None
        out: list[IndexEntry] = []
        for tag in tags:
            try:
                version = Version(tag)
            except InvalidVersion:
                continue  # `latest`, `main`: not versions
            if version.local is None:
                data = {"name": name, "version": str(version), "tag": tag}
                out.append(OciIndexEntry(data, version, self))  # type: ignore[arg-type]  # RegistryClient's interface
        if not out:
            raise NotFoundError(f"{name}: no version tags in {self.name} ({self.url}{name})")
        return out

    def entry_manifest(self, entry: OciIndexEntry) -> dict[str, Any]:
        raw = self.read_blob(entry.manifest_sha256, limit=min(entry.manifest_size, MAX_MANIFEST_BYTES), entry=entry)
        return self.manifest_from_bytes(entry, raw)

    def read_blob(self, sha256: str, limit: int = MAX_MANIFEST_BYTES, entry: IndexEntry | None = None) -> bytes:
        repository = self._repo_of_blob.get(sha256) or (self.repository(entry.name) if entry else None)
        if repository is None:
            raise NotFoundError(f"{self.name}: blob {sha256[:12]}… is not known to belong to any adapter")
        self._repo_of_blob[sha256] = repository
        return self.oci.read_blob(repository, Descriptor("", f"sha256:{sha256}", limit), limit, "the adapter manifest")

    def manifest_from_bytes(self, entry: IndexEntry, raw: bytes) -> dict[str, Any]:
        where = f"manifest of {entry.name} {entry.version} from {self.name}"
        if len(raw) != entry.manifest_size:
            raise InvalidPackageError(f"{where}: {len(raw)} bytes, the image manifest lists {entry.manifest_size}")
        manifest = loads_manifest(raw, where)
        if canonical_name(manifest["name"]) != entry.name or parse_version(manifest["version"]) != entry.version:
            raise InvalidPackageError(f"{where}: names {manifest['name']} {manifest['version']} instead")
        for f in manifest["files"]:  # every blob of this adapter lives in its repository
            self._repo_of_blob[f["sha256"]] = self.repository(entry.name)
        return manifest

    def blob_url(self, sha256: str) -> str:
        repository = self._repo_of_blob.get(sha256)
        if repository is None:
            raise NotFoundError(f"{self.name}: blob {sha256[:12]}… is not known to belong to any adapter")
        return self.oci.blob_url(repository, f"sha256:{sha256}")

    def pinned(self, name: str, version: str, manifest: dict[str, Any]) -> IndexEntry:
        data = {"name": name, "version": version, "tag": version, "manifest": dict(manifest), "yanked": False}
        self._repo_of_blob[str(manifest["sha256"])] = self.repository(name)
        return OciIndexEntry(data, parse_version(version), self)  # type: ignore[arg-type]  # its interface

    def by_base(self, fingerprint: str) -> list[dict[str, Any]]:
        return []  # OCI registries have no reverse index

    def search_lines(self) -> list[dict[str, Any]]:
        return []  # nor a search file

    def close(self) -> None:
        return None
