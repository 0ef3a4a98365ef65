"""Model cards as HTML: Markdown (CommonMark, tables, strikethrough) through markdown-it-py with raw HTML
off, so a card's `<script>` or `<img onerror>` is shown as text, and only web links kept: `javascript:`,
`data:`, `vbscript:`, `file:` and relative links (into a repository the site does not have) stay text."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.IGNORECASE)
_WEB_SCHEMES = frozenset({"http", "https", "mailto"})
HEADING_SHIFT = 2  # a card's `#` sits under the page's "Model card" heading (h2): h1 -> h3
_LINK_REL = "nofollow noopener noreferrer"
ALIGNMENTS = ("left", "center", "right")


class _CardMarkdown(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        """Called by the parser for every link and image destination (already normalised)."""
        url = url.strip()
        if url.startswith("#"):
            return True
        scheme = _SCHEME.match(url)
        return scheme is not None and scheme.group(1).lower() in _WEB_SCHEMES


def _parser() -> MarkdownIt:
    md = _CardMarkdown("commonmark", {"html": False, "typographer": False}).enable(["table", "strikethrough"])
    md.add_render_rule("table_open", _table_open)
    md.add_render_rule("table_close", _table_close)
    return md


def _table_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return '<div class="table-wrap">' + str(self.renderToken(tokens, idx, options, env))


def _table_close(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return str(self.renderToken(tokens, idx, options, env)) + "</div>"


_MD = _parser()


def render_markdown(text: str) -> str:
    """`text` (a model card) as an HTML fragment safe to put in a page."""
    tokens = _MD.parse(text)
    for token in _walk(tokens):
        if token.type in ("heading_open", "heading_close"):
            token.tag = f"h{min(int(token.tag[1]) + HEADING_SHIFT, 6)}"
        elif token.type == "link_open":
            token.attrSet("rel", _LINK_REL)
        elif token.type in ("th_open", "td_open") and token.attrGet("style"):
            # GFM alignment comes as a style attribute, which the pages' policy refuses: a class instead
            align = str(token.attrGet("style")).removeprefix("text-align:")
            token.attrs.pop("style")
            if align in ALIGNMENTS:
                token.attrSet("class", f"align-{align}")
        elif token.type == "image":
            token.attrSet("loading", "lazy")
            token.attrSet("referrerpolicy", "no-referrer")
    return str(_MD.renderer.render(tokens, _MD.options, {}))


def _walk(tokens: Sequence[Token]) -> list[Token]:
    out: list[Token] = []
    for token in tokens:
        out.append(token)
        if token.children:
            out += _walk(token.children)
    return out
