"""Credentials for OCI registries: where they come from and how they are sent.

Sources (`credentials_for`, first hit wins): ADAPTERS_USERNAME / ADAPTERS_PASSWORD, our own store (a
JSON file given by the caller, Docker's `auths` format), then the Docker config (DOCKER_CONFIG or
~/.docker/config.json: `credHelpers[host]`, `credsStore`, then base64 `auths`).

Sending (`RegistryAuth`): anonymous, HTTP basic, or the registry token flow (a 401 with
`WWW-Authenticate: Bearer realm=...,service=...,scope=...` -> GET realm?service&scope with the basic
credentials, if any -> a bearer token cached per scope until shortly before it expires). Credentials go
to the registry's origin and its token realm only: the auth attaches nothing to any other origin, and
httpx drops the header on a cross-origin redirect (a blob served from a CDN).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ..errors import AdapterWarning, RegistryError
from ..net import get_bytes, origin, redact

Credentials = tuple[str, str]

MAX_CONFIG_BYTES = 1024 * 1024  # a Docker config or our store
MAX_TOKEN_BYTES = 64 * 1024  # a token server's answer
HELPER_TIMEOUT = 30.0  # seconds a credential helper may take (some ask a keychain)
MAX_HELPER_BYTES = 64 * 1024
TOKEN_MARGIN = 10.0  # seconds before expiry a token is no longer used
DEFAULT_TOKEN_SECONDS = 60  # the distribution spec's default `expires_in`
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


# --- credential sources ----------------------------------------------------------------------------
def _config_key(key: str) -> str:
    """`https://host:port/path` or `host:port` -> `host:port` (Docker writes both forms)."""
    text = key.strip()
    if "://" in text:
        text = urlsplit(text).netloc
    return text.split("/", 1)[0].lower()


def _lookup_key(host: str) -> str:
    host = host.lower()
    return _config_key(DOCKER_HUB_KEY) if host in DOCKER_HUB_HOSTS else host


def _read_json(path: Path, what: str) -> dict[str, object] | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        warnings.warn(f"cannot read {what} {path}: {exc.strerror or exc}", AdapterWarning, stacklevel=3)
        return None
    if len(raw) > MAX_CONFIG_BYTES:
        warnings.warn(f"{what} {path} is larger than {MAX_CONFIG_BYTES} bytes; ignored", AdapterWarning, stacklevel=3)
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        warnings.warn(f"{what} {path} is not valid JSON; ignored", AdapterWarning, stacklevel=3)
        return None
    return data if isinstance(data, dict) else None


def _auths_entry(auths: object, host: str) -> Credentials | None:
    """`{"auths": {key: {"auth": base64(user:password)} | {"username", "password"}}}` for `host`."""
    if not isinstance(auths, dict):
        return None
    wanted = _lookup_key(host)
    for key, entry in auths.items():
        if not isinstance(key, str) or _config_key(key) != wanted or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return entry["username"], entry["password"]
        encoded = entry.get("auth")
        if isinstance(encoded, str) and encoded:
            try:
                user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None
            if sep:
                return user, password
    return None


def _helper(name: str, host: str) -> Credentials | None:
    """`docker-credential-<name> get` with the server on stdin -> (Username, Secret), or None."""
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
        return None
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        warnings.warn(f"credential helper docker-credential-{name} is not on PATH", AdapterWarning, stacklevel=3)
        return None
    server = DOCKER_HUB_KEY if host.lower() in DOCKER_HUB_HOSTS else host
    try:
        done = subprocess.run(
            [program, "get"], input=server.encode(), capture_output=True, timeout=HELPER_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        warnings.warn(f"credential helper docker-credential-{name} failed: {exc}", AdapterWarning, stacklevel=3)
        return None
    if done.returncode != 0 or len(done.stdout) > MAX_HELPER_BYTES:
        return None  # "credentials not found in native keychain" and the like
    try:
        answer = json.loads(done.stdout)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(answer, dict) and isinstance(answer.get("Username"), str) and isinstance(answer.get("Secret"), str):
        return answer["Username"], answer["Secret"]
    return None


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _from_docker_config(host: str, env: Mapping[str, str]) -> Credentials | None:
    data = _read_json(docker_config_path(env), "Docker config")
    if data is None:
        return None
    helpers = data.get("credHelpers")
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if isinstance(key, str) and isinstance(name, str) and _config_key(key) == _lookup_key(host):
                return _helper(name, host)
    store = data.get("credsStore")
    if isinstance(store, str) and store and (found := _helper(store, host)) is not None:
        return found
    return _auths_entry(data.get("auths"), host)


def credentials_for(
    host: str, *, store: Path | None = None, env: Mapping[str, str] | None = None
) -> Credentials | None:
    """(user, password) for a registry `host` (`name[:port]`), or None for anonymous access.

    Order: ADAPTERS_USERNAME/ADAPTERS_PASSWORD, our store at `store` (Docker's `auths` JSON), the Docker config."""
    env = os.environ if env is None else env
    user, password = env.get("ADAPTERS_USERNAME"), env.get("ADAPTERS_PASSWORD")
    if user and password is not None:
        return user, password
    if store is not None:
        data = _read_json(store, "credential store")
        if data is not None and (found := _auths_entry(data.get("auths"), host)) is not None:
            return found
    return _from_docker_config(host, env)


def store_entry(user: str, password: str) -> dict[str, str]:
    """One host's entry in our store (what `adapters login` writes under `auths`)."""
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def save_login(store: Path, host: str, user: str, password: str) -> None:
    """`adapters login`: our store gets `host`'s entry (written atomically, mode 0600: it is a secret)."""
    from .._fs import atomic_write

    data = _read_json(store, "credential store") or {}
    found = data.get("auths")
    auths: dict[str, object] = dict(found) if isinstance(found, dict) else {}
    auths[host] = store_entry(user, password)
    atomic_write(store, json.dumps({"auths": auths}, indent=2) + "\n", mode=0o600)


def remove_login(store: Path, host: str) -> bool:
    """`adapters logout`: drop `host`'s entry; False if there was none."""
    from .._fs import atomic_write

    data = _read_json(store, "credential store") or {}
    found = data.get("auths")
    auths: dict[str, object] = dict(found) if isinstance(found, dict) else {}
    if host not in auths:
        return False
    del auths[host]
    atomic_write(store, json.dumps({"auths": auths}, indent=2) + "\n", mode=0o600)
    return True


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- challenges and tokens -------------------------------------------------------------------------
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer", lower case
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="...",service="...",scope="..."` -> Challenge (one challenge: registries send one)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None:
            return None
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        pos = match.end()
    return Challenge(scheme.lower(), params)


def request_scope(method: str, path: str) -> str | None:
    """The token scope a registry request needs: `repository:<name>:pull` (reads) or `:pull,push`."""
    match = re.fullmatch(r"/v2/(.+)/(blobs|manifests|tags)/.*", path)
    if match is None:
        return None
    actions = "pull" if method in ("GET", "HEAD") else "pull,push"
    return f"repository:{match.group(1)}:{actions}"


@dataclass
class _Token:
    value: str
    until: float  # time.monotonic()


class RegistryAuth(httpx.Auth):
    """Attaches the registry's credentials to requests for its own origin: basic (once the registry asked
    for it), or the bearer token cached for the request's scope. `answer` handles a 401 challenge."""

    def __init__(self, registry_url: str, credentials: Credentials | None = None) -> None:
        self.origin = origin(registry_url)
        self.registry = registry_url
        self.credentials = credentials
        self.basic = False  # the registry asked for basic auth: send it with every request
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self.token_requests = 0  # realm requests made (for reports and tests)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if origin(str(request.url)) == self.origin and "Authorization" not in request.headers:
            header = self.header_for(request.method, request.url.path, request.url.params.get("from"))
            if header:
                request.headers["Authorization"] = header
        yield request

    @property
    def in_use(self) -> bool:
        """Credentials given, or tokens fetched: a request without a header would meet a challenge."""
        return self.credentials is not None or bool(self._tokens)

    def header_for(self, method: str, path: str, mount_from: str | None = None) -> str | None:
        if self.basic and self.credentials:
            return basic_header(*self.credentials)
        key = self._key(method, path, mount_from)
        if key is None:
            return None
        with self._lock:
            token = self._tokens.get(key)
            if token is None and key.endswith(":pull"):  # a push token reads too
                token = self._tokens.get(key + ",push")
            if token is None or token.until <= time.monotonic():
                return None
            return f"Bearer {token.value}"

    @staticmethod
    def _key(method: str, path: str, mount_from: str | None) -> str | None:
        scope = request_scope(method, path)
        if scope is not None and mount_from:
            scope += f" repository:{mount_from}:pull"
        return scope

    def answer(self, response: httpx.Response, http: httpx.Client) -> bool:
        """Act on a 401: True when a retry may now succeed (new credentials attached), False when not."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        request = response.request
        had = request.headers.get("Authorization")
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            if not self.credentials or (had or "").startswith("Basic "):
                return False
            self.basic = True
            return True
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return False
        key = self._key(request.method, request.url.path, request.url.params.get("from"))
        if key is None:
            key = challenge.params.get("scope", "")
        scopes = (challenge.params.get("scope") or key).split()
        if had and had.startswith("Bearer ") and "insufficient_scope" not in challenge.params.get("error", ""):
            # a token we just fetched was refused: asking again would not help
            with self._lock:
                if (token := self._tokens.get(key)) is not None and f"Bearer {token.value}" == had:
                    return False
        self._fetch_token(challenge, scopes, key, http)
        return True

    def _fetch_token(self, challenge: Challenge, scopes: list[str], key: str, http: httpx.Client) -> None:
        realm = challenge.params["realm"]
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in scopes]
        url = str(httpx.URL(realm, params=params))
        headers = {"Accept": "application/json"}
        if self.credentials:
            headers["Authorization"] = basic_header(*self.credentials)
        self.token_requests += 1
        answer = get_bytes(http, url, "registry token", limit=MAX_TOKEN_BYTES, headers=headers)
        if answer.status in (401, 403):
            who = "the credentials given" if self.credentials else "anonymous access"
            raise RegistryError(
                f"{redact(self.registry)}: the token server {redact(realm)} refused {who} "
                f"(HTTP {answer.status}); log in or check the user name and password"
            )
        if answer.status != 200:
            raise RegistryError(f"{redact(self.registry)}: token server {redact(realm)} answered HTTP {answer.status}")
        try:
            data = json.loads(answer.body)
        except (ValueError, UnicodeDecodeError):
            data = None
        value = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise RegistryError(f"{redact(self.registry)}: token server {redact(realm)} sent no token")
        expires = data.get("expires_in") if isinstance(data, dict) else None
        seconds = float(expires) if isinstance(expires, (int, float)) and expires > 0 else DEFAULT_TOKEN_SECONDS
        with self._lock:
            self._tokens[key] = _Token(value, time.monotonic() + max(seconds - TOKEN_MARGIN, 1.0))
