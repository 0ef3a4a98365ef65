"""OCI registries as sources and targets: `oci://host[:port]/repository[@SPEC]` -> a verified manifest
(our config blob, or one derived from the files of an artifact another tool pushed, e.g. `oras push` of a
PEFT directory), blobs through the verified, resumable downloader; `publish --registry oci://...` pushes.

One `OciClient` per registry host and session, with the credentials `registry.oci_auth` finds for it
(ADAPTERS_USERNAME/ADAPTERS_PASSWORD, our store, the Docker config); a token goes only to its host and
its token realm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._fs import sha256_bytes
from ..errors import InvalidPackageError, UsageError
from ..manifest import canonical_name, dumps_manifest, normalized_version, validate_manifest
from ..refs import OciRef, parse_oci_ref
from .results import OciSource, Published, Resolved
from .session import Session

FALLBACK_VERSION = "0.0.0"  # a tag that is not a version (latest, main)
MAX_SMALL_FILE_BYTES = 8 * 1024 * 1024


def resolve_oci(session: Session, ref: OciRef, version: str | None = None) -> Resolved:
    """Pin `ref` to a manifest digest and give the package's manifest (`version`: a lockfile's, for an
    artifact whose manifest is derived and whose tag a digest pin no longer names)."""
    client = session.oci(ref)
    if session.offline:
        from ..errors import OfflineMissError

        raise OfflineMissError(f"offline: {ref} needs the registry (install it once online, then use the lockfile)")
    artifact = client.artifact(ref)
    manifest = client.package_manifest(artifact)
    if manifest is None:  # another tool's artifact: derive ours from its files, as for a directory
        manifest = _derived(session, client, ref, artifact, version)
    raw = dumps_manifest(manifest)
    source = f"oci://{ref.host}/{ref.repository}@{artifact.digest}"
    return Resolved(
        canonical_name(manifest["name"]),
        manifest["version"],
        source,
        manifest,
        raw,
        sha256_bytes(raw),
        oci=OciSource(ref.host, ref.repository, artifact.digest),
    )


def _derived(session: Session, client: Any, ref: OciRef, artifact: Any, version: str | None) -> dict[str, Any]:
    """The manifest of a PEFT or AdapterHub directory pushed as plain files (titles are its file names):
    the small files and the weights' header read from blobs fetched through the downloader."""
    from ..basemodel.safetensors_header import read_header
    from ..formats import adapterhub_layout, pack, peft_layout

    where = f"{ref.host}/{ref.repository}@{artifact.digest[:19]}"
    files = {f.title: f for f in artifact.files}
    if peft_layout.CONFIG_FILE not in files:
        shown = ", ".join(sorted(files)[:8]) or "no files"
        raise InvalidPackageError(f"{where}: not an adapter: no manifest config and no adapter_config.json ({shown})")
    if files[peft_layout.CONFIG_FILE].size > MAX_SMALL_FILE_BYTES:
        raise InvalidPackageError(f"{where}: adapter_config.json is larger than {MAX_SMALL_FILE_BYTES} bytes")
    session.cache.ensure()
    fetched = client.fetch_files(artifact, session.downloader)
    try:
        config = json.loads(Path(fetched[peft_layout.CONFIG_FILE]).read_bytes())
    except (ValueError, RecursionError):
        raise InvalidPackageError(f"{where}: adapter_config.json is not valid JSON") from None
    name = canonical_name(_package_name(ref.repository))
    tag = ref.tag or (client.resolve(ref) if not ref.digest else None)
    version = version or _version_of(tag)
    present = list(files)
    if peft_layout.is_peft_config(config):
        weights = fetched.get(peft_layout.WEIGHTS_FILE)
        if weights is None:
            raise InvalidPackageError(f"{where}: a PEFT adapter without {peft_layout.WEIGHTS_FILE}")
        shapes = {k: list(v.shape) for k, v in read_header(Path(weights)).tensors.items()}
        manifest = pack.peft_manifest_from(config, shapes, present, name, version, where)
    elif adapterhub_layout.is_adapterhub_config(config):
        safe = fetched.get(adapterhub_layout.SAFE_WEIGHTS_FILE)
        ah_shapes = {k: list(v.shape) for k, v in read_header(Path(safe)).tensors.items()} if safe else None
        manifest = pack.adapterhub_manifest_from(config, ah_shapes, present, name, version, where)
    else:
        raise InvalidPackageError(f"{where}: adapter_config.json is neither PEFT's nor AdapterHub's")
    manifest.pop("created", None)
    manifest["files"] = [
        {"path": f["path"], "size": files[f["path"]].size, "sha256": files[f["path"]].sha256} for f in manifest["files"]
    ]
    return validate_manifest(manifest, f"manifest derived from {where}")


def _package_name(repository: str) -> str:
    parts = repository.split("/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else f"oci/{parts[0]}"


def _version_of(tag: str | None) -> str:
    if not tag:
        return FALLBACK_VERSION
    try:
        return normalized_version(tag)
    except InvalidPackageError:
        return FALLBACK_VERSION


def pinned_ref(source: str) -> OciRef | None:
    """The reference an install record or lockfile source names (`oci://host/repo@sha256:...`)."""
    if not source.startswith("oci://") or "@sha256:" not in source:
        return None  # an OCI registry by name (oci://host/prefix/): resolved through its index
    return parse_oci_ref(source)


def fetch_oci_file(session: Session, item: Resolved, entry: dict[str, Any], progress: Any = None) -> None:
    """One file of an OCI package through the verified, resumable, locked downloader."""
    assert item.oci is not None
    ref = parse_oci_ref(f"oci://{item.oci.host}/{item.oci.repository}")
    client = session.oci(ref)
    url = client.blob_url(item.oci.repository, f"sha256:{entry['sha256']}")
    label = f"{item.name} {item.version}: {entry['path']}"
    client.prepare_blob_auth(url, label)
    session.downloader.fetch(url, entry["sha256"], int(entry["size"]), label, progress, client=client.http)


def publish_oci(
    session: Session,
    package_dir: Path,
    manifest: dict[str, Any],
    target: str,
    *,
    force: bool = False,
    registry_name: str | None = None,
) -> Published:
    """Push to exactly the repository `target` names, tagged with the version (blobs the registry has are
    skipped, the manifest last: a failed push leaves no tag)."""
    ref = parse_oci_ref(target)
    if ref.tag or ref.digest or ref.specifier is not None:
        raise UsageError(f"--registry {target}: publish to oci://host/repository (the version is the tag)")
    if session.offline:
        raise UsageError(f"--registry {target}: publishing needs the network (offline mode is on)")
    bar = None
    if session.progress:  # a terminal, and not --json: bytes, rate, then what the registry already had
        import sys

        from tqdm import tqdm

        total = sum(int(f["size"]) for f in manifest["files"])
        bar = tqdm(total=total, unit="B", unit_scale=True, file=sys.stderr, desc=f"pushing {manifest['name']}")
    try:
        pushed = session.oci(ref).push(
            ref.repository, package_dir, manifest, force=force, progress=bar.update if bar is not None else None
        )
    finally:
        if bar is not None:
            bar.close()
    if bar is not None and (pushed.skipped or pushed.mounted):
        import sys

        print(
            f"{pushed.skipped} blob(s) already in the registry, {pushed.mounted} mounted: not sent",
            file=sys.stderr,
        )
    _attach_signature(session, ref, package_dir, manifest, pushed.digest)
    return Published(
        canonical_name(manifest["name"]),
        manifest["version"],
        registry_name or target,
        f"oci://{ref.host}/{ref.repository}@{pushed.digest}",
        sha256_bytes(dumps_manifest(manifest)),
        pushed.created,
    )


def _attach_signature(session: Session, ref: OciRef, package_dir: Path, manifest: dict[str, Any], digest: str) -> None:
    """A signed package's model.sig also as a signature artifact on its manifest (as cosign attaches one), so
    that other OCI tools find it and `adapters verify oci://...` reads it without the package's blobs."""
    from ..signing import SIGNATURE_FILE, signature_entry

    if signature_entry(manifest) is None:
        return
    client = session.oci(ref)
    subject = client.get_manifest(ref.repository, digest)
    client.push_signature(ref.repository, subject, (package_dir / SIGNATURE_FILE).read_bytes())


def attached_signatures(session: Session, item: Resolved) -> list[bytes]:
    """The signatures (Sigstore bundles) attached to an OCI version's manifest as signature artifacts,
    read without any blob of the package."""
    assert item.oci is not None
    client = session.oci(parse_oci_ref(f"oci://{item.oci.host}/{item.oci.repository}"))
    bundles = []
    for desc in client.signatures(item.oci.repository, item.oci.digest):
        subject, bundle = client.read_signature(item.oci.repository, desc)
        if subject == item.oci.digest:  # listed under this manifest's fallback tag, yet made for another: skipped
            bundles.append(bundle)
    return bundles


def login(session: Session, host: str, username: str, password: str) -> Path:
    """Store credentials for an OCI registry host (our store, mode 0600); checked against the registry
    first (a wrong password is exit 6 and nothing is stored)."""
    from ..registry.oci import OciClient
    from ..registry.oci_auth import save_login
    from .session import CREDENTIALS_FILE

    ref = parse_oci_ref(f"oci://{host}/x")
    if not username or not password:
        raise UsageError("adapters login needs a username and a password (--password-stdin)")
    client = OciClient(ref.url, credentials=(username, password))
    try:
        client.check_login()
    finally:
        client.close()
    store = session.settings.home / CREDENTIALS_FILE
    save_login(store, ref.host, username, password)
    return store


def logout(session: Session, host: str) -> bool:
    from ..registry.oci_auth import remove_login
    from .session import CREDENTIALS_FILE

    return remove_login(session.settings.home / CREDENTIALS_FILE, parse_oci_ref(f"oci://{host}/x").host)
