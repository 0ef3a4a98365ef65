"""`adapters publish` and `adapters yank`: writing to a directory registry (local or file://)."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import RegistrySpec
from ..errors import UsageError
from ..refs import Requirement, parse_ref
from .results import Published, Yanked
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
) -> Published:
    """Validate the package (ours or PEFT; `base` records a base model's fingerprint), then publish it."""
    from ..formats.pack import prepare_package
    from ..registry.publish import publish_directory

    manifest = prepare_package(
        Path(path),
        name=name,
        version=version,
        base=None if base is None else Path(base),
        fingerprint_cache=session.cache.fingerprints_dir,
    )
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
