"""HTTP policy shared by every remote source: one client, one retry loop (Retry-After honoured),
HTTPS, scoped tokens."""

from __future__ import annotations

import ipaddress
import math
import random
import time
from collections.abc import Callable, Generator
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ._version import __version__
from .errors import RegistryError, UsageError

USER_AGENT = f"adapterhub-client/{__version__}"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
RETRIES = 5
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 30.0  # seconds: the longest Retry-After honoured as sent
T = TypeVar("T")


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """HTTPS required, except for loopback where plain HTTP is fine (tests, local mirrors)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port or IPv6 literal
    except ValueError as exc:
        raise UsageError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    raise UsageError(f"refusing {url}: registries must use https:// (plain http only on loopback)")


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


def make_client(token: str | None = None, token_url: str | None = None, **kw: Any) -> httpx.Client:
    auth = ScopedToken(token, token_url) if token and token_url else None
    return httpx.Client(
        timeout=TIMEOUT,
        headers={"User-Agent": USER_AGENT},
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


def _default_give_up(what: str, url: str) -> GiveUp:
    def give_up(exc: Exception, tries: int) -> Exception:
        if isinstance(exc, Retry) and exc.status is not None:
            return RegistryError(f"{what}: HTTP {exc.status} from {url}")
        return RegistryError(f"{what}: cannot reach {url} ({type(exc).__name__}: {exc})")

    return give_up


def retrying(
    what: str, url: str, attempt: Callable[[], T], *, tries: int = RETRIES, give_up: GiveUp | None = None
) -> T:
    """The one retry loop: run `attempt` until it returns, retrying transport errors and `Retry`.

    Waits `retry_delay` between tries (Retry-After honoured); after `tries` failures raises what
    `give_up(last error, tries)` returns (a RegistryError naming `what` and `url` by default).
    Any other exception from `attempt` propagates at once."""
    failures = 0
    while True:
        try:
            return attempt()
        except (httpx.TransportError, Retry) as exc:
            failures += 1
            if failures >= tries:
                raise (give_up or _default_give_up(what, url))(exc, failures) from None
            retry_after = exc.retry_after if isinstance(exc, Retry) else None
            time.sleep(retry_delay(failures - 1, retry_after))


def raise_for_retry(response: httpx.Response) -> None:
    """Raise `Retry` for a status worth another try (429, 5xx), carrying its Retry-After."""
    if response.status_code in RETRY_STATUS:
        raise Retry(f"HTTP {response.status_code}", response.headers.get("Retry-After"), response.status_code)


def with_retries(what: str, url: str, call: Callable[[], httpx.Response]) -> httpx.Response:
    """Run `call` (one request) with `retrying`; a retryable status is retried like a dropped connection."""

    def attempt() -> httpx.Response:
        response = call()
        raise_for_retry(response)
        return response

    return retrying(what, url, attempt)
