"""`adapters publish` (to a directory registry, local or file://, or a Hugging Face Hub repo) with a model
card for every target, `adapters yank`, and the package conversions `adapters pack` and `adapters export`."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RegistrySpec
from ..errors import UsageError
from ..manifest import canonical_name
from ..refs import Requirement, parse_ref
from .results import Converted, Exported, Packed, Published, Signed, Yanked

if TYPE_CHECKING:
    from ..registry.build import BuildReport
    from ..site import SiteReport
from .session import Session

PathLike = str | os.PathLike[str]


def _target(session: Session, registry: str | None) -> RegistrySpec:
    """The registry named (or at a URL or directory), else the first configured: the local one."""
    return session.settings.registry(registry) if registry else session.settings.registries[0]


def publish(
    session: Session,
    path: PathLike | Any,
    registry: str | None = None,
    name: str | None = None,
    version: str | None = None,
    base: PathLike | None = None,
    *,
    adapter: str | None = None,
    base_name: str | None = None,
    description: str | None = None,
    license: str | None = None,
    tags: Sequence[str] = (),
    private: bool = False,
    force: bool = False,
    sign: SignWith | None = None,
    site: bool = False,
) -> Published:
    """Validate the package (ours, PEFT or AdapterHub; `base` records a base model's fingerprint, Hub id
    and model_type; `base_name` names the base by its Hub id), then publish it. The name is stored in
    its canonical form, so `Acme/Sentiment` and `acme/sentiment` are one package.

    `sign` signs the package as published (model.sig); without it, a model.sig the package has must
    still sign exactly what is published (docs/SIGNING.md).

    `path` may also be a model with adapter `adapter` on it (a training script ends with one call): the
    adapter is saved as a package on the way (with the base's fingerprint, from the model itself).

    `force` moves an OCI tag that holds other content; a directory registry or a Hub repo never
    changes a published version (yank it and publish a new one). `site`: then bring the directory
    registry's catalogue site (DIR/site/) up to date."""
    if not isinstance(path, (str, os.PathLike)):
        return _publish_model(
            session, path, adapter, registry, name, version, base_name=base_name, description=description,
            license=license, tags=tags, private=private, force=force, sign=sign, site=site,
        )  # fmt: skip
    if adapter is not None:
        raise UsageError("adapter= names an adapter of a model: give the model, not a directory")
    from ..formats.pack import prepare_package
    from ..registry.publish import publish_directory

    manifest = prepare_package(
        Path(path),
        name=name,
        version=version,
        base=None if base is None else Path(base),
        fingerprint_cache=session.cache.fingerprints_dir,
        fields={"description": description, "license": license},
        base_name=base_name,
        tags=tags,
    )
    manifest["name"] = canonical_name(manifest["name"])
    if sign is None:
        manifest = adopt_signature(Path(path), manifest)
    else:  # signed anew: an older model.sig of the package is not published
        from ..signing import signed_manifest

        manifest = signed_manifest(manifest)
    spec = None if registry is not None and registry.startswith(("hf://", "oci://")) else _target(session, registry)
    if force and not (registry or "").startswith("oci://") and not (spec and spec.url.startswith("oci://")):
        raise UsageError(
            "--force applies to OCI registries only: a published version never changes elsewhere "
            "(yank it and publish a new version)"
        )
    if site and (spec is None or spec.url.startswith("oci://")):
        raise UsageError("--site applies to directory registries (local or file://): others have no catalogue site")
    if registry is not None and registry.startswith("hf://"):
        return publish_hub(session, Path(path), manifest, registry, private=private, sign=sign)
    if registry is not None and registry.startswith("oci://"):
        from .oci_source import publish_oci

        with final_package(session, Path(path), manifest, sign) as (staged, carded):
            return publish_oci(session, staged, carded, registry, force=force)
    assert spec is not None
    if spec.url.startswith("oci://"):  # an OCI registry by name: org/name goes to <prefix>/org/name
        from .oci_source import publish_oci

        with final_package(session, Path(path), manifest, sign) as (staged, carded):
            target = spec.url + manifest["name"]
            return publish_oci(session, staged, carded, target, registry_name=spec.name, force=force)
    root = session.client(spec).local_root
    if root is None:
        raise UsageError(f"publishing to {spec.url} is not supported yet: publish to a local or file:// registry")
    with final_package(session, Path(path), manifest, sign) as (staged, carded):
        entry, created = publish_directory(root, staged, carded)
    built = build_site(root) if site else None
    return Published(
        entry["name"], entry["version"], spec.name, spec.url, entry["manifest"]["sha256"], created, site=built
    )


def _publish_model(
    session: Session,
    model: Any,
    adapter: str | None,
    registry: str | None,
    name: str | None,
    version: str | None,
    **fields: Any,
) -> Published:
    if not hasattr(model, "state_dict"):
        raise UsageError(f"expected a package directory or a model, got {type(model).__name__}")
    if not adapter or not name or not version:
        raise UsageError(
            "publishing from a model needs adapter=, name= and version= (e.g. name='acme/x', version='1.0.0')"
        )
    from ..formats import save_adapter

    staging = session.cache.ensure().tmp_dir("from-model-")
    try:
        package = save_adapter(model, adapter, staging / "package", name=name, version=version)
        return publish(session, package, registry, **fields)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_with_card(
    session: Session, package_dir: Path, manifest: dict[str, Any], repo_id: str | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The package with its model card (README.md): generated when it has none, the publisher's own
    kept with its front matter completed. Only when the card changes are the files staged (hard links,
    else copies) next to the new README.md; the manifest then lists the card too."""
    from .._fs import file_digest
    from ..manifest import validate_manifest
    from ..registry.card import CARD_FILE

    card, existing = model_card(package_dir, manifest, repo_id)
    if card == existing:
        yield package_dir, manifest
        return
    staging = session.cache.ensure().tmp_dir("publish-")
    try:
        for f in manifest["files"]:
            if f["path"] == CARD_FILE:
                continue
            target = staging / f["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(package_dir / f["path"], target)
            except OSError:
                shutil.copyfile(package_dir / f["path"], target)
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        sha, size = file_digest(staging / CARD_FILE)
        files = [f for f in manifest["files"] if f["path"] != CARD_FILE]
        carded = validate_manifest(
            {**manifest, "files": [*files, {"path": CARD_FILE, "sha256": sha, "size": size}]}, "manifest with its card"
        )
        yield staging, carded
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def model_card(package_dir: Path, manifest: dict[str, Any], repo_id: str | None = None) -> tuple[str, str | None]:
    """(the card to publish, the package's own README.md or None): the one rule for publish and sign."""
    from ..registry.card import CARD_FILE, complete_card, render_card

    existing = None
    if any(f["path"] == CARD_FILE for f in manifest["files"]):
        existing = (package_dir / CARD_FILE).read_text(encoding="utf-8", errors="replace")
    card = complete_card(existing, manifest) if existing is not None else render_card(manifest, repo_id=repo_id)
    return card, existing


@dataclasses.dataclass(frozen=True)
class SignWith:
    """How to sign while publishing (or with `adapters sign`): a PEM private key, optionally with its
    certificate chain (the first certificate is the key's), or keyless with Sigstore."""

    key: PathLike | None = None
    cert_chain: Sequence[PathLike] = ()
    sigstore: bool = False


def adopt_signature(package_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """A model.sig that a signing tool wrote into the package but the manifest does not list (model_signing's
    CLI signs a directory as it is) is published with the package."""
    from .._fs import file_digest
    from ..manifest import validate_manifest
    from ..signing import SIGNATURE_FILE, signature_entry

    unlisted = package_dir / SIGNATURE_FILE
    if signature_entry(manifest) is not None or unlisted.is_symlink() or not unlisted.is_file():
        return manifest
    sha, size = file_digest(unlisted)
    files = [*manifest["files"], {"path": SIGNATURE_FILE, "sha256": sha, "size": size}]
    return validate_manifest({**manifest, "files": files}, str(package_dir / SIGNATURE_FILE))


@contextlib.contextmanager
def final_package(
    session: Session, package_dir: Path, manifest: dict[str, Any], sign: SignWith | None, repo_id: str | None = None
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The package as it is published: with its model card, then signed now (`sign`: model.sig staged next
    to hard links of the files) or with its own model.sig checked to sign exactly this (a publish that changed
    what was signed, e.g. --name or --version, is refused with exit 4 rather than published broken)."""
    from ..signing import signature_entry

    with contextlib.ExitStack() as stack:
        staged, carded = stack.enter_context(staged_with_card(session, package_dir, manifest, repo_id))
        if sign is None:
            if signature_entry(carded) is not None:
                check_own_signature(staged, carded)
            yield staged, carded
            return
        signed_dir = stack.enter_context(_staging(session, "sign-"))
        yield signed_dir, _sign_into(signed_dir, staged, carded, sign)


@contextlib.contextmanager
def _staging(session: Session, prefix: str) -> Iterator[Path]:
    staging = session.cache.ensure().tmp_dir(prefix)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sign_into(out: Path, package_dir: Path, manifest: dict[str, Any], sign: SignWith) -> dict[str, Any]:
    """Sign `manifest` (its files in `package_dir`) into `out`: hard links (else copies) of the files and the
    new model.sig; the manifest that lists it."""
    from .._fs import atomic_write, file_digest
    from ..manifest import validate_manifest
    from ..signing import SIGNATURE_FILE, signed_manifest
    from ..signing.sign import sign_manifest

    unsigned = signed_manifest(manifest)
    raw, _ = sign_manifest(unsigned, sign.key, cert_chain=sign.cert_chain, sigstore=sign.sigstore)
    for f in unsigned["files"]:
        target = out / f["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(package_dir / f["path"], target)
        except OSError:
            shutil.copyfile(package_dir / f["path"], target)
    atomic_write(out / SIGNATURE_FILE, raw)
    sha, size = file_digest(out / SIGNATURE_FILE)
    files = [*unsigned["files"], {"path": SIGNATURE_FILE, "sha256": sha, "size": size}]
    return validate_manifest({**unsigned, "files": files}, "signed manifest")


def check_own_signature(package_dir: Path, manifest: dict[str, Any]) -> None:
    """The package's model.sig signs exactly `manifest` (who signed is the installer's policy to judge)."""
    from ..errors import IntegrityError
    from ..signing import SIGNATURE_FILE
    from ..signing.verify import inspect_signature

    try:
        inspect_signature((package_dir / SIGNATURE_FILE).read_bytes(), manifest, f"{package_dir / SIGNATURE_FILE}")
    except IntegrityError as exc:
        raise IntegrityError(
            f"{exc}; the package would be published with a broken signature: sign it again (`adapters sign`), "
            "or publish with --sign --key KEY.pem"
        ) from None


def sign(
    session: Session,
    path: PathLike,
    with_: SignWith | None,
    *,
    name: str | None = None,
    version: str | None = None,
    base: PathLike | None = None,
    base_name: str | None = None,
) -> Signed:
    """`adapters sign DIR`: complete the package as publish would (name, version, base, model card written
    into DIR) and sign it: DIR/model.sig, listed in DIR/manifest.json, so that publishing DIR later publishes
    exactly what was signed. Without `with_` (`--prepare`), DIR/manifest.json is written in the canonical form
    the registry stores, without model.sig, for another tool to sign (model_signing's CLI, an HSM)."""
    from .._fs import atomic_write, file_digest
    from ..formats.pack import prepare_package
    from ..manifest import MANIFEST_FILE, dumps_manifest, validate_manifest, write_manifest
    from ..registry.card import CARD_FILE
    from ..signing import SIGNATURE_FILE, signed_manifest
    from ..signing.sign import sign_manifest

    package_dir = Path(path)
    manifest = prepare_package(
        package_dir,
        name=name,
        version=version,
        base=None if base is None else Path(base),
        fingerprint_cache=session.cache.fingerprints_dir,
        base_name=base_name,
    )
    manifest = signed_manifest({**manifest, "name": canonical_name(manifest["name"])})
    card, existing = model_card(package_dir, manifest)
    if card != existing:
        if existing is None and (package_dir / CARD_FILE).exists():
            raise UsageError(
                f"{package_dir / CARD_FILE} is not listed in manifest.json: list it (it becomes the model card) "
                "or remove it; signing writes the generated card there"
            )
        atomic_write(package_dir / CARD_FILE, card)
        sha, size = file_digest(package_dir / CARD_FILE)
        files = [f for f in manifest["files"] if f["path"] != CARD_FILE]
        manifest = {**manifest, "files": [*files, {"path": CARD_FILE, "sha256": sha, "size": size}]}
    manifest = validate_manifest(manifest, str(package_dir / MANIFEST_FILE))
    if with_ is None:
        atomic_write(package_dir / MANIFEST_FILE, dumps_manifest(manifest))
        return Signed(manifest["name"], manifest["version"], package_dir, None, None)
    raw, signer = sign_manifest(manifest, with_.key, cert_chain=with_.cert_chain, sigstore=with_.sigstore)
    atomic_write(package_dir / SIGNATURE_FILE, raw)
    sha, size = file_digest(package_dir / SIGNATURE_FILE)
    signed = {**manifest, "files": [*manifest["files"], {"path": SIGNATURE_FILE, "sha256": sha, "size": size}]}
    write_manifest(package_dir, validate_manifest(signed, str(package_dir / MANIFEST_FILE)))
    return Signed(manifest["name"], manifest["version"], package_dir, signer, package_dir / SIGNATURE_FILE)


def publish_hub(
    session: Session,
    package_dir: Path,
    manifest: dict[str, Any],
    target: str,
    *,
    private: bool = False,
    sign: SignWith | None = None,
) -> Published:
    """Publish to a Hugging Face Hub repository (`hf://org/repo`) in one commit with `parent_commit`, tagged
    `v<version>`: PEFT-compatible files (a LoRA in our format is exported to PEFT's layout first), our
    manifest.json (fingerprints, module shapes) and the model card."""
    from ..manifest import dumps_manifest
    from ..refs import parse_hub_ref
    from ..registry.hf import hub_settings
    from ..registry.hf_publish import publish_to_hub
    from ..signing import signature_entry

    ref = parse_hub_ref(target)
    if ref.revision is not None or ref.specifier is not None or ref.subfolder is not None:
        raise UsageError(f"--registry {target}: publish to hf://org/repo (the version goes in --version)")
    from .hub_source import package_name

    if manifest["name"] != package_name(ref.repo):  # installs from the repo take its name: no claiming another
        raise UsageError(
            f"--registry {target}: the package is named {manifest['name']}; a Hub repo holds the package of its "
            f"own name (--name {package_name(ref.repo)}, or publish to hf://{manifest['name']})"
        )
    settings = hub_settings(session.offline)
    if settings.offline:
        raise UsageError(f"--registry {target}: publishing needs the network (offline mode is on)")
    with contextlib.ExitStack() as stack:
        peft_dir, peft_manifest = stack.enter_context(as_peft(session, package_dir, manifest))
        if peft_dir != package_dir and sign is None and signature_entry(manifest) is not None:
            raise UsageError(
                f"--registry {target}: this LoRA is converted to PEFT's files for the Hub, which its model.sig "
                "does not sign: publish with --sign --key KEY.pem to sign what the Hub receives"
            )
        staged, carded = stack.enter_context(final_package(session, peft_dir, peft_manifest, sign, ref.repo))
        raw = dumps_manifest(carded)
        done = publish_to_hub(
            staged,
            carded,
            raw,
            ref.repo,
            carded["version"],
            endpoint=settings.endpoint,
            token=settings.token,
            private=private,
            card=(staged / "README.md").read_text(encoding="utf-8"),
        )
    from .._fs import sha256_bytes

    return Published(carded["name"], carded["version"], target, done.url, sha256_bytes(raw), not done.noop)


@contextlib.contextmanager
def as_peft(session: Session, package_dir: Path, manifest: dict[str, Any]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A LoRA in our package format as PEFT's files (so that PEFT loads the repo), keeping what our manifest
    records of the base; PEFT and AdapterHub packages, and bottleneck adapters, stay as they are."""
    from ..formats.pack import prepare_package

    config = manifest["adapter"]["config"]
    if manifest["adapter"]["type"] != "lora" or config.get("format") in ("peft", "adapterhub"):
        yield package_dir, manifest
        return
    from ..formats import export_package_peft
    from ..manifest import write_manifest

    staging = session.cache.ensure().tmp_dir("export-")
    try:
        source = staging / "package"
        shutil.copytree(package_dir, source)
        write_manifest(source, manifest)  # the names and fields given on the command line
        out = export_package_peft(source, staging / "peft")
        exported = prepare_package(out, name=manifest["name"], version=manifest["version"])
        for key in ("description", "license", "authors", "tags", "task", "dependencies"):
            if key in manifest:
                exported[key] = manifest[key]
        exported["base_model"] = manifest["base_model"]
        yield out, exported
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def yank(session: Session, ref: str, registry: str | None = None, undo: bool = False) -> Yanked:
    """Mark one exact version as yanked (or not, with `undo`): resolution then skips it unless pinned."""
    from ..registry.publish import set_yanked

    parsed = parse_ref(ref)
    if not isinstance(parsed, Requirement) or parsed.pinned is None:
        raise UsageError(f"{ref}: yank needs an exact version, e.g. org/name@1.0.0")
    spec = _target(session, registry)
    root = session.client(spec).local_root
    if root is None:
        raise UsageError(f"yanking on {spec.url} is not supported: edit the index where it is hosted")
    set_yanked(root, parsed.name, str(parsed.pinned), not undo)
    return Yanked(parsed.name, str(parsed.pinned), not undo)


def pack(
    session: Session,
    directory: PathLike,
    output: PathLike,
    *,
    name: str | None = None,
    version: str | None = None,
    base: PathLike | None = None,
) -> Packed:
    """A PEFT or AdapterHub directory -> a package directory in `output` (see formats.pack.pack_directory)."""
    from ..formats.pack import pack_directory

    out, manifest = pack_directory(
        directory,
        output,
        name=name,
        version=version,
        base=base,
        fingerprint_cache=session.cache.fingerprints_dir,
    )
    return Packed(
        manifest["name"],
        manifest["version"],
        out,
        manifest["adapter"]["config"].get("format", ""),
        manifest["adapter"]["type"],
        [f["path"] for f in manifest["files"]],
    )


def export(package_dir: PathLike, output: PathLike, fmt: str = "peft") -> Exported:
    """A LoRA package directory -> `fmt`'s layout (only PEFT's so far)."""
    from ..formats import PEFT, export_package_peft
    from ..manifest import read_manifest

    if fmt != PEFT:
        raise UsageError(f"--format {fmt!r}: only 'peft' is supported")
    out = export_package_peft(package_dir, output)
    manifest = read_manifest(package_dir)
    return Exported(manifest["name"], manifest["version"], out, fmt)


def convert(source: PathLike, output: PathLike, allow_pickle: bool = False) -> Converted:
    """An AdapterHub or PEFT directory with pickled weights -> the same adapter with safetensors weights."""
    from ..formats import convert_package

    out = convert_package(source, output, allow_pickle=allow_pickle)
    files = sorted(p.relative_to(out).as_posix() for p in Path(out).rglob("*") if p.is_file())
    return Converted(Path(source), Path(out), files)


def build_site(directory: PathLike, out: PathLike | None = None) -> SiteReport:
    """`adapters registry site`: the directory registry's catalogue site written, only changed pages."""
    from ..site import build_site as write_site

    return write_site(directory, out)


def build(directory: PathLike, repair: bool = True) -> BuildReport:
    """`adapters registry build`: a directory registry checked, and what it derives rewritten (`repair`)."""
    from ..registry.build import build_registry

    return build_registry(Path(directory), repair=repair)
