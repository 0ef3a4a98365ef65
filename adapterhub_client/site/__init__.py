"""The catalogue website of a directory registry: static HTML, one style sheet and one small script,
written beside the registry (`DIR/site/` by default) and served by the same static host. Torch-free.

catalogue.py reads the registry through its own readers, markdown.py renders model cards with raw HTML
escaped and only web links kept, pages.py writes every page (each value escaped), generate.py writes
only the pages whose bytes changed and keeps a state file of page hashes (docs/SITE.md)."""

from .generate import DEFAULT_SITE_DIR, SiteReport, build_site

__all__ = ["DEFAULT_SITE_DIR", "SiteReport", "build_site"]
