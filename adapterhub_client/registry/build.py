"""`adapters registry build DIR`: check a directory registry before it is served, and rebuild what it derives.

Checked (REGISTRY.md): every index line (schema, the file it sits in, versions unique), its manifest blob
(size, sha256, schema, that it names the line's name and version, that the line's fields are the ones
publish derives from it), every blob the manifest lists (size and sha256; each blob hashed once, streamed),
and config.json. Derived from the index lines and manifests, and rewritten when they differ from what
publish would have written: the reverse index (by-base/), search.jsonl, and config.json when missing or
invalid. Published things are never deleted or edited: a missing or corrupt blob or manifest and a malformed
index line are reported (:attr:`BuildReport.problems`), for the caller to raise as InvalidPackageError.

Locking: hashing runs first without the lock, so publishes go on meanwhile. Then, holding `.publish.lock`
(the lock publish holds while it writes), the index is read again: versions published in between are
checked, blobs whose inode, size and mtime are unchanged are not hashed again, killed writers' temp files are
removed, and the derived files are rewritten atomically. Build and publish therefore never interleave, and a
reader that never locks sees each derived file old or new, never half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

from .._fs import TEMP_PREFIX, atomic_write, file_digest, sha256_bytes
from .._text import human_size, plural
from ..errors import InvalidPackageError, NotFoundError, storage_error
from ..manifest import MAX_MANIFEST_BYTES, canonical_name, loads_manifest, parse_version, shown, validate_schema
from . import layout
from .client import MAX_BASE_INDEX_BYTES, MAX_CONFIG_BYTES, MAX_INDEX_BYTES, MAX_SEARCH_BYTES
from .publish import (
    LOCK_FILE,
    base_index_line,
    clean_stale_temps,
    index_entry,
    jsonl_line,
    search_line,
)

MAX_REPORTED_PROBLEMS = 100  # problems listed one by one; BuildReport.problem_count counts them all
MAX_PROBLEM_CHARS = 400  # each one line, cut short: a schema message may quote a whole index line
BASE_INDEX_DIR = "by-base"
INDEX_DIR = "index"
# The fields of an index line that publish derives from the manifest (the rest: when, and the yank flag).
DERIVED_ENTRY_FIELDS = ("type", "base", "deps", "size")
_DEFAULT_CONFIG: dict[str, Any] = {"protocol": layout.PROTOCOL_VERSION, "blobs": "blobs/"}

Key = tuple[str, str]  # (name, version) of one published version


@dataclasses.dataclass
class BuildReport:
    """What `build_registry` found and did. `problems` lists what it could not repair (at most
    MAX_REPORTED_PROBLEMS lines, one each; `problem_count` has them all); `repaired` what it rewrote."""

    root: Path
    names: int = 0
    versions: int = 0
    blobs_checked: int = 0
    bytes_hashed: int = 0
    repaired: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    problem_count: int = 0
    temps_removed: int = 0
    temp_bytes_freed: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "ok": self.ok,
            "names": self.names,
            "versions": self.versions,
            "blobs_checked": self.blobs_checked,
            "bytes_hashed": self.bytes_hashed,
            "repaired": list(self.repaired),
            "problems": list(self.problems),
            "problem_count": self.problem_count,
            "temps_removed": self.temps_removed,
            "temp_bytes_freed": self.temp_bytes_freed,
        }

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            line = " ".join(text.split())  # one line, however a schema message quoted the value
            self.problems.append(line if len(line) <= MAX_PROBLEM_CHARS else line[: MAX_PROBLEM_CHARS - 3] + "...")


# ---- checking ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Blob:
    """One blob as found on disk: its stat identity, and its size and sha256 (or why it could not be read)."""

    identity: tuple[int, int, int] | None = None
    size: int = 0
    sha256: str = ""
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class _Manifest:
    """What a manifest blob gives the check (the manifest itself is not kept: up to 8 MiB each)."""

    identity: tuple[int, int, int] | None
    error: str | None = None
    name: str = ""
    version: str = ""
    derived_entry: dict[str, Any] = dataclasses.field(default_factory=dict)
    files: tuple[tuple[str, str, int], ...] = ()  # (path, sha256, size)
    search_line: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Version:
    key: Key
    published: str
    fingerprint: str | None
    base_line: dict[str, Any]
    search_line: dict[str, Any] | None  # None: the manifest cannot be read, keep the line found (if any)


@dataclasses.dataclass
class _Scan:
    """One pass over the index: the versions found, the names whose index cannot be fully read, problems."""

    versions: list[_Version] = dataclasses.field(default_factory=list)
    names: set[str] = dataclasses.field(default_factory=set)
    unsure_names: set[str] = dataclasses.field(default_factory=set)
    problems: list[str] = dataclasses.field(default_factory=list)
    blobs: set[str] = dataclasses.field(default_factory=set)


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _files_under(root: Path, sub: str) -> Iterator[tuple[Path, str]]:
    """(path, path relative to root in POSIX form) of every file under root/sub, temps skipped, sorted."""
    for dirpath, dirs, files in os.walk(root / sub):
        dirs.sort()
        for name in sorted(files):
            if not name.startswith(TEMP_PREFIX):
                path = Path(dirpath) / name
                yield path, path.relative_to(root).as_posix()


def _read_capped(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None past `limit` (reading at most one byte beyond it)."""
    with open(path, "rb") as fh:
        raw = fh.read(limit + 1)
    return None if len(raw) > limit else raw


class _Checker:
    """Checks index lines, manifests and blobs; remembers what it hashed, so a second pass (under the lock)
    hashes only what changed or is new."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bytes_hashed = 0
        self._blobs: dict[str, _Blob] = {}
        self._manifests: dict[tuple[str, int], _Manifest] = {}

    def blob(self, sha256: str) -> _Blob:
        path = self.root / layout.blob_path(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            return _Blob(error="is missing")
        except OSError as exc:
            return _Blob(error=f"cannot be read ({exc.strerror or exc})")
        if not stat.S_ISREG(st.st_mode):
            return _Blob(error="is not a regular file")
        cached = self._blobs.get(sha256)
        if cached is not None and cached.identity == _identity(st):
            return cached
        try:
            digest, size = file_digest(path)
        except OSError as exc:
            return _Blob(error=f"cannot be read ({exc.strerror or exc})")
        self.bytes_hashed += size
        found = _Blob(_identity(st), size, digest)
        self._blobs[sha256] = found
        return found

    def manifest(self, sha256: str, listed_size: int) -> _Manifest:
        where = layout.blob_path(sha256)
        path = self.root / where
        try:
            st = path.stat()
        except FileNotFoundError:
            return _Manifest(None, f"manifest blob {where} is missing")
        except OSError as exc:
            return _Manifest(None, f"manifest blob {where} cannot be read ({exc.strerror or exc})")
        cached = self._manifests.get((sha256, listed_size))
        if cached is not None and cached.identity == _identity(st):
            return cached
        found = self._read_manifest(path, where, st, listed_size)
        self._manifests[(sha256, listed_size)] = found
        return found

    def _read_manifest(self, path: Path, where: str, st: os.stat_result, listed_size: int) -> _Manifest:
        identity = _identity(st)
        if st.st_size != listed_size:
            return _Manifest(identity, f"manifest blob {where} is {st.st_size} bytes, the index lists {listed_size}")
        if st.st_size > MAX_MANIFEST_BYTES:
            return _Manifest(identity, f"manifest blob {where} is larger than the {MAX_MANIFEST_BYTES}-byte limit")
        try:
            raw = _read_capped(path, MAX_MANIFEST_BYTES)
        except OSError as exc:
            return _Manifest(identity, f"manifest blob {where} cannot be read ({exc.strerror or exc})")
        if raw is None:
            return _Manifest(identity, f"manifest blob {where} is larger than the {MAX_MANIFEST_BYTES}-byte limit")
        self.bytes_hashed += len(raw)
        if sha256_bytes(raw) != path.name:
            return _Manifest(identity, f"manifest blob {where} is corrupt (its bytes do not match its sha256)")
        try:
            manifest = loads_manifest(raw, f"manifest blob {where}")
            entry = index_entry(manifest, raw)
        except InvalidPackageError as exc:
            return _Manifest(identity, str(exc))
        return _Manifest(
            identity,
            name=entry["name"],
            version=entry["version"],
            derived_entry={k: entry[k] for k in DERIVED_ENTRY_FIELDS},
            files=tuple((f["path"], f["sha256"], f["size"]) for f in manifest["files"]),
            search_line=search_line(entry, manifest),
        )

    def scan(self) -> _Scan:
        scan = _Scan()
        for path, rel in _files_under(self.root, INDEX_DIR):
            self._scan_index_file(path, rel, scan)
        return scan

    def _scan_index_file(self, path: Path, rel: str, scan: _Scan) -> None:
        parts = rel.split("/")
        path_name = f"{parts[1]}/{parts[-1]}" if len(parts) >= 4 else None  # the name its place says
        try:
            raw = _read_capped(path, MAX_INDEX_BYTES)
        except OSError as exc:
            raw, error = None, f"cannot be read ({exc.strerror or exc})"
        else:
            error = f"is larger than the {human_size(MAX_INDEX_BYTES)} clients read"
        if raw is None:
            scan.problems.append(f"{rel}: {error}")
            if path_name:
                scan.unsure_names.add(path_name)
            return
        seen: set[str] = set()
        for lineno, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{rel} line {lineno}"
            item = self._index_line(line, where, rel, scan)
            if item is None:
                if path_name:
                    scan.unsure_names.add(path_name)
                continue
            version = str(parse_version(item["version"]))
            if version in seen:
                scan.problems.append(f"{where}: {item['name']} {version} is listed twice")
                continue
            seen.add(version)
            scan.names.add(item["name"])
            self._check_version(item, where, scan)

    def _index_line(self, line: bytes, where: str, rel: str, scan: _Scan) -> dict[str, Any] | None:
        """The line as an index entry, or None (and the problem recorded) when it breaks the schema."""
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            scan.problems.append(f"{where}: malformed index line (not JSON)")
            return None
        if not isinstance(item, dict):
            scan.problems.append(f"{where}: malformed index line (not an object)")
            return None
        try:
            validate_schema(item, "index-entry", where)
            parse_version(item["version"], f"{where}: field 'version'")
            if canonical_name(item["name"]) != item["name"]:
                raise InvalidPackageError(f"{where}: name {shown(item['name'])} is not canonical")
        except InvalidPackageError as exc:
            scan.problems.append(f"malformed index line: {exc}")
            return None
        if layout.index_path(item["name"]) != rel:
            scan.problems.append(
                f"{where}: lists {item['name']}, whose index file is {layout.index_path(item['name'])}"
            )
            return None
        return item

    def _check_version(self, item: dict[str, Any], where: str, scan: _Scan) -> None:
        label = f"{item['name']} {item['version']}"
        sha, size = item["manifest"]["sha256"], item["manifest"]["size"]
        scan.blobs.add(sha)
        found = self.manifest(sha, size)
        fingerprint = (item.get("base") or {}).get("fingerprint")
        version = _Version((item["name"], item["version"]), str(item.get("published", "")), fingerprint, {}, None)
        if found.error is not None:
            scan.problems.append(f"{label}: {found.error}")
            version.base_line = base_index_line(item)
        elif (found.name, parse_version(found.version)) != (item["name"], parse_version(item["version"])):
            scan.problems.append(f"{label}: its manifest names {found.name} {found.version} instead")
            version.base_line = base_index_line(item)
        else:
            differ = [k for k in DERIVED_ENTRY_FIELDS if item.get(k) != found.derived_entry[k]]
            if differ:
                scan.problems.append(f"{where}: differs from its manifest in {', '.join(differ)}")
            entry = {**item, **found.derived_entry}  # publish derives both lines from the manifest
            version.fingerprint = entry["base"]["fingerprint"]
            version.base_line = base_index_line(entry)
            version.search_line = {**found.search_line, "name": item["name"], "version": item["version"]}
            for path, file_sha, file_size in found.files:
                scan.blobs.add(file_sha)
                blob = self.blob(file_sha)
                place = f"{label}: {path} (blob {layout.blob_path(file_sha)})"
                if blob.error is not None:
                    scan.problems.append(f"{place} {blob.error}")
                elif blob.sha256 != file_sha:
                    scan.problems.append(f"{place} is corrupt (its bytes do not match its sha256)")
                elif blob.size != file_size:
                    scan.problems.append(f"{place} is {blob.size} bytes, the manifest lists {file_size}")
        scan.versions.append(version)


# ---- the derived files -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Change:
    """A derived file that differs from what publish would have written: its new bytes (None: remove it)."""

    rel: str
    data: bytes | None
    why: str

    def done(self) -> str:
        return f"{self.rel}: {'removed' if self.data is None else 'rewritten'} (it was {self.why})"

    def pending(self) -> str:
        return f"{self.rel}: {self.why} (repairable: building with repair rewrites it)"


def _merge(
    existing: list[dict[str, Any]], expected: list[tuple[Key, dict[str, Any] | None]], unsure: set[str]
) -> list[dict[str, Any]]:
    """The lines a derived file should hold: the lines found keep their order (publish order), each replaced
    by what publish derives for its version; lines for versions the index does not list are dropped unless
    their name's index could not be read; versions missing from the file are appended in publish order.
    A version whose manifest cannot be read (expected None) keeps the line found, if any."""
    wanted = dict(expected)
    out: list[dict[str, Any]] = []
    emitted: set[Key] = set()
    for line in existing:
        name, version = line.get("name"), line.get("version")
        if not isinstance(name, str) or not isinstance(version, str) or (name, version) in emitted:
            continue
        key = (name, version)
        if key in wanted:
            found = wanted[key]
            out.append(line if found is None else found)
        elif name in unsure:
            out.append(line)
        else:
            continue
        emitted.add(key)
    for key, derived in expected:
        if key not in emitted and derived is not None:
            out.append(derived)
            emitted.add(key)
    return out


def _existing_lines(path: Path, limit: int) -> tuple[bytes | None, list[dict[str, Any]]]:
    """(the file's bytes or None when absent or too large, its lines that are JSON objects)."""
    try:
        raw = _read_capped(path, limit)
    except FileNotFoundError:
        return None, []
    if raw is None:
        return None, []
    lines = []
    for line in raw.splitlines():
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(item, dict):
            lines.append(item)
    return raw, lines


def _change_for(
    root: Path,
    rel: str,
    expected: list[tuple[Key, dict[str, Any] | None]],
    unsure: set[str],
    limit: int,
    problems: list[str],
) -> _Change | None:
    path = root / rel
    exists = path.exists()
    raw, existing = _existing_lines(path, limit)
    merged = _merge(existing, expected, unsure)
    data = b"".join(jsonl_line(line) for line in merged)
    if len(data) > limit:
        problems.append(f"{rel}: {len(data)} bytes, more than the {human_size(limit)} clients read")
    if raw == data and exists:
        return None
    if not merged:
        return _Change(rel, None, "listing no published version") if exists else None
    if not exists:
        return _Change(rel, data, "missing")
    if raw is None:
        return _Change(rel, data, f"larger than the {human_size(limit)} clients read")
    return _Change(rel, data, f"stale: {_difference(raw, existing, merged)}")


def _difference(raw: bytes, existing: list[dict[str, Any]], merged: list[dict[str, Any]]) -> str:
    """How the lines found differ from the lines wanted, in a few words."""
    found: dict[Key, dict[str, Any]] = {}
    for line in existing:
        found.setdefault((str(line.get("name")), str(line.get("version"))), line)
    added = sum(1 for ln in merged if (ln["name"], ln["version"]) not in found)
    changed = sum(1 for ln in merged if found.get((ln["name"], ln["version"]), ln) != ln)
    dropped = sum(1 for ln in raw.splitlines() if ln.strip()) - (len(merged) - added)
    parts = [f"{added} missing" if added else "", f"{changed} out of date" if changed else ""]
    parts.append(f"{dropped} extra or malformed" if dropped > 0 else "")
    return ", ".join(p for p in parts if p) or "not in publish's format"


def _derived_changes(root: Path, scan: _Scan, problems: list[str]) -> list[_Change]:
    """Each derived file (search.jsonl, by-base/...) that differs from what the index and manifests give."""
    order = sorted(range(len(scan.versions)), key=lambda i: (scan.versions[i].published, i))
    ordered = [scan.versions[i] for i in order]  # publish order, as far as the index records it
    changes: list[_Change] = []
    search = [(v.key, v.search_line) for v in ordered]
    change = _change_for(root, layout.SEARCH_PATH, search, scan.unsure_names, MAX_SEARCH_BYTES, problems)
    if change:
        changes.append(change)
    by_base: dict[str, list[tuple[Key, dict[str, Any] | None]]] = {}
    for v in ordered:
        if v.fingerprint:
            try:
                rel = layout.base_index_path(v.fingerprint)
            except ValueError:
                problems.append(f"{v.key[0]} {v.key[1]}: base fingerprint {shown(v.fingerprint)} is malformed")
                continue
            by_base.setdefault(rel, []).append((v.key, v.base_line))
    found = {rel for _, rel in _files_under(root, BASE_INDEX_DIR) if _is_base_index_path(rel)}
    for rel in sorted(found | set(by_base)):
        change = _change_for(root, rel, by_base.get(rel, []), scan.unsure_names, MAX_BASE_INDEX_BYTES, problems)
        if change:
            changes.append(change)
    return changes


def _is_base_index_path(rel: str) -> bool:
    parts = rel.split("/")
    if len(parts) != 4:
        return False
    try:
        return layout.base_index_path(f"{parts[1]}:{parts[3]}") == rel
    except ValueError:
        return False


# ---- config.json -------------------------------------------------------------------------------------


def _config_change(root: Path, problems: list[str]) -> _Change | None:
    """config.json rewritten when missing or invalid (valid fields kept); a newer protocol is left alone."""
    path = root / layout.CONFIG_PATH
    try:
        raw = _read_capped(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        return _Change(layout.CONFIG_PATH, _config_bytes(_DEFAULT_CONFIG), "missing")
    if raw is None:
        return _Change(
            layout.CONFIG_PATH, _config_bytes(_DEFAULT_CONFIG), f"larger than {human_size(MAX_CONFIG_BYTES)}"
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return _Change(layout.CONFIG_PATH, _config_bytes(_DEFAULT_CONFIG), "not valid JSON")
    if not isinstance(data, dict):
        return _Change(layout.CONFIG_PATH, _config_bytes(_DEFAULT_CONFIG), "not a JSON object")
    protocol = data.get("protocol")
    if isinstance(protocol, int) and not isinstance(protocol, bool) and protocol != layout.PROTOCOL_VERSION:
        problems.append(
            f"{layout.CONFIG_PATH}: protocol {protocol} is not one this client knows "
            f"({layout.PROTOCOL_VERSION}); left as it is"
        )
        return None
    try:
        validate_schema(data, "registry-config", layout.CONFIG_PATH)
    except InvalidPackageError as exc:
        kept = dict(_DEFAULT_CONFIG)
        for key, most in (("name", 200), ("blobs", 2000)):
            if isinstance(data.get(key), str) and len(data[key]) <= most:
                kept[key] = data[key]
        return _Change(layout.CONFIG_PATH, _config_bytes(kept), f"invalid: {exc}")
    return None


def _config_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()  # as publish's ensure_registry writes it


# ---- the whole build ---------------------------------------------------------------------------------


def build_registry(root: Path, *, repair: bool = True) -> BuildReport:
    """Check the directory registry at `root`; with `repair`, rewrite what it derives (by-base/,
    search.jsonl, config.json) and remove killed writers' temps, under the publish lock. Without `repair`
    nothing is written, and each stale derived file is one more problem. Never deletes a blob or an index
    line. A registry that cannot be written is a StorageError; a directory that is no registry NotFoundError."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"{root} is not a directory")
    if not any((root / p).exists() for p in (layout.CONFIG_PATH, INDEX_DIR, "blobs")):
        raise NotFoundError(f"{root} is not a directory registry (no {layout.CONFIG_PATH}, {INDEX_DIR}/ or blobs/)")
    try:
        return _build(root, repair)
    except OSError as exc:
        mapped = storage_error(exc, root, instead="a writable copy of the registry")
        if mapped is None:
            raise
        raise mapped from None


@contextlib.contextmanager
def _publish_lock(root: Path, *, required: bool) -> Iterator[None]:
    """Hold `.publish.lock` (waiting for a publish to finish). A check that writes nothing goes on without
    it where the lock file cannot be created (a read-only copy)."""
    lock = FileLock(str(root / LOCK_FILE))
    try:
        lock.acquire()
    except OSError:
        if required:
            raise
        yield
        return
    try:
        yield
    finally:
        lock.release()


def _build(root: Path, repair: bool) -> BuildReport:
    report = BuildReport(root)
    checker = _Checker(root)
    checker.scan()  # the hashing, without the lock: publishes go on
    with _publish_lock(root, required=repair):
        if repair:
            report.temps_removed, report.temp_bytes_freed = clean_stale_temps(root, locked=True)
            if report.temps_removed:
                report.repaired.append(
                    f"removed {plural(report.temps_removed, 'temp file')} of killed writers "
                    f"({human_size(report.temp_bytes_freed)})"
                )
        scan = checker.scan()  # the state build answers for: versions published meanwhile checked too
        problems = list(scan.problems)
        changes = _derived_changes(root, scan, problems)
        config = _config_change(root, problems)
        if config:
            changes.insert(0, config)
        for change in changes:
            if not repair:
                problems.append(change.pending())
                continue
            if change.data is None:
                (root / change.rel).unlink()
            else:
                atomic_write(root / change.rel, change.data, mode=0o644)
            report.repaired.append(change.done())
    for text in problems:
        report.problem(text)
    report.names, report.versions = len(scan.names), len(scan.versions)
    report.blobs_checked, report.bytes_hashed = len(scan.blobs), checker.bytes_hashed
    return report
