"""Error types. Each carries the CLI exit code documented in the README."""

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
    exit_code = EXIT_USAGE


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
    """A package directory, manifest, index line or lockfile that breaks the schema or the rules."""

    exit_code = EXIT_INVALID


class LockMismatchError(AdapterError):
    """`--locked` and the lockfile disagree with a fresh resolution."""

    exit_code = EXIT_ERROR
