"""Adapter references, as typed by users.

org/name                   any version (highest stable)
org/name@1.2.0             exactly that version (yanked allowed, pre-release allowed)
org/name@>=1,<2            PEP 440 specifiers: ==, !=, <=, >=, <, >, ~=, ===
./path/to/package-dir      a local package directory (has manifest.json)
file:///srv/registry/org/name@~=1.0
https://host/registry/org/name@>=1
                           a registry URL followed by the name: the last two path
                           segments are `org/name`, the rest is the registry root
hf://org/repo[@REV][:sub]  a Hugging Face Hub repository: REV a branch, tag or commit sha, or PEP 440
                           specifiers over the repo's version tags (`v1.2.0`); `:sub` a subfolder
ah:task/subtask[@org]      an AdapterHub identifier (resolved for a base model name and an architecture)
oci://host[:port]/repo[@SPEC]
                           one OCI repository: SPEC an exact version, a PEP 440 range over its tags, a
                           tag, or sha256:<hex>; none: the highest release tag
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from ._urls import is_loopback, redact
from .errors import InvalidPackageError, UsageError
from .manifest import canonical_name, is_hub_id, parse_version, shown

_OPERATOR = re.compile(r"^\s*(===|==|!=|<=|>=|<|>|~=)")
# Bounds checked before anything touches the file system or a registry: a name with its
# specifier or a registry URL (MAX_REF_CHARS), a local path (PATH_MAX on Linux).
MAX_REF_CHARS = 1000
MAX_PATH_CHARS = 4096


def _too_long(text: str, limit: int, what: str = "reference") -> UsageError:
    return UsageError(f"{what} {shown(text)} is too long ({len(text)} characters; at most {limit})")


@dataclasses.dataclass(frozen=True)
class Requirement:
    """A name and a version specifier, optionally bound to one registry URL."""

    name: str  # canonical
    specifier: SpecifierSet = dataclasses.field(default_factory=SpecifierSet)
    registry_url: str | None = None
    pinned: Version | None = None  # set for `@1.2.0` and `@==1.2.0`

    def __str__(self) -> str:
        spec = str(self.specifier)
        return f"{self.name}@{spec}" if spec else self.name

    def allows(self, version: Version, *, yanked: bool = False, pre: bool = False) -> bool:
        if self.pinned is not None:
            return version == self.pinned
        if yanked:
            return False
        allow_pre = pre or bool(self.specifier.prereleases)
        return self.specifier.contains(version, prereleases=allow_pre)


@dataclasses.dataclass(frozen=True)
class LocalRef:
    path: Path


@dataclasses.dataclass(frozen=True)
class HubRef:
    """A Hugging Face Hub repository: at a revision (branch, tag, commit) or over its version tags."""

    repo: str
    revision: str | None = None  # None: the default branch ("main")
    subfolder: str | None = None
    specifier: SpecifierSet | None = None  # set for `@>=1.2,<2`: picks among the `v<version>` tags

    def __str__(self) -> str:
        at = f"@{self.specifier}" if self.specifier is not None else (f"@{self.revision}" if self.revision else "")
        return f"hf://{self.repo}{at}" + (f":{self.subfolder}" if self.subfolder else "")


@dataclasses.dataclass(frozen=True)
class AdapterHubRef:
    """An AdapterHub identifier `ah:task/subtask[@org]`, as the `adapters` library accepts it."""

    text: str  # what follows `ah:`


# Hugging Face Hub revisions and subfolders, as the Hub accepts them (full match; `..` refused).
_HUB_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_HUB_SUBFOLDER = re.compile(r"[A-Za-z0-9._-]{1,100}(?:/[A-Za-z0-9._-]{1,100}){0,7}")
_HUB_FORM = "expected hf://org/repo[@revision or version range][:subfolder]"


def parse_hub_ref(text: str) -> HubRef:
    """`hf://org/repo[@REV][:subfolder]`; REV with an operator (`>=1.2,<2`) is a version range over tags."""
    body = text[len("hf://") :]
    body, colon, subfolder = body.partition(":")
    repo, at, rev = body.partition("@")
    if not is_hub_id(repo):
        raise UsageError(f"invalid Hub reference {shown(text)}: {_HUB_FORM}")
    if colon and (not _HUB_SUBFOLDER.fullmatch(subfolder) or any(p in (".", "..") for p in subfolder.split("/"))):
        raise UsageError(f"invalid Hub reference {shown(text)}: bad subfolder {shown(subfolder)}")
    if at and not rev.strip():
        raise UsageError(f"invalid Hub reference {shown(text)}: empty revision after '@'")
    rev = rev.strip()
    if rev and _OPERATOR.match(rev):
        try:
            return HubRef(repo, None, subfolder or None, SpecifierSet(rev))
        except InvalidSpecifier:
            raise UsageError(f"invalid Hub reference {shown(text)}: {rev!r} is not a PEP 440 specifier") from None
    if rev and (not _HUB_REVISION.fullmatch(rev) or ".." in rev or rev.endswith(("/", ".lock"))):
        raise UsageError(f"invalid Hub reference {shown(text)}: bad revision {shown(rev)}")
    return HubRef(repo, rev or None, subfolder or None)


def parse_requirement(text: str, registry_url: str | None = None) -> Requirement:
    if len(text) > MAX_REF_CHARS:
        raise _too_long(text, MAX_REF_CHARS)
    name, sep, spec_text = text.partition("@")
    try:
        name = canonical_name(name.strip())
    except InvalidPackageError as exc:
        raise UsageError(str(exc)) from None
    if not sep:
        return Requirement(name, SpecifierSet(), registry_url)
    spec_text = spec_text.strip()
    if not spec_text:
        raise UsageError(f"invalid reference {text!r}: empty version after '@'")
    if not _OPERATOR.match(spec_text):
        spec_text = "==" + spec_text
    try:
        spec = SpecifierSet(spec_text)
    except InvalidSpecifier:
        raise UsageError(f"invalid reference {text!r}: {spec_text!r} is not a PEP 440 specifier") from None
    pinned = None
    specs = list(spec)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        try:
            pinned = parse_version(specs[0].version)
        except InvalidPackageError as exc:
            raise UsageError(str(exc)) from None
    return Requirement(name, spec, registry_url, pinned)


def parse_ref(text: str) -> Ref:
    """Parse one reference; local directories win over names when they exist."""
    text = text.strip()
    if not text:
        raise UsageError("empty adapter reference")
    if len(text) > MAX_PATH_CHARS:
        raise _too_long(text, MAX_PATH_CHARS)
    if text.startswith("hf://"):
        if len(text) > MAX_REF_CHARS:
            raise _too_long(text, MAX_REF_CHARS)
        return parse_hub_ref(text)
    if text.startswith(SCHEME):
        if len(text) > MAX_REF_CHARS:
            raise _too_long(text, MAX_REF_CHARS)
        return parse_oci_ref(text)
    if text.startswith("ah:"):
        if len(text) > MAX_REF_CHARS:
            raise _too_long(text, MAX_REF_CHARS)
        return AdapterHubRef(text[len("ah:") :])
    if "://" in text:
        if len(text) > MAX_REF_CHARS:
            raise _too_long(text, MAX_REF_CHARS)
        scheme, _, rest = text.partition("://")
        from ._urls import has_credentials

        if has_credentials(text):  # user info: never echoed back
            from .net import TOKEN_HINT, redact

            raise UsageError(f"refusing {redact(text)}: no credentials inside a URL; {TOKEN_HINT}")
        if scheme not in ("file", "http", "https"):
            raise UsageError(f"unsupported URL scheme {scheme!r} in {text!r}")
        rest, _, spec = rest.partition("@")
        parts = rest.rstrip("/").rsplit("/", 2)
        if len(parts) != 3:
            raise UsageError(f"invalid reference {text!r}: expected REGISTRY_URL/org/name[@version]")
        root = f"{scheme}://{parts[0]}/"
        if scheme != "file":
            from .net import check_url  # also rejects plain http to non-loopback hosts

            check_url(root)
        return parse_requirement(f"{parts[1]}/{parts[2]}" + (f"@{spec}" if spec else ""), root)
    looks_like_path = text.startswith((".", "/", "~")) or os.sep in text.replace("/", "", 1) or text.count("/") != 1
    path = Path(text).expanduser()
    try:
        if path.is_dir() and (looks_like_path or (path / "manifest.json").exists()):
            return LocalRef(path.resolve())
    except OSError as exc:  # ENAMETOOLONG, EACCES...: not a directory we can use
        raise UsageError(f"{shown(text)}: cannot be used as a package directory ({exc.strerror or exc})") from None
    if looks_like_path and "@" not in text:
        raise UsageError(f"no such package directory: {text if len(text) <= 300 else shown(text, 300)}")
    return parse_requirement(text)


# --- OCI references: oci://host[:port]/repository[@SPEC] ------------------------------------------
SCHEME = "oci://"
# The distribution spec's patterns (OCI), always used with fullmatch.
REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
MAX_NAME_CHARS = 255  # host plus repository, as the spec advises


@dataclass(frozen=True)
class OciRef:
    """`oci://host[:port]/repo/path[@SPEC]`: SPEC an exact version, a PEP 440 range over the tags, a
    `sha256:<hex>` digest or another tag; none means the highest release among the tags."""

    host: str  # name[:port], lower case
    repository: str
    tag: str | None = None
    digest: str | None = None
    specifier: SpecifierSet | None = None

    @property
    def url(self) -> str:
        """The registry's base URL: https, plain http only on loopback."""
        hostname = urlsplit(f"//{self.host}").hostname
        return f"{'http' if is_loopback(hostname) else 'https'}://{self.host}"

    def __str__(self) -> str:
        spec = self.digest or self.tag or (str(self.specifier) if self.specifier is not None else "")
        return f"{SCHEME}{self.host}/{self.repository}" + (f"@{spec}" if spec else "")


def is_oci_ref(text: str) -> bool:
    return text.startswith(SCHEME)


def check_repository(name: str) -> str:
    if not REPOSITORY.fullmatch(name):
        raise UsageError(
            f"invalid OCI repository name {name[:200]!r}: lower-case letters and digits in '/'-separated parts, "
            "joined inside a part by '.', '_', '__' or '-'"
        )
    return name


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise UsageError(
            f"invalid OCI tag {tag[:200]!r}: 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        )
    return tag


def version_tag(version: str) -> str:
    """The tag a version is pushed under: its normalised PEP 440 spelling (an epoch's `!` has no tag)."""
    try:
        text = str(Version(version))
    except InvalidVersion:
        raise InvalidPackageError(f"invalid version {version[:100]!r}") from None
    if not TAG.fullmatch(text):
        raise InvalidPackageError(f"version {text} cannot be an OCI tag (epochs and local labels have no tag)")
    return text


def parse_oci_ref(text: str) -> OciRef:
    """Parse and validate an `oci://` reference (UsageError naming what is wrong)."""
    if not text.startswith(SCHEME):
        raise UsageError(f"not an OCI reference (expected {SCHEME}host/repository[@spec]): {text[:200]!r}")
    rest = text[len(SCHEME) :]
    host, sep, path = rest.partition("/")
    if not sep or not path:
        raise UsageError(f"{text[:200]!r}: expected {SCHEME}host[:port]/repository[@spec]")
    if "@" in host:
        raise UsageError(f"{redact(text[:200])!r}: no credentials inside a registry reference; use `adapters login`")
    parts = urlsplit(f"//{host}")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise UsageError(f"{text[:200]!r}: invalid port in {host!r}") from None
    hostname = parts.hostname or ""
    if not (_HOST.fullmatch(hostname) or (host.startswith("[") and is_loopback(hostname)) or _is_ip(hostname)):
        raise UsageError(f"{text[:200]!r}: invalid registry host {host!r}")
    repository, at, spec = path.partition("@")
    check_repository(repository)
    host = host.lower()
    if len(host) + 1 + len(repository) > MAX_NAME_CHARS:
        raise UsageError(f"{text[:200]!r}: registry host and repository longer than {MAX_NAME_CHARS} characters")
    ref = OciRef(host, repository)
    if not at:
        return ref
    if not spec:
        raise UsageError(f"{text[:200]!r}: nothing after '@' (a version, a range or sha256:<hex>)")
    if spec.startswith("sha256:") or ":" in spec:
        if not DIGEST.fullmatch(spec):
            raise UsageError(f"{text[:200]!r}: a digest must be sha256: and 64 lower-case hex digits")
        return OciRef(ref.host, repository, digest=spec)
    try:
        return OciRef(ref.host, repository, tag=version_tag(spec)) if _is_plain_version(spec) else _ranged(ref, spec)
    except InvalidPackageError as exc:
        raise UsageError(f"{text[:200]!r}: {exc}") from None


def _is_ip(hostname: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _is_plain_version(spec: str) -> bool:
    try:
        Version(spec)
    except InvalidVersion:
        return False
    return True


def _ranged(ref: OciRef, spec: str) -> OciRef:
    try:
        return OciRef(ref.host, ref.repository, specifier=SpecifierSet(spec))
    except InvalidSpecifier:
        pass
    if TAG.fullmatch(spec):  # `latest`, `main`, ...: a tag used as it is
        return OciRef(ref.host, ref.repository, tag=spec)
    raise UsageError(f"{spec[:100]!r} is neither a version, a version range, a tag nor sha256:<hex>")


Ref = Requirement | LocalRef | HubRef | AdapterHubRef | OciRef
