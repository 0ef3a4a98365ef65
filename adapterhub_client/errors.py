"""Every error a user can cause, each with the CLI exit code documented in the README.

The CLI prints an :class:`AdapterError` as one line and exits with its ``exit_code``; anything
else escaping is a bug ("internal error"). The tree::

    AdapterError (1)
    ├── UsageError (2)                 bad arguments, options or settings
    │   └── AdapterConfigError (2)     an adapter config (LoRAConfig, BottleneckConfig, ...) with invalid values
    ├── NotFoundError (3)              an adapter, version, file or cache entry that does not exist
    │   ├── OfflineMissError (3)       offline, and the cache lacks it
    │   └── ResolutionError (3)        no set of versions satisfies the requirements
    ├── IntegrityError (4)             bytes that do not match their recorded sha256 or size
    ├── IncompatibleError (5)          the adapter does not fit the base model
    ├── RegistryError (6)              a registry that cannot be reached, or refused a request
    ├── InvalidPackageError (7)        a package, manifest, index line, lockfile or weight file breaking the rules
    │   ├── AdapterWeightsError (7)    tensors that do not fit the model (stray keys, missing or mis-shaped weights)
    │   └── UnsupportedAdapterError (7) a PEFT / AdapterHub option or kind whose math we do not reproduce
    ├── StorageError (8)               the disk refused: no space left, read-only file system, permission denied
    └── LockMismatchError (1)          `--locked`, and the lockfile disagrees with a fresh resolution

    AdapterWarning (UserWarning)       worth a look but not stopping the command (an unknown config.toml
    │                                  key, a registry search skipped); the CLI prints it as one `warning:` line
    └── YankedWarning                  a yanked version was chosen (it was pinned)

:func:`storage_error` turns such an ``OSError`` (and a file name too long: a UsageError) into one line
naming the directory; the CLI applies it to any that escapes.
"""

from __future__ import annotations

import errno
import os

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTEGRITY = 4
EXIT_INCOMPATIBLE = 5
EXIT_REGISTRY = 6
EXIT_INVALID = 7
EXIT_STORAGE = 8


class AdapterError(Exception):
    """Base class for every error a user can cause; the CLI prints it as one line."""

    exit_code = EXIT_ERROR


class UsageError(AdapterError):
    """Bad arguments, options or settings."""

    exit_code = EXIT_USAGE


class AdapterConfigError(UsageError):
    """An adapter config with invalid values; raised when the config is constructed."""


class NotFoundError(AdapterError):
    """An adapter, version, file or cache entry that does not exist (or is missing offline)."""

    exit_code = EXIT_NOT_FOUND


class OfflineMissError(NotFoundError):
    """Offline, and the cache lacks something; the message names it."""


class ResolutionError(NotFoundError):
    """No set of versions satisfies the requirements (conflicts name both sides)."""


class IntegrityError(AdapterError):
    """Bytes that do not match their recorded sha256 or size."""

    exit_code = EXIT_INTEGRITY


class IncompatibleError(AdapterError):
    """The adapter does not fit the local base model."""

    exit_code = EXIT_INCOMPATIBLE


class RegistryError(AdapterError):
    """A registry that cannot be reached, or that refused a request."""

    exit_code = EXIT_REGISTRY


class InvalidPackageError(AdapterError):
    """A package directory, manifest, index line, lockfile or weight file that breaks the schema or the rules."""

    exit_code = EXIT_INVALID


class AdapterWeightsError(InvalidPackageError):
    """Adapter tensors that do not fit the model: keys that land nowhere, or modules left without weights."""


class UnsupportedAdapterError(InvalidPackageError):
    """A PEFT or AdapterHub adapter kind or option whose math the built-in modules do not reproduce."""


class StorageError(AdapterError):
    """The file system refused a write: full, read-only or not ours; the message names the directory."""

    exit_code = EXIT_STORAGE


def storage_error(exc: OSError, where: object = None, instead: str = "another --cache-dir") -> AdapterError | None:
    """The one-line error for a disk that refused (`where`: the directory being written, else the file),
    or None when `exc` is another kind of OSError."""
    path = exc.filename if exc.filename is not None else where
    place = where if where is not None else path
    if path is None:
        path = place = "a file"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"no space left on the file system of {place}; free some space or use {instead}")
    if exc.errno == errno.EROFS:
        return StorageError(f"read-only file system: {place} cannot be written; use {instead}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"permission denied: {path} cannot be written by this user; use {instead}")
    if exc.errno == errno.ENAMETOOLONG:
        name = os.fsdecode(path) if isinstance(path, (str, bytes)) else str(path)
        return UsageError(f"file name too long for the file system: {name[:200]}")
    return None


class AdapterWarning(UserWarning):
    """Something a person should know that does not stop the command (an unknown config.toml key, a
    registry skipped by search); the CLI prints it as one `warning:` line on stderr."""


class YankedWarning(AdapterWarning):
    """A yanked version was chosen (only a pinned requirement chooses one)."""

    def __init__(self, name: str, version: object) -> None:
        super().__init__(f"{name} {version} is yanked; pin another version unless you need exactly this one")
        self.name = name
        self.version = version


class LockMismatchError(AdapterError):
    """`--locked` and the lockfile disagree with a fresh resolution."""

    exit_code = EXIT_ERROR


__all__ = [
    "AdapterConfigError",
    "AdapterError",
    "AdapterWarning",
    "AdapterWeightsError",
    "IncompatibleError",
    "IntegrityError",
    "InvalidPackageError",
    "LockMismatchError",
    "NotFoundError",
    "OfflineMissError",
    "RegistryError",
    "ResolutionError",
    "StorageError",
    "UnsupportedAdapterError",
    "UsageError",
    "YankedWarning",
]
