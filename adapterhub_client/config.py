"""Settings, with one precedence everywhere: flag > environment > config file > defaults.

Environment: ADAPTERS_HOME, ADAPTERS_CACHE_DIR, ADAPTERS_REGISTRY, ADAPTERS_OFFLINE, ADAPTERS_TOKEN,
ADAPTERS_TIMEOUT, ADAPTERS_ADAPTERHUB_MIRROR. Config file: `config.toml` under ADAPTERS_HOME when set, else in the platformdirs
config dir. An unknown key warns (AdapterWarning), naming the closest known one.

```toml
cache_dir = "/big/disk/adapters-cache"   # optional
offline = false
timeout = 15                             # seconds a request may wait without progress (optional)
[[registry]]
name = "team"
url = "https://adapters.example.com/registry/"
token = "..."                            # optional; sent only to that registry's host
[[trust]]                                # signature policy (docs/SIGNING.md); the first match wins
match = "acme/*"                         # fnmatch pattern on canonical adapter names
registry = "team"                        # optional: only versions from this registry (name or URL)
require_signature = true                 # default true
trusted_keys = ["/etc/adapters/acme.pub"]  # PEM public keys or CA certificates (paths or inline), "identity:..."
```
Registry URLs never carry credentials (`https://user:pw@host/` is refused): tokens go in `token`,
`--token` or ADAPTERS_TOKEN, so a URL can be printed in any message.
The embedded **local** registry (`<home>/registry`) is always first, so a fresh machine can
publish and install with no server.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from .errors import AdapterWarning, NotFoundError, UsageError

APP = "adapterhub"
LOCAL_REGISTRY = "local"
_TRUE = {"1", "true", "yes", "on"}
CONFIG_KEYS = ("cache_dir", "offline", "timeout", "registry", "trust")
REGISTRY_KEYS = ("name", "url", "token")
TRUST_KEYS = ("match", "registry", "require_signature", "trusted_keys")


@dataclasses.dataclass(frozen=True)
class RegistrySpec:
    name: str
    url: str
    token: str | None = None


@dataclasses.dataclass(frozen=True)
class TrustRule:
    """One `[[trust]]` table: which adapters it covers and which signers it accepts (signing.policy applies it).
    `trusted_keys` are as written (paths relative to the config file's directory, inline PEM, "identity:...")."""

    match: str
    registry: str | None = None
    require_signature: bool = True
    trusted_keys: tuple[str, ...] = ()
    where: str = "config.toml"  # the file it came from: key paths resolve against its directory


@dataclasses.dataclass
class Settings:
    home: Path
    config_file: Path
    cache_dir: Path
    offline: bool
    registries: list[RegistrySpec]  # searched in order; the first is the default publish target
    timeout: float | None = None  # seconds a request may wait without progress; None: net.DEFAULT_TIMEOUT
    adapterhub_mirror: str | None = None  # ADAPTERS_ADAPTERHUB_MIRROR: a mirror of AdapterHub's file server
    trust: list[TrustRule] = dataclasses.field(default_factory=list)  # [[trust]] tables, first match wins

    @property
    def local_registry(self) -> RegistrySpec:
        return RegistrySpec(LOCAL_REGISTRY, (self.home / "registry").resolve().as_uri())

    def registry(self, name_or_url: str) -> RegistrySpec:
        for spec in self.registries:
            if spec.name == name_or_url:
                return spec
        refuse_credentials(name_or_url, "registry")
        if "://" in name_or_url:
            return self.spec_for_url(name_or_url)
        if os.path.isdir(name_or_url):
            return RegistrySpec(name_or_url, Path(name_or_url).resolve().as_uri())
        raise UsageError(f"unknown registry {name_or_url!r} (see `adapters registry list`)")

    def spec_for_url(self, url: str) -> RegistrySpec:
        """The configured registry at `url` (with its token), else an ad-hoc one without a token."""
        refuse_credentials(url, "registry")
        wanted = url.rstrip("/")
        for spec in self.registries:
            if spec.url.rstrip("/") == wanted:
                return spec
        return RegistrySpec(url, url)

    def is_configured(self, spec: RegistrySpec) -> bool:
        return any(s.url.rstrip("/") == spec.url.rstrip("/") for s in self.registries)


def _platformdirs() -> Any:
    import platformdirs

    return platformdirs


def _home() -> Path:
    env = os.environ.get("ADAPTERS_HOME")
    if env:
        return Path(env).expanduser()
    return Path(_platformdirs().user_data_dir(APP, appauthor=False))


def config_path() -> Path:
    if os.environ.get("ADAPTERS_HOME"):
        return _home() / "config.toml"
    return Path(_platformdirs().user_config_dir(APP, appauthor=False)) / "config.toml"


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:  # a directory, or a path through a regular file
        raise UsageError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise UsageError(f"{path}: invalid TOML (nested too deeply)") from None
    _check_config(data, path)
    return data


def refuse_credentials(url: str, where: str) -> None:
    """A registry URL with user info (`https://user:pw@host/`) is refused, without printing it."""
    from ._urls import has_credentials

    if has_credentials(url):
        from .net import TOKEN_HINT, redact  # deferred: httpx, only on this error

        raise UsageError(f"{where}: refusing {redact(url)}: no credentials inside a registry URL; {TOKEN_HINT}")


def timeout_seconds(value: object, where: str) -> float:
    """A timeout setting as seconds: a finite number > 0, else a one-line error naming where it came from."""
    try:
        seconds = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"{where}: the timeout must be a number of seconds > 0, not {value!r}")
    return seconds


def _warn_unknown(keys: Any, known: tuple[str, ...], where: str, suffix: str = "") -> None:
    for key in keys:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.warn(f"{where}: unknown key {key!r}{suffix}{hint}", AdapterWarning, stacklevel=4)


def _check_config(data: dict[str, Any], path: Path) -> None:
    """The types the settings need; a wrong one is a one-line error naming the key. Unknown keys warn."""
    _warn_unknown(data, CONFIG_KEYS, str(path))
    for key, kind in (("cache_dir", str), ("offline", bool)):
        if key in data and not isinstance(data[key], kind):
            raise UsageError(f"{path}: '{key}' must be a {kind.__name__}, not {data[key]!r}")
    if "timeout" in data:
        timeout_seconds(data["timeout"], f"{path}: timeout")
    registries = data.get("registry", [])
    if not isinstance(registries, list) or not all(
        isinstance(r, dict)
        and isinstance(r.get("name"), str)
        and isinstance(r.get("url"), str)
        and isinstance(r.get("token", ""), str)
        for r in registries
    ):
        raise UsageError(f"{path}: 'registry' must be an array of tables with a name and a url ([[registry]])")
    for r in registries:
        _warn_unknown(r, REGISTRY_KEYS, str(path), f" in [[registry]] {r['name']!r}")
        refuse_credentials(r["url"], f"{path}: registry {r['name']!r}")
    trust_rules(data, path)


def trust_rules(data: dict[str, Any], path: Path) -> list[TrustRule]:
    """The `[[trust]]` tables of a config file, checked: each needs a `match` pattern; a rule requiring
    signatures needs at least one trusted key."""
    tables = data.get("trust", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"{path}: 'trust' must be an array of tables ([[trust]])")
    rules = []
    for i, t in enumerate(tables):
        where = f"{path}: [[trust]] #{i + 1}"
        _warn_unknown(t, TRUST_KEYS, where)
        if not isinstance(t.get("match"), str) or not t["match"].strip():
            raise UsageError(f"{where}: 'match' must be a non-empty name pattern such as \"acme/*\"")
        if not isinstance(t.get("registry", ""), str):
            raise UsageError(f"{where}: 'registry' must be a registry name or URL, not {t['registry']!r}")
        required = t.get("require_signature", True)
        if not isinstance(required, bool):
            raise UsageError(f"{where}: 'require_signature' must be true or false, not {required!r}")
        keys = t.get("trusted_keys", [])
        if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
            raise UsageError(f"{where}: 'trusted_keys' must be an array of key paths or inline PEM strings")
        if required and not keys:
            raise UsageError(f"{where}: require_signature needs trusted_keys (the public keys it accepts)")
        rules.append(TrustRule(t["match"], t.get("registry") or None, required, tuple(keys), str(path)))
    return rules


def write_config_file(path: Path, data: dict[str, Any]) -> None:
    import tomli_w

    from ._fs import atomic_write

    atomic_write(path, tomli_w.dumps(data))


def registry_url(url: str) -> str:
    """The canonical form of a registry URL typed by a user: a directory becomes its file:// URL;
    http(s) must pass the network policy (https, plain http only on loopback); a trailing '/'.
    Credentials inside the URL are refused (tokens have their own place)."""
    refuse_credentials(url, "registry URL")
    if "://" not in url and Path(url).is_dir():
        url = Path(url).resolve().as_uri()
    if url.startswith(("http://", "https://")):
        from .net import check_url  # deferred: httpx

        check_url(url)
    elif url.startswith("oci://"):  # an OCI registry host and a repository prefix: org/name in <prefix>/org/name
        from .refs import parse_oci_ref

        host, _, prefix = url[len("oci://") :].rstrip("/").partition("/")
        parse_oci_ref(f"oci://{host}/{prefix or 'x'}")  # the host and the prefix, validated
    elif not url.startswith("file:"):
        raise UsageError(f"unsupported registry URL {url!r}")
    return url if url.endswith("/") else url + "/"


def add_registry(name: str, url: str, token: str | None = None) -> RegistrySpec:
    """Add registry `name` at `url` to the config file (replacing one of that name), last in search order."""
    if name == LOCAL_REGISTRY:
        raise UsageError(f"{LOCAL_REGISTRY!r} is the built-in registry")
    spec = RegistrySpec(name, registry_url(url), token or None)
    path = config_path()
    cfg = read_config_file(path)
    entry: dict[str, str] = {"name": spec.name, "url": spec.url}
    if spec.token:
        entry["token"] = spec.token
    cfg["registry"] = [*(r for r in cfg.get("registry", []) if r.get("name") != name), entry]
    write_config_file(path, cfg)
    return spec


def remove_registry(name: str) -> None:
    """Remove registry `name` from the config file; NotFoundError if it is not configured."""
    path = config_path()
    cfg = read_config_file(path)
    registries = cfg.get("registry", [])
    kept = [r for r in registries if r.get("name") != name]
    if len(kept) == len(registries):
        raise NotFoundError(f"no registry named {name!r}")
    cfg["registry"] = kept
    write_config_file(path, cfg)


def load_settings(
    *,
    registry: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    token: str | None = None,
    timeout: float | None = None,
) -> Settings:
    """Arguments are the flags; None means "not given on the command line"."""
    home = _home()
    cfg_path = config_path()
    cfg = read_config_file(cfg_path)

    for where, value in (
        ("--cache-dir", cache_dir),
        ("ADAPTERS_CACHE_DIR", os.environ.get("ADAPTERS_CACHE_DIR")),
        (f"{cfg_path}: cache_dir", cfg.get("cache_dir")),
    ):
        if value is not None and not str(value).strip():
            raise UsageError(f"{where}: the cache directory must not be empty")
    if cache_dir is None:
        cache_dir = os.environ.get("ADAPTERS_CACHE_DIR") or cfg.get("cache_dir")
    if cache_dir is None:
        if os.environ.get("ADAPTERS_HOME"):
            cache_dir = home / "cache"
        else:
            cache_dir = _platformdirs().user_cache_dir(APP, appauthor=False)

    if offline is None:
        env = os.environ.get("ADAPTERS_OFFLINE")
        offline = env.strip().lower() in _TRUE if env is not None else cfg.get("offline", False)

    env_timeout = os.environ.get("ADAPTERS_TIMEOUT")
    if timeout is not None:
        timeout = timeout_seconds(timeout, "--timeout")
    elif env_timeout is not None and env_timeout.strip():
        timeout = timeout_seconds(env_timeout.strip(), "ADAPTERS_TIMEOUT")
    elif "timeout" in cfg:
        timeout = timeout_seconds(cfg["timeout"], f"{cfg_path}: timeout")

    configured = [RegistrySpec(r["name"], r["url"], r.get("token")) for r in cfg.get("registry", [])]
    mirror = os.environ.get("ADAPTERS_ADAPTERHUB_MIRROR") or None
    settings = Settings(Path(home), cfg_path, Path(cache_dir).expanduser(), offline, [], timeout, mirror)
    settings.trust = trust_rules(cfg, cfg_path)
    settings.registries = [settings.local_registry, *configured]

    # A registry chosen by flag or environment replaces the search list. An explicit `token`
    # binds to it; ADAPTERS_TOKEN binds to it only when it is configured or comes from
    # ADAPTERS_REGISTRY (never to a URL typed once on the command line), else to the first
    # configured remote registry.
    env_token = os.environ.get("ADAPTERS_TOKEN")
    chosen = registry or os.environ.get("ADAPTERS_REGISTRY")
    if chosen:
        refuse_credentials(chosen, "--registry" if registry else "ADAPTERS_REGISTRY")
        spec = settings.registry(chosen)
        trusted = registry is None or settings.is_configured(spec)
        bound = token or (env_token if trusted else None) or spec.token
        settings.registries = [dataclasses.replace(spec, token=bound)]
    elif (token or env_token) and configured:
        first = settings.registries[1]
        settings.registries[1] = dataclasses.replace(first, token=token or env_token)
    return settings
