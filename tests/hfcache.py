"""Populate a Hugging Face cache the way huggingface_hub writes it (../shared/REFERENCE.md, and
huggingface_hub.file_download: `models--org--name/{blobs/<sha256 or git sha1>, refs/<name>, snapshots/<commit>/<path>}`,
each snapshot file a relative symlink to its blob). Used to test offline installs from a pre-populated cache;
tests/unit/test_hubfake.py checks that the library itself writes this layout."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

TEXT_SUFFIXES = (".json", ".md", ".txt", ".gitattributes")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return not path.endswith(TEXT_SUFFIXES)


def populate_hf_cache(
    hub_cache: Path,
    repo: str,
    files: Mapping[str, bytes | Path],
    *,
    commit: str | None = None,
    refs: tuple[str, ...] = ("main",),
) -> Path:
    """Write `files` as the snapshot of `repo` at `commit` (default: derived from the content); returns it."""
    contents = {p: (v.read_bytes() if isinstance(v, Path) else v) for p, v in files.items()}
    if commit is None:
        h = hashlib.sha1()
        for p in sorted(contents):
            h.update(p.encode() + b"\0" + hashlib.sha256(contents[p]).digest())
        commit = h.hexdigest()
    root = hub_cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    for rel, data in contents.items():
        blob_name = hashlib.sha256(data).hexdigest() if is_lfs(rel) else git_blob_sha1(data)
        blob = root / "blobs" / blob_name
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        ref_file = root / "refs" / ref
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(commit)
    return snapshot
