"""Reading a registry's files, from a directory (`file://`) or a static HTTP host.

HTTP reads of index files are revalidated with ETag / If-None-Match against an on-disk
copy, so a warm look-up costs one small conditional request (or none, offline).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

from .._fs import atomic_write, sha256_bytes
from .._text import human_size
from ..errors import InvalidPackageError, NotFoundError, OfflineMissError, RegistryError, UsageError

if TYPE_CHECKING:
    import httpx


class Transport:
    """Read-only access to files below a registry root URL."""

    url: str

    @property
    def reads_locally(self) -> bool:
        """Whether reads stay on this machine (a directory): offline mode does not restrict them."""
        return False

    @property
    def local_root(self) -> Path | None:
        """The registry directory when the registry is one on this machine (publishing writes there)."""
        return None

    def get(self, path: str, *, limit: int, what: str, max_age: float = 0) -> bytes:
        """The file's bytes; NotFoundError if absent; RegistryError if unreachable; InvalidPackageError
        (naming `what`, the kind of file) past `limit` bytes, counted while reading (decompressed).

        `max_age`: a cached copy younger than this many seconds is used without asking.
        """
        raise NotImplementedError

    def get_url(self, url: str, *, limit: int, what: str) -> bytes:
        """An absolute URL (blobs may live elsewhere, e.g. on a CDN); never cached here."""
        raise NotImplementedError

    def location(self, path: str) -> str:
        return urljoin(self.url, path)

    def close(self) -> None:
        pass


def file_url_to_path(url: str) -> Path:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        from ..net import TOKEN_HINT, redact

        raise UsageError(f"refusing {redact(url)}: no credentials inside a registry URL; {TOKEN_HINT}")
    if parts.netloc not in ("", "localhost"):
        raise UsageError(f"file URL with a host is not supported: {url}")
    return Path(unquote(parts.path))  # POSIX file URLs; urllib.request costs 25 ms to import


def local_package_dir(source: str) -> Path | None:
    """The package directory a `file:` source names (as lockfiles record local installs), else None."""
    from ..manifest import MANIFEST_FILE

    if not source.startswith("file:"):
        return None
    path = file_url_to_path(source)
    return path if (path / MANIFEST_FILE).is_file() else None


def open_transport(
    url: str, http_client: Callable[[], httpx.Client], cache_dir: Path, offline: bool = False
) -> Transport:
    """The transport for a registry URL: a directory for `file:`, else static HTTP(S).

    `http_client` is called only for HTTP registries, so a local registry never imports httpx."""
    if url.startswith("file:"):
        return FileTransport(url)
    if url.startswith(("http://", "https://")):
        return HttpTransport(url, http_client(), cache_dir, offline)
    raise UsageError(f"unsupported registry URL {url!r} (file://, http:// on loopback, https://)")


def _read_capped(path: Path, limit: int, what: str) -> bytes:
    """A local file's bytes, refused past `limit` (without reading more than one byte beyond it)."""
    with open(path, "rb") as fh:
        raw = fh.read(limit + 1)
    if len(raw) > limit:
        raise InvalidPackageError(f"{path}: {what} larger than its {human_size(limit)} limit ({limit} bytes)")
    return raw


class FileTransport(Transport):
    def __init__(self, url: str) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.root = file_url_to_path(self.url)

    @property
    def reads_locally(self) -> bool:
        return True

    @property
    def local_root(self) -> Path | None:
        return self.root

    def get(self, path: str, *, limit: int, what: str, max_age: float = 0) -> bytes:
        try:
            return _read_capped(self.root / path, limit, what)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{self.location(path)} not found") from None
        except OSError as exc:
            raise RegistryError(f"cannot read {self.root / path}: {exc}") from None

    def get_url(self, url: str, *, limit: int, what: str) -> bytes:
        if not url.startswith("file:"):
            raise RegistryError(f"a file:// registry cannot point at {url}")
        path = file_url_to_path(url)
        try:
            return _read_capped(path, limit, what)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{url} not found") from None
        except OSError as exc:  # a directory where a blob should be, unreadable, ...
            raise RegistryError(f"cannot read {path}: {exc.strerror or exc}") from None


class HttpTransport(Transport):
    def __init__(self, url: str, client: httpx.Client, cache_dir: Path, offline: bool = False) -> None:
        from ..net import check_url

        self.url = url if url.endswith("/") else url + "/"
        check_url(self.url)
        self.client = client
        self.offline = offline
        key = sha256_bytes(self.url.encode())[:16]
        self.cache_root = cache_dir / "http" / key

    def get(self, path: str, *, limit: int, what: str, max_age: float = 0) -> bytes:
        from ..net import get_bytes

        # One cache file per path holds "<validator header>\n<body>" (ETag, else Last-Modified,
        # else nothing), so validator and body are replaced together, atomically.
        cache_file = self.cache_root / path
        validator, cached, fresh = "", None, False
        try:
            fresh = time.time() - cache_file.stat().st_mtime < max_age
            head, _, cached = cache_file.read_bytes().partition(b"\n")
            validator = head.decode("latin-1")
        except FileNotFoundError:
            pass
        if self.offline or (cached is not None and fresh):
            if cached is None:
                raise OfflineMissError(f"offline: {self.location(path)} is not in the cache")
            return cached
        headers = {}
        if cached is not None and validator.startswith("etag:"):
            headers["If-None-Match"] = validator[len("etag:") :]
        elif cached is not None and validator.startswith("lm:"):
            headers["If-Modified-Since"] = validator[len("lm:") :]
        url = self.location(path)
        answer = get_bytes(self.client, url, what, limit=limit, headers=headers)
        if answer.status == 304 and cached is not None:
            os.utime(cache_file)  # revalidated: fresh again
            return cached
        _check_status(answer.status, url)
        etag, modified = answer.headers.get("ETag"), answer.headers.get("Last-Modified")
        validator = f"etag:{etag}" if etag else f"lm:{modified}" if modified else ""
        if "\n" not in validator:  # kept for offline use even when the host sends no validator
            atomic_write(cache_file, validator.encode("latin-1") + b"\n" + answer.body)
        return answer.body

    def get_url(self, url: str, *, limit: int, what: str) -> bytes:
        from ..net import check_url, get_bytes

        check_url(url)
        if self.offline:
            raise OfflineMissError(f"offline: {url} is not in the cache")
        answer = get_bytes(self.client, url, what, limit=limit)
        _check_status(answer.status, url)
        return answer.body


def _check_status(status: int, url: str) -> None:
    """A one-line error for any answer but 200 (`url` is credential-free: `check_url` refuses others)."""
    if status == 404:
        raise NotFoundError(f"{url} not found")
    if status in (401, 403):
        raise RegistryError(f"{url}: access refused (HTTP {status}); check the token")
    if status != 200:
        raise RegistryError(f"{url}: unexpected HTTP {status}")
