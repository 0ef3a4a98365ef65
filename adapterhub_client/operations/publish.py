"""`adapters publish` and `adapters yank` (writing to a directory registry, local or file://), and the
package conversions `adapters pack` and `adapters export`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..config import RegistrySpec
from ..errors import UsageError
from ..manifest import canonical_name
from ..refs import Requirement, parse_ref
from .results import Exported, Packed, Published, Yanked
from .session import Session

PathLike = str | os.PathLike[str]


def _target(session: Session, registry: str | None) -> RegistrySpec:
    """The registry named (or at a URL or directory), else the first configured: the local one."""
    return session.settings.registry(registry) if registry else session.settings.registries[0]


def publish(
    session: Session,
    path: PathLike,
    registry: str | None = None,
    name: str | None = None,
    version: str | None = None,
    base: PathLike | None = None,
    *,
    base_name: str | None = None,
    description: str | None = None,
    license: str | None = None,
    tags: Sequence[str] = (),
) -> Published:
    """Validate the package (ours, PEFT or AdapterHub; `base` records a base model's fingerprint, Hub id
    and model_type; `base_name` names the base by its Hub id), then publish it. The name is stored in
    its canonical form, so `Acme/Sentiment` and `acme/sentiment` are one package."""
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
    spec = _target(session, registry)
    root = session.client(spec).local_root
    if root is None:
        raise UsageError(f"publishing to {spec.url} is not supported yet: publish to a local or file:// registry")
    entry, created = publish_directory(root, Path(path), manifest)
    return Published(entry["name"], entry["version"], spec.name, spec.url, entry["manifest"]["sha256"], created)


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
