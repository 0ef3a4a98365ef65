"""Verified, resumable blob downloads into the cache.

Each blob is fetched under its own file lock, so N processes asking for the same blob
download it once. Bytes go to `partial/<hex>.part`, hashed as they stream; a killed
process leaves only that partial file, which the next run re-hashes and resumes with an
HTTP Range request. Only a file whose size and sha256 match is renamed into `blobs/`.
A partial file's old bytes are not verified until the end: when a resumed download does not
match, the partial file is discarded and the blob fetched once more from byte 0.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from .._fs import HASH_CHUNK as CHUNK
from .._fs import hash_into
from ..errors import IntegrityError, NotFoundError, OfflineMissError, RegistryError
from .cache import Cache

Progress = Callable[[int], None]


def _hash_existing(part: Path, size: int) -> tuple[hashlib._Hash, int]:
    """The running hash of a partial download and its length, so the transfer can resume (a
    running hash, not a digest: `_fs` hashes whole files only)."""
    h = hashlib.sha256()
    try:
        if part.stat().st_size > size:
            part.unlink()
            return h, 0
        return h, hash_into(part, h)
    except FileNotFoundError:
        return hashlib.sha256(), 0


# blobs this large hash in a second thread while the socket is read (hashlib releases the GIL)
THREADED_HASH_BYTES = 8 << 20


class _HashingWriter:
    """Writes a download's chunks to its partial file and hashes them in order. For a large blob the
    hash runs in a second thread, so hashing overlaps the socket reads and file writes; at most
    `_QUEUED` chunks wait for it (memory stays bounded whatever the speeds)."""

    _QUEUED = 64

    def __init__(self, out: Any, h: hashlib._Hash, threaded: bool) -> None:
        self._out, self._h = out, h
        self._queue: queue.Queue[bytes | None] | None = None
        if threaded:
            self._queue = queue.Queue(self._QUEUED)
            self._thread = threading.Thread(target=self._run, name="hash", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            self._h.update(chunk)

    def write(self, chunk: bytes) -> None:
        self._out.write(chunk)
        if self._queue is None:
            self._h.update(chunk)
        else:
            self._queue.put(chunk)

    def close(self) -> None:
        """Every written chunk hashed (also after a dropped connection: the bytes on disk stay usable)."""
        if self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._queue = None


class Downloader:
    def __init__(
        self, cache: Cache, client_factory: Callable[[], httpx.Client] | None = None, offline: bool = False
    ) -> None:
        self.cache = cache
        self.client_factory = client_factory
        self.offline = offline
        self.downloads = 0  # blobs actually transferred by this process (for reports and tests)

    def fetch(
        self,
        url: str,
        sha256: str,
        size: int,
        label: str,
        progress: Progress | None = None,
        client: httpx.Client | None = None,
    ) -> Path:
        """Return the path of the verified blob, downloading it if the cache lacks it.

        `client`: the registry's HTTP client (it carries that registry's scoped token)."""
        blob = self.cache.blob_path(sha256)
        if self.cache.touch(sha256):
            return blob
        if self.offline and not url.startswith("file:"):  # local directories are not network
            raise OfflineMissError(f"offline: {label} (blob {sha256[:12]}) is not in the cache")
        with self.cache.lock(sha256):
            if blob.is_file():  # another process finished it while we waited
                return blob
            part = self.cache.partial_path(sha256)
            if url.startswith("file:"):
                digest, have = self._copy_local(url, part, size, label)
            else:
                digest, have, resumed = self._download_http(url, part, size, label, progress, client)
                if resumed and (have != size or digest != sha256):
                    # the bytes kept from an earlier try were bad: start over once, from byte 0
                    part.unlink(missing_ok=True)
                    if progress:
                        progress(-have)
                    digest, have, _ = self._download_http(url, part, size, label, progress, client)
            if have != size or digest != sha256:
                part.unlink(missing_ok=True)
                raise IntegrityError(
                    f"{label}: downloaded bytes do not match the manifest "
                    f"(expected sha256 {sha256[:12]}…, {size} bytes; got {digest[:12]}…, {have} bytes)"
                )
            self.downloads += 1
            return self.cache.commit_blob(part, sha256)

    def _copy_local(self, url: str, part: Path, size: int, label: str) -> tuple[str, int]:
        from ..registry.transport import file_url_to_path

        source = file_url_to_path(url)
        h = hashlib.sha256()
        have = 0
        try:
            with open(source, "rb") as src, open(part, "wb") as out:
                # a byte past `size` is enough to fail
                while have <= size and (chunk := src.read(min(CHUNK, size + 1 - have))):
                    h.update(chunk)
                    out.write(chunk)
                    have += len(chunk)
        except FileNotFoundError:
            raise NotFoundError(f"{label}: the registry has no blob at {source}") from None
        except OSError as exc:
            if exc.filename is not None and os.fspath(exc.filename) == os.fspath(source):  # the registry's side
                raise RegistryError(f"{label}: cannot read {source} ({exc.strerror or exc})") from None
            raise  # our side (the cache's disk): errors.storage_error names it
        return h.hexdigest(), have

    def _download_http(
        self, url: str, part: Path, size: int, label: str, progress: Progress | None, client: httpx.Client | None
    ) -> tuple[str, int, bool]:
        """(sha256, length, resumed): `resumed` when bytes already on disk (from an earlier run, or an
        earlier try of this one) make part of the result."""
        from ..net import Retry, check_url, client_timeout, iter_body, raise_for_retry, redact, retrying

        check_url(url)
        if client is None:
            assert self.client_factory is not None
            client = self.client_factory()
        http = client
        h, have = _hash_existing(part, size)
        resumed = have > 0
        if progress and have:
            progress(have)

        def attempt() -> None:
            """One GET (a Range request when bytes are already on disk); every byte read is kept."""
            nonlocal h, have, resumed
            # identity: a compressed answer to a Range request would not be the blob's bytes
            headers = {"Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
            with http.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 404:
                    raise NotFoundError(f"{label}: {redact(url)} not found")
                raise_for_retry(response)
                if status == 200 and have:
                    have = 0  # the server ignored Range: start over
                    h = hashlib.sha256()
                elif status == 206:
                    start = _content_range_start(response.headers.get("Content-Range", ""))
                    if start != have:
                        raise Retry(f"bad Content-Range {response.headers.get('Content-Range')!r}")
                    resumed = resumed or have > 0
                elif status != 200:
                    raise RegistryError(f"{label}: unexpected HTTP {status} from {redact(url)}")
                with open(part, "r+b" if have else "wb") as out:
                    out.seek(have)
                    out.truncate()
                    sink = _HashingWriter(out, h, size - have >= THREADED_HASH_BYTES)
                    try:
                        for chunk in iter_body(response):  # as received: a drop keeps every byte read
                            have += len(chunk)
                            if have > size:
                                raise IntegrityError(f"{label}: server sent more than the {size} bytes listed")
                            sink.write(chunk)
                            if progress:
                                progress(len(chunk))
                    finally:
                        sink.close()
            if size != 0 and have != size:
                raise Retry("connection closed early")

        def give_up(exc: Exception, tries: int) -> Exception:
            reason = f"{type(exc).__name__}: {exc}"
            return RegistryError(f"{label}: download from {redact(url)} failed after {tries} tries ({reason})")

        if size == 0 or have < size:  # a complete partial file needs no request
            retrying(label, url, attempt, give_up=give_up, timeout=client_timeout(http))
        return h.hexdigest(), have, resumed


def _content_range_start(value: str) -> int:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1
