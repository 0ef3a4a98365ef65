"""The Hugging Face Hub as a source, through the `huggingface_hub` library (its cache, Xet or LFS, its token
rules), with our guarantees on top: revisions resolved to commit shas, version ranges over `v<version>` tags,
files listed with their LFS sha256 from metadata alone, small files read with a size cap, and offline mode
served from the Hugging Face cache.

Torch-free. huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE / HF_HUB_CACHE at import time; we read them
at call time (:func:`hub_settings`) and pass them explicitly, so a setting made after import still counts.
The library sends the token only to the endpoint it is given; ours are never passed here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from ..errors import (
    AdapterError,
    InvalidPackageError,
    NotFoundError,
    OfflineMissError,
    RegistryError,
    UsageError,
)
from ..refs import HubRef

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_BRANCH = "main"
VERSION_TAG_PREFIX = "v"  # a version we publish is tagged `v1.2.0`
MAX_REPO_FILES = 10_000  # an adapter repo holds a handful; a listing past this is refused
MAX_SMALL_FILE_BYTES = 8 * 1024 * 1024  # configs, manifests, cards: read whole, never past this
MAX_HUB_FILE_BYTES = 256 * 1024**3  # no adapter file is larger; a listing claiming more is refused
MAX_SEARCH_RESULTS = 100
ADAPTER_LIBRARIES = ("peft", "adapter-transformers")  # the Hub's library ids for PEFT and AdapterHub
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class HubSettings:
    endpoint: str
    token: str | None
    cache_dir: Path
    offline: bool

    @property
    def host(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.endpoint).netloc or self.endpoint


def hub_settings(offline: bool = False) -> HubSettings:
    """The Hub's settings as huggingface_hub users set them, read now: HF_ENDPOINT, HF_TOKEN,
    HF_HUB_CACHE (else HF_HOME/hub, else ~/.cache/huggingface/hub), HF_HUB_OFFLINE (or our --offline)."""
    env = os.environ
    endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    token = env.get("HF_TOKEN") or env.get("HUGGING_FACE_HUB_TOKEN") or None
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not cache:
        home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
        cache = os.path.join(home, "hub")
    hf_offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").upper() in (
        "1",
        "ON",
        "YES",
        "TRUE",
    )
    return HubSettings(endpoint, token, Path(cache).expanduser(), offline or hf_offline)


@dataclasses.dataclass(frozen=True)
class HubFile:
    """One file of a repo (path relative to the subfolder) as its metadata lists it."""

    path: str
    size: int
    sha256: str | None  # LFS files: their sha256 from metadata; regular git files: None until read
    lfs: bool


@dataclasses.dataclass(frozen=True)
class HubRevision:
    repo: str
    commit: str  # 40-hex
    revision: str  # what was asked (branch, tag, sha), or the tag a version range picked
    version: str | None  # the version a `v<version>` tag gives


def version_of_tag(tag: str) -> Version | None:
    if not tag.startswith(VERSION_TAG_PREFIX):
        return None
    try:
        return Version(tag[len(VERSION_TAG_PREFIX) :])
    except InvalidVersion:
        return None


def pick_version(tags: dict[str, str], specifier: SpecifierSet) -> tuple[str, Version] | None:
    """The highest `v<version>` tag the specifier allows (pre-releases only if it names one), PEP 440 rules."""
    versions = {v: tag for tag in tags if (v := version_of_tag(tag)) is not None}
    allowed = list(specifier.filter(versions, prereleases=bool(specifier.prereleases) or None))
    if not allowed:
        return None
    best = max(allowed)
    return versions[best], best


class HubClient:
    """One Hub endpoint: revisions, listings, small reads and downloads, all through huggingface_hub."""

    def __init__(self, settings: HubSettings, timeout: float | None = None) -> None:
        self.settings = settings
        self.timeout = timeout

    # --- errors -----------------------------------------------------------------
    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """huggingface_hub's exceptions as ours: one line, exit codes, never the token."""
        from huggingface_hub import errors as hf

        try:
            yield
        except AdapterError:
            raise
        except hf.GatedRepoError:
            raise RegistryError(
                f"{what}: the repository is gated; accept its terms on the Hub, then set HF_TOKEN"
            ) from None
        except hf.RepositoryNotFoundError:
            hint = "" if self.settings.token else " (private repositories need HF_TOKEN)"
            raise NotFoundError(f"{what}: no such repository on {self.settings.host}{hint}") from None
        except hf.RevisionNotFoundError:
            raise NotFoundError(f"{what}: no such revision on {self.settings.host}") from None
        except (hf.EntryNotFoundError, hf.RemoteEntryNotFoundError):
            raise NotFoundError(f"{what}: no such file on {self.settings.host}") from None
        except hf.HFValidationError as exc:
            raise UsageError(f"{what}: {str(exc).splitlines()[0][:200]}") from None
        except (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled):
            raise OfflineMissError(
                f"offline: {what} is not in the Hugging Face cache ({self.settings.cache_dir})"
            ) from None
        except hf.HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise RegistryError(
                    f"{what}: {self.settings.host} refused the credentials (HTTP {status}); check HF_TOKEN"
                ) from None
            raise RegistryError(f"{what}: {self.settings.host} answered HTTP {status}") from None
        except OSError as exc:  # connection errors, timeouts (httpx errors are OSErrors in huggingface_hub)
            raise RegistryError(f"{what}: cannot reach {self.settings.host} ({type(exc).__name__})") from None
        except Exception as exc:
            if type(exc).__module__.startswith(("httpx", "httpcore")):
                raise RegistryError(f"{what}: cannot reach {self.settings.host} ({type(exc).__name__})") from None
            raise

    @property
    def token(self) -> str | bool | None:
        """What huggingface_hub is given: HF_TOKEN when set; else, for huggingface.co only, the library's
        stored login (None); never that login for another endpoint (False: no token at all)."""
        if self.settings.token:
            return self.settings.token
        return None if self.settings.endpoint == DEFAULT_ENDPOINT else False

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.settings.endpoint, token=self.token)

    @contextlib.contextmanager
    def _online(self) -> Iterator[None]:
        """huggingface_hub decides offline mode and timeouts from the environment as it was at import: align
        them with ours for the call."""
        from huggingface_hub import constants

        saved = (constants.HF_HUB_OFFLINE, constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT)
        constants.HF_HUB_OFFLINE = self.settings.offline
        if self.timeout is not None:  # --timeout: the longest wait without progress, as for our registries
            constants.HF_HUB_DOWNLOAD_TIMEOUT = constants.HF_HUB_ETAG_TIMEOUT = int(max(1.0, self.timeout))
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE, constants.HF_HUB_DOWNLOAD_TIMEOUT, constants.HF_HUB_ETAG_TIMEOUT = saved

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        with self._online(), self._errors(what):
            return fn()

    # --- revisions --------------------------------------------------------------
    def resolve(self, ref: HubRef, known: dict[str, str] | None = None) -> HubRevision:
        """The commit sha a reference names: a branch, a tag, a sha, or the highest allowed version tag.
        Offline, from the Hugging Face cache's refs plus `known` (revision -> commit seen online before)."""
        where = str(ref)
        if self.settings.offline:
            return self._resolve_offline(ref, known or {})
        refs = self._call(where, lambda: self._api().list_repo_refs(ref.repo))
        tags = {t.name: t.target_commit for t in refs.tags}
        branches = {b.name: b.target_commit for b in refs.branches}
        if ref.revision is not None and _COMMIT.fullmatch(ref.revision) and ref.specifier is None:
            # a sha: it must exist (not just look like one); its version is the tag on it, as for a branch
            self._call(where, lambda: self._api().model_info(ref.repo, revision=ref.revision))
        return self._pick(ref, tags, branches)

    def _pick(self, ref: HubRef, tags: dict[str, str], branches: dict[str, str]) -> HubRevision:
        where = str(ref)
        if ref.specifier is not None:
            picked = pick_version(tags, ref.specifier)
            if picked is None:
                listed = sorted(v for t in tags if (v := version_of_tag(t)) is not None)
                have = ", ".join(str(v) for v in listed[-10:]) if listed else "none"
                raise NotFoundError(f"{where}: no version tag matches {ref.specifier} (versions: {have})")
            tag, best = picked
            return HubRevision(ref.repo, tags[tag], tag, str(best))
        revision = ref.revision or DEFAULT_BRANCH
        if revision in branches:
            commit = branches[revision]
        elif revision in tags:
            commit = tags[revision]
        elif VERSION_TAG_PREFIX + revision in tags:  # `@1.2.0` names the tag v1.2.0
            revision = VERSION_TAG_PREFIX + revision
            commit = tags[revision]
        elif _COMMIT.fullmatch(revision):
            commit = revision
        else:
            raise NotFoundError(f"{where}: no branch, tag or version {revision!r} in {ref.repo}")
        version: Version | None = version_of_tag(revision) if revision in tags else None
        if version is None:  # a branch or sha: the version tag on that very commit, if there is one
            on_commit = sorted((v, t) for t, c in tags.items() if c == commit and (v := version_of_tag(t)) is not None)
            version = on_commit[-1][0] if on_commit else None
        return HubRevision(ref.repo, commit, revision, str(version) if version is not None else None)

    def versions(self, repo: str) -> list[str]:
        """The versions the repo's `v<version>` tags give, lowest first (offline: those cached)."""
        if self.settings.offline:
            refs_dir = self.repo_cache(repo) / "refs"
            names = [p.relative_to(refs_dir).as_posix() for p in refs_dir.rglob("*")] if refs_dir.is_dir() else []
        else:
            names = [t.name for t in self._call(f"hf://{repo}", lambda: self._api().list_repo_refs(repo)).tags]
        found = [version_of_tag(n) for n in names]
        return [str(v) for v in sorted(v for v in found if v is not None)]

    # --- the Hugging Face cache (offline) ----------------------------------------
    def repo_cache(self, repo: str) -> Path:
        return self.settings.cache_dir / ("models--" + repo.replace("/", "--"))

    def _resolve_offline(self, ref: HubRef, known: dict[str, str]) -> HubRevision:
        root = self.repo_cache(ref.repo)
        refs_dir = root / "refs"
        named: dict[str, str] = {k: v for k, v in known.items() if _COMMIT.fullmatch(v)}
        if refs_dir.is_dir():
            for path in refs_dir.rglob("*"):
                if path.is_file():
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        commit = path.read_text()[:100].strip()
                        if _COMMIT.fullmatch(commit):
                            named[path.relative_to(refs_dir).as_posix()] = commit
        snapshots = {p.name for p in (root / "snapshots").iterdir()} if (root / "snapshots").is_dir() else set()
        for sha in snapshots:
            if _COMMIT.fullmatch(sha):
                named.setdefault(sha, sha)
        if not named:
            raise OfflineMissError(f"offline: {ref} is not in the Hugging Face cache ({self.settings.cache_dir})")
        tags = {n: c for n, c in named.items() if version_of_tag(n) is not None}
        try:
            return self._pick(ref, tags, named)
        except NotFoundError as exc:
            raise OfflineMissError(
                f"offline: {exc}; the Hugging Face cache has {', '.join(sorted(named)[:8])}"
            ) from None

    def snapshot_dir(self, repo: str, commit: str) -> Path:
        return self.repo_cache(repo) / "snapshots" / commit

    # --- listings ---------------------------------------------------------------
    def files(self, repo: str, commit: str, subfolder: str | None = None) -> list[HubFile]:
        """Every file under `subfolder` at `commit`, with sizes and LFS sha256s: metadata only."""
        where = f"hf://{repo}@{commit[:12]}" + (f":{subfolder}" if subfolder else "")
        if self.settings.offline:
            return self._snapshot_files(repo, commit, subfolder, where)

        def listing() -> list[Any]:
            from huggingface_hub.hf_api import RepoFile

            out = []
            for entry in self._api().list_repo_tree(repo, path_in_repo=subfolder, revision=commit, recursive=True):
                if isinstance(entry, RepoFile):
                    out.append(entry)
                    if len(out) > MAX_REPO_FILES:
                        raise InvalidPackageError(f"{where}: more than {MAX_REPO_FILES} files; not an adapter repo")
            return out

        found = []
        prefix = f"{subfolder}/" if subfolder else ""
        for entry in self._call(where, listing):
            path = str(entry.path)
            if not path.startswith(prefix):
                continue
            lfs = entry.lfs
            sha = lfs.sha256 if lfs is not None else None
            size = int(lfs.size if lfs is not None else entry.size)
            if sha is not None and not _SHA256.fullmatch(str(sha)):
                raise InvalidPackageError(f"{where}: {path}: malformed LFS sha256 in the listing")
            if size < 0 or size > MAX_HUB_FILE_BYTES:
                raise InvalidPackageError(f"{where}: {path}: implausible size {size} in the listing")
            found.append(HubFile(path[len(prefix) :], size, sha, lfs is not None))
        return sorted(found, key=lambda f: f.path)

    def _snapshot_files(self, repo: str, commit: str, subfolder: str | None, where: str) -> list[HubFile]:
        """A cached snapshot's files: an LFS file's blob is named by its sha256 (the cache's layout)."""
        root = self.snapshot_dir(repo, commit)
        base = root / subfolder if subfolder else root
        if not base.is_dir():
            raise OfflineMissError(f"offline: {where} is not in the Hugging Face cache ({self.settings.cache_dir})")
        found = []
        blobs = os.path.realpath(self.repo_cache(repo) / "blobs") + os.sep
        snapshot = os.path.realpath(root) + os.sep
        for path in sorted(base.rglob("*")):
            if not path.is_file():
                continue
            real = os.path.realpath(path)
            if real.startswith(blobs):  # the cache's layout: a link into blobs/, an LFS blob named by its sha256
                name = os.path.basename(real)
                sha = name if _SHA256.fullmatch(name) else None
            elif real.startswith(snapshot) and not path.is_symlink():  # a copy (no symlinks on this system)
                sha = None
            else:
                raise InvalidPackageError(
                    f"{where}: {path.relative_to(base)} in the Hugging Face cache points outside its blobs"
                )
            found.append(HubFile(path.relative_to(base).as_posix(), path.stat().st_size, sha, sha is not None))
            if len(found) > MAX_REPO_FILES:
                raise InvalidPackageError(f"{where}: more than {MAX_REPO_FILES} files; not an adapter repo")
        return found

    # --- reads ------------------------------------------------------------------
    def download(self, repo: str, commit: str, path: str, subfolder: str | None = None, force: bool = False) -> Path:
        """The file in the Hugging Face cache (downloaded once by huggingface_hub, never again unless
        `force`: a cached copy that failed its sha256)."""
        from huggingface_hub import hf_hub_download

        full = f"{subfolder}/{path}" if subfolder else path
        where = f"hf://{repo}@{commit[:12]}: {full}"

        def fetch() -> str:
            return str(
                hf_hub_download(
                    repo,
                    full,
                    revision=commit,
                    cache_dir=self.settings.cache_dir,
                    token=self.token,
                    endpoint=self.settings.endpoint,
                    local_files_only=self.settings.offline,
                    force_download=force,
                )
            )

        return Path(self._call(where, fetch))

    def cached(self, repo: str, commit: str, path: str, subfolder: str | None = None) -> Path | None:
        """The file in the Hugging Face cache at `commit`, if it is there (no request)."""
        from huggingface_hub import try_to_load_from_cache

        full = f"{subfolder}/{path}" if subfolder else path
        found = try_to_load_from_cache(repo, full, cache_dir=self.settings.cache_dir, revision=commit)
        return Path(found) if isinstance(found, str) else None

    def read_small(self, repo: str, commit: str, file: HubFile, subfolder: str | None = None) -> bytes:
        """A small file (a config, a manifest, a card), whole; refused past MAX_SMALL_FILE_BYTES."""
        where = f"hf://{repo}@{commit[:12]}: {file.path}"
        if file.size > MAX_SMALL_FILE_BYTES:
            raise InvalidPackageError(f"{where}: {file.size} bytes; at most {MAX_SMALL_FILE_BYTES} are read")
        local = self.download(repo, commit, file.path, subfolder)
        with open(local, "rb") as fh:
            data = fh.read(MAX_SMALL_FILE_BYTES + 1)
        if len(data) != file.size:
            raise InvalidPackageError(f"{where}: {len(data)} bytes where the listing says {file.size}")
        return data

    def tensor_shapes(
        self, repo: str, commit: str, file: HubFile, subfolder: str | None = None
    ) -> dict[str, list[int]]:
        """{tensor name: shape} of a safetensors file from its header alone (a ranged read), or from
        the cached file offline."""
        where = f"hf://{repo}@{commit[:12]}: {file.path}"
        local = self.cached(repo, commit, file.path, subfolder)
        if local is None and self.settings.offline:
            local = self.download(repo, commit, file.path, subfolder)  # names what is missing
        if local is not None:
            from ..basemodel.safetensors_header import read_header

            return {k: list(v.shape) for k, v in read_header(local).tensors.items()}
        full = f"{subfolder}/{file.path}" if subfolder else file.path
        try:
            meta = self._call(where, lambda: self._api().parse_safetensors_file_metadata(repo, full, revision=commit))
        except AdapterError:
            raise
        except Exception as exc:  # SafetensorsParsingError and the like: a malformed header
            raise InvalidPackageError(f"{where}: not a valid safetensors file ({type(exc).__name__})") from None
        return {k: list(v.shape) for k, v in meta.tensors.items()}

    def search(self, query: str | None, base_model: str | None = None, limit: int = MAX_SEARCH_RESULTS) -> list[Any]:
        """Adapter repos on the Hub: PEFT's (`library_name: peft`) and AdapterHub's (`adapter-transformers`),
        matching `query`, optionally trained on `base_model` (the `base_model:adapter:<id>` tag)."""
        if self.settings.offline:
            raise OfflineMissError("offline: searching the Hugging Face Hub needs the network")
        found: dict[str, Any] = {}
        for library in ADAPTER_LIBRARIES:
            filters = [library] + ([f"base_model:adapter:{base_model}"] if base_model else [])

            def listing(filters: list[str] = filters) -> list[Any]:
                api = self._api()
                return list(api.list_models(search=query or None, filter=filters, limit=limit, full=False))

            for info in self._call(f"search on {self.settings.host}", listing):
                found.setdefault(str(info.id), info)
        return [found[k] for k in sorted(found)][:limit]

    def check_token(self) -> None:
        """Raise RegistryError (exit 6) when the configured token is refused."""
        if self.settings.token:
            self._call(f"token for {self.settings.host}", lambda: self._api().whoami())
