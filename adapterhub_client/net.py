"""HTTP policy shared by every remote source: one client, one retry loop (Retry-After honoured),
HTTPS, scoped tokens, bounded bodies, deadlines, and URLs redacted before they reach a message.

Deadlines: a request (with its retries) may wait at most `timeout` seconds without progress (default
`DEFAULT_TIMEOUT`; `--timeout`, ADAPTERS_TIMEOUT, `timeout` in config.toml). The wait covers connecting,
retries and backoff, the response headers (even dribbled a byte at a time: every socket read is capped by
the deadline) and a stalled body. Progress is `PROGRESS_BYTES` received; each such step renews the
deadline, so a slow but steady download of any size completes while a drip of a few bytes does not."""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx

from ._text import human_size
from ._urls import has_credentials, is_loopback, redact
from ._version import __version__
from .errors import InvalidPackageError, RegistryError, UsageError

USER_AGENT = f"adapterhub-client/{__version__}"
DEFAULT_TIMEOUT = 15.0  # seconds a request may wait without progress: a dead registry fails in seconds
CONNECT_TIMEOUT = 5.0  # one TCP (+TLS) connect, within the deadline
RETRIES = 5  # tries for drops and retryable statuses (a download resumes each time)
CONNECT_TRIES = 3  # tries when the host cannot be reached at all (2 retries)
PROGRESS_BYTES = 16 * 1024  # bytes that count as progress and renew the deadline
DECODE_CHUNK = 1024 * 1024  # the most bytes one gzip step may inflate to
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 30.0  # seconds: the longest Retry-After honoured as sent
TOKEN_HINT = (
    "give a token with `adapters registry add NAME URL --token T`, `token = ...` in config.toml or ADAPTERS_TOKEN"
)
T = TypeVar("T")


def check_url(url: str) -> None:
    """HTTPS required, except for loopback where plain HTTP is fine (tests, local mirrors)."""
    if has_credentials(url):
        raise UsageError(f"refusing {redact(url)}: no credentials inside a registry URL; {TOKEN_HINT}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port or IPv6 literal
    except ValueError as exc:
        raise UsageError(f"invalid URL {redact(url)!r}: {exc}") from None
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise UsageError(f"refusing {redact(url)}: registries must use https:// (plain http only on loopback)")


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class ScopedToken(httpx.Auth):
    """Bearer token sent only to the origin it was configured for (never to a CDN or redirect)."""

    def __init__(self, token: str, url: str) -> None:
        self.token = token
        self.origin = origin(url)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin(str(request.url)) == self.origin:
            request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _check_request(request: httpx.Request) -> None:
    check_url(str(request.url))


# --- deadlines -------------------------------------------------------------------------------------
class Deadline:
    """How long the current request may still wait: `seconds` from now, renewed by each step of progress."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._until = time.monotonic() + seconds
        self._unmarked = 0

    def remaining(self) -> float:
        return self._until - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def progress(self, received: int) -> None:
        """`received` body bytes arrived; every `PROGRESS_BYTES` of them renew the deadline."""
        self._unmarked += received
        if self._unmarked >= PROGRESS_BYTES:
            self._unmarked = 0
            self._until = time.monotonic() + self.seconds


_current = threading.local()  # the deadline of the request this thread is making (a pool's reads see it)


def current_deadline() -> Deadline | None:
    return getattr(_current, "deadline", None)


def _capped(timeout: float | None, kind: type[Exception]) -> float | None:
    """A socket wait shortened to what the current deadline leaves; `kind` raised when nothing is left."""
    deadline = current_deadline()
    if deadline is None:
        return timeout
    left = deadline.remaining()
    if left <= 0:
        raise kind("no progress within the deadline")
    return left if timeout is None else min(timeout, left)


READ_BYTES = 256 << 10  # the least a socket read asks for


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most what the deadline leaves (so a server
    dribbling its headers a byte at a time cannot hold a request past it)."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # httpcore asks for 64 KiB at a time; larger reads mean a quarter of the h11 events per MB
        # (a 50 MB OCI pull went from 0.6-0.75 to 0.85-0.95 of curl's speed: benchmarks/bench_oci.py)
        return self._stream.read(max(max_bytes, READ_BYTES), _capped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _capped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        tls = self._stream.start_tls(ssl_context, server_hostname, _capped(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        wait = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, wait, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        wait = _capped(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, wait, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _install_deadlines(client: httpx.Client) -> None:
    """Put `_DeadlineBackend` under every connection pool of `client` (direct and proxied)."""
    transports = [client._transport, *client._mounts.values()]  # httpx has no public hook for this
    for transport in transports:  # a mount is None where NO_PROXY exempts a host
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]


class Client(httpx.Client):
    """An httpx client that knows its deadline (`timeout`, seconds without progress)."""

    def __init__(self, *, timeout_s: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.timeout_s = timeout_s
        _install_deadlines(self)


def client_timeout(client: httpx.Client | None) -> float:
    """The deadline a client was made with (`make_client`), else the default."""
    return float(getattr(client, "timeout_s", DEFAULT_TIMEOUT))


def make_client(
    token: str | None = None, token_url: str | None = None, *, timeout: float | None = None, **kw: Any
) -> Client:
    """The one HTTP client: https on every hop, a token scoped to its origin, deadlines of `timeout` s."""
    seconds = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    auth = ScopedToken(token, token_url) if token and token_url else None
    return Client(
        timeout_s=seconds,
        timeout=httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT, seconds)),
        # no br/zstd: the bodies we inflate are bounded by `iter_body`, which knows gzip and deflate
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        auth=auth,
        follow_redirects=True,  # httpx drops Authorization on cross-origin redirects; ScopedToken re-checks
        event_hooks={"request": [_check_request]},  # every hop, redirects included, must be https
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        **kw,
    )


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter: 0.05-0.1 s, then doubling, at most 4 s."""
    return min(0.1 * 2.0**attempt, 4.0) * (0.5 + random.random() / 2)


def retry_after_seconds(value: str | None, *, now: float | None = None, cap: float = MAX_RETRY_AFTER) -> float | None:
    """The wait a `Retry-After` header asks for (delta-seconds or an HTTP-date), within [0, cap].

    None when the header is absent or unreadable, so the caller falls back to its own backoff;
    the cap keeps a misconfigured or hostile server from parking the client for hours."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)  # delta-seconds (a fraction is tolerated)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive one is read as such
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def retry_delay(attempt: int, retry_after: str | None = None) -> float:
    """How long to wait before retry number `attempt + 1`: the server's Retry-After when it sent
    one (capped), else exponential backoff."""
    asked = retry_after_seconds(retry_after)
    return backoff(attempt) if asked is None else asked


class Retry(Exception):
    """Raised inside an attempt to ask `retrying` for another try (after `retry_after`, if set)."""

    def __init__(self, reason: str, retry_after: str | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status


GiveUp = Callable[[Exception, int], Exception]
_UNREACHABLE = (httpx.ConnectError, httpx.ConnectTimeout)


def _default_give_up(what: str, url: str) -> GiveUp:
    def give_up(exc: Exception, tries: int) -> Exception:
        if isinstance(exc, Retry) and exc.status is not None:
            return RegistryError(f"{what}: HTTP {exc.status} from {redact(url)}")
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return RegistryError(f"{what}: cannot reach {redact(url)} after {plural_tries(tries)} ({reason})")

    return give_up


def plural_tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def _timed_out(what: str, url: str, seconds: float) -> RegistryError:
    return RegistryError(
        f"{what}: no progress from {redact(url)} in {seconds:g}s (raise it with --timeout or ADAPTERS_TIMEOUT)"
    )


def retrying(
    what: str,
    url: str,
    attempt: Callable[[], T],
    *,
    tries: int = RETRIES,
    give_up: GiveUp | None = None,
    timeout: float | None = None,
) -> T:
    """The one retry loop: run `attempt` until it returns, retrying transport errors and `Retry`.

    Waits `retry_delay` between tries (Retry-After honoured); after `tries` failures (`CONNECT_TRIES`
    when the host cannot be reached at all) raises what `give_up(last error, tries)` returns (a
    RegistryError naming `what` and `url` by default). With `timeout`, every try and wait shares one
    `Deadline` (renewed by progress in `iter_body`); once it runs out the loop stops with a RegistryError
    saying so. Any other exception from `attempt` propagates at once."""
    deadline = Deadline(timeout) if timeout is not None else None
    outer = current_deadline()
    failures = unreachable = 0
    try:
        while True:
            _current.deadline = deadline
            try:
                return attempt()
            except (httpx.TooManyRedirects, httpx.DecodingError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                # not worth a retry: the server (or a redirect) keeps sending the same broken answer
                raise RegistryError(f"{what}: {redact(url)}: {type(exc).__name__}: {redact(str(exc))}") from None
            except (httpx.TransportError, Retry) as exc:
                failures += 1
                unreachable += isinstance(exc, _UNREACHABLE)
                if deadline is not None and deadline.expired():
                    raise _timed_out(what, url, deadline.seconds) from None
                if failures >= tries or unreachable >= CONNECT_TRIES:
                    raise (give_up or _default_give_up(what, url))(exc, failures) from None
                asked = exc.retry_after if isinstance(exc, Retry) else None
                delay = retry_delay(failures - 1, asked)
                if deadline is not None and delay >= deadline.remaining():
                    if retry_after_seconds(asked) is not None:
                        raise RegistryError(
                            f"{what}: {redact(url)} asks to retry in {delay:g}s, past the {deadline.seconds:g}s "
                            "timeout (raise it with --timeout or ADAPTERS_TIMEOUT)"
                        ) from None
                    raise _timed_out(what, url, deadline.seconds) from None
                _current.deadline = outer
                time.sleep(delay)
    finally:
        _current.deadline = outer


def raise_for_retry(response: httpx.Response) -> None:
    """Raise `Retry` for a status worth another try (429, 5xx), carrying its Retry-After."""
    if response.status_code in RETRY_STATUS:
        raise Retry(f"HTTP {response.status_code}", response.headers.get("Retry-After"), response.status_code)


# --- bounded bodies --------------------------------------------------------------------------------
def _decoder(response: httpx.Response) -> Any:
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or zlib header, detected
    raise RegistryError(f"{redact(str(response.url))}: unsupported Content-Encoding {encoding!r}")


def iter_body(response: httpx.Response) -> Iterator[bytes]:
    """The body of a streamed response, decoded, in pieces of at most `DECODE_CHUNK` bytes whatever the
    compression ratio (so a gzip bomb costs one piece of memory at a time). Bytes received count as
    progress on the current deadline; once it runs out, `httpx.ReadTimeout` (a retryable transport error)."""
    decoder = _decoder(response)
    deadline = current_deadline()
    url = redact(str(response.url))
    for raw in response.iter_raw():
        if deadline is not None:
            deadline.progress(len(raw))
            if deadline.expired():
                raise httpx.ReadTimeout("no progress within the deadline", request=response.request)
        if decoder is None:
            if raw:
                yield raw
            continue
        data = raw
        while data:
            try:
                out = decoder.decompress(data, DECODE_CHUNK)
            except zlib.error as exc:
                raise RegistryError(f"{url}: the compressed body is corrupt ({exc})") from None
            if out:
                yield out
            data = decoder.unconsumed_tail
            if decoder.eof and not data:  # one gzip member done; another may follow
                data = decoder.unused_data
                decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)
    if decoder is not None and (tail := decoder.flush()):
        yield tail


def read_body(response: httpx.Response, limit: int, what: str) -> bytes:
    """The whole decoded body, refused (InvalidPackageError, exit 7) once it passes `limit` bytes."""
    chunks: list[bytes] = []
    have = 0
    for chunk in iter_body(response):
        have += len(chunk)
        if have > limit:
            raise InvalidPackageError(
                f"{redact(str(response.url))}: {what} larger than its {human_size(limit)} limit ({limit} bytes)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


@dataclasses.dataclass
class Answer:
    """A completed GET: status, headers and the (bounded, decoded) body."""

    status: int
    headers: httpx.Headers
    body: bytes


def get_bytes(
    client: httpx.Client, url: str, what: str, *, limit: int, headers: dict[str, str] | None = None
) -> Answer:
    """GET `url` with the retry loop and the client's deadline; the body of a 200 read up to `limit`
    bytes (`what` names the file in the error). Drops mid-body are retried like any transport error."""

    def attempt() -> Answer:
        with client.stream("GET", url, headers=headers) as response:
            raise_for_retry(response)
            body = read_body(response, limit, what) if response.status_code == 200 else b""
            return Answer(response.status_code, response.headers, body)

    return retrying(f"reading the {what}", url, attempt, timeout=client_timeout(client))
