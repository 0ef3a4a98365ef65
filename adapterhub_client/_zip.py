"""Extract a downloaded zip archive (AdapterHub's archived adapters) into a staging directory, safely.

The archive's sha256 is checked before a byte of it is parsed. Every member is then checked before
anything is written: its path (manifest.check_relative_path: relative, no '..', no backslash or
drive, no control characters), its kind (regular files and directories only: no symlinks, devices or
FIFOs, judged by the Unix mode in ``external_attr``), no duplicate (also ignoring letter case and
Unicode normalisation: one name on a case-insensitive disk), no encryption, at most ``max_members``
members and ``max_bytes`` declared bytes. While writing, bytes are counted again, so a member that
decompresses past its declared size, or past the cap, stops there; a CRC that fails is refused. Any
failure leaves the staging directory empty. AdapterHub's zips hold their files at the top level or
in one folder; a single common top-level folder is stripped.
"""

from __future__ import annotations

import os
import shutil
import stat
import unicodedata
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ._fs import HASH_CHUNK, sha256_file
from .errors import IntegrityError, InvalidPackageError, NotFoundError, StorageError, UsageError, storage_error
from .manifest import check_relative_path, shown

_ENCRYPTED = 0x1 | 0x40  # general purpose flags: traditional and strong encryption
_SKIPPED_TOP = "__MACOSX"  # macOS resource forks (AppleDouble `._name` files): never adapter files


def _refuse(archive: Path, member: str, why: str) -> InvalidPackageError:
    return InvalidPackageError(f"{archive.name}: member {shown(member)} {why}")


def _member_kind(archive: Path, info: zipfile.ZipInfo) -> bool:
    """True for a directory, False for a regular file; anything else is refused."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise _refuse(archive, info.orig_filename, "is a symbolic link; only regular files are extracted")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise _refuse(archive, info.orig_filename, f"is a special file (mode {mode:o}); only regular files")
    is_dir = info.filename.endswith("/")
    if (kind == stat.S_IFDIR and not is_dir) or (kind == stat.S_IFREG and is_dir):
        raise _refuse(archive, info.orig_filename, "has a file type that does not match its name")
    if is_dir and info.file_size:
        raise _refuse(archive, info.orig_filename, "is a directory holding data")
    return is_dir


def _key(path: str) -> str:
    """One name for paths a case-insensitive or normalising file system would treat as one."""
    return unicodedata.normalize("NFC", path).casefold()


def _plan(archive: Path, zf: zipfile.ZipFile, max_bytes: int, max_members: int) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every member checked, in archive order, with the path it gets under dest (None: a directory)."""
    infos = zf.infolist()
    if len(infos) > max_members:
        raise InvalidPackageError(f"{archive.name}: {len(infos)} members, more than the limit of {max_members}")
    seen: dict[str, str] = {}
    declared = 0
    entries: list[tuple[zipfile.ZipInfo, str, bool]] = []
    for info in infos:
        raw = info.orig_filename
        if "\x00" in raw or raw != info.filename:  # zipfile cut the name at a NUL or rewrote separators
            raise _refuse(archive, raw, "has an invalid name")
        if raw.startswith("/") or "\\" in raw:
            raise _refuse(archive, raw, "has an absolute or backslashed path")
        is_dir = _member_kind(archive, info)
        path = raw[:-1] if is_dir else raw
        check_relative_path(path, f"{archive.name}: member")
        if info.flag_bits & _ENCRYPTED:
            raise _refuse(archive, raw, "is encrypted")
        key = _key(path)
        if key in seen:
            raise _refuse(archive, raw, f"duplicates {shown(seen[key])}")
        seen[key] = path
        declared += info.file_size
        if declared > max_bytes:
            raise _refuse(archive, raw, f"takes the archive past {max_bytes} uncompressed bytes")
        entries.append((info, path, is_dir))
    dirs = {path for _, path, is_dir in entries if is_dir}
    for _info, path, _is_dir in entries:  # a file used as a folder by another member
        for parent in list(PurePosixPath(path).parents)[:-1]:
            owner = seen.get(_key(str(parent)))
            if owner is not None and owner not in dirs:
                raise _refuse(archive, path, f"sits under the file {shown(owner)}")
    kept = [(i, p, d) for i, p, d in entries if p.split("/")[0] != _SKIPPED_TOP]
    tops = {p.split("/")[0] for _, p, _ in kept}
    strip = len(tops) == 1 and all("/" in p or d for _, p, d in kept) and any("/" in p for _, p, _ in kept)
    plan = []
    for info, path, is_dir in kept:
        rel = path.split("/", 1)[1] if strip and "/" in path else ("" if strip else path)
        if rel:
            check_relative_path(rel, f"{archive.name}: member")
            plan.append((info, rel + ("/" if is_dir else "")))
    return plan


def _clear(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _write(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Stream one member to `target` (created new, never through a link); return its byte count."""
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(target, flags, 0o644)
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        while chunk := src.read(HASH_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise _refuse(archive, info.orig_filename, f"decompresses past its declared {info.file_size} bytes")
            if written > budget:
                raise _refuse(archive, info.orig_filename, "takes the archive past its uncompressed byte limit")
            out.write(chunk)
    if written != info.file_size:
        raise _refuse(archive, info.orig_filename, f"holds {written} bytes, not its declared {info.file_size}")
    return written


def extract_zip(
    archive: Path,
    dest: Path,
    *,
    expected_sha256: str | None,
    max_bytes: int,
    max_members: int,
) -> list[str]:
    """Verify `archive` against `expected_sha256`, then extract it into the empty directory `dest`;
    return the extracted files' relative POSIX paths in archive order. IntegrityError (4) for a
    sha256 mismatch, InvalidPackageError (7) naming the member for anything unsafe or corrupt;
    `dest` is left empty on any failure."""
    archive, dest = Path(archive), Path(dest)
    if max_bytes < 0 or max_members < 1:
        raise UsageError(f"extract_zip: max_bytes must be >= 0 and max_members >= 1, got {max_bytes}, {max_members}")
    if not dest.is_dir() or dest.is_symlink():
        raise UsageError(f"staging directory {dest} does not exist or is not a directory")
    if any(dest.iterdir()):
        raise UsageError(f"staging directory {dest} is not empty")
    try:
        if expected_sha256 is not None:
            actual = sha256_file(archive)
            if actual != expected_sha256.lower():
                raise IntegrityError(f"{archive.name} has sha256 {actual}, expected {expected_sha256.lower()}")
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError) as exc:
        raise InvalidPackageError(f"{archive.name} is not a readable zip archive: {exc}") from None
    except FileNotFoundError:
        raise NotFoundError(f"archive {archive} does not exist") from None
    except OSError as exc:
        raise StorageError(f"cannot read archive {archive}: {exc.strerror or exc}") from None
    root = os.path.realpath(dest)
    files: list[str] = []
    try:
        with zf:
            plan = _plan(archive, zf, max_bytes, max_members)
            budget = max_bytes
            for info, rel in plan:
                target = dest / rel
                if os.path.commonpath([root, os.path.realpath(target)]) != root:  # never past dest
                    raise _refuse(archive, info.orig_filename, "resolves outside the staging directory")
                if rel.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    budget -= _write(archive, zf, info, target, budget)
                except FileExistsError:
                    raise _refuse(archive, info.orig_filename, "is written twice") from None
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
                    why = "fails its CRC check" if "CRC" in str(exc) else f"cannot be decompressed ({exc})"
                    raise _refuse(archive, info.orig_filename, why) from None
                files.append(rel)
    except BaseException as exc:
        _clear(dest)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            mapped = storage_error(exc, dest)
            if mapped is not None:
                raise mapped from None
            raise StorageError(f"cannot extract {archive.name} into {dest}: {exc.strerror or exc}") from None
        raise
    return files


__all__ = ["extract_zip"]
