"""File chores every adapter format shares, torch-free: reading a JSON file, checking the directory a
caller names (to read from or write to), and telling which format a directory holds.

Detection (:func:`detect_format`) is the one rule ``formats.load_adapter`` dispatches on:

* ``manifest.json``                         our package format (it may wrap a PEFT or an AdapterHub
                                             directory: :func:`wrapped_format`);
* ``adapter_config.json`` that AdapterHub wrote (:func:`.adapterhub_layout.is_adapterhub_config`);
* any other ``adapter_config.json``          PEFT (its reader refuses what is not a LoRA);
* a PEFT adapter saved under a name lives in ``<dir>/<name>/``: :func:`find_adapter_dir` finds it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidPackageError, NotFoundError, UsageError
from ..manifest import MANIFEST_FILE
from . import adapterhub_layout, peft_layout

PACKAGE = "package"
PEFT = "peft"
ADAPTERHUB = "adapterhub"
FORMATS = (PACKAGE, PEFT, ADAPTERHUB)


def read_json(path: Path, *, missing: type[Exception] = InvalidPackageError) -> Any:
    """The parsed JSON of `path`; `missing` (an AdapterError class) when it does not exist."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise missing(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidPackageError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidPackageError(f"{path}: JSON nested too deeply") from None
    except OSError as exc:
        raise InvalidPackageError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def as_path(path: object, what: str = "path") -> Path:
    """`path` as a :class:`Path`; a :class:`UsageError` for anything that is not a path."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise UsageError(f"expected the {what} as a str or os.PathLike, got {path!r}")
    return Path(path)


def input_dir(path: object) -> Path:
    """An existing directory to read an adapter from."""
    root = as_path(path, "adapter directory")
    if not root.is_dir():
        raise NotFoundError(f"{root}: not an adapter directory")
    return root


def output_dir(path: object) -> Path:
    """A directory to write into, created if needed (not a file, not an unwritable place)."""
    out = as_path(path, "output directory")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{out}: cannot create the directory ({exc.strerror or exc})") from None
    return out


def find_adapter_dir(root: Path, name: str | None = None) -> Path:
    """PEFT saves a non-default adapter under ``<dir>/<adapter name>/``: find it when `root` has no config."""
    if (root / MANIFEST_FILE).is_file() or (root / peft_layout.CONFIG_FILE).is_file():
        return root
    if name and (root / name / peft_layout.CONFIG_FILE).is_file():
        return root / name
    subdirs = [d for d in root.iterdir() if (d / peft_layout.CONFIG_FILE).is_file()]
    return subdirs[0] if len(subdirs) == 1 else root


def detect_format(path: object, name: str | None = None) -> tuple[str, Path]:
    """``(format, directory)`` of the adapter at `path` (one of :data:`FORMATS`)."""
    root = find_adapter_dir(input_dir(path), name)
    if (root / MANIFEST_FILE).is_file():
        return PACKAGE, root
    config = root / peft_layout.CONFIG_FILE  # AdapterHub uses the same file name
    if config.is_file():
        meta = read_json(config)
        if not isinstance(meta, dict):
            raise InvalidPackageError(f"{config}: expected a JSON object, got {type(meta).__name__}")
        return (ADAPTERHUB if adapterhub_layout.is_adapterhub_config(meta) else PEFT), root
    raise InvalidPackageError(f"{root}: neither {MANIFEST_FILE} nor {peft_layout.CONFIG_FILE} found")


def wrapped_format(root: Path) -> str | None:
    """The format whose files a package directory keeps as they are (``adapter.config.format``:
    ``peft`` or ``adapterhub``, as ``publish`` / ``pack`` make from such a directory), else None."""
    data = read_json(root / MANIFEST_FILE)
    adapter = data.get("adapter") if isinstance(data, dict) else None
    config = adapter.get("config") if isinstance(adapter, dict) else None
    fmt = config.get("format") if isinstance(config, dict) else None
    return fmt if fmt in (PEFT, ADAPTERHUB) else None


def verify_listed_file(root: Path, entry: Mapping[str, Any]) -> Path:
    """One file a package's manifest lists, checked against its sha256 and size before it is read."""
    from .._fs import file_digest
    from ..errors import IntegrityError

    target = root / entry["path"]
    try:
        sha, size = file_digest(target)
    except FileNotFoundError:
        raise InvalidPackageError(f"{target}: listed in the manifest but missing") from None
    except OSError as exc:
        raise InvalidPackageError(f"{target}: cannot be read ({exc.strerror or exc})") from None
    if (sha, size) != (entry["sha256"], entry["size"]):
        raise IntegrityError(f"{target}: sha256/size do not match the manifest")
    return target


def verify_listed_files(root: Path) -> None:
    """Check every file a package's manifest lists against its sha256 and size (before reading any)."""
    from ..manifest import read_manifest

    for entry in read_manifest(root)["files"]:
        verify_listed_file(root, entry)
