"""What the site shows, read from a directory registry through the registry's own readers (the index
lines validated as clients validate them, the manifest and card blobs checked against their sha256)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import RegistrySpec
from ..errors import AdapterError
from ..registry import layout
from ..registry.card import CARD_FILE, MAX_CARD_BYTES, trainable_parameters
from ..registry.client import IndexEntry, RegistryClient
from ..registry.publish import search_line
from ..registry.transport import FileTransport
from ..resolve import latest, newest_first
from ..signing.statement import SIGNATURE_FILE, signature_entry

INDEX_DIR = layout.index_path("a/b").split("/")[0]  # the sparse index's top folder, as layout names it

# The fields of Adapter.summary(): a summary kept from an earlier run is used only when it has them all.
SUMMARY_KEYS = frozenset(
    {"name", "version", "description", "tags", "type", "base", "yanked", "versions", "fingerprint", "task",
     "published", "deps"}
)  # fmt: skip
Identity = tuple[int, int, int]  # (inode, size, mtime_ns): an index file unchanged since it was last read


@dataclasses.dataclass(frozen=True)
class IndexFile:
    name: str
    path: str
    identity: Identity


@dataclasses.dataclass(frozen=True)
class Signature:
    """What the site can say about `model.sig` without the publisher's key."""

    sha256: str
    status: str  # one line: who claims to have signed, or why the file cannot be this version's signature
    matches: bool  # its statement was made for this version's manifest


@dataclasses.dataclass
class Adapter:
    """One adapter as its page shows it: every version (highest first) and the shown one's manifest."""

    name: str
    versions: list[IndexEntry]
    shown: IndexEntry
    manifest: dict[str, Any]
    card: str | None  # the model card's Markdown (front matter removed), when the package has one
    card_note: str | None  # why no card is shown, when the package lists one that cannot be read
    signature: Signature | None

    @property
    def trainable_parameters(self) -> int | None:
        return trainable_parameters(self.manifest)

    def summary(self) -> dict[str, Any]:
        """The facts listing pages and the home page need (kept in the site's state between runs): the
        search line publish writes for the shown version, and what the lists add to it."""
        line = self.shown.data
        base: dict[str, Any] = line["base"] if isinstance(line.get("base"), dict) else {}
        kind = line.get("type") or self.manifest["adapter"]["type"]
        listed = search_line({**line, "type": kind, "base": {"name": base.get("name")}}, self.manifest)
        task = self.manifest.get("task")
        return {
            **listed,
            "version": str(self.shown.version),
            "base": listed["base"] if isinstance(listed["base"], str) else None,
            "tags": [t for t in listed["tags"] if isinstance(t, str) and t.strip()],
            "yanked": self.shown.yanked,
            "versions": len(self.versions),
            "fingerprint": base.get("fingerprint") if isinstance(base.get("fingerprint"), str) else None,
            "task": task if isinstance(task, str) and task.strip() else None,
            "published": max(str(e.data.get("published") or "") for e in self.versions),
            "deps": sorted({d["name"] for d in self.shown.dependencies}),
        }


def open_registry(root: Path) -> RegistryClient:
    """A client reading the directory registry at `root` as any `file://` client reads it."""
    url = root.resolve().as_uri() + "/"
    return RegistryClient(RegistrySpec("site", url), FileTransport(url))


def registry_title(client: RegistryClient) -> str | None:
    name = client.config.get("name")
    return name if isinstance(name, str) and name.strip() else None


def index_files(root: Path) -> Iterator[IndexFile | str]:
    """Every index file under `root` (sorted by name), or a problem line for a file that is not where its
    name belongs. Writers' temp files are skipped."""
    prefix = len(str(root)) + 1
    stack = [str(root / INDEX_DIR)]
    found: list[IndexFile] = []
    problems: list[str] = []
    while stack:
        try:
            items = list(os.scandir(stack.pop()))
        except FileNotFoundError:
            continue
        for item in items:
            if item.name.startswith("."):
                continue
            if item.is_dir(follow_symlinks=False):
                stack.append(item.path)
                continue
            rel = item.path[prefix:].replace(os.sep, "/")
            parts = rel.split("/")
            name = f"{parts[1]}/{parts[-1]}" if len(parts) >= 4 else ""
            try:
                placed = bool(name) and layout.index_path(name) == rel
            except ValueError:
                placed = False
            if not placed:
                problems.append(f"{rel}: not the index file of any adapter name (skipped)")
                continue
            st = item.stat(follow_symlinks=False)
            found.append(IndexFile(name, item.path, (st.st_ino, st.st_size, st.st_mtime_ns)))
    yield from problems
    yield from sorted(found, key=lambda f: f.name)


def read_adapter(client: RegistryClient, name: str) -> Adapter:
    """The adapter's versions and its shown version's manifest, card and signature (AdapterError when its
    index or that manifest cannot be used). Shown: what `install` picks, else the newest listed."""
    versions = newest_first(client.entries(name))
    shown = latest(versions) or versions[0]
    manifest = client.manifest_from_bytes(shown, client.read_blob(shown.manifest_sha256))
    files = {f["path"]: f for f in manifest["files"]}
    card, card_note = None, None
    if CARD_FILE in files:
        try:
            card = _card_text(client.read_blob(files[CARD_FILE]["sha256"], limit=MAX_CARD_BYTES))
        except AdapterError as exc:
            card_note = f"the model card cannot be shown: {exc}"
    signature = _signature(client, manifest) if signature_entry(manifest) else None
    return Adapter(name, versions, shown, manifest, card, card_note, signature)


def _card_text(raw: bytes) -> str:
    """The card's Markdown without its YAML front matter (found as the Hub finds it)."""
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    text = raw.decode("utf-8", errors="replace")
    match = REGEX_YAML_BLOCK.search(text)
    return text[match.end() :] if match else text


def _signature(client: RegistryClient, manifest: dict[str, Any]) -> Signature:
    """What `model.sig` claims, checked against the manifest (name, version, base, files) but not verified:
    the site has no trusted key; installs verify it under the user's trust policy (docs/SIGNING.md)."""
    from ..signing.verify import MAX_SIGNATURE_BYTES, inspect_signature

    entry = signature_entry(manifest)
    assert entry is not None
    where = f"{SIGNATURE_FILE} of {manifest['name']} {manifest['version']}"
    try:
        info = inspect_signature(client.read_blob(entry["sha256"], limit=MAX_SIGNATURE_BYTES), manifest, where)
    except AdapterError as exc:
        return Signature(entry["sha256"], f"Not a valid signature of this version: {exc}", False)
    who = f" ({info.identity})" if info.identity else ""
    return Signature(
        entry["sha256"],
        f"Signed with a {info.kind}: signer {info.signer}{who}. Its statement names this version, its base model "
        "and every file; the signature itself is checked at install time against your trusted keys.",
        True,
    )
