"""Writing the site, incrementally: a page is written only when its bytes change, and an adapter's page is
not even rendered again while its index file, its dependencies' presence and the generator are unchanged.

The state file (`.site-state.json` in the site folder, a dot file: static hosts are told not to serve
those) records each page's sha256 and, per adapter, its index file's identity and sha256, the key of what
its page was rendered from, and the summary its listings need, so a publish to a registry of 100,000
adapters re-reads one index file and one manifest, and rewrites that adapter's page and the listings
whose content moved. Without the state (deleted, or a first run over an old site), pages are compared with
the files on disk, so nothing identical is rewritten either. Pages this generator wrote that no longer
exist in the site are removed; nothing else in the folder is touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from functools import cache
from hashlib import sha256
from pathlib import Path
from typing import Any

from filelock import FileLock

from .._fs import atomic_write, sha256_bytes, sha256_file
from .._text import plural
from ..config import LOCAL_REGISTRY
from ..errors import AdapterError, NotFoundError, UsageError, storage_error
from ..registry import layout
from ..registry.client import RegistryClient
from . import pages
from .catalogue import INDEX_DIR, SUMMARY_KEYS, index_files, open_registry, read_adapter, registry_title
from .pages import ALL_FOLDER, GROUP, GROUPS, Context, e, group_path, group_values, label

DEFAULT_SITE_DIR = "site"  # beside the protocol's files: DIR/site/ is served with the registry
STATE_FILE = ".site-state.json"
LOCK_FILE = ".site.lock"
STATE_FORMAT = 1
PAGE_SIZE = 100  # adapters per listing page
RECENT = 20  # adapters listed on the home page as published last
MAX_BASE_OPTIONS = 500  # base models offered in the home page's filter (the most used ones)
MAX_REPORTED_PROBLEMS = 100
DEFAULT_TITLE = "Adapter registry"
DEFAULT_ALIAS = "team"  # the install lines' name for a registry whose config.json names none
# Top-level names of the registry protocol (REGISTRY.md): the site never goes in or over them.
RESERVED = (layout.CONFIG_PATH, layout.SEARCH_PATH, INDEX_DIR, "blobs", "by-base")
_STATIC = Path(__file__).parent / "static"


@dataclasses.dataclass
class SiteReport:
    """What `build_site` did: pages in the site, those written this run (the rest had the same bytes),
    adapter pages rendered (the others' inputs had not changed), pages removed, and adapters it could not
    show (`problems`, one line each, at most MAX_REPORTED_PROBLEMS; `problem_count` counts them all)."""

    out: Path
    adapters: int = 0
    versions: int = 0
    pages: int = 0
    rendered: int = 0
    written: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def unchanged(self) -> int:
        return self.pages - len(self.written)

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(" ".join(text.split())[:400])

    def summary(self) -> str:
        """One line for people."""
        return (
            f"site {self.out}: {plural(self.adapters, 'adapter')}, {plural(self.pages, 'page')} "
            f"({len(self.written)} written, {self.unchanged} unchanged, {len(self.removed)} removed)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "ok": self.ok,
            "adapters": self.adapters,
            "versions": self.versions,
            "pages": self.pages,
            "rendered": self.rendered,
            "written": list(self.written),
            "unchanged": self.unchanged,
            "removed": list(self.removed),
            "problems": list(self.problems),
            "problem_count": self.problem_count,
        }


@cache
def generator_fingerprint() -> str:
    """A hash of this package's code and assets and of the Markdown library: pages rendered by another
    generator are rendered again."""
    from markdown_it import __version__ as markdown_version

    h = sha256(markdown_version.encode())
    for path in sorted([*Path(__file__).parent.glob("*.py"), *_STATIC.iterdir()]):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_site(root: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> SiteReport:
    """Write (or bring up to date) the catalogue site of the directory registry at `root`, in `out`
    (default `root/site/`). NotFoundError for a directory that is no registry, UsageError for an `out`
    that would mix pages with the protocol's files, StorageError when the disk refuses."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"{root} is not a directory")
    if not any((root / p).exists() for p in (layout.CONFIG_PATH, INDEX_DIR, "blobs")):
        raise NotFoundError(f"{root} is not a directory registry (no {layout.CONFIG_PATH}, {INDEX_DIR}/ or blobs/)")
    site = root / DEFAULT_SITE_DIR if out is None else Path(out)
    _check_out(root, site)
    try:
        site.mkdir(parents=True, exist_ok=True)
        with FileLock(str(site / LOCK_FILE)):
            return _build(root, site)
    except OSError as exc:
        mapped = storage_error(exc, site, instead="another site folder (--out)")
        if mapped is None:
            raise
        raise mapped from None


def _check_out(root: Path, site: Path) -> None:
    real_root, real_site = root.resolve(), site.resolve()
    if real_site == real_root:
        raise UsageError(f"{site}: the site cannot be the registry folder itself; use {root / DEFAULT_SITE_DIR}")
    if real_site.is_relative_to(real_root) and real_site.relative_to(real_root).parts[0] in RESERVED:
        raise UsageError(f"{site}: inside the registry's {real_site.relative_to(real_root).parts[0]}; pick another")
    if real_root.is_relative_to(real_site):
        raise UsageError(f"{site}: contains the registry; pick a folder beside or inside it")
    if site.exists() and not site.is_dir():
        raise UsageError(f"{site} is a file, not a folder for the site")


class _Writer:
    """Emits pages: writes one only when its bytes differ from the file there."""

    def __init__(self, out: Path, previous: Mapping[str, str]) -> None:
        self.out = out
        self.previous = previous
        self.pages: dict[str, str] = {}
        self.written: list[str] = []

    def emit(self, rel: str, text: str) -> None:
        data = text.encode()
        digest = sha256_bytes(data)
        self.pages[rel] = digest
        path = self.out / rel
        if self.previous.get(rel) == digest and path.is_file():
            return
        if rel not in self.previous and path.is_file() and path.read_bytes() == data:
            return  # no state for it (a first run over an existing site): identical bytes stay
        atomic_write(path, data, mode=0o644)
        self.written.append(rel)

    def keep(self, rel: str) -> bool:
        """Keep a page not rendered again; False when there is nothing to keep (rendering it is needed)."""
        digest = self.previous.get(rel)
        if digest is None or not os.path.isfile(os.path.join(self.out, rel)):  # (a loop of 100,000: no Path)
            return False
        self.pages[rel] = digest
        return True


def _load_state(site: Path) -> dict[str, Any]:
    try:
        state = json.loads((site / STATE_FILE).read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        return {}
    if not isinstance(state.get("pages"), dict) or not isinstance(state.get("adapters"), dict):
        return {}
    return state


def _registry_prefix(root: Path, site: Path) -> str:
    """The registry root as a relative URL from the site root ("../" for DIR/site/)."""
    return Path(os.path.relpath(root.resolve(), site.resolve())).as_posix().rstrip("/") + "/"


def _alias(name: str | None) -> str:
    """A registry name for `adapters registry add`: the registry's own, in words a shell keeps as they are."""
    words = "-".join("".join(c if c.isascii() and c.isalnum() else " " for c in (name or "").lower()).split())
    return words[:40] if words and words != LOCAL_REGISTRY else DEFAULT_ALIAS


def _page_key(site_key: str, index_sha: str, deps: Sequence[str], known: set[str]) -> str:
    """What an adapter page is a function of: the generator and the site's context (`site_key`), its index
    file's content (the manifests it names are immutable) and which of its dependencies the registry lists."""
    present = "".join(("+" if d in known else "-") + d + "\n" for d in deps)  # names hold no newline
    return sha256(f"{site_key}\n{index_sha}\n{present}".encode()).hexdigest()


def _build(root: Path, site: Path) -> SiteReport:
    report = SiteReport(site)
    state = _load_state(site)
    writer = _Writer(site, state.get("pages", {}))
    client = open_registry(root)
    try:
        registry_name = registry_title(client)
    except AdapterError as exc:
        report.problem(f"{layout.CONFIG_PATH}: {exc}")
        registry_name = None
    assets = sha256(b"".join((_STATIC / name).read_bytes() for name in pages.ASSETS)).hexdigest()[:12]
    title = f"{registry_name} adapter registry" if registry_name else DEFAULT_TITLE
    ctx = Context(title, _alias(registry_name), _registry_prefix(root, site), assets)
    summaries, adapters = _adapter_pages(writer, ctx, client, root, state.get("adapters", {}), report)
    summaries.sort(key=lambda s: s["name"])
    _listings(writer, ctx, summaries)
    for name in pages.ASSETS:
        writer.emit(name, (_STATIC / name).read_text(encoding="utf-8"))

    for rel in sorted(set(writer.previous) - set(writer.pages)):
        try:
            (site / rel).unlink()
        except FileNotFoundError:
            continue
        report.removed.append(rel)
    state = {"format": STATE_FORMAT, "pages": writer.pages, "adapters": adapters}
    atomic_write(site / STATE_FILE, json.dumps(state, separators=(",", ":"), sort_keys=True), mode=0o644)
    report.adapters = len(summaries)
    report.versions = sum(int(s["versions"]) for s in summaries)
    report.pages = len(writer.pages)
    report.written = writer.written
    return report


def _adapter_pages(
    writer: _Writer,
    ctx: Context,
    client: RegistryClient,
    root: Path,
    previous: Mapping[str, Any],
    report: SiteReport,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each adapter's page, rendered only when what it is made of changed; (the adapters' summaries, their
    state for the next run). An adapter that cannot be read is left off, as a problem of the report."""
    site_key = json.dumps([generator_fingerprint(), dataclasses.astuple(ctx)])
    files = []
    for found in index_files(root):
        if isinstance(found, str):
            report.problem(found)
        else:
            files.append(found)
    known = {f.name for f in files}
    summaries: list[dict[str, Any]] = []
    adapters: dict[str, Any] = {}
    for f in files:
        rel = pages.adapter_path(f.name)
        old = previous.get(f.name)
        old = old if isinstance(old, dict) else {}
        try:
            index_sha = old["index"] if old.get("identity") == list(f.identity) else sha256_file(f.path)
        except OSError as exc:
            report.problem(f"{f.name}: its index file cannot be read ({exc.strerror or exc})")
            continue
        summary = old.get("summary") if old.get("index") == index_sha else None
        if isinstance(summary, dict) and summary.keys() >= SUMMARY_KEYS:
            key = _page_key(site_key, index_sha, summary["deps"], known)
            if old.get("key") == key and writer.keep(rel):
                summaries.append(summary)
                adapters[f.name] = {**old, "identity": list(f.identity)}
                continue
        try:
            adapter = read_adapter(client, f.name)
        except AdapterError as exc:
            report.problem(f"{f.name}: {exc}")
            continue
        summary = adapter.summary()
        writer.emit(rel, pages.adapter_page(ctx, adapter, known))
        report.rendered += 1
        summaries.append(summary)
        key = _page_key(site_key, index_sha, summary["deps"], known)
        adapters[f.name] = {"identity": list(f.identity), "index": index_sha, "key": key, "summary": summary}
    return summaries, adapters


def _listings(writer: _Writer, ctx: Context, summaries: Sequence[dict[str, Any]]) -> None:
    """The home page, every listing page (all adapters, and by base model, type, tag and task) and the
    index of each group. Rows are rendered once per depth and shared by every list they appear in."""
    rows: dict[tuple[str, str], str] = {}

    def rows_for(items: Sequence[Mapping[str, Any]], rel: str) -> list[str]:
        prefix = "../" * rel.count("/")
        out = []
        for s in items:
            cached = rows.get((s["name"], prefix))
            if cached is None:
                cached = rows[(s["name"], prefix)] = pages.entry_row(s, prefix)
            out.append(cached)
        return out

    def paginate(
        folder: str, title: str, intro: str, items: Sequence[Mapping[str, Any]], crumbs: list[tuple[str, str]]
    ) -> None:
        count = max(1, -(-len(items) // PAGE_SIZE))
        for n in range(1, count + 1):
            rel = pages.numbered(folder, n)
            chunk = items[(n - 1) * PAGE_SIZE : n * PAGE_SIZE]
            heading = title if n == 1 else f"{title} (page {n} of {count})"
            pager = pages.pager(folder, n, count, "../" * rel.count("/"))
            writer.emit(rel, pages.listing_page(ctx, rel, heading, intro, rows_for(chunk, rel), pager, crumbs))

    home = ("index.html", "Home")
    paginate(ALL_FOLDER, "All adapters", f"<p>{len(summaries):,} adapters, by name.</p>", summaries, [home])
    members: dict[str, dict[str, list[Mapping[str, Any]]]] = {g.key: {} for g in GROUPS}
    for s in summaries:
        for group in GROUPS:
            for value in group_values(s, group):
                members[group.key].setdefault(value, []).append(s)
    counts: dict[str, list[tuple[str, int]]] = {}
    for group in GROUPS:
        ordered = sorted(members[group.key].items(), key=lambda kv: (-len(kv[1]), label(group, kv[0])))
        counts[group.key] = [(value, len(items)) for value, items in ordered]
        writer.emit(f"{group.folder}/index.html", pages.groups_page(ctx, group, counts[group.key]))
        crumbs = [home, (f"{group.folder}/index.html", group.plural_title)]
        for value, items in ordered:
            intro = f"<p>{plural(len(items), 'adapter')}.</p>"
            if group is GROUP["base"]:
                prints = sorted({str(s["fingerprint"]) for s in items if s.get("fingerprint")})
                listed = "".join(f"<li><code>{e(fp)}</code></li>" for fp in prints)
                intro += f"<p>Content fingerprints of these adapters' bases:</p><ul>{listed}</ul>" if prints else ""
            folder = group_path(group, value).rsplit("/", 1)[0]
            paginate(folder, f"{group.title}: {label(group, value)}", intro, items, crumbs)
    recent = sorted(summaries, key=lambda s: (s.get("published") or "", s["name"]), reverse=True)[:RECENT]
    writer.emit("index.html", pages.home_page(ctx, summaries, counts, rows_for(recent, "index.html"), MAX_BASE_OPTIONS))
