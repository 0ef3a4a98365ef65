"""Adapters as OCI artifacts: a client for one OCI registry host (distribution spec v1.1).

Layout (ORAS conventions, so `oras pull` writes the package's files): an image manifest with
`artifactType: application/vnd.adapterhub.adapter.v1+json`, our manifest.json (canonical bytes) as the
config blob of media type `application/vnd.adapterhub.manifest.v1+json`, one layer per package file
(`application/vnd.oci.image.layer.v1.tar`, as ORAS pushes files, titled by its path), and annotations
for the version, creation time, description and base model fingerprint. An artifact pushed by other
tools (`oras push host/repo:tag adapter_config.json adapter_model.safetensors`, config `{}`) is read too:
`Artifact.files` lists (title, digest, size) so the caller can derive a manifest as for a PEFT directory.

Every answer is bounded, every digest checked: a manifest against the sha256 of the bytes read (and the
registry's Docker-Content-Digest), blobs by the downloader. A push uploads what the registry lacks and
the manifest last, so a failed push leaves no tag; an existing tag with other content is refused.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .._fs import sha256_bytes
from ..errors import IntegrityError, InvalidPackageError, NotFoundError, RegistryError
from ..manifest import MAX_MANIFEST_BYTES, check_relative_path, dumps_manifest, loads_manifest, validate_manifest
from ..net import (
    RETRIES,
    Answer,
    Retry,
    check_url,
    client_timeout,
    make_client,
    raise_for_retry,
    read_body,
    retry_delay,
    retrying,
)
from ..refs import (  # references are parsed where every reference is (refs.py); re-exported here
    DIGEST,
    SCHEME,
    TAG,
    OciRef,
    check_repository,
    check_tag,
    is_oci_ref,
    parse_oci_ref,
    version_tag,
)
from .oci_auth import Credentials, RegistryAuth


class BlobFetcher(Protocol):
    """What `fetch_files` needs of `store.download.Downloader` (named here, not imported: store reads registry)."""

    def fetch(
        self,
        url: str,
        sha256: str,
        size: int,
        label: str,
        progress: Callable[[int], None] | None = None,
        client: httpx.Client | None = None,
    ) -> Path: ...


IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# the least wait before a new tag is read back to see whether a concurrent push overwrote it
RACE_SETTLE_S = 0.02
ARTIFACT_TYPE = "application/vnd.adapterhub.adapter.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.adapterhub.manifest.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"  # what ORAS uses for a file
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
ANN_TITLE = "org.opencontainers.image.title"
ANN_VERSION = "org.opencontainers.image.version"
ANN_CREATED = "org.opencontainers.image.created"
ANN_DESCRIPTION = "org.opencontainers.image.description"
ANN_BASE_FINGERPRINT = "io.adapterhub.base.fingerprint"
ANN_BASE_ARCHITECTURE = "io.adapterhub.base.architecture"
# A package's signature (model.sig, a Sigstore bundle) attached to its manifest, as cosign attaches one:
# an artifact of this type whose `subject` is the package manifest, found through the referrers API or,
# on registries without it (docker-registry 2.8), the tag-schema fallback: an image index at `sha256-<hex>`.
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IMAGE_INDEX = "application/vnd.oci.image.index.v1+json"
MAX_SIGNATURE_BYTES = 16 * 1024 * 1024


MAX_OCI_MANIFEST_BYTES = 4 * 1024 * 1024  # the size registries must accept, and no more
MAX_TAG_PAGE_BYTES = 4 * 1024 * 1024
MAX_TAGS = 100_000  # tags read from one repository
TAG_PAGE = 1000  # tags asked for per page
MAX_ERROR_BYTES = 64 * 1024  # an error body read for its message
# blobs up to this go in one PUT; larger ones in PATCH chunks of this size (16 MiB: on loopback docker-registry
# a 50 MB push took 0.87x the time of 8 MiB chunks, 0.6x that of 2 MiB, and one 50 MB PUT was slower still)
CHUNK_BYTES = 16 * 1024 * 1024
MAX_UPLOAD_RESTARTS = 3  # fresh upload sessions after the registry lost one


def pick_version(tags: Iterable[str], specifier: SpecifierSet | None) -> tuple[Version, str] | None:
    """The highest version among `tags` allowed by `specifier` (pre-releases only if it names one)."""
    spec = specifier if specifier is not None else SpecifierSet()
    allow_pre = bool(spec.prereleases)
    best: tuple[Version, str] | None = None
    for tag in tags:
        try:
            version = Version(tag)
        except InvalidVersion:
            continue
        if version.local is not None or not spec.contains(version, prereleases=allow_pre):
            continue
        if best is None or version > best[0]:
            best = (version, tag)
    return best


# --- artifacts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class OciFile:
    """One package file of an artifact: a layer named by its `org.opencontainers.image.title`."""

    title: str
    digest: str
    size: int
    media_type: str

    @property
    def sha256(self) -> str:
        return self.digest.split(":", 1)[1]


@dataclass(frozen=True)
class Artifact:
    """An image manifest read from a registry, checked against its digest."""

    repository: str
    digest: str  # of the manifest bytes
    raw: bytes
    artifact_type: str | None
    config: Descriptor
    files: list[OciFile]
    annotations: dict[str, str]

    @property
    def is_package(self) -> bool:
        """Pushed by us: the config blob is our manifest.json."""
        return self.config.media_type == CONFIG_MEDIA_TYPE


def _descriptor(data: Any, where: str) -> Descriptor:
    if not isinstance(data, dict):
        raise InvalidPackageError(f"{where}: expected a descriptor object")
    media_type, digest, size = data.get("mediaType"), data.get("digest"), data.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise InvalidPackageError(f"{where}: no mediaType")
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise InvalidPackageError(f"{where}: digest {str(digest)[:80]!r} is not sha256:<64 hex> (the only kind read)")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidPackageError(f"{where}: size must be a non-negative integer")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise InvalidPackageError(f"{where}: annotations must map strings to strings")
    return Descriptor(media_type, digest, size, dict(annotations))


def parse_artifact(raw: bytes, digest: str, repository: str, where: str) -> Artifact:
    """An OCI image manifest -> Artifact, its layers as titled files (unique, safe relative paths)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidPackageError(f"{where}: the manifest is not valid JSON") from None
    if not isinstance(data, dict) or data.get("schemaVersion") != 2:
        raise InvalidPackageError(f"{where}: not an image manifest (schemaVersion 2)")
    media_type = data.get("mediaType", IMAGE_MANIFEST)
    if media_type != IMAGE_MANIFEST:
        raise InvalidPackageError(f"{where}: media type {str(media_type)[:100]!r} is not an OCI image manifest")
    config = _descriptor(data.get("config"), f"{where}: config")
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise InvalidPackageError(f"{where}: no layers list")
    files: list[OciFile] = []
    seen: set[str] = set()
    for i, layer in enumerate(layers):
        desc = _descriptor(layer, f"{where}: layers/{i}")
        title = desc.annotations.get(ANN_TITLE)
        if not title:
            raise InvalidPackageError(f"{where}: layers/{i} ({desc.digest[:19]}) has no {ANN_TITLE} annotation")
        check_relative_path(title, f"{where}: layers/{i} title")
        if title in seen:
            raise InvalidPackageError(f"{where}: layers/{i}: duplicate title {title!r}")
        seen.add(title)
        files.append(OciFile(title, desc.digest, desc.size, desc.media_type))
    artifact_type = data.get("artifactType")
    annotations = data.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise InvalidPackageError(f"{where}: annotations must be an object")
    return Artifact(
        repository,
        digest,
        raw,
        artifact_type if isinstance(artifact_type, str) else None,
        config,
        files,
        {k: v for k, v in annotations.items() if isinstance(k, str) and isinstance(v, str)},
    )


def build_artifact_manifest(manifest: dict[str, Any], config: bytes) -> bytes:
    """The image manifest for a completed package manifest (canonical bytes: equal packages, equal digests)."""
    annotations = {ANN_VERSION: str(manifest["version"])}
    if isinstance(manifest.get("created"), str) and manifest["created"]:
        annotations[ANN_CREATED] = manifest["created"]
    if isinstance(manifest.get("description"), str) and manifest["description"]:
        annotations[ANN_DESCRIPTION] = manifest["description"]
    fingerprint = (manifest.get("base_model") or {}).get("fingerprint") or {}
    if isinstance(fingerprint, dict):
        if isinstance(fingerprint.get("content"), str):
            annotations[ANN_BASE_FINGERPRINT] = fingerprint["content"]
        if isinstance(fingerprint.get("architecture"), str):
            annotations[ANN_BASE_ARCHITECTURE] = fingerprint["architecture"]
    data = {
        "schemaVersion": 2,
        "mediaType": IMAGE_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": f"sha256:{sha256_bytes(config)}", "size": len(config)},
        "layers": [
            {
                "mediaType": LAYER_MEDIA_TYPE,
                "digest": f"sha256:{f['sha256']}",
                "size": f["size"],
                "annotations": {ANN_TITLE: f["path"]},
            }
            for f in manifest["files"]
        ],
        "annotations": annotations,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _same_package(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal but for when and by what they were made (as a directory registry compares a republish)."""
    drop = ("created", "tool")
    return {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}


@dataclass
class PushResult:
    ref: str  # oci://host/repo@tag
    digest: str  # of the image manifest
    created: bool  # False: the tag already held this package
    uploaded: int = 0  # blobs sent
    skipped: int = 0  # blobs the registry had
    mounted: int = 0  # blobs mounted from another repository
    bytes_sent: int = 0


@dataclass
class _Blob:
    digest: str
    size: int
    path: Path | None = None  # a package file, or
    data: bytes | None = None  # bytes in memory (the config)

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + length]
        assert self.path is not None
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)


class _Dropped(Exception):
    """One try of a chunk failed in transport (or was asked to retry): the upload decides what next."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry_after = cause.retry_after if isinstance(cause, Retry) else None


def _upload_offset(value: str | None) -> int | None:
    """The next byte an upload session expects, from its `Range: 0-<last>` header (None: unreadable).
    distribution answers `0-0` both for nothing and for one byte; callers never send single bytes."""
    match = re.fullmatch(r"\s*(?:bytes=)?0-(-?\d+)\s*", value or "")
    if match is None:
        return None
    last = int(match.group(1))
    return last + 1 if last > 0 else 0


# --- the client ------------------------------------------------------------------------------------
class OciClient:
    """One registry host: tags, manifests, blobs, push. `http` becomes this registry's client (its auth
    is set to this registry's `RegistryAuth`); pass it to the downloader with `blob_url`."""

    def __init__(
        self,
        registry_url: str,
        *,
        credentials: Credentials | None = None,
        http: httpx.Client | None = None,
        chunk_size: int = CHUNK_BYTES,
    ) -> None:
        check_url(registry_url)
        self.url = registry_url.rstrip("/")
        self.host = urlsplit(self.url).netloc
        self.auth = RegistryAuth(self.url, credentials)
        self.http = http if http is not None else make_client()
        self.http.auth = self.auth
        self.chunk_size = max(int(chunk_size), 2)  # a 1-byte chunk would make distribution's Range ambiguous

    @classmethod
    def for_ref(
        cls, ref: OciRef, *, credentials: Credentials | None = None, http: httpx.Client | None = None
    ) -> OciClient:
        return cls(ref.url, credentials=credentials, http=http)

    # --- requests ----------------------------------------------------------------------------------
    def _once(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        limit: int = MAX_ERROR_BYTES,
        what: str,
    ) -> Answer:
        """One request, answered again once after a 401 challenge was met (credentials or a token)."""
        for _ in range(2):
            with self.http.stream(method, url, headers=headers, content=content) as response:
                raise_for_retry(response)
                status = response.status_code
                if status == 401 and self.auth.answer(response, self.http):
                    continue
                ok = 200 <= status < 300
                body = read_body(response, limit if ok else MAX_ERROR_BYTES, what) if method != "HEAD" else b""
                return Answer(status, response.headers, body)
        return Answer(401, response.headers, b"")

    def _request(self, method: str, url: str, what: str, **kw: Any) -> Answer:
        """`_once` inside the retry loop (drops, 429 and 5xx retried, Retry-After honoured, the deadline)."""
        return retrying(what, url, lambda: self._once(method, url, what=what, **kw), timeout=client_timeout(self.http))

    def _fail(self, answer: Answer, what: str, repository: str) -> Exception:
        """The error for an unexpected answer, naming the registry and what was asked."""
        where = f"{self.host}/{repository}"
        detail = _error_detail(answer.body)
        if answer.status == 401:
            hint = (
                "check the user name and password"
                if self.auth.credentials
                else "log in (`adapters login`) or set ADAPTERS_USERNAME / ADAPTERS_PASSWORD"
            )
            return RegistryError(f"{where}: authentication failed for {what} (HTTP 401{detail}); {hint}")
        if answer.status == 403:
            return RegistryError(f"{where}: access denied for {what} (HTTP 403{detail})")
        if answer.status == 404:
            return NotFoundError(f"{where}: {what}: not found (HTTP 404{detail})")
        return RegistryError(f"{where}: {what}: unexpected HTTP {answer.status}{detail}")

    def _repo_url(self, repository: str, rest: str) -> str:
        return f"{self.url}/v2/{check_repository(repository)}/{rest}"

    def _absolute(self, location: str | None, repository: str) -> str:
        if not location:
            raise RegistryError(f"{self.host}/{repository}: the registry sent no upload Location")
        url = urljoin(self.url + "/", location)
        check_url(url)
        return url

    # --- reading -----------------------------------------------------------------------------------
    def ping(self) -> None:
        """`GET /v2/`: the registry speaks the distribution API (200, or 401 before credentials)."""
        answer = self._request("GET", f"{self.url}/v2/", "the registry's /v2/ endpoint")
        if answer.status not in (200, 401):
            raise RegistryError(f"{self.host}: /v2/ answered HTTP {answer.status}; is this an OCI registry?")

    def check_login(self) -> None:
        """`GET /v2/` with the credentials: 200, else RegistryError (they are refused)."""
        answer = self._request("GET", f"{self.url}/v2/", "the registry's /v2/ endpoint")
        if answer.status in (401, 403):
            raise RegistryError(f"{self.host} refused the credentials (HTTP {answer.status}); nothing was stored")
        if answer.status != 200:
            raise RegistryError(f"{self.host}: /v2/ answered HTTP {answer.status}; is this an OCI registry?")

    def list_tags(self, repository: str, *, page: int = TAG_PAGE) -> list[str]:
        """Every tag of a repository, page by page (`n`, `last`, the Link header), at most MAX_TAGS."""
        url: str | None = self._repo_url(repository, f"tags/list?n={int(page)}")
        tags: list[str] = []
        pages = 0
        while url is not None:
            pages += 1
            answer = self._request("GET", url, "the tag list", limit=MAX_TAG_PAGE_BYTES)
            if answer.status != 200:
                raise self._fail(answer, "listing tags", repository)
            try:
                data = json.loads(answer.body)
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise RegistryError(f"{self.host}/{repository}: the tag list is not valid JSON") from None
            page_tags = data.get("tags") if isinstance(data, dict) else None
            if page_tags is None:
                page_tags = []
            if not isinstance(page_tags, list) or not all(isinstance(t, str) for t in page_tags):
                raise RegistryError(f"{self.host}/{repository}: the tag list has no list of strings")
            tags += [t for t in page_tags if TAG.fullmatch(t)]
            if len(tags) > MAX_TAGS or pages > MAX_TAGS:
                raise RegistryError(f"{self.host}/{repository}: more than {MAX_TAGS} tags")
            url = self._next_page(answer.headers.get("Link"), url, repository)
            if not page_tags:
                break
        return tags

    def _next_page(self, link: str | None, current: str, repository: str) -> str | None:
        match = re.search(r'<([^>]*)>\s*;\s*rel="?next"?', link or "")
        if match is None:
            return None
        url = urljoin(current, match.group(1))
        if urlsplit(url)[:2] != urlsplit(self.url)[:2]:
            raise RegistryError(f"{self.host}/{repository}: the tag list's next page is on another host")
        return url

    def resolve(self, ref: OciRef) -> str:
        """The tag or digest to fetch for a reference (a range picks the highest allowed version tag)."""
        if ref.digest or ref.tag:
            return ref.digest or ref.tag  # type: ignore[return-value]
        picked = pick_version(self.list_tags(ref.repository), ref.specifier)
        if picked is None:
            wanted = f" matching {ref.specifier}" if ref.specifier else ""
            raise NotFoundError(f"{self.host}/{ref.repository}: no version tag{wanted}")
        return picked[1]

    def artifact(self, ref: OciRef) -> Artifact:
        return self.get_manifest(ref.repository, self.resolve(ref))

    def get_manifest(self, repository: str, reference: str) -> Artifact:
        """The image manifest at a tag or digest, its bytes checked against their digest."""
        raw, digest = self._manifest_bytes(repository, reference, IMAGE_MANIFEST)
        return parse_artifact(raw, digest, repository, f"{self.host}/{repository}@{reference}")

    def _manifest_bytes(self, repository: str, reference: str, accept: str) -> tuple[bytes, str]:
        """(bytes, digest) of the manifest or index at a tag or digest, checked against the digest."""
        if not DIGEST.fullmatch(reference):
            check_tag(reference)
        url = self._repo_url(repository, f"manifests/{reference}")
        what = f"manifest {reference}"
        answer = self._request("GET", url, what, headers={"Accept": accept}, limit=MAX_OCI_MANIFEST_BYTES)
        if answer.status != 200:
            raise self._fail(answer, f"the {what}", repository)
        digest = f"sha256:{sha256_bytes(answer.body)}"
        sent = answer.headers.get("Docker-Content-Digest")
        where = f"{self.host}/{repository}@{reference}"
        if sent and sent.strip() != digest:
            raise IntegrityError(f"{where}: the manifest's bytes hash to {digest}, the registry says {sent[:80]}")
        if DIGEST.fullmatch(reference) and reference != digest:
            raise IntegrityError(f"{where}: the manifest's bytes hash to {digest}, not the digest asked for")
        return answer.body, digest

    def blob_url(self, repository: str, digest: str) -> str:
        if not DIGEST.fullmatch(digest):
            raise InvalidPackageError(f"blob digest {digest[:80]!r} is not sha256:<64 hex>")
        return self._repo_url(repository, f"blobs/{digest}")

    def read_blob(self, repository: str, desc: Descriptor, limit: int, what: str) -> bytes:
        """A small blob in memory (a config), refused past `limit` and checked against its digest and size."""
        if desc.size > limit:
            raise InvalidPackageError(f"{self.host}/{repository}: {what} of {desc.size} bytes, over {limit}")
        answer = self._request("GET", self.blob_url(repository, desc.digest), what, limit=limit)
        if answer.status != 200:
            raise self._fail(answer, what, repository)
        got = sha256_bytes(answer.body)
        if got != desc.sha256 or len(answer.body) != desc.size:
            raise IntegrityError(
                f"{self.host}/{repository}: {what} does not match its digest "
                f"(expected {desc.digest[:19]}…, {desc.size} bytes; got sha256:{got[:12]}…, {len(answer.body)} bytes)"
            )
        return answer.body

    def package_manifest(self, artifact: Artifact) -> dict[str, Any] | None:
        """Our manifest.json from the config blob, validated and matching the layers; None for an
        artifact of another tool (derive one from `artifact.files`)."""
        if not artifact.is_package:
            return None
        where = f"{self.host}/{artifact.repository}@{artifact.digest[:19]}"
        raw = self.read_blob(artifact.repository, artifact.config, MAX_MANIFEST_BYTES, "the package manifest")
        manifest = loads_manifest(raw, f"{where}: manifest.json")
        listed = {(f["path"], f["sha256"], f["size"]) for f in manifest["files"]}
        layers = {(f.title, f.sha256, f.size) for f in artifact.files}
        if listed != layers:
            raise InvalidPackageError(f"{where}: the layers do not match the files manifest.json lists")
        return manifest

    def prepare_blob_auth(self, url: str, what: str) -> None:
        """Meet the registry's challenge for a blob before the downloader streams it (a token for it)."""
        if self.auth.in_use and self.auth.header_for("GET", urlsplit(url).path) is None:
            self._request("HEAD", url, what)

    def fetch_files(
        self, artifact: Artifact, downloader: BlobFetcher, progress: Callable[[int], None] | None = None
    ) -> dict[str, Path]:
        """Each file of an artifact through the verified, resumable downloader: title -> cached blob."""
        out: dict[str, Path] = {}
        for f in artifact.files:
            url = self.blob_url(artifact.repository, f.digest)
            self.prepare_blob_auth(url, f"blob {f.title}")  # a token for the downloader
            label = f"{self.host}/{artifact.repository} {f.title}"
            out[f.title] = downloader.fetch(url, f.sha256, f.size, label, progress, client=self.http)
        return out

    # --- signatures: artifacts whose subject is a package manifest -----------------------------------
    def push_signature(self, repository: str, subject: Artifact, bundle: bytes) -> str:
        """Attach `bundle` (model.sig) to `subject` as a signature artifact (its `subject` field names the
        package manifest), listed in the referrers fallback index `sha256-<hex>` when the registry does not
        index referrers itself (no `OCI-Subject` header); returns the signature manifest's digest."""
        empty = b"{}"
        config = _Blob(f"sha256:{sha256_bytes(empty)}", len(empty), data=empty)
        layer = _Blob(f"sha256:{sha256_bytes(bundle)}", len(bundle), data=bundle)
        result = PushResult(f"{SCHEME}{self.host}/{repository}@{subject.digest}", subject.digest, created=True)
        for blob in (config, layer):
            self._ensure_blob(repository, blob, None, result)
        manifest = {
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST,
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
            "config": {"mediaType": EMPTY_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [{"mediaType": SIGNATURE_ARTIFACT_TYPE, "digest": layer.digest, "size": layer.size}],
            "subject": {"mediaType": IMAGE_MANIFEST, "digest": subject.digest, "size": len(subject.raw)},
        }
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = f"sha256:{sha256_bytes(body)}"
        answer = self._request(
            "PUT",
            self._repo_url(repository, f"manifests/{digest}"),
            "the signature manifest",
            headers={"Content-Type": IMAGE_MANIFEST},
            content=body,
        )
        if answer.status not in (200, 201):
            raise self._fail(answer, "pushing the signature manifest", repository)
        if not answer.headers.get("OCI-Subject"):
            entry = {"mediaType": IMAGE_MANIFEST, "digest": digest, "size": len(body)}
            self._add_referrer(repository, subject.digest, {**entry, "artifactType": SIGNATURE_ARTIFACT_TYPE})
        return digest

    def _add_referrer(self, repository: str, subject_digest: str, entry: dict[str, Any]) -> None:
        tag = referrers_tag(subject_digest)
        empty: dict[str, Any] = {"schemaVersion": 2, "mediaType": IMAGE_INDEX, "manifests": []}
        index = self._referrers_index(repository, tag) or empty
        if any(m.get("digest") == entry["digest"] for m in index["manifests"]):
            return
        index["manifests"].append(entry)
        answer = self._request(
            "PUT",
            self._repo_url(repository, f"manifests/{tag}"),
            f"the referrers index {tag}",
            headers={"Content-Type": IMAGE_INDEX},
            content=json.dumps(index, sort_keys=True, separators=(",", ":")).encode(),
        )
        if answer.status not in (200, 201):
            raise self._fail(answer, f"pushing the referrers index {tag}", repository)

    def _referrers_index(self, repository: str, tag: str) -> dict[str, Any] | None:
        try:
            raw, _ = self._manifest_bytes(repository, tag, IMAGE_INDEX)
        except NotFoundError:
            return None
        try:
            index = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            index = None
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise InvalidPackageError(f"{self.host}/{repository}@{tag}: not an image index")
        return index

    def signatures(self, repository: str, subject_digest: str) -> list[Descriptor]:
        """The signature artifacts attached to a manifest: from the referrers API, else the fallback tag."""
        answer = self._request(
            "GET",
            self._repo_url(repository, f"referrers/{subject_digest}"),
            "the referrers list",
            headers={"Accept": IMAGE_INDEX},
            limit=MAX_OCI_MANIFEST_BYTES,
        )
        index: dict[str, Any] | None = None
        if answer.status == 200:
            with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
                index = json.loads(answer.body)
        if not isinstance(index, dict) or not index.get("manifests"):
            index = self._referrers_index(repository, referrers_tag(subject_digest))
        where = f"{self.host}/{repository}: referrers of {subject_digest[:19]}"
        found = []
        for i, m in enumerate((index or {}).get("manifests") or []):
            if isinstance(m, dict) and m.get("artifactType") == SIGNATURE_ARTIFACT_TYPE:
                found.append(_descriptor(m, f"{where}: manifests/{i}"))
        return found

    def read_signature(self, repository: str, desc: Descriptor) -> tuple[str, bytes]:
        """(subject digest, bundle bytes) of a signature artifact, every digest checked."""
        raw, _ = self._manifest_bytes(repository, desc.digest, IMAGE_MANIFEST)
        where = f"{self.host}/{repository}@{desc.digest[:19]}"
        try:
            data = json.loads(raw)
            layers, subject = data["layers"], data["subject"]["digest"]
        except (ValueError, UnicodeDecodeError, RecursionError, KeyError, TypeError):
            raise InvalidPackageError(f"{where}: not a signature artifact (no layers and subject)") from None
        if not isinstance(layers, list) or len(layers) != 1:
            raise InvalidPackageError(f"{where}: a signature artifact holds exactly one layer")
        layer = _descriptor(layers[0], f"{where}: layers/0")
        return str(subject), self.read_blob(repository, layer, MAX_SIGNATURE_BYTES, "the signature")

    # --- pushing -----------------------------------------------------------------------------------
    def push(
        self,
        repository: str,
        package_dir: str | Path,
        manifest: dict[str, Any],
        *,
        tag: str | None = None,
        force: bool = False,
        mount_from: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> PushResult:
        """Push a completed package as an artifact under `tag` (default: the version): its manifest validated,
        its files' sizes checked (the registry checks every uploaded byte against the listed sha256). Blobs
        the registry has are skipped (or mounted from `mount_from`);
        the manifest goes last. A tag holding other content is refused unless `force`. `progress` gets
        each blob's size once it is uploaded, skipped or mounted."""
        check_repository(repository)
        if mount_from is not None:
            check_repository(mount_from)
        manifest = validate_manifest(manifest)
        tag = check_tag(tag) if tag is not None else version_tag(manifest["version"])
        ref = f"{SCHEME}{self.host}/{repository}@{tag}"
        root = Path(package_dir)
        blobs: list[_Blob] = []
        for i, f in enumerate(manifest["files"]):
            if "sha256" not in f or "size" not in f:
                raise InvalidPackageError(f"{ref}: files/{i} ({f['path']}) has no sha256 and size; complete it first")
            path = root / f["path"]
            if path.is_symlink() or not path.is_file():
                raise InvalidPackageError(f"{path}: not a regular file")
            # not hashed again here: the registry hashes every byte it receives and refuses an upload whose
            # digest differs (`_digest_refused`), and a blob it already has is by its digest the listed bytes
            if path.stat().st_size != f["size"]:
                raise InvalidPackageError(f"{path}: does not match its size in manifest.json")
            blobs.append(_Blob(f"sha256:{f['sha256']}", f["size"], path=path))
        config = dumps_manifest(manifest)
        blobs.insert(0, _Blob(f"sha256:{sha256_bytes(config)}", len(config), data=config))
        body = build_artifact_manifest(manifest, config)
        digest = f"sha256:{sha256_bytes(body)}"

        if not force:
            held = self._held(repository, tag, ref, digest, manifest)
            if held is not None:
                return held
        result = PushResult(ref, digest, created=True)
        seen: set[str] = set()
        for blob in blobs:
            if blob.digest not in seen:
                seen.add(blob.digest)
                self._ensure_blob(repository, blob, mount_from, result)
                if progress is not None:
                    progress(blob.size)
        if not force:
            # the blobs took a while: another push of this tag may have landed meanwhile
            held = self._held(repository, tag, ref, digest, manifest)
            if held is not None:
                return held
        checked = time.monotonic()
        self._put_manifest(repository, tag, ref, body, digest)
        if not force:
            # a rival that checked just before our PUT lands its own PUT about as long after its check as
            # ours took: wait that long (twice, at least RACE_SETTLE_S) before reading the tag back
            time.sleep(max(2 * (time.monotonic() - checked), RACE_SETTLE_S))
            self._check_won(repository, tag, ref, digest, manifest)
        return result

    def _held(self, repository: str, tag: str, ref: str, digest: str, manifest: dict[str, Any]) -> PushResult | None:
        """What `tag` holds already: None if nothing; a not-created result if this package; refused if other."""
        existing = self._existing(repository, tag)
        if existing is None:
            return None
        if existing.digest == digest:
            return PushResult(ref, digest, created=False)
        old = self.package_manifest(existing) if existing.is_package else None
        if old is not None and _same_package(old, manifest):
            return PushResult(ref, existing.digest, created=False)
        raise InvalidPackageError(
            f"{ref} already holds other content ({existing.digest[:19]}…); push a new version or force it"
        )

    def _put_manifest(self, repository: str, tag: str, ref: str, body: bytes, digest: str) -> None:
        answer = self._request(
            "PUT",
            self._repo_url(repository, f"manifests/{tag}"),
            f"the manifest of {tag}",
            headers={"Content-Type": IMAGE_MANIFEST},
            content=body,
        )
        if answer.status not in (200, 201):
            raise self._fail(answer, f"pushing the manifest of {tag}", repository)
        sent = answer.headers.get("Docker-Content-Digest")
        if sent and sent.strip() != digest:
            raise IntegrityError(f"{ref}: the registry stored the manifest as {sent[:80]}, not {digest}")

    def _check_won(self, repository: str, tag: str, ref: str, digest: str, manifest: dict[str, Any]) -> None:
        """The distribution API has no create-only tag write: two pushes of one new tag can both PUT, and
        the last write stays. Read the tag back; a push whose package is not the one there lost."""
        try:
            if self._held(repository, tag, ref, digest, manifest) is not None:
                return
            held = "nothing"
        except InvalidPackageError:
            held = "another package"
        raise InvalidPackageError(
            f"{ref}: another push of this version won the race (the tag now holds {held}); push a new version"
        )

    def _existing(self, repository: str, tag: str) -> Artifact | None:
        try:
            return self.get_manifest(repository, tag)
        except NotFoundError:
            return None

    def _has_blob(self, repository: str, digest: str) -> bool:
        answer = self._request("HEAD", self.blob_url(repository, digest), f"blob {digest[:19]}")
        if answer.status == 200:
            return True
        if answer.status == 404:
            return False
        raise self._fail(answer, f"checking blob {digest[:19]}", repository)

    def _start_upload(self, repository: str, blob: _Blob, mount_from: str | None) -> str | None:
        """A new upload session's URL; None when the registry mounted the blob from `mount_from`."""
        query = f"?mount={blob.digest}&from={mount_from}" if mount_from else ""
        answer = self._request("POST", self._repo_url(repository, f"blobs/uploads/{query}"), "starting an upload")
        if mount_from and answer.status == 201:
            return None
        if answer.status != 202:
            raise self._fail(answer, f"starting the upload of {blob.digest[:19]}", repository)
        return self._absolute(answer.headers.get("Location"), repository)

    def _ensure_blob(self, repository: str, blob: _Blob, mount_from: str | None, result: PushResult) -> None:
        if self._has_blob(repository, blob.digest):
            result.skipped += 1
            return
        location = self._start_upload(repository, blob, mount_from)
        if location is None:
            result.mounted += 1
            return
        if blob.size <= self.chunk_size:
            data = blob.read(0, blob.size)
            answer = self._request(
                "PUT",
                _with_digest(location, blob.digest),
                f"uploading {blob.digest[:19]}",
                headers={"Content-Type": "application/octet-stream"},
                content=data,
            )
            if answer.status != 201:
                raise self._digest_refused(answer, blob) or self._fail(
                    answer, f"uploading blob {blob.digest[:19]}", repository
                )
            result.bytes_sent += len(data)
        else:
            result.bytes_sent += self._upload_chunked(repository, blob, location)
        result.uploaded += 1

    def _patch_once(self, url: str, data: bytes, offset: int, what: str) -> Answer:
        """One PATCH of a chunk; a drop or retryable status becomes `_Dropped` for the upload loop."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(data) - 1}",
        }
        return retrying(
            what,
            url,
            lambda: self._once("PATCH", url, headers=headers, content=data, what=what),
            tries=1,
            give_up=lambda exc, _tries: _Dropped(exc),
            timeout=client_timeout(self.http),
        )

    def _upload_status(self, url: str) -> int | None:
        """Where the registry's upload session stands (its Range), or None when it lost the session."""
        try:
            answer = self._request("GET", url, "the upload's status")
        except RegistryError:
            return None
        if answer.status != 204:
            return None
        return _upload_offset(answer.headers.get("Range"))

    def _upload_chunked(self, repository: str, blob: _Blob, location: str) -> int:
        """PATCH chunks; after a drop, resume from the offset the registry reports, or restart the
        session when the registry lost it (distribution drops a session a partial chunk reached)."""
        offset = sent = failures = restarts = 0
        what = f"uploading {blob.digest[:19]}"
        while offset < blob.size:
            data = blob.read(offset, min(self.chunk_size, blob.size - offset))
            try:
                answer = self._patch_once(location, data, offset, what)
            except _Dropped as dropped:
                failures += 1
                if failures >= RETRIES:
                    raise RegistryError(
                        f"{self.host}/{repository}: {what} failed after {failures} tries ({dropped.cause})"
                    ) from None
                time.sleep(retry_delay(failures - 1, dropped.retry_after))
                at = self._upload_status(location)
                if at is not None and at in (offset, offset + len(data)):
                    sent += at - offset
                    offset = at
                    continue
                answer = Answer(404, httpx.Headers(), b"")  # the session is gone: start a new one below
            if answer.status in (404, 416):
                restarts += 1
                if restarts > MAX_UPLOAD_RESTARTS:
                    raise RegistryError(f"{self.host}/{repository}: {what}: the registry kept losing the upload")
                restarted = self._start_upload(repository, blob, None)
                assert restarted is not None
                location, offset = restarted, 0
                continue
            if answer.status != 202:
                raise self._fail(answer, what, repository)
            expected = offset + len(data)
            reported = _upload_offset(answer.headers.get("Range"))
            if reported is not None and reported != expected:
                raise RegistryError(
                    f"{self.host}/{repository}: {what}: the registry holds {reported} bytes, not {expected}"
                )
            location = self._absolute(answer.headers.get("Location"), repository)
            sent += len(data)
            offset = expected
        answer = self._request(
            "PUT",
            _with_digest(location, blob.digest),
            f"completing {blob.digest[:19]}",
            headers={"Content-Type": "application/octet-stream"},
            content=b"",
        )
        if answer.status != 201:
            raise self._digest_refused(answer, blob) or self._fail(
                answer, f"completing blob {blob.digest[:19]}", repository
            )
        return sent

    @staticmethod
    def _digest_refused(answer: Answer, blob: _Blob) -> InvalidPackageError | None:
        """The registry hashed the bytes sent and found another digest: the file changed since its manifest."""
        if answer.status != 400 or b"DIGEST_INVALID" not in answer.body or blob.path is None:
            return None
        return InvalidPackageError(
            f"{blob.path}: does not match its sha256 in manifest.json (the registry computed another digest)"
        )

    def close(self) -> None:
        self.http.close()


def referrers_tag(digest: str) -> str:
    """The referrers tag-schema fallback tag of a manifest digest: `sha256:<hex>` -> `sha256-<hex>`."""
    return digest.replace(":", "-", 1)


def _with_digest(location: str, digest: str) -> str:
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _error_detail(body: bytes) -> str:
    """`: CODE message` from a registry's `{"errors": [...]}` body, or nothing."""
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    code, message = errors[0].get("code"), errors[0].get("message")
    text = " ".join(str(x) for x in (code, message) if isinstance(x, str) and x)
    text = re.sub(r"[\x00-\x1f\x7f-\x9f]", " ", text)[:200]
    return f": {text}" if text else ""


__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "Artifact",
    "BlobFetcher",
    "Descriptor",
    "OciClient",
    "OciFile",
    "OciRef",
    "PushResult",
    "build_artifact_manifest",
    "is_oci_ref",
    "parse_artifact",
    "parse_oci_ref",
    "pick_version",
    "version_tag",
]
