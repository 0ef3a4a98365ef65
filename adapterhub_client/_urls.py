"""User info in URLs: found and hidden on the raw text. Torch- and httpx-free, so settings and
reference parsing can refuse credentials without loading the HTTP stack."""

from __future__ import annotations

import re

# `scheme://` then anything up to the last "@" before the path: a password may itself hold "/", "?" or
# "#", which end urlsplit's netloc early, so user info is found on the raw text, greedily.
_USERINFO = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*://)([^@]*)@")


def redact(url: str) -> str:
    """`url` fit for a message or a log: user info (`user:password@`) replaced by `***@`."""
    match = _USERINFO.match(url)
    if match is None or not _looks_like_userinfo(match.group(2), url[match.end() :]):
        return url
    return f"{match.group(1)}***@{url[match.end() :]}"


def has_credentials(url: str) -> bool:
    """Whether `url` carries user info (`user:password@host`), however odd the password."""
    match = _USERINFO.match(url)
    return match is not None and _looks_like_userinfo(match.group(2), url[match.end() :])


def _looks_like_userinfo(before: str, after: str) -> bool:
    """Whether the text before an "@" is user info, not a path ending in a version (`.../org/x@1.0`).

    User info when: no "/" before the "@" (the usual `user:pw@host`); or a host and path follow it
    (a version specifier never holds "/"); or the first segment is `name:` + something that is not a
    port (`user:pa/ss@host`)."""
    if "/" not in before or "/" in after:
        return True
    first = before.split("/", 1)[0]
    _, colon, rest = first.partition(":")
    return bool(colon) and not rest.isdigit()


def is_loopback(host: str | None) -> bool:
    """Whether a URL's host is this machine (plain HTTP is allowed only there)."""
    if not host:
        return False
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
