"""`adapters verify`: re-hash every installed file against its manifest."""

from __future__ import annotations

from ..store import install as views
from ..store.cache import Cache
from .results import VerifyReport


def verify(cache: Cache) -> VerifyReport:
    """Problems with any installed view (the CLI exits 4 on any), and leftovers of interrupted installs."""
    checked, problems = 0, []
    for record, path in views.iter_installed(cache):
        checked += 1
        problems.extend(views.verify_view(cache, path, record))
    tmp = cache.root / "tmp"
    leftovers = sorted(p.name for p in tmp.glob("view-*")) if tmp.exists() else []
    return VerifyReport(checked, problems, leftovers)
