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
    └── LockMismatchError (1)          `--locked`, and the lockfile disagrees with a fresh resolution
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_INTEGRITY = 4
EXIT_INCOMPATIBLE = 5
EXIT_REGISTRY = 6
EXIT_INVALID = 7


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


class LockMismatchError(AdapterError):
    """`--locked` and the lockfile disagree with a fresh resolution."""

    exit_code = EXIT_ERROR


__all__ = [
    "AdapterConfigError",
    "AdapterError",
    "AdapterWeightsError",
    "IncompatibleError",
    "IntegrityError",
    "InvalidPackageError",
    "LockMismatchError",
    "NotFoundError",
    "OfflineMissError",
    "RegistryError",
    "ResolutionError",
    "UnsupportedAdapterError",
    "UsageError",
]
