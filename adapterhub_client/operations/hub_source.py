"""Hugging Face Hub repositories as packages: `hf://org/repo[@rev][:sub]` -> a verified manifest, from
metadata alone, then files through huggingface_hub into our content-addressed store.

What a repo holds decides its manifest:
- our `manifest.json` (a repo we published): used as is; its files must be the listing's;
- a PEFT LoRA (`adapter_config.json` with `peft_type` + `adapter_model.safetensors`): derived from the
  config and the safetensors header (a ranged read), sizes and LFS sha256s from the listing;
- an AdapterHub adapter (`adapter_config.json` nesting `config`): derived likewise (heads included).
The base model a PEFT config names gets its weight files' sha256s from the base repo's listing, so a
local copy of that base checks `exact` without hashing a tensor.

A derived manifest is recorded per (repo, commit, subfolder) in the cache, so the same commit gives the
same manifest every time (lockfile pins hold, offline installs work).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from typing import Any

from .._fs import sha256_bytes
from ..errors import InvalidPackageError, NotFoundError, OfflineMissError, RegistryError
from ..manifest import MANIFEST_FILE, canonical_name, dumps_manifest, loads_manifest, validate_manifest
from ..refs import HubRef
from ..registry.hf import HubClient, HubFile, HubRevision
from .results import HubSource, Resolved
from .session import Session

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
FALLBACK_VERSION = "0.0.0"  # a repo revision without a `v<version>` tag
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
SHOWN_FILES = 8


def hub_ref_of_source(source: str) -> HubRef | None:
    """The reference an install record or lockfile source names (`hf://org/repo@<commit>[:sub]`)."""
    if not source.startswith("hf://"):
        return None
    from ..refs import parse_hub_ref

    return parse_hub_ref(source)


def package_name(repo: str) -> str:
    """The package name of a repo without our manifest: its Hub id, each part made valid (64 chars)."""
    parts = [(_NAME_CHARS.sub("-", p)[:64].strip("._-") or "adapter") for p in repo.split("/", 1)]
    return canonical_name("/".join(parts))


def resolve_hub(session: Session, ref: HubRef, version: str | None = None) -> Resolved:
    """Pin `ref` to a commit and give its manifest: derived from the repo's metadata, a function of (repo,
    commit, subfolder, version) only, so that a lockfile's pin reproduces it anywhere. `version` (a
    lockfile's, an AdapterHub index's) overrides the one the commit's `v<version>` tag gives.

    Derivations made online are recorded in the cache and reused (offline too); one made offline from a
    Hugging Face cache snapshot trusts its blob names, so it is used but never recorded."""
    client = session.hub()
    refs_record = session.cache.hub_refs_path(ref.repo)
    revision = client.resolve(ref, known=_read_refs(refs_record))
    if not client.settings.offline:
        _remember_ref(refs_record, revision)
    version = version or revision.version or FALLBACK_VERSION
    source = f"hf://{ref.repo}@{revision.commit}" + (f":{ref.subfolder}" if ref.subfolder else "")
    pointer = session.cache.hub_pointer_path(ref.repo, revision.commit, ref.subfolder, version)
    raw = _recorded(session, pointer)
    if raw is None:
        files = client.files(ref.repo, revision.commit, ref.subfolder)
        raw = dumps_manifest(derive_manifest(client, revision, ref.subfolder, files, version))
        if not client.settings.offline:
            sha = sha256_bytes(raw)
            session.cache.ensure().put_bytes(raw, sha, durable=False)  # derivable again: a torn write fails
            from .._fs import atomic_write

            atomic_write(pointer, json.dumps({"sha256": sha, "size": len(raw), "revision": revision.revision}) + "\n")
    manifest = validate_manifest(json.loads(raw), f"manifest of {source}")
    hub = HubSource(ref.repo, revision.commit, ref.subfolder, revision.revision)
    return Resolved(
        canonical_name(manifest["name"]), manifest["version"], source, manifest, raw, sha256_bytes(raw), hub=hub
    )


def _read_refs(path: Any) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _remember_ref(path: Any, revision: HubRevision) -> None:
    """What a revision pointed to when last seen online (offline, `hf://org/repo` means that commit)."""
    refs = _read_refs(path)
    if refs.get(revision.revision) == revision.commit:
        return
    refs[revision.revision] = revision.commit
    from .._fs import atomic_write

    with contextlib.suppress(OSError):  # a read-only cache costs offline convenience only
        atomic_write(path, json.dumps(refs, sort_keys=True) + "\n")


def _recorded(session: Session, pointer: Any) -> bytes | None:
    """The manifest recorded for this commit, re-hashed (it is small); None if absent or damaged."""
    try:
        record = json.loads(pointer.read_text())
        blob = session.cache.blob_path(str(record["sha256"]))
        raw: bytes = blob.read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return raw if sha256_bytes(raw) == record["sha256"] else None


def derive_manifest(
    client: HubClient, revision: HubRevision, subfolder: str | None, files: list[HubFile], version: str
) -> dict[str, Any]:
    """The manifest of a repo at a commit, from its listing and small reads. Only what loading needs is
    listed (weights, configs, heads; no README), so that a snapshot holding just those files (as PEFT and
    transformers download them) derives the very same manifest offline."""
    where = f"hf://{revision.repo}@{revision.revision}" + (f":{subfolder}" if subfolder else "")
    by_path = {f.path: f for f in files}

    read: dict[str, bytes] = {}

    def small(path: str) -> bytes:
        if path not in read:
            read[path] = client.read_small(revision.repo, revision.commit, by_path[path], subfolder)
        return read[path]

    if MANIFEST_FILE in by_path:
        manifest = loads_manifest(small(MANIFEST_FILE), f"{where}: {MANIFEST_FILE}")
        if canonical_name(manifest["name"]) != package_name(revision.repo):  # no claiming another's name
            raise InvalidPackageError(
                f"{where}: {MANIFEST_FILE} names {manifest['name']}, not the repo's {package_name(revision.repo)}"
            )
        _check_listed(manifest, by_path, where)
        return manifest
    if PEFT_CONFIG not in by_path:
        shown = ", ".join(sorted(by_path)[:SHOWN_FILES]) or "no files"
        raise InvalidPackageError(
            f"{where}: not an adapter repo: no {MANIFEST_FILE} and no {PEFT_CONFIG} (found: {shown})"
        )
    try:
        config = json.loads(small(PEFT_CONFIG))
    except (ValueError, RecursionError):
        raise InvalidPackageError(f"{where}: {PEFT_CONFIG} is not valid JSON") from None
    from ..formats import adapterhub_layout, pack, peft_layout

    name = package_name(revision.repo)
    if peft_layout.is_peft_config(config):
        if PEFT_WEIGHTS not in by_path:
            shown = ", ".join(sorted(by_path)[:SHOWN_FILES])
            raise InvalidPackageError(f"{where}: a PEFT adapter without {PEFT_WEIGHTS} (found: {shown})")
        shapes = client.tensor_shapes(revision.repo, revision.commit, by_path[PEFT_WEIGHTS], subfolder)
        manifest = pack.peft_manifest_from(config, shapes, list(by_path), name, version, f"{where}: {PEFT_WEIGHTS}")
    elif adapterhub_layout.is_adapterhub_config(config):
        weights = by_path.get(adapterhub_layout.SAFE_WEIGHTS_FILE)  # its header names the modules touched
        ah_shapes = client.tensor_shapes(revision.repo, revision.commit, weights, subfolder) if weights else None
        manifest = pack.adapterhub_manifest_from(
            config, ah_shapes, list(by_path), name, version, f"{where}: {PEFT_CONFIG}"
        )
    else:
        raise InvalidPackageError(
            f"{where}: {PEFT_CONFIG} is neither PEFT's (no 'peft_type') nor AdapterHub's (no 'config')"
        )
    manifest.pop("created", None)  # derived: the same commit gives the same bytes
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "README.md"]
    manifest["files"] = [_file_entry(by_path[f["path"]], small) for f in manifest["files"]]
    return validate_manifest(manifest, f"manifest derived from {where}")


def _file_entry(file: HubFile, small: Callable[[str], bytes]) -> dict[str, Any]:
    """A manifest file entry: an LFS file's sha256 from the listing, a small git file's from its bytes."""
    if file.sha256 is not None:
        return {"path": file.path, "size": file.size, "sha256": file.sha256}
    data = small(file.path)
    return {"path": file.path, "size": len(data), "sha256": sha256_bytes(data)}


def _check_listed(manifest: dict[str, Any], by_path: dict[str, HubFile], where: str) -> None:
    """Our manifest in a repo: every file it lists is there, with its size (and LFS sha256)."""
    for entry in manifest["files"]:
        found = by_path.get(entry["path"])
        if found is None:
            raise InvalidPackageError(f"{where}: {MANIFEST_FILE} lists {entry['path']}, which the repo lacks")
        if found.size != entry["size"] or (found.sha256 is not None and found.sha256 != entry["sha256"]):
            raise InvalidPackageError(f"{where}: {entry['path']} differs from what {MANIFEST_FILE} records")


def with_base_hint(session: Session, item: Resolved) -> dict[str, Any]:
    """The manifest to check compatibility with: a Hub-derived one whose config names its base on the
    Hub gets that base's weight-file sha256s (the base repo's listing at the recorded revision, else its
    main branch; offline, the Hugging Face cache), so that a local copy of it checks `exact` without
    hashing. The manifest itself (what is locked and installed) is left as it is."""
    base = item.manifest.get("base_model") or {}
    if item.hub is None or (base.get("fingerprint") or {}) or not base.get("name"):
        return item.manifest
    files = _base_files(session, str(base["name"]), base.get("revision"))
    if not files:
        return item.manifest
    return {**item.manifest, "base_model": {**base, "fingerprint": {"files": files}}}


def _base_files(session: Session, name: str, revision: object) -> dict[str, str] | None:
    from ..manifest import is_hub_id

    if not is_hub_id(name):
        return None
    key = (name, str(revision))
    memo = session.hub_base_files
    if key not in memo:
        client = session.hub()
        try:
            pinned = client.resolve(HubRef(name, revision if isinstance(revision, str) and revision else None))
            memo[key] = base_weight_files({f.path: f for f in client.files(name, pinned.commit)}) or None
        except (NotFoundError, OfflineMissError, RegistryError, InvalidPackageError):
            memo[key] = None  # unknown base: compat falls back to module shapes
    return memo[key]


def base_weight_files(by_path: dict[str, HubFile]) -> dict[str, str]:
    """The weight files transformers would load from a repo listing (model.safetensors, else every
    top-level *.safetensors), by their LFS sha256."""
    top = {p: f for p, f in by_path.items() if "/" not in p and p.endswith(".safetensors") and f.sha256}
    if "model.safetensors" in top:
        top = {"model.safetensors": top["model.safetensors"]}
    return {p: str(f.sha256) for p, f in sorted(top.items())}


def fetch_hub_file(session: Session, item: Resolved, entry: dict[str, Any]) -> None:
    """One file of a Hub package into our store: through huggingface_hub's cache (never downloaded twice),
    hashed, then hard-linked (else copied) as a blob; a mismatch is IntegrityError and nothing is visible.
    A cached copy that fails its sha256 is downloaded again, once (online), as our own downloader does."""
    from ..errors import IntegrityError

    assert item.hub is not None
    hub, client = item.hub, session.hub()
    what = f"hf://{hub.repo}@{hub.commit[:12]}: {entry['path']}"
    path = client.download(hub.repo, hub.commit, entry["path"], hub.subfolder)
    cache = session.cache.ensure()
    try:
        cache.adopt_file(path, entry["sha256"], int(entry["size"]), what)
    except IntegrityError as exc:
        if client.settings.offline:
            raise IntegrityError(
                f"{exc} (the Hugging Face cache's copy is {path}; offline, it cannot be fetched again)"
            ) from None
        path = client.download(hub.repo, hub.commit, entry["path"], hub.subfolder, force=True)
        cache.adopt_file(path, entry["sha256"], int(entry["size"]), what)
