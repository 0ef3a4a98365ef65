"""The site's HTML: every page from one skeleton, every value from the registry escaped here (cards are
rendered by :mod:`.markdown`). Pages link to each other relatively, so the site works from any folder of
any static host."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from hashlib import sha256
from html import escape
from typing import Any

from .._text import human_count, human_size, plural
from ..signing.statement import SIGNATURE_FILE
from .catalogue import Adapter
from .markdown import render_markdown

ASSETS = ("site.css", "site.js", "favicon.svg")
MAX_MODULE_ROWS = 2000  # touched modules listed on a page; the count is always given
# The page's own policy on top of the escaping: no inline script or style, nothing loaded from elsewhere
# but images in cards (https), no plugins, forms only to the site.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)
_ISO_TIME = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d):\d\d(?:\.\d+)?Z")
ADAPTERS_FOLDER = "adapters"
REGISTRY_URL = "REGISTRY_URL"  # in the install lines until the script puts the served address there
ALL_FOLDER = "all"


def e(value: object) -> str:
    """Text (or an attribute value) as HTML."""
    return escape(str(value), quote=True)


@dataclasses.dataclass(frozen=True)
class Group:
    """One kind of listing page: adapters by base model, type, tag or task."""

    key: str  # the summary field it groups by
    folder: str
    plural_title: str
    title: str


GROUPS = (
    Group("base", "bases", "Base models", "Base model"),
    Group("type", "types", "Adapter types", "Adapter type"),
    Group("tag", "tags", "Tags", "Tag"),
    Group("task", "tasks", "Tasks", "Task"),
)
GROUP = {g.key: g for g in GROUPS}
UNNAMED_BASE = "unnamed base model"


def group_values(summary: Mapping[str, Any], group: Group) -> list[str]:
    """The values an adapter is listed under in `group` ("" for a base the manifest does not name)."""
    if group.key == "base":
        return [summary.get("base") or ""]
    if group.key == "tag":
        return list(dict.fromkeys(summary.get("tags") or []))
    value = summary.get(group.key)
    return [value] if value else []


def label(group: Group, value: str) -> str:
    return value or (UNNAMED_BASE if group.key == "base" else "none")


@lru_cache(maxsize=65536)
def slug(value: str) -> str:
    """A file name for any value (a base model name, a tag): readable words and a hash that keeps two
    values apart when their words agree."""
    words = "".join(c if c.isascii() and c.isalnum() else "-" for c in value.lower())
    words = "-".join(w for w in words.split("-") if w)[:60].strip("-")
    return f"{words or 'x'}-{sha256(value.encode()).hexdigest()[:8]}"


def adapter_path(name: str) -> str:
    return f"{ADAPTERS_FOLDER}/{name}.html"


def numbered(folder: str, page: int) -> str:
    return f"{folder}/index.html" if page == 1 else f"{folder}/{page}.html"


def group_path(group: Group, value: str, page: int = 1) -> str:
    return numbered(f"{group.folder}/{slug(value)}", page)


@dataclasses.dataclass(frozen=True)
class Context:
    """What every page of one site shares."""

    title: str  # the registry's name, or a generic one
    alias: str  # what `adapters registry add` calls the registry in the install lines
    registry: str  # the registry root relative to the site root ("../" for the default DIR/site/)
    assets: str  # a hash of the style sheet and script, so browsers fetch new ones after an upgrade


def _prefix(rel: str) -> str:
    return "../" * rel.count("/")


def page(ctx: Context, rel: str, title: str, body: str, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    """A whole page at `rel` (its path under the site root)."""
    p = _prefix(rel)
    nav = [("index.html", "Home"), (numbered(ALL_FOLDER, 1), "All adapters")]
    nav += [(f"{g.folder}/index.html", g.plural_title) for g in GROUPS]
    items = "".join(
        f'<li><a href="{p}{href}"{" aria-current=page" if href == rel else ""}>{e(text)}</a></li>' for href, text in nav
    )
    trail = ""
    if crumbs:
        links = [f'<li><a href="{p}{href}">{e(text)}</a></li>' for href, text in crumbs]
        trail = f'<nav class="breadcrumb" aria-label="Breadcrumb"><ol>{"".join(links)}</ol></nav>'
    return (
        "<!doctype html>\n"
        f'<html lang="en" data-root="{e(p)}" data-registry="{e(p + ctx.registry)}">\n<head>\n'
        '<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{e(title)} · {e(ctx.title)}</title>\n"
        f'<link rel="icon" href="{p}favicon.svg?v={ctx.assets}" type="image/svg+xml">\n'
        f'<link rel="stylesheet" href="{p}site.css?v={ctx.assets}">\n'
        f'<script src="{p}site.js?v={ctx.assets}" defer></script>\n'
        "</head>\n<body>\n"
        '<a class="skip" href="#main">Skip to content</a>\n'
        f'<header class="top"><div class="wrap"><a class="brand" href="{p}index.html">{e(ctx.title)}</a>'
        f'<nav aria-label="Site"><ul>{items}</ul></nav></div></header>\n'
        f'<main id="main" tabindex="-1"><div class="wrap">\n{trail}{body}\n</div></main>\n'
        '<footer><div class="wrap">A static catalogue of this adapter registry, generated by '
        '<a href="https://pypi.org/project/adapterhub-client/">adapterhub-client</a> from its index. '
        f'Search reads the registry\'s own <a href="{p}{e(ctx.registry)}search.jsonl">search.jsonl</a>.'
        "</div></footer>\n</body>\n</html>\n"
    )


# --- pieces ---------------------------------------------------------------------------------------


def _badge(text: str, kind: str = "") -> str:
    return f'<span class="badge{" " + kind if kind else ""}">{e(text)}</span>'


def _command(text: str, what: str) -> str:
    return f'<div class="command"><pre data-copy="{e(what)}"><code>{e(text)}</code></pre></div>'


def _facts(rows: Iterable[tuple[str, str]]) -> str:
    """A definition list; values are HTML already."""
    return '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _table(caption: str, headers: Sequence[str], rows: Iterable[str], numeric: Sequence[int] = ()) -> str:
    head = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{e(h)}</th>' for i, h in enumerate(headers))
    return (
        f'<div class="table-wrap"><table><caption class="muted">{e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _size(n: object) -> str:
    return f"{human_size(n)} ({n:,} bytes)" if isinstance(n, int) and not isinstance(n, bool) else "unknown"


def _when(stamp: object) -> str:
    """An index line's `published` time, as a <time> element a person reads at a glance."""
    if not isinstance(stamp, str) or not stamp:
        return '<span class="muted">unknown</span>'
    match = _ISO_TIME.fullmatch(stamp)
    shown = f"{match.group(1)} {match.group(2)} UTC" if match else stamp
    return f'<time datetime="{e(stamp)}">{e(shown)}</time>'


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def entry_row(summary: Mapping[str, Any], prefix: str) -> str:
    """One adapter in a list (listing pages and the home page)."""
    badges = [_badge(summary["version"]), _badge(summary["type"])]
    if summary.get("yanked"):
        badges.append(_badge("yanked", "yanked"))
    base = str(summary.get("base") or "")
    out = [
        f'<li><div class="entry-head"><a href="{prefix}{adapter_path(summary["name"])}">{e(summary["name"])}</a>'
        f"{''.join(badges)}</div>"
    ]
    if summary.get("description"):
        out.append(f"<p>{e(summary['description'])}</p>")
    base_link = f'<a href="{prefix}{group_path(GROUP["base"], base)}">{e(label(GROUP["base"], base))}</a>'
    out.append(f'<p class="muted">base model: {base_link}</p></li>')
    return "".join(out)


def pager(folder: str, page_no: int, pages: int, prefix: str) -> str:
    """Links to the other pages of a listing (first, last, and the two on each side)."""
    if pages <= 1:
        return ""
    shown = sorted({1, pages, *range(max(1, page_no - 2), min(pages, page_no + 2) + 1)})
    links, last = [], 0
    if page_no > 1:
        links.append(f'<a rel="prev" href="{prefix}{numbered(folder, page_no - 1)}">Previous</a>')
    for n in shown:
        if n - last > 1:
            links.append('<span aria-hidden="true">…</span>')
        current = ' aria-current="page"' if n == page_no else ""
        links.append(f'<a href="{prefix}{numbered(folder, n)}"{current}>{n}</a>')
        last = n
    if page_no < pages:
        links.append(f'<a rel="next" href="{prefix}{numbered(folder, page_no + 1)}">Next</a>')
    return f'<nav class="pages" aria-label="Pages">{"".join(links)}</nav>'


# --- the adapter page -------------------------------------------------------------------------------


def adapter_page(ctx: Context, adapter: Adapter, known: set[str]) -> str:
    """Everything about one adapter; `known`: the names this registry lists (dependencies link to them)."""
    rel = adapter_path(adapter.name)
    p = _prefix(rel)
    m, shown = adapter.manifest, adapter.shown
    version = str(shown.version)
    ref = f"{adapter.name}@{version}"
    head = [f"<h1>{e(adapter.name)}</h1>", f'<p class="lede">version {e(version)}']
    if shown.yanked:
        head.append(" " + _badge("yanked", "yanked"))
    head.append("</p>")
    if m.get("description"):
        head.append(f"<p>{e(m['description'])}</p>")
    if shown.yanked:
        head.append('<p class="notice">Every version is yanked: install one only by pinning it exactly.</p>')
    elif shown.version.is_prerelease:
        head.append('<p class="notice">Only pre-releases are published: <code>adapters install</code> picks one '
                    "with <code>--pre</code> or an exact pin.</p>")  # fmt: skip
    tags = [t for t in m.get("tags") or [] if isinstance(t, str) and t.strip()]
    if tags:
        links = "".join(f'<li><a class="badge" href="{p}{group_path(GROUP["tag"], t)}">{e(t)}</a></li>' for t in tags)
        head.append(f'<ul class="tags" aria-label="Tags">{links}</ul>')
    sections = [
        "<header>" + "".join(head) + "</header>",
        _install_section(ctx, adapter, ref),
        _versions_section(adapter),
        _base_section(adapter, p),
        _adapter_section(adapter, p),
        _dependencies_section(adapter, p, known),
        _files_section(adapter),
        _modules_section(adapter),
        _signature_section(adapter),
        _card_section(adapter),
    ]
    crumbs = [("index.html", "Home"), (numbered(ALL_FOLDER, 1), "All adapters"), (rel, adapter.name)]
    body = f'<article aria-labelledby="adapter-name">{"".join(sections)}</article>'
    body = body.replace("<h1>", '<h1 id="adapter-name">', 1)
    return page(ctx, rel, adapter.name, body, crumbs)


def _section(key: str, title: str, content: str) -> str:
    return f'<section aria-labelledby="{key}"><h2 id="{key}">{e(title)}</h2>{content}</section>'


def _install_section(ctx: Context, adapter: Adapter, ref: str) -> str:
    base = (adapter.manifest.get("base_model") or {}).get("name")
    model = repr(base) if isinstance(base, str) and base else repr("./base-model")
    python = "\n".join(
        [
            "import adapterhub_client as ah",
            "from transformers import AutoModel",
            "",
            "hub = ah.Hub()",
            f"model = AutoModel.from_pretrained({model})",
            f"name = hub.attach(model, {ref!r})  # checks the base, installs, attaches",
        ]
    )
    add = f"adapters registry add {ctx.alias} {REGISTRY_URL}"
    install = f"adapters install {shlex.quote(ref)}"
    check = f"adapters attach {shlex.quote(ref)} --model ./base-model --check"
    return _section(
        "install",
        "Install",
        "<p>Add this registry once (dependencies resolve from the registries you have added), then install:</p>"
        + f'<div class="command"><pre data-copy="registry command" data-registry-add="{e(ctx.alias)}">'
        f"<code>{e(add)}</code></pre></div>"
        + _command(install, "install command")
        + f'<p class="muted" data-registry-hint><code>{REGISTRY_URL}</code>: the address this site is served '
        "from, without its last folder.</p>"
        + "<p>Check a local base model first (nothing is downloaded), then attach in Python:</p>"
        + _command(check, "check command")
        + _command(python, "Python lines"),
    )


def _versions_section(adapter: Adapter) -> str:
    rows = []
    for entry in adapter.versions:
        status = []
        if entry is adapter.shown:
            status.append(_badge("shown"))
        if entry.yanked:
            status.append(_badge("yanked", "yanked"))
        if entry.version.is_prerelease:
            status.append(_badge("pre-release"))
        rows.append(
            f'<tr id="v{e(entry.version)}"{" class=yanked" if entry.yanked else ""}>'
            f"<th scope=row>{e(entry.version)}</th><td>{_when(entry.data.get('published'))}</td>"
            f'<td class="num">{e(_size(entry.data.get("size")))}</td><td>{"".join(status)}</td>'
            f'<td class="hash">{e(entry.manifest_sha256)}</td></tr>'
        )
    caption = f"{plural(len(adapter.versions), 'version')}, highest first"
    table = _table(caption, ["version", "published", "size", "status", "manifest sha256"], rows, numeric=[2])
    return _section("versions", "Versions", table)


def _base_section(adapter: Adapter, p: str) -> str:
    base = adapter.manifest.get("base_model") or {}
    fp = base.get("fingerprint") or {}
    name = str(base.get("name") or "")
    link = f'<a href="{p}{group_path(GROUP["base"], name)}">{e(label(GROUP["base"], name))}</a>'
    arch = base.get("architecture") or {}
    rows = [("name", link)]
    if base.get("revision"):
        rows.append(("revision", f"<code>{e(base['revision'])}</code>"))
    for key, title in (("content", "content fingerprint"), ("architecture", "architecture fingerprint")):
        value = fp.get(key)
        shown = f'<code class="fingerprint">{e(value)}</code>' if value else '<span class="muted">not recorded</span>'
        rows.append((title, shown))
    if arch.get("model_type"):
        rows.append(("model type", f"<code>{e(arch['model_type'])}</code>"))
    if base.get("quantization"):
        rows.append(("quantization", f"<code>{e(_json(base['quantization']))}</code>"))
    files = fp.get("files")
    if isinstance(files, Mapping) and files:
        listed = "".join(f"<li><code>{e(path)}</code>: <code>{e(sha)}</code></li>" for path, sha in files.items())
        rows.append(("weight files (sha256)", f"<ul>{listed}</ul>"))
    note = (
        "<p class=muted><code>adapters attach --check</code> compares a local model with these fingerprints "
        "before any adapter weight is downloaded.</p>"
    )
    return _section("base", "Base model", _facts(rows) + note)


def _adapter_section(adapter: Adapter, p: str) -> str:
    m = adapter.manifest
    kind = str(m["adapter"]["type"])
    rows = [("type", f'<a href="{p}{group_path(GROUP["type"], kind)}">{e(kind)}</a>')]
    count = adapter.trainable_parameters
    rows.append(
        (
            "trainable parameters",
            f"{count:,} ({e(human_count(count))})" if count is not None else '<span class="muted">not recorded</span>',
        )
    )
    if isinstance(m.get("task"), str) and m["task"]:
        rows.append(("task", f'<a href="{p}{group_path(GROUP["task"], m["task"])}">{e(m["task"])}</a>'))
    if m.get("license"):
        rows.append(("license", e(m["license"])))
    authors = [a for a in m.get("authors") or [] if isinstance(a, str)]
    if authors:
        rows.append(("authors", e(", ".join(authors))))
    config = m["adapter"].get("config") or {}
    table = _table(
        "adapter config",
        ["key", "value"],
        [
            f"<tr><th scope=row><code>{e(k)}</code></th><td><code>{e(_json(v))}</code></td></tr>"
            for k, v in config.items()
        ],
    )
    return _section("adapter", "Adapter", _facts(rows) + (table if config else ""))


def _dependencies_section(adapter: Adapter, p: str, known: set[str]) -> str:
    deps = adapter.shown.dependencies
    if not deps:
        return _section("dependencies", "Dependencies", "<p>None: this adapter installs on its own.</p>")
    items = []
    for dep in deps:
        name, spec = str(dep.get("name", "")), str(dep.get("specifier") or "")
        shown = (
            f'<a href="{p}{adapter_path(name)}">{e(name)}</a>' if name in known else f"{e(name)} (not in this registry)"
        )
        items.append(f"<li>{shown} <code>{e(spec or 'any version')}</code></li>")
    intro = "<p>Installed with it (resolved together, highest allowed version first):</p>"
    return _section("dependencies", "Dependencies", intro + f"<ul>{''.join(items)}</ul>")


def _files_section(adapter: Adapter) -> str:
    rows = [
        f"<tr><th scope=row><code>{e(f['path'])}</code></th><td class=num>{e(_size(f.get('size')))}</td>"
        f"<td class=hash>{e(f.get('sha256', ''))}</td></tr>"
        for f in adapter.manifest["files"]
    ]
    caption = f"{plural(len(rows), 'file')}; installs check every size and sha256"
    return _section("files", "Files", _table(caption, ["path", "size", "sha256"], rows, numeric=[1]))


def _modules_section(adapter: Adapter) -> str:
    arch = (adapter.manifest.get("base_model") or {}).get("architecture") or {}
    modules = arch.get("modules") if isinstance(arch.get("modules"), Mapping) else {}
    if not modules:
        return _section("modules", "Touched modules", '<p class="muted">Not recorded in the manifest.</p>')
    rows = []
    for path, info in list(modules.items())[:MAX_MODULE_ROWS]:
        info = info if isinstance(info, Mapping) else {}
        shape = "×".join(str(d) for d in info.get("shape") or []) or "?"
        rows.append(
            f"<tr><th scope=row><code>{e(path)}</code></th><td>{e(shape)}</td><td>{e(info.get('dtype', ''))}</td></tr>"
        )
    more = len(modules) - len(rows)
    caption = "base modules the adapter changes" + (f" (the first {len(rows)})" if more else "")
    table = _table(caption, ["module", "shape", "dtype"], rows)
    return _section(
        "modules",
        "Touched modules",
        f"<details><summary>{e(plural(len(modules), 'module'))}</summary>{table}</details>",
    )


def _signature_section(adapter: Adapter) -> str:
    sig = adapter.signature
    if sig is None:
        return _section("signature", "Signature", f"<p>Unsigned: the package has no <code>{SIGNATURE_FILE}</code>.</p>")
    kind = "" if sig.matches else " notice"
    return _section(
        "signature",
        "Signature",
        f'<p class="sig{kind}">{e(sig.status)}</p>'
        f"<p class=muted><code>{SIGNATURE_FILE}</code> sha256 <code>{e(sig.sha256)}</code>. This page does not "
        "check it; check the installed copy against the publisher's key:</p>"
        + _command(
            f"model_signing verify key DIR --signature DIR/{SIGNATURE_FILE} --public_key PUBLISHER.pem",
            "verify command",
        ),
    )


def _card_section(adapter: Adapter) -> str:
    if adapter.card is not None:
        content = f'<div class="card">{render_markdown(adapter.card)}</div>'
    elif adapter.card_note:
        content = f'<p class="notice">{e(adapter.card_note)}</p>'
    else:
        content = '<p class="muted">The package has no model card.</p>'
    return _section("card", "Model card", content)


# --- listings and the home page ---------------------------------------------------------------------


def listing_page(
    ctx: Context,
    rel: str,
    title: str,
    intro: str,
    rows: Sequence[str],
    pages: str,
    crumbs: Sequence[tuple[str, str]],
) -> str:
    """One page of a list of adapters (`rows` rendered by :func:`entry_row` for this page's depth)."""
    items = f'<ul class="entries">{"".join(rows)}</ul>' if rows else "<p>No adapter yet.</p>"
    return page(ctx, rel, title, f"<h1>{e(title)}</h1>{intro}{pages}{items}{pages}", crumbs)


def groups_page(ctx: Context, group: Group, counts: Sequence[tuple[str, int]]) -> str:
    """Every value of one group (every base model, type, tag or task) with its number of adapters."""
    rel = f"{group.folder}/index.html"
    p = _prefix(rel)
    items = "".join(
        f'<li><a href="{p}{group_path(group, v)}">{e(label(group, v))}</a> <span class="muted">({n:,})</span></li>'
        for v, n in counts
    )
    body = f"<h1>{e(group.plural_title)}</h1>" + (f'<ul class="groups">{items}</ul>' if items else "<p>None yet.</p>")
    return page(ctx, rel, group.plural_title, body, [("index.html", "Home"), (rel, group.plural_title)])


def home_page(
    ctx: Context,
    summaries: Sequence[Mapping[str, Any]],
    groups: Mapping[str, Sequence[tuple[str, int]]],
    recent: Sequence[str],
    max_options: int,
) -> str:
    """Counts, the live search (shown by the script), what was published last, and ways to browse."""
    versions = sum(int(s["versions"]) for s in summaries)
    counts = [
        (len(summaries), "adapters"),
        (versions, "versions"),
        (len(groups["base"]), "base models"),
        (len(groups["type"]), "adapter types"),
    ]
    count_html = "".join(f"<li><strong>{n:,}</strong> {e(what)}</li>" for n, what in counts)

    def options(key: str, anything: str) -> str:
        group = GROUP[key]
        opts = [f'<option value="">{e(anything)}</option>']
        opts += [
            f'<option value="{e(v)}">{e(label(group, v))} ({n:,})</option>' for v, n in groups[key][:max_options] if v
        ]
        return "".join(opts)

    search = (
        '<form id="search" class="search" role="search" action="index.html" method="get" hidden>'
        '<div><label for="q">Search adapters by name, description or tag</label>'
        '<input id="q" name="q" type="search" autocomplete="off" spellcheck="false" '
        'placeholder="e.g. sentiment" aria-describedby="search-help"></div>'
        '<div class="row"><div class="field"><label for="base">Base model</label>'
        f'<select id="base" name="base">{options("base", "any base model")}</select></div>'
        '<div class="field"><label for="type">Adapter type</label>'
        f'<select id="type" name="type">{options("type", "any type")}</select></div></div>'
        '<p id="search-help" class="muted">Press <kbd>/</kbd> to search, arrow keys to move through the results.</p>'
        "</form>"
        '<noscript><p class="notice">Live search needs JavaScript; every list below works without it.</p></noscript>'
        '<p id="search-status" class="muted" role="status" aria-live="polite"></p>'
        '<ul id="results" class="entries" aria-label="Search results" hidden></ul>'
        '<p><button id="more" type="button" hidden>Show more results</button></p>'
    )
    browse = ['<div id="browse">']
    browse.append('<section aria-labelledby="recent"><h2 id="recent">Recently published</h2>')
    browse.append(f'<ul class="entries">{"".join(recent)}</ul>' if recent else "<p>Nothing is published yet.</p>")
    browse.append(f'<p><a href="{numbered(ALL_FOLDER, 1)}">All {len(summaries):,} adapters</a></p></section>')
    for group in GROUPS:
        values = groups[group.key]
        if not values:
            continue
        top = values[:30]
        items = "".join(
            f'<li><a href="{group_path(group, v)}">{e(label(group, v))}</a> <span class="muted">({n:,})</span></li>'
            for v, n in top
        )
        more = f'<p><a href="{group.folder}/index.html">All {len(values):,} {e(group.plural_title.lower())}</a></p>'
        browse.append(
            f'<section aria-labelledby="by-{group.key}"><h2 id="by-{group.key}">By {e(group.title.lower())}</h2>'
            f'<ul class="groups">{items}</ul>{more}</section>'
        )
    browse.append("</div>")
    body = (
        f"<h1>{e(ctx.title)}</h1>"
        '<p class="lede">Adapters for machine-learning models, ready for <code>adapters install</code>.</p>'
        f'<ul class="counts" aria-label="Counts">{count_html}</ul>{search}{"".join(browse)}'
    )
    return page(ctx, "index.html", "Adapter catalogue", body)
