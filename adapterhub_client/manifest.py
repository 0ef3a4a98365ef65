"""Package manifests (`manifest.json`): validation, path safety, building from a directory.

No torch here: manifests are read by commands that never touch tensors.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard

from packaging.version import InvalidVersion, Version

from ._fs import file_digest as file_digest  # re-exported: the one file hash lives in _fs
from ._fs import is_pickle_name, sha256_bytes
from ._version import __version__
from .errors import InvalidPackageError

MANIFEST_FILE = "manifest.json"
# Names an installed view keeps for itself: a package may not list them.
RESERVED_PATHS = frozenset({MANIFEST_FILE, ".install.json"})
SCHEMA_VERSION = 1
MAX_MANIFEST_BYTES = 8 * 1024 * 1024  # publish, local installs and registry reads: one limit
# One path component, in UTF-8 bytes: the limit of every common file system (NAME_MAX).
MAX_COMPONENT_BYTES = 255
# Always used with fullmatch: `$` would also match before a final newline.
_NAME_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?")
VALID_NAME = (
    "'org/name', each part 1-64 ASCII letters, digits, '.', '_' or '-', "
    "starting and ending with a letter or digit (e.g. 'acme/sentiment-lora')"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: no file name needs them


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("adapterhub_client").joinpath("schemas", f"{name}.schema.json").read_text()
    return json.loads(text)


@cache
def ecma_pattern(pattern: str) -> re.Pattern[str]:
    """A JSON Schema `pattern` compiled with ECMA-262 semantics, which the schemas are written in:
    there `$` matches only at the very end, while Python's `$` also matches before a final newline
    (so `^[a-z]+$` would accept "demo\\n"). Every `$` outside a character class becomes `\\Z`."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


@cache
def _validator(schema: str) -> Any:
    import jsonschema  # type: ignore[import-untyped]  # deferred: ~40 ms, and only needed when validating

    def pattern(validator: Any, patrn: str, instance: Any, _schema: Any) -> Any:
        if validator.is_type(instance, "string") and not ecma_pattern(patrn).search(instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    base = jsonschema.validators.validator_for(load_schema(schema))
    return jsonschema.validators.extend(base, {"pattern": pattern})(load_schema(schema))


def validate_schema(data: Any, schema: str, where: str) -> None:
    """Validate `data` against a bundled JSON Schema; the error names the field and `where`."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(data))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InvalidPackageError(f"{where}: field '{field}': {error.message}")


# A Hugging Face Hub repo id, as the Hub accepts it (full match; `--` and `..` refused by the Hub too).
_HUB_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_REPO = re.compile(rf"{_HUB_PART}/{_HUB_PART}")


def is_hub_id(name: object) -> TypeGuard[str]:
    """Whether `name` is a Hugging Face Hub repo id `org/name` (the one rule: refs, formats, cards)."""
    return isinstance(name, str) and _HUB_REPO.fullmatch(name) is not None and "--" not in name and ".." not in name


def canonical_name(name: str) -> str:
    """`Org/My_Adapter` -> `org/my-adapter` (PEP 503 style, per part)."""
    parts = name.split("/") if isinstance(name, str) else []
    if len(parts) != 2 or not all(_NAME_PART.fullmatch(p) for p in parts):
        raise InvalidPackageError(f"invalid adapter name {shown(name)}: expected {VALID_NAME}")
    return "/".join(re.sub(r"[-_.]+", "-", p).lower() for p in parts)


def shown(value: Any, limit: int = 80) -> str:
    """`repr` of a user's value for a message, cut short: a 10,000-character name must not fill the screen."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def parse_version(text: str, where: str = "version") -> Version:
    """A PEP 440 version without a local label; surrounding whitespace is refused, not stripped
    (`packaging` would accept "1.0.0\n", and the text becomes a directory name)."""
    if not isinstance(text, str) or text != text.strip():
        raise InvalidPackageError(f"{where}: {shown(text)} has surrounding whitespace; not a valid version")
    try:
        version = Version(text)
    except InvalidVersion:
        raise InvalidPackageError(f"{where}: {shown(text)} is not a valid PEP 440 version") from None
    if version.local is not None:
        raise InvalidPackageError(f"{where}: local version labels are not allowed ({shown(text)})")
    return version


def normalized_version(text: str, where: str = "version") -> str:
    """The canonical spelling of a version (`1.0.0-RC1` -> `1.0.0rc1`): what is published and stored."""
    return str(parse_version(text, where))


def check_relative_path(path: str, where: str) -> PurePosixPath:
    """A package file path: relative, POSIX, no '..', no drive, no empty parts, no control
    characters, and each part at most 255 bytes in UTF-8 (checked here, before any download,
    rather than met as ENAMETOOLONG when the file is written)."""
    if not path or "\\" in path or "\x00" in path:
        raise InvalidPackageError(f"{where}: invalid file path {shown(path)}")
    if _CONTROL.search(path):
        raise InvalidPackageError(f"{where}: file path {shown(path)} contains a control character")
    pure = PurePosixPath(path)
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", path):
        raise InvalidPackageError(f"{where}: absolute file path {path!r} is not allowed")
    if any(part in ("..", ".", "") for part in path.split("/")):
        raise InvalidPackageError(f"{where}: file path {path!r} must not contain '..' or '.' parts")
    for part in path.split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > MAX_COMPONENT_BYTES:
            raise InvalidPackageError(
                f"{where}: file path {shown(path)} has a part of {size} bytes; "
                f"at most {MAX_COMPONENT_BYTES} bytes (UTF-8) per part"
            )
    if path.split("/")[0] in RESERVED_PATHS:
        raise InvalidPackageError(f"{where}: {path!r} is reserved and cannot be listed as a package file")
    return pure


# Digests of the canonical bytes of manifests this process has validated: the same content is valid
# again (an attach validates one manifest when resolving, installing and loading; the schema check of a
# manifest with many modules costs milliseconds).
_VALIDATED: set[str] = set()
_VALIDATED_MAX = 4096


def validate_manifest(data: Any, where: str = MANIFEST_FILE) -> dict[str, Any]:
    """Full validation: schema, name, PEP 440 version, safe and unique paths, dependencies."""
    if not isinstance(data, dict):
        raise InvalidPackageError(f"{where}: expected a JSON object")
    try:
        key = sha256_bytes(dumps_manifest(data))
    except (TypeError, ValueError, RecursionError):
        key = None  # not JSON-serialisable: the schema check below says what is wrong
    if key is not None and key in _VALIDATED:
        return data
    _validate_manifest(data, where)
    if key is not None and len(_VALIDATED) < _VALIDATED_MAX:
        _VALIDATED.add(key)
    return data


def _validate_manifest(data: dict[str, Any], where: str) -> None:
    # name and version first: their messages say what a valid one looks like (not a regex)
    if isinstance(data.get("name"), str):
        try:
            canonical_name(data["name"])
        except InvalidPackageError as exc:
            raise InvalidPackageError(f"{where}: field 'name': {exc}") from None
    if isinstance(data.get("version"), str):
        parse_version(data["version"], f"{where}: field 'version'")
    validate_schema(data, "manifest", where)
    seen: set[str] = set()
    for i, f in enumerate(data["files"]):
        check_relative_path(f["path"], f"{where}: field 'files/{i}/path'")
        if f["path"] in seen:
            raise InvalidPackageError(f"{where}: field 'files/{i}/path': duplicate path {f['path']!r}")
        seen.add(f["path"])
    directories = {str(parent) for p in seen for parent in PurePosixPath(p).parents if str(parent) != "."}
    clash = sorted(seen & directories)
    if clash:
        raise InvalidPackageError(f"{where}: field 'files': {clash[0]!r} is both a file and a directory")
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    for i, dep in enumerate(data.get("dependencies", [])):
        try:
            SpecifierSet(dep.get("specifier", ""))
        except InvalidSpecifier:
            raise InvalidPackageError(
                f"{where}: field 'dependencies/{i}/specifier': invalid specifier {dep.get('specifier')!r}"
            ) from None


def loads_manifest(raw: bytes, where: str = MANIFEST_FILE) -> dict[str, Any]:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidPackageError(f"{where}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidPackageError(f"{where}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidPackageError(f"{where}: not valid JSON (nested too deeply)") from None
    return validate_manifest(data, where)


def read_manifest(package_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(package_dir) / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InvalidPackageError(f"{path}: no {MANIFEST_FILE} in the package directory") from None
    return loads_manifest(raw, str(path))


def dumps_manifest(data: dict[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, compact separators; equal manifests hash equal."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def new_manifest(
    name: str,
    version: str,
    adapter_type: str,
    adapter_config: dict[str, Any],
    base_model: dict[str, Any],
    files: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A manifest skeleton; `files` are paths to be filled in by :func:`complete_package`."""
    data: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "description": "",
        "license": None,
        "authors": [],
        "tags": [],
        "adapter": {"type": adapter_type, "config": adapter_config},
        "base_model": {
            "name": None,
            "revision": None,
            "fingerprint": None,
            "architecture": None,
            "quantization": None,
            **base_model,
        },
        "files": [{"path": p} for p in (files or [])],
        "dependencies": [],
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "tool": {"name": "adapterhub-client", "version": __version__},
    }
    data.update(extra)
    return data


def complete_package(package_dir: str | os.PathLike[str], data: dict[str, Any]) -> dict[str, Any]:
    """Fill in sha256 and size of every listed file (checking paths first), validate, return."""
    root = Path(package_dir)
    where = str(root / MANIFEST_FILE)
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise InvalidPackageError(f"{where}: field 'files': at least one file must be listed")
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise InvalidPackageError(f"{where}: field 'files/{i}': expected an object with a 'path'")
        check_relative_path(entry["path"], f"{where}: field 'files/{i}/path'")
        target = root / entry["path"]
        if target.is_symlink() or not target.is_file():
            raise InvalidPackageError(f"{where}: field 'files/{i}/path': {entry['path']!r} is not a regular file")
        if is_pickle_name(entry["path"]):
            raise InvalidPackageError(
                f"{where}: field 'files/{i}/path': pickle weights ({entry['path']}) are not published; "
                "convert them to safetensors"
            )
        sha, size = file_digest(target)
        if "sha256" in entry and entry["sha256"] != sha:
            raise InvalidPackageError(f"{where}: field 'files/{i}/sha256': does not match {entry['path']}")
        entry["sha256"], entry["size"] = sha, size
    if isinstance(data.get("version"), str):  # published and stored in its one spelling
        data["version"] = normalized_version(data["version"], f"{where}: field 'version'")
    return validate_manifest(data, where)


def write_manifest(package_dir: str | os.PathLike[str], data: dict[str, Any]) -> Path:
    from ._fs import atomic_write

    return atomic_write(Path(package_dir) / MANIFEST_FILE, json.dumps(data, indent=2) + "\n")
