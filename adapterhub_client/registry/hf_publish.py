"""Publishing a package to a Hugging Face Hub repository: one commit on `main`, then a `v<version>` tag.

Through the real huggingface_hub ``HfApi``, so LFS / Xet uploads, the Hub's README metadata check and
its error types are the library's. What we add:

* one ``create_commit`` holding the package's files as they are (a PEFT package keeps
  ``adapter_config.json`` + ``adapter_model.safetensors``, so PEFT loads the repository),
  ``manifest.json`` (the exact bytes given) and ``README.md`` (the card), with ``parent_commit`` set to
  the head read before: a publisher who committed in between makes ours fail rather than be overwritten;
* a version published once stays as it is: an existing tag with the same files is a no-op, with other
  files a refusal (exit 7);
* every file checked against the manifest (size first, then the sha256 the upload itself computes);
* errors as ours, on one line, naming the endpoint's host and never the token. Only the token given is
  sent (``token=None`` sends none: not the user's stored login, which belongs to huggingface.co and not
  necessarily to this endpoint), and never one of our registries' tokens.

Torch-free; huggingface_hub is imported when a function runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .._fs import sha256_bytes
from ..errors import AdapterError, IntegrityError, InvalidPackageError, RegistryError, UsageError
from ..manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, is_hub_id, loads_manifest, normalized_version, shown
from ..net import check_url
from .card import CARD_FILE, MAX_CARD_BYTES, version_tag
from .hf import DEFAULT_BRANCH, hub_settings

if TYPE_CHECKING:
    from huggingface_hub import CommitOperationAdd, HfApi

RACE_STATUSES = (409, 412)  # the Hub's answers to a parent_commit that is no longer the branch head
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


@dataclasses.dataclass(frozen=True)
class HubPublication:
    """What a publish to the Hub did: the commit the tag points to, and whether anything was committed."""

    repo_id: str
    version: str
    commit: str  # 40-hex sha of the tagged commit
    tag: str
    url: str  # the repository at the tag
    noop: bool  # the version was already published with these files: nothing was committed

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RepoRefs:
    """A repository's branch head (None when the branch does not exist yet) and its tags (name -> commit)."""

    head: str | None
    tags: dict[str, str]


def read_refs(api: HfApi, repo_id: str, branch: str = DEFAULT_BRANCH) -> RepoRefs:
    """The head of `branch` and every tag: the state a commit is made against."""
    refs = api.list_repo_refs(repo_id)
    heads = {b.name: b.target_commit for b in refs.branches}
    return RepoRefs(heads.get(branch), {t.name: t.target_commit for t in refs.tags})


def _one_line(text: object, token: str | None, limit: int = 200) -> str:
    """A server's words fit for our one-line message: no control characters, bounded, never the token."""
    line = _CONTROL.sub(" ", str(text)).strip()
    if token:
        line = line.replace(token, "***")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _transport_errors() -> tuple[type[BaseException], ...]:
    """What a dropped or refused connection raises: huggingface_hub 2.x sends through httpx2, 1.x through
    httpx (and requests' errors are OSErrors)."""
    found: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(module).HTTPError)
    return tuple(found)


@contextlib.contextmanager
def _hub_errors(host: str, repo_id: str, token: str | None) -> Iterator[None]:
    """huggingface_hub's exceptions as ours (RegistryError, exit 6, unless the package is at fault)."""
    from huggingface_hub import errors as hf

    try:
        yield
    except AdapterError:
        raise
    except hf.OfflineModeIsEnabled:
        raise RegistryError(f"cannot publish to {host}: huggingface_hub is in offline mode (HF_HUB_OFFLINE)") from None
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            why = "no token was given" if not token else "the token was refused"
            raise RegistryError(
                f"{host} refused to publish to {repo_id} (HTTP {status}): {why}; use a token with write access to it"
            ) from None
        detail = _one_line(exc.server_message or "", token)
        raise RegistryError(
            f"{host} refused a request while publishing to {repo_id} (HTTP {status}){': ' + detail if detail else ''}"
        ) from None
    except _transport_errors() as exc:  # connection refused, reset, timed out
        raise RegistryError(f"cannot reach {host} while publishing to {repo_id} ({type(exc).__name__})") from None
    except ValueError as exc:
        if str(exc).startswith("Invalid metadata in README.md"):  # the Hub's /api/validate-yaml said no
            detail = _one_line("; ".join(str(exc).splitlines()[1:]) or exc, token)
            raise InvalidPackageError(f"{CARD_FILE}: {host} refused its metadata: {detail}") from None
        raise


@contextlib.contextmanager
def _online() -> Iterator[None]:
    """huggingface_hub fixes offline mode from HF_HUB_OFFLINE at import; publishing reads it now, and
    refuses when it is set."""
    from huggingface_hub import constants

    if hub_settings().offline:
        raise RegistryError("cannot publish to the Hub while HF_HUB_OFFLINE is set; unset it")
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _regular_file(root: Path, path: str) -> Path:
    """The package file at `path`: a regular file inside the package (no symlink out of it)."""
    target = root / path
    if target.is_symlink() or not target.is_file():
        raise InvalidPackageError(f"{target}: listed in {MANIFEST_FILE} but not a regular file")
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        raise InvalidPackageError(f"{target}: listed in {MANIFEST_FILE} but outside the package directory") from None
    return target


def upload_operations(
    package_dir: Path, manifest: Mapping[str, Any], manifest_bytes: bytes, card: bytes
) -> list[CommitOperationAdd]:
    """The commit's files: each listed file (its size checked before it is read, then the sha256 that
    huggingface_hub computes for the upload), `manifest.json` and the card as README.md. A listed
    README.md must be the card itself: the repository holds one README, and it must match the manifest."""
    from huggingface_hub import CommitOperationAdd

    operations = []
    for entry in manifest["files"]:
        path, size, sha = entry["path"], entry["size"], entry["sha256"]
        if path == CARD_FILE:
            if sha256_bytes(card) != sha or len(card) != size:
                raise InvalidPackageError(
                    f"{package_dir / CARD_FILE}: the package lists a README.md other than the card being published; "
                    "write the card into the package before its manifest is built"
                )
            continue
        target = _regular_file(package_dir, path)
        on_disk = target.stat().st_size
        if on_disk != size:
            raise IntegrityError(f"{target}: {on_disk} bytes, but {MANIFEST_FILE} lists {size}")
        operation = CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(target))
        if operation.upload_info.size != size or operation.upload_info.sha256.hex() != sha:
            raise IntegrityError(f"{target}: its sha256 does not match {MANIFEST_FILE}; was it changed after packing?")
        operations.append(operation)
    operations.append(CommitOperationAdd(path_in_repo=MANIFEST_FILE, path_or_fileobj=manifest_bytes))
    operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card))
    return operations


def _content(manifest: Mapping[str, Any]) -> set[tuple[str, str, int]]:
    """What makes two publications of a version the same: their files (path, sha256, size)."""
    return {(f["path"], f["sha256"], f["size"]) for f in manifest["files"]}


def published_manifest(api: HfApi, repo_id: str, revision: str) -> dict[str, Any] | None:
    """The manifest.json at `revision` (validated), None when there is none; its size is checked from the
    listing before the download and again on disk before it is read."""
    from huggingface_hub.hf_api import RepoFile

    where = f"hf://{repo_id}@{revision}/{MANIFEST_FILE}"
    listed = [f for f in api.get_paths_info(repo_id, [MANIFEST_FILE], revision=revision) if isinstance(f, RepoFile)]
    if not listed:
        return None
    if listed[0].size > MAX_MANIFEST_BYTES:
        raise InvalidPackageError(f"{where}: {listed[0].size} bytes; a manifest has at most {MAX_MANIFEST_BYTES}")
    with tempfile.TemporaryDirectory(prefix="adapters-hub-") as cache:
        path = Path(str(api.hf_hub_download(repo_id, MANIFEST_FILE, revision=revision, cache_dir=cache)))
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise InvalidPackageError(f"{where}: larger than {MAX_MANIFEST_BYTES} bytes")
        return loads_manifest(path.read_bytes(), where)


def _check_inputs(manifest: dict[str, Any], manifest_bytes: bytes, repo_id: str, version: str, card: str) -> bytes:
    """Everything checked before the network is touched; returns the card's bytes."""
    if not is_hub_id(repo_id):
        raise UsageError(f"invalid Hub repository id {shown(repo_id)}: expected org/name")
    if loads_manifest(manifest_bytes, MANIFEST_FILE) != manifest:
        raise InvalidPackageError(f"{MANIFEST_FILE}: the bytes to publish do not encode the manifest given")
    if normalized_version(version) != manifest["version"]:
        raise UsageError(f"version {shown(version)} differs from the manifest's version {manifest['version']!r}")
    data = card.encode("utf-8")
    if len(data) > MAX_CARD_BYTES:
        raise InvalidPackageError(f"{CARD_FILE}: {len(data)} bytes; a model card may have at most {MAX_CARD_BYTES}")
    return data


def publish_to_hub(
    package_dir: Path,
    manifest: dict[str, Any],
    manifest_bytes: bytes,
    repo_id: str,
    version: str,
    *,
    endpoint: str,
    token: str | None,
    private: bool = False,
    card: str,
) -> HubPublication:
    """Publish the package in `package_dir` to `repo_id` on `endpoint` as `version`: create the repo if
    needed (`private` applies only then), one commit on main against the head read first, then the tag
    `v<version>`. Already published with the same files: a no-op; with other files: InvalidPackageError.
    Another commit landing meanwhile: RegistryError naming the race (nothing of ours is committed)."""
    from huggingface_hub import HfApi
    from huggingface_hub import errors as hf

    endpoint = endpoint.rstrip("/")
    check_url(endpoint)
    host = urlsplit(endpoint).netloc
    card_bytes = _check_inputs(manifest, manifest_bytes, repo_id, version, card)
    version, tag = manifest["version"], version_tag(manifest["version"])
    operations = upload_operations(Path(package_dir), manifest, manifest_bytes, card_bytes)
    url = f"{endpoint}/{repo_id}/tree/{tag}"
    api = HfApi(endpoint=endpoint, token=token or False, library_name="adapterhub-client")
    with _online(), _hub_errors(host, repo_id, token):
        api.create_repo(repo_id, private=private, exist_ok=True)
        refs = read_refs(api, repo_id)
        if tag in refs.tags:
            published = published_manifest(api, repo_id, tag)
            if published is not None and _content(published) == _content(manifest):
                return HubPublication(repo_id, version, refs.tags[tag], tag, url, noop=True)
            raise InvalidPackageError(
                f"version {version} already published with other content in {repo_id} (tag {tag}); publish a new version"
            )
        try:
            commit = api.create_commit(
                repo_id,
                operations,
                commit_message=f"Publish {manifest['name']} {version}",
                commit_description=f"Published with adapterhub-client; tag {tag}.",
                revision=DEFAULT_BRANCH,
                parent_commit=refs.head,
            )
        except hf.HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code in RACE_STATUSES:
                raise RegistryError(
                    f"{repo_id} on {host}: branch {DEFAULT_BRANCH} moved while publishing {version}; "
                    "another publisher committed first; retry"
                ) from None
            raise
        try:
            api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=f"{manifest['name']} {version}")
        except hf.HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code == 409:
                raise RegistryError(
                    f"{repo_id} on {host}: tag {tag} was created while publishing; another publisher tagged "
                    f"{version} first; retry (the same files are then a no-op)"
                ) from None
            raise
    return HubPublication(repo_id, version, str(commit.oid), tag, url, noop=False)


__all__ = ["HubPublication", "RepoRefs", "published_manifest", "publish_to_hub", "read_refs", "upload_operations"]
