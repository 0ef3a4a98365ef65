"""HTTP policy shared by every remote source: one client, retries, HTTPS, scoped tokens."""

from __future__ import annotations

import ipaddress
import random
import time
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import httpx

from ._version import __version__
from .errors import RegistryError, UsageError

USER_AGENT = f"adapterhub-client/{__version__}"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
RETRIES = 5
RETRY_STATUS = {429, 500, 502, 503, 504}
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

    def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
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
    return min(0.1 * (2**attempt), 4.0) * (0.5 + random.random() / 2)


def with_retries(what: str, url: str, call: Callable[[], T]) -> T:
    """Run `call`, retrying transport errors and retryable statuses with exponential backoff."""
    last: Exception | None = None
    for attempt in range(RETRIES):
        try:
            result = call()
        except httpx.TransportError as exc:
            last = exc
        else:
            status = getattr(result, "status_code", None)
            if status not in RETRY_STATUS:
                return result
            last = RegistryError(f"{what}: HTTP {status} from {url}")
        if attempt < RETRIES - 1:
            time.sleep(backoff(attempt))
    if isinstance(last, RegistryError):
        raise last
    raise RegistryError(f"{what}: cannot reach {url} ({type(last).__name__}: {last})")
